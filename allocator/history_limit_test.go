package allocator

import (
	"strings"
	"testing"
	"time"
)

// freeAt returns the free windows of the start at t at office o.
func freeAt(t *testing.T, e *Engine, now time.Time, o string, at time.Time) int {
	t.Helper()
	slots, err := e.Slots(now, o, DateOf(at.In(msk)), "patent")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range slots {
		if s.Start.Equal(at) {
			return s.Free
		}
	}
	t.Fatalf("no start %s at %s", at, o)
	return 0
}

// TestHistoryLimitRepeatsKeepRoomToEnd: reschedules and rounds of late
// cancel and reject, the transitions that can repeat, are refused with
// ErrHistoryLimit once the history keeps no room for them and the longest
// ending after them; the refused reschedule claims nothing; the booking
// then ends within HistoryEntriesMax.
func TestHistoryLimitRepeatsKeepRoomToEnd(t *testing.T) {
	cfg := testOffice("a")
	cfg.Policy.MaxReschedules = 100
	e, _ := newTestEngine(t, cfg)
	s1, s2 := at(3, 9, 0), at(3, 9, 15)
	b := mustHold(t, e, t0, HoldRequest{Office: "a", Service: "patent", Applicant: "x", Start: s1, Confirm: true})
	for i := range 20 { // ends at s1 again
		to := s2
		if i%2 == 1 {
			to = s1
		}
		if _, err := e.Reschedule(t0, b.ID, RescheduleRequest{Start: to}, portal()); err != nil {
			t.Fatalf("reschedule %d: %v", i, err)
		}
	}
	late := s1.Add(-18 * time.Hour)
	operator := Meta{Actor: "operator-a"}
	var err error
	rounds := 0
	for ; rounds < HistoryEntriesMax; rounds++ {
		if _, err = e.Cancel(late, b.ID, "x", portal()); err != nil {
			break
		}
		if _, err = e.RejectCancel(late, b.ID, operator); err != nil {
			t.Fatalf("reject %d: %v", rounds, err)
		}
	}
	wantErr(t, err, ErrHistoryLimit)
	cur, _ := e.Get(b.ID, "")
	if n := cur.History.Len(); n != HistoryEntriesMax-2 || cur.Status != StatusConfirmed {
		t.Fatalf("refused at %d entries in %s, want %d in confirmed", n, cur.Status, HistoryEntriesMax-2)
	}
	free := freeAt(t, e, t0, "a", s2)
	_, err = e.Reschedule(t0, b.ID, RescheduleRequest{Start: s2}, portal())
	wantErr(t, err, ErrHistoryLimit)
	if got := freeAt(t, e, t0, "a", s2); got != free {
		t.Fatalf("a refused reschedule changed the target's free windows from %d to %d", free, got)
	}
	if active, _ := e.apps.snapshot("x"); active != 1 {
		t.Fatalf("applicant has %d active bookings after the refusals, want 1", active)
	}
	if _, err := e.CheckIn(s1.Add(-time.Hour), b.ID, operator); err != nil {
		t.Fatal(err)
	}
	done, err := e.Complete(s1, b.ID, operator)
	if err != nil {
		t.Fatal(err)
	}
	if n := done.History.Len(); n != HistoryEntriesMax {
		t.Fatalf("ended with %d entries, want %d", n, HistoryEntriesMax)
	}
	checkCounters(t, e)
}

