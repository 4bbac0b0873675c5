package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"slotd/allocator"
)

// SweepStats says what one Sweep call deleted.
type SweepStats struct {
	IdempotencyDeleted int
	EventsDeleted      int
	// More is true when a bound (Options.SweepBatchMax) stopped the pass
	// with expired records left: call Sweep again soon.
	More bool
}

// Sweep deletes idempotency records older than Options.IdempotencyTTL and
// events older than Options.EventRetention, measured back from now, at most
// Options.SweepBatchMax of each kind, in one synced batch. The server calls
// it periodically; the package never reads the clock for it. Events are
// deleted oldest cursor first and the pass stops at the first event that is
// not old enough, so an event is never deleted while an older-cursor one is
// kept (readers see a gap only at the start of the feed). Safe for
// concurrent use; calls are serialised.
func (db *DB) Sweep(now time.Time) (SweepStats, error) {
	return db.sweep(db.PlanSweep(now), 0, pebble.Sync)
}

// SweepPlan is what one sweep deletes, fixed before it runs: records and
// events older than the cutoffs, at most BatchMax of each kind. In a
// cluster the group's leader stamps it and every replica applies it as it
// is (ApplySweep, W12), so that no replica's clock or options decide.
type SweepPlan struct {
	// IdempotencyBeforeUnixNano: idempotency records created before it go.
	IdempotencyBeforeUnixNano int64
	// EventsBeforeUnixNano: events that happened before it go.
	EventsBeforeUnixNano int64
	// BatchMax bounds the records of each kind one sweep deletes (W7), 1
	// to 65536.
	BatchMax int
}

// PlanSweep returns the plan of a sweep at now by this store's options:
// Options.IdempotencyTTL and Options.EventRetention back from now, at
// most Options.SweepBatchMax of each kind.
func (db *DB) PlanSweep(now time.Time) SweepPlan {
	return SweepPlan{
		IdempotencyBeforeUnixNano: now.Add(-db.opts.IdempotencyTTL).UnixNano(),
		EventsBeforeUnixNano:      now.Add(-db.opts.EventRetention).UnixNano(),
		BatchMax:                  db.opts.SweepBatchMax,
	}
}

// SweepDue reports whether a sweep by p would delete anything: an
// idempotency record or the oldest event kept is older than its cutoff.
// A cluster's leader asks its own replica before it proposes a sweep, so
// that a group with nothing past retention gets no entry a minute.
func (db *DB) SweepDue(p SweepPlan) (bool, error) {
	db.closeMu.RLock()
	defer db.closeMu.RUnlock()
	if db.closed {
		return false, allocator.ErrJournalClosed
	}
	it, err := db.pdb.NewIter(&pebble.IterOptions{
		LowerBound: []byte{prefixIdemByTime},
		UpperBound: idemByTimeKey(nil, p.IdempotencyBeforeUnixNano, ""),
	})
	if err != nil {
		return false, fmt.Errorf("wal: sweep: %w", err)
	}
	due := it.First()
	if err := it.Close(); err != nil || due {
		return due, err
	}
	it, err = db.pdb.NewIter(&pebble.IterOptions{
		LowerBound: []byte{prefixEvent},
		UpperBound: eventKey(nil, db.feed.published.Load()+1),
	})
	if err != nil {
		return false, fmt.Errorf("wal: sweep: %w", err)
	}
	defer it.Close()
	if !it.First() {
		return false, it.Error()
	}
	e, _, _, err := decodeEventFields(it.Value(), nil)
	if err != nil {
		return false, fmt.Errorf("%w: key %s: %w", ErrCorrupt, KeyString(it.Key()), err)
	}
	return e.AtUnixNano < p.EventsBeforeUnixNano, nil
}

// sweepPlanVersion is the first byte of an encoded SweepPlan. Encoded
// plans live in Raft logs: a new layout needs a new version and a reader
// of the old.
const sweepPlanVersion byte = 1

// EncodeSweepPlan encodes p for a Raft entry:
//
//	1 byte version = 1
//	varint  IdempotencyBeforeUnixNano (zigzag)
//	varint  EventsBeforeUnixNano (zigzag)
//	uvarint BatchMax
func EncodeSweepPlan(p SweepPlan) []byte {
	out := make([]byte, 0, 1+3*binary.MaxVarintLen64)
	out = append(out, sweepPlanVersion)
	out = binary.AppendVarint(out, p.IdempotencyBeforeUnixNano)
	out = binary.AppendVarint(out, p.EventsBeforeUnixNano)
	return binary.AppendUvarint(out, uint64(p.BatchMax))
}

