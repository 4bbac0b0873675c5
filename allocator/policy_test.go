package allocator

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// One test per policy rule of DESIGN §1 and per transition of the state
// diagram, the refused ones included.

func d(off int) Date { return DateOf(at(off, 0, 0)) }

func hold(e *Engine, now time.Time, applicant, svc string, start time.Time) (Booking, error) {
	return e.Hold(now, HoldRequest{Office: "a", Service: svc, Applicant: applicant, Start: start}, portal())
}

func confirmed(t *testing.T, e *Engine, now time.Time, applicant string, start time.Time) Booking {
	t.Helper()
	b := mustHold(t, e, now, HoldRequest{Office: "a", Service: "patent", Applicant: applicant, Start: start, Confirm: true})
	if b.Status != StatusConfirmed {
		t.Fatalf("status %s", b.Status)
	}
	return b
}

func TestReleaseRuleInitialReleasedThrough(t *testing.T) {
	f := func(now time.Time, releaseTime string, want Date) {
		t.Helper()
		cfg := testOffice("a")
		cfg.Policy.ReleaseTime = releaseTime
		e, _ := newTestEngine(t)
		if _, err := e.PutOffice(now, cfg, Meta{}); err != nil {
			t.Fatal(err)
		}
		rec, _ := e.Office("a")
		if rec.ReleasedThrough != want {
			t.Fatalf("now %s release %s: released through %s, want %s", now, releaseTime, rec.ReleasedThrough, want)
		}
	}
	f(at(0, 8, 0), "00:00", d(30))   // release minute passed today
	f(at(0, 8, 0), "09:00", d(29))   // not yet: one day less
	f(at(0, 9, 0), "09:00", d(30))   // exactly at the minute
	f(at(0, 23, 59), "00:00", d(30)) // late evening
}

func TestReleaseRuleDailyReleaseAtReleaseTime(t *testing.T) {
	e, j := newTestEngine(t, testOffice("a"))
	day31 := at(31, 10, 0) // a Wednesday, beyond released_through (t0+30)
	_, err := hold(e, at(0, 23, 0), "x", "patent", day31)
	wantErr(t, err, ErrNotReleased)
	if days, _ := e.Days(at(0, 23, 0), "a", "patent", d(31), d(31)); len(days) != 0 {
		t.Fatalf("unreleased date visible: %v", days)
	}
	if err := e.Tick(at(1, 0, 0)); err != nil { // midnight: today+30 = t0+31 opens
		t.Fatal(err)
	}
	if _, err := hold(e, at(1, 0, 0), "x", "patent", day31); err != nil {
		t.Fatalf("after release: %v", err)
	}
	var released int
	for _, c := range j.Changes() {
		for _, ev := range c.Events {
			if ev.Type == EventSlotsReleased && ev.Through == d(31) {
				released++
			}
		}
	}
	if released != 1 {
		t.Fatalf("%d slots.released events for %s", released, d(31))
	}
}

func TestReleaseRuleExplicitReleaseBeyondHorizon(t *testing.T) {
	e, _ := newTestEngine(t, testOffice("a"))
	far := at(45, 10, 0) // Monday, beyond the horizon
	_, err := hold(e, t0, "x", "patent", far)
	wantErr(t, err, ErrNotReleased)
	got, err := e.Release(t0, "a", d(50), Meta{Actor: "admin"})
	if err != nil || got != d(50) {
		t.Fatalf("release: %s %v", got, err)
	}
	if _, err := hold(e, t0, "x", "patent", far); err != nil {
		t.Fatalf("after special release: %v", err)
	}
	// Releasing an earlier date changes nothing.
	if got, _ := e.Release(t0, "a", d(40), Meta{}); got != d(50) {
		t.Fatalf("release moved back to %s", got)
	}
}

func TestReleaseRuleRefusals(t *testing.T) {
	cfg := testOffice("a")
	cfg.Closures = []string{d(3).String()}
	cfg.Services[1].Weekdays = []string{"mon"}
	e, _ := newTestEngine(t, cfg)
	f := func(svc string, start time.Time, want error, detail string) {
		t.Helper()
		_, err := hold(e, t0, "x", svc, start)
		wantErr(t, err, want)
		if !strings.Contains(err.Error(), detail) {
			t.Fatalf("error %q does not say %q", err, detail)
		}
	}
	f("patent", at(0, 7, 0), ErrNotReleased, "outside")       // before opening today
	f("patent", at(-1, 10, 0), ErrNotReleased, "in the past") // yesterday
	f("patent", at(3, 10, 0), ErrNotReleased, "closed")       // closure
	f("patent", at(5, 10, 0), ErrNotReleased, "not open")     // Saturday
	f("patent", at(1, 13, 0), ErrNotReleased, "outside")      // lunch break
	f("patent", at(1, 8, 45), ErrNotReleased, "outside")      // before opening
	f("rvp", at(1, 12, 45), ErrNotReleased, "not offered")    // rvp on Tuesday
	f("rvp", at(7, 12, 45), ErrNotReleased, "outside")        // 2-step run into the break
	f("patent", at(1, 10, 5), ErrValidation, "grid")          // off the grid
	f("patent", at(1, 10, 0).Add(time.Second), ErrValidation, "grid")
	f("nope", at(1, 10, 0), ErrServiceNotFound, "nope")
	_, err := e.Hold(t0, HoldRequest{Office: "zz", Service: "patent", Applicant: "x", Start: at(1, 10, 0)}, portal())
	wantErr(t, err, ErrOfficeNotFound)
	_, err = hold(e, at(0, 10, 0), "x", "patent", at(0, 9, 45)) // started already
	wantErr(t, err, ErrNotReleased)
	_, err = hold(e, at(0, 10, 0), "x", "patent", at(0, 10, 0)) // starting now
	wantErr(t, err, ErrNotReleased)
	if _, err := hold(e, t0, "x", "rvp", at(7, 12, 30)); err != nil { // Monday, fits before the break
		t.Fatal(err)
	}
}

