package allocator

import "sync/atomic"

// paddedCounter sits alone on a cache line: hot counters bumped by every
// core would otherwise share lines and bounce between caches.
type paddedCounter struct {
	atomic.Uint64
	_ [56]byte
}

// Counters are the engine's cumulative counts. The edge turns them into
// Prometheus metrics; the engine knows nothing of Prometheus.
type Counters struct {
	Holds          paddedCounter // bookings created (held or held+confirmed)
	SlotTaken      paddedCounter // claims that found the seat taken
	Transitions    [statusEnd]paddedCounter
	Reschedules    paddedCounter
	Reminders      paddedCounter
	Releases       paddedCounter // slots.released events
	CommitErrors   paddedCounter
	LotteryEntries paddedCounter // hold requests that waited for a release draw
	WatchMatches   paddedCounter // watches served (W1, W4)
	// InStatus counts the bookings now in each status (a gauge): moved by
	// every transition, set by recovery.
	InStatus [statusEnd]paddedGauge
}

// paddedGauge is a padded atomic.Int64.
type paddedGauge struct {
	atomic.Int64
	_ [56]byte
}

// moved records one booking going from status from (0: new) to to.
func (c *Counters) moved(from, to Status) {
	if from == to {
		return
	}
	if from != 0 {
		c.InStatus[from].Add(-1)
	}
	c.InStatus[to].Add(1)
}

// Stats is a snapshot of Counters and gauges.
type Stats struct {
	Holds, SlotTaken, Reschedules, Reminders, Releases, CommitErrors, LotteryEntries, WatchMatches uint64
	// Watches is the number of active watches.
	Watches int
	// Transitions counts transitions into each status, by status name.
	Transitions map[string]uint64
	// InStatus is the number of bookings now in each status, by name.
	InStatus map[string]int64
	// Bookings is the number of bookings in memory, archive included.
	Bookings int
	// Applicants is the number of applicants the engine keeps state for:
	// those with a booking, archive included, or a hold under way.
	Applicants int
	// TimersPending is the number of scheduled expiries, no-shows, reminders.
	TimersPending int
	Degraded      bool
}

// Stats returns a snapshot. It walks offices, not bookings, except for
// Bookings which sums the index shard sizes.
func (e *Engine) Stats() Stats {
	s := Stats{
		Holds:          e.counter.Holds.Load(),
		SlotTaken:      e.counter.SlotTaken.Load(),
		Reschedules:    e.counter.Reschedules.Load(),
		Reminders:      e.counter.Reminders.Load(),
		Releases:       e.counter.Releases.Load(),
		CommitErrors:   e.counter.CommitErrors.Load(),
		LotteryEntries: e.counter.LotteryEntries.Load(),
		WatchMatches:   e.counter.WatchMatches.Load(),
		Watches:        int(e.watches.n.Load()),
		Transitions:    make(map[string]uint64, statusEnd),
		InStatus:       make(map[string]int64, statusEnd),
		Degraded:       e.Degraded(),
	}
	for st := StatusHeld; st < statusEnd; st++ {
		s.Transitions[st.String()] = e.counter.Transitions[st].Load()
		s.InStatus[st.String()] = e.counter.InStatus[st].Load()
	}
	s.Bookings = e.index.len()
	s.Applicants = e.apps.len()
	for _, w := range e.wheels {
		s.TimersPending += w.len()
	}
	return s
}
