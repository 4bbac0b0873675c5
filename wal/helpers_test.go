package wal

import (
	"encoding/binary"
	"errors"
	"sync"
	"testing"
	"time"

	"slotd/allocator"
	"slotd/internal/slotdtest"
	"slotd/internal/slotdtest/testtime"
)

// Test fixtures shared by the package's tests.

// t0 is the fixed "now" of the tests (testtime.T0).
var t0 = testtime.T0

var date0 = allocator.DateOf(t0)

// testID returns a deterministic booking id for n.
func testID(n uint64) allocator.ID {
	var id allocator.ID
	binary.BigEndian.PutUint64(id[:8], n*0x9E3779B97F4A7C15)
	binary.BigEndian.PutUint64(id[8:], n)
	return id
}

// heldBooking returns a valid held booking numbered n.
func heldBooking(n uint64) *allocator.BookingRecord {
	at := t0.UnixNano() + int64(n)
	return &allocator.BookingRecord{
		ID:                  testID(n),
		Office:              "msk-sakharovo",
		Service:             "patent",
		Applicant:           "a-" + time.Duration(n).String(),
		Date:                date0 + allocator.Date(n%30),
		Step:                uint16(36 + n%40),
		Slots:               1,
		Window:              uint16(n % 12),
		Seq:                 uint32(n),
		Status:              allocator.StatusHeld,
		HoldExpiresUnixNano: at + int64(10*time.Minute),
		History:             allocator.HistoryOf(allocator.Transition{AtUnixNano: at, Status: allocator.StatusHeld, Actor: "portal-a"}),
	}
}

// heldKey is the booking key of heldBooking(n).
func heldKey(n uint64) []byte { return bookingKeyOf(nil, heldBooking(n)) }

// loadHeld reads back the booking of heldBooking(n) (any later status).
func loadHeld(db *DB, n uint64) (*allocator.BookingRecord, bool, error) {
	return db.LoadBooking(testID(n), heldBooking(n).History.First().AtUnixNano)
}

// advanced returns a copy of r moved to status s at time at.
func advanced(r *allocator.BookingRecord, s allocator.Status, at int64, reason string) *allocator.BookingRecord {
	c := *r
	c.Status = s
	if s != allocator.StatusHeld {
		c.HoldExpiresUnixNano = 0
	}
	c.History = r.History.Append(allocator.Transition{AtUnixNano: at, Status: s, Actor: "portal-a", Reason: reason})
	return &c
}

// withPenalty returns h with the penalty mark on entry i.
func withPenalty(h allocator.History, i int) allocator.History {
	ts := h.Transitions()
	ts[i].Penalty = true
	return allocator.HistoryOf(ts...)
}

// holdChange is the change of a new hold: the booking and its event.
func holdChange(n uint64) *allocator.Change {
	b := heldBooking(n)
	return &allocator.Change{
		Bookings: []*allocator.BookingRecord{b},
		Events:   []allocator.Event{{Type: allocator.EventHeld, AtUnixNano: b.History.First().AtUnixNano, Office: b.Office, Booking: b}},
	}
}

// testOffice: 12 windows (slotdtest.Office).
func testOffice(id string) allocator.OfficeConfig { return slotdtest.Office(id, 12) }

// openWithOffice opens a DB in a fresh directory and stores the office
// msk-sakharovo in it.
func openWithOffice(t *testing.T) (*DB, string) {
	t.Helper()
	db, dir := openTest(t, Options{})
	office := allocator.OfficeRecord{Config: testOffice("msk-sakharovo")}
	mustCommit(t, db, &allocator.Change{Office: &office})
	return db, dir
}

// openTest opens a DB in a fresh temporary directory on the real file system.
func openTest(t testing.TB, opts Options) (*DB, string) {
	t.Helper()
	dir := t.TempDir()
	db, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db, dir
}

// reopen closes db and opens dir again, as a restart does; the new DB
// closes when the test ends.
func reopen(t testing.TB, db *DB, dir string) *DB {
	t.Helper()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func mustCommit(t testing.TB, db *DB, c *allocator.Change) {
	t.Helper()
	if err := db.Commit(c); err != nil {
		t.Fatalf("Commit: %v", err)
	}
}

// collector is a Restorer that keeps what it is given, in order.
type collector struct {
	mu       sync.Mutex
	offices  []allocator.OfficeRecord
	bookings []*allocator.BookingRecord
	watches  []*allocator.WatchRecord
	marks    []allocator.SeqMark
	doneAt   time.Time
	done     int
}

func (c *collector) RestoreOffice(rec allocator.OfficeRecord) error {
	c.offices = append(c.offices, rec)
	return nil
}

func (c *collector) RestoreBooking(rec *allocator.BookingRecord) error {
	c.mu.Lock() // Recover calls it from several goroutines
	defer c.mu.Unlock()
	if c.done > 0 {
		return errors.New("RestoreBooking after RestoreDone")
	}
	c.bookings = append(c.bookings, rec)
	return nil
}

func (c *collector) RestoreWatch(rec *allocator.WatchRecord) error {
	c.watches = append(c.watches, rec)
	return nil
}

func (c *collector) RestoreSeqMark(m allocator.SeqMark) error {
	c.marks = append(c.marks, m)
	return nil
}

func (c *collector) RestoreDone(now time.Time) error {
	c.done++
	c.doneAt = now
	return nil
}
