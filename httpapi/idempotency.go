package httpapi

import (
	"crypto/sha256"
	"sync"
	"time"

	"go.uber.org/zap"

	"slotd/allocator"
	"slotd/api"
)

// Idempotency (DESIGN invariant 5).
//
//	I1. The first response to (API key name, Idempotency-Key) is stored
//	    durably before it is sent. A response that changed state travels
//	    inside that change (Meta.Attach puts it in Change.Idempotency), so
//	    the change and its response commit atomically: there is no instant
//	    at which the booking exists but a retry would make another one.
//	I2. A response without a state change (a refusal, a no-op release) is
//	    stored with IdempotencyStore.PutIdempotency before it is sent.
//	    5xx answers are not stored: they are transient, and retrying must
//	    try again.
//	I3. At most one request per key runs at a time in this process: the
//	    in-flight set is checked before the store, and a key leaves it only
//	    after its record is durable, so a retry either finds the record or
//	    finds the key in flight (409), never neither.
//	I4. A replay must be the same request: the fingerprint is SHA-256 over
//	    method, request URI (path and query) and body; any difference
//	    answers 422 idempotency_mismatch.
//	I5. A record is stamped and aged on the steady clock (clock.go), not
//	    the wall clock: setting the system clock forward does not forget
//	    stored responses. Across a restart the age is measured from the
//	    wall clock at each start; nothing better survives a restart.
//
// The in-flight set holds at most Config.InFlightMax keys: entries are
// added only by requests holding an engine slot.

const (
	headerIdempotencyKey = "Idempotency-Key"
	headerReplayed       = "Idempotent-Replayed"
	// idempotencyKeyBytesMax bounds the header value.
	idempotencyKeyBytesMax = 255
	// idempotencyBodyBytesMax bounds a stored response; the journal
	// refuses larger records, and a refused commit would degrade the
	// engine, so a larger response is never attached. Booking and summary
	// responses are a few KiB; only a booking near its history limit
	// (allocator.HistoryEntriesMax) with long reasons passes the bound,
	// and then its answer is not stored: a retry runs again and answers
	// from the booking's state then.
	idempotencyBodyBytesMax = 64 << 10
)

// idemCall is the idempotency state of one request. Written by the
// request's goroutine, and by Attach, which may run on the engine's tick
// goroutine (release lottery) while the request goroutine waits for the
// engine call to return; the return orders the two.
type idemCall struct {
	key     string
	fp      [32]byte
	office  string                       // the office the request names, if known (aboutOffice)
	rec     *allocator.IdempotencyRecord // set by Attach
	noStore bool                         // the outcome is unknown: store nothing
}

// idempotency is the in-flight set and the store. Safe for concurrent use.
type idempotency struct {
	st  IdempotencyStore
	ttl time.Duration

	mu       sync.Mutex
	inFlight map[string]struct{} // guarded by mu
}

func (x *idempotency) init(st IdempotencyStore, ttl time.Duration) {
	x.st, x.ttl, x.inFlight = st, ttl, map[string]struct{}{}
}

