package allocator

import (
	"errors"
	"testing"
	"time"
)

// Tests of the booking rules of DESIGN §1 that span offices or read the
// policy's newer fields: duplicates per service across offices, the end
// of a block carried by the refusal, min_notice and online_cancel.

// TestDuplicateServiceAcrossOffices: a service is its id at every office,
// so an applicant with an active patent booking at a is refused one at b;
// once the first ends, b books.
func TestDuplicateServiceAcrossOffices(t *testing.T) {
	e, _ := newTestEngine(t, testOffice("a"), testOffice("b"))
	first := mustHold(t, e, t0, HoldRequest{Office: "a", Service: "patent", Applicant: "x", Start: at(1, 10, 0)})
	_, err := e.Hold(t0, HoldRequest{Office: "b", Service: "patent", Applicant: "x", Start: at(2, 10, 0)}, portal())
	wantErr(t, err, ErrDuplicateBooking)
	// Another service at b is no duplicate.
	mustHold(t, e, t0, HoldRequest{Office: "b", Service: "rvp", Applicant: "x", Start: at(2, 10, 0)})
	if _, err := e.ForceCancel(t0, first.ID, Meta{Actor: "op"}); err != nil {
		t.Fatal(err)
	}
	mustHold(t, e, t0, HoldRequest{Office: "b", Service: "patent", Applicant: "x", Start: at(2, 11, 0)})
}

// TestRescheduleToAnotherOfficeKeepsOneActiveService: a reschedule to
// another office moves the booking, not the applicant's counts: the
// service stays booked once, so a new booking of it is still a duplicate
// at either office.
func TestRescheduleToAnotherOfficeKeepsOneActiveService(t *testing.T) {
	e, _ := newTestEngine(t, testOffice("a"), testOffice("b"))
	b := mustHold(t, e, t0, HoldRequest{Office: "a", Service: "patent", Applicant: "x", Start: at(3, 10, 0), Confirm: true})
	if _, err := e.Reschedule(t0, b.ID, RescheduleRequest{Applicant: "x", Office: "b", Start: at(4, 10, 0)}, portal()); err != nil {
		t.Fatal(err)
	}
	for _, o := range []string{"a", "b"} {
		_, err := e.Hold(t0, HoldRequest{Office: o, Service: "patent", Applicant: "x", Start: at(2, 11, 0)}, portal())
		wantErr(t, err, ErrDuplicateBooking)
	}
	if active, _ := e.apps.snapshot("x"); active != 1 {
		t.Fatalf("active %d after the move, want 1", active)
	}
}

// TestBlockedErrorCarriesUntil: the refusal of a blocked applicant says
// when the block ends, in the office's zone.
func TestBlockedErrorCarriesUntil(t *testing.T) {
	e, _ := newTestEngine(t, testOffice("a"))
	var last time.Time
	for i := 0; i < 3; i++ {
		b := confirmed(t, e, t0, "x", at(7+i, 10, 0))
		last = t0.Add(time.Duration(i) * time.Hour)
		if _, err := e.Cancel(last, b.ID, "x", portal()); err != nil {
			t.Fatal(err)
		}
	}
	_, err := hold(e, last.Add(time.Minute), "x", "patent", at(10, 10, 0))
	var be *BlockedError
	if !errors.As(err, &be) || !errors.Is(err, ErrApplicantBlocked) {
		t.Fatalf("err %v, want a *BlockedError wrapping ErrApplicantBlocked", err)
	}
	if want := last.Add(168 * time.Hour); !be.Until.Equal(want) || be.Until.Location().String() != msk.String() {
		t.Fatalf("until %v (%v), want %v in the office's zone", be.Until, be.Until.Location(), want)
	}
}

// TestMinNoticeRefusesStartsInsideIt: with min_notice 2h, at 08:00 a
// start at 10:00 is refused (not later than now + 2h), 10:15 is booked,
// and the reads and earliest_after offer nothing inside the notice.
func TestMinNoticeRefusesStartsInsideIt(t *testing.T) {
	cfg := testOffice("a")
	cfg.Policy.MinNotice = Duration(2 * time.Hour)
	e, _ := newTestEngine(t, cfg)
	now := at(1, 8, 0)
	_, err := hold(e, now, "x", "patent", at(1, 10, 0))
	wantErr(t, err, ErrNotReleased)
	slots, err := e.Slots(now, "a", DateOf(now), "patent")
	if err != nil {
		t.Fatal(err)
	}
	if len(slots) == 0 || !slots[0].Start.Equal(at(1, 10, 15)) {
		t.Fatalf("first offered start %v, want 10:15", slots)
	}
	b := mustHold(t, e, now, HoldRequest{Office: "a", Service: "patent", Applicant: "y", EarliestAfter: now})
	if !b.Start.Equal(at(1, 10, 15)) {
		t.Fatalf("earliest_after took %v, want 10:15", b.Start)
	}
	mustHold(t, e, now, HoldRequest{Office: "a", Service: "patent", Applicant: "x", Start: at(1, 10, 15)})
}

// TestOnlineCancelOffLeavesTheCancelToTheOffice: an applicant cannot
// cancel a confirmed booking of a service with online_cancel false; an
// operator's force-cancel can, and its hold can still be let go.
func TestOnlineCancelOffLeavesTheCancelToTheOffice(t *testing.T) {
	cfg := testOffice("a")
	off := false
	cfg.Services[0].OnlineCancel = &off
	e, _ := newTestEngine(t, cfg)
	b := confirmed(t, e, t0, "x", at(7, 10, 0))
	_, err := e.Cancel(t0, b.ID, "x", portal())
	wantErr(t, err, ErrCancelNotOnline)
	if got, _ := e.Get(b.ID, "x"); got.Status != StatusConfirmed {
		t.Fatalf("status %s after a refused cancel", got.Status)
	}
	if v, err := e.ForceCancel(t0, b.ID, Meta{Actor: "op"}); err != nil || v.Status != StatusCancelled {
		t.Fatalf("force-cancel: %v %v", v.Status, err)
	}
	h := mustHold(t, e, t0, HoldRequest{Office: "a", Service: "patent", Applicant: "x", Start: at(8, 10, 0)})
	if _, err := e.Cancel(t0, h.ID, "x", portal()); err != nil {
		t.Fatalf("cancel of a hold: %v", err)
	}
}

// TestWorkingDaysBefore counts the office's working days (open by its
// hours, not closed) in [today, start): across a weekend, around a
// closure, and off.
func TestWorkingDaysBefore(t *testing.T) {
	cfg := testOffice("a")
	cfg.Closures = []string{"2026-12-09"} // a Wednesday
	l, err := compileLayout(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f := func(today, start string, n int, want bool) {
		t.Helper()
		td, _ := ParseDate(today)
		sd, _ := ParseDate(start)
		if got := l.workingDaysBefore(td, sd, n); got != want {
			t.Fatalf("workingDaysBefore(%s, %s, %d) = %v, want %v", today, start, n, got, want)
		}
	}
	f("2026-12-02", "2026-12-07", 3, true)  // Wed, Thu, Fri before a Monday
	f("2026-12-03", "2026-12-07", 3, false) // Thu, Fri: the weekend does not count
	f("2026-12-07", "2026-12-11", 3, true)  // Mon, Tue, Thu: Wed 9 is closed
	f("2026-12-08", "2026-12-11", 3, false) // Tue, Thu
	f("2026-12-11", "2026-12-11", 0, true)  // off
	f("2026-12-11", "2026-12-11", 1, false) // the start's own day does not count
}
