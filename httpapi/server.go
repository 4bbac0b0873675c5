package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"slotd/allocator"
	"slotd/api"
)

// Server is the HTTP edge of API v1. Safe for concurrent use.
type Server struct {
	cfg    Config
	engine *allocator.Engine
	log    *zap.Logger
	now    func() time.Time // the wall clock: Config.Now
	steady func() time.Time // the clock of intervals: Config.Steady
	// keys is the keyring in force: a request authenticates against the
	// one it loads, and a reload (reload.go) stores a new one, so requests
	// and connections under way are not disturbed.
	keys atomic.Pointer[keyring]
	// reloadMu serialises reloads of the keys (reload.go).
	reloadMu sync.Mutex
	// applicants is the per-applicant rate of holds; nil when switched off.
	applicants *keyedLimiter[applicantKey]
	router     *router
	http       *fasthttp.Server
	m          *metrics
	conns      *connAdmission // the API's connection caps, over every API listener
	adminConns *connAdmission // the admin listener's
	// acceptErrors counts exhausted accepts (connlimit.go, F2).
	acceptErrors *prometheus.CounterVec
	// authFails is the per-source rate of failed authentications; nil
	// when switched off.
	authFails *keyedLimiter[netip.Addr]

	// ready gates the API: false until SetReady(true) (after recovery) and
	// again from SetReady(false) or Shutdown on.
	ready atomic.Bool
	// draining is set by Drain: /readyz answers 503 while the API serves.
	draining atomic.Bool
	// degradedLogged is set by the first logDegraded (degraded.go).
	degradedLogged atomic.Bool

	engineSlots semaphore // Config.InFlightMax
	pollerSlots semaphore // Config.PollersMax
	idem        idempotency

	lnMu     sync.Mutex
	lns      []net.Listener // guarded by lnMu
	admins   []*http.Server // admin listeners' servers; guarded by lnMu
	stopping bool           // guarded by lnMu; set by Shutdown

	// base is cancelled by Shutdown: long-polls return at once.
	base       context.Context
	cancelBase context.CancelFunc

	reqPrefix string        // random per process: request ids are unique across restarts
	reqSeq    atomic.Uint64 // request ids are reqPrefix + sequence

	locMu sync.Mutex
	locs  map[string]*time.Location // timezone name → location; guarded by locMu
}

// New builds a Server from cfg. It registers the metrics on cfg.Registry.
// The server answers 503 not_ready until SetReady(true).
func New(cfg Config) (*Server, error) {
	configured := cfg.ConnsMax != 0
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	connsMax, lingering, err := fitConnsMax(cfg, configured)
	if err != nil {
		return nil, err
	}
	cfg.ConnsMax = connsMax
	var prefix [6]byte
	if _, err := rand.Read(prefix[:]); err != nil {
		return nil, fmt.Errorf("httpapi: cannot seed request ids: %w", err)
	}
	s := &Server{
		cfg:         cfg,
		engine:      cfg.Engine,
		log:         cfg.Logger,
		now:         cfg.Now,
		steady:      cfg.Steady,
		engineSlots: make(semaphore, cfg.InFlightMax),
		pollerSlots: make(semaphore, cfg.PollersMax),
		reqPrefix:   hex.EncodeToString(prefix[:]) + "-",
		locs:        map[string]*time.Location{},
	}
	s.base, s.cancelBase = context.WithCancel(context.Background())
	s.conns = newConnAdmission(s, listenerAPI, cfg.ConnsMax, cfg.ConnsPerIPMax, lingering, s.base.Done())
	s.adminConns = newConnAdmission(s, listenerAdmin, adminConnsMax, adminConnsMax, adminConnsMax, nil)
	s.idem.init(cfg.Idempotency, cfg.IdempotencyTTL)
	applicants, authFails := &s.applicants, &s.authFails
	if sh := cfg.Limits; sh != nil {
		applicants, authFails = &sh.applicants, &sh.authFails
		sh.once.Do(func() { newRequestLimiters(cfg, applicants, authFails) })
	} else {
		newRequestLimiters(cfg, applicants, authFails)
	}
	s.applicants, s.authFails = *applicants, *authFails
	s.keys.Store(s.buildKeyring(cfg.Keys, nil))
	s.router = newRouter(s.routes())
	m, err := newMetrics(s, cfg.Registry, s.router.routes)
	if err != nil {
		return nil, err
	}
	s.m = m
	if s.acceptErrors, err = registerConnMetrics(cfg.Registry, s.conns, s.adminConns); err != nil {
		return nil, err
	}
	s.http = s.newFastHTTP()
	return s, nil
}

