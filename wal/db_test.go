package wal

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"

	"slotd/allocator"
)

// *allocator.Engine is what Recover feeds in production.
var _ Restorer = (*allocator.Engine)(nil)

func TestOptionsValidate(t *testing.T) {
	f := func(o Options, wantSubstring string) {
		t.Helper()
		err := o.validate()
		switch {
		case wantSubstring == "" && err != nil:
			t.Fatalf("%+v: unexpected error %v", o, err)
		case wantSubstring != "" && (err == nil || !strings.Contains(err.Error(), wantSubstring)):
			t.Fatalf("%+v: got %v, want an error about %s", o, err, wantSubstring)
		}
	}
	f(Options{}, "")
	f(Options{EventRetention: -1}, "EventRetention")
	f(Options{IdempotencyTTL: -1}, "IdempotencyTTL")
	f(Options{SweepBatchMax: -1}, "SweepBatchMax")
	f(Options{SweepBatchMax: sweepBatchMaxLimit + 1}, "SweepBatchMax")
	f(Options{CacheBytes: -1}, "CacheBytes")
	f(Options{MemTableBytes: 1}, "MemTableBytes")
	if _, err := Open(t.TempDir(), Options{SweepBatchMax: -1}); err == nil {
		t.Fatal("Open accepted invalid options")
	}
}

// TestCommitReopen: what was committed is what Recover hands over after a
// reopen, latest record per booking (wal invariants W1, W6), and the event
// cursor continues (W5).
func TestCommitReopen(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	office := allocator.OfficeRecord{Config: testOffice("msk-sakharovo"), ReleasedThrough: date0 + 30}
	mustCommit(t, db, &allocator.Change{Office: &office, Events: []allocator.Event{{Type: allocator.EventSlotsReleased, Office: office.Config.ID, Through: office.ReleasedThrough}}})
	const n = 50
	want := map[allocator.ID]*allocator.BookingRecord{}
	for i := uint64(1); i <= n; i++ {
		c := holdChange(i)
		mustCommit(t, db, c)
		want[c.Bookings[0].ID] = c.Bookings[0]
	}
	for i := uint64(1); i <= n; i += 3 { // a third of them move on
		r := advanced(want[testID(i)], allocator.StatusConfirmed, t0.UnixNano()+1e9, "")
		mustCommit(t, db, &allocator.Change{Bookings: []*allocator.BookingRecord{r}, Events: []allocator.Event{{Type: allocator.EventConfirmed, Booking: r}}})
		want[r.ID] = r
	}
	idem := &allocator.IdempotencyRecord{Key: "portal-a/k", Status: 201, Body: []byte("{}"), AtUnixNano: t0.UnixNano()}
	c := holdChange(n + 1)
	c.Idempotency = idem
	mustCommit(t, db, c)
	want[c.Bookings[0].ID] = c.Bookings[0]
	lastCursor := c.Events[0].Cursor
	if got := db.PublishedCursor(); got != lastCursor {
		t.Fatalf("published %d, last cursor %d", got, lastCursor)
	}
	db = reopen(t, db, dir)
	var col collector
	st, err := Recover(db, &col, t0)
	if err != nil {
		t.Fatal(err)
	}
	if st.Offices != 1 || st.Bookings != len(want) || st.LastCursor != lastCursor || col.done != 1 || !col.doneAt.Equal(t0) {
		t.Fatalf("recovery stats %+v, collector done %d", st, col.done)
	}
	if !reflect.DeepEqual(col.offices, []allocator.OfficeRecord{office}) {
		t.Fatalf("offices:\n%+v\nwant %+v", col.offices, office)
	}
	for _, r := range col.bookings {
		if !reflect.DeepEqual(r, want[r.ID]) {
			t.Fatalf("booking %s:\n%+v\nwant %+v", r.ID, r, want[r.ID])
		}
		delete(want, r.ID)
	}
	if len(want) != 0 {
		t.Fatalf("%d bookings not recovered", len(want))
	}
	got, ok, err := db.LookupIdempotency(idem.Key)
	if err != nil || !ok || !reflect.DeepEqual(got, idem) {
		t.Fatalf("idempotency after reopen: %+v %v %v", got, ok, err)
	}
	c = holdChange(n + 2)
	mustCommit(t, db, c)
	if c.Events[0].Cursor != lastCursor+1 {
		t.Fatalf("cursor after reopen %d, want %d", c.Events[0].Cursor, lastCursor+1)
	}
	if r, ok, err := loadHeld(db, 4); err != nil || !ok || r.Status != allocator.StatusConfirmed {
		t.Fatalf("LoadBooking: %+v %v %v", r, ok, err)
	}
}

