package wal

import (
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// A Region is the part of the store under one key prefix that wal reserves
// for another package and never reads or writes itself. The region of the
// Raft log (prefix 'r') belongs to package raftlog: the cluster's Raft log
// lives in this Pebble store, synced with the same log as the bookings, but
// its keys and values are raftlog's own (its package doc draws them).
//
// A Region shares the DB's fate: it refuses once the DB is closed
// (allocator.ErrJournalClosed), and once the DB is degraded (W2) it
// refuses reads and writes with ErrDegraded; a failed region commit
// degrades the DB like a failed Commit. A key outside the region is a
// programmer error and panics. Safe for concurrent use.
type Region struct {
	db     *DB
	prefix byte
}

// RaftRegion returns the region of the Raft log (prefix 'r').
func (db *DB) RaftRegion() *Region { return &Region{db: db, prefix: prefixRaft} }

// Prefix returns the first byte of every key of the region.
func (r *Region) Prefix() byte { return r.prefix }

// RegionBatch is a set of writes to one region, committed atomically.
// Not safe for concurrent use; reusable after Commit through Reset.
type RegionBatch struct {
	r *Region
	b *pebble.Batch
}

// NewBatch returns an empty batch. The caller closes it.
func (r *Region) NewBatch() *RegionBatch { return &RegionBatch{r: r, b: r.db.pdb.NewBatch()} }

// Set writes key k. Pebble's Set fails only for a batch beyond 4 GiB.
func (b *RegionBatch) Set(k, v []byte) {
	b.r.checkKey(k)
	if err := b.b.Set(k, v, nil); err != nil {
		panic(fmt.Sprintf("BUG: wal: region batch set: %v", err))
	}
}

// Delete deletes key k.
func (b *RegionBatch) Delete(k []byte) {
	b.r.checkKey(k)
	if err := b.b.Delete(k, nil); err != nil {
		panic(fmt.Sprintf("BUG: wal: region batch delete: %v", err))
	}
}

// DeleteRange deletes every key in [lo, hi); hi may be the end of the
// region (the prefix byte plus one).
func (b *RegionBatch) DeleteRange(lo, hi []byte) {
	b.r.checkKey(lo)
	b.r.checkUpper(hi)
	if err := b.b.DeleteRange(lo, hi, nil); err != nil {
		panic(fmt.Sprintf("BUG: wal: region batch delete range: %v", err))
	}
}

// Len returns the batch's size in bytes, as it is written to the log.
func (b *RegionBatch) Len() int { return b.b.Len() }

// Empty reports whether the batch holds no write.
func (b *RegionBatch) Empty() bool { return b.b.Empty() }

// Reset empties the batch for reuse.
func (b *RegionBatch) Reset() { b.b.Reset() }

// Close releases the batch.
func (b *RegionBatch) Close() { _ = b.b.Close() }

// Commit writes the batch atomically: after a crash it is wholly there or
// wholly absent. With sync it returns only once the batch is on stable
// storage (one fsync of Pebble's log, shared with every commit waiting for
// one at the time); without, a crash may lose it, but then also every
// write that was committed after it. A failed commit degrades the DB (W2).
func (b *RegionBatch) Commit(sync bool) error {
	db := b.r.db
	db.closeMu.RLock()
	defer db.closeMu.RUnlock()
	if err := db.writableLocked(); err != nil {
		return err
	}
	opt := pebble.NoSync
	if sync {
		opt = pebble.Sync
	}
	if err := pebbleCall(func() error { return b.b.Commit(opt) }); err != nil {
		db.degrade(err)
		return fmt.Errorf("%w: region commit: %w", ErrDegraded, err)
	}
	return nil
}

// Get calls fn with the value of key k, valid only during fn, and reports
// whether k exists. fn's error is returned as it is.
func (r *Region) Get(k []byte, fn func(v []byte) error) (bool, error) {
	r.checkKey(k)
	db := r.db
	db.closeMu.RLock()
	defer db.closeMu.RUnlock()
	if err := db.usableLocked(); err != nil {
		return false, err
	}
	v, closer, err := db.pdb.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("wal: cannot read region key %x: %w", k, err)
	}
	defer closer.Close()
	return true, fn(v)
}

// Scan calls fn with an iterator over the keys in [lo, hi), unpositioned;
// hi may be the end of the region. The iterator is valid only during fn;
// Scan closes it. fn's error is returned as it is.
func (r *Region) Scan(lo, hi []byte, fn func(it *pebble.Iterator) error) error {
	r.checkKey(lo)
	r.checkUpper(hi)
	db := r.db
	db.closeMu.RLock()
	defer db.closeMu.RUnlock()
	if err := db.usableLocked(); err != nil {
		return err
	}
	it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return fmt.Errorf("wal: cannot read region %q: %w", r.prefix, err)
	}
	ferr := fn(it)
	if err := it.Close(); err != nil && ferr == nil {
		ferr = fmt.Errorf("wal: cannot read region %q: %w", r.prefix, err)
	}
	return ferr
}

// checkKey panics unless k lies in the region.
func (r *Region) checkKey(k []byte) {
	if len(k) == 0 || k[0] != r.prefix {
		panic(fmt.Sprintf("BUG: wal: key %x outside region %q", k, r.prefix))
	}
}

// checkUpper panics unless hi lies in the region or is its end.
func (r *Region) checkUpper(hi []byte) {
	if len(hi) == 1 && hi[0] == r.prefix+1 {
		return
	}
	r.checkKey(hi)
}
