package wal

// The event feed: cursors, the published watermark and the readers.
// Invariants W3–W5 of the package doc.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"

	"slotd/allocator"
)

// EventsPerReadMax bounds one ReadEvents call.
const EventsPerReadMax = 10000

// eventFeed numbers events and publishes them in cursor order. Safe for
// concurrent use.
type eventFeed struct {
	// allocated is the highest cursor handed out. Committers take ranges
	// with Add, so ranges never overlap; it never decreases.
	allocated paddedUint64
	// published is the watermark: every cursor ≤ published belongs to a
	// committed batch or to none (W4). Stored only with mu held, after the
	// batches below it returned from Commit, so a reader that Loads it and
	// then reads Pebble sees every event up to it.
	published atomic.Uint64

	mu sync.Mutex
	// done maps the first cursor of each committed range above
	// published+1 to its last cursor. Guarded by mu. Its size is bounded
	// by the number of commits in flight.
	done map[uint64]uint64
	// wake is closed and replaced when published advances, if waitChan
	// handed it out since it was made (waited): most advances have no
	// waiter, and a channel per group would be most of the feed's
	// garbage. Guarded by mu.
	wake   chan struct{}
	waited bool
	// stuckAt is the first cursor of the first failed batch, 0 if none:
	// published never reaches it in this process. Guarded by mu.
	stuckAt uint64
	// parked counts ranges that finished before a lower range and waited
	// in done: how often commits complete out of cursor order.
	parked atomic.Uint64
	// deletedThrough is the sweep's deletion mark (W10): every event at or
	// below it is deleted, or about to be. Written by Sweep alone (under
	// sweepMu) before the batch that deletes the events commits, so a
	// reader that found them missing and then loads it sees them covered.
	deletedThrough atomic.Uint64
}

func (f *eventFeed) init() {
	f.done = make(map[uint64]uint64)
	f.wake = make(chan struct{})
}

// start sets both counters to the last cursor found on disk (W5), and the
// deletion mark to the one stored (W10).
func (f *eventFeed) start(last, deleted uint64) {
	f.allocated.Store(last)
	f.published.Store(last)
	f.deletedThrough.Store(deleted)
}

// restart sets the counters as start does, for a store whose records were
// replaced (InstallSnapshot, which holds every operation off), and wakes
// the waiters.
func (f *eventFeed) restart(last, deleted uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.done)
	f.start(last, deleted)
	if f.waited {
		close(f.wake)
		f.wake, f.waited = make(chan struct{}), false
	}
}

// allocate takes n consecutive cursors.
func (f *eventFeed) allocate(n int) (first, last uint64) {
	last = f.allocated.Add(uint64(n))
	return last - uint64(n) + 1, last
}

// markDone records that the batch holding [first, last] committed, and
// advances the watermark over every contiguous committed range.
func (f *eventFeed) markDone(first, last uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.published.Load()
	if invariantsEnabled {
		if first <= p || last < first {
			panic(fmt.Sprintf("BUG: wal: event range [%d, %d] done at or below the watermark %d", first, last, p))
		}
		if _, dup := f.done[first]; dup {
			panic(fmt.Sprintf("BUG: wal: event range starting at %d done twice", first))
		}
	}
	if first != p+1 {
		f.done[first] = last
		f.parked.Add(1)
		return
	}
	p = last
	for {
		l, ok := f.done[p+1]
		if !ok {
			break
		}
		delete(f.done, p+1)
		p = l
	}
	f.published.Store(p)
	if f.waited {
		close(f.wake)
		f.wake, f.waited = make(chan struct{}), false
	}
}

// markFailed records a batch whose commit failed. Its cursors are never
// marked done, so the watermark stops below them for good (W4).
func (f *eventFeed) markFailed(first uint64) {
	f.mu.Lock()
	if f.stuckAt == 0 || first < f.stuckAt {
		f.stuckAt = first
	}
	f.mu.Unlock()
}

// waitChan returns the watermark and a channel closed when it next advances.
func (f *eventFeed) waitChan() (uint64, <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.waited = true
	return f.published.Load(), f.wake
}

// EventsDeletedThrough returns the sweep's deletion mark: every event with
// a cursor at or below it is gone (W10). A reader whose cursor is below
// the mark has missed events. Load it after ReadEvents: a read that found
// events missing because a sweep deleted them is followed by a mark that
// covers them. 0 until the first sweep that deletes events.
func (db *DB) EventsDeletedThrough() uint64 { return db.feed.deletedThrough.Load() }

// PublishedCursor returns the watermark: readers can read every event up
// to it, and no event at or below it will appear later (W4).
func (db *DB) PublishedCursor() uint64 { return db.feed.published.Load() }

