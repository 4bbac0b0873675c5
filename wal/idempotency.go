package wal

import (
	"fmt"

	"slotd/allocator"
)

// LookupIdempotency returns the stored first response for key. A record
// past its TTL but not yet swept is still returned: the caller compares
// AtUnixNano with its own clock if it must.
func (db *DB) LookupIdempotency(key string) (*allocator.IdempotencyRecord, bool, error) {
	return getDecoded(db, idempotencyKey(nil, key), func(v []byte) (*allocator.IdempotencyRecord, error) {
		return decodeIdempotency(v, key)
	})
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
