package raftlog

// Crash tests on Pebble's crash-clonable in-memory file system: a clone
// holds what a crash at that instant would leave on disk — everything
// synced, and of the rest (when asked) a random choice of 4 KiB blocks.

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"slotd/internal/slotdtest"
	"slotd/internal/slotdtest/testtime"
)

// logBytes is the size of Pebble's log files in dir.
func logBytes(t testing.TB, fs vfs.FS, dir string) int64 {
	t.Helper()
	names, err := fs.List(dir)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, name := range names {
		if !strings.HasSuffix(name, ".log") {
			continue
		}
		info, err := fs.Stat(fs.PathJoin(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		n += info.Size()
	}
	return n
}

// dumpAll describes every group of s.
func dumpAll(t testing.TB, s *Store, groups []uint64) string {
	t.Helper()
	var b strings.Builder
	for _, g := range groups {
		fmt.Fprintf(&b, "group %d:\n%s", g, dump(t, s.Group(g)))
	}
	return b.String()
}

// TestCrashKeepsReturnedAppend: once Append returned, its batch survives a
// crash that keeps only synced data (R1), for every group of the batch.
func TestCrashKeepsReturnedAppend(t *testing.T) {
	const dir = "db"
	fs := slotdtest.MemFS(t, dir)
	o := openAt(t, fs, dir, Options{})
	writeHistory(t, o.s, rand.New(rand.NewPCG(1, 2)))
	// A last Append after the unsynced Compact and CreateSnapshot of the
	// history: its sync makes them durable too.
	rng := rand.New(rand.NewPCG(7, 8))
	if err := o.s.Append([]Update{
		{Group: 1, Entries: entries(rng, 11, 1, 4, 100), HardState: hardState(1, 1, 12)},
		{Group: 5, Entries: entries(rng, 1, 1, 3, 100), HardState: hardState(1, 1, 1)},
	}); err != nil {
		t.Fatal(err)
	}
	groups := o.s.Groups()
	want := dumpAll(t, o.s, groups)
	crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
	o.close(t)

	o = openAt(t, crashed, dir, Options{})
	defer o.close(t)
	if got := dumpAll(t, o.s, groups); got != want {
		t.Fatalf("after a crash:\n%s\nwant what Append returned for:\n%s", got, want)
	}
}

// TestCrashTornBatchAllOrNothing: a batch cut by a crash — written to the
// log file in part, never synced — is after the crash either wholly there
// or wholly absent, across every group it touched (R1). The batch spans
// dozens of the clone's 4 KiB blocks, so keeping a random part of them
// tears it; keeping all of them keeps it. (It stays well below half of
// Pebble's memtable: a larger batch would go to Pebble as a memtable of
// its own, which syncs the log.)
func TestCrashTornBatchAllOrNothing(t *testing.T) {
	const dir = "db"
	const groups = 16
	fs := slotdtest.MemFS(t, dir)
	o := openAt(t, fs, dir, Options{})
	rng := rand.New(rand.NewPCG(9, 10))
	var ids []uint64
	var base []Update
	for g := uint64(1); g <= groups; g++ {
		ids = append(ids, g)
		base = append(base, Update{Group: g, Entries: entries(rng, 1, 1, 4, 100), HardState: hardState(1, 1, 4)})
	}
	if err := o.s.Append(base); err != nil {
		t.Fatal(err)
	}
	before := dumpAll(t, o.s, ids)

	// The torn batch: 16 groups × 8 entries of 1 KiB, not synced; group 1
	// also overwrites its tail and group 2 receives a snapshot.
	var torn []Update
	for g := uint64(1); g <= groups; g++ {
		u := Update{Group: g, Entries: entries(rng, 5, 1, 8, 1024), HardState: hardState(1, 1, 12)}
		switch g {
		case 1:
			u.Entries, u.HardState = entries(rng, 3, 2, 8, 1024), hardState(2, 1, 10)
		case 2:
			u.Snapshot = snapshot(40, 1, []byte("state at 40"), 1, 2, 3)
			u.Entries, u.HardState = entries(rng, 41, 1, 8, 1024), hardState(1, 1, 48)
		}
		torn = append(torn, u)
	}
	logBefore := logBytes(t, fs, dir)
	if err := o.s.append(torn, false); err != nil {
		t.Fatal(err)
	}
	after := dumpAll(t, o.s, ids)
	// Pebble writes the log file in the background; wait until the batch
	// is in it, so that a clone may keep all or part of it.
	want := logBefore + int64(groups*8*1024)
	testtime.Eventually(t, 10*time.Second, "the torn batch to reach the log file", func() error {
		if n := logBytes(t, fs, dir); n < want {
			return fmt.Errorf("log holds %d bytes, want at least %d", n, want)
		}
		return nil
	})

	outcomes := map[string]int{}
	for _, keep := range []int{0, 50, 90, 100} {
		for seed := uint64(1); seed <= 3; seed++ {
			crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: keep, RNG: rand.New(rand.NewPCG(seed, uint64(keep)))})
			c := openAt(t, crashed, dir, Options{})
			got := dumpAll(t, c.s, ids)
			c.close(t)
			switch got {
			case before:
				outcomes["absent"]++
			case after:
				outcomes["present"]++
			default:
				t.Fatalf("keeping %d%% of the unsynced blocks (seed %d), the batch is torn:\n%s\nwant all of:\n%s\nor none of it:\n%s", keep, seed, got, after, before)
			}
		}
	}
	t.Logf("outcomes %v", outcomes)
	if outcomes["absent"] == 0 || outcomes["present"] == 0 {
		t.Fatalf("outcomes %v: the test must see the batch both kept and lost", outcomes)
	}
	o.close(t)
}
