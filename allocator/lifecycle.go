package allocator

import (
	"fmt"
	"time"
)

// next returns a copy of r in status s with the transition appended.
func (r *BookingRecord) next(now time.Time, s Status, actor, reason string) *BookingRecord {
	n := *r
	n.Status = s
	if s != StatusHeld {
		n.HoldExpiresUnixNano = 0
	}
	n.History = r.History.Append(Transition{AtUnixNano: now.UnixNano(), Status: s, Actor: actor, Reason: reason})
	return &n
}

// effect says what happens around the commit of one transition.
type effect struct {
	next      *BookingRecord
	event     string
	free      bool // the seat is freed after the commit (L3)
	leave     bool // the booking leaves the active statuses: applicant count
	penalise  bool // counts towards the applicant's cancel penalty
	scheduled bool // timers for the new status go on the wheel
	reminder  bool // not a status change: a reminder.due was emitted
}

// decider checks a transition against the current record and policy;
// start is the instant of the record's seat, zero when the record is
// terminal (every decider refuses a terminal record before reading it).
type decider func(l *layout, cur *BookingRecord, start time.Time) (effect, error)

// transition runs one status change under the lifecycle protocol (L1–L3):
// gate (read) → lock bit → decide → commit → publish record → free seat →
// unlock. applicant, when not empty, must match the booking's.
func (e *Engine) transition(now time.Time, id ID, applicant string, meta Meta, decide decider) (Booking, error) {
	if err := e.writable(&meta); err != nil {
		return Booking{}, err
	}
	b := e.index.get(id)
	if b == nil {
		return Booking{}, fmt.Errorf("%w: %s", ErrBookingNotFound, id)
	}
	if applicant != "" && b.rec.Load().Applicant != applicant {
		return Booking{}, fmt.Errorf("%w: %s", ErrBookingNotFound, id) // as if it did not exist
	}
	for {
		officeID := b.rec.Load().Office
		o, err := e.office(officeID)
		if err != nil {
			panic("BUG: allocator: booking of an unknown office")
		}
		o.gate.RLock()
		b.lock()
		cur := b.rec.Load()
		if cur.Office != officeID { // moved by a reschedule meanwhile
			b.unlock(cur.Status)
			o.gate.RUnlock()
			continue
		}
		v, err := e.transitionLocked(now, o, b, cur, meta, decide)
		o.gate.RUnlock()
		return v, err
	}
}

// transitionLocked: caller holds o.gate for reading and b's lock bit; it
// is released here.
func (e *Engine) transitionLocked(now time.Time, o *office, b *booking, cur *BookingRecord, meta Meta, decide decider) (Booking, error) {
	l := o.lay.Load()
	var d *day // the seat's day, of an active record
	var start time.Time
	if cur.Status.Active() {
		d = o.seatDay(l, cur)
		start = d.clock.at(int(cur.Step))
	}
	ef, err := decide(l, cur, start)
	if err == nil {
		err = checkGrowth(cur, ef.next)
	}
	if err != nil {
		b.unlock(cur.Status)
		return Booking{}, err
	}
	if ef.penalise {
		ef.next.History = ef.next.History.withLastPenalty()
	}
	bc := newBookingChange(ef.next)
	defer bc.release()
	c := &bc.Change
	c.Events = append(c.Events, Event{Type: ef.event, AtUnixNano: now.UnixNano(), Office: o.id, Booking: ef.next, Reason: meta.Reason})
	if err := e.commit(c, meta); err != nil {
		b.unlock(cur.Status)
		return Booking{}, err
	}
	b.rec.Store(ef.next) // L2
	if ef.free {
		e.freeSeat(now, o, d, int(cur.Window), int(cur.Step), int(cur.Slots)) // L3, W1
	}
	if ef.leave {
		e.apps.unreserve(cur.Applicant, cur.Service)
	}
	if ef.penalise {
		e.apps.penalise(cur.Applicant, &l.policy, now)
	}
	if ef.scheduled {
		e.schedule(now, o, l, &d.clock, b, ef.next)
	}
	if ef.reminder {
		e.counter.Reminders.Add(1)
	} else {
		e.counter.moved(cur.Status, ef.next.Status)
		e.counter.Transitions[ef.next.Status].Add(1)
	}
	b.unlock(ef.next.Status)
	if ef.leave {
		e.releaseToken(cur.Applicant, cur.ID) // G3
	}
	return viewOf(&d.clock, ef.next), nil
}