// DecodeSweepPlan reads an encoded plan, refusing one of another version,
// with bytes left over or a BatchMax outside 1..65536.
func DecodeSweepPlan(data []byte) (SweepPlan, error) {
	var p SweepPlan
	if len(data) == 0 || data[0] != sweepPlanVersion {
		return p, fmt.Errorf("%w: sweep plan of %d bytes, not of version %d", ErrCorrupt, len(data), sweepPlanVersion)
	}
	rest := data[1:]
	var n int
	if p.IdempotencyBeforeUnixNano, n = binary.Varint(rest); n <= 0 {
		return p, fmt.Errorf("%w: sweep plan: idempotency cutoff", ErrCorrupt)
	}
	rest = rest[n:]
	if p.EventsBeforeUnixNano, n = binary.Varint(rest); n <= 0 {
		return p, fmt.Errorf("%w: sweep plan: event cutoff", ErrCorrupt)
	}
	rest = rest[n:]
	batchMax, n := binary.Uvarint(rest)
	if n <= 0 || n != len(rest) || batchMax == 0 || batchMax > sweepBatchMaxLimit {
		return p, fmt.Errorf("%w: sweep plan: batch bound %d of 1..%d, or bytes left over", ErrCorrupt, batchMax, sweepBatchMaxLimit)
	}
	p.BatchMax = int(batchMax)
	return p, nil
}

// ApplySweep applies the plan encoded in data as the entry at index of
// the store's group (package replica): it deletes what Sweep would with
// that plan, in one batch with the applied index (W11), and moves the
// event deletion mark as Sweep does (W10). It reads no clock and no
// option of this store, so every replica that applied the same entries
// deletes the same records (W12). An index at or below the applied one
// is skipped. The caller applies a group's entries one at a time, in log
// order.
func (db *DB) ApplySweep(index uint64, data []byte) (SweepStats, error) {
	p, err := DecodeSweepPlan(data)
	if err != nil {
		return SweepStats{}, err
	}
	return db.sweep(p, index, pebble.NoSync)
}

// sweep deletes what p says in one batch. index, if not 0, is the Raft
// entry the sweep is (W11): the batch records it as applied, and an index
// at or below the applied one is skipped.
func (db *DB) sweep(p SweepPlan, index uint64, sync *pebble.WriteOptions) (SweepStats, error) {
	db.sweepMu.Lock()
	defer db.sweepMu.Unlock()
	db.closeMu.RLock()
	defer db.closeMu.RUnlock()
	var st SweepStats
	if err := db.writableLocked(); err != nil {
		return st, err
	}
	if index != 0 && index <= db.applied.Load() {
		return st, nil
	}
	b := db.pdb.NewBatch()
	defer b.Close()

	n, more, err := db.sweepIdempotency(b, p.IdempotencyBeforeUnixNano, p.BatchMax)
	if err != nil {
		return st, err
	}
	st.IdempotencyDeleted, st.More = n, more
	n, more, mark, err := db.sweepEvents(b, p.EventsBeforeUnixNano, p.BatchMax)
	if err != nil {
		return st, err
	}
	st.EventsDeleted, st.More = n, st.More || more
	if index != 0 {
		setApplied(b, index) // W11: even a sweep that deletes nothing is applied
	}
	if b.Empty() {
		return st, nil
	}
	// The mark moves before the events go (W10). If the commit fails the
	// store degrades, and the events it kept were past retention anyway.
	if st.EventsDeleted > 0 {
		db.feed.deletedThrough.Store(mark)
	}
	if err := pebbleCall(func() error { return b.Commit(sync) }); err != nil {
		db.degrade(err)
		return SweepStats{}, fmt.Errorf("%w: sweep: %w", ErrDegraded, err)
	}
	if index != 0 {
		db.applied.Store(index)
	}
	db.stats.sweepIdempotencyDeleted.Add(uint64(st.IdempotencyDeleted))
	db.stats.sweepEventsDeleted.Add(uint64(st.EventsDeleted))
	return st, nil
}

