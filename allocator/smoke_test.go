package allocator

import "testing"

func TestSmokeHoldConfirmCancel(t *testing.T) {
	e, j := newTestEngine(t, testOffice("a"))
	b := mustHold(t, e, t0, HoldRequest{Office: "a", Service: "patent", Applicant: "x", Start: at(2, 9, 0)})
	if b.Status != StatusHeld || b.Window != 0 || b.Number != "A-20261202-0001" {
		t.Fatalf("unexpected booking %+v", b)
	}
	b2 := mustHold(t, e, t0, HoldRequest{Office: "a", Service: "patent", Applicant: "y", Start: at(2, 9, 0)})
	if b2.Window != 1 {
		t.Fatalf("second hold got window %d", b2.Window)
	}
	_, err := e.Hold(t0, HoldRequest{Office: "a", Service: "patent", Applicant: "z", Start: at(2, 9, 0)}, portal())
	wantErr(t, err, ErrSlotTaken)
	if _, err := e.Confirm(t0, b.ID, "x", portal()); err != nil {
		t.Fatal(err)
	}
	c, err := e.Cancel(t0, b.ID, "x", portal())
	if err != nil || c.Status != StatusCancelled {
		t.Fatalf("cancel: %v %v", c.Status, err)
	}
	mustHold(t, e, t0, HoldRequest{Office: "a", Service: "patent", Applicant: "z", Start: at(2, 9, 0)})
	checkCounters(t, e)
	if n := len(j.Changes()); n != 6 { // office + 2 holds + confirm + cancel + hold
		t.Fatalf("journal has %d changes", n)
	}
	days, err := e.Days(t0, "a", "rvp", DateOf(at(0, 0, 0)), DateOf(at(40, 0, 0)))
	if err != nil || len(days) == 0 {
		t.Fatalf("days: %v %v", days, err)
	}
	t.Logf("days %v", days[:3])
	slots, err := e.Slots(t0, "a", DateOf(at(2, 0, 0)), "patent")
	if err != nil || len(slots) != 32 || slots[0].Free != 0 || slots[1].Free != 2 {
		t.Fatalf("slots: %v %v", slots, err)
	}
	ff := e.Search(t0, "moscow", "rvp", at(2, 12, 40), 3)
	t.Logf("search %v", ff)
}