// fitConnsMax returns cfg.ConnsMax lowered to fit the file descriptor
// limit, logged when lowered (a warning when ConnsMax was configured),
// and the lingering connections that fit beside it.
func fitConnsMax(cfg Config, configured bool) (connsMax, lingering int, err error) {
	limit := fileLimit()
	connsFit, lingering, err := fitConns(limit, cfg.FilesReserved)
	if err != nil {
		return 0, 0, err
	}
	if cfg.ConnsMax <= connsFit {
		return cfg.ConnsMax, lingering, nil
	}
	lvl := zapcore.InfoLevel // the default does not fit: expected under a limit below about 67,000
	if configured {
		lvl = zapcore.WarnLevel
	}
	cfg.Logger.Log(lvl, "connection cap lowered to fit the file descriptor limit",
		zap.Int("conns_max_asked", cfg.ConnsMax), zap.Int("conns_max", connsFit), zap.Int("rlimit_nofile", limit),
		zap.Int("files_reserved", cfg.FilesReserved), zap.Int("admin_files", adminFilesMax),
		zap.String("hint", "raise LimitNOFILE (ulimit -n) to allow more connections"))
	return connsFit, lingering, nil
}

// newFastHTTP builds the fasthttp server of s from its config.
func (s *Server) newFastHTTP() *fasthttp.Server {
	cfg := &s.cfg
	return &fasthttp.Server{
		Handler:      s.serveHTTP,
		ErrorHandler: s.serveReadError,
		Name:         "slotd",
		// A backstop only: connAdmission enforces ConnsMax and
		// ConnsPerIPMax, and fasthttp counts a connection until its
		// worker returns, a moment after the close.
		Concurrency:    2 * cfg.ConnsMax,
		ReadBufferSize: cfg.HeaderBytesMax,
		// fasthttp sends an answer larger than its write buffer with one
		// writev only on a bare *net.TCPConn, and connAdmission wraps
		// every connection; so the buffer holds the answers that matter.
		WriteBufferSize:       cfg.WriteBufferBytes,
		MaxRequestBodySize:    cfg.BodyBytesMax,
		ReadTimeout:           cfg.ReadTimeout,
		WriteTimeout:          cfg.WriteTimeout,
		IdleTimeout:           cfg.IdleTimeout,
		CloseOnShutdown:       true,
		NoDefaultServerHeader: true,
		Logger:                zapPrintf{cfg.Logger},
	}
}

