package wal

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"slotd/allocator"
)

// Sentinel errors. Callers compare with errors.Is.
var (
	// ErrDegraded is returned by every write after a write or sync failed:
	// the disk state is unknown, so the DB stops writing until it is
	// reopened. The first failing Commit returns it too, wrapped around
	// the cause.
	ErrDegraded = errors.New("wal: degraded after a failed write or sync")
	// ErrCorrupt wraps every stored value or key that fails to decode or
	// fails its check. The message names the key.
	ErrCorrupt = errors.New("wal: corrupt record")
	// ErrInvalidRecord refuses to write a record that fails its own check.
	ErrInvalidRecord = errors.New("wal: invalid record")
	// ErrRecordTooLarge refuses to write a record beyond the format's limits.
	ErrRecordTooLarge = errors.New("wal: record too large")
	// ErrFormat refuses to open data written in a format this version does
	// not know.
	ErrFormat = errors.New("wal: unknown on-disk format")
	// ErrEventLimit refuses a ReadEvents limit outside 1..EventsPerReadMax.
	ErrEventLimit = errors.New("wal: event read limit out of range")
	// ErrLogDamaged refuses to open a store whose log lost changes that
	// were synced and acknowledged: the log is damaged before the end of
	// what was synced, not torn at its end by a crash (invariant W9).
	ErrLogDamaged = errors.New("wal: the log is damaged before the end of what was synced")
)

// DB is the durable store of slotd. It implements allocator.Journal. Safe
// for concurrent use; Close must not race with Open's return.
type DB struct {
	pdb  *pebble.DB
	opts Options
	fs   *syncCountingFS
	dir  string // the data directory, as given to Open
	// readOnly: opened by OpenReadOnly; nothing is written (ErrReadOnly),
	// and no committer, syncer or marker runs.
	readOnly bool

	// closeMu is held for reading by every operation that touches pdb and
	// for writing by Close, so Close waits for operations in flight and no
	// operation starts on a closed Pebble.
	closeMu sync.RWMutex
	closed  bool          // guarded by closeMu
	closeCh chan struct{} // closed by Close; wakes WaitEvents

	// degraded is set once, by the first failed write; degradedErr holds
	// its cause. Readers Load degraded on every commit (hot, read-mostly).
	degraded    atomic.Bool
	degradedMu  sync.Mutex
	degradedErr error // guarded by degradedMu

	// round numbers the syncer's rounds; owned by the syncer goroutine
	// (by Open before it starts). syncedRound is the last round whose
	// fsync succeeded, stored by the syncer before it acknowledges the
	// round; markedRound the last one the sync mark holds, stored by the
	// marker after its fsync (W9).
	round       uint64
	syncedRound atomic.Uint64
	markedRound atomic.Uint64
	markWake    chan struct{} // capacity 1: a round was synced
	markStop    chan struct{} // closed by Close
	markDone    chan error    // the marker's last write's error

	feed   eventFeed
	stats  stats
	queue  queue[*encoder] // Commit → committers
	syncer queue[*encoder] // committers → syncer, group after group

	// sweepMu serialises Sweep calls.
	sweepMu sync.Mutex

	// applied is meta/applied of a replicated store (W11), 0 otherwise.
	applied atomic.Uint64
	// voids says whether the store holds void marks (ledger.go); written
	// by the group's apply only.
	voids atomic.Int32
	// moveMarks says whether the store holds booking move marks
	// (move.go), as voids does for void marks.
	moveMarks atomic.Int32
	// backupMu is held by the one Backup that runs (TryLock).
	backupMu sync.Mutex
	// stageMu serialises StageSnapshot and InstallSnapshot; staged is
	// the state staged and not yet installed (nil: none).
	stageMu sync.Mutex
	staged  *stagedState // guarded by stageMu
}

var _ allocator.Journal = (*DB)(nil)

// Open opens (or creates) the store in dir.
func Open(dir string, opts Options) (*DB, error) {
	return openDB(dir, opts, false)
}

