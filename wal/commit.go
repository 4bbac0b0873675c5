package wal

// The commit path. See the package doc for the invariants (W1…W7) and the
// pipeline; this file implements steps 1–5 of it.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"slotd/allocator"
)

// encoder holds the scratch buffers of one commit and its place in the
// commit queue. Pooled; owned by the committing caller between Get and
// Put, except while queued: the committer goroutine that took it reads b,
// c and events and, on a group's first change, writes group; then it or
// the syncer writes err and signals done.
type encoder struct {
	key       []byte
	val       []byte
	events    []byte // encoded event values, back to back
	eventEnds []int  // end offset of each event value in events

	b    *pebble.Batch // the change's records, events not yet keyed
	c    *allocator.Change
	err  error
	done chan struct{} // capacity 1; signalled once per commit

	// group is set on the first change of each group a committer wrote:
	// what the syncer needs of the group, whose changes follow it.
	group written
}

var encoderPool = sync.Pool{New: func() any { return &encoder{done: make(chan struct{}, 1)} }}

// encoderBytesMax: buffers that grew beyond this are not pooled.
const encoderBytesMax = 256 << 10

func (enc *encoder) release() {
	enc.b, enc.c, enc.err = nil, nil, nil
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

// Commit makes c durable. It assigns c's event cursors. It returns nil
// only after c's records are on stable storage (invariant W1), and an
// error otherwise; after a failed write or sync every later Commit returns
// ErrDegraded (W2). The caller must not commit two changes that touch the
// same booking concurrently (the engine holds the booking across Commit,
// DESIGN invariant 3), so the latest record of a booking is the one of its
// latest change.
//
// The caller checks and encodes its change (steps 1–2, on its own core);
// a committer goroutine then writes it together with every other change
// queued meanwhile, in one batch (steps 3–4), and the syncer acknowledges
// it once an fsync covers that batch (step 5).
func (db *DB) Commit(c *allocator.Change) error {
	if c.Empty() {
		return nil
	}
	db.closeMu.RLock()
	defer db.closeMu.RUnlock()
	if db.closed {
		return allocator.ErrJournalClosed
	}
	if db.readOnly {
		return ErrReadOnly
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
	enc.b, enc.c = b, c
	start := time.Now()
	db.queue.push(enc)
	<-enc.done
	if enc.err != nil {
		return enc.err
	}
	db.stats.commitLatency.observe(time.Since(start))
	return nil
}

// syncedRoundKey is the key of every round's record.
var syncedRoundKey = metaKey(metaSyncedRound)

// queue hands items to the goroutines that take them, all that have
// gathered at once. Both stages of the pipeline use one: the committers
// take changes, the syncer takes the changes of written groups. Safe for
// concurrent use.
type queue[T any] struct {
	mu      sync.Mutex
	cond    sync.Cond // L is &mu; signalled when items arrive or on stop
	items   []T       // guarded by mu; in arrival order
	stopped bool      // guarded by mu
	wg      sync.WaitGroup
}

// start runs n goroutines of run, which take from q until it stops.
func (q *queue[T]) start(n int, run func()) {
	q.cond.L = &q.mu
	for range n {
		q.wg.Go(run)
	}
}

func (q *queue[T]) push(items ...T) {
	q.mu.Lock()
	q.items = append(q.items, items...)
	q.cond.Signal()
	q.mu.Unlock()
}

// take waits for items and takes all of them, swapping in spare (emptied)
// as the new queue. It returns nil once the queue is stopped and empty.
func (q *queue[T]) take(spare []T) []T {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.items) == 0 && !q.stopped {
		q.cond.Wait()
	}
	if len(q.items) == 0 {
		return nil
	}
	items := q.items
	q.items = spare[:0]
	return items
}

// stop wakes the takers and waits until they have emptied q and returned.
func (q *queue[T]) stop() {
	q.mu.Lock()
	q.stopped = true
	q.cond.Broadcast()
	q.mu.Unlock()
	q.wg.Wait()
}

// committers is how many goroutines write groups. A committer never waits
// for the disk (the syncer does); two let two groups' memtable inserts run
// at once, one per core.
const committers = 2

// startCommitters starts the committer goroutines and the syncer;
// stopCommitters ends them once their queues are empty. Close stops them
// only after every Commit in flight returned (closeMu), so no change is
// left queued.
func (db *DB) startCommitters() {
	db.syncer.start(1, db.runSyncer)
	db.queue.start(committers, func() {
		var spare []*encoder
		// The batch groups are written in, reused: its buffer keeps the
		// size of the groups seen (up to Pebble's retention limit).
		gb := db.pdb.NewBatch()
		defer gb.Close()
		for {
			group := db.queue.take(spare)
			if group == nil {
				return
			}
			db.commitGroup(group, gb)
			clear(group)
			spare = group
		}
	})
}

func (db *DB) stopCommitters() {
	db.queue.stop()
	db.syncer.stop()
}

// commitGroup writes every change of group in one batch, without waiting
// for the disk, and hands the group to the syncer, which acknowledges it
// once an fsync covers it. The changes' records go into the batch in
// arrival order (a later Set of the same key wins, as it would have in
// Pebble's pipeline), then every event is keyed with its cursor. A group
// of one commits its own batch; a larger group is written in gb, reset
// first.
func (db *DB) commitGroup(group []*encoder, gb *pebble.Batch) {
	w := &group[0].group
	*w = written{changes: len(group)}
	// W2: once degraded, nothing more is written, queued changes included.
	if err := db.errIfDegraded(); err != nil {
		db.fail(group, err)
		return
	}
	// Step 3: number the events, in arrival order.
	for _, enc := range group {
		w.events += len(enc.c.Events)
		if enc.c.Idempotency != nil {
			w.idempotency++
		}
	}
	if w.events > 0 {
		w.first, w.last = db.feed.allocate(w.events)
	}
	b := group[0].b
	if len(group) > 1 {
		b = gb
		b.Reset()
		for _, enc := range group {
			if err := b.Apply(enc.b, nil); err != nil {
				panic(fmt.Sprintf("BUG: wal: batch apply: %v", err))
			}
		}
	}
	cursor := w.first
	for _, enc := range group {
		start := 0
		for i := range enc.c.Events {
			enc.c.Events[i].Cursor = cursor
			enc.key = eventKey(enc.key[:0], cursor)
			set(b, enc.key, enc.events[start:enc.eventEnds[i]])
			start = enc.eventEnds[i]
			cursor++
		}
	}
	w.bytes = uint64(b.Len())
	// Step 4: write to the log and the memtable; the fsync comes later.
	if err := pebbleCall(func() error { return b.Commit(pebble.NoSync) }); err != nil {
		// Pebble's pipeline is unusable after a failed write, so the
		// group is failed here, not left to the syncer, whose next sync
		// may never return (W2).
		db.fail(group, err)
		return
	}
	db.stats.groups.Add(1)
	db.syncer.push(group...)
}

// runSyncer acknowledges the written groups. Each round takes every group
// written since the last fsync and makes them durable at once with one
// synced log record, the round's number (meta/synced-round, W9): Pebble's
// log is written in order, an fsync covers every record before the one it
// was asked for, and Pebble syncs a log file before it starts the next.
// So a group never waits for a committer to come back from the disk, only
// for the fsync in progress to end and its own to run.
func (db *DB) runSyncer() {
	var encs []*encoder
	// The batch of the rounds' records, reused.
	rb := db.pdb.NewBatch()
	defer rb.Close()
	for {
		encs = db.syncer.take(encs)
		if encs == nil {
			return
		}
		db.syncGroups(encs, rb)
		clear(encs)
	}
}

// syncGroups makes the groups of encs durable with the next round's
// record, written in rb, then publishes their cursors and acknowledges
// their changes (step 5), or fails all of them.
func (db *DB) syncGroups(encs []*encoder, rb *pebble.Batch) {
	err := db.errIfDegraded()
	if err == nil {
		db.round++
		rb.Reset()
		var v [8]byte
		binary.BigEndian.PutUint64(v[:], db.round)
		set(rb, syncedRoundKey, v[:])
		err = pebbleCall(func() error { return rb.Commit(pebble.Sync) })
	}
	if err != nil {
		db.fail(encs, err)
		return
	}
	// The round is synced: the mark may say so (W9), now or later; it
	// never says so before.
	db.syncedRound.Store(db.round)
	db.wakeMarker()
	for i := 0; i < len(encs); i += encs[i].group.changes {
		w := &encs[i].group
		if w.last != 0 {
			db.feed.markDone(w.first, w.last)
		}
		db.stats.batchBytes.Add(w.bytes)
		db.stats.events.Add(uint64(w.events))
		db.stats.idempotency.Add(w.idempotency)
	}
	db.stats.commits.Add(uint64(len(encs)))
	for _, enc := range encs {
		enc.done <- struct{}{}
	}
}

// fail fails the changes of whole groups, encs, with err. Their batches
// may sit in the memtable without being durable: their cursors are never
// published (W4), the DB degrades unless it already had, and no write
// follows (W2).
func (db *DB) fail(encs []*encoder, err error) {
	if !errors.Is(err, ErrDegraded) {
		db.degrade(err)
		err = fmt.Errorf("%w: commit: %w", ErrDegraded, err)
	}
	for i := 0; i < len(encs); i += encs[i].group.changes {
		if w := &encs[i].group; w.last != 0 {
			db.feed.markFailed(w.first)
		}
	}
	for _, enc := range encs {
		enc.err = err
		enc.done <- struct{}{}
	}
	db.stats.commitErrors.Add(uint64(len(encs)))
}

// pebbleCall runs call, a Pebble write (or Open, which writes a new
// store's first files). Pebble reports a failed WAL write or sync, or a
// failed MANIFEST write while it creates a store, through Logger.Fatalf,
// which panics with pebbleFatal (see pebbleLogger); that panic becomes the
// error here. No Pebble lock is held at that point, but after a failed
// write Pebble's commit pipeline may never finish another commit: the
// caller degrades the DB and writes nothing more (W2), or, in Open, gives
// up the store.
func pebbleCall(call func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(pebbleFatal)
			if !ok {
				panic(r)
			}
			err = f
		}
	}()
	return call()
}