// routes is the route table: method, pattern, who may call, handler.
func (s *Server) routes() []*route {
	get, post, put := fasthttp.MethodGet, fasthttp.MethodPost, fasthttp.MethodPut
	r := func(method, pattern string, a access, h func(*Server, *request)) *route {
		return &route{method: method, pattern: pattern, access: a, handle: h, engine: pattern != RouteEvents}
	}
	hold := r(post, RouteBookings, accessApplicant, (*Server).hold)
	hold.perApplicant = true
	return []*route{
		r(get, RouteOffices, accessAny, (*Server).listOffices),
		r(get, RouteOffice, accessAny, (*Server).getOffice),
		r(put, RouteOffice, accessAdmin, (*Server).putOffice),
		r(get, RouteDays, accessAny, (*Server).days),
		r(get, RouteSlots, accessAny, (*Server).slots),
		r(get, RouteAgenda, accessOffice, (*Server).agenda),
		r(post, RouteRelease, accessAdmin, (*Server).release),
		r(post, RouteClosures, accessAdmin, (*Server).closure),
		r(get, RouteSearch, accessAny, (*Server).search),
		hold,
		r(get, RouteBookings, accessBooking, (*Server).listBookings),
		r(get, RouteBooking, accessBooking, (*Server).getBooking),
		r(post, RouteConfirm, accessApplicant, (*Server).confirm),
		r(post, RouteCancel, accessApplicant, (*Server).cancel),
		r(post, RouteReschedule, accessApplicant, (*Server).reschedule),
		r(post, RouteCheckIn, accessOperator, (*Server).checkIn),
		r(post, RouteComplete, accessOperator, operatorAction((*allocator.Engine).Complete)),
		r(post, RouteNoShow, accessOperator, operatorAction((*allocator.Engine).NoShow)),
		r(post, RouteApproveCancel, accessOperator, operatorAction((*allocator.Engine).ApproveCancel)),
		r(post, RouteRejectCancel, accessOperator, operatorAction((*allocator.Engine).RejectCancel)),
		r(post, RouteForceCancel, accessOperator, operatorAction((*allocator.Engine).ForceCancel)),
		r(post, RouteApprove, accessOperator, operatorAction((*allocator.Engine).Approve)),
		r(post, RouteReject, accessOperator, (*Server).reject),
		r(get, RouteTicket, accessBooking, (*Server).ticket),
		r(get, RouteTicketPNG, accessBooking, (*Server).ticketPNG),
		r(get, RouteTicketPDF, accessBooking, (*Server).ticketPDF),
		r(get, RouteReceiptPDF, accessBooking, (*Server).receiptPDF),
		r(get, RouteCalendar, accessBooking, (*Server).calendar),
		r(get, RouteEvents, accessEvents, (*Server).listEvents),
		r(post, RouteWatches, accessPortal, (*Server).createWatch),
		r(fasthttp.MethodDelete, RouteWatch, accessPortal, (*Server).deleteWatch),
	}
}

// Serve serves the API on ln until Shutdown. It returns nil after
// Shutdown, also when Shutdown came first.
func (s *Server) Serve(ln net.Listener) error {
	s.lnMu.Lock()
	if s.stopping {
		s.lnMu.Unlock()
		_ = ln.Close()
		return nil
	}
	s.lns = append(s.lns, ln)
	s.lnMu.Unlock()
	return s.http.Serve(&admitListener{Listener: ln, l: s.conns})
}

// The admin listener's limits. It serves a few scrapers, probes and
// people, unauthenticated: bind it to loopback or a management network
// (cmd/slotd's -admin-addr). pprof's CPU profile and trace stream for as
// long as asked (30 s by default, refused past the write timeout), so the
// write timeout leaves them room.
const (
	adminConnsMax       = 32
	adminFilesMax       = 2 * adminConnsMax // its connections and as many lingering (connlimit.go, F1)
	adminReadTimeout    = 10 * time.Second
	adminWriteTimeout   = 2 * time.Minute
	adminIdleTimeout    = 60 * time.Second
	adminHeaderBytesMax = 16 << 10
)

