package wal

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2"

	"slotd/allocator"
)

// TestWatermarkOutOfOrder: ranges that finish out of cursor order are
// published only once everything below them is done; a failed range stops
// the watermark for good (wal invariant W4).
func TestWatermarkOutOfOrder(t *testing.T) {
	var f eventFeed
	f.init()
	f.start(10, 0)
	want := func(p uint64) {
		t.Helper()
		if got := f.published.Load(); got != p {
			t.Fatalf("published %d, want %d", got, p)
		}
	}
	a1, a2 := f.allocate(2) // 11..12
	b1, b2 := f.allocate(1) // 13
	c1, c2 := f.allocate(3) // 14..16
	if a1 != 11 || a2 != 12 || b1 != 13 || b2 != 13 || c1 != 14 || c2 != 16 {
		t.Fatalf("ranges %d-%d %d-%d %d-%d", a1, a2, b1, b2, c1, c2)
	}
	_, wake := f.waitChan()
	f.markDone(c1, c2)
	want(10)
	f.markDone(b1, b2)
	want(10)
	select {
	case <-wake:
		t.Fatal("woken before the watermark moved")
	default:
	}
	f.markDone(a1, a2)
	want(16)
	select {
	case <-wake:
	default:
		t.Fatal("not woken when the watermark moved")
	}
	d1, _ := f.allocate(1) // 17: fails
	e1, e2 := f.allocate(2)
	f.markDone(e1, e2)
	f.markFailed(d1)
	want(16)
	g1, g2 := f.allocate(1)
	f.markDone(g1, g2)
	want(16)
}

// TestWatermarkWakesEveryWaiter: the wake channel is replaced only when a
// waiter took it, and every waiter is woken by the next advance, whether
// or not the advances before it had one.
func TestWatermarkWakesEveryWaiter(t *testing.T) {
	var f eventFeed
	f.init()
	f.start(0, 0)
	woken := func(wake <-chan struct{}) bool {
		select {
		case <-wake:
			return true
		default:
			return false
		}
	}
	a1, a2 := f.allocate(1)
	f.markDone(a1, a2) // no waiter
	p, w1 := f.waitChan()
	_, w2 := f.waitChan()
	if p != 1 || woken(w1) || woken(w2) {
		t.Fatalf("watermark %d; woken before it moved: %v %v", p, woken(w1), woken(w2))
	}
	b1, b2 := f.allocate(1)
	f.markDone(b1, b2)
	if !woken(w1) || !woken(w2) {
		t.Fatal("a waiter was not woken when the watermark moved")
	}
	_, w3 := f.waitChan()
	if woken(w3) {
		t.Fatal("the channel handed out after the advance is already closed")
	}
	c1, c2 := f.allocate(1)
	f.markDone(c1, c2)
	if !woken(w3) {
		t.Fatal("the second waiter was not woken")
	}
}

// TestEventFeedHammer: many goroutines commit concurrently while readers
// follow the feed; every reader sees every event exactly once, in cursor
// order, and never finds an event below a cursor it has passed (W4).
func TestEventFeedHammer(t *testing.T) {
	db, _ := openTest(t, Options{})
	const writers, perWriter, readers = 32, 40, 4
	var wg sync.WaitGroup
	var total atomic.Uint64
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perWriter; i++ {
				n := uint64(w*perWriter + i + 1)
				c := holdChange(n)
				if i%3 == 0 { // some changes carry several events
					c.Events = append(c.Events, allocator.Event{Type: allocator.EventWatchMatched, Office: "o", Booking: c.Bookings[0]})
				}
				if err := db.Commit(c); err != nil {
					t.Errorf("commit: %v", err)
					return
				}
				total.Add(uint64(len(c.Events)))
			}
		}()
	}
	writersDone := make(chan struct{})
	go func() { wg.Wait(); close(writersDone) }()

	errs := make(chan error, readers)
	for r := 0; r < readers; r++ {
		go func() {
			errs <- followFeed(db, writersDone, &total)
		}()
	}
	for r := 0; r < readers; r++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d events; %d batches finished before a lower cursor and waited for it", total.Load(), db.feed.parked.Load())
}

// followFeed reads the feed until the writers are done and everything they
// wrote was read, checking order and completeness.
func followFeed(db *DB, writersDone <-chan struct{}, total *atomic.Uint64) error {
	// The wait ends when an event arrives or the writers finish.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-writersDone
		cancel()
	}()
	var cursor uint64
	seen := 0
	for {
		evs, err := db.ReadEvents(cursor, 7)
		if err != nil {
			return err
		}
		for _, e := range evs {
			if e.Cursor != cursor+1 {
				// No commit fails here, so the cursors are dense: a jump
				// means an event was skipped.
				return fmt.Errorf("after cursor %d came %d", cursor, e.Cursor)
			}
			cursor = e.Cursor
			seen++
		}
		if len(evs) > 0 {
			continue
		}
		if ctx.Err() != nil { // writers done and nothing left to read
			if uint64(seen) != total.Load() || db.PublishedCursor() != cursor {
				return fmt.Errorf("saw %d events of %d, cursor %d, published %d", seen, total.Load(), cursor, db.PublishedCursor())
			}
			return nil
		}
		if _, err := db.WaitEvents(ctx, cursor); err != nil && !errors.Is(err, context.Canceled) {
			return fmt.Errorf("wait: %w", err)
		}
	}
}

