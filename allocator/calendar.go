package allocator

// The claim path.
//
// A day of one office is a set of bitmaps, one per window (service desk),
// each a run of uint64 words with one bit per grid step: 1 = free seat,
// 0 = taken or outside opening hours. A step is a span of time, not a
// wall-clock label: bit i is the date's i-th step in order of time
// (dayclock.go), so on the night the clocks skip an hour the day has
// fewer steps, on the night they repeat one it has more. A booking of a
// k-step service owns k consecutive bits of one window: k consecutive
// spans of time at one desk.
//
// Invariants (tests refer to them by number as "claim invariant N"):
//
//  C1. A bit goes 1→0 only through a successful CompareAndSwap in claim, and
//      0→1 only through release by the one caller that owns the run. So two
//      claims of overlapping runs can never both succeed: one CAS sees the
//      other's zeroes and fails.
//  C2. A run that crosses a word boundary is claimed word by word in
//      ascending order; when a later word fails, the earlier words are given
//      back before claim returns. A failed claim leaves no bit changed.
//  C3. day.free equals the popcount of all words of the day whenever no
//      claim or release is between its bit change and its counter update
//      (both update the counter right after the bits). Readers of the
//      counter get a figure that is off by at most the runs in flight.
//  C4. claim and release do not allocate and take no lock.
//  C5. The steps of a day start at distinct instants, in increasing order,
//      and no two overlap: one bit per window per span of time. So C1
//      keeps DESIGN invariant 1 for the seat as an instant, not only as a
//      label (on the night the clocks skip an hour, two labels once named
//      one instant and both bits sold it).
//
// Rejected design: a mutex per day. It is simpler but serialises the rush on
// the hottest office-date; CAS on independent words lets claims of different
// windows proceed in parallel and costs one atomic on success.

import (
	"math/bits"
	"sync/atomic"
)

// day holds the seats of one (office, date). Safe for concurrent use; the
// bitmap words and counters are owned by no one and changed only by atomics.
type day struct {
	// seq numbers the day's bookings (the tail of the human booking number).
	seq atomic.Uint32
	// closed is set, under the office's write gate, when the date closes;
	// frees into a closed day leave the bits at 0.
	closed atomic.Bool
	date   Date
	words  int // words per window
	// clock places the steps in time; built with the day, so the claim
	// path finds a transition day's table ready (dayclock.go).
	clock dayClock
	// open has a bit per step within opening hours (the weekday's hours
	// at each step's wall-clock label); openSteps counts them. On a day
	// without a clock change, the layout's mask of the weekday.
	open      []uint64
	openSteps int
	// bits is window-major: window w, word i is bits[w*words+i].
	bits []atomic.Uint64
	// free counts free seats (1-bits) over all windows, as a two's
	// complement int64. It is the word before bits[0] in the same
	// allocation: every claim and release writes it and a bitmap word,
	// and for the first windows both share a cache line, so a claim moves
	// one line between cores where it would move two.
	free *atomic.Uint64
}

// freeSeats returns the counter (C3).
func (d *day) freeSeats() int64 { return int64(d.free.Load()) }

// addFree adds n (may be negative) to the counter.
func (d *day) addFree(n int64) { d.free.Add(uint64(n)) }

func newDay(l *layout, date Date) *day {
	words := make([]atomic.Uint64, 1+l.windows*l.words)
	d := &day{date: date, words: l.words, free: &words[0], bits: words[1:], clock: l.clockOf(date)}
	wd := date.Weekday()
	d.open, d.openSteps = l.open[wd], l.openSteps[wd]
	if d.clock.table != nil { // a clock change: the hours at each step's label
		d.open, d.openSteps = make([]uint64, l.words), 0
		for s := range int(d.clock.n) {
			if k := d.clock.label(s); k != deadStep && l.open[wd][k/64]&(1<<(k%64)) != 0 {
				d.open[s/64] |= 1 << (s % 64)
				d.openSteps++
			}
		}
	}
	if l.closures[date] {
		d.closed.Store(true)
		return d
	}
	for w := 0; w < l.windows; w++ {
		for i, m := range d.open {
			d.bits[w*l.words+i].Store(m)
		}
	}
	d.free.Store(uint64(d.openSteps * l.windows))
	return d
}

