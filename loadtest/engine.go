package loadtest

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"slotd/client"
)

// step is one kind of request of the booking flow; per-step reports are
// keyed by its name.
type step uint8

const (
	stepDays step = iota
	stepSlots
	stepHold
	stepConfirm
	stepCancel
	stepReschedule
	stepsCount
)

var stepNames = [stepsCount]string{"days", "slots", "hold", "confirm", "cancel", "reschedule"}

func (s step) String() string { return stepNames[s] }

// request is one request an applicant is about to send. Built by the
// result handler (follow-ups) or the arrival Targeter (first requests) and
// immutable afterwards, so workers read it without locks.
type request struct {
	app     int // applicant index
	step    step
	method  string
	path    string // with query
	body    []byte
	idemKey string // writes only
}

// applicant is one person walking the flow. Only the result handler
// goroutine touches it after creation.
type applicant struct {
	idx       int
	id        string
	bot       bool
	browse    bool
	polls     int
	retries   int
	writes    int     // Idempotency-Key counter
	last      request // the request in flight, for retries
	booking   int     // index into engine.created, -1: none
	bookingID string  // the id of that booking
	date      string
	finished  bool
	holdsSent int
}

// engine runs the attacks of one Run and owns their state. The handler
// goroutine is the only one that mutates applicants, stats and created;
// Targeters read requests and append applicants under mu.
type engine struct {
	cfg    Config
	api    *apiClient
	header http.Header // Authorization, shared read-only by all targets
	runID  string
	rng    *rand.Rand // handler goroutine only

	mu   sync.Mutex
	apps []*applicant

	queue *followQueue

	stats   *stats
	created []CreatedBooking
	byID    map[string]int
	days    map[CheckDay]bool

	// Scenario hooks.
	arrive func() request                                                               // arrival Targeter, concurrent
	react  func(a *applicant, req request, r *vegeta.Result, c Class, p client.Problem) // handler goroutine
}

func newEngine(cfg Config, api *apiClient, seed uint64) *engine {
	h := http.Header{}
	h.Set("Authorization", "Bearer "+cfg.Key)
	h.Set("Accept", "application/json")
	rng := rand.New(rand.NewPCG(seed, 0x51075))
	return &engine{
		cfg:    cfg,
		api:    api,
		header: h,
		runID:  fmt.Sprintf("%08x", rng.Uint32()),
		rng:    rng,
		stats:  newStats(),
		byID:   map[string]int{},
		days:   map[CheckDay]bool{},
	}
}

// newApplicant registers the next applicant; safe for concurrent use.
func (e *engine) newApplicant() *applicant {
	e.mu.Lock()
	defer e.mu.Unlock()
	idx := len(e.apps)
	a := &applicant{idx: idx, id: e.applicantID(idx), booking: -1}
	e.apps = append(e.apps, a)
	return a
}

func (e *engine) applicant(idx int) *applicant {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.apps[idx]
}

// applicantID is a portal-style opaque id: "gu-" and ten digits, the
// first four from the run so that runs against one server do not share
// applicants (their limits and duplicate checks would interfere).
func (e *engine) applicantID(idx int) string {
	salt, _ := strconv.ParseUint(e.runID, 16, 64)
	return fmt.Sprintf("gu-%04d%06d", salt%10000, idx%1_000_000)
}

// Tags: the URL fragment names the step and the applicant. HTTP clients do
// not send fragments, so the server never sees it, and vegeta copies the
// URL into the result, which maps every answer back to its applicant.
func (e *engine) target(r request, t *vegeta.Target) {
	t.Method = r.method
	t.URL = e.cfg.URL + r.path + "#" + r.step.String() + "." + strconv.Itoa(r.app)
	t.Body = r.body
	t.Header = e.header
	if r.idemKey != "" || r.body != nil {
		t.Header = e.header.Clone()
		t.Header.Set("Content-Type", "application/json")
		if r.idemKey != "" {
			t.Header.Set("Idempotency-Key", r.idemKey)
		}
	}
}

// parseTag recovers (step, applicant) from a result URL.
func parseTag(rawURL string) (step, int, bool) {
	i := strings.LastIndexByte(rawURL, '#')
	if i < 0 {
		return 0, 0, false
	}
	name, idx, ok := strings.Cut(rawURL[i+1:], ".")
	if !ok {
		return 0, 0, false
	}
	n, err := strconv.Atoi(idx)
	if err != nil || n < 0 {
		return 0, 0, false
	}
	for s, sn := range stepNames {
		if sn == name {
			return step(s), n, true
		}
	}
	return 0, 0, false
}

// Request builders. Every write carries a fresh Idempotency-Key; a retry of
// the same write reuses its request and so its key.

