package wal

import (
	"flag"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"slotd/allocator"
)

var benchDir = flag.String("wal.benchdir", "", "directory for benchmark stores (default: a temporary directory); put it on the disk you want to measure")

func benchOpen(b *testing.B) *DB {
	b.Helper()
	dir := b.TempDir()
	if *benchDir != "" {
		dir = fmt.Sprintf("%s/bench-%d", *benchDir, time.Now().UnixNano())
	}
	db, err := Open(dir, Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = db.Close() })
	return db
}

// BenchmarkCommit measures synced commits of a one-booking change (booking
// and event) with 1 to 1024 concurrent callers, and how many commits share
// one fsync of the log.
func BenchmarkCommit(b *testing.B) {
	for _, callers := range []int{1, 16, 256, 1024} {
		b.Run(fmt.Sprint("callers=", callers), func(b *testing.B) {
			db := benchOpen(b)
			var next atomic.Uint64
			b.ReportAllocs()
			before := db.Stats()
			start := time.Now()
			b.ResetTimer()
			if callers == 1 {
				for i := 0; i < b.N; i++ {
					if err := db.Commit(holdChange(next.Add(1))); err != nil {
						b.Fatal(err)
					}
				}
			} else {
				b.SetParallelism(max(1, callers/runtime.GOMAXPROCS(0)))
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := db.Commit(holdChange(next.Add(1))); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			b.StopTimer()
			elapsed := time.Since(start).Seconds()
			after := db.Stats()
			commits := float64(after.Commits - before.Commits)
			syncs := float64(after.WALSyncs - before.WALSyncs)
			b.ReportMetric(commits/elapsed, "commits/s")
			b.ReportMetric(syncs/elapsed, "syncs/s")
			if syncs > 0 {
				b.ReportMetric(commits/syncs, "commits/sync")
			}
			b.ReportMetric(float64(after.BatchBytes-before.BatchBytes)/commits, "batchB/commit")
		})
	}
}

// writeBookings stores n bookings (each with one confirmed transition
// after the hold, and its booking.confirmed event) in large unsynced
// batches with one sync at the end, and flushes. It is the fixture of the
// recovery benchmark, not the commit path.
func writeBookings(tb testing.TB, db *DB, n int) {
	tb.Helper()
	const perBatch = 10000
	enc := &encoder{}
	for i := 0; i < n; {
		b := db.pdb.NewBatch()
		for j := 0; j < perBatch && i < n; j, i = j+1, i+1 {
			r := advanced(heldBooking(uint64(i+1)), allocator.StatusConfirmed, t0.UnixNano()+int64(i)+int64(time.Minute), "")
			c := &allocator.Change{
				Bookings: []*allocator.BookingRecord{r},
				Events:   []allocator.Event{{Type: allocator.EventConfirmed, AtUnixNano: r.History.Last().AtUnixNano, Office: r.Office, Booking: r}},
			}
			if err := enc.stage(b, c); err != nil {
				tb.Fatal(err)
			}
			first, _ := db.feed.allocate(1)
			set(b, eventKey(nil, first), enc.events)
		}
		if err := b.Commit(pebble.NoSync); err != nil {
			tb.Fatal(err)
		}
		_ = b.Close()
	}
	if err := db.Flush(); err != nil {
		tb.Fatal(err)
	}
}

// countingRestorer counts what Recover hands over and keeps nothing.
type countingRestorer struct {
	offices  int
	bookings atomic.Int64 // RestoreBooking runs on several goroutines
}

func (c *countingRestorer) RestoreOffice(allocator.OfficeRecord) error { c.offices++; return nil }
func (c *countingRestorer) RestoreBooking(*allocator.BookingRecord) error {
	c.bookings.Add(1)
	return nil
}
func (c *countingRestorer) RestoreWatch(*allocator.WatchRecord) error { return nil }
func (c *countingRestorer) RestoreSeqMark(allocator.SeqMark) error    { return nil }
func (c *countingRestorer) RestoreDone(time.Time) error               { return nil }

// BenchmarkRecover measures Recover (decoding and handing over every
// booking; the engine's own restore work is not included) and the bytes on
// disk per booking, including its event.
func BenchmarkRecover(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprint("bookings=", n), func(b *testing.B) {
			db := benchOpen(b)
			writeBookings(b, db, n)
			if err := db.Compact(); err != nil {
				b.Fatal(err)
			}
			disk := db.DiskBytes()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				var r countingRestorer
				st, err := Recover(db, &r, t0)
				if err != nil {
					b.Fatal(err)
				}
				if st.Bookings != n {
					b.Fatalf("recovered %d of %d", st.Bookings, n)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "bookings/s")
			b.ReportMetric(float64(disk)/float64(n), "diskB/booking")
		})
	}
}

// BenchmarkUpgrade1M: Open of a format-2 store of one million confirmed
// bookings, which moves every booking to its format-3 key (DB.upgrade)
// before it returns; recovery, which follows at a real start, is
// BenchmarkEngineRecover1M.
func BenchmarkUpgrade1M(b *testing.B) {
	const n = 1_000_000
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		dir := b.TempDir()
		db, err := Open(dir, Options{})
		if err != nil {
			b.Fatal(err)
		}
		var v []byte
		batch := db.pdb.NewBatch()
		for j := uint64(1); j <= n; j++ {
			r := advanced(heldBooking(j), allocator.StatusConfirmed, t0.UnixNano()+int64(j)+int64(time.Minute), "")
			if v, err = appendBooking(v[:0], r); err != nil {
				b.Fatal(err)
			}
			set(batch, bookingKeyV2(r.ID), v)
			if batch.Count() == 10_000 {
				if err := batch.Commit(pebble.NoSync); err != nil {
					b.Fatal(err)
				}
				_ = batch.Close()
				batch = db.pdb.NewBatch()
			}
		}
		set(batch, metaKey(metaFormat), []byte{2})
		if err := batch.Commit(pebble.Sync); err != nil {
			b.Fatal(err)
		}
		_ = batch.Close()
		if err := db.Flush(); err != nil {
			b.Fatal(err)
		}
		if err := db.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if db, err = Open(dir, Options{}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := db.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/upgrade")
}
