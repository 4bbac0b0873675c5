package wal

// The commit path. See the package doc for the invariants (W1…W7) and the
// pipeline; this file implements steps 1–5 of it.

import (
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
// c and events, and then it or the syncer writes err and signals done.
type encoder struct {
	key       []byte
	val       []byte
	events    []byte // encoded event values, back to back
	eventEnds []int  // end offset of each event value in events

	b    *pebble.Batch // the change's records, events not yet keyed
	c    *allocator.Change
	err  error
	done chan struct{} // capacity 1; signalled once per commit
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

// commitQueue hands encoded changes to the committer goroutines. Safe for
// concurrent use.
type commitQueue struct {
	mu      sync.Mutex
	cond    sync.Cond  // L is &mu; signalled when pending grows or on stop
	pending []*encoder // guarded by mu; in arrival order
	stopped bool       // guarded by mu
	wg      sync.WaitGroup
}

// committers is how many goroutines write groups. A committer never waits
// for the disk (the syncer does); two let two groups' memtable inserts run
// at once, one per core.
const committers = 2

func (q *commitQueue) push(enc *encoder) {
	q.mu.Lock()
	q.pending = append(q.pending, enc)
	q.cond.Signal()
	q.mu.Unlock()
}

// take waits for pending changes and takes all of them, swapping in spare
// (emptied) as the new queue. It returns nil once the queue is stopped and
// empty.
func (q *commitQueue) take(spare []*encoder) []*encoder {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.pending) == 0 && !q.stopped {
		q.cond.Wait()
	}
	if len(q.pending) == 0 {
		return nil
	}
	group := q.pending
	q.pending = spare[:0]
	return group
}

// startCommitters starts the committer goroutines and the syncer;
// stopCommitters ends them once their queues are empty. Close stops them
// only after every Commit in flight returned (closeMu), so no change is
// left queued.
func (db *DB) startCommitters() {
	db.queue.cond.L = &db.queue.mu
	db.syncer.cond.L = &db.syncer.mu
	db.syncer.done = make(chan struct{})
	go db.runSyncer()
	for range committers {
		db.queue.wg.Add(1)
		go func() {
			defer db.queue.wg.Done()
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
		}()
	}
}

func (db *DB) stopCommitters() {
	db.queue.mu.Lock()
	db.queue.stopped = true
	db.queue.cond.Broadcast()
	db.queue.mu.Unlock()
	db.queue.wg.Wait()
	db.syncer.mu.Lock()
	db.syncer.stopped = true
	db.syncer.cond.Signal()
	db.syncer.mu.Unlock()
	<-db.syncer.done
}

// commitGroup writes every change of group in one batch, without waiting
// for the disk, and hands the group to the syncer, which acknowledges it
// once an fsync covers it. The changes' records go into the batch in
// arrival order (a later Set of the same key wins, as it would have in
// Pebble's pipeline), then every event is keyed with its cursor. A group
// of one commits its own batch; a larger group is written in gb, reset
// first.
func (db *DB) commitGroup(group []*encoder, gb *pebble.Batch) {
	// W2: once degraded, nothing more is written, queued changes included.
	if err := db.errIfDegraded(); err != nil {
		failChanges(group, err)
		db.stats.commitErrors.Add(uint64(len(group)))
		return
	}
	// Step 3: number the events, in arrival order.
	w := written{changes: len(group)}
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
	if err := pebbleCommit(func() error { return b.Commit(pebble.NoSync) }); err != nil {
		// Pebble's pipeline is unusable after a failed write, so the
		// group is failed here, not left to the syncer, whose next sync
		// may never return (W2).
		if w.last != 0 {
			db.feed.markFailed(w.first)
		}
		db.degrade(err)
		failChanges(group, fmt.Errorf("%w: commit: %w", ErrDegraded, err))
		db.stats.commitErrors.Add(uint64(len(group)))
		return
	}
	db.stats.groups.Add(1)
	db.syncer.push(group, w)
}

// runSyncer acknowledges the written groups. Each round takes every group
// written since the last fsync and makes them durable at once with one
// synced, empty log record: Pebble's log is written in order, an fsync
// covers every record before the one it was asked for, and Pebble syncs a
// log file before it starts the next. So a group never waits for a
// committer to come back from the disk, only for the fsync in progress to
// end and its own to run.
func (db *DB) runSyncer() {
	defer close(db.syncer.done)
	var encs []*encoder
	var groups []written
	for {
		encs, groups = db.syncer.take(encs, groups)
		if groups == nil {
			return
		}
		db.syncGroups(encs, groups)
		clear(encs)
	}
}

// syncGroups makes groups durable, then publishes their cursors and
// acknowledges their changes (step 5), or fails all of them.
func (db *DB) syncGroups(encs []*encoder, groups []written) {
	err := db.errIfDegraded()
	if err == nil {
		err = pebbleCommit(func() error { return db.pdb.LogData(nil, pebble.Sync) })
	}
	if err != nil {
		// The groups sit in the memtable although they may not be
		// durable: their cursors are never published (W4), and no write
		// follows (W2).
		for _, w := range groups {
			if w.last != 0 {
				db.feed.markFailed(w.first)
			}
		}
		if !errors.Is(err, ErrDegraded) {
			db.degrade(err)
			err = fmt.Errorf("%w: commit: %w", ErrDegraded, err)
		}
		failChanges(encs, err)
		db.stats.commitErrors.Add(uint64(len(encs)))
		return
	}
	for _, w := range groups {
		if w.last != 0 {
			db.feed.markDone(w.first, w.last)
		}
		db.stats.commits.Add(uint64(w.changes))
		db.stats.batchBytes.Add(w.bytes)
		db.stats.events.Add(uint64(w.events))
		db.stats.idempotency.Add(w.idempotency)
	}
	for _, enc := range encs {
		enc.done <- struct{}{}
	}
}

// pebbleCommit runs commit, a Pebble write. Pebble reports a failed WAL
// write or sync through Logger.Fatalf, which panics with pebbleFatal (see
// pebbleLogger); that panic becomes the error here. No Pebble lock is held
// at that point, but after a failed write Pebble's commit pipeline may
// never finish another commit: the caller degrades the DB and writes
// nothing more (W2).
func pebbleCommit(commit func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(pebbleFatal)
			if !ok {
				panic(r)
			}
			err = f
		}
	}()
	return commit()
}