// sweepIdempotency adds to b the deletion of up to batchMax idempotency
// records created before cutoffUnixNano.
func (db *DB) sweepIdempotency(b *pebble.Batch, cutoffUnixNano int64, batchMax int) (deleted int, more bool, err error) {
	it, err := db.pdb.NewIter(&pebble.IterOptions{
		LowerBound: []byte{prefixIdemByTime},
		UpperBound: idemByTimeKey(nil, cutoffUnixNano, ""), // every key with an earlier time
	})
	if err != nil {
		return 0, false, fmt.Errorf("wal: sweep: %w", err)
	}
	defer it.Close()
	var ik []byte
	for ok := it.First(); ok; ok = it.Next() {
		if deleted == batchMax {
			return deleted, true, nil
		}
		tk := it.Key()
		at, key, ok := parseIdemByTimeKey(tk)
		if !ok {
			return 0, false, fmt.Errorf("%w: key %s is not an idempotency time key", ErrCorrupt, KeyString(tk))
		}
		// The record itself goes only if it is the one this index entry
		// was written for; a later record under the same key keeps its own.
		ik = idempotencyKey(ik[:0], string(key))
		v, closer, err := db.pdb.Get(ik)
		switch {
		case errors.Is(err, pebble.ErrNotFound):
		case err != nil:
			return 0, false, fmt.Errorf("wal: sweep: cannot read %s: %w", KeyString(ik), err)
		default:
			r, derr := decodeIdempotency(v, string(key))
			closer.Close()
			if derr != nil {
				return 0, false, fmt.Errorf("%w: key %s: %w", ErrCorrupt, KeyString(ik), derr)
			}
			if r.AtUnixNano == at {
				if err := b.Delete(ik, nil); err != nil {
					panic(fmt.Sprintf("BUG: wal: batch delete: %v", err))
				}
			}
		}
		if err := b.Delete(tk, nil); err != nil {
			panic(fmt.Sprintf("BUG: wal: batch delete: %v", err))
		}
		// The time index names the office that lists the record (stage):
		// its office index goes with it.
		if office := it.Value(); len(office) > 0 {
			if err := b.Delete(idemOfficeKey(nil, string(office), at, string(key)), nil); err != nil {
				panic(fmt.Sprintf("BUG: wal: batch delete: %v", err))
			}
		}
		deleted++
	}
	return deleted, false, it.Error()
}

// sweepEvents adds to b the deletion of the oldest events, up to
// batchMax, that happened before cutoffUnixNano and lie at or below
// the watermark, and moves the stored deletion mark to the last of them,
// which it returns (W5, W10).
func (db *DB) sweepEvents(b *pebble.Batch, cutoffUnixNano int64, batchMax int) (deleted int, more bool, mark uint64, err error) {
	published := db.feed.published.Load()
	it, err := db.pdb.NewIter(&pebble.IterOptions{
		LowerBound: []byte{prefixEvent},
		UpperBound: eventKey(nil, published+1),
	})
	if err != nil {
		return 0, false, 0, fmt.Errorf("wal: sweep: %w", err)
	}
	defer it.Close()
	var last uint64
	ok := it.First()
	for ; ok; ok = it.Next() {
		c, kok := parseEventKey(it.Key())
		if !kok {
			return 0, false, 0, fmt.Errorf("%w: key %s is not an event key", ErrCorrupt, KeyString(it.Key()))
		}
		e, back, _, err := decodeEventFields(it.Value(), nil)
		if err != nil {
			return 0, false, 0, fmt.Errorf("%w: key %s: %w", ErrCorrupt, KeyString(it.Key()), err)
		}
		// An event that shares the booking of an event this pass deletes
		// (the same change's) goes with it, past the bound and the cutoff
		// both, so that no event is kept whose booking is gone.
		if withEarlier := back > 0 && deleted > 0 && c-back <= last; !withEarlier {
			if deleted >= batchMax {
				break
			}
			if e.AtUnixNano >= cutoffUnixNano {
				ok = false
				break
			}
		}
		last = c
		deleted++
	}
	if err := it.Error(); err != nil {
		return 0, false, 0, fmt.Errorf("wal: sweep: %w", err)
	}
	if deleted == 0 {
		return 0, false, 0, nil
	}
	if err := b.DeleteRange([]byte{prefixEvent}, eventKey(nil, last+1), nil); err != nil {
		panic(fmt.Sprintf("BUG: wal: batch delete range: %v", err))
	}
	set(b, metaKey(metaEventsDeletedThrough), binary.BigEndian.AppendUint64(nil, last))
	return deleted, ok, last, nil
}