// ServeAdmin serves AdminHandler on ln, with at most adminConnsMax
// connections, read, write and idle timeouts, and pauses through running
// out of file descriptors as the API listener does. It returns nil after
// Shutdown, which closes it once the API has drained, so that /readyz
// and the metrics stay up through the drain.
func (s *Server) ServeAdmin(ln net.Listener) error {
	hs := &http.Server{
		Handler:           s.AdminHandler(),
		ReadHeaderTimeout: adminReadTimeout,
		ReadTimeout:       adminReadTimeout,
		WriteTimeout:      adminWriteTimeout,
		IdleTimeout:       adminIdleTimeout,
		MaxHeaderBytes:    adminHeaderBytesMax,
		ErrorLog:          zap.NewStdLog(s.log.Named("admin")),
	}
	s.lnMu.Lock()
	if s.stopping {
		s.lnMu.Unlock()
		_ = ln.Close()
		return nil
	}
	s.admins = append(s.admins, hs)
	s.lnMu.Unlock()
	err := hs.Serve(&admitListener{Listener: ln, l: s.adminConns})
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting connections, turns readiness off, wakes the
// long-polls, and waits for in-flight requests to finish or ctx to end.
func (s *Server) Shutdown(ctx context.Context) error {
	s.SetReady(false)
	s.cancelBase()
	s.lnMu.Lock()
	s.stopping = true
	lns, admins := s.lns, s.admins
	s.lnMu.Unlock()
	err := s.http.ShutdownWithContext(ctx)
	// A Serve that had not yet handed its listener to fasthttp when the
	// shutdown began is stopped here: its Accept fails and it returns nil.
	for _, ln := range lns {
		_ = ln.Close()
	}
	for _, hs := range admins {
		_ = hs.Close()
	}
	return err
}

// SetReady sets readiness: /readyz and the API answer accordingly.
func (s *Server) SetReady(ready bool) { s.ready.Store(ready) }

// request is the state of one request. Owned by the handler goroutine.
type request struct {
	srv   *Server
	ctx   *fasthttp.RequestCtx
	route *route
	key   *principal
	// secret is the place of the secret presented among the key's
	// secrets, from 1 (keyring.lookup).
	secret int
	params [paramsMax]string
	now    time.Time // from the wall clock, for the engine
	steady time.Time // from the steady clock, for rate buckets and idempotency ages
	id     string
	// code is the error code answered, "" for success (access log).
	code string
	// idem is the Idempotency-Key state; nil without the header.
	idem *idemCall
	// alternatives, when set, lists free starts for a slot_taken answer.
	alternatives func() []allocator.Opening
	// freeSlot gives back the request's in-flight slot early (idempotent);
	// a hold waiting for a release lottery's draw calls it.
	freeSlot func()
	// hold and holdErr are the decoded body of a perApplicant route
	// (dispatch decodes it to find the applicant) and the decoding error.
	hold    holdBody
	holdErr error
}

// newRequestLimiters makes the per-applicant and failed-authentication
// limiters cfg asks for into applicants and authFails.
func newRequestLimiters(cfg Config, applicants **keyedLimiter[applicantKey], authFails **keyedLimiter[netip.Addr]) {
	if cfg.RatePerApplicant > 0 {
		*applicants = newKeyedLimiter[applicantKey](cfg.RatePerApplicant, cfg.RateApplicantBurst)
	}
	if cfg.AuthFailRatePerSecond > 0 {
		*authFails = newKeyedLimiter[netip.Addr](cfg.AuthFailRatePerSecond, cfg.AuthFailBurst)
	}
}

// Engine returns the engine the Server serves: a cluster's front checks
// that it is still the one its replica runs for the group.
func (s *Server) Engine() *allocator.Engine { return s.engine }

// Handler returns the API's request handler, for a front that serves
// several Servers on one listener (a cluster node's, one Server per Raft
// group it leads). Serve is the usual way.
func (s *Server) Handler() fasthttp.RequestHandler { return s.serveHTTP }

// param returns the path parameter at index i.
func (r *request) param(i int) string { return r.params[i] }

const (
	contentJSON    = "application/json"
	contentProblem = "application/problem+json"
	headerReqID    = "X-Request-Id"
	requestIDMax   = 128
)

// serveHTTP is the fasthttp handler: request id, recovery, metrics and
// access log around dispatch.
func (s *Server) serveHTTP(ctx *fasthttp.RequestCtx) {
	started := time.Now()
	r := request{srv: s, ctx: ctx, now: s.now(), steady: s.steady(), id: s.requestID(ctx)}
	ctx.Response.Header.Set(headerReqID, r.id)
	s.m.inFlight.Inc()
	defer func() {
		if v := recover(); v != nil {
			s.log.Error("BUG: panic in handler", zap.Any("panic", v), zap.String("route", routeName(r.route)),
				zap.String("request_id", r.id), zap.ByteString("stack", debug.Stack()))
			ctx.Response.Reset()
			ctx.Response.Header.Set(headerReqID, r.id)
			r.fail(problem{code: api.CodeInternal, detail: "the server failed to process the request; it has been logged with the request id"})
		}
		s.m.inFlight.Dec()
		s.finish(&r, time.Since(started))
	}()
	s.dispatch(&r)
}

// dispatch runs the checks in order — route, readiness, key, scope, rate,
// shedding, idempotency — then the handler. Each check that refuses has
// answered the request.
func (s *Server) dispatch(r *request) {
	if !s.matchRoute(r) {
		return
	}
	if !s.ready.Load() {
		r.fail(problem{code: api.CodeNotReady, detail: "the server is starting or stopping", retryAfterSeconds: retryAfterNotReadySeconds})
		return
	}
	if !s.authenticate(r) {
		return
	}
	rt := r.route
	if !r.key.may(rt.access) {
		r.fail(problem{code: api.CodeForbidden, detail: fmt.Sprintf("key %q lacks the scope %s needs", r.key.name, rt.pattern)})
		return
	}
	if !s.withinRates(r) {
		return
	}
	if !s.takeSlot(r) {
		return
	}
	defer r.freeSlot()
	if rt.method == fasthttp.MethodPost {
		if hk := r.ctx.Request.Header.Peek(headerIdempotencyKey); hk != nil {
			if !s.idem.begin(r, hk) {
				return
			}
			defer s.idem.end(s, r)
		}
	}
	rt.handle(s, r)
}

// matchRoute sets r.route and r.params from the method and path, or
// answers 404 or 405.
func (s *Server) matchRoute(r *request) bool {
	ctx := r.ctx
	rt, allow := s.router.match(string(ctx.Method()), string(ctx.Path()), &r.params)
	if rt == nil {
		if allow != "" {
			r.fail(problem{code: api.CodeMethodNotAllowed, detail: "use " + allow, allow: allow})
			return false
		}
		r.fail(problem{code: api.CodeNotFound, detail: "no such endpoint; see docs/openapi.yaml"})
		return false
	}
	r.route = rt
	return true
}

// authenticate sets r.key from the bearer key, or answers 401, or 429
// when the address is over its rate of failed authentications.
func (s *Server) authenticate(r *request) bool {
	ctx := r.ctx
	r.key, r.secret = s.keys.Load().lookup(ctx.Request.Header.Peek(fasthttp.HeaderAuthorization))
	if r.key != nil {
		return true
	}
	// Counted after the lookup, not before: a valid key is never
	// refused for the wrong ones sent from its address (a shared NAT,
	// a proxy, the stale instance of a half-rotated portal).
	if s.authFails != nil {
		if ok, wait := s.authFails.take(authSource(ctx.RemoteIP()), r.steady); !ok {
			s.m.limitedAuth.Inc()
			r.fail(problem{code: api.CodeRateLimited, retryAfterSeconds: retryAfterSeconds(wait),
				detail: "too many requests with a missing or unknown key from this address; send a key from the keys file after the pause"})
			return false
		}
	}
	ctx.Response.Header.Set(fasthttp.HeaderWWWAuthenticate, `Bearer realm="slotd"`)
	r.fail(problem{code: api.CodeUnauthorized, detail: "send Authorization: Bearer <key> with a key from the keys file"})
	return false
}

// withinRates takes a token from the applicant's bucket (routes rated per
// applicant) and then from the key's, or answers 429.
func (s *Server) withinRates(r *request) bool {
	if r.route.perApplicant {
		// The body is decoded once, here, so that the applicant's bucket
		// comes before the key's; the handler takes r.hold.
		r.holdErr = decodeBody(r.ctx.PostBody(), &r.hold)
		a := r.hold.Applicant
		if a == "" {
			// The handler takes ?applicant= when the body names none
			// (request.applicant): so does the bucket, or a hold could
			// pass its applicant's bucket by naming it there.
			a = string(r.ctx.QueryArgs().Peek("applicant"))
		}
		if s.applicants != nil && r.holdErr == nil && a != "" {
			if ok, wait := s.applicants.take(applicantKey{r.key.name, a}, r.steady); !ok {
				s.m.limitedApplicant.Inc()
				r.fail(problem{code: api.CodeRateLimited, retryAfterSeconds: retryAfterSeconds(wait),
					detail: fmt.Sprintf("this applicant is over its rate of %g hold requests per second (burst %d); the key's other applicants are not affected",
						s.cfg.RatePerApplicant, s.cfg.RateApplicantBurst)})
				return false
			}
		}
	}
	if ok, wait := r.key.limiter.take(r.steady); !ok {
		s.m.limitedKey.Inc()
		r.fail(problem{code: api.CodeRateLimited, detail: fmt.Sprintf("key %q is over its rate of %g requests per second", r.key.name, r.key.ratePerSecond),
			retryAfterSeconds: retryAfterSeconds(wait)})
		return false
	}
	return true
}

// takeSlot takes an engine slot (or a poller slot, for the events
// long-poll) and sets r.freeSlot to give it back once, or answers 503
// overloaded at once: requests are shed, never queued (invariant 6).
func (s *Server) takeSlot(r *request) bool {
	slots := s.pollerSlots
	if r.route.engine {
		slots = s.engineSlots
	}
	if !slots.tryAcquire() {
		r.fail(problem{code: api.CodeOverloaded, detail: "too many requests in progress; retry after the pause", retryAfterSeconds: retryAfterOverloadedSeconds})
		return false
	}
	var freed bool
	r.freeSlot = func() {
		if !freed {
			freed = true
			slots.release()
		}
	}
	return true
}

// may reports whether the key's scopes allow access a.
func (p *principal) may(a access) bool {
	switch a {
	case accessAny:
		return true
	case accessPortal:
		return p.portal
	case accessOperator:
		return p.operator
	case accessAdmin:
		return p.admin
	case accessBooking:
		return p.portal || p.operator
	case accessEvents:
		return p.portal || p.admin
	case accessApplicant:
		return p.portal || p.operator
	case accessOffice:
		return p.operator || p.admin
	}
	panic("BUG: httpapi: unknown access " + strconv.Itoa(int(a)))
}

// requestID echoes a sane X-Request-Id or makes one.
func (s *Server) requestID(ctx *fasthttp.RequestCtx) string {
	if v := ctx.Request.Header.Peek(headerReqID); len(v) > 0 && len(v) <= requestIDMax && printable(v) {
		return string(v)
	}
	var buf [64]byte
	return string(strconv.AppendUint(append(buf[:0], s.reqPrefix...), s.reqSeq.Add(1), 36))
}

func printable(b []byte) bool {
	for _, c := range b {
		if c <= ' ' || c > '~' {
			return false
		}
	}
	return true
}

func routeName(rt *route) string {
	if rt == nil {
		return routeUnmatched
	}
	return rt.pattern
}

// finish records the metrics and the access log line. The line carries
// no applicant ids, query strings or bodies: nothing personal.
func (s *Server) finish(r *request, latency time.Duration) {
	status := r.ctx.Response.StatusCode()
	s.m.observe(r.route, string(r.ctx.Method()), status, latency)
	lvl := zapcore.InfoLevel
	if status >= 500 {
		lvl = zapcore.WarnLevel
	}
	if ce := s.log.Check(lvl, "request"); ce != nil {
		key := ""
		if r.key != nil {
			key = r.key.name
		}
		fields := [...]zap.Field{
			zap.String("route", routeName(r.route)),
			zap.ByteString("method", r.ctx.Method()),
			zap.Int("status", status),
			zap.String("code", r.code),
			zap.Duration("latency", latency),
			zap.String("request_id", r.id),
			zap.String("key", key),
			{},
		}
		n := len(fields) - 1
		if r.key != nil && r.key.secrets > 1 {
			// During a rotation: which of the key's secrets, so that the
			// operator sees when the old one is no longer used.
			fields[n] = zap.Int("secret", r.secret)
			n++
		}
		ce.Write(fields[:n]...)
	}
}

// serveReadError answers requests fasthttp could not read: too large,
// malformed, too slow. Always a 4xx problem.
func (s *Server) serveReadError(ctx *fasthttp.RequestCtx, err error) {
	r := request{srv: s, ctx: ctx, id: s.requestID(ctx)}
	ctx.Response.Header.Set(headerReqID, r.id)
	var p problem
	var small *fasthttp.ErrSmallBuffer
	var netErr net.Error
	switch {
	case errors.As(err, &small):
		p = problem{code: api.CodeHeadersTooLarge, detail: fmt.Sprintf("request line and headers must fit in %d bytes", s.cfg.HeaderBytesMax)}
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		p = problem{code: api.CodeBodyTooLarge, detail: fmt.Sprintf("request bodies are limited to %d bytes", s.cfg.BodyBytesMax)}
	case errors.As(err, &netErr) && netErr.Timeout():
		// A stalled or slowloris request, or a keep-alive connection
		// that went idle part-way: 408 and close, as HTTP says. Clients
		// take a 408 on an idle connection as a quiet close, where a 400
		// reaches them as an unsolicited response.
		ctx.SetConnectionClose()
		p = problem{code: api.CodeRequestTimeout, detail: fmt.Sprintf("the request was not received within %s; the connection is closed", s.cfg.ReadTimeout)}
	default:
		p = problem{code: api.CodeValidationFailed, detail: "the HTTP request could not be read: it is not valid HTTP/1.1"}
	}
	r.fail(p)
	s.m.observe(nil, "", ctx.Response.StatusCode(), 0)
}

// reply sends a JSON body.
func (r *request) reply(status int, body []byte) {
	r.ctx.SetStatusCode(status)
	if status >= 400 {
		r.ctx.SetContentType(contentProblem)
	} else {
		r.ctx.SetContentType(contentJSON)
	}
	r.ctx.SetBody(body)
}

// body returns the response's body buffer, empty, for an answer to be
// appended to and sent with replyBody: no copy, and the buffer's capacity
// is reused across requests.
func (r *request) body() []byte { return r.ctx.Response.SwapBody(nil)[:0] }

// replyBody sends a JSON body appended to r.body().
func (r *request) replyBody(status int, body []byte) {
	r.ctx.SetStatusCode(status)
	r.ctx.SetContentType(contentJSON)
	r.ctx.Response.SwapBody(body)
}

// fail sends a problem.
func (r *request) fail(p problem) {
	info := codes[p.code]
	r.code = p.code
	r.ctx.SetStatusCode(info.Status)
	r.ctx.SetContentType(contentProblem)
	if p.retryAfterSeconds > 0 {
		r.ctx.Response.Header.Set(fasthttp.HeaderRetryAfter, strconv.Itoa(p.retryAfterSeconds))
	}
	if p.allow != "" {
		r.ctx.Response.Header.Set(fasthttp.HeaderAllow, p.allow)
	}
	r.ctx.SetBody(appendProblem(nil, &p))
}

// failErr answers an engine error.
func (r *request) failErr(err error) {
	p := problemOf(err)
	if p.code == errNotMapped {
		// Not a refusal: the journal or a store failed. A failed commit
		// has degraded the engine; say so, with the pause to retry after.
		r.srv.log.Error("engine call failed", zap.String("route", routeName(r.route)), zap.String("request_id", r.id), zap.Error(err))
		if r.srv.engine.Degraded() {
			p = problemOf(allocator.ErrDegraded)
			r.srv.logDegraded()
		}
	}
	if p.code == api.CodeSlotTaken && r.alternatives != nil {
		p.alternatives = r.alternatives()
	}
	r.fail(p)
}

// invalid answers 400 validation_failed with detail.
func (r *request) invalid(format string, args ...any) {
	r.fail(problem{code: api.CodeValidationFailed, detail: fmt.Sprintf(format, args...)})
}

// location returns the time zone of an office config, cached.
func (s *Server) location(tz string) *time.Location {
	s.locMu.Lock()
	defer s.locMu.Unlock()
	if loc := s.locs[tz]; loc != nil {
		return loc
	}
	loc, err := time.LoadLocation(tz)
	if err != nil {
		loc = time.UTC // the engine validated tz; unreachable unless the zone database changed
	}
	if len(s.locs) < 1024 {
		s.locs[tz] = loc
	}
	return loc
}

// zapPrintf adapts zap to fasthttp's Logger.
type zapPrintf struct{ l *zap.Logger }

func (z zapPrintf) Printf(format string, args ...any) {
	z.l.Debug("fasthttp", zap.String("msg", fmt.Sprintf(format, args...)))
}
