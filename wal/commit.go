package wal

// The commit path. See the package doc for the invariants (W1…W7) and the
// pipeline; this file implements steps 1–5 of it.

import (
	"fmt"
	"reflect"
	"sync"

	"github.com/cockroachdb/pebble/v2"

	"slotd/allocator"
)

// encoder holds the scratch buffers of one commit. Pooled; owned by one
// goroutine between Get and Put.
type encoder struct {
	key       []byte
	val       []byte
	events    []byte // encoded event values, back to back
	eventEnds []int  // end offset of each event value in events
}

var encoderPool = sync.Pool{New: func() any { return new(encoder) }}

// encoderBytesMax: buffers that grew beyond this are not pooled.
const encoderBytesMax = 256 << 10

func (enc *encoder) release() {
	if cap(enc.val) > encoderBytesMax || cap(enc.events) > encoderBytesMax {
		return
	}
	encoderPool.Put(enc)
}

// set adds one key to the batch. Pebble's Set fails only for a batch
// beyond 4 GiB, which the record limits rule out.
func set(b *pebble.Batch, k, v []byte) {
	if err := b.Set(k, v, nil); err != nil {
		panic(fmt.Sprintf("BUG: wal: batch set: %v", err))
	}
}

// Commit makes c durable: one Pebble batch, synced, shared with concurrent
// commits through Pebble's group commit. It assigns c's event cursors. It
// returns nil only after the batch is on stable storage (invariant W1), and
// an error otherwise; after a failed write or sync every later Commit
// returns ErrDegraded (W2). The caller must not commit two changes that
// touch the same booking concurrently (the engine holds the booking across
// Commit, DESIGN invariant 3), so the latest record of a booking is the one
// of its latest change.
func (db *DB) Commit(c *allocator.Change) error {
	if c.Empty() {
		return nil
	}
	db.closeMu.RLock()
	defer db.closeMu.RUnlock()
	if db.closed {
		return allocator.ErrJournalClosed
	}
	if err := db.errIfDegraded(); err != nil {
		db.stats.commitErrors.Add(1)
		return err
	}
	enc := encoderPool.Get().(*encoder)
	defer enc.release()
	b := db.pdb.NewBatch()
	defer b.Close()

	// Steps 1–2: check and encode everything that can be refused, before
	// any cursor is taken (W3: a refused change consumes no cursor).
	if err := enc.stage(b, c); err != nil {
		db.stats.commitErrors.Add(1)
		return err
	}
	// Step 3: number the events.
	var first, last uint64
	if n := len(c.Events); n > 0 {
		first, last = db.feed.allocate(n)
		start := 0
		for i := range c.Events {
			c.Events[i].Cursor = first + uint64(i)
			enc.key = eventKey(enc.key[:0], c.Events[i].Cursor)
			set(b, enc.key, enc.events[start:enc.eventEnds[i]])
			start = enc.eventEnds[i]
		}
	}
	batchBytes := uint64(b.Len())
	// Step 4: write and sync, sharing the fsync with concurrent commits.
	if err := commitSynced(b); err != nil {
		// The batch may already sit in the memtable although its sync
		// failed: its cursors are never published (W4), and no write
		// follows (W2).
		if last != 0 {
			db.feed.markFailed(first)
		}
		db.degrade(err)
		db.stats.commitErrors.Add(1)
		return fmt.Errorf("%w: commit: %w", ErrDegraded, err)
	}
	// Step 5: publish.
	if last != 0 {
		db.feed.markDone(first, last)
	}
	db.stats.commits.Add(1)
	db.stats.batchBytes.Add(batchBytes)
	db.stats.commitLatency.observe(b.CommitStats().TotalDuration)
	if n := len(c.Events); n > 0 {
		db.stats.events.Add(uint64(n))
	}
	if c.Idempotency != nil {
		db.stats.idempotency.Add(1)
	}
	return nil
}

// commitSynced commits b with pebble.Sync. Pebble reports a failed WAL
// write or sync through Logger.Fatalf, which panics with pebbleFatal (see
// pebbleLogger); that panic becomes the error here. No Pebble lock is held
// at that point: the commit pipeline has finished with the batch.
func commitSynced(b *pebble.Batch) (err error) {
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(pebbleFatal)
			if !ok {
				panic(r)
			}
			err = f
		}
	}()
	return b.Commit(pebble.Sync)
}

// stage checks and encodes every record of c. Bookings, office and
// idempotency record go into b; event values into enc.events, to be keyed
// once their cursors are known.
func (enc *encoder) stage(b *pebble.Batch, c *allocator.Change) error {
	var err error
	if err := enc.stageWatches(b, c.Watches); err != nil {
		return err
	}
	for _, m := range c.SeqMarks {
		if err := checkText("number mark office", m.Office); err != nil || m.Office == "" {
			return fmt.Errorf("%w: number mark without a valid office", ErrInvalidRecord)
		}
		enc.key = seqMarkKey(enc.key[:0], m)
		set(b, enc.key, nil)
	}
	for _, r := range c.Bookings {
		if r == nil {
			return fmt.Errorf("%w: nil booking in change", ErrInvalidRecord)
		}
		if enc.val, err = appendBooking(enc.val[:0], r); err != nil {
			return err
		}
		if invariantsEnabled {
			verifyBooking(r, enc.val)
		}
		enc.key = bookingKey(enc.key[:0], r.ID)
		set(b, enc.key, enc.val)
		enc.key = applicantKey(enc.key[:0], r.Applicant, r.ID)
		set(b, enc.key, nil)
	}
	if c.Office != nil {
		if enc.val, err = appendOffice(enc.val[:0], c.Office); err != nil {
			return err
		}
		enc.key = officeKey(enc.key[:0], c.Office.Config.ID)
		set(b, enc.key, enc.val)
	}
	if r := c.Idempotency; r != nil {
		if enc.val, err = appendIdempotency(enc.val[:0], r); err != nil {
			return err
		}
		enc.key = idempotencyKey(enc.key[:0], r.Key)
		set(b, enc.key, enc.val)
		enc.key = idemByTimeKey(enc.key[:0], r.AtUnixNano, r.Key)
		set(b, enc.key, nil)
	}
	enc.events = enc.events[:0]
	enc.eventEnds = enc.eventEnds[:0]
	for i := range c.Events {
		if enc.events, err = appendEventValue(enc.events, &c.Events[i]); err != nil {
			return err
		}
		enc.eventEnds = append(enc.eventEnds, len(enc.events))
	}
	return nil
}

// verifyBooking decodes v again and panics unless it is r (invariants only):
// a record is asserted right before it is written.
func verifyBooking(r *allocator.BookingRecord, v []byte) {
	got, err := decodeBooking(v, nil)
	if err != nil {
		panic(fmt.Sprintf("BUG: wal: booking %s does not decode after encoding: %v", r.ID, err))
	}
	if !reflect.DeepEqual(got, r) {
		panic(fmt.Sprintf("BUG: wal: booking %s changes through encoding:\n%+v\n%+v", r.ID, r, got))
	}
}