func TestHoldEarliestAfter(t *testing.T) {
	e, _ := newTestEngine(t, testOffice("a"))
	// From now (Monday 08:00) the first start is today 09:00.
	b := mustHold(t, e, t0, HoldRequest{Office: "a", Service: "patent", Applicant: "x", EarliestAfter: t0})
	if !b.Start.Equal(at(0, 9, 0)) {
		t.Fatalf("first free start %s", b.Start)
	}
	// From 12:50, the 2-step rvp cannot start at 12:45 (after) nor fit before the break: 14:00.
	b = mustHold(t, e, t0, HoldRequest{Office: "a", Service: "rvp", Applicant: "y", EarliestAfter: at(0, 12, 50)})
	if !b.Start.Equal(at(0, 14, 0)) {
		t.Fatalf("rvp start %s", b.Start)
	}
}

func TestHoldTTLExpiresAndFreesSeat(t *testing.T) {
	e, j := newTestEngine(t, testOffice("a"))
	start := at(2, 10, 0)
	b1 := mustHold(t, e, t0, HoldRequest{Office: "a", Service: "patent", Applicant: "x", Start: start})
	mustHold(t, e, t0, HoldRequest{Office: "a", Service: "patent", Applicant: "y", Start: start})
	_, err := hold(e, t0, "z", "patent", start)
	wantErr(t, err, ErrSlotTaken)
	if err := e.Tick(t0.Add(10*time.Minute - time.Second)); err != nil {
		t.Fatal(err)
	}
	if got, _ := e.Get(b1.ID, ""); got.Status != StatusHeld {
		t.Fatalf("expired early: %s", got.Status)
	}
	// Confirm is refused at the expiry instant even before the wheel fires.
	_, err = e.Confirm(t0.Add(10*time.Minute), b1.ID, "x", portal())
	wantErr(t, err, ErrInvalidTransition)
	if err := e.Tick(t0.Add(10*time.Minute + time.Second)); err != nil {
		t.Fatal(err)
	}
	got, _ := e.Get(b1.ID, "")
	if got.Status != StatusExpired || got.History.Transitions()[1].Actor != ActorSystem {
		t.Fatalf("after ttl: %+v", got)
	}
	if _, err := hold(e, t0.Add(11*time.Minute), "z", "patent", start); err != nil {
		t.Fatalf("seat not freed by expiry: %v", err)
	}
	if n := countEvents(j, EventExpired); n != 2 {
		t.Fatalf("%d expiry events", n)
	}
	checkCounters(t, e)
}

func countEvents(j *MemJournal, typ string) int {
	n := 0
	for _, c := range j.Changes() {
		for _, ev := range c.Events {
			if ev.Type == typ {
				n++
			}
		}
	}
	return n
}

func TestCancelCutoffBands(t *testing.T) {
	e, _ := newTestEngine(t, testOffice("a"))
	start := at(3, 10, 0)
	f := func(now time.Time, applicant string, want Status, wantErr error) Booking {
		t.Helper()
		b := confirmed(t, e, t0, applicant, start)
		got, err := e.Cancel(now, b.ID, applicant, portal())
		if wantErr != nil {
			if !errors.Is(err, wantErr) {
				t.Fatalf("cancel at %s: %v, want %v", now, err, wantErr)
			}
			return b
		}
		if err != nil || got.Status != want {
			t.Fatalf("cancel at %s: %s %v, want %s", now, got.Status, err, want)
		}
		return got
	}
	f(start.Add(-24*time.Hour), "a1", StatusCancelled, nil)                        // exactly at the cutoff
	r := f(start.Add(-24*time.Hour+time.Minute), "a2", StatusCancelRequested, nil) // inside the band
	f(start.Add(-12*time.Hour+time.Minute), "a3", 0, ErrTooLateToCancel)           // under the floor
	// The late band keeps the seat until an operator decides.
	if got, _ := e.ApproveCancel(start.Add(-20*time.Hour), r.ID, Meta{Actor: "op"}); got.Status != StatusCancelled {
		t.Fatalf("approve: %s", got.Status)
	}
	r2 := f(start.Add(-13*time.Hour), "a4", StatusCancelRequested, nil)
	if got, _ := e.RejectCancel(start.Add(-12*time.Hour), r2.ID, Meta{Actor: "op"}); got.Status != StatusConfirmed {
		t.Fatalf("reject: %s", got.Status)
	}
	// Under the floor an operator may still force it.
	if got, err := e.ForceCancel(start.Add(-time.Hour), r2.ID, Meta{Actor: "op"}); err != nil || got.Status != StatusCancelled {
		t.Fatalf("force: %s %v", got.Status, err)
	}
	checkCounters(t, e)
}

func TestCancelHeldIsImmediateAndUnpenalised(t *testing.T) {
	cfg := testOffice("a")
	cfg.Policy.CancelPenalty.Count = 1
	e, _ := newTestEngine(t, cfg)
	b := mustHold(t, e, t0, HoldRequest{Office: "a", Service: "patent", Applicant: "x", Start: at(1, 10, 0)})
	if got, err := e.Cancel(t0, b.ID, "x", portal()); err != nil || got.Status != StatusCancelled {
		t.Fatalf("%s %v", got.Status, err)
	}
	mustHold(t, e, t0, HoldRequest{Office: "a", Service: "patent", Applicant: "x", Start: at(1, 10, 0)})
}