func (e *engine) idemKey(a *applicant) string {
	a.writes++
	return fmt.Sprintf("slotload-%s-%s-%d", e.runID, a.id, a.writes)
}

func (e *engine) daysRequest(a *applicant, from, to string) request {
	q := url.Values{"service": {e.cfg.Service}, "from": {from}, "to": {to}}
	return request{app: a.idx, step: stepDays, method: http.MethodGet,
		path: "/v1/offices/" + url.PathEscape(e.cfg.Office) + "/days?" + q.Encode()}
}

func (e *engine) slotsRequest(a *applicant, office, date string) request {
	q := url.Values{"service": {e.cfg.Service}}
	return request{app: a.idx, step: stepSlots, method: http.MethodGet,
		path: "/v1/offices/" + url.PathEscape(office) + "/days/" + url.PathEscape(date) + "/slots?" + q.Encode()}
}

// holdRequest holds start at office, or the first free start from
// earliestAfter when start is zero.
func (e *engine) holdRequest(a *applicant, office string, start, earliestAfter time.Time) request {
	return request{app: a.idx, step: stepHold, method: http.MethodPost, path: "/v1/bookings",
		body: e.holdBody(a, office, start, earliestAfter), idemKey: e.idemKey(a)}
}

// holdBody is the body of holdRequest. It reads only a's id, so the
// arrival Targeter may call it.
func (e *engine) holdBody(a *applicant, office string, start, earliestAfter time.Time) []byte {
	body := client.HoldJSONRequestBody{Office: office, Service: e.cfg.Service, Applicant: new(a.id)}
	if !start.IsZero() {
		body.Start = &start
	} else {
		body.EarliestAfter = &earliestAfter
	}
	return mustJSON(body)
}

func (e *engine) confirmRequest(a *applicant, bookingID string) request {
	return e.bookingRequest(a, stepConfirm, bookingID, client.ConfirmJSONRequestBody{Applicant: new(a.id)})
}

func (e *engine) cancelRequest(a *applicant, bookingID, reason string) request {
	return e.bookingRequest(a, stepCancel, bookingID, client.CancelJSONRequestBody{Applicant: new(a.id), Reason: &reason})
}

func (e *engine) rescheduleRequest(a *applicant, bookingID string, start time.Time) request {
	return e.bookingRequest(a, stepReschedule, bookingID, client.RescheduleJSONRequestBody{Applicant: new(a.id), Start: start})
}

// bookingRequest is step s on a booking, POST /v1/bookings/{id}/{step},
// with body, one of the client's request bodies.
func (e *engine) bookingRequest(a *applicant, s step, bookingID string, body any) request {
	return request{app: a.idx, step: s, method: http.MethodPost,
		path: "/v1/bookings/" + url.PathEscape(bookingID) + "/" + s.String(),
		body: mustJSON(body), idemKey: e.idemKey(a)}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("BUG: cannot marshal a request body: " + err.Error())
	}
	return b
}

// attack runs the arrival attack under arrivals (bounded by duration) and
// the follow-up attack until every applicant finished, the drain timeout
// passed after the last arrival, or ctx ended.
func (e *engine) attack(ctx context.Context, arrivals vegeta.Pacer, duration time.Duration) {
	followCtx, cancelFollow := context.WithCancel(ctx)
	defer cancelFollow()
	e.queue = newFollowQueue(followCtx)

	opts := func(name string) []func(*vegeta.Attacker) {
		return []func(*vegeta.Attacker){
			vegeta.Timeout(e.cfg.RequestTimeout),
			vegeta.MaxWorkers(e.cfg.WorkersMax),
			vegeta.Connections(e.cfg.ConnectionsMax),
			vegeta.MaxConnections(e.cfg.ConnectionsMax),
			vegeta.KeepAlive(true),
			vegeta.MaxBody(bodyBytesMax),
			vegeta.Redirects(vegeta.NoFollow),
		}
	}
	arrivalAttacker := vegeta.NewAttacker(opts("arrivals")...)
	followAttacker := vegeta.NewAttacker(opts("follow-ups")...)
	arrivalTargeter := func(t *vegeta.Target) error {
		r := e.arrive()
		e.queue.arrived()
		e.target(r, t)
		return nil
	}
	followTargeter := func(t *vegeta.Target) error {
		e.target(e.queue.take(), t)
		return nil
	}
	arrivalResults := arrivalAttacker.Attack(arrivalTargeter, arrivals, duration, "arrivals")
	followResults := followAttacker.Attack(followTargeter, e.queue, 0, "follow-ups")
	stopOnCancel := context.AfterFunc(ctx, func() { arrivalAttacker.Stop(); followAttacker.Stop() })
	defer stopOnCancel()

	var drain <-chan time.Time
	for arrivalResults != nil || followResults != nil {
		select {
		case r, ok := <-arrivalResults:
			if !ok {
				arrivalResults = nil
				e.queue.arrivalsFinished()
				drain = time.After(e.cfg.DrainTimeout)
				e.logf("arrivals done after %s: %d applicants; draining follow-ups", e.stats.elapsed(), len(e.apps))
				continue
			}
			e.handle(r)
		case r, ok := <-followResults:
			if !ok {
				followResults = nil
				continue
			}
			e.handle(r)
		case <-drain:
			e.logf("drain timeout %s: stopping follow-ups", e.cfg.DrainTimeout)
			drain = nil
			cancelFollow()
			followAttacker.Stop()
		}
	}
	for _, r := range e.queue.unanswered() {
		e.finish(e.applicant(r.app), OutcomeUnfinished)
	}
}

