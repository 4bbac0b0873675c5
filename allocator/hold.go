package allocator

import (
	"errors"
	"fmt"
	"math/bits"
	"time"
)

// applicantBytesMax bounds the opaque applicant id. The HTTP edge
// composes it of the portal's namespace (at most 64 bytes), a separator
// and the portal's applicant id (at most 128).
const applicantBytesMax = 256

// HoldRequest asks for a new booking.
type HoldRequest struct {
	Office, Service, Applicant string
	// Start is the exact start wanted; when zero, EarliestAfter is used and
	// the first free start at or after it is taken.
	Start         time.Time
	EarliestAfter time.Time
	// Confirm holds and confirms in one step.
	Confirm bool
}

// Hold claims a seat and creates a held (or confirmed) booking. Claim in
// memory → commit → publish → return (invariant 3). Inside an office's
// release lottery window the request waits for the draw (lottery.go).
func (e *Engine) Hold(now time.Time, req HoldRequest, meta Meta) (Booking, error) {
	if err := e.writable(&meta); err != nil {
		return Booking{}, err
	}
	if req.Applicant == "" || len(req.Applicant) > applicantBytesMax {
		return Booking{}, fmt.Errorf("%w: applicant must be 1..%d bytes", ErrValidation, applicantBytesMax)
	}
	o, err := e.office(req.Office)
	if err != nil {
		return Booking{}, err
	}
	if lot := o.lottery.Load(); lot != nil && now.Before(lot.closes) {
		if res, entered := e.enterLottery(now, o, lot, req, meta); entered {
			return res.booking, res.err
		}
	}
	return e.hold(now, o, req, meta)
}

// hold is Hold without the lottery.
func (e *Engine) hold(now time.Time, o *office, req HoldRequest, meta Meta) (Booking, error) {
	var err error
	o.gate.RLock()
	defer o.gate.RUnlock()
	l := o.lay.Load()
	svc := l.services[req.Service]
	if svc == nil {
		return Booking{}, fmt.Errorf("%w: office %s has no service %q", ErrServiceNotFound, o.id, req.Service)
	}
	var d *day
	var step int
	if !req.Start.IsZero() {
		if d, step, err = o.seatAt(l, svc, req.Start, now); err != nil {
			return Booking{}, err
		}
	}
	ref, err := e.apps.reserve(req.Applicant, svc.id, l, now)
	if err != nil {
		return Booking{}, fmt.Errorf("%w: applicant at office %s", err, o.id)
	}
	w := -1
	if !req.Start.IsZero() {
		w = d.claimAny(l.windows, step, svc.slots)
	} else {
		d, step, w = o.claimFirstFree(l, svc, req.EarliestAfter, now)
	}
	if w < 0 {
		e.apps.unreserve(req.Applicant, svc.id)
		e.counter.SlotTaken.Add(1)
		return Booking{}, ErrSlotTaken
	}
	id, err := e.reserveToken(now, o, l, req.Applicant, svc.id) // G1
	if err != nil {
		d.release(w, step, svc.slots)
		e.apps.unreserve(req.Applicant, svc.id)
		return Booking{}, err
	}
	return e.commitNewBooking(now, o, l, svc, d, w, step, req.Applicant, ref, id, req.Confirm, meta, nil)
}

// reserveToken picks the id of a new booking of applicant for service at
// o and, with a ledger, reserves the booking's token there (G1). Without
// one it returns the zero id: commitNewBooking picks the id.
func (e *Engine) reserveToken(now time.Time, o *office, l *layout, applicant, service string) (ID, error) {
	if e.ledger == nil {
		return ID{}, nil
	}
	id := e.newID()
	if err := e.ledger.Reserve(applicant, id, service, now.UnixNano(), l.policy.maxActivePerApplicant); err != nil {
		if errors.Is(err, ErrLimitReached) || errors.Is(err, ErrDuplicateBooking) {
			return ID{}, fmt.Errorf("%w: applicant at office %s, counting every office", err, o.id)
		}
		return ID{}, err
	}
	return id, nil
}

// releaseToken releases the token of booking id of applicant, if the
// engine has a ledger and id is a token's (G3).
func (e *Engine) releaseToken(applicant string, id ID) {
	if e.ledger != nil && id != (ID{}) {
		e.ledger.Release(applicant, id)
	}
}

