// Package httpapi is slotd's HTTP edge: API v1 of DESIGN §3 on fasthttp,
// with bearer-key auth, idempotency, problem+json errors, rate limits,
// load shedding, metrics and access logs. It turns requests into engine
// calls (package allocator) and engine results and sentinels into
// responses; it holds no booking state of its own.
//
// # A request's path
//
//	route match (404/405) → ready? (503 not_ready) → bearer key, against
//	  the keyring in force (keys.go; reloaded without a restart, reload.go:
//	  K1–K5) (401; 429 rate_limited past the address's failed
//	  authentications)
//	→ scope (403) → key's token bucket (429 rate_limited)
//	→ engine slot, or poller slot for the events long-poll
//	  (503 overloaded: shed at once, never queued)
//	→ Idempotency-Key: in flight? (409) stored? (replay, or 422)
//	→ decode strictly (400) → office list (403) → engine call with now
//	  from Config.Now → response, or problem from the sentinel
//
// Every request gets an access log line (route pattern, method, status,
// code, latency, request id, key name, and which of a rotating key's
// secrets — never an applicant id, query, body or secret) and the RED
// metrics of its route.
//
// # Invariants
//
// The edge keeps DESIGN invariants 5 and 6 and never blames the server for
// a client's mistake:
//
//  5. Idempotency: see the essay in idempotency.go (I1–I5). The first
//     response travels inside the engine's Change (Meta.Attach), so the
//     stored response and the state change commit in one durable write.
//  6. Shedding: a fixed number of requests may be inside the engine at
//     once (Config.InFlightMax) and of long-polls waiting
//     (Config.PollersMax); beyond them requests are refused at once with
//     503 overloaded and Retry-After. Per-key token buckets answer 429
//     rate_limited with Retry-After, and so does a per-address bucket of
//     failed authentications (a valid key is never refused by it). Open
//     connections are bounded in total, within the file descriptor limit,
//     and per IP; running out of descriptors pauses accepting instead of
//     ending it (connlimit.go, F1–F2). fasthttp bounds header and body
//     bytes, and read/write/idle times (slowloris).
//
// E1. No input gets a 5xx: malformed JSON, wrong types, unknown fields and
// query parameters, trailing data, bad dates and times, times off the
// grid and unknown offices, services and bookings all answer 4xx with a
// detail a portal developer can act on (FuzzRequest). A 5xx means the
// server failed: a recovered panic (500 internal, logged with its stack as
// a bug) or storage (503 degraded).
//
// E2. No partial change: a request makes at most one engine call that
// changes state, and each engine call is one atomic Change.
//
// # Who may do what
//
// portal keys act for the applicants of their namespace (namespace.go):
// holds, confirms, cancels, reschedules, watches, reads of their bookings
// and tickets (and cancellation receipts), and their events. operator keys
// check in (with the ticket's signed QR token), complete, mark no-shows,
// approve/reject late cancels and force cancels, read bookings, a day's
// agenda and a booking by its number, and — without the portal scope —
// book for walk-in and phone applicants of their own namespace, at their
// offices only (agenda.go). admin keys create and replace office configs,
// release dates and close dates, at their offices only, and read the
// events of every namespace and the day's agenda there. Operator and admin keys act on
// bookings of every namespace. Availability is open to every key. A
// booking of another applicant or another namespace answers 404.
package httpapi