// written is what the syncer needs of one group the committers wrote.
type written struct {
	first, last uint64 // the group's event cursors, 0 if it has none
	changes     int
	events      int
	idempotency uint64
	bytes       uint64 // the group batch's size
}

// failChanges hands err to every change and wakes its caller.
func failChanges(encs []*encoder, err error) {
	for _, enc := range encs {
		enc.err = err
		enc.done <- struct{}{}
	}
}

// syncQueue holds the groups written to Pebble's log and not yet covered
// by an fsync. Safe for concurrent use.
type syncQueue struct {
	mu      sync.Mutex
	cond    sync.Cond  // L is &mu; signalled when a group arrives or on stop
	encs    []*encoder // guarded by mu; the groups' changes, in write order
	groups  []written  // guarded by mu
	stopped bool       // guarded by mu
	done    chan struct{}
}

func (q *syncQueue) push(group []*encoder, w written) {
	q.mu.Lock()
	q.encs = append(q.encs, group...)
	q.groups = append(q.groups, w)
	q.cond.Signal()
	q.mu.Unlock()
}

// take waits for written groups and takes all of them, swapping in the
// spare slices. It returns nil groups once stopped and empty.
func (q *syncQueue) take(encs []*encoder, groups []written) ([]*encoder, []written) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.groups) == 0 && !q.stopped {
		q.cond.Wait()
	}
	if len(q.groups) == 0 {
		return nil, nil
	}
	e, g := q.encs, q.groups
	q.encs, q.groups = encs[:0], groups[:0]
	return e, g
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
	}
	// The events next, while enc.val still holds the last booking's
	// value: an event that embeds that booking (a hold's, a transition's)
	// takes the bytes as they are instead of checking and encoding again.
	var last *allocator.BookingRecord
	if n := len(c.Bookings); n > 0 {
		last = c.Bookings[n-1]
	}
	enc.events = enc.events[:0]
	enc.eventEnds = enc.eventEnds[:0]
	for i := range c.Events {
		var encoded []byte
		if last != nil && c.Events[i].Booking == last {
			encoded = enc.val
		}
		if enc.events, err = appendEventValue(enc.events, &c.Events[i], encoded); err != nil {
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
		enc.key = idemByTimeKey(enc.key[:0], r.AtUnixNano, r.Key)
		set(b, enc.key, nil)
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