func openDB(dir string, opts Options, readOnly bool) (*DB, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	db := &DB{opts: opts, fs: newSyncCountingFS(opts.FS), closeCh: make(chan struct{}), dir: dir, readOnly: readOnly}
	db.feed.init()
	cache := pebble.NewCache(opts.CacheBytes)
	defer cache.Unref()
	// opening carries the first background error while pebble.Open runs.
	opening := make(chan error, 1)
	var opened atomic.Bool
	po := &pebble.Options{
		FS:                 db.fs,
		Cache:              cache,
		MemTableSize:       opts.MemTableBytes,
		FormatMajorVersion: pebble.FormatNewest,
		ReadOnly:           readOnly,
		Logger:             pebbleLogger{l: opts.Logger},
		EventListener: &pebble.EventListener{
			BackgroundError: func(err error) {
				db.stats.backgroundErrors.Add(1)
				pebbleLogger{l: opts.Logger}.Errorf("background error: %v", err)
				if !opened.Load() {
					select {
					case opening <- err:
					default:
					}
				}
			},
			// Pebble's default turns corruption into Fatalf. Reads already
			// return the error; count it and let the caller decide.
			DataCorruption: func(info pebble.DataCorruptionInfo) {
				db.stats.corruptions.Add(1)
				pebbleLogger{l: opts.Logger}.Errorf("data corruption: %s", info)
			},
		},
	}
	pdb, err := openPebble(dir, po, opening)
	opened.Store(true)
	if errors.Is(err, pebble.ErrCorruption) {
		return nil, fmt.Errorf("%w: cannot open %s: %w", ErrCorrupt, dir, err)
	}
	if readOnly && lockHeld(err) {
		return nil, fmt.Errorf("%w: %s: another process holds its lock (%s)", ErrInUse, dir, pebbleLockFile)
	}
	if err != nil {
		return nil, fmt.Errorf("wal: cannot open %s: %w", dir, err)
	}
	db.pdb = pdb
	if readOnly {
		if err := db.openReadOnly(dir); err != nil {
			_ = pdb.Close()
			return nil, err
		}
		return db, nil
	}
	mark, err := db.open(dir)
	if err != nil {
		_ = pdb.Close()
		return nil, err
	}
	db.startCommitters()
	db.startMarker(mark)
	return db, nil
}

// openPebble opens Pebble's store in dir, or says why it cannot, on a
// full disk too:
//   - Pebble ends a failed write while it creates a store in
//     Logger.Fatalf ("MANIFEST flush failed"), which panics here
//     (pebbleLogger); pebbleCall turns it into the error.
//   - Opening an existing store, Pebble flushes the log it replayed and
//     waits for the flush; a flush that fails is retried in the
//     background for as long as it fails, so Open would never return.
//     The first background error while Pebble opens, from opening, ends
//     the wait instead. The abandoned Open closes its store if it ever
//     returns one.
func openPebble(dir string, po *pebble.Options, opening <-chan error) (*pebble.DB, error) {
	type result struct {
		pdb *pebble.DB
		err error
	}
	done := make(chan result, 1)
	go func() {
		var r result
		r.err = pebbleCall(func() (err error) {
			r.pdb, err = pebble.Open(dir, po)
			return err
		})
		done <- r
	}()
	select {
	case r := <-done:
		return r.pdb, r.err
	case err := <-opening:
		select {
		case r := <-done: // it finished after all: take its word
			return r.pdb, r.err
		default:
		}
		go func() {
			if r := <-done; r.pdb != nil {
				_ = r.pdb.Close()
			}
		}()
		return nil, fmt.Errorf("pebble's background work failed while it opened the store (it retries for as long as it fails): %w", err)
	}
}

// open checks the store Pebble opened, before anything is written to it,
// then readies the feed and the sync mark.
func (db *DB) open(dir string) (*syncMark, error) {
	// A state staged before a crash is never installed (S6).
	if err := db.fs.RemoveAll(filepath.Join(dir, SnapshotStagingDir)); err != nil {
		return nil, fmt.Errorf("wal: cannot clear %s: %w", SnapshotStagingDir, err)
	}
	_, next, err := db.checkSynced(dir)
	if err != nil {
		return nil, err
	}
	if err := db.checkFormat(); err != nil {
		return nil, err
	}
	last, deleted, err := db.lastCursor()
	if err != nil {
		return nil, err
	}
	db.feed.start(last, deleted)
	applied, err := db.metaUint64(metaApplied)
	if err != nil {
		return nil, err
	}
	db.applied.Store(applied)
	return openSyncMark(db.opts.FS, dir, next)
}