// commitNewBooking creates the booking of a seat already claimed (bits 0)
// and reserved for applicant: commit → publish. extra, if set, adds to the
// change before the commit (a watch hand-over). On failure it gives the
// seat and the reservation back. ref is the applicant's entry as reserve
// returned it; id is the booking's id as reserveToken picked it, the zero
// id for a new one. A failed commit keeps the token (G2).
func (e *Engine) commitNewBooking(now time.Time, o *office, l *layout, svc *service, d *day, w, step int,
	applicant string, ref applicantRef, id ID, confirm bool, meta Meta, extra func(c *Change, rec *BookingRecord)) (Booking, error) {
	if id == (ID{}) {
		id = e.newID()
	}
	rec := &BookingRecord{
		ID: id, Office: o.id, Service: svc.id, Applicant: applicant,
		Date: d.date, Step: uint16(step), Slots: uint16(svc.slots), Window: uint16(w),
		Seq: d.seq.Add(1), Status: StatusHeld,
		HoldExpiresUnixNano: now.Add(l.policy.holdTTL).UnixNano(),
	}
	held := Transition{AtUnixNano: now.UnixNano(), Status: StatusHeld, Actor: meta.Actor, Reason: meta.Reason}
	bc := newBookingChange(rec)
	defer bc.release()
	c := &bc.Change
	c.Events = append(c.Events, Event{Type: EventHeld, AtUnixNano: now.UnixNano(), Office: o.id, Booking: rec})
	if !confirm {
		rec.History = HistoryOf(held)
	} else {
		st, event := confirmedStatus(svc)
		rec.Status = st
		rec.HoldExpiresUnixNano = 0
		rec.History = HistoryOf(held, Transition{AtUnixNano: now.UnixNano(), Status: st, Actor: meta.Actor})
		c.Events = append(c.Events, Event{Type: event, AtUnixNano: now.UnixNano(), Office: o.id, Booking: rec})
	}
	if extra != nil {
		extra(c, rec)
	}
	if err := e.commit(c, meta); err != nil {
		d.release(w, step, svc.slots)
		e.apps.unreserve(applicant, svc.id)
		return Booking{}, err
	}
	b := &booking{}
	b.rec.Store(rec)
	b.state.Store(uint32(rec.Status))
	ref.add(b) // before anyone can find the booking to end it (A3)
	if !e.index.put(rec.ID, b) {
		panic("BUG: allocator: booking id collision")
	}
	o.agenda.add(d.date, b)
	e.schedule(now, o, l, &d.clock, b, rec)
	e.counter.Holds.Add(1)
	e.counter.moved(0, rec.Status)
	e.counter.Transitions[StatusHeld].Add(1)
	if confirm {
		e.counter.Transitions[rec.Status].Add(1)
	}
	return viewOf(&d.clock, rec), nil
}

// schedule puts the timers a record in its status needs on o's wheel; c
// is the clock of the record's date.
func (e *Engine) schedule(now time.Time, o *office, l *layout, c *dayClock, b *booking, rec *BookingRecord) {
	switch rec.Status {
	case StatusHeld:
		o.wheel.add(time.Unix(0, rec.HoldExpiresUnixNano), b)
	case StatusConfirmed:
		// One timer per booking: the reminder when one is still due (its
		// firing schedules the no-show), else the no-show. Both count
		// from the seat's instant, so the day the clocks change moves
		// neither.
		start := c.at(int(rec.Step))
		if l.policy.reminderBefore > 0 && rec.RemindedUnixNano != start.UnixNano() && now.Before(start) {
			o.wheel.add(start.Add(-l.policy.reminderBefore), b)
		} else {
			o.wheel.add(start.Add(l.policy.noShowGrace), b)
		}
	case StatusAwaitingApproval:
		o.wheel.add(approvalDeadline(l, c.at(int(rec.Step))), b)
	}
}

// claimAny claims the run at the lowest window that has it free, or
// returns -1. The isFree look before claim is not redundant: for a run
// across two words it keeps claim from taking the first word and giving it
// back (C2) whenever the second is taken, which would briefly hide free
// seats from racing claimers.
func (d *day) claimAny(windows, step, slots int) int {
	for w := 0; w < windows; w++ {
		if d.isFree(w, step, slots) && d.claim(w, step, slots) {
			return w
		}
	}
	return -1
}

// seatAt maps the exact start t to its day and step at o and checks the
// release rule for a run of svc there. A start is an instant, whatever
// offset it is written with: 02:30+01:00 on the night Berlin skips
// 02:00–03:00 is the seat of 03:30+02:00. A start off the office's
// wall-clock grid is malformed (ErrValidation, 400). One on the grid that
// is no seat of its date is refused like a start outside opening hours
// (ErrNotReleased, 422), not as malformed: the request is well formed and
// the same clock time is a seat on other days; only on the night the
// clocks go back, on a grid coarser than the change (2 hours, a change of
// 1), the seat begun at that clock time before the change still runs then
// (dayclock.go).
func (o *office) seatAt(l *layout, svc *service, t, now time.Time) (*day, int, error) {
	date, err := l.gridDate(t)
	if err != nil {
		return nil, 0, err
	}
	if err := o.bookableDate(l, svc, date, now); err != nil {
		return nil, 0, err
	}
	d := o.day(l, date)
	step, ok := d.clock.stepAt(t)
	if !ok {
		return nil, 0, fmt.Errorf("%w: no seat starts at %s: the clocks change that night and the seat before it still runs then", ErrNotReleased, t.In(l.loc).Format(time.RFC3339))
	}
	if err := d.bookableRun(svc, step, now, l.policy.minNotice); err != nil {
		return nil, 0, err
	}
	return d, step, nil
}

