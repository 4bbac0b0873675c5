package allocator

import (
	"errors"
	"time"
)

// Tick advances the engine to now: daily releases, hold expiries, automatic
// no-shows and reminders that are due. The server calls it a few times a
// second from one goroutine; tests call it with their own clock. It returns
// the first journal failure, after which the engine is degraded.
func (e *Engine) Tick(now time.Time) error {
	e.tickMu.Lock()
	defer e.tickMu.Unlock()
	for _, o := range *e.offices.Load() {
		if err := e.autoRelease(now, o); err != nil {
			return err
		}
		e.drawDue(now, o)
	}
	for _, w := range e.wheels {
		due := w.advance(now, e.dueBuf[:0])
		for i, t := range due {
			if err := e.fire(now, t); err != nil {
				for _, rest := range due[i+1:] { // keep what was not done
					w.add(time.Unix(0, rest.atUnixNano), rest.b)
				}
				clear(due)
				return err
			}
		}
		clear(due)
		e.dueBuf = due[:0]
	}
	return nil
}

// fire runs one due timer. Timers are not removed when a booking moves on,
// so each checks that the booking is still in the state that set it. The
// booking says what the timer is for: held, its hold expiry; confirmed, its
// reminder if the timer is due before the start, else its no-show. A
// timer left from an earlier state (a hold expiry after a confirm, a
// reminder after a reschedule) so runs a decision that refuses unless it is
// due anyway: each one checks the time against the record.
func (e *Engine) fire(now time.Time, t timerEntry) error {
	rec := t.b.rec.Load()
	var err error
	switch rec.Status {
	case StatusHeld:
		_, err = e.transition(now, rec.ID, "", Meta{Actor: ActorSystem, Reason: "hold expired"}, func(l *layout, cur *BookingRecord, start time.Time) (effect, error) {
			if cur.Status != StatusHeld || now.UnixNano() < cur.HoldExpiresUnixNano {
				return effect{}, ErrInvalidTransition
			}
			return effect{next: cur.next(now, StatusExpired, ActorSystem, "hold expired"), event: EventExpired, free: true, leave: true}, nil
		})
	case StatusAwaitingApproval:
		_, err = e.transition(now, rec.ID, "", Meta{Actor: ActorSystem, Reason: ReasonNotApproved}, func(l *layout, cur *BookingRecord, start time.Time) (effect, error) {
			if cur.Status != StatusAwaitingApproval || now.Before(approvalDeadline(l, start)) {
				return effect{}, ErrInvalidTransition
			}
			return effect{next: cur.next(now, StatusExpired, ActorSystem, ReasonNotApproved), event: EventExpired, free: true, leave: true}, nil
		})
	case StatusConfirmed:
		o, oerr := e.office(rec.Office)
		if oerr != nil {
			return nil
		}
		l := o.lay.Load()
		c := o.clock(l, rec.Date)
		if start, due := reminderDue(l, c.at(int(rec.Step)), rec, now); t.atUnixNano < start.UnixNano() {
			// Most such timers are the hold expiry of a booking confirmed
			// since: refuse them here, as remind's decision would.
			if !due {
				return nil
			}
			if now.Before(start.Add(l.policy.noShowGrace)) {
				err = e.remind(now, t.b, rec.ID)
				break
			}
			// Not fired before start + grace (no Tick came between): too
			// late to remind, and the no-show is due now, not a Tick later.
		}
		_, err = e.transition(now, rec.ID, "", Meta{Actor: ActorSystem, Reason: "not checked in"}, func(l *layout, cur *BookingRecord, start time.Time) (effect, error) {
			if cur.Status != StatusConfirmed || now.Before(start.Add(l.policy.noShowGrace)) {
				return effect{}, ErrInvalidTransition
			}
			return effect{next: cur.next(now, StatusNoShow, ActorSystem, "not checked in"), event: EventNoShow, free: true, leave: true, penalise: true}, nil
		})
	}
	switch {
	case errors.Is(err, ErrInvalidTransition) || errors.Is(err, ErrBookingNotFound):
		return nil // the booking moved on: the timer is stale
	case errors.Is(err, ErrHistoryLimit):
		// A history restored longer than the limit takes no more entries
		// (checkGrowth); the booking keeps its status. The refusal is the
		// booking's, not the engine's: Tick goes on with the others.
		return nil
	}
	return err
}

// remind sends the reminder of a confirmed booking when it is due, or, when
// the start has passed, sets the no-show timer instead. A stale timer due
// before the start (a hold expiry, once confirmed) that fires only after
// it also lands here and may so add a second no-show timer; whichever
// fires second finds the booking no longer confirmed and does nothing.
func (e *Engine) remind(now time.Time, b *booking, id ID) error {
	_, err := e.transition(now, id, "", Meta{Actor: ActorSystem}, func(l *layout, cur *BookingRecord, start time.Time) (effect, error) {
		start, due := reminderDue(l, start, cur, now)
		if cur.Status != StatusConfirmed || !due {
			return effect{}, ErrInvalidTransition
		}
		if !now.Before(start) { // too late to remind: only the no-show is left
			if o, err := e.office(cur.Office); err == nil {
				o.wheel.add(start.Add(l.policy.noShowGrace), b)
			}
			return effect{}, ErrInvalidTransition
		}
		n := *cur // not a status change: no history entry
		n.RemindedUnixNano = start.UnixNano()
		return effect{next: &n, event: EventReminderDue, reminder: true, scheduled: true}, nil
	})
	return err
}

// reminderDue returns start, the start of rec's booking, and whether its
// reminder is due at now: not sent yet for this start, and the reminder
// time (reminder_before ahead of the instant) is reached.
func reminderDue(l *layout, start time.Time, rec *BookingRecord, now time.Time) (time.Time, bool) {
	return start, rec.RemindedUnixNano != start.UnixNano() && !now.Before(start.Add(-l.policy.reminderBefore))
}
