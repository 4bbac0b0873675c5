package wal

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"slotd/allocator"
	"slotd/internal/slotdtest"
)

// TestFormat1StoreIsReadAndRestamped: a store of format 1, whose booking
// values are of version 1 under format 2's keys, opens; its bookings
// recover unchanged under format 3's keys, it is stamped 3 before
// anything new is written, and its applicant index is gone.
func TestFormat1StoreIsReadAndRestamped(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	// A version-1 value: the version-2 encoding of a history whose
	// transitions all name their actor, under version byte 1.
	r := advanced(heldBooking(1), allocator.StatusConfirmed, t0.UnixNano()+1e9, "")
	r.History = allocator.HistoryOf(allocator.Transition{AtUnixNano: t0.UnixNano(), Status: allocator.StatusHeld, Actor: "portal-a"},
		allocator.Transition{AtUnixNano: t0.UnixNano() + 1e9, Status: allocator.StatusConfirmed, Actor: "portal-b"})
	v, err := appendBooking(nil, r)
	if err != nil {
		t.Fatal(err)
	}
	v[0] = 1
	b := db.pdb.NewBatch()
	_ = b.Set(bookingKeyV2(r.ID), v, nil)
	_ = b.Set(metaKey(metaFormat), []byte{1}, nil)
	indexKey := append([]byte{prefixReservedApplicant, 5}, "a-1\x00\x01"...) // format 1's applicant index
	_ = b.Set(indexKey, nil, nil)
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
	db = reopen(t, db, dir)
	got, ok, err := db.LoadBooking(r.ID, t0.UnixNano())
	if err != nil || !ok || !reflect.DeepEqual(got, r) {
		t.Fatalf("version-1 booking: %+v %v %v, want %+v", got, ok, err, r)
	}
	checkStamp(t, db)
	if _, closer, err := db.pdb.Get(indexKey); !errors.Is(err, pebble.ErrNotFound) {
		if err == nil {
			closer.Close()
		}
		t.Fatalf("format 1's applicant index survived the upgrade: %v", err)
	}
	if _, closer, err := db.pdb.Get(bookingKeyV2(r.ID)); !errors.Is(err, pebble.ErrNotFound) {
		if err == nil {
			closer.Close()
		}
		t.Fatalf("format 2's booking key survived the upgrade: %v", err)
	}
}

// TestFormat2StoreIsUpgraded: a store of format 2 keeps its bookings under
// their ids; Open moves every one of them to its format-3 key, over more
// than one batch, and recovery finds each exactly once. An upgrade cut
// short (some bookings moved, the rest not, the store stamped upgrading)
// finishes at the next Open (wal invariant W8).
func TestFormat2StoreIsUpgraded(t *testing.T) {
	const n = upgradeBatchBookingsMax + 1000
	f := func(name string, movedAlready int, stamp byte) {
		t.Helper()
		db, dir := openWithOffice(t)
		b := db.pdb.NewBatch()
		want := map[allocator.ID]*allocator.BookingRecord{}
		for i := uint64(1); i <= n; i++ {
			r := heldBooking(i)
			if i%2 == 0 {
				r = advanced(r, allocator.StatusConfirmed, r.History.First().AtUnixNano+1e9, "")
			}
			want[r.ID] = r
			k := bookingKeyV2(r.ID)
			if i <= uint64(movedAlready) {
				k = bookingKeyOf(nil, r)
			}
			_ = b.Set(k, encodeBooking(t, r), nil)
		}
		_ = b.Set(metaKey(metaFormat), []byte{stamp}, nil)
		if err := b.Commit(pebble.Sync); err != nil {
			t.Fatal(err)
		}
		db = reopen(t, db, dir)
		checkStamp(t, db)
		c := &collector{}
		st, err := Recover(db, c, t0)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if st.Bookings != n || len(c.bookings) != n {
			t.Fatalf("%s: recovered %d bookings (%d restored), want %d", name, st.Bookings, len(c.bookings), n)
		}
		for _, r := range c.bookings {
			if !reflect.DeepEqual(r, want[r.ID]) {
				t.Fatalf("%s: booking %s recovered as %+v, want %+v", name, r.ID, r, want[r.ID])
			}
			delete(want, r.ID)
		}
		if len(want) != 0 {
			t.Fatalf("%s: %d bookings restored twice, %d missing", name, n-len(c.bookings), len(want))
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}
	f("whole upgrade", 0, 2)
	f("upgrade cut short", 1500, formatUpgrading)
	f("upgrade cut short by a version of format 4", 1500, formatUpgrading4)
}

// bookingKeyV2 is a booking's key in formats 1 and 2: the prefix and the id.
func bookingKeyV2(id allocator.ID) []byte { return append([]byte{prefixBooking}, id[:]...) }

// checkStamp fails unless db is stamped with this version's format.
func checkStamp(t *testing.T, db *DB) {
	t.Helper()
	stamp, closer, err := db.pdb.Get(metaKey(metaFormat))
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	if !bytes.Equal(stamp, []byte{formatVersion}) {
		t.Fatalf("stamp after open %x, want %x", stamp, formatVersion)
	}
}

// TestUpgradeCrashLeavesEveryBookingOnce: a crash at any moment of an
// upgrade leaves every booking under exactly one key, in a store an older
// version refuses once any booking moved, and the next Open finishes it
// (wal invariant W8). The store is cloned as a crash would leave it (some,
// all or none of the unsynced log kept) before every write to the
// log during Open, and each clone is opened and recovered.
func TestUpgradeCrashLeavesEveryBookingOnce(t *testing.T) {
	const n, batch = 1000, 90 // a dozen batches of moves
	const dir = "db"
	mem := slotdtest.MemFS(t, dir)
	db, err := Open(dir, Options{FS: mem})
	if err != nil {
		t.Fatal(err)
	}
	office := allocator.OfficeRecord{Config: testOffice("msk-sakharovo")}
	mustCommit(t, db, &allocator.Change{Office: &office})
	b := db.pdb.NewBatch()
	for i := uint64(1); i <= n; i++ {
		_ = b.Set(bookingKeyV2(testID(i)), encodeBooking(t, heldBooking(i)), nil)
	}
	_ = b.Set(metaKey(metaFormat), []byte{2}, nil)
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
	_ = db.Close()

	var mu sync.Mutex
	var clones []*vfs.MemFS
	writes := 0
	rng := rand.New(rand.NewPCG(1, 2))
	fs := &logWriteHookFS{FS: mem, hook: func() {
		mu.Lock()
		defer mu.Unlock()
		writes++
		keep := []int{0, 90, 100}[rng.IntN(3)]
		clones = append(clones, mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: keep, RNG: rand.New(rand.NewPCG(uint64(len(clones)), 7))}))
	}}
	db, err = Open(dir, Options{FS: fs, upgradeBatchBookings: batch})
	if err != nil {
		t.Fatal(err)
	}
	_ = db.Close()
	t.Logf("%d log writes, %d crash clones", writes, len(clones))
	if len(clones) < 3 {
		t.Fatalf("%d crash clones during the upgrade, want some before, during and after the moves", len(clones))
	}
	for ci, c := range clones {
		old, moved, stamp := countBookingKeys(t, c.CrashClone(vfs.CrashCloneCfg{}), dir)
		if old+moved != n {
			t.Fatalf("clone %d (stamp %x): %d bookings under old keys and %d under new, want %d in all", ci, stamp, old, moved, n)
		}
		if moved > 0 && stamp != formatUpgrading && stamp != formatVersion {
			t.Fatalf("clone %d: %d bookings moved under stamp %x, which an older version reads", ci, moved, stamp)
		}
		db, err := Open(dir, Options{FS: c})
		if err != nil {
			t.Fatalf("clone %d (stamp %x, %d moved): %v", ci, stamp, moved, err)
		}
		col := &collector{}
		if _, err := Recover(db, col, t0); err != nil {
			t.Fatalf("clone %d (stamp %x, %d moved): %v", ci, stamp, moved, err)
		}
		seen := map[allocator.ID]bool{}
		for _, r := range col.bookings {
			if seen[r.ID] {
				t.Fatalf("clone %d: booking %s recovered twice", ci, r.ID)
			}
			seen[r.ID] = true
		}
		if len(seen) != n {
			t.Fatalf("clone %d (stamp %x, %d moved): %d bookings after the next Open, want %d", ci, stamp, moved, len(seen), n)
		}
		checkStamp(t, db)
		_ = db.Close()
	}
}