// gridDate checks that t is on the office's grid (a grid label of its wall
// clock, whole minutes) and returns its office-local date.
func (l *layout) gridDate(t time.Time) (Date, error) {
	lt := t.In(l.loc)
	minute := lt.Hour()*60 + lt.Minute()
	if lt.Second() != 0 || lt.Nanosecond() != 0 || minute%l.stepMinutes != 0 {
		return 0, fmt.Errorf("%w: start %s is not on the office's %d-minute grid", ErrValidation, t.Format(time.RFC3339), l.stepMinutes)
	}
	return DateOf(lt), nil
}

// bookable checks the release rule for a run of svc at step of d.
func (o *office) bookable(l *layout, svc *service, d *day, step int, now time.Time) error {
	if err := o.bookableDate(l, svc, d.date, now); err != nil {
		return err
	}
	return d.bookableRun(svc, step, now, l.policy.minNotice)
}

// bookableRun checks the run part of the release rule: the run of svc
// from step fits in the day, lies within opening hours without a gap,
// and starts after now + minNotice (the policy's min_notice).
func (d *day) bookableRun(svc *service, step int, now time.Time, minNotice time.Duration) error {
	if step+svc.slots > int(d.clock.n) {
		return fmt.Errorf("%w: a %d-step %s does not fit before midnight", ErrNotReleased, svc.slots, svc.id)
	}
	for s := step; s < step+svc.slots; s++ {
		if d.isOpen(s) {
			continue
		}
		if d.clock.label(s) == deadStep {
			return fmt.Errorf("%w: a %d-step %s from %s would run across the gap the clock change leaves", ErrNotReleased, svc.slots, svc.id, d.clock.at(step).Format(time.RFC3339))
		}
		return fmt.Errorf("%w: %s at %s is outside the office's hours", ErrNotReleased, svc.id, d.clock.at(step).Format(time.RFC3339))
	}
	if d.clock.startUnix(step) <= now.Unix() {
		return fmt.Errorf("%w: %s is in the past", ErrNotReleased, d.clock.at(step).Format(time.RFC3339))
	}
	if d.clock.startUnix(step) <= now.Add(minNotice).Unix() {
		return fmt.Errorf("%w: %s is within the office's %s minimum notice", ErrNotReleased, d.clock.at(step).Format(time.RFC3339), minNotice)
	}
	return nil
}

// bookableDate checks the date part of the release rule.
func (o *office) bookableDate(l *layout, svc *service, date Date, now time.Time) error {
	switch o.refuseDate(l, svc, date, now) {
	case datePast:
		return fmt.Errorf("%w: %s is in the past", ErrNotReleased, date)
	case dateNotReleased:
		return fmt.Errorf("%w: %s is not released yet (released through %s)", ErrNotReleased, date, Date(o.releasedThrough.Load()))
	case dateClosed:
		return fmt.Errorf("%w: office %s is closed on %s", ErrNotReleased, o.id, date)
	case dateServiceOff:
		return fmt.Errorf("%w: %s is not offered on %s", ErrNotReleased, svc.id, date.Weekday())
	case dateOfficeShut:
		return fmt.Errorf("%w: office %s is not open on %s", ErrNotReleased, o.id, date.Weekday())
	}
	return nil
}

// dateRefusal is why a date cannot be booked, dateBookable when it can:
// bookableDate's verdict without the error, for the availability reads
// that pass over many dates and only skip the refused ones.
type dateRefusal uint8

const (
	dateBookable dateRefusal = iota
	datePast
	dateNotReleased
	dateClosed
	dateServiceOff
	dateOfficeShut
)

func (o *office) refuseDate(l *layout, svc *service, date Date, now time.Time) dateRefusal {
	switch {
	case date < l.today(now):
		return datePast
	case date > Date(o.releasedThrough.Load()):
		return dateNotReleased
	case l.closures[date]:
		return dateClosed
	case !svc.weekdays[date.Weekday()]:
		return dateServiceOff
	case l.openSteps[date.Weekday()] == 0:
		return dateOfficeShut
	}
	return dateBookable
}

// claimFirstFree claims the first free run of svc at or after from. It
// returns the day, step and window, or window -1.
func (o *office) claimFirstFree(l *layout, svc *service, from, now time.Time) (*day, int, int) {
	var starts, union [8]uint64
	var got *day
	step, window := 0, -1
	o.eachCandidateDay(l, svc, from, now, func(d *day, first int) bool {
		for {
			u := union[:l.words]
			clear(u)
			for w := 0; w < l.windows; w++ {
				d.startsOf(w, svc.slots, starts[:l.words])
				for i := range u {
					u[i] |= starts[i]
				}
			}
			s := nextSet(u, first)
			if s < 0 {
				return true // nothing left on this day: the next one
			}
			if w := d.claimAny(l.windows, s, svc.slots); w >= 0 {
				got, step, window = d, s, w
				return false
			}
			first = s // lost a race for it: look again from the same step
		}
	})
	return got, step, window
}

// nextSet returns the first set bit at index ≥ from, or -1.
func nextSet(words []uint64, from int) int {
	for i := from / 64; i < len(words); i++ {
		w := words[i]
		if i == from/64 {
			w &= ^uint64(0) << (from % 64)
		}
		if w != 0 {
			return i*64 + bits.TrailingZeros64(w)
		}
	}
	return -1
}