func refuse(cur *BookingRecord, action string) error {
	return fmt.Errorf("%w: cannot %s a %s booking", ErrInvalidTransition, action, cur.Status)
}

// Confirm moves a held booking to confirmed, or, for a service that
// requires approval, to awaiting_approval. A hold past its expiry cannot
// be confirmed even if the wheel has not fired yet.
func (e *Engine) Confirm(now time.Time, id ID, applicant string, meta Meta) (Booking, error) {
	return e.transition(now, id, applicant, meta, func(l *layout, cur *BookingRecord, start time.Time) (effect, error) {
		if cur.Status != StatusHeld {
			return effect{}, refuse(cur, "confirm")
		}
		if now.UnixNano() >= cur.HoldExpiresUnixNano {
			return effect{}, fmt.Errorf("%w: the hold expired at %s", ErrInvalidTransition, time.Unix(0, cur.HoldExpiresUnixNano).In(l.loc).Format(time.RFC3339))
		}
		st, event := confirmedStatus(l.services[cur.Service])
		return effect{next: cur.next(now, st, meta.Actor, meta.Reason), event: event, scheduled: true}, nil
	})
}

// confirmedStatus is the status an applicant's confirm of svc enters and
// its event: awaiting_approval when svc requires approval, else
// confirmed.
func confirmedStatus(svc *service) (Status, string) {
	if svc != nil && svc.requiresApproval {
		return StatusAwaitingApproval, EventAwaitingApproval
	}
	return StatusConfirmed, EventConfirmed
}

// approvalDeadline is the last instant an operator may approve a booking
// starting at start: its start + no_show_grace, the instant a confirmed
// booking becomes a no-show. Unapproved then, it expires (Tick).
func approvalDeadline(l *layout, start time.Time) time.Time {
	return start.Add(l.policy.noShowGrace)
}

// Approve (operator) confirms a booking awaiting approval, until its
// approval deadline.
func (e *Engine) Approve(now time.Time, id ID, meta Meta) (Booking, error) {
	return e.transition(now, id, "", meta, func(l *layout, cur *BookingRecord, start time.Time) (effect, error) {
		if cur.Status != StatusAwaitingApproval {
			return effect{}, refuse(cur, "approve")
		}
		if deadline := approvalDeadline(l, start); !now.Before(deadline) {
			return effect{}, fmt.Errorf("%w: the approval was due by %s", ErrInvalidTransition, deadline.In(l.loc).Format(time.RFC3339))
		}
		return effect{next: cur.next(now, StatusConfirmed, meta.Actor, meta.Reason), event: EventConfirmed, scheduled: true}, nil
	})
}

// Reject (operator) refuses a booking awaiting approval: it becomes
// rejected and frees its seat. The reason is required: the applicant is
// told why. It does not count towards the penalty.
func (e *Engine) Reject(now time.Time, id ID, meta Meta) (Booking, error) {
	if meta.Reason == "" {
		return Booking{}, fmt.Errorf("%w: a rejection needs a reason", ErrValidation)
	}
	return e.transition(now, id, "", meta, func(l *layout, cur *BookingRecord, start time.Time) (effect, error) {
		if cur.Status != StatusAwaitingApproval {
			return effect{}, refuse(cur, "reject")
		}
		return effect{next: cur.next(now, StatusRejected, meta.Actor, meta.Reason), event: EventRejected, free: true, leave: true}, nil
	})
}

