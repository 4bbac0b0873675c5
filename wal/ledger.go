package wal

// The applicant ledger of a replicated store (package replica, L1–L6). In
// a cluster an applicant's home group keeps a token for each of the
// applicant's active bookings, in whichever group the booking is; the
// group's log writes them, and every replica applies the same entries to
// the same records here, deterministically (W11 as for changes). A
// booking's own group may hold a void mark of a booking id, which refuses
// any later change that writes that booking.
//
// Keys and values (the package doc draws the rest of the layout):
//
//	prefix  rest                                   value
//	'l'     applicant (uvarint length, bytes),     ledger token: version 1
//	        booking id (16 bytes)                  byte, service string,
//	                                               created varint (unix ns)
//	'v'     booking id (16 bytes)                  empty (a void mark)

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"slotd/allocator"
)

const (
	prefixLedger = 'l'
	prefixVoid   = 'v'

	ledgerVersion byte = 1
)

// ErrVoided refuses a staged change that writes a booking whose id is
// void in the store (ApplyVoid): applied as nothing.
var ErrVoided = errors.New("wal: staged change writes a voided booking")

// LedgerToken is one active booking of an applicant in the applicant's
// home group's ledger.
type LedgerToken struct {
	Applicant string
	Booking   allocator.ID
	Service   string
	// CreatedUnixNano is the booking's creation time, which with its id
	// keys the booking in its own group's store (LoadBooking).
	CreatedUnixNano int64
}

// LedgerVerdict is what applying a reservation decided.
type LedgerVerdict uint8

const (
	// LedgerReserved: the token is in the ledger (now, or already).
	LedgerReserved LedgerVerdict = iota
	// LedgerLimit: the applicant holds the limit's count of tokens.
	LedgerLimit
	// LedgerDuplicate: the applicant holds a token of the service.
	LedgerDuplicate
)

func ledgerApplicantPrefix(dst []byte, applicant string) []byte {
	dst = append(dst, prefixLedger)
	dst = binary.AppendUvarint(dst, uint64(len(applicant)))
	return append(dst, applicant...)
}

func ledgerKey(dst []byte, applicant string, id allocator.ID) []byte {
	return append(ledgerApplicantPrefix(dst, applicant), id[:]...)
}

func voidKey(id allocator.ID) []byte { return append([]byte{prefixVoid}, id[:]...) }

func appendLedgerValue(dst []byte, t *LedgerToken) []byte {
	dst = append(dst, ledgerVersion)
	dst = appendString(dst, t.Service)
	return binary.AppendVarint(dst, t.CreatedUnixNano)
}

// decodeLedger decodes the token under key k (prefix 'l') and value v.
func decodeLedger(k, v []byte) (LedgerToken, error) {
	var t LedgerToken
	kd := decoder{b: k[1:]}
	t.Applicant = string(kd.bytes(int(kd.uvarintMax(uint64(len(k)), "applicant length"))))
	copy(t.Booking[:], kd.bytes(len(t.Booking)))
	if err := kd.end(); err != nil {
		return t, fmt.Errorf("%w: ledger key: %w", ErrCorrupt, err)
	}
	d := decoder{b: v}
	if ver := d.byte(); d.err == nil && ver != ledgerVersion {
		return t, fmt.Errorf("%w: ledger value of version %d", ErrCorrupt, ver)
	}
	t.Service = string(d.text("service"))
	t.CreatedUnixNano = d.varint()
	if err := d.end(); err != nil {
		return t, fmt.Errorf("%w: ledger value: %w", ErrCorrupt, err)
	}
	return t, nil
}

// applyBatch commits b with the applied index (W11). Caller holds
// closeMu for reading and checked the index.
func (db *DB) applyBatchLocked(b *pebble.Batch, index uint64) error {
	setApplied(b, index)
	if err := pebbleCall(func() error { return b.Commit(pebble.NoSync) }); err != nil {
		db.degrade(err)
		return fmt.Errorf("%w: apply: %w", ErrDegraded, err)
	}
	db.applied.Store(index)
	return nil
}

// tokensLocked returns applicant's tokens. Caller holds closeMu.
func (db *DB) tokensLocked(applicant string) ([]LedgerToken, error) {
	lo := ledgerApplicantPrefix(nil, applicant)
	it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: prefixEnd(lo)})
	if err != nil {
		return nil, err
	}
	var out []LedgerToken
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		if len(k) != len(lo)+16 { // an applicant whose id extends this one's
			continue
		}
		v, err := it.ValueAndErr()
		if err != nil {
			_ = it.Close()
			return nil, err
		}
		t, err := decodeLedger(k, v)
		if err != nil {
			_ = it.Close()
			return nil, err
		}
		out = append(out, t)
	}
	return out, it.Close()
}

