package allocator

import (
	"cmp"
	"errors"
	"slices"
	"strings"
	"time"
)

// Tick advances the engine to now: daily releases, hold expiries, automatic
// no-shows and reminders that are due. The server calls it a few times a
// second from one goroutine; tests call it with their own clock. It returns
// the first journal failure, after which the engine is degraded.
//
// A Tick has a fixed order, so that what it does depends on the state and
// now alone, never on map or wheel order: first the offices' daily
// releases, by office id (a release offers its dates to watches, W4, and
// offices of one region share watches); then the due timers of every
// wheel, in the order of the instants their transitions fell due (a
// hold's expiry, a no-show's or an unapproved request's start + grace;
// a reminder's own time), bookings due at one instant by number (office,
// date, sequence). A seat freed by an expiry is offered to the watches
// before one freed later (W1): a waitlist that hands seats over in order.
func (e *Engine) Tick(now time.Time) error {
	e.tickMu.Lock()
	defer e.tickMu.Unlock()
	for _, id := range e.OfficeIDs() {
		o, _ := e.office(id)
		if err := e.autoRelease(now, o); err != nil {
			return err
		}
		e.drawDue(now, o)
	}
	due := e.dueBuf[:0]
	for _, w := range e.wheels {
		entries := w.advance(now, e.entryBuf[:0])
		for _, t := range entries {
			due = append(due, e.dueTimerOf(now, t, w))
		}
		clear(entries)
		e.entryBuf = entries[:0]
	}
	slices.SortStableFunc(due, compareDue)
	for i, t := range due {
		if err := e.fire(now, t.timerEntry); err != nil {
			for _, rest := range due[i+1:] { // keep what was not done
				rest.w.add(time.Unix(0, rest.atUnixNano), rest.b)
			}
			clear(due)
			e.dueBuf = due[:0]
			return err
		}
	}
	clear(due)
	e.dueBuf = due[:0]
	return nil
}

// dueTimer is a due timer entry with its wheel and its place in a Tick's
// order: the instant its transition fell due, then the booking's number.
type dueTimer struct {
	timerEntry
	w           *wheel
	dueUnixNano int64
	office      string
	date        Date
	seq         uint32
}

// dueTimerOf places t, taken from w, in the Tick's order at now, from its
// booking's current record: a held booking falls due at its expiry, a
// confirmed one whose no-show is due and one awaiting approval at start
// + no_show_grace, any other timer (a reminder, a stale entry) at its own
// time.
func (e *Engine) dueTimerOf(now time.Time, t timerEntry, w *wheel) dueTimer {
	rec := t.b.rec.Load()
	d := dueTimer{timerEntry: t, w: w, dueUnixNano: t.atUnixNano, office: rec.Office, date: rec.Date, seq: rec.Seq}
	switch rec.Status {
	case StatusHeld:
		d.dueUnixNano = rec.HoldExpiresUnixNano
	case StatusConfirmed, StatusAwaitingApproval:
		o, err := e.office(rec.Office)
		if err != nil {
			break
		}
		l := o.lay.Load()
		c := o.clock(l, rec.Date)
		if c.table != nil && int(rec.Step) >= int(c.n) {
			break // a run the grid no longer has: fire decides
		}
		// The no-show of a confirmed booking and the expiry of one
		// awaiting approval both fall due at start + no_show_grace.
		if at := c.at(int(rec.Step)).Add(l.policy.noShowGrace); !now.Before(at) {
			d.dueUnixNano = at.UnixNano()
		}
	}
	return d
}

func compareDue(a, b dueTimer) int {
	if c := cmp.Compare(a.dueUnixNano, b.dueUnixNano); c != 0 {
		return c
	}
	if c := strings.Compare(a.office, b.office); c != 0 {
		return c
	}
	if c := cmp.Compare(a.date, b.date); c != 0 {
		return c
	}
	return cmp.Compare(a.seq, b.seq)
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
