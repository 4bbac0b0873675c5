package allocator

import (
	"bytes"
	"cmp"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Watches: "notify me when a seat frees" as a waitlist that hands seats
// over in order, not to the fastest.
//
//	W1. A seat freed by a cancel, an expiry, a no-show or a reschedule is
//	    offered to the oldest active watch it matches (office or region,
//	    service, date range, and the seat is bookable for the watch's
//	    service) before its bits are released. With auto_hold the seat
//	    never becomes free: the bits pass straight to a new held booking
//	    for the watch's applicant, committed with the watch's end and the
//	    watch.matched event in one change. Without auto_hold the seat is
//	    released and the watch gets watch.matched with the start.
//	W2. A watch is served once; then it is inactive. If the applicant
//	    cannot hold (limits, duplicate, block), the next watch is tried and
//	    the refused one stays active.
//	W3. An expired auto-hold frees its seat like any other hold, so the
//	    seat passes to the next watch (W1).
//	W4. Newly released dates are offered to matching watches, oldest
//	    first, before anyone else can book them.
//	W5. A watch whose applicant holds an active booking of its service
//	    (a new hold would be a duplicate) watches for an earlier seat:
//	    only a start before the booking's counts as a match. With
//	    auto_hold the booking is moved there: a reschedule (same id,
//	    booking.rescheduled, counted against max_reschedules, refused
//	    like any reschedule, e.g. for a non-reschedulable service or a
//	    held booking), committed with the watch's end and watch.matched
//	    in one change; the old seat is freed only then, and offered to
//	    the next watch (W1). A refused move skips the watch as W2 does.
//	    The booking's lock bit and its office's gate are only tried, not
//	    waited for: the caller holds another booking's lock bit and the
//	    freed seat's gate, and waiting out of lock order could deadlock;
//	    a booking busy in another transition skips the watch for this
//	    seat.
//
// Watches are kept in one list ordered by creation, scanned on every freed
// seat: O(watches), bounded by watchesMax.

const (
	watchesPerApplicantMax = 10
	watchesMax             = 1 << 20
	watchRangeDaysMax      = 400
)

// ErrWatchNotFound: no such watch, or another applicant's.
var ErrWatchNotFound = fmt.Errorf("allocator: watch not found")

// watchList is safe for concurrent use.
type watchList struct {
	mu           sync.Mutex
	list         []*WatchRecord // active, oldest first
	perApplicant map[string]int // active watches by applicant; no entry at 0 (dropLocked)
	n            atomic.Int64   // len(list), read without the lock on the free path
}

func (wl *watchList) insertLocked(w *WatchRecord) {
	i, _ := slices.BinarySearchFunc(wl.list, w, compareWatch)
	wl.list = slices.Insert(wl.list, i, w)
	wl.n.Store(int64(len(wl.list)))
}

// dropLocked uncounts one active watch of applicant, forgetting the
// applicant at its last: anyone may watch, and the map would otherwise
// keep every applicant that ever did.
func (wl *watchList) dropLocked(applicant string) {
	if n := wl.perApplicant[applicant] - 1; n > 0 {
		wl.perApplicant[applicant] = n
	} else {
		delete(wl.perApplicant, applicant)
	}
}

func (wl *watchList) removeLocked(id ID) *WatchRecord {
	for i, w := range wl.list {
		if w.ID == id {
			wl.list = slices.Delete(wl.list, i, i+1)
			wl.n.Store(int64(len(wl.list)))
			return w
		}
	}
	return nil
}

func compareWatch(a, b *WatchRecord) int {
	if c := cmp.Compare(a.CreatedUnixNano, b.CreatedUnixNano); c != 0 {
		return c
	}
	return bytes.Compare(a.ID[:], b.ID[:])
}

// WatchRequest asks to be told (or handed a hold) when a matching seat frees.
type WatchRequest struct {
	Applicant, Service string
	Office, Region     string // exactly one
	From, To           Date
	AutoHold           bool
	// ID is the id the watch takes; zero: a new one. A cluster names the
	// parts of a region watch that spans its groups alike, one part in
	// each group, so that the watch has one id (cmd/slotd).
	ID ID
}

// Watch registers a watch.
func (e *Engine) Watch(now time.Time, req WatchRequest, meta Meta) (WatchRecord, error) {
	if err := e.writable(&meta); err != nil {
		return WatchRecord{}, err
	}
	switch {
	case req.Applicant == "" || len(req.Applicant) > applicantBytesMax:
		return WatchRecord{}, fmt.Errorf("%w: applicant must be 1..%d bytes", ErrValidation, applicantBytesMax)
	case (req.Office == "") == (req.Region == ""):
		return WatchRecord{}, fmt.Errorf("%w: give exactly one of office and region", ErrValidation)
	case req.To < req.From:
		return WatchRecord{}, fmt.Errorf("%w: to %s is before from %s", ErrValidation, req.To, req.From)
	case req.To-req.From > watchRangeDaysMax:
		return WatchRecord{}, fmt.Errorf("%w: a watch covers at most %d days", ErrValidation, watchRangeDaysMax)
	}
	offered := false
	for _, id := range e.OfficeIDs() {
		o, _ := e.office(id)
		l := o.lay.Load()
		if (req.Office == id || (req.Office == "" && l.cfg.Region == req.Region)) && l.services[req.Service] != nil {
			offered = true
			if req.To < l.today(now) {
				return WatchRecord{}, fmt.Errorf("%w: the watch ends in the past (%s)", ErrValidation, req.To)
			}
		}
	}
	if req.Office != "" {
		if _, err := e.office(req.Office); err != nil {
			return WatchRecord{}, err
		}
	}
	if !offered {
		return WatchRecord{}, fmt.Errorf("%w: no office of the watch offers %q", ErrServiceNotFound, req.Service)
	}
	id := req.ID
	if id == (ID{}) {
		id = e.newID()
	}
	w := &WatchRecord{ID: id, Applicant: req.Applicant, Service: req.Service, Office: req.Office, Region: req.Region,
		From: req.From, To: req.To, AutoHold: req.AutoHold, CreatedUnixNano: now.UnixNano(), Active: true}
	wl := &e.watches
	wl.mu.Lock()
	defer wl.mu.Unlock()
	if wl.perApplicant[req.Applicant] >= watchesPerApplicantMax {
		return WatchRecord{}, fmt.Errorf("%w: at most %d watches per applicant", ErrLimitReached, watchesPerApplicantMax)
	}
	if len(wl.list) >= watchesMax {
		return WatchRecord{}, fmt.Errorf("%w: too many watches", ErrOverloaded)
	}
	if req.ID != (ID{}) && slices.ContainsFunc(wl.list, func(x *WatchRecord) bool { return x.ID == req.ID }) {
		return WatchRecord{}, fmt.Errorf("%w: an active watch has the id %s", ErrValidation, req.ID)
	}
	if err := e.commit(&Change{Watches: []*WatchRecord{w}}, meta); err != nil {
		return WatchRecord{}, err
	}
	e.addWatchLocked(w)
	return *w, nil
}

func (e *Engine) addWatchLocked(w *WatchRecord) {
	wl := &e.watches
	if wl.perApplicant == nil {
		wl.perApplicant = map[string]int{}
	}
	wl.perApplicant[w.Applicant]++
	wl.insertLocked(w)
}

// Unwatch deletes an active watch of applicant.
func (e *Engine) Unwatch(now time.Time, id ID, applicant string, meta Meta) error {
	if err := e.writable(&meta); err != nil {
		return err
	}
	wl := &e.watches
	wl.mu.Lock()
	defer wl.mu.Unlock()
	var w *WatchRecord
	for _, x := range wl.list {
		if x.ID == id && (applicant == "" || x.Applicant == applicant) {
			w = x
		}
	}
	if w == nil {
		return fmt.Errorf("%w: %s", ErrWatchNotFound, id)
	}
	done := *w
	done.Active = false
	if err := e.commit(&Change{Watches: []*WatchRecord{&done}}, meta); err != nil {
		return err
	}
	wl.removeLocked(id)
	wl.dropLocked(w.Applicant)
	return nil
}

// GetWatch returns an active watch; a non-empty applicant must match.
func (e *Engine) GetWatch(id ID, applicant string) (WatchRecord, error) {
	wl := &e.watches
	wl.mu.Lock()
	defer wl.mu.Unlock()
	for _, w := range wl.list {
		if w.ID == id && (applicant == "" || w.Applicant == applicant) {
			return *w, nil
		}
	}
	return WatchRecord{}, fmt.Errorf("%w: %s", ErrWatchNotFound, id)
}

// RestoreWatch loads an active watch at recovery.
func (e *Engine) RestoreWatch(w *WatchRecord) error {
	if !w.Active {
		return nil
	}
	e.watches.mu.Lock()
	defer e.watches.mu.Unlock()
	e.addWatchLocked(w)
	return nil
}

// matches reports whether w wants a start of svc at o on date.
func (w *WatchRecord) matches(o *office, l *layout, date Date) bool {
	return (w.Office == o.id || (w.Office == "" && w.Region == l.cfg.Region)) &&
		date >= w.From && date <= w.To && l.services[w.Service] != nil
}

// takeWatch removes and returns the oldest watch accepting (o, d, step)
// for a run of at most slots steps, skipping the ids in skip.
func (e *Engine) takeWatch(now time.Time, o *office, l *layout, d *day, step, slots int, skip map[ID]bool) *WatchRecord {
	wl := &e.watches
	wl.mu.Lock()
	defer wl.mu.Unlock()
	for _, w := range wl.list {
		if skip[w.ID] || !w.matches(o, l, d.date) {
			continue
		}
		svc := l.services[w.Service]
		if svc.slots > slots || o.bookable(l, svc, d, step, now) != nil {
			continue
		}
		wl.removeLocked(w.ID)
		wl.dropLocked(w.Applicant)
		return w
	}
	return nil
}

// putBack returns a watch that could not be served (W2).
func (e *Engine) putBack(w *WatchRecord) {
	e.watches.mu.Lock()
	e.addWatchLocked(w)
	e.watches.mu.Unlock()
}

// freeSeat frees the run of a booking that left its active statuses,
// offering it to watches first (W1). Caller holds o's gate for reading and
// the lock of the booking that owned the run.
func (e *Engine) freeSeat(now time.Time, o *office, d *day, window, step, slots int) {
	if d.closed.Load() {
		return
	}
	if e.watches.n.Load() == 0 {
		d.release(window, step, slots)
		return
	}
	l := o.lay.Load()
	skip := map[ID]bool{}
	for {
		w := e.takeWatch(now, o, l, d, step, slots, skip)
		if w == nil {
			d.release(window, step, slots)
			return
		}
		svc := l.services[w.Service]
		if held := e.apps.activeOf(w.Applicant, w.Service); held != nil { // W5
			served, trimmed := e.offerMove(now, o, l, svc, w, held, d, window, step, slots)
			if served {
				return
			}
			skip[w.ID] = true
			if trimmed {
				slots = svc.slots
			}
			continue
		}
		if !w.AutoHold {
			d.release(window, step, slots)
			e.notifyWatch(now, o, l, w, d.clock.at(step))
			return
		}
		if svc.slots < slots { // the watch needs a shorter run: give back the tail
			d.release(window, step+svc.slots, slots-svc.slots)
		}
		if e.handOver(now, o, l, svc, w, d, window, step) {
			return
		}
		// Refused: the run (now svc.slots long) is still claimed; offer
		// it to the next watch.
		skip[w.ID] = true
		slots = svc.slots
	}
}

// handOver holds a claimed run (bits 0) for w's applicant. On a refusal of
// the applicant it keeps the run claimed, puts the watch back and returns
// false; on a commit failure it releases the run.
func (e *Engine) handOver(now time.Time, o *office, l *layout, svc *service, w *WatchRecord, d *day, window, step int) bool {
	ref, err := e.apps.reserve(w.Applicant, svc.id, l, now)
	if err != nil {
		e.putBack(w)
		return false
	}
	id, err := e.reserveToken(now, o, l, w.Applicant, svc.id)
	if err != nil {
		e.apps.unreserve(w.Applicant, svc.id)
		e.putBack(w)
		return false
	}
	meta := Meta{Actor: ActorSystem, Reason: "watch"}
	_, err = e.commitNewBooking(now, o, l, svc, d, window, step, w.Applicant, ref, id, false, meta, func(c *Change, rec *BookingRecord) {
		done := *w
		done.Active = false
		c.Watches = append(c.Watches, &done)
		c.Events = append(c.Events, Event{Type: EventWatchMatched, AtUnixNano: now.UnixNano(), Office: o.id,
			Booking: rec, Watch: &done, StartUnixNano: d.clock.at(step).UnixNano()})
	})
	if err != nil { // commitNewBooking released the run; the engine is degraded
		e.putBack(w)
		return true
	}
	e.counter.WatchMatches.Add(1)
	return true
}

// offerMove offers the claimed run (window, step, slots steps) on d at o
// to w, whose applicant holds held, an active booking of w's service (W5).
// It reports whether the seat was served (moved to, or, without auto_hold,
// released and notified) and whether the run was trimmed to svc.slots
// steps; when not served, w is back in the list and the run stays claimed.
func (e *Engine) offerMove(now time.Time, o *office, l *layout, svc *service, w *WatchRecord, held *booking,
	d *day, window, step, slots int) (served, trimmed bool) {
	if !held.tryLock() {
		e.putBack(w)
		return false, false
	}
	cur := held.rec.Load()
	start := d.clock.at(step)
	oo, err := e.office(cur.Office)
	if err != nil {
		panic("BUG: allocator: booking of an unknown office")
	}
	if !cur.Status.Active() || !start.Before(oo.seatStart(oo.lay.Load(), cur)) {
		held.unlock(cur.Status)
		e.putBack(w)
		return false, false
	}
	if !w.AutoHold {
		held.unlock(cur.Status)
		d.release(window, step, slots)
		e.notifyWatch(now, o, l, w, start)
		return true, false
	}
	if oo != o {
		if !oo.gate.TryRLock() {
			held.unlock(cur.Status)
			e.putBack(w)
			return false, false
		}
		defer oo.gate.RUnlock()
	}
	oldStart := oo.seatStart(oo.lay.Load(), cur)
	if rescheduleRefusal(now, cur, oo.lay.Load(), oldStart) != nil {
		held.unlock(cur.Status)
		e.putBack(w)
		return false, false
	}
	if svc.slots < slots { // the booking needs a shorter run: give back the tail
		d.release(window, step+svc.slots, slots-svc.slots)
	}
	meta := Meta{Actor: ActorSystem, Reason: "watch"}
	reason := "moved earlier by a watch from " + oldStart.Format(time.RFC3339)
	_, err = e.moveLocked(now, held, cur, oo, o, l, svc, d, window, step, meta, reason, func(c *Change, next *BookingRecord) {
		done := *w
		done.Active = false
		c.Watches = append(c.Watches, &done)
		c.Events = append(c.Events, Event{Type: EventWatchMatched, AtUnixNano: now.UnixNano(), Office: o.id,
			Booking: next, Watch: &done, StartUnixNano: start.UnixNano()})
	})
	if err != nil { // moveLocked released the run; the engine is degraded
		held.unlock(cur.Status)
		e.putBack(w)
		return true, true
	}
	held.unlock(StatusConfirmed)
	e.counter.WatchMatches.Add(1)
	return true, true
}

// notifyWatch ends w with a watch.matched event offering start.
func (e *Engine) notifyWatch(now time.Time, o *office, l *layout, w *WatchRecord, start time.Time) {
	done := *w
	done.Active = false
	c := &Change{Watches: []*WatchRecord{&done}, Events: []Event{{Type: EventWatchMatched, AtUnixNano: now.UnixNano(),
		Office: o.id, Watch: &done, StartUnixNano: start.UnixNano()}}}
	if err := e.commit(c, Meta{Actor: ActorSystem, Reason: "watch"}); err != nil {
		e.putBack(w)
		return
	}
	e.counter.WatchMatches.Add(1)
}

// offerReleased offers newly released dates [from, through] of o to the
// matching watches, oldest first (W4). Caller holds o.cfgMu.
func (e *Engine) offerReleased(now time.Time, o *office, from, through Date) {
	if e.watches.n.Load() == 0 {
		return
	}
	o.gate.RLock()
	defer o.gate.RUnlock()
	l := o.lay.Load()
	e.watches.mu.Lock()
	candidates := slices.Clone(e.watches.list)
	e.watches.mu.Unlock()
	for _, w := range candidates {
		svc := l.services[w.Service]
		lo, hi := max(from, w.From), min(through, w.To)
		if svc == nil || lo > hi || !(w.Office == o.id || (w.Office == "" && w.Region == l.cfg.Region)) {
			continue
		}
		got := o.firstFree(l, svc, l.wallInstant(lo, 0), now, 1, nil)
		if len(got) == 0 || DateOf(got[0].Start.In(l.loc)) > hi {
			continue
		}
		d := o.day(l, DateOf(got[0].Start.In(l.loc)))
		step, _ := d.clock.stepAt(got[0].Start)
		e.watches.mu.Lock()
		taken := e.watches.removeLocked(w.ID)
		if taken != nil {
			e.watches.dropLocked(w.Applicant)
		}
		e.watches.mu.Unlock()
		if taken == nil {
			continue // served meanwhile
		}
		held := e.apps.activeOf(w.Applicant, w.Service)
		if !w.AutoHold && held == nil {
			e.notifyWatch(now, o, l, w, got[0].Start)
			continue
		}
		window := d.claimAny(l.windows, step, svc.slots)
		if window < 0 {
			e.putBack(w)
			continue
		}
		if held != nil { // W5: served only by an earlier seat
			if served, _ := e.offerMove(now, o, l, svc, w, held, d, window, step, svc.slots); !served {
				d.release(window, step, svc.slots)
			}
			continue
		}
		if !e.handOver(now, o, l, svc, w, d, window, step) {
			d.release(window, step, svc.slots)
		}
	}
}