// written is one group the committers wrote, as the syncer needs it.
type written struct {
	changes     int    // the group's changes: this one and those after it
	first, last uint64 // the group's event cursors, 0 if it has none
	events      int
	idempotency uint64
	bytes       uint64 // the group batch's size
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
		enc.key = bookingKeyOf(enc.key[:0], r)
		set(b, enc.key, enc.val)
	}
	// The events next, while enc.val still holds the last booking's
	// value: an event that embeds that booking (a hold's, a transition's)
	// takes the bytes as they are instead of checking and encoding again.
	var last *allocator.BookingRecord
	if n := len(c.Bookings); n > 0 {
		last = c.Bookings[n-1]
	}
	// An event whose booking is the one of the event before it (a hold
	// and its confirm in one change) names the distance back to the event
	// that embeds it instead of embedding it again: about a third of a
	// booking's bytes in Pebble. The events of one change get consecutive
	// cursors, so the distance in the change is the distance in cursors.
	enc.events = enc.events[:0]
	enc.eventEnds = enc.eventEnds[:0]
	embedAt := 0 // the event that embeds the booking of the run of events sharing it
	for i := range c.Events {
		e := &c.Events[i]
		var back uint64
		if i > 0 && e.Booking != nil && e.Booking == c.Events[i-1].Booking && i-embedAt <= eventBackMax {
			back = uint64(i - embedAt)
		} else {
			embedAt = i
		}
		var encoded []byte
		if last != nil && e.Booking == last {
			encoded = enc.val
		}
		if enc.events, err = appendEventValue(enc.events, e, encoded, back); err != nil {
			return err
		}
		enc.eventEnds = append(enc.eventEnds, len(enc.events))
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
		// The record is the office's when the change is about one, or,
		// stored alone, when it names one: the time index names the
		// office and an office index lists the record, so that a move
		// takes it along (move.go) and the sweep finds the index.
		office := changeOffice(c)
		if office == "" && len(r.Office) <= textBytesMax {
			office = r.Office
		}
		enc.key = idemByTimeKey(enc.key[:0], r.AtUnixNano, r.Key)
		enc.val = append(enc.val[:0], office...) // the batch copied the record's value
		set(b, enc.key, enc.val)
		if office != "" {
			enc.key = idemOfficeKey(enc.key[:0], office, r.AtUnixNano, r.Key)
			set(b, enc.key, nil)
		}
	}
	return nil
}

// changeOffice is the office a change is about: its first booking's, its
// office record's, or its first watch's; "" for a change of none (a
// response stored alone, which names its office itself if the edge knew
// it; a region watch). Every change the engine makes with a response
// attached is about one office at most.
func changeOffice(c *allocator.Change) string {
	switch {
	case len(c.Bookings) > 0:
		return c.Bookings[0].Office
	case c.Office != nil:
		return c.Office.Config.ID
	case len(c.Watches) > 0:
		return c.Watches[0].Office
	}
	return ""
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
