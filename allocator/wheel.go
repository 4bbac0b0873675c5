package allocator

import (
	"sync"
	"time"
)

// The timer wheel drives everything that happens at a time rather than on a
// request: hold expiry, automatic no-show, reminders. It is a ring of
// buckets one wheelTick wide; an entry sits in the bucket of its due time
// and is kept across laps until due. Entries are never removed early: when
// one fires, the engine checks that the booking is still in the state that
// scheduled it (lazy deletion), so confirm needs no wheel work.
//
// Time comes only from advance(now): the package never reads the clock.

const (
	wheelTick    = 100 * time.Millisecond
	wheelBuckets = 1 << 12 // ≈ 7 minutes a lap
	// wheelShards: the engine has this many wheels, offices hashed onto
	// them. One wheel per office would cost its bucket array per office
	// (≈ 100 KB); one wheel for all would put every hold on one mutex.
	wheelShards = 16
)

// timerEntry is 16 bytes: what it is for is not stored but read off the
// booking when it fires (Engine.fire): a held booking's timer is its hold
// expiry; a confirmed booking's is its reminder when due before the start,
// else its no-show.
type timerEntry struct {
	atUnixNano int64
	b          *booking
}

// wheel is safe for concurrent use: add from any goroutine, advance from one.
type wheel struct {
	mu      sync.Mutex
	buckets [][]timerEntry
	// nextTick is the first tick not yet processed.
	nextTick int64
	size     int
}

// newWheel returns a wheel whose first advance sweeps a full lap.
func newWheel() *wheel {
	return &wheel{buckets: make([][]timerEntry, wheelBuckets)}
}

func (w *wheel) add(at time.Time, b *booking) {
	e := timerEntry{atUnixNano: at.UnixNano(), b: b}
	tick := e.atUnixNano / int64(wheelTick)
	w.mu.Lock()
	if tick < w.nextTick {
		tick = w.nextTick // already due: fire on the next advance
	}
	i := tick % wheelBuckets
	w.buckets[i] = append(w.buckets[i], e)
	w.size++
	w.mu.Unlock()
}

// advance removes and returns every entry due at or before now.
func (w *wheel) advance(now time.Time, due []timerEntry) []timerEntry {
	nowNano := now.UnixNano()
	last := nowNano / int64(wheelTick)
	w.mu.Lock()
	defer w.mu.Unlock()
	if last < w.nextTick {
		return due
	}
	n := last - w.nextTick + 1
	if w.nextTick == 0 || n > wheelBuckets {
		n = wheelBuckets // a long jump: one full lap sees every bucket
	}
	for t := last - n + 1; t <= last; t++ {
		i := t % wheelBuckets
		bucket := w.buckets[i]
		keep := bucket[:0]
		for _, e := range bucket {
			if e.atUnixNano <= nowNano {
				due = append(due, e)
				w.size--
			} else {
				keep = append(keep, e)
			}
		}
		clear(bucket[len(keep):])
		if len(keep) == 0 {
			keep = nil
		}
		w.buckets[i] = keep
	}
	// The bucket of the current tick may still hold entries due later in
	// this tick: visit it again on the next advance.
	w.nextTick = last
	return due
}

// len returns the number of pending entries.
func (w *wheel) len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.size
}