// ApplyLedgerReserve applies the reservation of t, limited to limit
// tokens of its applicant, as the entry at index (W11), and returns the
// verdict; the same on every replica, since it reads only the store. A
// token already held (a retried reservation) is reserved again. An index
// at or below the applied one is skipped (LedgerReserved).
func (db *DB) ApplyLedgerReserve(index uint64, t LedgerToken, limit int) (LedgerVerdict, error) {
	if err := checkText("service", t.Service); err != nil {
		return 0, err
	}
	db.closeMu.RLock()
	defer db.closeMu.RUnlock()
	if err := db.writableLocked(); err != nil {
		return 0, err
	}
	if index <= db.applied.Load() {
		return LedgerReserved, nil
	}
	held, err := db.tokensLocked(t.Applicant)
	if err != nil {
		return 0, err
	}
	verdict := LedgerReserved
	again := false
	for _, h := range held {
		if h.Booking == t.Booking {
			again = true
		}
	}
	if !again {
		for _, h := range held {
			if h.Service == t.Service {
				verdict = LedgerDuplicate
			}
		}
		if verdict == LedgerReserved && len(held) >= limit {
			verdict = LedgerLimit
		}
	}
	b := db.pdb.NewBatch()
	defer b.Close()
	if verdict == LedgerReserved && !again {
		set(b, ledgerKey(nil, t.Applicant, t.Booking), appendLedgerValue(nil, &t))
	}
	return verdict, db.applyBatchLocked(b, index)
}

// ApplyLedgerRelease removes the token of booking id of applicant, if
// any, as the entry at index (W11).
func (db *DB) ApplyLedgerRelease(index uint64, applicant string, id allocator.ID) error {
	db.closeMu.RLock()
	defer db.closeMu.RUnlock()
	if err := db.writableLocked(); err != nil {
		return err
	}
	if index <= db.applied.Load() {
		return nil
	}
	b := db.pdb.NewBatch()
	defer b.Close()
	if err := b.Delete(ledgerKey(nil, applicant, id), nil); err != nil {
		return err
	}
	return db.applyBatchLocked(b, index)
}

// ApplyVoid voids booking id, created at createdUnixNano, as the entry at
// index (W11), unless the store holds the booking: it reports whether it
// does. A voided id is never written afterwards (ApplyStaged refuses the
// change with ErrVoided).
func (db *DB) ApplyVoid(index uint64, id allocator.ID, createdUnixNano int64) (exists bool, err error) {
	_, exists, err = db.LoadBooking(id, createdUnixNano)
	if err != nil {
		return false, err
	}
	db.closeMu.RLock()
	defer db.closeMu.RUnlock()
	if err := db.writableLocked(); err != nil {
		return false, err
	}
	if index <= db.applied.Load() {
		return exists, nil
	}
	b := db.pdb.NewBatch()
	defer b.Close()
	if !exists {
		set(b, voidKey(id), nil)
		db.voids.Store(voidsSome)
	}
	return exists, db.applyBatchLocked(b, index)
}

// Voided reports whether booking id is void in the store.
func (db *DB) Voided(id allocator.ID) (bool, error) {
	_, found, err := getDecoded(db, voidKey(id), func([]byte) (struct{}, error) { return struct{}{}, nil })
	return found, err
}

// Whether the store holds any void mark, so that ApplyStaged looks for
// them only in a store that has some: voidsUnknown until first asked.
const (
	voidsUnknown int32 = iota
	voidsNone
	voidsSome
)

// checkVoidedLocked refuses records that write a booking void in the
// store. Caller holds closeMu and applies the group's entries (one at a
// time, so voids does not change under it).
func (db *DB) checkVoidedLocked(records *pebble.Batch) error {
	if db.voids.Load() == voidsUnknown {
		lo := []byte{prefixVoid}
		it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: prefixEnd(lo)})
		if err != nil {
			return err
		}
		state := voidsNone
		if it.First() {
			state = voidsSome
		}
		if err := it.Close(); err != nil {
			return err
		}
		db.voids.Store(state)
	}
	if db.voids.Load() == voidsNone {
		return nil
	}
	r := records.Reader()
	for {
		kind, k, _, ok, err := r.Next()
		if err != nil {
			return fmt.Errorf("%w: staged change: %w", ErrCorrupt, err)
		}
		if !ok {
			return nil
		}
		if kind != pebble.InternalKeyKindSet {
			continue
		}
		if _, id, ok := parseBookingKey(k); ok {
			_, closer, err := db.pdb.Get(voidKey(id))
			if err == nil {
				_ = closer.Close()
				return fmt.Errorf("%w: %s", ErrVoided, id)
			}
			if !errors.Is(err, pebble.ErrNotFound) {
				return err
			}
		}
	}
}

// LedgerTokens returns applicant's tokens, in booking id order.
func (db *DB) LedgerTokens(applicant string) ([]LedgerToken, error) {
	db.closeMu.RLock()
	defer db.closeMu.RUnlock()
	if err := db.usableLocked(); err != nil {
		return nil, err
	}
	return db.tokensLocked(applicant)
}

// EachLedgerToken calls fn for every token of the store, in key order,
// from one snapshot, until fn returns false.
func (db *DB) EachLedgerToken(fn func(t LedgerToken) bool) error {
	db.closeMu.RLock()
	defer db.closeMu.RUnlock()
	if err := db.usableLocked(); err != nil {
		return err
	}
	lo := []byte{prefixLedger}
	it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: prefixEnd(lo)})
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			_ = it.Close()
			return err
		}
		t, err := decodeLedger(bytes.Clone(it.Key()), v)
		if err != nil {
			_ = it.Close()
			return err
		}
		if !fn(t) {
			break
		}
	}
	return it.Close()
}