// isOpen reports whether step s is within opening hours.
func (d *day) isOpen(s int) bool { return d.open[s/64]&(1<<(s%64)) != 0 }

// raiseSeq lifts the day's number counter to at least n (recovery: the
// counter continues after every number already issued).
func (d *day) raiseSeq(n uint32) {
	for {
		cur := d.seq.Load()
		if cur >= n || d.seq.CompareAndSwap(cur, n) {
			return
		}
	}
}

// runMask returns the bits of word i covered by the run [step, step+slots).
func runMask(i, step, slots int) uint64 {
	lo, hi := i*64, i*64+64
	a, b := max(step, lo), min(step+slots, hi)
	if a >= b {
		return 0
	}
	n := b - a
	var m uint64
	if n == 64 {
		m = ^uint64(0)
	} else {
		m = (uint64(1)<<n - 1) << (a - lo)
	}
	return m
}

// claim takes the run [step, step+slots) at window w. It reports false, with
// no bit changed, if any step of the run is taken (claim invariants C1, C2).
func (d *day) claim(w, step, slots int) bool {
	base := w * d.words
	first, last := step/64, (step+slots-1)/64
	for i := first; i <= last; i++ {
		m := runMask(i, step, slots)
		word := &d.bits[base+i]
		for {
			old := word.Load()
			if old&m != m {
				for j := first; j < i; j++ { // C2: give back what we took
					d.bits[base+j].Or(runMask(j, step, slots))
				}
				return false
			}
			if word.CompareAndSwap(old, old&^m) {
				break
			}
		}
	}
	d.addFree(-int64(slots))
	return true
}

// release gives back a run the caller owns. Releasing a run that is not
// fully taken is a programming error (C1) and panics under invariants.
func (d *day) release(w, step, slots int) {
	base := w * d.words
	first, last := step/64, (step+slots-1)/64
	for i := first; i <= last; i++ {
		m := runMask(i, step, slots)
		old := d.bits[base+i].Or(m)
		if invariantsEnabled && old&m != 0 {
			panic("BUG: allocator: release of a seat that was free")
		}
	}
	d.addFree(int64(slots))
}

// withdraw takes every free seat of the day away (office closure) and
// returns how many it took. Runs owned by bookings stay 0 and are not
// released again: the closure cancels those bookings without release.
func (d *day) withdraw() int {
	n := 0
	for i := range d.bits {
		old := d.bits[i].Swap(0)
		n += bits.OnesCount64(old)
	}
	d.addFree(-int64(n))
	return n
}

// popcount counts the free seats by scanning the bitmaps (tests, invariants).
func (d *day) popcount() int {
	n := 0
	for i := range d.bits {
		n += bits.OnesCount64(d.bits[i].Load())
	}
	return n
}

// isFree reports whether the run is entirely free at window w.
func (d *day) isFree(w, step, slots int) bool {
	base := w * d.words
	for i := step / 64; i <= (step+slots-1)/64; i++ {
		m := runMask(i, step, slots)
		if d.bits[base+i].Load()&m != m {
			return false
		}
	}
	return true
}

// startsOf fills dst (len words) with the steps of window w at which a run
// of slots free steps starts.
func (d *day) startsOf(w, slots int, dst []uint64) {
	base := w * d.words
	for i := range dst {
		dst[i] = d.bits[base+i].Load()
	}
	if slots == 1 {
		return
	}
	// x &= x>>1 repeated, across words: a start survives only if all of the
	// next slots-1 steps are free. Doubling shifts keep it O(log slots).
	var tmp [8]uint64
	src := tmp[:len(dst)]
	have := 1
	for have < slots {
		sh := min(have, slots-have)
		copy(src, dst)
		for i := range dst {
			v := src[i] >> sh
			if i+1 < len(src) {
				v |= src[i+1] << (64 - sh)
			}
			dst[i] &= v
		}
		have += sh
	}
}