func TestWaitEvents(t *testing.T) {
	db, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan uint64, 1)
	go func() {
		p, err := db.WaitEvents(context.Background(), 0)
		if err != nil {
			t.Error(err)
		}
		got <- p
	}()
	mustCommit(t, db, holdChange(1))
	if p := <-got; p != 1 {
		t.Fatalf("woke at %d, want 1", p)
	}
	// Already past: returns at once.
	if p, err := db.WaitEvents(context.Background(), 0); err != nil || p != 1 {
		t.Fatalf("got %d %v", p, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := db.WaitEvents(ctx, 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled wait: %v", err)
	}
	closed := make(chan error, 1)
	go func() {
		_, err := db.WaitEvents(context.Background(), 1)
		closed <- err
	}()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-closed; !errors.Is(err, allocator.ErrJournalClosed) {
		t.Fatalf("wait across Close: %v", err)
	}
}

func TestReadEventsLimits(t *testing.T) {
	db, _ := openTest(t, Options{})
	for i := uint64(1); i <= 5; i++ {
		mustCommit(t, db, holdChange(i))
	}
	f := func(after uint64, limit int, want []uint64) {
		t.Helper()
		evs, err := db.ReadEvents(after, limit)
		if err != nil {
			t.Fatal(err)
		}
		var got []uint64
		for _, e := range evs {
			got = append(got, e.Cursor)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("ReadEvents(%d, %d) = %v, want %v", after, limit, got, want)
		}
	}
	f(0, 2, []uint64{1, 2})
	f(2, 10, []uint64{3, 4, 5})
	f(5, 10, nil)
	f(99, 10, nil)
	for _, limit := range []int{0, -1, EventsPerReadMax + 1} {
		if _, err := db.ReadEvents(0, limit); !errors.Is(err, ErrEventLimit) {
			t.Fatalf("limit %d: %v", limit, err)
		}
	}
	evs, _ := db.ReadEvents(0, 1)
	if evs[0].Booking == nil || evs[0].Booking.ID != testID(1) || evs[0].Type != allocator.EventHeld {
		t.Fatalf("event %+v", evs[0])
	}
}

// holdConfirmChange is a hold confirmed in the change that makes it, as
// Engine.Hold with Confirm writes it: one booking, two events sharing it.
func holdConfirmChange(n uint64) *allocator.Change {
	c := holdChange(n)
	b := c.Bookings[0]
	c.Events = append(c.Events, allocator.Event{Type: allocator.EventConfirmed, AtUnixNano: b.History.First().AtUnixNano, Office: b.Office, Booking: b})
	return c
}

// TestEventsShareTheirChangesBooking: the second event of a change that
// carries one booking twice stores only the distance back to the first,
// and reads with the booking all the same, from any cursor, before and
// after a restart.
func TestEventsShareTheirChangesBooking(t *testing.T) {
	db, dir := openTest(t, Options{})
	changes := []*allocator.Change{holdConfirmChange(1), holdConfirmChange(2)}
	for _, c := range changes {
		mustCommit(t, db, c)
	}
	first, second := rawValue(t, db, eventKey(nil, 1)), rawValue(t, db, eventKey(nil, 2))
	if len(second) > len(first)-len(encodeBooking(t, changes[0].Bookings[0]))+1 {
		t.Fatalf("the confirm's event takes %d bytes, the hold's %d: the booking is stored twice", len(second), len(first))
	}
	check := func(when string) {
		t.Helper()
		for after := uint64(0); after < 4; after++ {
			for _, limit := range []int{1, 10} {
				evs, err := db.ReadEvents(after, limit)
				if err != nil || len(evs) == 0 {
					t.Fatalf("%s: ReadEvents(%d, %d): %d events, %v", when, after, limit, len(evs), err)
				}
				for _, e := range evs {
					if want := changes[(e.Cursor-1)/2].Bookings[0]; !reflect.DeepEqual(e.Booking, want) {
						t.Fatalf("%s: ReadEvents(%d, %d): event %d has booking %+v, want %+v", when, after, limit, e.Cursor, e.Booking, want)
					}
				}
			}
		}
	}
	check("live")
	db = reopen(t, db, dir)
	check("after a restart")

	// The event holding the booking gone: the one that shares it is corrupt.
	if err := db.pdb.Delete(eventKey(nil, 3), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ReadEvents(3, 1); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "event/4") {
		t.Fatalf("got %v, want ErrCorrupt naming event/4", err)
	}
}

// rawValue returns the value stored under k.
func rawValue(t *testing.T, db *DB, k []byte) []byte {
	t.Helper()
	v, closer, err := db.pdb.Get(k)
	if err != nil {
		t.Fatalf("%s: %v", KeyString(k), err)
	}
	defer closer.Close()
	return append([]byte(nil), v...)
}