// countBookingKeys opens the store in dir on fs with Pebble alone and
// counts its booking keys of format 2 and of format 3, and reads its stamp.
func countBookingKeys(t *testing.T, fs vfs.FS, dir string) (old, moved int, stamp byte) {
	t.Helper()
	pdb, err := pebble.Open(dir, &pebble.Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	defer pdb.Close()
	it, err := pdb.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixBooking}, UpperBound: []byte{prefixBooking + 1}})
	if err != nil {
		t.Fatal(err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		switch len(it.Key()) {
		case bookingKeyBytesV2:
			old++
		case bookingKeyBytes:
			moved++
		default:
			t.Fatalf("key %x is no booking key", it.Key())
		}
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	v, closer, err := pdb.Get(metaKey(metaFormat))
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	return old, moved, v[0]
}

// logWriteHookFS calls hook before every write to one of Pebble's log files.
type logWriteHookFS struct {
	vfs.FS
	hook func()
}

func (fs *logWriteHookFS) wrap(name string, f vfs.File, err error) (vfs.File, error) {
	if err != nil || !strings.HasSuffix(name, ".log") {
		return f, err
	}
	return &logWriteHookFile{File: f, hook: fs.hook}, nil
}

func (fs *logWriteHookFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, c)
	return fs.wrap(name, f, err)
}

func (fs *logWriteHookFS) ReuseForWrite(old, name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(old, name, c)
	return fs.wrap(name, f, err)
}

type logWriteHookFile struct {
	vfs.File
	hook func()
}

func (f *logWriteHookFile) Write(p []byte) (int, error) {
	f.hook()
	return f.File.Write(p)
}

// TestFormat3StoreIsRestamped: a store of format 3, whose events are of
// version 1 (the booking's length before it), opens, is stamped 4, and its
// events read as they were written.
func TestFormat3StoreIsRestamped(t *testing.T) {
	db, dir := openTest(t, Options{})
	c := holdChange(1)
	mustCommit(t, db, c)
	v2, err := appendEventValue(nil, &c.Events[0], nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := db.pdb.NewBatch()
	_ = b.Set(eventKey(nil, 1), eventValueV1(t, v2, c.Events[0].Booking), nil)
	_ = b.Set(metaKey(metaFormat), []byte{3}, nil)
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}
	db = reopen(t, db, dir)
	checkStamp(t, db)
	evs, err := db.ReadEvents(0, 10)
	if err != nil || len(evs) != 1 || !reflect.DeepEqual(evs[0].Booking, c.Bookings[0]) {
		t.Fatalf("events of version 1 after the restamp: %+v, %v", evs, err)
	}
}
