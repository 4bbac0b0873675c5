package allocator

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
	"time"
)

// The release lottery (DESIGN "Fairness in the rush").
//
// When an office with release_lottery > 0 releases dates, a lottery opens
// for release_lottery after the release instant. Hold requests for a newly
// released date (or earliest_after requests, which may land on one) that
// arrive inside the window are not served on arrival: they wait, and at the
// window's end Tick serves them in an order drawn at random, then first
// come first served resumes.
//
//	F1. The order is a function of the lottery's secret seed and the
//	    applicants, not of arrival order: each entry's rank is
//	    SHA-256(seed ‖ applicant ‖ office ‖ service). Sending a request
//	    first, or many times, does not improve an applicant's rank.
//	F2. An applicant has one entry per (office, service) in a lottery;
//	    further requests are refused as duplicates at once, so a bot that
//	    sends ten requests still holds one ticket.
//	F3. Entries are served through the ordinary hold path, so per-applicant
//	    limits, duplicates against existing bookings and blocks apply.
//	F4. A lottery holds at most lotteryEntriesMax entries; beyond that
//	    requests are refused with ErrOverloaded instead of queueing.

const lotteryEntriesMax = 1 << 17

// lottery is one open draw of an office. Safe for concurrent use.
type lottery struct {
	from, through Date      // the newly released dates
	closes        time.Time // end of the window
	seed          [32]byte

	mu      sync.Mutex
	entries []*lotteryEntry
	keys    map[string]bool // applicant/office/service already entered (F2)
	drawn   bool
}

type lotteryEntry struct {
	rank [32]byte
	seq  int
	req  HoldRequest
	meta Meta
	done chan lotteryResult
}

type lotteryResult struct {
	booking Booking
	err     error
}

// entryKey names an applicant's one entry per (office, service) (F2).
func entryKey(applicant, office, service string) string {
	return applicant + "/" + office + "/" + service
}

// openLottery starts a draw for (from, through] released at instant.
// Caller holds o.cfgMu.
func (e *Engine) openLottery(o *office, l *layout, from, through Date, instant time.Time) {
	if l.policy.releaseLottery <= 0 {
		return
	}
	lot := &lottery{from: from, through: through, closes: instant.Add(l.policy.releaseLottery), keys: map[string]bool{}}
	e.lotterySeed(lot.seed[:])
	if prev := o.lottery.Load(); prev != nil {
		// A second release inside an open window: one draw covers both,
		// keeping the entries already waiting.
		prev.mu.Lock()
		if !prev.drawn {
			prev.drawn = true
			lot.from = min(lot.from, prev.from)
			lot.closes = maxTime(lot.closes, prev.closes)
			lot.seed = prev.seed
			lot.entries, lot.keys = prev.entries, prev.keys
			prev.entries = nil
		}
		prev.mu.Unlock()
	}
	o.lottery.Store(lot)
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// lotterySeed fills seed from Config.LotterySeed or crypto/rand.
func (e *Engine) lotterySeed(seed []byte) {
	if e.fixedLotterySeed != nil {
		copy(seed, e.fixedLotterySeed)
		return
	}
	if _, err := rand.Read(seed); err != nil {
		panic("BUG: allocator: crypto/rand failed: " + err.Error())
	}
}

// enterLottery queues req if it belongs to lot and waits for the draw. It
// reports entered=false when the request is not for a newly released date.
func (e *Engine) enterLottery(now time.Time, o *office, lot *lottery, req HoldRequest, meta Meta) (lotteryResult, bool) {
	if !req.Start.IsZero() {
		l := o.lay.Load()
		date := DateOf(req.Start.In(l.loc))
		if date < lot.from || date > lot.through {
			return lotteryResult{}, false
		}
	}
	key := entryKey(req.Applicant, o.id, req.Service)
	h := sha256.New()
	h.Write(lot.seed[:])
	for _, s := range []string{req.Applicant, o.id, req.Service} {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	en := &lotteryEntry{req: req, meta: meta, done: make(chan lotteryResult, 1)}
	h.Sum(en.rank[:0])
	lot.mu.Lock()
	switch {
	case lot.drawn || !now.Before(lot.closes):
		lot.mu.Unlock()
		return lotteryResult{}, false
	case lot.keys[key]:
		lot.mu.Unlock()
		return lotteryResult{err: fmt.Errorf("%w: applicant already entered the release lottery for %s at %s", ErrDuplicateBooking, req.Service, o.id)}, true
	case len(lot.entries) >= lotteryEntriesMax:
		lot.mu.Unlock()
		return lotteryResult{err: fmt.Errorf("%w: the release lottery of %s is full", ErrOverloaded, o.id)}, true
	}
	lot.keys[key] = true
	en.seq = len(lot.entries)
	lot.entries = append(lot.entries, en)
	lot.mu.Unlock()
	e.counter.LotteryEntries.Add(1)
	if meta.Waiting != nil {
		meta.Waiting()
	}
	return <-en.done, true
}

// drawLottery serves a closed lottery's entries in rank order (F1).
func (e *Engine) drawLottery(now time.Time, o *office, lot *lottery) {
	lot.mu.Lock()
	lot.drawn = true
	entries := lot.entries
	lot.entries = nil
	lot.mu.Unlock()
	slices.SortFunc(entries, func(a, b *lotteryEntry) int {
		if c := bytes.Compare(a.rank[:], b.rank[:]); c != 0 {
			return c
		}
		return a.seq - b.seq
	})
	for _, en := range entries {
		b, err := e.hold(now, o, en.req, en.meta)
		en.done <- lotteryResult{booking: b, err: err}
	}
}

// drawDue draws the office's lottery when its window has ended.
func (e *Engine) drawDue(now time.Time, o *office) {
	if lot := o.lottery.Load(); lot != nil && !now.Before(lot.closes) {
		if o.lottery.CompareAndSwap(lot, nil) {
			e.drawLottery(now, o, lot)
		}
	}
}
