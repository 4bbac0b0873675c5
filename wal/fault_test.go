package wal

// Fault injection: failing syncs through errorfs, and crashes simulated by
// cloning a crashable in-memory file system with only (or partly) the
// synced data.

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"slotd/allocator"
	"slotd/internal/slotdtest"
	"slotd/internal/slotdtest/testtime"
)

// failLogSyncs injects an error into every sync of a log file while on.
func failLogSyncs(on *atomic.Bool) errorfs.Injector {
	return errorfs.InjectorFunc(func(op errorfs.Op) error {
		if !on.Load() || !strings.HasSuffix(op.Path, ".log") {
			return nil
		}
		switch op.Kind {
		case errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
			return errorfs.ErrInjected
		}
		return nil
	})
}

// openFailingSyncs opens a DB in dir on a crashable in-memory file system
// whose log syncs fail while on is set.
func openFailingSyncs(t *testing.T, dir string) (mem *vfs.MemFS, on *atomic.Bool, db *DB) {
	t.Helper()
	mem, on = slotdtest.MemFS(t, dir), new(atomic.Bool)
	db, err := Open(dir, Options{FS: errorfs.Wrap(mem, failLogSyncs(on))})
	if err != nil {
		t.Fatal(err)
	}
	return mem, on, db
}

// recovered opens dir on fs and returns what Recover hands over, by id.
func recovered(t *testing.T, fs vfs.FS, dir string) (map[allocator.ID]*allocator.BookingRecord, *DB) {
	t.Helper()
	db, err := Open(dir, Options{FS: fs})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	var col collector
	if _, err := Recover(db, &col, t0); err != nil {
		t.Fatalf("recover: %v", err)
	}
	m := map[allocator.ID]*allocator.BookingRecord{}
	for _, r := range col.bookings {
		m[r.ID] = r
	}
	return m, db
}

// allEvents reads the whole published feed.
func allEvents(t *testing.T, db *DB) []allocator.Event {
	t.Helper()
	var out []allocator.Event
	var cursor uint64
	for {
		evs, err := db.ReadEvents(cursor, EventsPerReadMax)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 0 {
			return out
		}
		out = append(out, evs...)
		cursor = evs[len(evs)-1].Cursor
	}
}

