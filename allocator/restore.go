package allocator

import (
	"cmp"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Recovery. The journal reads back the latest record of every office and
// booking and feeds them here before the engine serves: offices first
// (RestoreOffice), then bookings in any order (RestoreBooking), then
// RestoreDone. Afterwards the caller runs Tick(now), which expires the holds
// whose time passed while the process was down, through the journal like
// any other change. RestoreBooking (and RestoreWatch, RestoreSeqMark) are
// safe for concurrent use with each other, so a journal may feed them from
// several goroutines; every RestoreOffice must come before them and
// RestoreDone after them, and none may run while the engine serves.

// RestoreOffice loads one office as it was last committed.
func (e *Engine) RestoreOffice(rec OfficeRecord) error {
	l, err := compileLayout(rec.Config)
	if err != nil {
		return fmt.Errorf("cannot restore office %q: %w", rec.Config.ID, err)
	}
	e.officesMu.Lock()
	defer e.officesMu.Unlock()
	if (*e.offices.Load())[l.cfg.ID] != nil {
		return fmt.Errorf("cannot restore office %q: loaded twice", l.cfg.ID)
	}
	o := e.newOffice(l)
	o.releasedThrough.Store(int32(rec.ReleasedThrough))
	e.addOfficeLocked(o)
	return nil
}

// RestoreBooking loads one booking as it was last committed. An active
// booking takes its seat back; a seat found taken means two active
// bookings own it, and recovery stops with an error naming both.
func (e *Engine) RestoreBooking(rec *BookingRecord) error {
	if err := rec.Check(); err != nil {
		return fmt.Errorf("cannot restore booking: %w", err)
	}
	o, err := e.office(rec.Office)
	if err != nil {
		return fmt.Errorf("cannot restore booking %s: %w", rec.ID, err)
	}
	l := o.lay.Load()
	d := o.day(l, rec.Date)
	// An active booking's run must be steps of its day. A terminal one
	// owns no seat and only needs to fit the layout: a record written
	// before steps were instants may name a label past the steps of a
	// night the clocks went forward.
	steps := l.stepsMax
	if rec.Status.Active() {
		steps = int(d.clock.n)
	}
	if int(rec.Window) >= l.windows || int(rec.Step)+int(rec.Slots) > steps {
		return fmt.Errorf("cannot restore booking %s: seat window %d step %d+%d is outside office %s on %s", rec.ID, rec.Window, rec.Step, rec.Slots, o.id, rec.Date)
	}
	// A closed day has every bit at 0 (CloseDate withdrew them), yet a
	// checked_in booking keeps its status through the closure: its seat
	// stays taken without a claim, as in the running engine.
	if rec.Status.Active() && !d.closed.Load() {
		if !d.claim(int(rec.Window), int(rec.Step), int(rec.Slots)) {
			return fmt.Errorf("cannot restore booking %s (%s): its seat is taken by another active booking or lies outside the office's hours", rec.ID, bookingNumber(rec.Office, rec.Date, rec.Seq))
		}
	}
	d.raiseSeq(rec.Seq)
	b := &booking{}
	b.rec.Store(rec)
	b.state.Store(uint32(rec.Status))
	if !e.index.put(rec.ID, b) {
		return fmt.Errorf("cannot restore booking %s: loaded twice", rec.ID)
	}
	o.agenda.add(rec.Date, b)
	e.counter.moved(0, rec.Status)
	sh := e.apps.shard(rec.Applicant)
	sh.mu.Lock()
	st := sh.stateLocked(rec.Applicant)
	st.bookings = append(st.bookings, b)
	if rec.Status.Active() {
		st.addService(e.apps.services.id(rec.Service), 1)
	}
	sh.mu.Unlock()
	// The time is not known yet: schedule as if before the start; a
	// reminder whose moment passed hands over to the no-show when it fires.
	e.schedule(time.Time{}, o, l, &d.clock, b, rec)
	return nil
}

// RestoreSeqMark raises the number counter of (office, date) to at least
// m.Seq, so no booking number is issued twice across restarts.
func (e *Engine) RestoreSeqMark(m SeqMark) error {
	o, err := e.office(m.Office)
	if err != nil {
		return fmt.Errorf("cannot restore number mark %s/%s: %w", m.Office, m.Date, err)
	}
	d := o.day(o.lay.Load(), m.Date)
	d.raiseSeq(m.Seq)
	return nil
}

// RestoreDone finishes recovery: it orders each applicant's bookings by
// creation and replays the penalty history to restore blocks. Applicant
// shards are independent, so one worker per core takes shards in turn.
func (e *Engine) RestoreDone(now time.Time) error {
	var next atomic.Int32
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < len(e.apps.shards); i = int(next.Add(1)) - 1 {
				sh := &e.apps.shards[i]
				sh.mu.Lock()
				for _, st := range sh.m {
					e.restoreApplicantLocked(st)
				}
				sh.mu.Unlock()
			}
		})
	}
	wg.Wait()
	return nil
}

// restoreApplicantLocked orders st's bookings and rebuilds its penalties.
// Caller holds st's shard mutex.
func (e *Engine) restoreApplicantLocked(st *applicantState) {
	slices.SortStableFunc(st.bookings, func(a, b *booking) int {
		return cmp.Compare(a.rec.Load().History.First().AtUnixNano, b.rec.Load().History.First().AtUnixNano)
	})
	type penalty struct {
		at int64
		p  *policy
	}
	var ps []penalty
	for _, b := range st.bookings {
		r := b.rec.Load()
		var o *office
		for _, t := range r.History.All() {
			if !t.Penalty {
				continue
			}
			if o == nil { // most bookings have no penalty: look the office up only for those that do
				var err error
				if o, err = e.office(r.Office); err != nil {
					break
				}
			}
			ps = append(ps, penalty{t.AtUnixNano, &o.lay.Load().policy})
		}
	}
	slices.SortFunc(ps, func(a, b penalty) int { return cmp.Compare(a.at, b.at) })
	st.pen = nil
	for _, p := range ps {
		if p.p.penaltyCount > 0 {
			penaliseLocked(st, p.p, p.at)
		}
	}
}
