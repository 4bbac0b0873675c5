package wal

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"slotd/allocator"
)

// TestSweepIdempotencyBounded: records older than the TTL go, at most
// SweepBatchMax per call; newer ones stay (wal invariant W7).
func TestSweepIdempotencyBounded(t *testing.T) {
	db, _ := openTest(t, Options{SweepBatchMax: 3, IdempotencyTTL: time.Hour})
	now := t0.Add(10 * time.Hour)
	put := func(key string, at time.Time) {
		t.Helper()
		if err := db.PutIdempotency(&allocator.IdempotencyRecord{Key: key, Status: 409, AtUnixNano: at.UnixNano()}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 7; i++ {
		put(fmt.Sprint("old-", i), now.Add(-2*time.Hour-time.Duration(i)*time.Minute))
	}
	put("edge", now.Add(-time.Hour)) // exactly the TTL: kept
	put("new", now.Add(-time.Minute))
	f := func(wantDeleted int, wantMore bool) {
		t.Helper()
		st, err := db.Sweep(now)
		if err != nil {
			t.Fatal(err)
		}
		if st.IdempotencyDeleted != wantDeleted || st.More != wantMore || st.EventsDeleted != 0 {
			t.Fatalf("sweep %+v, want %d deleted, more=%v", st, wantDeleted, wantMore)
		}
	}
	f(3, true)
	f(3, true)
	f(1, false)
	f(0, false)
	for i := 0; i < 7; i++ {
		if _, ok, _ := db.LookupIdempotency(fmt.Sprint("old-", i)); ok {
			t.Fatalf("old-%d survived the sweep", i)
		}
	}
	for _, k := range []string{"edge", "new"} {
		if _, ok, err := db.LookupIdempotency(k); !ok || err != nil {
			t.Fatalf("%s swept too early (%v)", k, err)
		}
	}
	if got := db.Stats().SweepIdempotencyDeleted; got != 7 {
		t.Fatalf("stats count %d deletions, want 7", got)
	}
}

// TestSweepKeepsRewrittenIdempotency: an index entry of an older write
// does not delete a newer record under the same key.
func TestSweepKeepsRewrittenIdempotency(t *testing.T) {
	db, _ := openTest(t, Options{})
	if err := db.PutIdempotency(&allocator.IdempotencyRecord{Key: "k", Status: 409, AtUnixNano: t0.UnixNano()}); err != nil {
		t.Fatal(err)
	}
	later := t0.Add(30 * time.Hour)
	if err := db.PutIdempotency(&allocator.IdempotencyRecord{Key: "k", Status: 201, AtUnixNano: later.UnixNano()}); err != nil {
		t.Fatal(err)
	}
	st, err := db.Sweep(t0.Add(25 * time.Hour))
	if err != nil || st.IdempotencyDeleted != 1 {
		t.Fatalf("sweep %+v %v", st, err)
	}
	if r, ok, err := db.LookupIdempotency("k"); !ok || err != nil || r.Status != 201 {
		t.Fatalf("newer record lost: %+v %v %v", r, ok, err)
	}
}

// TestSweepEvents: events past retention go oldest first, bounded; when
// every event is gone the cursor still continues after a reopen (W5, W7).
func TestSweepEvents(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SweepBatchMax: 4, EventRetention: 24 * time.Hour}
	db, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	if m := db.EventsDeletedThrough(); m != 0 {
		t.Fatalf("deletion mark %d before any sweep", m)
	}
	for i := uint64(1); i <= 10; i++ {
		c := holdChange(i)
		c.Events[0].AtUnixNano = t0.Add(time.Duration(i) * time.Hour).UnixNano()
		mustCommit(t, db, c)
	}
	// At t0+30h events at ≤ t0+5h are past retention (5 of them).
	now := t0.Add(30 * time.Hour)
	f := func(wantDeleted int, wantMore bool, wantFirst uint64) {
		t.Helper()
		sweepAndCheck(t, db, now, wantDeleted, wantMore, wantFirst)
	}
	f(4, true, 5)
	f(1, false, 6)
	f(0, false, 6)

	now = t0.Add(100 * time.Hour)
	f2 := func() SweepStats {
		st, err := db.Sweep(now)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	if st := f2(); st.EventsDeleted != 4 || !st.More {
		t.Fatalf("sweep %+v", st)
	}
	if st := f2(); st.EventsDeleted != 1 || st.More {
		t.Fatalf("sweep %+v", st)
	}
	if evs, _ := db.ReadEvents(0, 100); len(evs) != 0 {
		t.Fatalf("%d events left", len(evs))
	}
	if m := db.EventsDeletedThrough(); m != 10 {
		t.Fatalf("deletion mark %d after deleting every event, want 10", m)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if m := db.EventsDeletedThrough(); m != 10 {
		t.Fatalf("deletion mark %d after a reopen, want the stored 10 (W10)", m)
	}
	c := holdChange(11)
	mustCommit(t, db, c)
	if c.Events[0].Cursor != 11 {
		t.Fatalf("cursor after sweeping everything and reopening: %d, want 11", c.Events[0].Cursor)
	}
	if got := db.Stats().SweepEventsDeleted; got != 0 {
		t.Fatalf("fresh DB reports %d swept events", got)
	}
}

// TestSweepDeletesAChangesEventsTogether: an event that shares the booking
// of the event before it goes with that event, though the pass's bound or
// the cutoff falls between them; the feed never holds an event whose
// booking was swept (W7).
func TestSweepDeletesAChangesEventsTogether(t *testing.T) {
	db, _ := openTest(t, Options{SweepBatchMax: 1, EventRetention: time.Hour})
	for i := uint64(1); i <= 3; i++ {
		c := holdConfirmChange(i)
		at := t0.Add(time.Duration(i) * time.Hour).UnixNano()
		c.Events[0].AtUnixNano = at
		c.Events[1].AtUnixNano = at + int64(50*time.Minute) // after the cutoff below for i = 2
		mustCommit(t, db, c)
	}
	now := t0.Add(3*time.Hour + 45*time.Minute) // cutoff t0+2h45m: change 2's hold is past it, its confirm is not
	sweepAndCheck(t, db, now, 2, true, 3)       // the bound of 1 falls between change 1's events
	sweepAndCheck(t, db, now, 2, true, 5)       // the cutoff falls between change 2's
	sweepAndCheck(t, db, now, 0, false, 5)      // change 3's hold is not old enough
}

// sweepAndCheck runs one sweep at now and checks what it deleted, whether
// it reported more, and that the feed's first event is wantFirst and
// carries its booking.
func sweepAndCheck(t *testing.T, db *DB, now time.Time, wantDeleted int, wantMore bool, wantFirst uint64) {
	t.Helper()
	st, err := db.Sweep(now)
	if err != nil {
		t.Fatal(err)
	}
	if st.EventsDeleted != wantDeleted || st.More != wantMore {
		t.Fatalf("sweep %+v, want %d events deleted, more=%v", st, wantDeleted, wantMore)
	}
	evs, err := db.ReadEvents(0, 100)
	if err != nil {
		t.Fatalf("after a sweep: %v", err)
	}
	if len(evs) == 0 || evs[0].Cursor != wantFirst || evs[0].Booking == nil {
		t.Fatalf("first of %d events %+v, want cursor %d with its booking", len(evs), evs, wantFirst)
	}
	// The sweep deletes a prefix of the feed: its mark is the cursor
	// before the first one kept (W10).
	if m := db.EventsDeletedThrough(); m != wantFirst-1 {
		t.Fatalf("deletion mark %d, want %d", m, wantFirst-1)
	}
}

// TestSweepPlanEncoding: a plan read back is the plan written; a plan of
// another version, cut short, with bytes left over or an unbounded batch
// is refused as corrupt rather than applied (W12).
func TestSweepPlanEncoding(t *testing.T) {
	p := SweepPlan{IdempotencyBeforeUnixNano: -5, EventsBeforeUnixNano: t0.UnixNano(), BatchMax: 7}
	enc := EncodeSweepPlan(p)
	if got, err := DecodeSweepPlan(enc); err != nil || got != p {
		t.Fatalf("read back %+v %v, wrote %+v", got, err, p)
	}
	bad := func(what string, data []byte) {
		t.Helper()
		if _, err := DecodeSweepPlan(data); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("%s: %v, want ErrCorrupt", what, err)
		}
	}
	bad("empty", nil)
	bad("other version", append([]byte{2}, enc[1:]...))
	bad("cut short", enc[:len(enc)-1])
	bad("left over", append(bytes.Clone(enc), 0))
	bad("no bound", EncodeSweepPlan(SweepPlan{BatchMax: 0}))
	bad("bound too large", EncodeSweepPlan(SweepPlan{BatchMax: sweepBatchMaxLimit + 1}))
}

// TestSweepDue: a sweep is due while a record or the oldest event is
// older than the plan's cutoffs, and not once they are swept.
func TestSweepDue(t *testing.T) {
	db, _ := openTest(t, Options{IdempotencyTTL: time.Hour})
	now := t0.Add(10 * time.Hour)
	f := func(want bool) {
		t.Helper()
		if due, err := db.SweepDue(db.PlanSweep(now)); err != nil || due != want {
			t.Fatalf("due %v %v, want %v", due, err, want)
		}
	}
	f(false)
	if err := db.PutIdempotency(&allocator.IdempotencyRecord{Key: "old", Status: 409, AtUnixNano: now.Add(-2 * time.Hour).UnixNano()}); err != nil {
		t.Fatal(err)
	}
	f(true)
	if _, err := db.Sweep(now); err != nil {
		t.Fatal(err)
	}
	f(false)
}
