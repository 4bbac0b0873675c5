package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
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
	db.sweepMu.Lock()
	defer db.sweepMu.Unlock()
	db.closeMu.RLock()
	defer db.closeMu.RUnlock()
	var st SweepStats
	if err := db.writableLocked(); err != nil {
		return st, err
	}
	b := db.pdb.NewBatch()
	defer b.Close()

	n, more, err := db.sweepIdempotency(b, now.Add(-db.opts.IdempotencyTTL).UnixNano())
	if err != nil {
		return st, err
	}
	st.IdempotencyDeleted, st.More = n, more
	n, more, mark, err := db.sweepEvents(b, now.Add(-db.opts.EventRetention).UnixNano())
	if err != nil {
		return st, err
	}
	st.EventsDeleted, st.More = n, st.More || more
	if b.Empty() {
		return st, nil
	}
	// The mark moves before the events go (W10). If the commit fails the
	// store degrades, and the events it kept were past retention anyway.
	if n > 0 {
		db.feed.deletedThrough.Store(mark)
	}
	if err := pebbleCall(func() error { return b.Commit(pebble.Sync) }); err != nil {
		db.degrade(err)
		return SweepStats{}, fmt.Errorf("%w: sweep: %w", ErrDegraded, err)
	}
	db.stats.sweepIdempotencyDeleted.Add(uint64(st.IdempotencyDeleted))
	db.stats.sweepEventsDeleted.Add(uint64(st.EventsDeleted))
	return st, nil
}

// sweepIdempotency adds to b the deletion of up to SweepBatchMax
// idempotency records created before cutoffUnixNano.
func (db *DB) sweepIdempotency(b *pebble.Batch, cutoffUnixNano int64) (deleted int, more bool, err error) {
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
		if deleted == db.opts.SweepBatchMax {
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
		deleted++
	}
	return deleted, false, it.Error()
}

// sweepEvents adds to b the deletion of the oldest events, up to
// SweepBatchMax, that happened before cutoffUnixNano and lie at or below
// the watermark, and moves the stored deletion mark to the last of them,
// which it returns (W5, W10).
func (db *DB) sweepEvents(b *pebble.Batch, cutoffUnixNano int64) (deleted int, more bool, mark uint64, err error) {
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
			if deleted >= db.opts.SweepBatchMax {
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