// TestRecoverCorruptNamesKey: a stored value that fails to decode or fails
// its check stops recovery with an error naming the key (wal invariant W3).
func TestRecoverCorruptNamesKey(t *testing.T) {
	f := func(name string, corrupt func(db *DB) []byte) {
		t.Helper()
		db, dir := openWithOffice(t)
		for i := uint64(1); i <= 5; i++ {
			mustCommit(t, db, holdChange(i))
		}
		key := corrupt(db)
		db = reopen(t, db, dir)
		_, err := Recover(db, &collector{}, t0)
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), KeyString(key)) {
			t.Fatalf("%s: got %v, want ErrCorrupt naming %s", name, err, KeyString(key))
		}
	}
	raw := func(db *DB, k, v []byte) []byte {
		if err := db.pdb.Set(k, v, pebble.Sync); err != nil {
			t.Fatal(err)
		}
		return k
	}
	f("booking value cut short", func(db *DB) []byte {
		v := encodeBooking(t, heldBooking(3))
		return raw(db, heldKey(3), v[:len(v)-2])
	})
	f("booking that decodes but fails Check (status differs from history)", func(db *DB) []byte {
		v := encodeBooking(t, heldBooking(4))
		v[17] = byte(allocator.StatusConfirmed) // the status byte follows version and id
		return raw(db, heldKey(4), v)
	})
	f("booking stored under another id", func(db *DB) []byte {
		return raw(db, bookingKey(nil, heldBooking(2).History.First().AtUnixNano, testID(99)), encodeBooking(t, heldBooking(2)))
	})
	f("booking stored under another creation time", func(db *DB) []byte {
		return raw(db, bookingKey(nil, heldBooking(2).History.First().AtUnixNano+1, testID(2)), encodeBooking(t, heldBooking(2)))
	})
	f("office with broken JSON", func(db *DB) []byte {
		return raw(db, officeKey(nil, "msk-sakharovo"), []byte{officeVersion, 0, '{'})
	})
	f("unknown booking version", func(db *DB) []byte {
		v := encodeBooking(t, heldBooking(5))
		v[0] = 9
		return raw(db, heldKey(5), v)
	})
}

func TestReadEventsCorruptNamesKey(t *testing.T) {
	db, _ := openTest(t, Options{})
	for i := uint64(1); i <= 3; i++ {
		mustCommit(t, db, holdChange(i))
	}
	if err := db.pdb.Set(eventKey(nil, 2), []byte{eventVersion, 200}, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	_, err := db.ReadEvents(0, 10)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "event/2") {
		t.Fatalf("got %v, want ErrCorrupt naming event/2", err)
	}
}

func TestFormatStamp(t *testing.T) {
	dir := t.TempDir()
	pdb, err := pebble.Open(dir, &pebble.Options{Logger: pebbleLogger{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := pdb.Set([]byte("foreign"), []byte("data"), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := pdb.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, Options{}); !errors.Is(err, ErrFormat) {
		t.Fatalf("unstamped store with data: got %v, want ErrFormat", err)
	}

	dir = t.TempDir()
	db, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.pdb.Set(metaKey(metaFormat), []byte{formatVersion + 1}, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, Options{}); !errors.Is(err, ErrFormat) {
		t.Fatalf("future format: got %v, want ErrFormat", err)
	}
}

// TestCommitRefusesInvalid: a change that fails its check is refused
// before any cursor is taken and leaves the DB healthy (wal invariant W3).
func TestCommitRefusesInvalid(t *testing.T) {
	db, _ := openTest(t, Options{})
	mustCommit(t, db, holdChange(1))
	bad := holdChange(2)
	bad.Bookings[0].Slots = 0
	if err := db.Commit(bad); !errors.Is(err, ErrInvalidRecord) {
		t.Fatalf("got %v, want ErrInvalidRecord", err)
	}
	big := holdChange(3)
	big.Idempotency = &allocator.IdempotencyRecord{Key: "k", Status: 200, Body: make([]byte, IdempotencyBodyBytesMax+1)}
	if err := db.Commit(big); !errors.Is(err, ErrRecordTooLarge) {
		t.Fatalf("got %v, want ErrRecordTooLarge", err)
	}
	if db.Degraded() {
		t.Fatal("a refused record degraded the DB")
	}
	c := holdChange(4)
	mustCommit(t, db, c)
	if c.Events[0].Cursor != 2 {
		t.Fatalf("cursor %d after refused changes, want 2 (no cursor consumed)", c.Events[0].Cursor)
	}
	if _, ok, _ := loadHeld(db, 2); ok {
		t.Fatal("refused booking was written")
	}
	if err := db.Commit(&allocator.Change{}); err != nil {
		t.Fatalf("empty change: %v", err)
	}
}

func TestClosed(t *testing.T) {
	db, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Commit(holdChange(1)); !errors.Is(err, allocator.ErrJournalClosed) {
		t.Fatalf("Commit after Close: %v", err)
	}
	if _, err := db.ReadEvents(0, 1); !errors.Is(err, allocator.ErrJournalClosed) {
		t.Fatalf("ReadEvents after Close: %v", err)
	}
	if _, _, err := db.LookupIdempotency("k"); !errors.Is(err, allocator.ErrJournalClosed) {
		t.Fatalf("LookupIdempotency after Close: %v", err)
	}
	if err := db.Close(); !errors.Is(err, allocator.ErrJournalClosed) {
		t.Fatalf("second Close: %v", err)
	}
}