// TestSyncFailureDegrades: a failed sync is never acknowledged, the DB
// refuses every later write, the failed batches' events are never
// published, and after a crash only acknowledged changes exist (wal
// invariants W1, W2, W4).
func TestSyncFailureDegrades(t *testing.T) {
	const dir = "db"
	mem, on, db := openFailingSyncs(t, dir)
	acked := map[allocator.ID]bool{}
	for i := uint64(1); i <= 10; i++ {
		mustCommit(t, db, holdChange(i))
		acked[testID(i)] = true
	}
	on.Store(true)
	var wg sync.WaitGroup
	var mu sync.Mutex
	failed := map[allocator.ID]bool{}
	for w := uint64(0); w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := holdChange(100 + w)
			c.Idempotency = &allocator.IdempotencyRecord{Key: fmt.Sprint("k", w), Status: 201, AtUnixNano: t0.UnixNano()}
			err := db.Commit(c)
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				acked[c.Bookings[0].ID] = true
				return
			}
			if !errors.Is(err, ErrDegraded) {
				t.Errorf("commit error %v does not wrap ErrDegraded", err)
			}
			failed[c.Bookings[0].ID] = true
		}()
	}
	wg.Wait()
	if len(failed) == 0 {
		t.Fatal("no commit failed while every log sync fails")
	}
	if !db.Degraded() || !db.Stats().Degraded {
		t.Fatal("not degraded after a failed sync")
	}
	on.Store(false) // the disk recovers; the DB must still refuse
	if err := db.Commit(holdChange(200)); !errors.Is(err, ErrDegraded) {
		t.Fatalf("commit after failure: %v", err)
	}
	if err := db.PutIdempotency(&allocator.IdempotencyRecord{Key: "x", Status: 400}); !errors.Is(err, ErrDegraded) {
		t.Fatalf("PutIdempotency after failure: %v", err)
	}
	if _, err := db.Sweep(t0); !errors.Is(err, ErrDegraded) {
		t.Fatalf("Sweep after failure: %v", err)
	}
	// A failed change may sit in the memtable: reads of single records
	// refuse rather than answer from it (a retry would otherwise replay
	// the first answer of a change that is not on disk).
	for w := uint64(0); w < 16; w++ {
		if _, _, err := db.LookupIdempotency(fmt.Sprint("k", w)); !errors.Is(err, ErrDegraded) {
			t.Fatalf("LookupIdempotency after failure: %v", err)
		}
		if _, _, err := loadHeld(db, 100+w); !errors.Is(err, ErrDegraded) {
			t.Fatalf("LoadBooking after failure: %v", err)
		}
	}
	for _, e := range allEvents(t, db) {
		if !acked[e.Booking.ID] {
			t.Fatalf("event %d of unacknowledged booking %s published", e.Cursor, e.Booking.ID)
		}
	}
	st := db.Stats()
	if st.WALSyncErrors == 0 || st.CommitErrors < uint64(len(failed))+1 {
		t.Fatalf("stats %+v", st)
	}

	// Crash now: only what was synced survives.
	crashed := mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
	_ = db.Close() // may report the failure; must not hang or panic

	got, db2 := recovered(t, crashed, dir)
	for id := range acked {
		if got[id] == nil {
			t.Fatalf("acknowledged booking %s lost", id)
		}
	}
	for id := range got {
		if !acked[id] {
			t.Fatalf("unacknowledged booking %s survived a crash that kept only synced data", id)
		}
	}
	if n := len(allEvents(t, db2)); n != len(acked) {
		t.Fatalf("%d events after crash, want %d", n, len(acked))
	}
	for w := 0; w < 16; w++ {
		r, ok, err := db2.LookupIdempotency(fmt.Sprint("k", w))
		if err != nil {
			t.Fatal(err)
		}
		if ok != acked[testID(100+uint64(w))] {
			t.Fatalf("idempotency record k%d present=%v but booking acknowledged=%v (%+v)", w, ok, acked[testID(100+uint64(w))], r)
		}
	}
	// The cursor continues after the last durable event (W5).
	c := holdChange(300)
	mustCommit(t, db2, c)
	if want := uint64(len(acked)) + 1; c.Events[0].Cursor != want {
		t.Fatalf("cursor after crash %d, want %d", c.Events[0].Cursor, want)
	}
}

// TestSyncFailureWithoutCrash: reopened on the same file system without a
// crash, a failed change may come back (its bytes reached the file, only
// the sync failed), but only whole: booking, event and idempotency record
// together or none of them (one batch).
func TestSyncFailureWithoutCrash(t *testing.T) {
	const dir = "db"
	mem, on, db := openFailingSyncs(t, dir)
	mustCommit(t, db, holdChange(1))
	on.Store(true)
	c := holdChange(2)
	c.Idempotency = &allocator.IdempotencyRecord{Key: "k", Status: 201}
	if err := db.Commit(c); !errors.Is(err, ErrDegraded) {
		t.Fatalf("commit with failing sync: %v", err)
	}
	_ = db.Close()
	on.Store(false)
	got, db2 := recovered(t, mem, dir)
	_, idem, err := db2.LookupIdempotency("k")
	if err != nil {
		t.Fatal(err)
	}
	evs := allEvents(t, db2)
	present := got[testID(2)] != nil
	if idem != present || (len(evs) == 2) != present || got[testID(1)] == nil {
		t.Fatalf("half-applied change: booking %v, idempotency %v, events %d", present, idem, len(evs))
	}
}

