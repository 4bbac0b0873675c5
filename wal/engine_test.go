package wal

import (
	"testing"
	"time"

	"slotd/allocator"
	"slotd/internal/slotdtest"
	"slotd/internal/slotdtest/testtime"
)

// TestEngineRecover runs the real engine on the DB, restarts, and checks
// that the recovered engine holds every booking in its acknowledged status
// and that holds which expired while down are expired by the first Tick,
// through the journal (wal invariant W6).
func TestEngineRecover(t *testing.T) {
	now := t0 // a Monday
	dir := t.TempDir()
	db, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	e, err := allocator.New(allocator.Config{Journal: db})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.PutOffice(now, testOffice("msk-1"), allocator.Meta{Actor: "admin"}); err != nil {
		t.Fatal(err)
	}
	want := map[allocator.ID]allocator.Status{}
	var held allocator.ID
	for i := 0; i < 12; i++ {
		start := testtime.At(1+i%4, 9+i%3, 0)
		b, err := e.Hold(now, allocator.HoldRequest{Office: "msk-1", Service: "patent", Applicant: "a" + string(rune('a'+i)), Start: start}, allocator.Meta{Actor: "portal-a"})
		if err != nil {
			t.Fatalf("hold %d: %v", i, err)
		}
		switch i % 3 {
		case 0:
			held = b.ID
		case 1:
			if b, err = e.Confirm(now, b.ID, "", allocator.Meta{Actor: "portal-a"}); err != nil {
				t.Fatal(err)
			}
		case 2:
			if b, err = e.Cancel(now, b.ID, "", allocator.Meta{Actor: "portal-a"}); err != nil {
				t.Fatal(err)
			}
		}
		want[b.ID] = b.Status
	}
	published := db.PublishedCursor()
	db = reopen(t, db, dir)
	e2, err := allocator.New(allocator.Config{Journal: db})
	if err != nil {
		t.Fatal(err)
	}
	later := now.Add(time.Hour) // every hold's TTL passed while down
	st, err := Recover(db, e2, later)
	if err != nil {
		t.Fatal(err)
	}
	if st.Offices != 1 || st.Bookings != len(want) || st.LastCursor != published {
		t.Fatalf("recovery %+v, want 1 office, %d bookings, cursor %d", st, len(want), published)
	}
	for id, s := range want {
		b, err := e2.Get(id, "")
		if err != nil || b.Status != s {
			t.Fatalf("booking %s: %v %v, want %s", id, b.Status, err, s)
		}
	}
	if err := e2.Verify(); err != nil {
		t.Fatal(err)
	}
	if err := e2.Tick(later); err != nil {
		t.Fatal(err)
	}
	if b, _ := e2.Get(held, ""); b.Status != allocator.StatusExpired {
		t.Fatalf("hold past its TTL is %s after Tick, want expired", b.Status)
	}
	r, ok, err := db.LoadBooking(held, now.UnixNano())
	if err != nil || !ok || r.Status != allocator.StatusExpired {
		t.Fatalf("expiry not journaled: %+v %v %v", r, ok, err)
	}
	if db.PublishedCursor() <= published {
		t.Fatal("expiry emitted no event")
	}
}

// TestEngineRecoverApproval: a service's requires_approval, a booking
// awaiting approval and a rejected one survive a restart: the awaiting
// booking keeps its seat and waits again for the office, a confirm after
// the restart still waits, and the rejection keeps its reason.
func TestEngineRecoverApproval(t *testing.T) {
	now := t0
	dir := t.TempDir()
	db, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	e, err := allocator.New(allocator.Config{Journal: db})
	if err != nil {
		t.Fatal(err)
	}
	cfg := slotdtest.Office("msk-1", 2)
	cfg.Services[0].RequiresApproval = true
	if _, err := e.PutOffice(now, cfg, allocator.Meta{Actor: "admin"}); err != nil {
		t.Fatal(err)
	}
	portal := allocator.Meta{Actor: "portal-a"}
	start := testtime.At(1, 10, 0)
	waiting, err := e.Hold(now, allocator.HoldRequest{Office: "msk-1", Service: "patent", Applicant: "a", Start: start, Confirm: true}, portal)
	if err != nil || waiting.Status != allocator.StatusAwaitingApproval {
		t.Fatalf("hold: %v %v", waiting.Status, err)
	}
	rejected, err := e.Hold(now, allocator.HoldRequest{Office: "msk-1", Service: "patent", Applicant: "b", Start: start, Confirm: true}, portal)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Reject(now, rejected.ID, allocator.Meta{Actor: "op-1", Reason: "wrong documents"}); err != nil {
		t.Fatal(err)
	}
	held, err := e.Hold(now, allocator.HoldRequest{Office: "msk-1", Service: "patent", Applicant: "c", Start: start.Add(time.Hour)}, portal)
	if err != nil {
		t.Fatal(err)
	}
	db = reopen(t, db, dir)
	e2, err := allocator.New(allocator.Config{Journal: db})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Recover(db, e2, now); err != nil {
		t.Fatal(err)
	}
	if rec, _ := e2.Office("msk-1"); !rec.Config.Services[0].RequiresApproval {
		t.Fatal("requires_approval lost in the restart")
	}
	if b, _ := e2.Get(waiting.ID, ""); b.Status != allocator.StatusAwaitingApproval {
		t.Fatalf("awaiting booking restored as %s", b.Status)
	}
	b, _ := e2.Get(rejected.ID, "")
	if last := b.History.Last(); b.Status != allocator.StatusRejected || last.Actor != "op-1" || last.Reason != "wrong documents" {
		t.Fatalf("rejected booking restored as %s, %s", b.Status, b.History)
	}
	if _, err := e2.Hold(now, allocator.HoldRequest{Office: "msk-1", Service: "patent", Applicant: "d", Start: start}, portal); err != nil {
		t.Fatalf("the rejected booking's seat: %v", err)
	}
	if _, err := e2.Hold(now, allocator.HoldRequest{Office: "msk-1", Service: "patent", Applicant: "e", Start: start}, portal); err == nil {
		t.Fatal("the awaiting booking's seat was sold again")
	}
	if b, err := e2.Confirm(now, held.ID, "", portal); err != nil || b.Status != allocator.StatusAwaitingApproval {
		t.Fatalf("confirm after the restart: %v %v", b.Status, err)
	}
	if b, err := e2.Approve(now, waiting.ID, allocator.Meta{Actor: "op-1"}); err != nil || b.Status != allocator.StatusConfirmed {
		t.Fatalf("approve after the restart: %v %v", b.Status, err)
	}
	if err := e2.Verify(); err != nil {
		t.Fatal(err)
	}
}
