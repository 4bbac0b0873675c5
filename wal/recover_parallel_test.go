package wal

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"slotd/allocator"
)

// writeSeatBookings writes an office "p" and n confirmed bookings of it to a
// store in dir, each on a seat of its own, or with duplicate the last on
// a seat already owned.
func writeSeatBookings(t *testing.T, dir string, n int, duplicate bool) {
	t.Helper()
	all := []string{"00:00-24:00"}
	cfg := allocator.OfficeConfig{ID: "p", Name: "P", Region: "r", City: "c", Address: "a", Timezone: "Europe/Moscow",
		SlotMinutes: 15, Windows: 8, Hours: map[string][]string{"mon": all, "tue": all, "wed": all, "thu": all, "fri": all, "sat": all, "sun": all},
		Services: []allocator.ServiceConfig{{ID: "s", Name: "S", Slots: 1}}, Policy: allocator.DefaultPolicy()}
	base := allocator.DateOf(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
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

// Recovery spreads bookings over workers (restoreBookings): many batches
// must all arrive, and a seat owned twice must still stop recovery
// (DESIGN invariant 1) whichever worker meets the second owner.
func TestRecoverParallelCompleteAndStrict(t *testing.T) {
	write := func(dir string, n int, duplicate bool) { writeSeatBookings(t, dir, n, duplicate) }
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

// cancelAfter is a Restorer that cancels its context once it has been
// handed its first booking.
type cancelAfter struct {
	collector
	cancel context.CancelFunc
}

func (c *cancelAfter) RestoreBooking(rec *allocator.BookingRecord) error {
	c.cancel()
	return c.collector.RestoreBooking(rec)
}

// A recovery whose context ends gives up between batches with the
// context's error, restores no further batch and never calls
// RestoreDone (W13): a node that stops leading mid-rebuild does not
// finish an engine nobody runs.
func TestRecoverContextGivesUp(t *testing.T) {
	const n = 20*recoverBatch + 3
	dir := t.TempDir()
	writeSeatBookings(t, dir, n, false)
	db, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := &cancelAfter{cancel: cancel}
	_, err = RecoverContext(ctx, db, r, time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("recovery with its context ended: %v, want context.Canceled", err)
	}
	r.mu.Lock()
	got := len(r.bookings)
	r.mu.Unlock()
	// The scan hands at most one batch per worker, and one in the channel
	// per worker, after the cancel; everything else stays unread.
	if limit := 3 * runtime.GOMAXPROCS(0) * recoverBatch; got > limit || got >= n {
		t.Fatalf("restored %d of %d bookings after the cancel, want at most %d", got, n, limit)
	}
	if r.done != 0 {
		t.Fatal("RestoreDone called on a cancelled recovery")
	}
	// The same store recovers in full with a live context.
	full := &collector{}
	if st, err := RecoverContext(context.Background(), db, full, time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)); err != nil || st.Bookings != n {
		t.Fatalf("full recovery: %+v, %v", st, err)
	}
}
