package replica

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"slotd/allocator"
	"slotd/cluster"
	"slotd/internal/slotdtest"
	"slotd/internal/slotdtest/testtime"
	"slotd/wal"
)

var (
	measureDiskChanges   = flag.Int("measure-disk-changes", 0, "TestMeasureDiskPerNode: book this many seats through a 3-node cluster and through one store alone, and report the bytes on disk of each (0: skip)")
	measureDiskNoCompact = flag.Bool("measure-disk-no-compaction", false, "TestMeasureDiskPerNode: run the cluster with log compaction off, for comparison")
	measureDiskLog       = flag.Bool("measure-disk-log", false, "TestMeasureDiskPerNode: log the replicas' leadership changes and engine builds (with the time each recovery took)")
	measureDiskHeap      = flag.String("measure-disk-heap", "", "TestMeasureDiskPerNode: write a heap profile to this file once the cluster has converged, before its nodes stop")
)

// logHeap logs the heap in use after a collection, as at that point of
// the measurement.
func logHeap(t *testing.T, at string) {
	t.Helper()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	t.Logf("heap %s: %.1f MiB in use, %.1f MiB obtained from the system, GC target %d%%", at, mib(int64(m.HeapInuse)), mib(int64(m.Sys)), gcPercent())
}

// gcPercent is the GC target in force (GOGC).
func gcPercent() uint64 {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// dirBytes is what the files under dir take, in bytes.
func dirBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err == nil {
			n += fi.Size()
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// bookAll books seats 0..n-1 of the bench offices (one change each) from
// 16 goroutines through whatever engine engine returns, and returns how
// long it took. A hold that fails (its leader lost the leadership) is
// tried again; a seat that fails 1,000 times in a row ends the
// measurement, as leadership changes under a loaded machine are many
// over millions of bookings but none lasts.
func bookAll(t *testing.T, n int, engine func() *allocator.Engine) time.Duration {
	t.Helper()
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range 16 {
		wg.Go(func() {
			var e *allocator.Engine
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				office, at := slotdtest.BenchSeat(i)
				for tries := 1; ; tries++ {
					if e == nil || e.Degraded() {
						e = engine()
					}
					_, err := e.Hold(slotdtest.BenchNow, allocator.HoldRequest{Office: office, Service: "s", Applicant: fmt.Sprintf("d%d", i), Start: at, Confirm: true}, allocator.Meta{Actor: "measure"})
					if err == nil {
						break
					}
					if errors.Is(err, allocator.ErrDuplicateBooking) {
						break // an earlier try was applied after all
					}
					if f := failed.Add(1); f <= 5 {
						t.Logf("seat %d: %v", i, err)
					}
					if tries >= 1000 {
						t.Errorf("seat %d: failed %d times in a row, the last: %v", i, tries, err)
						return
					}
					e = nil
				}
			}
		})
	}
	wg.Wait()
	if f := failed.Load(); f > 0 {
		t.Logf("%d holds failed and were tried again", f)
	}
	return time.Since(start)
}

// TestMeasureDiskPerNode is a measurement, run on demand: the bytes on
// disk of each node of a 3-node cluster (its Raft log's store and its
// group store) after -measure-disk-changes bookings, against one store
// alone (single-node slotd) after the same bookings. Each booking is a
// change, and so is its reminder, which falls due at the bench clock. With compaction a
// node holds the group's state and a bounded log; without it, the log
// of every change besides.
//
//	go test -count=1 ./replica -run TestMeasureDiskPerNode -v -measure-disk-changes 200000
func TestMeasureDiskPerNode(t *testing.T) {
	n := *measureDiskChanges
	if n == 0 {
		t.Skip("a measurement: set -measure-disk-changes")
	}
	// One store alone, as single-node slotd keeps it.
	single := t.TempDir()
	db, err := wal.Open(single, wal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e, err := allocator.New(allocator.Config{Journal: db})
	if err != nil {
		t.Fatal(err)
	}
	slotdtest.PutBenchOffices(t, e)
	took := bookAll(t, n, func() *allocator.Engine { return e })
	// The bookings' reminders fall due at the bench clock: the engine's
	// timers write them, as slotd's ticker would.
	for sent := -1; ; {
		if err := e.Tick(slotdtest.BenchNow); err != nil {
			t.Fatal(err)
		}
		if r := int(e.Stats().Reminders); r != sent {
			sent = r
			continue
		}
		break
	}
	live := dirBytes(t, single)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	logHeap(t, "with the store alone open")
	closed := dirBytes(t, single)
	compacted := compactedBytes(t, single)
	t.Logf("single store: %d bookings in %v; %.1f MiB on disk while open, %.1f MiB closed (%.0f B a booking), %.1f MiB compacted (%.0f B a booking)",
		n, took.Round(time.Second), mib(live), mib(closed), float64(closed)/float64(n), mib(compacted), float64(compacted)/float64(n))

	if *measureDiskHeap != "" {
		stop := make(chan struct{})
		done := make(chan struct{})
		go peakHeap(t, *measureDiskHeap+".peak", stop, done)
		defer func() { close(stop); <-done }()
	}
	c := &testCluster{t: t, isolated: map[uint64]bool{}}
	// Raft ticks at slotd's 100 ms (cluster.DefaultTickInterval), not
	// the tests' 10 ms: three nodes in one process on a small machine
	// miss 100 ms election timeouts whenever a new leader's recovery or
	// a collection takes the cores, and each new leader recovers the
	// group's store again, so leaderships followed each other every
	// second or two and their recoveries held the GC target relaxed.
	c.tick = cluster.DefaultTickInterval
	if *measureDiskLog {
		c.logger = zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel))
	}
	if *measureDiskNoCompact {
		c.compactMin = -1
	}
	startCluster(c, 3, 1)
	c.putOffices(1, 0, slotdtest.BenchOffices)
	// A new leader builds its engine from its group store (wal.Recover),
	// which at hundreds of thousands of bookings outlasts the tests' usual
	// wait; the longest wait for an engine is reported.
	var waitMu sync.Mutex
	var waited time.Duration
	took = bookAll(t, n, func() *allocator.Engine {
		began := time.Now()
		var e *allocator.Engine
		testtime.Eventually(t, 5*time.Minute, "group 1 has an engine", func() error {
			for _, nd := range c.nodes {
				if e = nd.rep.Engine(1); nd.up.Load() && e != nil && !e.Degraded() {
					return nil
				}
			}
			return errors.New("no node runs it")
		})
		waitMu.Lock()
		waited = max(waited, time.Since(began))
		waitMu.Unlock()
		return e
	})
	t.Logf("the longest wait for an engine of the cluster (a leadership change): %v", waited.Round(time.Millisecond))
	sent := uint64(0)
	testtime.EventuallyTrue(t, 10*time.Minute, "the leader's engine has written every reminder due", func() bool {
		_, e := c.leaderEngine(1)
		prev := sent
		sent = e.Stats().Reminders
		time.Sleep(time.Second)
		return sent == prev && e.Stats().Reminders == sent
	})
	c.converged(1)
	logHeap(t, "with the cluster converged")
	if *measureDiskHeap != "" {
		f, err := os.Create(*measureDiskHeap)
		if err != nil {
			t.Fatal(err)
		}
		runtime.GC()
		if err := pprof.WriteHeapProfile(f); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	type sizes struct{ raft, group int64 }
	open := map[uint64]sizes{}
	logs := map[uint64]string{}
	for _, nd := range c.nodes {
		ls := nd.node.LogStatus(1)
		logs[nd.id] = fmt.Sprintf("log %d..%d, %d compactions", ls.FirstIndex, ls.LastIndex, nd.node.Stats().Compactions)
		open[nd.id] = sizes{dirBytes(t, filepath.Join(nd.dir, "raft")), dirBytes(t, filepath.Join(nd.dir, "g1"))}
	}
	for _, nd := range c.nodes {
		nd.stop()
	}
	for _, nd := range c.nodes {
		o := open[nd.id]
		raftC, groupC := dirBytes(t, filepath.Join(nd.dir, "raft")), dirBytes(t, filepath.Join(nd.dir, "g1"))
		groupK := compactedBytes(t, filepath.Join(nd.dir, "g1"))
		t.Logf("cluster node %d: %d bookings in %v (%s); while open: raft log %.1f MiB + group store %.1f MiB = %.1f MiB; closed: %.1f + %.1f = %.1f MiB (%.0f B a booking); group store compacted %.1f MiB (%.0f B a booking)",
			nd.id, n, took.Round(time.Second), logs[nd.id], mib(o.raft), mib(o.group), mib(o.raft+o.group), mib(raftC), mib(groupC), mib(raftC+groupC), float64(raftC+groupC)/float64(n),
			mib(groupK), float64(groupK)/float64(n))
	}
}

// compactedBytes opens the store in dir, compacts every key into the
// lowest level, closes it and returns its bytes on disk: a figure free of
// how far Pebble's own compactions had got when the writes stopped,
// which at a million bookings is most of the difference between two
// stores of the same content.
func compactedBytes(t *testing.T, dir string) int64 {
	t.Helper()
	db, err := wal.Open(dir, wal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Compact(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return dirBytes(t, dir)
}

// peakHeap writes a heap profile to path each time the heap in use has
// grown by a quarter over the last one written, until stop: the profile
// left is of the largest heap seen, within a quarter.
func peakHeap(t *testing.T, path string, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	var peak, written uint64
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			t.Logf("heap in use at its largest: %.1f MiB", mib(int64(peak)))
			return
		case <-tick.C:
		}
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		peak = max(peak, m.HeapInuse)
		if m.HeapInuse < written+written/4 {
			continue
		}
		written = m.HeapInuse
		f, err := os.Create(path)
		if err != nil {
			t.Error(err)
			return
		}
		err = pprof.WriteHeapProfile(f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Error(err)
			return
		}
		t.Logf("heap profile at %.1f MiB in use, GC target %d%%", mib(int64(m.HeapInuse)), gcPercent())
	}
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
