package wal

// Replicated application. In a cluster (package replica) a change is not
// committed by the node that made it but staged — checked and encoded into
// the bytes of a Raft entry — and every replica of the change's group
// applies the committed entry to its own store, in log order. The staged
// bytes are the Pebble batch of the change's records (the same records
// Commit writes) and its event values; ApplyStaged writes them with the
// events keyed by cursors taken in apply order, so every replica that
// applied the same entries holds the same keys and values (StateDigest
// compares them). The applied index and the group's epoch travel in the
// same batch (wal invariant W11).
//
//	W11. A replicated store's meta/applied is the index of the last entry
//	     whose writes it holds, written in the same batch as those writes:
//	     after a crash the store holds exactly the entries through its
//	     applied index, and the entries after it are applied again from
//	     the Raft log. ApplyStaged and ApplyEpoch ignore an index at or
//	     below the applied one, so an entry is applied once across
//	     restarts. The batches are written without an fsync: the Raft
//	     log, synced before an entry commits, is what makes it durable.
//
// A group's retention sweep is an entry of its log too: ApplySweep
// (sweep.go) deletes by the plan the entry carries (W12).

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"slotd/allocator"
)

// Meta keys of a replicated store.
const (
	metaApplied = "applied"
	metaEpoch   = "epoch"
)

// stagedVersion is the first byte of staged bytes. Staged bytes live in
// Raft logs: a new layout needs a new version and a reader of the old.
const stagedVersion byte = 1

// Stage checks and encodes c for replication: the records Commit would
// write and the values of its events, not yet keyed by cursors. A change
// that fails its checks is refused here, before it is proposed, as Commit
// refuses it before it takes a cursor (W3).
func Stage(c *allocator.Change) ([]byte, error) {
	if c.Empty() {
		return nil, fmt.Errorf("%w: empty change", ErrInvalidRecord)
	}
	enc := encoderPool.Get().(*encoder)
	defer enc.release()
	b := new(pebble.Batch)
	if err := enc.stage(b, c); err != nil {
		return nil, err
	}
	repr := b.Repr()
	out := make([]byte, 0, 1+2*binary.MaxVarintLen64+len(repr)+len(enc.events)+len(enc.eventEnds)*binary.MaxVarintLen32)
	out = append(out, stagedVersion)
	out = binary.AppendUvarint(out, uint64(len(repr)))
	out = append(out, repr...)
	out = binary.AppendUvarint(out, uint64(len(enc.eventEnds)))
	start := 0
	for _, end := range enc.eventEnds {
		out = binary.AppendUvarint(out, uint64(end-start))
		out = append(out, enc.events[start:end]...)
		start = end
	}
	return out, nil
}

// staged is decoded staged bytes; its slices point into them.
type staged struct {
	repr   []byte
	events [][]byte
}

// stagedKeyPrefixes are the records a staged change may write.
var stagedKeyPrefixes = [...]byte{prefixBooking, prefixOffice, prefixSeqMark, prefixWatch, prefixIdempotency, prefixIdemByTime, prefixIdemOffice}

func decodeStaged(data []byte) (staged, error) {
	var s staged
	d := decoder{b: data}
	if v := d.byte(); d.err == nil && v != stagedVersion {
		return s, fmt.Errorf("%w: staged change of version %d, this version reads %d", ErrCorrupt, v, stagedVersion)
	}
	s.repr = d.bytes(int(d.uvarintMax(uint64(len(data)), "batch length")))
	n := d.uvarintMax(uint64(len(data)), "event count")
	for range n {
		s.events = append(s.events, d.bytes(int(d.uvarintMax(uint64(len(data)), "event length"))))
	}
	if err := d.end(); err != nil {
		return s, fmt.Errorf("%w: staged change: %w", ErrCorrupt, err)
	}
	return s, nil
}

