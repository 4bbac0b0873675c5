package wal_test

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"slotd/allocator"
	"slotd/internal/slotdtest"
	"slotd/wal"
)

// The engine with durability: allocator.Engine.Hold on a real wal.DB with
// synced commits, the production path without HTTP (DESIGN §6: ≥ 200k
// bookings/s through group commit on 2 cores).

// The bench offices and clock of every benchmark.
const benchOffices = slotdtest.BenchOffices

var benchNow = slotdtest.BenchNow

func openBenchEngine(b *testing.B, dir string) (*allocator.Engine, *wal.DB) {
	b.Helper()
	db, err := wal.Open(dir, wal.Options{})
	if err != nil {
		b.Fatal(err)
	}
	e, err := allocator.New(allocator.Config{Journal: db})
	if err != nil {
		b.Fatal(err)
	}
	slotdtest.PutBenchOffices(b, e)
	return e, db
}

func BenchmarkEngineDurableHold(b *testing.B) {
	for _, callers := range []int{1, 16, 256, 1024} {
		b.Run(fmt.Sprintf("callers=%d", callers), func(b *testing.B) {
			e, db := openBenchEngine(b, b.TempDir())
			defer db.Close()
			st0 := db.Stats()
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := processCPU(b)
			start := time.Now()
			conflicts := durableHolds(e, b.N, callers)
			elapsed := time.Since(start)
			cpu := processCPU(b) - cpu0
			b.StopTimer()
			st := db.Stats()
			syncs, commits := st.WALSyncs-st0.WALSyncs, st.Commits-st0.Commits
			b.ReportMetric(float64(commits)/elapsed.Seconds(), "bookings/s")
			b.ReportMetric(float64(syncs)/elapsed.Seconds(), "fsyncs/s")
			if syncs > 0 {
				b.ReportMetric(float64(commits)/float64(syncs), "bookings/fsync")
				// The mean fsync of the log: what every group waits for.
				b.ReportMetric(float64(st.WALSyncLatency.Sum-st0.WALSyncLatency.Sum)/1e6/float64(syncs), "fsync-ms")
			}
			if n := st.CommitLatency.Count - st0.CommitLatency.Count; n > 0 {
				// The mean commit: queueing for a committer, then the write and fsync.
				b.ReportMetric(float64(st.CommitLatency.Sum-st0.CommitLatency.Sum)/1e6/float64(n), "commit-ms")
			}
			b.ReportMetric(float64(conflicts), "conflicts")
			if groups := st.Groups - st0.Groups; groups > 0 {
				// Changes per batch the committers wrote: Pebble's cost
				// per commit is shared by a group's changes.
				b.ReportMetric(float64(commits)/float64(groups), "bookings/group")
			}
			if commits > 0 {
				// What a booking writes: its record and its events, keys included.
				b.ReportMetric(float64(st.BatchBytes-st0.BatchBytes)/float64(commits), "batchB/booking")
				// The process's CPU per booking, Pebble's flushes and
				// compactions included: steadier than bookings/s on a shared
				// machine, and what bounds bookings/s once the cores are busy.
				b.ReportMetric(float64(cpu.Microseconds())/float64(commits), "cpu-µs/booking")
			}
		})
	}
}

// durableHolds books n seats with hold+confirm from callers goroutines,
// each applicant new, and returns the holds refused.
func durableHolds(e *allocator.Engine, n, callers int) int64 {
	var next, conflicts atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for g := 0; g < callers; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; ; k++ {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				office, st := slotdtest.BenchSeat(i)
				// The clock moves as a real one does: a hold's time is its
				// booking's creation time, which orders its key.
				now := benchNow.Add(time.Since(start))
				_, err := e.Hold(now, allocator.HoldRequest{Office: office, Service: "s",
					Applicant: fmt.Sprintf("g%d-%d", g, k), Start: st, Confirm: true}, allocator.Meta{Actor: "bench"})
				if err != nil {
					conflicts.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return conflicts.Load()
}

// processCPU returns the CPU time the process has used, user and system.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkEngineRecover1M: recovery of one million bookings from Pebble
// into a fresh engine, bitmaps and applicant state included (DESIGN §6:
// ≤ 5 s), and the bytes on disk per booking once compacted. Setup books
// them as BenchmarkEngineDurableHold does (hold with confirm: the record
// and two events each).
func BenchmarkEngineRecover1M(b *testing.B) {
	const bookings = 1_000_000
	dir := b.TempDir()
	e, db := openBenchEngine(b, dir)
	if n := durableHolds(e, bookings, 1024); n != 0 {
		b.Fatalf("%d holds refused", n)
	}
	if err := db.Compact(); err != nil {
		b.Fatal(err)
	}
	disk := db.DiskBytes()
	db.Close()
	b.ResetTimer()
	for b.Loop() {
		db, err := wal.Open(dir, wal.Options{})
		if err != nil {
			b.Fatal(err)
		}
		e, _ := allocator.New(allocator.Config{Journal: db})
		start := time.Now()
		st, err := wal.Recover(db, e, benchNow.Add(time.Minute))
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(time.Since(start).Seconds(), "s/recovery")
		if st.Bookings != bookings {
			b.Fatalf("recovered %d bookings", st.Bookings)
		}
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		b.ReportMetric(float64(ms.HeapAlloc)/bookings, "heapB/booking")
		runtime.KeepAlive(e)
		db.Close()
	}
	b.ReportMetric(float64(disk)/bookings, "diskB/booking")
}