// begin validates the header, enters the key into the in-flight set and
// answers a replay, mismatch or conflict itself. It returns false when it
// answered.
func (x *idempotency) begin(r *request, header []byte) bool {
	if len(header) == 0 || len(header) > idempotencyKeyBytesMax || !printable(header) {
		r.invalid("Idempotency-Key must be 1..%d printable ASCII characters", idempotencyKeyBytesMax)
		return false
	}
	key := r.key.name + ":" + string(header)
	h := sha256.New()
	h.Write(r.ctx.Method())
	h.Write([]byte{'\n'})
	h.Write(r.ctx.RequestURI())
	h.Write([]byte{'\n'})
	h.Write(r.ctx.PostBody())
	var fp [32]byte
	h.Sum(fp[:0])

	x.mu.Lock()
	if _, busy := x.inFlight[key]; busy {
		x.mu.Unlock()
		r.fail(problem{code: api.CodeIdempotencyInFlight, detail: "a request with this Idempotency-Key is still running; retry when it has answered"})
		return false
	}
	x.inFlight[key] = struct{}{}
	x.mu.Unlock()

	rec, found, err := x.st.LookupIdempotency(key)
	switch {
	case err != nil:
		x.leave(key)
		r.srv.storeFailed("idempotency store read", err)
		r.fail(problem{code: api.CodeDegraded, detail: "cannot read the idempotency store", retryAfterSeconds: retryAfterDegradedSeconds})
		return false
	case found && r.steady.Sub(time.Unix(0, rec.AtUnixNano)) < x.ttl:
		x.leave(key)
		if rec.Fingerprint != fp {
			r.fail(problem{code: api.CodeIdempotencyMismatch, detail: "this Idempotency-Key was first used with a different method, path, query or body; use a new key for a new request"})
			return false
		}
		r.ctx.Response.Header.Set(headerReplayed, "true")
		r.reply(rec.Status, rec.Body)
		return false
	}
	r.idem = &idemCall{key: key, fp: fp}
	return true
}

// end stores a response that came without a state change (I2), then lets
// the key leave the in-flight set (I3).
func (x *idempotency) end(s *Server, r *request) {
	defer x.leave(r.idem.key)
	status := r.ctx.Response.StatusCode()
	if r.idem.rec != nil || r.idem.noStore || status >= 500 {
		return
	}
	body := r.ctx.Response.Body()
	if len(body) > idempotencyBodyBytesMax {
		return
	}
	rec := &allocator.IdempotencyRecord{
		Key: r.idem.key, Fingerprint: r.idem.fp, Status: status,
		Body: append([]byte(nil), body...), AtUnixNano: r.steady.UnixNano(),
		Office: r.idem.office,
	}
	if err := x.st.PutIdempotency(rec); err != nil {
		// The answer goes out anyway: it changed nothing, so a retry that
		// runs again reaches the same state. But the store's disk failed:
		// the server is degraded like after a failed commit.
		s.log.Warn("cannot store idempotent response", zap.String("request_id", r.id), zap.Error(err))
		s.storeFailed("idempotency store write", err)
	}
}

// aboutOffice names the office the request is about, once its handler
// has read it: a refusal stored for an Idempotency-Key is then listed
// with the office, and moves with it between a cluster's groups.
func (r *request) aboutOffice(office string) {
	if r.idem != nil {
		r.idem.office = office
	}
}

func (x *idempotency) leave(key string) {
	x.mu.Lock()
	delete(x.inFlight, key)
	x.mu.Unlock()
}

// meta returns the Meta of an engine call. With an Idempotency-Key, its
// Attach renders the response from the change with render and puts it
// into the change (I1).
func (r *request) meta(reason string, render func(c *allocator.Change) (int, []byte)) allocator.Meta {
	m := allocator.Meta{Actor: r.key.name, Reason: reason}
	call := r.idem
	if call == nil || render == nil {
		return m
	}
	at := r.steady.UnixNano()
	m.Attach = func(c *allocator.Change) {
		status, body := render(c)
		if len(body) > idempotencyBodyBytesMax {
			call.noStore = true
			return
		}
		call.rec = &allocator.IdempotencyRecord{Key: call.key, Fingerprint: call.fp, Status: status, Body: body, AtUnixNano: at}
		c.Idempotency = call.rec
	}
	return m
}

// answer sends the outcome of an engine call that may have attached its
// response: on success the attached response if there is one (so the
// reply is byte for byte the stored one), else fallback(); on failure the
// problem, and nothing is stored if the change may have been attempted.
func (r *request) answer(err error, fallback func() (int, []byte)) {
	if err != nil {
		if r.idem != nil && r.idem.rec != nil {
			r.idem.noStore = true // Attach ran, the commit failed: the state is unknown
		}
		r.failErr(err)
		return
	}
	if r.idem != nil && r.idem.rec != nil {
		r.reply(r.idem.rec.Status, r.idem.rec.Body)
		return
	}
	r.reply(fallback())
}
