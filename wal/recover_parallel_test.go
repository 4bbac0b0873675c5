package wal

import (
	"strings"
	"testing"
	"time"

	"slotd/allocator"
)

// Recovery spreads bookings over workers (restoreBookings): many batches
// must all arrive, and a seat owned twice must still stop recovery
// (DESIGN invariant 1) whichever worker meets the second owner.
func TestRecoverParallelCompleteAndStrict(t *testing.T) {
	all := []string{"00:00-24:00"}
	cfg := allocator.OfficeConfig{ID: "p", Name: "P", Region: "r", City: "c", Address: "a", Timezone: "Europe/Moscow",
		SlotMinutes: 15, Windows: 8, Hours: map[string][]string{"mon": all, "tue": all, "wed": all, "thu": all, "fri": all, "sat": all, "sun": all},
		Services: []allocator.ServiceConfig{{ID: "s", Name: "S", Slots: 1}}, Policy: allocator.DefaultPolicy()}
	base := allocator.DateOf(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	write := func(dir string, n int, duplicate bool) {
		db, err := Open(dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if err := db.Commit(&allocator.Change{Office: &allocator.OfficeRecord{Config: cfg, ReleasedThrough: base + 30}}); err != nil {
			t.Fatal(err)
		}
		c := &allocator.Change{}
		for i := 0; i < n; i++ {
			seat := i
			if duplicate && i == n-1 {
				seat = n / 2 // the last booking takes a seat already owned
			}
			rec := &allocator.BookingRecord{Office: "p", Service: "s", Applicant: "a", Date: base + allocator.Date(seat/(96*8)),
				Step: uint16(seat % 96), Slots: 1, Window: uint16((seat / 96) % 8), Seq: uint32(i + 1), Status: allocator.StatusConfirmed,
				History: allocator.HistoryOf(allocator.Transition{AtUnixNano: 1, Status: allocator.StatusConfirmed, Actor: "x"})}
			rec.ID[0], rec.ID[1], rec.ID[15] = byte(i), byte(i>>8), 7
			c.Bookings = append(c.Bookings, rec)
		}
		if err := db.Commit(c); err != nil {
			t.Fatal(err)
		}
	}
	restoreFrom := func(dir string) (RecoveryStats, *allocator.Engine, error) {
		db, err := Open(dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		e, _ := allocator.New(allocator.Config{Journal: db})
		st, err := Recover(db, e, time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC))
		return st, e, err
	}
	const n = 5*recoverBatch + 17
	ok := t.TempDir()
	write(ok, n, false)
	st, e, err := restoreFrom(ok)
	if err != nil || st.Bookings != n || st.ActiveBookings != n {
		t.Fatalf("recovered %+v: %v", st, err)
	}
	if err := e.Verify(); err != nil {
		t.Fatal(err)
	}
	bad := t.TempDir()
	write(bad, n, true)
	if _, _, err := restoreFrom(bad); err == nil || !strings.Contains(err.Error(), "taken") {
		t.Fatalf("a double-owned seat recovered: %v", err)
	}
}