// WaitEvents blocks until the watermark passes after, ctx is done or the
// DB closes, and returns the watermark. Long-pollers call it, then
// ReadEvents.
func (db *DB) WaitEvents(ctx context.Context, after uint64) (uint64, error) {
	for {
		p, wake := db.feed.waitChan()
		if p > after {
			return p, nil
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return p, ctx.Err()
		case <-db.closeCh:
			return p, allocator.ErrJournalClosed
		}
	}
}

// Wait returns when an event with cursor > after is readable, or with the
// error of ctx or of a closed DB. It is WaitEvents for callers that need
// only the wake-up (the edge's long-poll).
func (db *DB) Wait(ctx context.Context, after uint64) error {
	_, err := db.WaitEvents(ctx, after)
	return err
}

// ReadEvents returns up to limit events with cursor > after, in cursor
// order, never beyond the watermark. Cursors may have gaps (events swept
// by retention, batches that failed before a restart); an empty result
// means nothing is published after the cursor yet. After a read whose
// after is below EventsDeletedThrough, loaded after it, the events
// between were deleted (W10). Events of one change
// may share one *BookingRecord: callers must not modify it.
func (db *DB) ReadEvents(after uint64, limit int) ([]allocator.Event, error) {
	if limit < 1 || limit > EventsPerReadMax {
		return nil, fmt.Errorf("%w: %d, must be in 1..%d", ErrEventLimit, limit, EventsPerReadMax)
	}
	db.closeMu.RLock()
	defer db.closeMu.RUnlock()
	if db.closed {
		return nil, allocator.ErrJournalClosed
	}
	published := db.feed.published.Load()
	if after >= published {
		return nil, nil
	}
	it, err := db.pdb.NewIter(&pebble.IterOptions{
		LowerBound: eventKey(nil, after+1),
		UpperBound: eventKey(nil, published+1),
	})
	if err != nil {
		return nil, fmt.Errorf("wal: cannot read events: %w", err)
	}
	var out []allocator.Event
	for ok := it.First(); ok && len(out) < limit; ok = it.Next() {
		e, back, err := decodeEventAt(it.Key(), it.Value(), nil)
		if err == nil && back > 0 {
			e.Booking, err = db.bookingBack(out, it.Key(), e.Cursor, back)
		}
		if err != nil {
			_ = it.Close()
			return nil, err
		}
		out = append(out, e)
	}
	if err := it.Close(); err != nil {
		return nil, fmt.Errorf("wal: cannot read events: %w", err)
	}
	return out, nil
}

// decodeEventAt decodes the event stored under key k. back > 0: its
// booking is the one of the event back cursors before it (bookingBack).
func decodeEventAt(k, v []byte, in interner) (allocator.Event, uint64, error) {
	c, ok := parseEventKey(k)
	if !ok {
		return allocator.Event{}, 0, fmt.Errorf("%w: key %s is not an event key", ErrCorrupt, KeyString(k))
	}
	e, back, err := decodeEventValue(v, in)
	if err == nil && back >= c {
		err = fmt.Errorf("%w: booking %d events back", errFieldRange, back)
	}
	if err != nil {
		return allocator.Event{}, 0, fmt.Errorf("%w: key %s: %w", ErrCorrupt, KeyString(k), err)
	}
	e.Cursor = c
	return e, back, nil
}

// bookingBack returns the booking of the event at cursor (under key k)
// that shares the booking embedded back cursors before it, by its change's
// earlier event: from read, the events read so far in cursor order, or
// else from the store. The sweep deletes the two together (sweepEvents),
// so a missing or booking-less event there is corruption.
func (db *DB) bookingBack(read []allocator.Event, k []byte, cursor, back uint64) (*allocator.BookingRecord, error) {
	want := cursor - back
	for i := len(read) - 1; i >= 0 && read[i].Cursor >= want; i-- {
		if read[i].Cursor == want {
			if read[i].Booking == nil {
				break
			}
			return read[i].Booking, nil
		}
	}
	wk := eventKey(nil, want)
	v, closer, err := db.pdb.Get(wk)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, fmt.Errorf("%w: key %s: its booking is in %s, which is missing", ErrCorrupt, KeyString(k), KeyString(wk))
	}
	if err != nil {
		return nil, fmt.Errorf("wal: cannot read %s: %w", KeyString(wk), err)
	}
	defer closer.Close()
	e, wback, err := decodeEventAt(wk, v, nil)
	if err != nil {
		return nil, err
	}
	if wback != 0 || e.Booking == nil {
		return nil, fmt.Errorf("%w: key %s: its booking is in %s, which embeds none", ErrCorrupt, KeyString(k), KeyString(wk))
	}
	return e.Booking, nil
}