func TestRescheduleRules(t *testing.T) {
	e, _ := newTestEngine(t, testOffice("a"), testOffice("b"))
	b := confirmed(t, e, t0, "x", at(3, 10, 0))
	// Moves, keeps the id, frees the old seat.
	got, err := e.Reschedule(t0, b.ID, RescheduleRequest{Applicant: "x", Start: at(4, 11, 0)}, portal())
	if err != nil || got.ID != b.ID || !got.Start.Equal(at(4, 11, 0)) || got.Reschedules != 1 {
		t.Fatalf("reschedule: %+v %v", got, err)
	}
	if s, _ := e.Slots(t0, "a", d(3), "patent"); s[4].Free != 2 {
		t.Fatalf("old seat not freed: %v", s[4])
	}
	// Another office of the same service.
	got, err = e.Reschedule(t0, b.ID, RescheduleRequest{Applicant: "x", Office: "b", Start: at(4, 12, 0)}, portal())
	if err != nil || got.Office != "b" || got.Reschedules != 2 {
		t.Fatalf("cross-office: %+v %v", got, err)
	}
	// max_reschedules 2.
	_, err = e.Reschedule(t0, b.ID, RescheduleRequest{Applicant: "x", Office: "b", Start: at(4, 12, 15)}, portal())
	wantErr(t, err, ErrRescheduleLimit)
	// Cutoff.
	c := confirmed(t, e, t0, "y", at(1, 7+2, 0))
	_, err = e.Reschedule(at(0, 10, 0), c.ID, RescheduleRequest{Applicant: "y", Start: at(5, 10, 0)}, portal())
	wantErr(t, err, ErrTooLateToReschedule)
	// Not reschedulable service.
	r := mustHold(t, e, t0, HoldRequest{Office: "a", Service: "rvp", Applicant: "z", Start: at(7, 10, 0), Confirm: true})
	_, err = e.Reschedule(t0, r.ID, RescheduleRequest{Applicant: "z", Start: at(8, 10, 0)}, portal())
	wantErr(t, err, ErrNotReschedulable)
	// Only confirmed bookings.
	h := mustHold(t, e, t0, HoldRequest{Office: "a", Service: "patent", Applicant: "w", Start: at(3, 15, 0)})
	_, err = e.Reschedule(t0, h.ID, RescheduleRequest{Applicant: "w", Start: at(3, 16, 0)}, portal())
	wantErr(t, err, ErrInvalidTransition)
	checkCounters(t, e)
}

func TestRescheduleIsAtomicWhenTargetTaken(t *testing.T) {
	e, j := newTestEngine(t, testOffice("a"))
	b := confirmed(t, e, t0, "x", at(3, 10, 0))
	confirmed(t, e, t0, "y", at(4, 10, 0))
	confirmed(t, e, t0, "z", at(4, 10, 0))
	before, _ := e.Get(b.ID, "")
	changes := len(j.Changes())
	_, err := e.Reschedule(t0, b.ID, RescheduleRequest{Applicant: "x", Start: at(4, 10, 0)}, portal())
	wantErr(t, err, ErrSlotTaken)
	after, _ := e.Get(b.ID, "")
	if after.Start != before.Start || after.Window != before.Window || after.Reschedules != 0 || after.History != before.History {
		t.Fatalf("failed reschedule changed the booking: %+v", after)
	}
	if len(j.Changes()) != changes {
		t.Fatal("failed reschedule committed a change")
	}
	if s, _ := e.Slots(t0, "a", d(3), "patent"); s[4].Free != 1 {
		t.Fatalf("old seat freed by a failed reschedule: %v", s[4])
	}
	checkCounters(t, e)
}

func TestMaxActivePerApplicantAndDuplicates(t *testing.T) {
	cfg := testOffice("a")
	cfg.Services = append(cfg.Services, ServiceConfig{ID: "inn", Name: "ИНН", Slots: 1}, ServiceConfig{ID: "snils", Name: "СНИЛС", Slots: 1})
	e, _ := newTestEngine(t, cfg)
	mustHold(t, e, t0, HoldRequest{Office: "a", Service: "patent", Applicant: "x", Start: at(1, 10, 0)})
	_, err := hold(e, t0, "x", "patent", at(2, 10, 0))
	wantErr(t, err, ErrDuplicateBooking)
	mustHold(t, e, t0, HoldRequest{Office: "a", Service: "rvp", Applicant: "x", Start: at(1, 10, 0)})
	c := mustHold(t, e, t0, HoldRequest{Office: "a", Service: "inn", Applicant: "x", Start: at(1, 11, 0), Confirm: true})
	_, err = hold(e, t0, "x", "snils", at(1, 12, 0))
	wantErr(t, err, ErrLimitReached)
	// A terminal booking no longer counts.
	if _, err := e.ForceCancel(t0, c.ID, Meta{Actor: "op"}); err != nil {
		t.Fatal(err)
	}
	mustHold(t, e, t0, HoldRequest{Office: "a", Service: "snils", Applicant: "x", Start: at(1, 12, 0)})
	// Another applicant is not affected.
	mustHold(t, e, t0, HoldRequest{Office: "a", Service: "patent", Applicant: "y", Start: at(1, 10, 45)})
}

func TestCancelPenaltyBlocksThenLifts(t *testing.T) {
	e, _ := newTestEngine(t, testOffice("a"))
	for i := 0; i < 3; i++ {
		b := confirmed(t, e, t0, "x", at(7+i, 10, 0))
		if _, err := e.Cancel(t0.Add(time.Duration(i)*time.Hour), b.ID, "x", portal()); err != nil {
			t.Fatal(err)
		}
	}
	_, err := hold(e, t0.Add(3*time.Hour), "x", "patent", at(10, 10, 0))
	wantErr(t, err, ErrApplicantBlocked)
	// Blocked for 168h from the third cancel.
	unblock := t0.Add(2*time.Hour + 168*time.Hour)
	_, err = hold(e, unblock.Add(-time.Minute), "x", "patent", at(10, 10, 0))
	wantErr(t, err, ErrApplicantBlocked)
	if _, err := hold(e, unblock, "x", "patent", at(10, 10, 0)); err != nil {
		t.Fatalf("still blocked after the block period: %v", err)
	}
}

