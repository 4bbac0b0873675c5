package httpapi

import "time"

// Two clocks.
//
// Config.Now is the wall clock. The engine takes its reading for what
// people see and agree on: a hold's expiry, a release minute, a cancel
// cutoff, each an instant in an office's time zone.
//
// Config.Steady is for the edge's own intervals: how long since a token
// bucket last refilled, how old an idempotency record is. An interval
// must not move when the system clock is set. On the wall clock a clock
// set back an hour froze every token bucket for that hour (each key that
// had spent its burst got 429 until the clock caught up), and one set a
// day forward forgot every stored response at once, so a retry of a
// booking that had succeeded ran again.
//
// The steady clock reads the wall time once, at its start, and from then
// on adds the monotonic time elapsed. Within a process its readings are
// as good as a monotonic clock; they are also instants, so they can be
// stored: idempotency records carry them, and the journal's sweep deletes
// records by the same clock (cmd/slotd), so that neither expires a record
// early when the wall clock jumps. Across a restart no monotonic clock
// survives; the new process starts from the wall clock again, so a record
// written before a restart ages by the wall clock over the restart, and a
// clock that was wrong at either start shifts that age by its error. That
// is unavoidable without a durable monotonic clock and is bounded by how
// wrong the machine's clock was when slotd started, not by every step it
// takes while slotd runs.

// NewSteadyClock returns a clock that reads the wall time at the call plus
// the monotonic time elapsed since: setting the system clock does not
// move it. Its readings drift from the wall clock by whatever the system
// clock was set by since the call. Safe for concurrent use.
func NewSteadyClock() func() time.Time {
	start := time.Now()
	// start carries Go's monotonic reading: time.Since measures on the
	// monotonic clock, and Add moves the wall and monotonic readings alike.
	return func() time.Time { return start.Add(time.Since(start)) }
}