// handle is the result handler: stats, then the scenario's reaction.
func (e *engine) handle(r *vegeta.Result) {
	defer e.queue.answered()
	s, idx, ok := parseTag(r.URL)
	if !ok {
		panic(fmt.Sprintf("BUG: result without a tag: %q", r.URL))
	}
	c, p := Classify(r)
	a := e.applicant(idx)
	e.stats.add(s, r, c, a.bot)
	req := a.last
	e.react(a, req, r, c, p)
}

// send queues a's next request after delay.
func (e *engine) send(a *applicant, r request, delay time.Duration) {
	a.last = r
	e.queue.push(r, time.Now().Add(delay))
}

// finish records a's outcome once.
func (e *engine) finish(a *applicant, o Outcome) {
	if a.finished {
		return
	}
	a.finished = true
	e.stats.outcomes[o]++
	if a.bot {
		e.stats.botOutcomes[o]++
	}
}

// recordBooking remembers a booking from a 2xx answer for the check.
func (e *engine) recordBooking(a *applicant, b client.Booking) {
	if b.Id == "" {
		return
	}
	i, ok := e.byID[b.Id]
	if !ok {
		i = len(e.created)
		e.byID[b.Id] = i
		e.created = append(e.created, CreatedBooking{ID: b.Id, Applicant: a.id, Office: b.Office, Service: b.Service})
	}
	cb := &e.created[i]
	cb.Status, cb.Pending = b.Status, ""
	if cb.Office == "" {
		cb.Office = e.cfg.Office
	}
	if cb.Service == "" {
		cb.Service = e.cfg.Service
	}
	if !b.Start.IsZero() {
		// The start carries the office's offset: its date is office-local.
		e.days[CheckDay{Office: cb.Office, Service: cb.Service, Date: b.Start.Format(time.DateOnly)}] = true
	}
	a.booking, a.bookingID = i, b.Id
}

// recordAnswer records the booking in a 2xx answer about a's booking;
// status is what the step implies when the answer does not say.
func (e *engine) recordAnswer(a *applicant, r *vegeta.Result, status client.Status) client.Booking {
	var b client.Booking
	_ = json.Unmarshal(r.Body, &b)
	if b.Status == "" {
		b.Status = status
	}
	if b.Id == "" && a.booking >= 0 {
		cb := &e.created[a.booking]
		cb.Status, cb.Pending = b.Status, ""
		b.Id = cb.ID
		return b
	}
	e.recordBooking(a, b)
	return b
}

// createdID is the id of a's booking.
func (e *engine) createdID(a *applicant) string {
	if a.bookingID == "" {
		panic("BUG: an operation on an applicant without a booking")
	}
	return a.bookingID
}

// unanswered notes that a change of a's booking to status got no answer.
func (e *engine) unansweredChange(a *applicant, status client.Status) {
	if a.booking >= 0 {
		e.created[a.booking].Pending = status
	}
}

// retry resends a's last request after wait if a has retries left, and
// reports whether it did.
func (e *engine) retry(a *applicant, wait time.Duration) bool {
	if a.retries >= e.cfg.RetriesMax {
		return false
	}
	a.retries++
	e.send(a, a.last, wait)
	return true
}

// backoff is the wait before retrying after r: Retry-After when the server
// gave one, else a short jittered pause.
func (e *engine) backoff(r *vegeta.Result) time.Duration {
	fallback := 50*time.Millisecond + time.Duration(e.rng.Int64N(int64(100*time.Millisecond)))
	return retryAfter(r.Headers, time.Now(), fallback, e.cfg.RetryAfterMax)
}

func (e *engine) jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return d/2 + time.Duration(e.rng.Int64N(int64(d)))
}

func (e *engine) logf(format string, args ...any) {
	if e.cfg.Log != nil {
		fmt.Fprintf(e.cfg.Log, "slotload: "+format+"\n", args...)
	}
}