func TestCancelPenaltyWindowForgetsOldCancels(t *testing.T) {
	e, _ := newTestEngine(t, testOffice("a"))
	// The first cancel is 721h before the third, outside the 720h window.
	cancelAt := []time.Time{t0, t0.Add(24 * time.Hour), t0.Add(721 * time.Hour)}
	starts := []time.Time{at(2, 10, 0), at(3, 10, 0), at(32, 10, 0)}
	for i, now := range cancelAt {
		if err := e.Tick(now); err != nil {
			t.Fatal(err)
		}
		b := confirmed(t, e, now, "x", starts[i])
		if _, err := e.Cancel(now, b.ID, "x", portal()); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := hold(e, cancelAt[2], "x", "patent", at(35, 10, 0)); err != nil {
		t.Fatalf("blocked by a cancel outside the window: %v", err)
	}
	// Within the window, three cancels block.
	b := confirmed(t, e, cancelAt[2], "y", at(35, 10, 0))
	e.Cancel(cancelAt[2], b.ID, "y", portal())
	for _, st := range []time.Time{at(35, 11, 0), at(35, 12, 0)} {
		b := confirmed(t, e, cancelAt[2], "y", st)
		e.Cancel(cancelAt[2], b.ID, "y", portal())
	}
	_, err := hold(e, cancelAt[2], "y", "patent", at(36, 10, 0))
	wantErr(t, err, ErrApplicantBlocked)
}

func TestNoShowAfterGraceCountsAsPenalty(t *testing.T) {
	cfg := testOffice("a")
	cfg.Policy.CancelPenalty.Count = 1
	e, _ := newTestEngine(t, cfg)
	start := at(1, 10, 0)
	b := confirmed(t, e, t0, "x", start)
	e.Tick(start.Add(15*time.Minute - time.Second))
	if got, _ := e.Get(b.ID, ""); got.Status != StatusConfirmed {
		t.Fatalf("no-show before grace: %s", got.Status)
	}
	e.Tick(start.Add(15 * time.Minute))
	got, _ := e.Get(b.ID, "")
	if got.Status != StatusNoShow || !got.History.Last().Penalty {
		t.Fatalf("after grace: %+v", got)
	}
	_, err := hold(e, start.Add(time.Hour), "x", "patent", at(2, 10, 0))
	wantErr(t, err, ErrApplicantBlocked)
}

// TestTimerFollowsTheBooking: a timer stores no kind; the booking's state
// decides what it does when it fires. The hold-expiry timer of a booking
// confirmed since neither expires nor reminds it. A reminder timer that
// fires only after the start (the engine did not tick in between) sends
// no reminder and leaves the no-show, which then comes after the grace.
func TestTimerFollowsTheBooking(t *testing.T) {
	e, j := newTestEngine(t, testOffice("a"))
	start := at(3, 10, 0)
	h, err := hold(e, t0, "x", "patent", start)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Confirm(t0, h.ID, "x", portal()); err != nil {
		t.Fatal(err)
	}
	e.Tick(t0.Add(time.Hour)) // the hold's expiry timer fires
	if got, _ := e.Get(h.ID, ""); got.Status != StatusConfirmed || countEvents(j, EventExpired)+countEvents(j, EventReminderDue) != 0 {
		t.Fatalf("stale hold timer acted: %s, %d expired, %d reminders", got.Status, countEvents(j, EventExpired), countEvents(j, EventReminderDue))
	}
	e.Tick(start.Add(time.Minute)) // the reminder timer, late
	if got, _ := e.Get(h.ID, ""); got.Status != StatusConfirmed || countEvents(j, EventReminderDue) != 0 {
		t.Fatalf("late reminder timer: %s, %d reminders", got.Status, countEvents(j, EventReminderDue))
	}
	e.Tick(start.Add(15 * time.Minute))
	if got, _ := e.Get(h.ID, ""); got.Status != StatusNoShow {
		t.Fatalf("after grace: %s, want no_show", got.Status)
	}
}

// TestLateReminderTimerPastGraceIsTheNoShow: a reminder timer that fires
// only after start + grace (no Tick came between) is the no-show at once,
// not a Tick later: the no-show comes at start + grace by time alone.
func TestLateReminderTimerPastGraceIsTheNoShow(t *testing.T) {
	e, j := newTestEngine(t, testOffice("a"))
	start := at(0, 10, 0)
	b := confirmed(t, e, at(0, 9, 30), "x", start) // its reminder is due at once
	if err := e.Tick(start.Add(20 * time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got, _ := e.Get(b.ID, ""); got.Status != StatusNoShow || countEvents(j, EventReminderDue) != 0 {
		t.Fatalf("first Tick past start + grace: %s, %d reminders; want no_show, none", got.Status, countEvents(j, EventReminderDue))
	}
}

func TestOperatorTransitions(t *testing.T) {
	e, _ := newTestEngine(t, testOffice("a"))
	start := at(1, 10, 0)
	b := confirmed(t, e, t0, "x", start)
	_, err := e.Complete(start, b.ID, Meta{Actor: "op"})
	wantErr(t, err, ErrInvalidTransition) // confirmed → completed is not an edge
	_, err = e.CheckIn(t0, b.ID, Meta{Actor: "op"})
	wantErr(t, err, ErrInvalidTransition) // not on the day
	if got, err := e.CheckIn(start.Add(-10*time.Minute), b.ID, Meta{Actor: "op"}); err != nil || got.Status != StatusCheckedIn {
		t.Fatalf("check-in: %s %v", got.Status, err)
	}
	_, err = e.NoShow(start.Add(time.Hour), b.ID, Meta{Actor: "op"})
	wantErr(t, err, ErrInvalidTransition)
	if got, err := e.Complete(start.Add(20*time.Minute), b.ID, Meta{Actor: "op"}); err != nil || got.Status != StatusCompleted {
		t.Fatalf("complete: %s %v", got.Status, err)
	}
	// Terminal: every further transition is refused.
	for name, op := range map[string]func() (Booking, error){
		"confirm":      func() (Booking, error) { return e.Confirm(start, b.ID, "x", portal()) },
		"cancel":       func() (Booking, error) { return e.Cancel(start, b.ID, "x", portal()) },
		"force-cancel": func() (Booking, error) { return e.ForceCancel(start, b.ID, Meta{}) },
		"approve":      func() (Booking, error) { return e.ApproveCancel(start, b.ID, Meta{}) },
		"reject":       func() (Booking, error) { return e.RejectCancel(start, b.ID, Meta{}) },
		"check-in":     func() (Booking, error) { return e.CheckIn(start, b.ID, Meta{}) },
	} {
		if _, err := op(); !errors.Is(err, ErrInvalidTransition) {
			t.Fatalf("%s of a completed booking: %v", name, err)
		}
	}
	// Operator no-show of a started, confirmed booking.
	n := confirmed(t, e, t0, "y", start)
	_, err = e.NoShow(start.Add(-time.Minute), n.ID, Meta{Actor: "op"})
	wantErr(t, err, ErrInvalidTransition)
	if got, err := e.NoShow(start.Add(time.Minute), n.ID, Meta{Actor: "op"}); err != nil || got.Status != StatusNoShow {
		t.Fatalf("no-show: %s %v", got.Status, err)
	}
	checkCounters(t, e)
}

func TestWrongApplicantIsNotFound(t *testing.T) {
	e, _ := newTestEngine(t, testOffice("a"))
	b := mustHold(t, e, t0, HoldRequest{Office: "a", Service: "patent", Applicant: "x", Start: at(1, 10, 0)})
	_, err := e.Confirm(t0, b.ID, "y", portal())
	wantErr(t, err, ErrBookingNotFound)
	_, err = e.Cancel(t0, b.ID, "y", portal())
	wantErr(t, err, ErrBookingNotFound)
	_, err = e.Get(b.ID, "y")
	wantErr(t, err, ErrBookingNotFound)
	_, err = e.Reschedule(t0, b.ID, RescheduleRequest{Applicant: "y", Start: at(2, 10, 0)}, portal())
	wantErr(t, err, ErrBookingNotFound)
}

func TestHistoryRecordsEveryTransition(t *testing.T) {
	e, _ := newTestEngine(t, testOffice("a"))
	b := mustHold(t, e, t0, HoldRequest{Office: "a", Service: "patent", Applicant: "x", Start: at(3, 10, 0)})
	e.Confirm(t0.Add(time.Minute), b.ID, "x", Meta{Actor: "portal-a", Reason: "sms code"})
	e.Cancel(at(2, 20, 0), b.ID, "x", Meta{Actor: "portal-b", Reason: "changed plans"})
	got, _ := e.Get(b.ID, "x")
	want := []struct {
		s          Status
		actor, why string
	}{{StatusHeld, "portal-a", ""}, {StatusConfirmed, "portal-a", "sms code"}, {StatusCancelRequested, "portal-b", "changed plans"}}
	hist := got.History.Transitions()
	if len(hist) != len(want) {
		t.Fatalf("history %+v", hist)
	}
	for i, w := range want {
		h := hist[i]
		if h.Status != w.s || h.Actor != w.actor || h.Reason != w.why || h.AtUnixNano == 0 {
			t.Fatalf("history[%d] = %+v, want %+v", i, h, w)
		}
	}
}

func TestOfficeClosureCancelsAffectedBookings(t *testing.T) {
	e, j := newTestEngine(t, testOffice("a"))
	date := at(2, 0, 0)
	h := mustHold(t, e, t0, HoldRequest{Office: "a", Service: "patent", Applicant: "x", Start: at(2, 10, 0)})
	c := confirmed(t, e, t0, "y", at(2, 11, 0))
	other := confirmed(t, e, t0, "z", at(3, 11, 0))
	got, err := e.CloseDate(t0, "a", DateOf(date), Meta{Actor: "admin", Reason: "flood"})
	if err != nil || len(got) != 2 {
		t.Fatalf("closure: %v %v", got, err)
	}
	for _, id := range []ID{h.ID, c.ID} {
		b, _ := e.Get(id, "")
		last := b.History.Last()
		if b.Status != StatusCancelled || last.Reason != ReasonOfficeClosed {
			t.Fatalf("booking %s after closure: %s %+v", id, b.Status, last)
		}
	}
	if b, _ := e.Get(other.ID, ""); b.Status != StatusConfirmed {
		t.Fatal("closure touched another date")
	}
	_, err = hold(e, t0, "w", "patent", at(2, 15, 0))
	wantErr(t, err, ErrNotReleased)
	if n := countEvents(j, EventCancelled); n != 2 {
		t.Fatalf("%d cancel events", n)
	}
	// The cancelled applicants may book again; their active count dropped.
	mustHold(t, e, t0, HoldRequest{Office: "a", Service: "patent", Applicant: "x", Start: at(3, 10, 0)})
	checkCounters(t, e)
	// Closing again changes nothing.
	if got, err := e.CloseDate(t0, "a", DateOf(date), Meta{}); err != nil || len(got) != 0 {
		t.Fatalf("second closure: %v %v", got, err)
	}
}

func TestPutOfficeRefusesLayoutChangeUnderBookings(t *testing.T) {
	e, _ := newTestEngine(t, testOffice("a"))
	cfg := testOffice("a")
	cfg.Windows = 3
	if _, err := e.PutOffice(t0, cfg, Meta{}); err != nil { // no bookings: fine
		t.Fatal(err)
	}
	b := mustHold(t, e, t0, HoldRequest{Office: "a", Service: "patent", Applicant: "x", Start: at(1, 10, 0)})
	cfg.Windows = 4
	_, err := e.PutOffice(t0, cfg, Meta{})
	wantErr(t, err, ErrLayoutInUse)
	cfg.Windows = 3
	cfg.Name = "Renamed"
	if _, err := e.PutOffice(t0, cfg, Meta{}); err != nil {
		t.Fatalf("rename: %v", err)
	}
	cfg.Closures = []string{d(1).String()}
	_, err = e.PutOffice(t0, cfg, Meta{})
	wantErr(t, err, ErrLayoutInUse)
	e.ForceCancel(t0, b.ID, Meta{})
	if _, err := e.PutOffice(t0, cfg, Meta{}); err != nil {
		t.Fatalf("closure without bookings: %v", err)
	}
	_, err = hold(e, t0, "x", "patent", at(1, 10, 0))
	wantErr(t, err, ErrNotReleased)
	checkCounters(t, e)
}

func TestOfficeConfigValidation(t *testing.T) {
	f := func(mutate func(c *OfficeConfig), want string) {
		t.Helper()
		c := testOffice("a")
		mutate(&c)
		err := c.Validate()
		if !errors.Is(err, ErrValidation) || !strings.Contains(err.Error(), want) {
			t.Fatalf("got %v, want an error saying %q", err, want)
		}
	}
	f(func(c *OfficeConfig) { c.ID = "Bad Id" }, "office id")
	f(func(c *OfficeConfig) { c.Windows = 0 }, "windows 0")
	f(func(c *OfficeConfig) { c.SlotMinutes = 7 }, "slot_minutes 7")
	f(func(c *OfficeConfig) { c.Timezone = "Mars/Olympus" }, "unknown timezone")
	f(func(c *OfficeConfig) { c.Hours["mon"] = []string{"09:00-13:00", "12:00-15:00"} }, "overlap")
	f(func(c *OfficeConfig) { c.Hours["mon"] = []string{"09:10-13:00"} }, "grid")
	f(func(c *OfficeConfig) { c.Hours["monday"] = []string{"09:00-13:00"} }, "unknown weekday")
	f(func(c *OfficeConfig) { c.Hours["mon"] = []string{"13:00-09:00"} }, "ends before")
	f(func(c *OfficeConfig) { c.Hours["mon"] = []string{"9-13"} }, "HH:MM")
	f(func(c *OfficeConfig) { c.Services[0].Slots = 0 }, "slots 0")
	f(func(c *OfficeConfig) { c.Services[1].ID = "patent" }, "twice")
	f(func(c *OfficeConfig) { c.Services[0].Weekdays = []string{"xyz"} }, "unknown weekday")
	f(func(c *OfficeConfig) { c.Services = nil }, "at least one service")
	f(func(c *OfficeConfig) { c.Closures = []string{"2026-13-01"} }, "closure")
	f(func(c *OfficeConfig) { c.Policy.HorizonDays = 0 }, "horizon_days")
	f(func(c *OfficeConfig) { c.Policy.ReleaseTime = "25:00" }, "release_time")
	f(func(c *OfficeConfig) { c.Policy.LateCancelFloor = Duration(48 * time.Hour) }, "late_cancel_floor")
	f(func(c *OfficeConfig) { c.Policy.HoldTTL = 0 }, "hold_ttl")
	f(func(c *OfficeConfig) { c.Policy.MaxActivePerApplicant = 0 }, "max_active_per_applicant")
	c := testOffice("a")
	c.Hours["sun"] = []string{"10:00-24:00"}
	if err := c.Validate(); err != nil {
		t.Fatalf("24:00 end refused: %v", err)
	}
}

func TestDecodeOfficeConfigDefaultsAndUnknownFields(t *testing.T) {
	cfg, err := DecodeOfficeConfig([]byte(`{"id":"x","name":"X","region":"r","city":"c","address":"a","timezone":"Europe/Moscow",
		"slot_minutes":15,"windows":2,"hours":{"mon":["09:00-18:00"]},"services":[{"id":"s","name":"S","slots":1}],
		"policy":{"cancel_cutoff":"48h","late_cancel_floor":"24h"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Policy.HoldTTL != Duration(10*time.Minute) || cfg.Policy.CancelCutoff != Duration(48*time.Hour) || cfg.Policy.MaxReschedules != 2 {
		t.Fatalf("defaults not applied: %+v", cfg.Policy)
	}
	_, err = DecodeOfficeConfig([]byte(`{"id":"x","colour":"red"}`))
	wantErr(t, err, ErrValidation)
	_, err = DecodeOfficeConfig([]byte(`{"id":"x","policy":{"hold_ttl":"ten minutes"}}`))
	wantErr(t, err, ErrValidation)
	_, err = DecodeOfficeConfig([]byte(`{"id":"x","windows":"two"}`))
	wantErr(t, err, ErrValidation)
}

func TestReminderDueOncePerStart(t *testing.T) {
	e, j := newTestEngine(t, testOffice("a"))
	start := at(3, 10, 0)
	b := confirmed(t, e, t0, "x", start)
	e.Tick(start.Add(-24*time.Hour - time.Second))
	if n := countEvents(j, EventReminderDue); n != 0 {
		t.Fatalf("early reminder: %d", n)
	}
	e.Tick(start.Add(-24 * time.Hour))
	e.Tick(start.Add(-23 * time.Hour))
	if n := countEvents(j, EventReminderDue); n != 1 {
		t.Fatalf("%d reminders", n)
	}
	_ = b
	// A reschedule gets a reminder for its new time only.
	newStart := at(7, 10, 0)
	c := confirmed(t, e, t0, "y", at(4, 10, 0))
	if _, err := e.Reschedule(t0, c.ID, RescheduleRequest{Applicant: "y", Start: newStart}, portal()); err != nil {
		t.Fatal(err)
	}
	e.Tick(at(4, 10, 0).Add(-time.Hour)) // old reminder time passed
	if n := countEvents(j, EventReminderDue); n != 1 {
		t.Fatalf("reminder for the old time of a rescheduled booking: %d", n)
	}
	e.Tick(newStart.Add(-24 * time.Hour))
	if n := countEvents(j, EventReminderDue); n != 2 {
		t.Fatalf("no reminder for the new time: %d", n)
	}
	// A cancelled booking gets none.
	x := confirmed(t, e, t0, "z", at(8, 10, 0))
	e.Cancel(t0, x.ID, "z", portal())
	e.Tick(at(8, 10, 0).Add(-time.Hour))
	if n := countEvents(j, EventReminderDue); n != 2 {
		t.Fatalf("reminder for a cancelled booking: %d", n)
	}
}

// DESIGN invariant 2 and 3 through the seam: a failed commit is never
// acknowledged and leaves nothing behind, and the engine stops writing.
func TestCommitFailureRollsBackAndDegrades(t *testing.T) {
	e, j := newTestEngine(t, testOffice("a"))
	b := confirmed(t, e, t0, "x", at(3, 10, 0))
	j.Fail = func(*Change) error { return errors.New("disk on fire") }
	_, err := hold(e, t0, "y", "patent", at(2, 10, 0))
	if err == nil || !e.Degraded() {
		t.Fatalf("hold with a failing journal: %v, degraded %v", err, e.Degraded())
	}
	if s, _ := e.Slots(t0, "a", d(2), "patent"); s[4].Free != 2 {
		t.Fatalf("failed hold kept its seat: %v", s[4])
	}
	_, err = e.Cancel(t0, b.ID, "x", portal())
	wantErr(t, err, ErrDegraded)
	if got, _ := e.Get(b.ID, ""); got.Status != StatusConfirmed {
		t.Fatalf("refused cancel changed the booking: %s", got.Status)
	}
	checkCounters(t, e)
}

// DESIGN invariant 3: a seat freed by cancel is not claimable while the
// release is being made durable.
func TestInvariant3FreedSeatNotResoldBeforeReleaseIsDurable(t *testing.T) {
	e, j := newTestEngine(t, testOffice("a"))
	start := at(3, 10, 0)
	b := confirmed(t, e, t0, "x", start)
	confirmed(t, e, t0, "y", start)
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	j.Hook = func(c *Change) {
		if len(c.Bookings) == 1 && c.Bookings[0].ID == b.ID && c.Bookings[0].Status == StatusCancelled {
			once.Do(func() { close(entered); <-release })
		}
	}
	done := make(chan error)
	go func() { _, err := e.Cancel(t0, b.ID, "x", portal()); done <- err }()
	<-entered
	_, err := hold(e, t0, "z", "patent", start)
	wantErr(t, err, ErrSlotTaken)
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := hold(e, t0, "z", "patent", start); err != nil {
		t.Fatalf("after the durable release: %v", err)
	}
}

func TestListBookingsFiltersAndPages(t *testing.T) {
	e, _ := newTestEngine(t, testOffice("a"), testOffice("b"))
	var ids []ID
	for i, o := range []string{"a", "b", "a"} {
		svc := []string{"patent", "rvp", "rvp"}[i]
		b := mustHold(t, e, t0, HoldRequest{Office: o, Service: svc, Applicant: "x", Start: at(1+i, 10, 0)})
		ids = append(ids, b.ID)
		if i == 1 { // else the rvp at a would duplicate it
			e.ForceCancel(t0, b.ID, Meta{})
		}
	}
	all, next := e.List("x", ListFilter{}, 0, 2)
	if len(all) != 2 || all[0].ID != ids[0] || next != 2 {
		t.Fatalf("page 1: %d next %d", len(all), next)
	}
	rest, next := e.List("x", ListFilter{}, next, 2)
	if len(rest) != 1 || rest[0].ID != ids[2] || next != -1 {
		t.Fatalf("page 2: %d next %d", len(rest), next)
	}
	if got, _ := e.List("x", ListFilter{Status: StatusCancelled}, 0, 10); len(got) != 1 || got[0].ID != ids[1] {
		t.Fatalf("status filter: %v", got)
	}
	if got, _ := e.List("x", ListFilter{Office: "a", From: d(3)}, 0, 10); len(got) != 1 || got[0].ID != ids[2] {
		t.Fatalf("office+from filter: %v", got)
	}
	if got, _ := e.List("nobody", ListFilter{}, 0, 10); len(got) != 0 {
		t.Fatal("unknown applicant has bookings")
	}
}

func TestRestoreRebuildsPenaltiesAndTimers(t *testing.T) {
	e, j := newTestEngine(t, testOffice("a"))
	for i := 0; i < 3; i++ {
		b := confirmed(t, e, t0, "x", at(7+i, 10, 0))
		e.Cancel(t0, b.ID, "x", portal())
	}
	h := mustHold(t, e, t0, HoldRequest{Office: "a", Service: "patent", Applicant: "y", Start: at(2, 10, 0)})
	offices, _ := j.Latest()
	r, _ := restored(t, j, t0)
	_, err := hold(r, t0.Add(time.Hour), "x", "patent", at(10, 10, 0))
	wantErr(t, err, ErrApplicantBlocked)
	// The hold's TTL passed while "down": the first Tick expires it.
	if err := r.Tick(t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got, _ := r.Get(h.ID, ""); got.Status != StatusExpired {
		t.Fatalf("restored hold after ttl: %s", got.Status)
	}
	checkCounters(t, r)
	// DESIGN invariant 1 at recovery: a second active booking on a seat
	// stops recovery with an error naming it.
	r2, _ := New(Config{Journal: &MemJournal{}})
	r2.RestoreOffice(offices[0])
	seat := func(window uint16) *BookingRecord {
		rec := *h.BookingRecord.next(t0, StatusHeld, "x", "")
		rec.ID, rec.Window, rec.HoldExpiresUnixNano = newID(), window, t0.Add(time.Hour).UnixNano()
		return &rec
	}
	if err := r2.RestoreBooking(seat(0)); err != nil {
		t.Fatal(err)
	}
	if err := r2.RestoreBooking(seat(1)); err != nil {
		t.Fatal(err)
	}
	if err := r2.RestoreBooking(seat(0)); err == nil || !strings.Contains(err.Error(), "taken") {
		t.Fatalf("double-owned seat restored: %v", err)
	}
}

// Booking numbers are never issued twice, across restarts too: the date a
// rescheduled booking leaves keeps its counter through a SeqMark.
func TestBookingNumbersNotReusedAfterRescheduleAndRestore(t *testing.T) {
	e, j := newTestEngine(t, testOffice("a"))
	first := confirmed(t, e, t0, "x", at(3, 10, 0))
	second := confirmed(t, e, t0, "y", at(3, 11, 0)) // number …-0002, the highest of the date
	if _, err := e.Reschedule(t0, second.ID, RescheduleRequest{Applicant: "y", Start: at(4, 11, 0)}, portal()); err != nil {
		t.Fatal(err)
	}
	r, _ := restored(t, j, t0)
	next := mustHold(t, r, t0, HoldRequest{Office: "a", Service: "patent", Applicant: "z", Start: at(3, 12, 0)})
	if next.Number == second.Number || next.Number == first.Number || next.Seq != 3 {
		t.Fatalf("number %s issued again (first %s, second %s)", next.Number, first.Number, second.Number)
	}
}

// reminder.due is emitted once per start even across a restart: the
// reminded start is part of the durable record.
func TestReminderOnceAcrossRestore(t *testing.T) {
	e, j := newTestEngine(t, testOffice("a"))
	start := at(3, 10, 0)
	confirmed(t, e, t0, "x", start)
	if err := e.Tick(start.Add(-23 * time.Hour)); err != nil {
		t.Fatal(err)
	}
	if n := countEvents(j, EventReminderDue); n != 1 {
		t.Fatalf("%d reminders before the restart", n)
	}
	r, j2 := restored(t, j, start.Add(-22*time.Hour))
	for _, now := range []time.Time{start.Add(-22 * time.Hour), start.Add(-time.Hour)} {
		if err := r.Tick(now); err != nil {
			t.Fatal(err)
		}
	}
	if n := countEvents(j2, EventReminderDue); n != 0 {
		t.Fatalf("%d reminders again after the restart", n)
	}
}

// A service's documents and translated names are bounded like every other
// field: counts, bytes and language tags are refused by name, and configs
// at the limits are accepted.
func TestServiceInfoLimits(t *testing.T) {
	f := func(mutate func(s *ServiceConfig), want string) {
		t.Helper()
		c := testOffice("a")
		mutate(&c.Services[0])
		err := c.Validate()
		if want == "" {
			if err != nil {
				t.Fatalf("refused at the limit: %v", err)
			}
			return
		}
		if !errors.Is(err, ErrValidation) || !strings.Contains(err.Error(), want) {
			t.Fatalf("got %v, want an error saying %q", err, want)
		}
	}
	f(func(s *ServiceConfig) { s.Documents = make([]string, serviceDocumentsMax+1) }, "at most 16 documents")
	f(func(s *ServiceConfig) { s.Documents = []string{"паспорт", ""} }, "documents[1] must be 1..256 bytes")
	f(func(s *ServiceConfig) { s.Documents = []string{strings.Repeat("x", documentBytesMax+1)} }, "documents[0] must be 1..256 bytes")
	f(func(s *ServiceConfig) {
		s.Names = map[string]string{}
		for i := range serviceNamesMax + 1 {
			s.Names[string(rune('a'+i))+"a"] = "x"
		}
	}, "names in at most 8 languages")
	f(func(s *ServiceConfig) { s.Names = map[string]string{"en-US": "Patent"} }, `names key "en-US"`)
	f(func(s *ServiceConfig) { s.Names = map[string]string{"EN": "Patent"} }, `names key "EN"`)
	f(func(s *ServiceConfig) { s.Names = map[string]string{"en": ""} }, "names[en] must be 1..512 bytes")
	f(func(s *ServiceConfig) { s.Names = map[string]string{"en": strings.Repeat("x", textBytesMax+1)} }, "names[en] must be 1..512 bytes")
	f(func(s *ServiceConfig) {
		s.Documents = make([]string, serviceDocumentsMax)
		for i := range s.Documents {
			s.Documents[i] = strings.Repeat("д", documentBytesMax/2)
		}
		s.Names = map[string]string{"ru": strings.Repeat("x", textBytesMax), "en": "Patent"}
	}, "")
}

// TestReopenedDayKeepsCheckedInSeat: a closure leaves a checked_in
// booking checked_in; when the office reopens the date, the rebuilt day
// must keep that booking's seat taken (invariant 1), and completing the
// visit frees it once.
func TestReopenedDayKeepsCheckedInSeat(t *testing.T) {
	cfg := testOffice("a")
	cfg.Windows = 1
	e, _ := newTestEngine(t, cfg)
	start := at(0, 11, 0)
	b := mustHold(t, e, t0, HoldRequest{Office: "a", Service: "patent", Applicant: "x", Start: start, Confirm: true})
	if _, err := e.CheckIn(at(0, 10, 50), b.ID, Meta{Actor: "op"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.CloseDate(at(0, 10, 51), "a", d(0), Meta{Actor: "admin"}); err != nil {
		t.Fatal(err)
	}
	cfg.Closures = nil // the office reopens the date
	if _, err := e.PutOffice(at(0, 10, 52), cfg, Meta{Actor: "admin"}); err != nil {
		t.Fatal(err)
	}
	if err := e.Verify(); err != nil {
		t.Fatalf("after the reopening: %v", err)
	}
	_, err := e.Hold(at(0, 10, 53), HoldRequest{Office: "a", Service: "patent", Applicant: "y", Start: start}, portal())
	wantErr(t, err, ErrSlotTaken)
	if _, err := e.Complete(at(0, 11, 10), b.ID, Meta{Actor: "op"}); err != nil {
		t.Fatal(err)
	}
	checkCounters(t, e)
	if err := e.Verify(); err != nil {
		t.Fatal(err)
	}
	if free, err := e.Slots(at(0, 11, 11), "a", d(0), "patent"); err != nil || len(free) == 0 {
		t.Fatalf("slots after the visit: %v %v", free, err)
	}
}
