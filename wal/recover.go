package wal

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"slotd/allocator"
)

// Restorer receives the stored state at start. *allocator.Engine satisfies
// it. The calls come in this order: every office (one goroutine), then
// every booking, number mark and watch — bookings from several goroutines
// at once, in no particular order, so RestoreBooking must be safe for
// concurrent use — then RestoreDone once.
type Restorer interface {
	RestoreOffice(rec allocator.OfficeRecord) error
	RestoreBooking(rec *allocator.BookingRecord) error
	// RestoreWatch loads one active watch.
	RestoreWatch(rec *allocator.WatchRecord) error
	// RestoreSeqMark raises a date's booking-number counter.
	RestoreSeqMark(m allocator.SeqMark) error
	// RestoreDone finishes the restore (applicant penalties). The caller
	// then calls the engine's Tick(now), which expires, through the
	// journal, the holds whose TTL passed while the process was down.
	RestoreDone(now time.Time) error
}

// RecoveryStats says what Recover loaded.
type RecoveryStats struct {
	Offices        int
	Bookings       int
	ActiveBookings int // bookings in a status that owns a seat
	Watches        int // active watches
	// LastCursor is the event cursor the feed continues from.
	LastCursor uint64
	// Duration is the wall time Recover took (measured for the report;
	// nothing depends on it).
	Duration time.Duration
}

// recoverGCPercent is the GC target while a recovery runs.
const recoverGCPercent = 800

// gcRelax counts the recoveries running, which share one relaxed GC
// target: a node that leads several groups recovers their stores at
// once, and each setting the target and putting back the one it found
// would leave it relaxed for good whenever two overlap (the second finds
// the first's, and puts it back last), and the heap of the whole process
// at nine times its live size.
var gcRelax struct {
	sync.Mutex
	running int
	prev    int // the target before the first of those running
}

// relaxGC raises the GC target for a recovery and returns the function
// that ends it; the target before the first recovery comes back when the
// last one ends.
func relaxGC() (restore func()) {
	gcRelax.Lock()
	defer gcRelax.Unlock()
	if gcRelax.running == 0 {
		gcRelax.prev = debug.SetGCPercent(recoverGCPercent)
	}
	gcRelax.running++
	var once sync.Once
	return func() {
		once.Do(func() {
			gcRelax.Lock()
			defer gcRelax.Unlock()
			if gcRelax.running--; gcRelax.running == 0 {
				debug.SetGCPercent(gcRelax.prev)
			}
		})
	}
}

// Recover loads every office and booking from db and hands them to r
// (invariant W6). A value that fails to decode or fails its check stops
// recovery with an ErrCorrupt error that names the key; nothing is skipped.
// An error from r names the record too.
func Recover(db *DB, r Restorer, now time.Time) (RecoveryStats, error) {
	return RecoverContext(context.Background(), db, r, now)
}

// RecoverContext is Recover that gives up once ctx is done, between two
// batches of bookings or two kinds of records, and returns ctx's error
// (W13): a node that stops leading a group while it rebuilds the group's
// engine from a large store does not go on rebuilding an engine nobody
// will run, with the relaxed GC target held for it. r is then half
// restored and must be dropped.
func RecoverContext(ctx context.Context, db *DB, r Restorer, now time.Time) (RecoveryStats, error) {
	start := time.Now()
	// Recovery builds a live set that the process keeps: collecting while
	// it grows only re-marks the same objects. A higher GC target for its
	// duration cuts the restore time severalfold; the previous setting
	// comes back when the last recovery running returns.
	defer relaxGC()()
	var st RecoveryStats
	db.closeMu.RLock()
	defer db.closeMu.RUnlock()
	if db.closed {
		return st, allocator.ErrJournalClosed
	}
	// An office frozen for a move is no engine's here any more (O5).
	moving, err := db.movingOfficesLocked()
	if err != nil {
		return st, err
	}
	in := make(interner)
	err = db.scan(prefixOffice, func(k, v []byte) error {
		if moving[string(k[1:])] {
			return nil
		}
		rec, err := decodeOffice(v, string(k[1:]))
		if err != nil {
			return fmt.Errorf("%w: key %s: %w", ErrCorrupt, KeyString(k), err)
		}
		if err := r.RestoreOffice(rec); err != nil {
			return fmt.Errorf("wal: recovery: cannot restore office %q: %w", rec.Config.ID, err)
		}
		st.Offices++
		return nil
	})
	if err != nil {
		return st, err
	}
	if err := ctx.Err(); err != nil {
		return st, err
	}
	if err := restoreBookings(ctx, db, r, &st, moving); err != nil {
		return st, err
	}
	if err := ctx.Err(); err != nil {
		return st, err
	}
	err = db.scan(prefixSeqMark, func(k, v []byte) error {
		m, ok := parseSeqMarkKey(k)
		if !ok || len(v) != 0 {
			return fmt.Errorf("%w: key %s: not a number mark", ErrCorrupt, KeyString(k))
		}
		if moving[m.Office] {
			return nil
		}
		if err := r.RestoreSeqMark(m); err != nil {
			return fmt.Errorf("wal: recovery: %w", err)
		}
		return nil
	})
	if err != nil {
		return st, err
	}
	err = db.scan(prefixWatch, func(k, v []byte) error {
		w, err := decodeWatch(k, v, in)
		if err != nil {
			return err
		}
		if moving[w.Office] {
			return nil
		}
		if err := r.RestoreWatch(w); err != nil {
			return fmt.Errorf("wal: recovery: cannot restore watch %s: %w", w.ID, err)
		}
		st.Watches++
		return nil
	})
	if err != nil {
		return st, err
	}
	if err := ctx.Err(); err != nil {
		return st, err
	}
	if err := r.RestoreDone(now); err != nil {
		return st, fmt.Errorf("wal: recovery: %w", err)
	}
	st.LastCursor = db.feed.published.Load()
	st.Duration = time.Since(start)
	db.stats.recoveryOffices.Store(uint64(st.Offices))
	db.stats.recoveryBookings.Store(uint64(st.Bookings))
	db.stats.recoveryNanos.Store(int64(st.Duration))
	return st, nil
}

