package wal

import (
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"slotd/allocator"
)

// LookupIdempotency returns the stored first response for key. A record
// past its TTL but not yet swept is still returned: the caller compares
// AtUnixNano with its own clock if it must.
func (db *DB) LookupIdempotency(key string) (*allocator.IdempotencyRecord, bool, error) {
	db.closeMu.RLock()
	defer db.closeMu.RUnlock()
	if db.closed {
		return nil, false, allocator.ErrJournalClosed
	}
	k := idempotencyKey(nil, key)
	v, closer, err := db.pdb.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("wal: cannot read %s: %w", KeyString(k), err)
	}
	defer closer.Close()
	r, err := decodeIdempotency(v, key)
	if err != nil {
		return nil, false, fmt.Errorf("%w: key %s: %w", ErrCorrupt, KeyString(k), err)
	}
	return r, true, nil
}

// PutIdempotency stores the first response of a request that changed no
// state (a refusal), synced like any commit. Responses that come with a
// state change travel in Change.Idempotency instead.
func (db *DB) PutIdempotency(r *allocator.IdempotencyRecord) error {
	if r == nil {
		return fmt.Errorf("%w: nil idempotency record", ErrInvalidRecord)
	}
	return db.Commit(&allocator.Change{Idempotency: r})
}