// TestCrashCloneDropsUnsynced checks the harness: a crash clone keeps
// synced commits and drops a write that was never synced.
func TestCrashCloneDropsUnsynced(t *testing.T) {
	const dir = "db"
	mem := slotdtest.MemFS(t, dir)
	db, err := Open(dir, Options{FS: mem})
	if err != nil {
		t.Fatal(err)
	}
	for i := uint64(1); i <= 5; i++ {
		mustCommit(t, db, holdChange(i))
	}
	v := encodeBooking(t, heldBooking(6))
	if err := db.pdb.Set(heldKey(6), v, pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	crashed := mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
	_ = db.Close()
	got, _ := recovered(t, crashed, dir)
	if len(got) != 5 || got[testID(6)] != nil {
		t.Fatalf("recovered %d bookings (unsynced present: %v), want the 5 synced", len(got), got[testID(6)] != nil)
	}
}

// TestCrashCloneMidFlight crashes while writers commit, keeping a random
// part of the unsynced data: every change acknowledged before the crash
// survives, every surviving booking has its event (atomic batches), and
// the feed has no duplicate cursor (W1, W4, W5).
func TestCrashCloneMidFlight(t *testing.T) {
	for seed := int64(1); seed <= 4; seed++ {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			const dir = "db"
			mem := slotdtest.MemFS(t, dir)
			db, err := Open(dir, Options{FS: mem})
			if err != nil {
				t.Fatal(err)
			}
			var ackedMu sync.Mutex
			acked := map[allocator.ID]bool{}
			stop := make(chan struct{})
			var wg sync.WaitGroup
			var next atomic.Uint64
			for w := 0; w < 8; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						select {
						case <-stop:
							return
						default:
						}
						c := holdChange(next.Add(1))
						if err := db.Commit(c); err != nil {
							return // closed under us
						}
						ackedMu.Lock()
						acked[c.Bookings[0].ID] = true
						ackedMu.Unlock()
					}
				}()
			}
			testtime.Eventually(t, 30*time.Second, "100 commits", func() error {
				if n := db.Stats().Commits; n < 100 {
					return fmt.Errorf("%d commits", n)
				}
				return nil
			})
			ackedMu.Lock()
			before := make(map[allocator.ID]bool, len(acked))
			for id := range acked {
				before[id] = true
			}
			ackedMu.Unlock()
			crashed := mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 50, RNG: rand.New(rand.NewPCG(uint64(seed), 1))})
			close(stop)
			wg.Wait()
			_ = db.Close()

			got, db2 := recovered(t, crashed, dir)
			for id := range before {
				if got[id] == nil {
					t.Fatalf("booking %s acknowledged before the crash is lost", id)
				}
			}
			withEvent := map[allocator.ID]bool{}
			var last uint64
			for _, e := range allEvents(t, db2) {
				if e.Cursor <= last {
					t.Fatalf("cursor %d after %d", e.Cursor, last)
				}
				last = e.Cursor
				withEvent[e.Booking.ID] = true
			}
			for id := range got {
				if !withEvent[id] {
					t.Fatalf("booking %s survived without its event", id)
				}
			}
			if len(withEvent) != len(got) {
				t.Fatalf("%d events for %d bookings", len(withEvent), len(got))
			}
			t.Logf("acknowledged before crash %d, recovered %d", len(before), len(got))
		})
	}
}

// TestDefectFullDiskStartPanics: Open on a full disk used to panic
// ("MANIFEST flush failed", Pebble's Fatalf while it creates a store); it
// returns an error that says why, for a new store and an existing one.
func TestDefectFullDiskStartPanics(t *testing.T) {
	open := func(fs vfs.FS) (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("Open panicked: %v", r)
			}
		}()
		db, err := Open("db", Options{FS: fs})
		if err == nil {
			_ = db.Close()
		}
		return err
	}
	f := func(name string, prepare func(vfs.FS)) {
		t.Run(name, func(t *testing.T) {
			mem := slotdtest.MemFS(t, "db")
			prepare(mem)
			var on atomic.Bool
			on.Store(true)
			opened := make(chan error, 1)
			go func() { opened <- open(errorfs.Wrap(mem, slotdtest.NoSpace("db", &on))) }()
			var err error
			select {
			case err = <-opened:
			case <-time.After(time.Minute): // it used to wait for Pebble's retries forever
				t.Fatal("Open on a full disk did not return")
			}
			on.Store(false) // space again: an Open given up on may finish and close
			if err == nil {
				t.Fatal("Open succeeded on a full disk")
			}
			if strings.Contains(err.Error(), "panicked") || !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("Open on a full disk: %v; want an error wrapping ENOSPC", err)
			}
			t.Log(err)
		})
	}
	f("new store", func(vfs.FS) {})
	f("existing store", func(fs vfs.FS) {
		db, err := Open("db", Options{FS: fs})
		if err != nil {
			t.Fatal(err)
		}
		mustCommit(t, db, holdChange(1))
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	})
}
