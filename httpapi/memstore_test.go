package httpapi

import (
	"context"
	"sync"

	"slotd/allocator"
)

// memStore is the non-durable IdempotencyStore and EventFeed of the tests.
// It is fed by allocator.MemJournal's Hook, so it sees exactly the
// committed changes. MemJournal numbers events under its lock but runs the
// hook outside it, so hooks can arrive out of cursor order; the store
// publishes events only up to the highest contiguous cursor (the
// watermark), like the durable feed. Safe for concurrent use.
type memStore struct {
	mu        sync.Mutex
	idem      map[string]*allocator.IdempotencyRecord
	events    []allocator.Event          // published, in cursor order
	pending   map[uint64]allocator.Event // committed above the watermark
	published uint64                     // watermark
	wake      chan struct{}              // closed when published advances
	puts      int                        // PutIdempotency calls
}

func newMemStore() *memStore {
	return &memStore{idem: map[string]*allocator.IdempotencyRecord{}, pending: map[uint64]allocator.Event{}, wake: make(chan struct{})}
}

// apply records a committed change (MemJournal.Hook).
func (m *memStore) apply(c *allocator.Change) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c.Idempotency != nil {
		m.idem[c.Idempotency.Key] = c.Idempotency
	}
	for _, e := range c.Events {
		m.pending[e.Cursor] = e
	}
	advanced := false
	for {
		e, ok := m.pending[m.published+1]
		if !ok {
			break
		}
		delete(m.pending, e.Cursor)
		m.events = append(m.events, e)
		m.published++
		advanced = true
	}
	if advanced {
		close(m.wake)
		m.wake = make(chan struct{})
	}
}

func (m *memStore) LookupIdempotency(key string) (*allocator.IdempotencyRecord, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.idem[key]
	return r, ok, nil
}

func (m *memStore) PutIdempotency(rec *allocator.IdempotencyRecord) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.idem[rec.Key] = rec
	m.puts++
	return nil
}

func (m *memStore) ReadEvents(after uint64, limit int) ([]allocator.Event, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if after >= uint64(len(m.events)) {
		return nil, nil
	}
	end := min(uint64(len(m.events)), after+uint64(limit))
	return append([]allocator.Event(nil), m.events[after:end]...), nil
}

// EventsDeletedThrough is 0: the in-memory feed keeps every event.
func (m *memStore) EventsDeletedThrough() uint64 { return 0 }

func (m *memStore) Wait(ctx context.Context, after uint64) error {
	for {
		m.mu.Lock()
		p, wake := m.published, m.wake
		m.mu.Unlock()
		if p > after {
			return nil
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// putCount returns the number of PutIdempotency calls.
func (m *memStore) putCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.puts
}