// Cancel is the applicant's cancel: a hold is cancelled at once; a
// confirmed booking is cancelled when at least cancel_cutoff before its
// start, becomes cancel_requested between late_cancel_floor and the cutoff,
// and is refused under the floor. A confirmed booking of a service with
// online_cancel off is refused (ErrCancelNotOnline): the office cancels
// it (ForceCancel). Its hold is still let go: an unconfirmed hold expires
// by itself anyway, and dropping it early only frees the seat sooner. A
// request awaiting approval is withdrawn at once, like a hold, whatever
// the cutoffs: the office has not accepted it, so it is no appointment
// yet and its withdrawal no late cancel.
func (e *Engine) Cancel(now time.Time, id ID, applicant string, meta Meta) (Booking, error) {
	return e.transition(now, id, applicant, meta, func(l *layout, cur *BookingRecord, start time.Time) (effect, error) {
		switch cur.Status {
		case StatusHeld, StatusAwaitingApproval:
			return effect{next: cur.next(now, StatusCancelled, meta.Actor, meta.Reason), event: EventCancelled, free: true, leave: true}, nil
		case StatusConfirmed:
			if svc := l.services[cur.Service]; svc != nil && !svc.onlineCancel {
				return effect{}, fmt.Errorf("%w: %s bookings are cancelled by the office; ask the office", ErrCancelNotOnline, cur.Service)
			}
			left := start.Sub(now)
			early := l.workingDaysBefore(l.today(now), DateOf(start.In(l.loc)), l.policy.cancelCutoffWorkingDays)
			switch {
			case left >= l.policy.cancelCutoff && early:
				return effect{next: cur.next(now, StatusCancelled, meta.Actor, meta.Reason), event: EventCancelled, free: true, leave: true, penalise: true}, nil
			case left >= l.policy.lateCancelFloor:
				// A request the operator rejects leaves the booking
				// confirmed again: the one round that can repeat.
				if err := cur.History.checkRepeat("another late cancel"); err != nil {
					return effect{}, err
				}
				return effect{next: cur.next(now, StatusCancelRequested, meta.Actor, meta.Reason), event: EventCancelRequested}, nil
			default:
				return effect{}, fmt.Errorf("%w: the appointment starts in %s, under the %s floor; ask the office", ErrTooLateToCancel, left.Round(time.Minute), l.policy.lateCancelFloor)
			}
		}
		return effect{}, refuse(cur, "cancel")
	})
}

// ApproveCancel (operator) turns a cancel request into a cancellation.
func (e *Engine) ApproveCancel(now time.Time, id ID, meta Meta) (Booking, error) {
	return e.transition(now, id, "", meta, func(l *layout, cur *BookingRecord, start time.Time) (effect, error) {
		if cur.Status != StatusCancelRequested {
			return effect{}, refuse(cur, "approve the cancel of")
		}
		return effect{next: cur.next(now, StatusCancelled, meta.Actor, meta.Reason), event: EventCancelled, free: true, leave: true, penalise: true}, nil
	})
}

// RejectCancel (operator) keeps the booking confirmed.
func (e *Engine) RejectCancel(now time.Time, id ID, meta Meta) (Booking, error) {
	return e.transition(now, id, "", meta, func(l *layout, cur *BookingRecord, start time.Time) (effect, error) {
		if cur.Status != StatusCancelRequested {
			return effect{}, refuse(cur, "reject the cancel of")
		}
		// scheduled: the no-show timer set at confirm may have fired while
		// the booking was cancel_requested and been dropped as stale; the
		// booking is confirmed again, so it needs its timers again.
		return effect{next: cur.next(now, StatusConfirmed, meta.Actor, meta.Reason), event: EventConfirmed, scheduled: true}, nil
	})
}

