package allocator

import (
	"fmt"
	"time"
)

// RescheduleRequest moves a confirmed booking to a new start, at the same
// office or (Office set) at another office offering the same service.
type RescheduleRequest struct {
	Applicant string
	Office    string // empty: the booking's office
	Start     time.Time
}

// Reschedule moves a confirmed booking to a new seat, keeping its id. The
// new seat is claimed and the change committed before the old seat is
// freed; any failure leaves the booking exactly as it was.
func (e *Engine) Reschedule(now time.Time, id ID, req RescheduleRequest, meta Meta) (Booking, error) {
	if err := e.writable(&meta); err != nil {
		return Booking{}, err
	}
	b := e.index.get(id)
	if b == nil || (req.Applicant != "" && b.rec.Load().Applicant != req.Applicant) {
		return Booking{}, fmt.Errorf("%w: %s", ErrBookingNotFound, id)
	}
	for {
		cur := b.rec.Load()
		oo, err := e.office(cur.Office)
		if err != nil {
			panic("BUG: allocator: booking of an unknown office")
		}
		no := oo
		if req.Office != "" && req.Office != cur.Office {
			if no, err = e.office(req.Office); err != nil {
				return Booking{}, err
			}
		}
		unlock := rlockGates(oo, no)
		b.lock()
		if b.rec.Load().Office != cur.Office {
			b.unlock(b.rec.Load().Status)
			unlock()
			continue
		}
		v, err := e.rescheduleLocked(now, b, oo, no, req.Start, meta)
		unlock()
		return v, err
	}
}

// rlockGates takes the read gates of a and b in id order (lock order).
func rlockGates(a, b *office) (unlock func()) {
	if a == b {
		a.gate.RLock()
		return a.gate.RUnlock
	}
	if b.id < a.id {
		a, b = b, a
	}
	a.gate.RLock()
	b.gate.RLock()
	return func() { b.gate.RUnlock(); a.gate.RUnlock() }
}

// rescheduleLocked: caller holds both gates for reading and b's lock bit,
// which is released here.
func (e *Engine) rescheduleLocked(now time.Time, b *booking, oo, no *office, start time.Time, meta Meta) (Booking, error) {
	cur := b.rec.Load()
	ol, nl := oo.lay.Load(), no.lay.Load()
	fail := func(err error) (Booking, error) {
		b.unlock(cur.Status)
		return Booking{}, err
	}
	if !cur.Status.Active() {
		return fail(refuse(cur, "reschedule"))
	}
	oldStart := oo.seatStart(ol, cur)
	if err := rescheduleRefusal(now, cur, ol, oldStart); err != nil {
		return fail(err)
	}
	svc := nl.services[cur.Service]
	if svc == nil {
		return fail(fmt.Errorf("%w: office %s has no service %q", ErrServiceNotFound, no.id, cur.Service))
	}
	if _, err := nl.gridDate(start); err != nil {
		return fail(err)
	}
	if no == oo && start.Equal(oldStart) {
		return fail(fmt.Errorf("%w: the booking is already at %s", ErrInvalidTransition, start.Format(time.RFC3339)))
	}
	nd, step, err := no.seatAt(nl, svc, start, now)
	if err != nil {
		return fail(err)
	}
	// The applicant's counts stay: a reschedule keeps the service, and a
	// service is its id at every office (DESIGN §1), so a move to another
	// office is neither a new booking nor a duplicate.
	w := nd.claimAny(nl.windows, step, svc.slots)
	if w < 0 {
		e.counter.SlotTaken.Add(1)
		return fail(ErrSlotTaken)
	}
	reason := meta.Reason
	if reason == "" {
		reason = "rescheduled from " + oldStart.Format(time.RFC3339)
	}
	next, err := e.moveLocked(now, b, cur, oo, no, nl, svc, nd, w, step, meta, reason, nil)
	if err != nil {
		return fail(err)
	}
	b.unlock(StatusConfirmed)
	return viewOf(&nd.clock, next), nil
}

// rescheduleRefusal returns why cur, at oldStart under its office's layout
// ol, may not move now, or nil. A move by a watch (W5) is a reschedule and
// is refused for the same reasons.
func rescheduleRefusal(now time.Time, cur *BookingRecord, ol *layout, oldStart time.Time) error {
	if cur.Status != StatusConfirmed {
		return refuse(cur, "reschedule")
	}
	if svc := ol.services[cur.Service]; svc == nil || !svc.reschedulable {
		return fmt.Errorf("%w: %s cannot be rescheduled; cancel and book again", ErrNotReschedulable, cur.Service)
	}
	if int(cur.Reschedules) >= ol.policy.maxReschedules {
		return fmt.Errorf("%w: already rescheduled %d times", ErrRescheduleLimit, cur.Reschedules)
	}
	if err := cur.History.checkRepeat("a reschedule"); err != nil {
		return err
	}
	if left := oldStart.Sub(now); left < ol.policy.rescheduleCutoff {
		return fmt.Errorf("%w: the appointment starts in %s, under the %s cutoff", ErrTooLateToReschedule, left.Round(time.Minute), ol.policy.rescheduleCutoff)
	}
	if n := ol.policy.rescheduleCutoffWorkingDays; !ol.workingDaysBefore(ol.today(now), DateOf(oldStart.In(ol.loc)), n) {
		return fmt.Errorf("%w: a reschedule must come %d working days before the appointment's day", ErrTooLateToReschedule, n)
	}
	return nil
}

// moveLocked moves b from cur's seat at oo to the run (w, step) of svc on
// nd at no (layout nl), which the caller has claimed: it commits the booking.rescheduled
// change (and what extend adds to it), and only then frees the old seat.
// On a commit failure it releases the new run and returns the error. The
// caller holds both offices' gates for reading and b's lock bit, which it
// clears itself.
func (e *Engine) moveLocked(now time.Time, b *booking, cur *BookingRecord, oo, no *office, nl *layout, svc *service, nd *day, w, step int,
	meta Meta, reason string, extend func(c *Change, next *BookingRecord)) (*BookingRecord, error) {
	next := cur.next(now, StatusConfirmed, meta.Actor, reason)
	next.Office, next.Date, next.Step, next.Slots, next.Window = no.id, nd.date, uint16(step), uint16(svc.slots), uint16(w)
	next.Seq = nd.seq.Add(1)
	next.Reschedules++
	ev := Event{Type: EventRescheduled, AtUnixNano: now.UnixNano(), Office: no.id, Booking: next, Reason: reason}
	mark := SeqMark{Office: cur.Office, Date: cur.Date, Seq: cur.Seq}
	c := &Change{Bookings: []*BookingRecord{next}, Events: []Event{ev}, SeqMarks: []SeqMark{mark}}
	if extend != nil {
		extend(c, next)
	}
	if err := e.commit(c, meta); err != nil {
		nd.release(w, step, svc.slots)
		return nil, err
	}
	oldDay := oo.seatDay(oo.lay.Load(), cur)
	b.rec.Store(next)
	no.agenda.add(nd.date, b)
	e.freeSeat(now, oo, oldDay, int(cur.Window), int(cur.Step), int(cur.Slots))
	e.schedule(now, no, nl, &nd.clock, b, next)
	e.counter.Reschedules.Add(1)
	return next, nil
}