// lastCursor returns the highest event cursor ever assigned by a committed
// batch: the last stored event, or the sweep's deletion mark if the sweep
// deleted every event (invariant W5); and the deletion mark.
func (db *DB) lastCursor() (last, deleted uint64, err error) {
	lo := []byte{prefixEvent}
	it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: prefixEnd(lo)})
	if err != nil {
		return 0, 0, fmt.Errorf("wal: cannot read events: %w", err)
	}
	if it.Last() {
		c, ok := parseEventKey(it.Key())
		if !ok {
			_ = it.Close()
			return 0, 0, fmt.Errorf("%w: key %s is not an event key", ErrCorrupt, KeyString(it.Key()))
		}
		last = c
	}
	if err := it.Close(); err != nil {
		return 0, 0, fmt.Errorf("wal: cannot read events: %w", err)
	}
	deleted, err = db.eventsDeletedThrough()
	if err != nil {
		return 0, 0, err
	}
	return max(last, deleted), deleted, nil
}

// eventsDeletedThrough reads the sweep's mark: every event ≤ it is deleted.
func (db *DB) eventsDeletedThrough() (uint64, error) {
	return db.metaUint64(metaEventsDeletedThrough)
}

// metaUint64 reads a meta key that holds an 8-byte big-endian number, 0
// when the key was never written.
func (db *DB) metaUint64(name string) (uint64, error) {
	k := metaKey(name)
	v, closer, err := db.pdb.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("wal: cannot read %s: %w", KeyString(k), err)
	}
	defer closer.Close()
	if len(v) != 8 {
		return 0, fmt.Errorf("%w: %s: value of %d bytes, want 8", ErrCorrupt, KeyString(k), len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

// Close waits for operations in flight and closes the store. Later calls
// return allocator.ErrJournalClosed.
func (db *DB) Close() error {
	db.closeMu.Lock()
	defer db.closeMu.Unlock()
	if db.closed {
		return allocator.ErrJournalClosed
	}
	db.closed = true
	close(db.closeCh)
	if db.readOnly {
		if err := db.pdb.Close(); err != nil {
			return fmt.Errorf("wal: close: %w", err)
		}
		return nil
	}
	db.stopCommitters()
	// The syncer has stopped: the marker's last write makes the mark
	// exact, so that any damage before the end of the log is found.
	markErr := db.stopMarker()
	if err := db.pdb.Close(); err != nil {
		return fmt.Errorf("wal: close: %w", err)
	}
	if markErr != nil {
		return fmt.Errorf("wal: close: %w", markErr)
	}
	return nil
}

// Degraded reports whether a write or sync failed. A degraded DB refuses
// every write until it is reopened.
func (db *DB) Degraded() bool { return db.degraded.Load() }

// degrade records the first write failure and stops all later writes.
func (db *DB) degrade(cause error) {
	db.degradedMu.Lock()
	if db.degradedErr == nil {
		db.degradedErr = cause
		pebbleLogger{l: db.opts.Logger}.Errorf("write failed, refusing further writes: %v", cause)
	}
	db.degradedMu.Unlock()
	db.degraded.Store(true)
}

// usableLocked refuses with ErrJournalClosed after Close and with
// ErrDegraded after a failed write (W2). Caller holds db.closeMu.
func (db *DB) usableLocked() error {
	if db.closed {
		return allocator.ErrJournalClosed
	}
	return db.errIfDegraded()
}

// errIfDegraded returns ErrDegraded wrapped around the first cause, or nil.
func (db *DB) errIfDegraded() error {
	if !db.degraded.Load() {
		return nil
	}
	db.degradedMu.Lock()
	defer db.degradedMu.Unlock()
	return fmt.Errorf("%w (first failure: %v)", ErrDegraded, db.degradedErr)
}

// Stats returns a snapshot of the counters.
func (db *DB) Stats() Stats {
	s := &db.stats
	return Stats{
		Commits:                 s.commits.Load(),
		CommitErrors:            s.commitErrors.Load(),
		Groups:                  s.groups.Load(),
		WALSyncs:                db.fs.syncs.Load(),
		WALSyncErrors:           db.fs.syncErrors.Load(),
		WALSyncLatency:          db.fs.syncLatency.snapshot(),
		BatchBytes:              s.batchBytes.Load(),
		Events:                  s.events.Load(),
		IdempotencyRecords:      s.idempotency.Load(),
		CommitLatency:           s.commitLatency.snapshot(),
		PublishedCursor:         db.feed.published.Load(),
		Degraded:                db.degraded.Load(),
		BackgroundErrors:        s.backgroundErrors.Load(),
		Corruptions:             s.corruptions.Load(),
		SweepIdempotencyDeleted: s.sweepIdempotencyDeleted.Load(),
		SweepEventsDeleted:      s.sweepEventsDeleted.Load(),
		RecoveryOffices:         s.recoveryOffices.Load(),
		RecoveryBookings:        s.recoveryBookings.Load(),
		RecoveryDuration:        time.Duration(s.recoveryNanos.Load()),
	}
}

// DiskBytes returns the bytes Pebble holds on disk (sstables, WAL, manifest).
func (db *DB) DiskBytes() uint64 {
	db.closeMu.RLock()
	defer db.closeMu.RUnlock()
	if db.closed {
		return 0
	}
	return db.pdb.Metrics().DiskSpaceUsage()
}

// Flush flushes the memtable to an sstable (tests and size measurements).
func (db *DB) Flush() error {
	db.closeMu.RLock()
	defer db.closeMu.RUnlock()
	if db.closed {
		return allocator.ErrJournalClosed
	}
	return db.pdb.Flush()
}

// Compact compacts every key, the memtable's included, into the lowest
// level, so that DiskBytes counts each key once (size measurements).
func (db *DB) Compact() error {
	db.closeMu.RLock()
	defer db.closeMu.RUnlock()
	if db.closed {
		return allocator.ErrJournalClosed
	}
	return db.pdb.Compact(context.Background(), []byte{0}, []byte{0xff}, true)
}

// LoadBooking reads the latest record of one booking, created at
// createdUnixNano (the time of its first history entry, part of its key).
func (db *DB) LoadBooking(id allocator.ID, createdUnixNano int64) (*allocator.BookingRecord, bool, error) {
	k := bookingKey(nil, createdUnixNano, id)
	return getDecoded(db, k, func(v []byte) (*allocator.BookingRecord, error) { return decodeBookingAt(k, v, nil) })
}

// getDecoded reads key k and decodes its value while Pebble's buffer is
// valid. A missing key is (zero, false, nil); a value that fails to decode
// is ErrCorrupt naming the key. A degraded DB refuses with ErrDegraded:
// its memtable may hold a change that failed and is not on disk (W2).
func getDecoded[T any](db *DB, k []byte, decode func(v []byte) (T, error)) (T, bool, error) {
	var zero T
	db.closeMu.RLock()
	defer db.closeMu.RUnlock()
	if err := db.usableLocked(); err != nil {
		return zero, false, err
	}
	v, closer, err := db.pdb.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return zero, false, nil
	}
	if err != nil {
		return zero, false, fmt.Errorf("wal: cannot read %s: %w", KeyString(k), err)
	}
	defer closer.Close()
	r, err := decode(v)
	if err != nil {
		if !errors.Is(err, ErrCorrupt) {
			err = fmt.Errorf("%w: key %s: %w", ErrCorrupt, KeyString(k), err)
		}
		return zero, false, err
	}
	return r, true, nil
}

// decodeBookingAt decodes the value stored under booking key k and checks
// that it is that booking.
func decodeBookingAt(k, v []byte, in interner) (*allocator.BookingRecord, error) {
	r, err := decodeBooking(v, in)
	if err != nil {
		return nil, fmt.Errorf("%w: key %s: %w", ErrCorrupt, KeyString(k), err)
	}
	if created, id, ok := parseBookingKey(k); !ok || id != r.ID || created != r.History.First().AtUnixNano {
		return nil, fmt.Errorf("%w: key %s: %w: holds booking %s created at %d", ErrCorrupt, KeyString(k), errKeyMismatch, r.ID, r.History.First().AtUnixNano)
	}
	return r, nil
}