// recoverBatch is how many stored bookings the scan hands to a worker at
// once: large enough to amortise the hand-off, small enough to spread.
const recoverBatch = 512

// recoverBatchBytes is the buffer one batch copies its keys and values
// into; a batch is handed over when either bound is reached.
const recoverBatchBytes = 128 << 10

// restoreBookings decodes and restores every booking. Decoding and
// restoring dominate recovery and need no order among bookings (the
// engine's RestoreBooking is safe for concurrent use), so the scan hands
// batches of copied values to one worker per core. The first error wins;
// nothing is skipped.
func restoreBookings(ctx context.Context, db *DB, r Restorer, st *RecoveryStats, moving map[string]bool) error {
	// kv is one stored booking; k and v point into its batch's buf, one
	// copy per batch instead of two allocations per booking.
	type kv struct{ k, v []byte }
	type kvBatch struct {
		buf []byte
		kvs []kv
	}
	workers := runtime.GOMAXPROCS(0)
	batches := make(chan *kvBatch, workers)
	var (
		wg               sync.WaitGroup
		mu               sync.Mutex
		firstErr         error
		bookings, active int
	)
	failed := func() bool { mu.Lock(); defer mu.Unlock(); return firstErr != nil }
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in := make(interner) // per worker: an interner is not safe for concurrent use
			n, a := 0, 0
			var err error
			for batch := range batches {
				for _, e := range batch.kvs {
					if err != nil {
						break
					}
					var rec *allocator.BookingRecord
					if rec, err = decodeBookingAt(e.k, e.v, in); err != nil {
						break
					}
					if moving[rec.Office] {
						continue
					}
					if err = r.RestoreBooking(rec); err != nil {
						err = fmt.Errorf("wal: recovery: cannot restore booking %s: %w", rec.ID, err)
						break
					}
					n++
					if rec.Status.Active() {
						a++
					}
				}
			}
			mu.Lock()
			bookings, active = bookings+n, active+a
			if err != nil && firstErr == nil {
				firstErr = err
			}
			mu.Unlock()
		}()
	}
	newBatch := func() *kvBatch {
		return &kvBatch{buf: make([]byte, 0, recoverBatchBytes), kvs: make([]kv, 0, recoverBatch)}
	}
	batch := newBatch()
	scanErr := db.scan(prefixBooking, func(k, v []byte) error {
		// Hand over a full batch: full by count, or by bytes, since the
		// slices already taken from buf must not move.
		if len(batch.kvs) == recoverBatch || len(batch.kvs) > 0 && len(batch.buf)+len(k)+len(v) > cap(batch.buf) {
			if failed() {
				return errRecoveryStopped
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			batches <- batch
			batch = newBatch()
		}
		n := len(batch.buf)
		batch.buf = append(append(batch.buf, k...), v...)
		batch.kvs = append(batch.kvs, kv{batch.buf[n : n+len(k) : n+len(k)], batch.buf[n+len(k) : len(batch.buf) : len(batch.buf)]})
		return nil
	})
	if len(batch.kvs) > 0 && scanErr == nil {
		batches <- batch
	}
	close(batches)
	wg.Wait()
	st.Bookings, st.ActiveBookings = bookings, active
	if firstErr != nil {
		return firstErr
	}
	if scanErr != nil && !errors.Is(scanErr, errRecoveryStopped) {
		return scanErr
	}
	return nil
}

// errRecoveryStopped ends the scan early once a worker failed.
var errRecoveryStopped = errors.New("wal: recovery stopped")

// scan calls fn for every key with the one-byte prefix p, in key order.
// Caller holds closeMu for reading. The slices are valid only during fn.
func (db *DB) scan(p byte, fn func(k, v []byte) error) error {
	lo := []byte{p}
	it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: prefixEnd(lo)})
	if err != nil {
		return fmt.Errorf("wal: cannot read the store: %w", err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		if err := fn(it.Key(), it.Value()); err != nil {
			_ = it.Close()
			return err
		}
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("wal: cannot read the store: %w", err)
	}
	return nil
}