// ApplyStaged writes the staged change data as the entry at index of the
// store's group, with the applied index (W11), and publishes its events.
// It returns the cursor of the change's first event (0 if it has none).
// An index at or below the applied one is skipped. The caller applies a
// group's entries one at a time, in log order.
func (db *DB) ApplyStaged(index uint64, data []byte) (firstCursor uint64, err error) {
	s, err := decodeStaged(data)
	if err != nil {
		return 0, err
	}
	db.closeMu.RLock()
	defer db.closeMu.RUnlock()
	if err := db.writableLocked(); err != nil {
		return 0, err
	}
	if index <= db.applied.Load() {
		return 0, nil
	}
	records := new(pebble.Batch)
	// SetRepr keeps the slice; the entry's data is shared with the log.
	if err := records.SetRepr(bytes.Clone(s.repr)); err != nil {
		return 0, fmt.Errorf("%w: staged change: %w", ErrCorrupt, err)
	}
	if err := checkStagedKeys(records); err != nil {
		return 0, err
	}
	if err := db.checkVoidedLocked(records); err != nil {
		return 0, err
	}
	b := db.pdb.NewBatch()
	defer b.Close()
	if err := b.Apply(records, nil); err != nil {
		return 0, fmt.Errorf("%w: staged change: %w", ErrCorrupt, err)
	}
	var first, last uint64
	if len(s.events) > 0 {
		first, last = db.feed.allocate(len(s.events))
		var key []byte
		for i, v := range s.events {
			key = eventKey(key[:0], first+uint64(i))
			set(b, key, v)
		}
	}
	setApplied(b, index)
	if err := pebbleCall(func() error { return b.Commit(pebble.NoSync) }); err != nil {
		db.degrade(err)
		if last != 0 {
			db.feed.markFailed(first)
		}
		return 0, fmt.Errorf("%w: apply: %w", ErrDegraded, err)
	}
	db.applied.Store(index)
	if last != 0 {
		db.feed.markDone(first, last)
	}
	db.stats.commits.Add(1)
	db.stats.events.Add(uint64(len(s.events)))
	return first, nil
}

// checkStagedKeys refuses staged records outside the kinds a change
// writes: an entry must never touch the store's meta keys or the log.
func checkStagedKeys(b *pebble.Batch) error {
	r := b.Reader()
	for {
		kind, k, _, ok, err := r.Next()
		if err != nil {
			return fmt.Errorf("%w: staged change: %w", ErrCorrupt, err)
		}
		if !ok {
			return nil
		}
		if kind != pebble.InternalKeyKindSet && kind != pebble.InternalKeyKindDelete || len(k) == 0 || bytes.IndexByte(stagedKeyPrefixes[:], k[0]) < 0 {
			return fmt.Errorf("%w: staged change writes %s (kind %d)", ErrCorrupt, KeyString(k), kind)
		}
	}
}

// ApplyEpoch records that the entry at index starts a new epoch of the
// store's group (package replica) and is applied (W11). An index at or
// below the applied one is skipped.
func (db *DB) ApplyEpoch(index, epoch uint64) error {
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
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], epoch)
	set(b, metaKey(metaEpoch), v[:])
	return db.applyBatchLocked(b, index)
}

func setApplied(b *pebble.Batch, index uint64) {
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], index)
	set(b, metaKey(metaApplied), v[:])
}

// Applied returns the index of the last entry the store holds and the
// epoch it was applied in (W11); zeros for a store that applied none.
func (db *DB) Applied() (index, epoch uint64, err error) {
	if index, err = db.metaUint64(metaApplied); err != nil {
		return 0, 0, err
	}
	if epoch, err = db.metaUint64(metaEpoch); err != nil {
		return 0, 0, err
	}
	return index, epoch, nil
}

// StateDigest returns a SHA-256 of every record the store holds — all
// keys and values but its meta keys — and the applied index they are at,
// read from one Pebble snapshot. Replicas of a group that applied the
// same entries have the same digest.
func (db *DB) StateDigest() (digest [32]byte, applied uint64, err error) {
	db.closeMu.RLock()
	defer db.closeMu.RUnlock()
	if db.closed {
		return digest, 0, allocator.ErrJournalClosed
	}
	snap := db.pdb.NewSnapshot()
	defer snap.Close()
	v, closer, err := snap.Get(metaKey(metaApplied))
	switch {
	case err == nil:
		if len(v) == 8 {
			applied = binary.BigEndian.Uint64(v)
		}
		_ = closer.Close()
	case err != pebble.ErrNotFound:
		return digest, 0, err
	}
	it, err := snap.NewIter(nil)
	if err != nil {
		return digest, 0, err
	}
	h := sha256.New()
	var n [binary.MaxVarintLen64]byte
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		if len(k) > 0 && k[0] == prefixMeta {
			continue
		}
		val, err := it.ValueAndErr()
		if err != nil {
			_ = it.Close()
			return digest, 0, err
		}
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(k)))])
		h.Write(k)
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(val)))])
		h.Write(val)
	}
	if err := it.Close(); err != nil {
		return digest, 0, err
	}
	copy(digest[:], h.Sum(nil))
	return digest, applied, nil
}

// HasOffice reports whether the store holds office id.
func (db *DB) HasOffice(id string) (bool, error) {
	_, found, err := getDecoded(db, officeKey(nil, id), func(v []byte) (struct{}, error) { return struct{}{}, nil })
	return found, err
}
