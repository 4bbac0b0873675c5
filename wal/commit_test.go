package wal

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"slotd/allocator"
	"slotd/internal/slotdtest"
	"slotd/internal/slotdtest/testtime"
)

// gateLogSyncs holds every sync of a log file until gate is closed, while
// on; waiting counts the syncs held.
func gateLogSyncs(on *atomic.Bool, gate <-chan struct{}, waiting *atomic.Int32) errorfs.Injector {
	return errorfs.InjectorFunc(func(op errorfs.Op) error {
		if !on.Load() || !strings.HasSuffix(op.Path, ".log") {
			return nil
		}
		switch op.Kind {
		case errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
			waiting.Add(1)
			<-gate
		}
		return nil
	})
}

// Group commit: changes that arrive while the log's fsync runs are written
// meanwhile and made durable together by the next fsync; each still gets
// its own cursors in arrival order (wal invariants W1, W4).
func TestCommitsQueuedDuringSyncShareOneFsync(t *testing.T) {
	const dir = "/db"
	mem := slotdtest.MemFS(t, dir)
	var on atomic.Bool
	var waiting atomic.Int32
	gate := make(chan struct{})
	db, err := Open(dir, Options{FS: errorfs.Wrap(mem, gateLogSyncs(&on, gate, &waiting))})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	written := func() int {
		db.syncer.mu.Lock()
		defer db.syncer.mu.Unlock()
		return len(db.syncer.items)
	}
	before := db.Stats()
	on.Store(true)

	const n = 40
	changes := make([]*allocator.Change, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	commit := func(i int) {
		defer wg.Done()
		changes[i] = holdChange(uint64(i + 1))
		errs[i] = db.Commit(changes[i])
	}
	// The first change takes the syncer into its fsync, which holds.
	wg.Add(1)
	go commit(0)
	testtime.Eventually(t, 10*time.Second, "the first commit to reach its fsync", func() error {
		if waiting.Load() == 0 {
			return errors.New("the first commit has not reached its fsync")
		}
		return nil
	})
	// The others are written to the log meanwhile, none acknowledged, and
	// wait for the syncer.
	for i := 1; i < n; i++ {
		wg.Add(1)
		go commit(i)
	}
	testtime.Eventually(t, 10*time.Second, "the other changes to be written to the log", func() error {
		if w := written(); w < n-1 {
			return fmt.Errorf("%d of %d changes written", w, n-1)
		}
		return nil
	})
	if st := db.Stats(); st.Commits != before.Commits {
		t.Fatalf("%d changes acknowledged before their fsync", st.Commits-before.Commits)
	}
	on.Store(false)
	close(gate)
	wg.Wait()

	for i, err := range errs {
		if err != nil {
			t.Fatalf("commit %d: %v", i, err)
		}
	}
	after := db.Stats()
	if commits := after.Commits - before.Commits; commits != n {
		t.Fatalf("%d commits acknowledged, want %d", commits, n)
	}
	// The first change's fsync, then one for all the rest; every fsync timed.
	syncs, timed := after.WALSyncs-before.WALSyncs, after.WALSyncLatency.Count-before.WALSyncLatency.Count
	if syncs == 0 || syncs > 2 || timed != syncs {
		t.Fatalf("%d changes took %d fsyncs (%d timed); the ones written during an fsync must share the next", n, syncs, timed)
	}
	seen := make(map[uint64]bool, n)
	for i, c := range changes {
		cur := c.Events[0].Cursor
		if cur == 0 || seen[cur] {
			t.Fatalf("change %d got cursor %d, zero or taken twice", i, cur)
		}
		seen[cur] = true
	}
	evs, err := db.ReadEvents(before.PublishedCursor, n)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != n {
		t.Fatalf("the feed holds %d new events, want %d", len(evs), n)
	}
	for i, ev := range evs {
		if want := before.PublishedCursor + uint64(i) + 1; ev.Cursor != want || !seen[ev.Cursor] {
			t.Fatalf("event %d has cursor %d, want %d, one of the changes'", i, ev.Cursor, want)
		}
	}
}

// A latency histogram puts each observation in the first bucket whose
// bound it does not exceed, the rest in +Inf, and its mean is the sum over
// the count (0 before any).
func TestLatencyHistogram(t *testing.T) {
	var h latencyHistogram
	if m := h.snapshot().Mean(); m != 0 {
		t.Fatalf("empty mean %s", m)
	}
	top := CommitLatencyBuckets[len(CommitLatencyBuckets)-1]
	for _, d := range []time.Duration{CommitLatencyBuckets[0], CommitLatencyBuckets[0] + 1, top + time.Second} {
		h.observe(d)
	}
	s := h.snapshot()
	if s.Count != 3 || s.Counts[0] != 1 || s.Counts[1] != 1 || s.Counts[len(s.Counts)-1] != 1 {
		t.Fatalf("counts %v of %d", s.Counts, s.Count)
	}
	if want := (2*CommitLatencyBuckets[0] + 1 + top + time.Second) / 3; s.Mean() != want {
		t.Fatalf("mean %s, want %s", s.Mean(), want)
	}
}
