package allocator

import (
	"errors"
	"testing"
	"time"
)

// approvalOffice is testOffice whose 1-step patent needs an operator's
// approval.
func approvalOffice(id string) OfficeConfig {
	cfg := testOffice(id)
	cfg.Services[0].RequiresApproval = true
	return cfg
}

// TestApprovalConfirmWaitsForTheOffice: a confirmed request of a service
// that requires approval waits as awaiting_approval, owns its seat and
// counts for the applicant's limit and duplicates; an operator's approval
// confirms it (booking.confirmed, the operator in the history), and only
// then does it get a reminder and a no-show.
func TestApprovalConfirmWaitsForTheOffice(t *testing.T) {
	e, j := newTestEngine(t, approvalOffice("a"))
	start := at(3, 10, 0)
	h := mustHold(t, e, t0, HoldRequest{Office: "a", Service: "patent", Applicant: "x", Start: start})
	v, err := e.Confirm(t0, h.ID, "x", portal())
	if err != nil || v.Status != StatusAwaitingApproval {
		t.Fatalf("confirm: %s %v, want awaiting_approval", v.Status, err)
	}
	if !v.HoldExpiresAt.IsZero() {
		t.Fatalf("an awaiting booking keeps a hold expiry %s", v.HoldExpiresAt)
	}
	if evs := eventsOf(j, EventAwaitingApproval); len(evs) != 1 || evs[0].Booking.ID != h.ID {
		t.Fatalf("booking.awaiting_approval events %+v", evs)
	}
	if len(eventsOf(j, EventConfirmed)) != 0 {
		t.Fatal("a booking awaiting approval was announced as confirmed")
	}
	// The seat stays taken, past the hold's expiry.
	if err := e.Tick(t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	mustHold(t, e, t0.Add(time.Hour), HoldRequest{Office: "a", Service: "patent", Applicant: "z", Start: start}) // the second window
	_, err = e.Hold(t0.Add(time.Hour), HoldRequest{Office: "a", Service: "patent", Applicant: "w", Start: start}, portal())
	wantErr(t, err, ErrSlotTaken)
	// Active for the applicant: a second patent is a duplicate.
	_, err = e.Hold(t0.Add(time.Hour), HoldRequest{Office: "a", Service: "patent", Applicant: "x", Start: at(4, 10, 0)}, portal())
	wantErr(t, err, ErrDuplicateBooking)
	if active, _ := e.apps.snapshot("x"); active != 1 {
		t.Fatalf("applicant's active count %d, want 1", active)
	}
	// Nothing an applicant or a confirmed booking's rules can do moves it on.
	_, err = e.Confirm(t0, h.ID, "x", portal())
	wantErr(t, err, ErrInvalidTransition)
	_, err = e.Reschedule(t0, h.ID, RescheduleRequest{Applicant: "x", Start: at(4, 11, 0)}, portal())
	wantErr(t, err, ErrInvalidTransition)
	_, err = e.CheckIn(start, h.ID, Meta{Actor: "op"})
	wantErr(t, err, ErrInvalidTransition)
	_, err = e.ApproveCancel(t0, h.ID, Meta{Actor: "op"})
	wantErr(t, err, ErrInvalidTransition)

	got, err := e.Approve(t0.Add(2*time.Hour), h.ID, Meta{Actor: "op-1", Reason: "documents checked"})
	if err != nil || got.Status != StatusConfirmed {
		t.Fatalf("approve: %s %v", got.Status, err)
	}
	last := got.History.Last()
	if last.Status != StatusConfirmed || last.Actor != "op-1" || last.Reason != "documents checked" {
		t.Fatalf("approval history entry %+v", last)
	}
	if evs := eventsOf(j, EventConfirmed); len(evs) != 1 || evs[0].Booking.ID != h.ID || evs[0].Reason != "documents checked" {
		t.Fatalf("booking.confirmed events after the approval %+v", evs)
	}
	_, err = e.Approve(t0.Add(2*time.Hour), h.ID, Meta{Actor: "op-1"})
	wantErr(t, err, ErrInvalidTransition)
	// Confirmed now: the reminder and the no-show follow as for any other.
	if err := e.Tick(start.Add(-23 * time.Hour)); err != nil {
		t.Fatal(err)
	}
	if evs := eventsOf(j, EventReminderDue); len(evs) != 1 {
		t.Fatalf("reminders %+v", evs)
	}
	if err := e.Tick(start.Add(20 * time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got, _ := e.Get(h.ID, ""); got.Status != StatusNoShow {
		t.Fatalf("status %s after the grace, want no_show", got.Status)
	}
	checkCounters(t, e)
	if err := e.Verify(); err != nil {
		t.Fatal(err)
	}
}

// TestApprovalRejectFreesTheSeat: the office's rejection ends the booking
// as rejected with its reason (booking.rejected), frees the seat and the
// applicant's place, and counts no penalty; a rejection needs a reason.
func TestApprovalRejectFreesTheSeat(t *testing.T) {
	e, j := newTestEngine(t, approvalOffice("a"))
	start := at(3, 10, 0)
	b := mustHold(t, e, t0, HoldRequest{Office: "a", Service: "patent", Applicant: "x", Start: start, Confirm: true})
	if b.Status != StatusAwaitingApproval {
		t.Fatalf("hold with confirm: %s, want awaiting_approval", b.Status)
	}
	if ts := b.History.Transitions(); len(ts) != 2 || ts[0].Status != StatusHeld || ts[1].Status != StatusAwaitingApproval {
		t.Fatalf("history %s", b.History)
	}
	if evs := eventsOf(j, EventAwaitingApproval); len(evs) != 1 {
		t.Fatalf("booking.awaiting_approval events %+v", evs)
	}
	_, err := e.Reject(t0, b.ID, Meta{Actor: "op-1"})
	wantErr(t, err, ErrValidation)
	got, err := e.Reject(t0, b.ID, Meta{Actor: "op-1", Reason: "no residence permit"})
	if err != nil || got.Status != StatusRejected {
		t.Fatalf("reject: %s %v", got.Status, err)
	}
	if last := got.History.Last(); last.Actor != "op-1" || last.Reason != "no residence permit" || last.Penalty {
		t.Fatalf("rejection history entry %+v", last)
	}
	if evs := eventsOf(j, EventRejected); len(evs) != 1 || evs[0].Reason != "no residence permit" {
		t.Fatalf("booking.rejected events %+v", evs)
	}
	if StatusRejected.Active() {
		t.Fatal("rejected owns a seat")
	}
	if active, _ := e.apps.snapshot("x"); active != 0 {
		t.Fatalf("applicant's active count %d after the rejection", active)
	}
	// The seat is free again, and the same applicant may ask again.
	mustHold(t, e, t0, HoldRequest{Office: "a", Service: "patent", Applicant: "x", Start: start})
	mustHold(t, e, t0, HoldRequest{Office: "a", Service: "patent", Applicant: "y", Start: start})
	for name, op := range map[string]func() (Booking, error){
		"approve": func() (Booking, error) { return e.Approve(t0, b.ID, Meta{Actor: "op"}) },
		"reject":  func() (Booking, error) { return e.Reject(t0, b.ID, Meta{Actor: "op", Reason: "again"}) },
		"cancel":  func() (Booking, error) { return e.Cancel(t0, b.ID, "x", portal()) },
	} {
		if _, err := op(); !errors.Is(err, ErrInvalidTransition) {
			t.Fatalf("%s of a rejected booking: %v", name, err)
		}
	}
	checkCounters(t, e)
	if err := e.Verify(); err != nil {
		t.Fatal(err)
	}
}

// TestApprovalWithdrawnOrForcedOrClosed: the applicant may withdraw a
// request the office has not accepted at any time, without penalty (it
// was never an appointment); an operator may force-cancel it; a closure
// cancels it.
func TestApprovalWithdrawnOrForcedOrClosed(t *testing.T) {
	cfg := approvalOffice("a")
	cfg.Policy.CancelPenalty.Count = 1
	e, _ := newTestEngine(t, cfg)
	soon := at(0, 16, 0) // under the late-cancel floor
	b := mustHold(t, e, t0, HoldRequest{Office: "a", Service: "patent", Applicant: "x", Start: soon, Confirm: true})
	if got, err := e.Cancel(t0, b.ID, "x", portal()); err != nil || got.Status != StatusCancelled || got.History.Last().Penalty {
		t.Fatalf("withdrawal: %s %v %s", got.Status, err, got.History)
	}
	if _, blocked := e.apps.snapshot("x"); blocked != 0 {
		t.Fatal("a withdrawn request blocked the applicant")
	}
	f := mustHold(t, e, t0, HoldRequest{Office: "a", Service: "patent", Applicant: "x", Start: soon, Confirm: true})
	if got, err := e.ForceCancel(t0, f.ID, Meta{Actor: "op"}); err != nil || got.Status != StatusCancelled {
		t.Fatalf("force-cancel: %s %v", got.Status, err)
	}
	c := mustHold(t, e, t0, HoldRequest{Office: "a", Service: "patent", Applicant: "x", Start: at(2, 10, 0), Confirm: true})
	affected, err := e.CloseDate(t0, "a", d(2), Meta{Actor: "admin"})
	if err != nil || len(affected) != 1 || affected[0].ID != c.ID || affected[0].Status != StatusCancelled {
		t.Fatalf("closure: %+v %v", affected, err)
	}
	if active, _ := e.apps.snapshot("x"); active != 0 {
		t.Fatalf("applicant's active count %d", active)
	}
	checkCounters(t, e)
	if err := e.Verify(); err != nil {
		t.Fatal(err)
	}
}

// TestApprovalDeadlineExpires: a request still awaiting approval at start
// + no_show_grace expires (booking.expired, no penalty) and frees its
// seat; an approval that comes later is refused even before a Tick ran.
func TestApprovalDeadlineExpires(t *testing.T) {
	cfg := approvalOffice("a")
	cfg.Policy.CancelPenalty.Count = 1
	e, j := newTestEngine(t, cfg)
	start := at(1, 10, 0)
	grace := 15 * time.Minute
	b := mustHold(t, e, t0, HoldRequest{Office: "a", Service: "patent", Applicant: "x", Start: start, Confirm: true})
	late := mustHold(t, e, t0, HoldRequest{Office: "a", Service: "patent", Applicant: "y", Start: start, Confirm: true})
	// Approval is possible until the deadline, the applicant at the desk.
	if got, err := e.Approve(start.Add(grace-time.Second), b.ID, Meta{Actor: "op"}); err != nil || got.Status != StatusConfirmed {
		t.Fatalf("approve at the desk: %s %v", got.Status, err)
	}
	_, err := e.Approve(start.Add(grace), late.ID, Meta{Actor: "op"})
	wantErr(t, err, ErrInvalidTransition)
	if err := e.Tick(start.Add(grace - time.Second)); err != nil {
		t.Fatal(err)
	}
	if got, _ := e.Get(late.ID, ""); got.Status != StatusAwaitingApproval {
		t.Fatalf("status %s before the deadline", got.Status)
	}
	if err := e.Tick(start.Add(grace)); err != nil {
		t.Fatal(err)
	}
	got, _ := e.Get(late.ID, "")
	if got.Status != StatusExpired || got.History.Last().Actor != ActorSystem || got.History.Last().Penalty {
		t.Fatalf("status %s (%s) after the deadline, want expired without penalty", got.Status, got.History)
	}
	if evs := eventsOf(j, EventExpired); len(evs) != 1 || evs[0].Booking.ID != late.ID {
		t.Fatalf("booking.expired events %+v", evs)
	}
	if active, blocked := e.apps.snapshot("y"); active != 0 || blocked != 0 {
		t.Fatalf("applicant y: active %d, blocked until %d", active, blocked)
	}
	checkCounters(t, e)
	if err := e.Verify(); err != nil {
		t.Fatal(err)
	}
}

// TestApprovalSurvivesRestore: a restored engine keeps a booking awaiting
// approval with its seat and applicant count, approves it, and expires
// another at its deadline as the first engine would.
func TestApprovalSurvivesRestore(t *testing.T) {
	e, j := newTestEngine(t, approvalOffice("a"))
	start := at(1, 10, 0)
	a := mustHold(t, e, t0, HoldRequest{Office: "a", Service: "patent", Applicant: "x", Start: start, Confirm: true})
	b := mustHold(t, e, t0, HoldRequest{Office: "a", Service: "patent", Applicant: "y", Start: start, Confirm: true})
	r, _ := restored(t, j, t0)
	if got, _ := r.Get(a.ID, ""); got.Status != StatusAwaitingApproval {
		t.Fatalf("restored status %s", got.Status)
	}
	if active, _ := r.apps.snapshot("x"); active != 1 {
		t.Fatalf("restored active count %d", active)
	}
	_, err := r.Hold(t0, HoldRequest{Office: "a", Service: "patent", Applicant: "z", Start: start}, portal())
	wantErr(t, err, ErrSlotTaken)
	if _, err := r.Approve(t0, a.ID, Meta{Actor: "op"}); err != nil {
		t.Fatal(err)
	}
	if err := r.Tick(start.Add(15 * time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got, _ := r.Get(b.ID, ""); got.Status != StatusExpired {
		t.Fatalf("restored awaiting booking %s after its deadline, want expired", got.Status)
	}
	if err := r.Verify(); err != nil {
		t.Fatal(err)
	}
}

// TestApprovalRuleIsTheOfficesAtConfirm: only the services marked need
// approval; a booking of another service confirms at once.
func TestApprovalRuleIsTheOfficesAtConfirm(t *testing.T) {
	e, _ := newTestEngine(t, approvalOffice("a"))
	if b := mustHold(t, e, t0, HoldRequest{Office: "a", Service: "rvp", Applicant: "x", Start: at(7, 10, 0), Confirm: true}); b.Status != StatusConfirmed {
		t.Fatalf("rvp: %s, want confirmed", b.Status)
	}
	if s, ok := ParseStatus("awaiting_approval"); !ok || s != StatusAwaitingApproval {
		t.Fatal("awaiting_approval does not parse")
	}
	if s, ok := ParseStatus("rejected"); !ok || s != StatusRejected {
		t.Fatal("rejected does not parse")
	}
	if !StatusAwaitingApproval.Active() {
		t.Fatal("awaiting_approval owns no seat")
	}
}