// TestHistoryLimitRestoredLongerHistory: a booking restored with more
// entries than HistoryEntriesMax (written before the limit existed) takes
// no more: each change that would add one is refused with
// ErrHistoryLimit, for that booking alone; its timers neither fail Tick
// nor degrade the engine, and a reminder, which adds no entry, still goes.
func TestHistoryLimitRestoredLongerHistory(t *testing.T) {
	e, j := newTestEngine(t, testOffice("a"))
	start := at(3, 9, 0)
	b := mustHold(t, e, t0, HoldRequest{Office: "a", Service: "patent", Applicant: "x", Start: start, Confirm: true})
	long := b.BookingRecord
	ts := long.History.Transitions()
	for len(ts) < HistoryEntriesMax+10 {
		at := ts[len(ts)-1].AtUnixNano + 1
		ts = append(ts, Transition{AtUnixNano: at, Status: StatusCancelRequested, Actor: "portal-a"},
			Transition{AtUnixNano: at + 1, Status: StatusConfirmed, Actor: "operator-a"})
	}
	long.History = HistoryOf(ts...)
	if err := j.Commit(&Change{Bookings: []*BookingRecord{&long}}); err != nil {
		t.Fatal(err)
	}
	r, _ := restored(t, j, t0)
	late := start.Add(-18 * time.Hour)
	_, err := r.Cancel(late, b.ID, "x", portal())
	wantErr(t, err, ErrHistoryLimit)
	_, err = r.ForceCancel(late, b.ID, Meta{Actor: "operator-a"})
	wantErr(t, err, ErrHistoryLimit)
	_, err = r.CloseDate(late, "a", DateOf(start), Meta{Actor: "admin"})
	wantErr(t, err, ErrHistoryLimit)
	if o, _ := r.Office("a"); len(o.Config.Closures) != 0 {
		t.Fatalf("the refused closure closed %v", o.Config.Closures)
	}
	for _, now := range []time.Time{late, start.Add(time.Hour)} { // the reminder, then the no-show
		if err := r.Tick(now); err != nil {
			t.Fatalf("Tick at %s: %v", now, err)
		}
	}
	got, _ := r.Get(b.ID, "")
	if got.Status != StatusConfirmed || got.History != long.History || got.RemindedUnixNano != start.UnixNano() {
		t.Fatalf("booking %s, reminded at %d, %d entries; want confirmed, reminded, %d entries", got.Status, got.RemindedUnixNano, got.History.Len(), long.History.Len())
	}
	if r.Degraded() {
		t.Fatal("degraded")
	}
	mustHold(t, r, late, HoldRequest{Office: "a", Service: "patent", Applicant: "y", Start: start})
}

// TestHistoryTextLimits: an actor or a reason longer than the engine
// keeps is refused up front, before any seat is claimed or any change
// committed; at the limits both are kept.
func TestHistoryTextLimits(t *testing.T) {
	e, j := newTestEngine(t, testOffice("a"))
	start := at(3, 9, 0)
	commits := len(j.Changes())
	free := freeAt(t, e, t0, "a", start)
	f := func(name string, meta Meta) {
		t.Helper()
		_, err := e.Hold(t0, HoldRequest{Office: "a", Service: "patent", Applicant: "x", Start: start}, meta)
		wantErr(t, err, ErrValidation)
		if got := freeAt(t, e, t0, "a", start); got != free || len(j.Changes()) != commits {
			t.Fatalf("%s: free %d (was %d), %d commits (was %d)", name, got, free, len(j.Changes()), commits)
		}
	}
	f("actor", Meta{Actor: strings.Repeat("a", ActorBytesMax+1)})
	f("reason", Meta{Actor: "portal-a", Reason: strings.Repeat("r", ReasonBytesMax+1)})
	b, err := e.Hold(t0, HoldRequest{Office: "a", Service: "patent", Applicant: "x", Start: start},
		Meta{Actor: strings.Repeat("a", ActorBytesMax), Reason: strings.Repeat("r", ReasonBytesMax)})
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.Cancel(t0, b.ID, "x", Meta{Actor: "portal-a", Reason: strings.Repeat("r", ReasonBytesMax+1)})
	wantErr(t, err, ErrValidation)
	if got, _ := e.Get(b.ID, ""); got.Status != StatusHeld {
		t.Fatalf("a refused cancel left the booking %s", got.Status)
	}
}