// ForceCancel (operator) cancels a held, confirmed, awaiting_approval or
// cancel_requested booking regardless of cutoffs. It does not count
// towards the penalty.
func (e *Engine) ForceCancel(now time.Time, id ID, meta Meta) (Booking, error) {
	return e.transition(now, id, "", meta, func(l *layout, cur *BookingRecord, start time.Time) (effect, error) {
		switch cur.Status {
		case StatusHeld, StatusConfirmed, StatusAwaitingApproval, StatusCancelRequested:
			return effect{next: cur.next(now, StatusCancelled, meta.Actor, meta.Reason), event: EventCancelled, free: true, leave: true}, nil
		}
		return effect{}, refuse(cur, "force-cancel")
	})
}

// CheckIn (operator) marks a confirmed booking as arrived, on the day of
// the appointment only.
func (e *Engine) CheckIn(now time.Time, id ID, meta Meta) (Booking, error) {
	return e.transition(now, id, "", meta, func(l *layout, cur *BookingRecord, start time.Time) (effect, error) {
		if cur.Status != StatusConfirmed {
			return effect{}, refuse(cur, "check in")
		}
		if l.today(now) != cur.Date {
			return effect{}, fmt.Errorf("%w: check-in is possible on %s only", ErrInvalidTransition, cur.Date)
		}
		return effect{next: cur.next(now, StatusCheckedIn, meta.Actor, meta.Reason), event: EventCheckedIn}, nil
	})
}

// Complete (operator) ends a checked-in visit and frees the seat.
func (e *Engine) Complete(now time.Time, id ID, meta Meta) (Booking, error) {
	return e.transition(now, id, "", meta, func(l *layout, cur *BookingRecord, start time.Time) (effect, error) {
		if cur.Status != StatusCheckedIn {
			return effect{}, refuse(cur, "complete")
		}
		return effect{next: cur.next(now, StatusCompleted, meta.Actor, meta.Reason), event: EventCompleted, free: true, leave: true}, nil
	})
}

// NoShow (operator) marks a confirmed booking whose start has passed as a
// no-show; it counts towards the penalty. The engine does the same by
// itself at start + no_show_grace.
func (e *Engine) NoShow(now time.Time, id ID, meta Meta) (Booking, error) {
	return e.transition(now, id, "", meta, func(l *layout, cur *BookingRecord, start time.Time) (effect, error) {
		if cur.Status != StatusConfirmed {
			return effect{}, refuse(cur, "mark as no-show")
		}
		if now.Before(start) {
			return effect{}, fmt.Errorf("%w: the appointment has not started yet", ErrInvalidTransition)
		}
		return effect{next: cur.next(now, StatusNoShow, meta.Actor, meta.Reason), event: EventNoShow, free: true, leave: true, penalise: true}, nil
	})
}

// Get returns a booking. A non-empty applicant must match, or the booking
// is reported as not found.
func (e *Engine) Get(id ID, applicant string) (Booking, error) {
	b := e.index.get(id)
	if b == nil {
		return Booking{}, fmt.Errorf("%w: %s", ErrBookingNotFound, id)
	}
	rec := b.rec.Load()
	if applicant != "" && rec.Applicant != applicant {
		return Booking{}, fmt.Errorf("%w: %s", ErrBookingNotFound, id)
	}
	v, _ := e.View(rec)
	return v, nil
}

// ListFilter selects an applicant's bookings. Zero fields select all.
type ListFilter struct {
	Status   Status
	Office   string
	From, To Date // by appointment date, inclusive; zero: open
}

// List returns up to limit bookings of applicant matching f, in creation
// order, starting at position from of the applicant's list. next is the
// position to continue from, or -1 when there is no more.
func (e *Engine) List(applicant string, f ListFilter, from, limit int) (out []Booking, next int) {
	all := e.apps.list(applicant)
	for i := max(from, 0); i < len(all); i++ {
		r := all[i].rec.Load()
		if (f.Status != 0 && r.Status != f.Status) || (f.Office != "" && r.Office != f.Office) ||
			(f.From != 0 && r.Date < f.From) || (f.To != 0 && r.Date > f.To) {
			continue
		}
		if len(out) == limit {
			return out, i
		}
		v, _ := e.View(r)
		out = append(out, v)
	}
	return out, -1
}
