package wal

import (
	"testing"
	"time"

	"slotd/allocator"
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
