package wal

// Moving an office between the groups of a cluster (package replica).
// Three entries, each applied by every replica of its group in log order:
//
//   - a freeze in the source group (ApplyMoveFreeze) marks the office as
//     moving and names the destination for the office and for each of its
//     bookings' ids; from then no engine of the group loads the office
//     (Recover skips it) and its records do not change;
//   - an import in the destination group (ApplyMoveImport) writes the
//     frozen records, read from a replica of the source that applied the
//     freeze (ExportOffice): the office's config, bookings, number marks,
//     watches, and the idempotency records of its changes with their
//     time and office index keys; an office too large for one Raft
//     entry is imported in parts (ApplyMoveImportPart), kept apart until
//     the last;
//   - a move-out in the source group (ApplyMoveOut) deletes the office's
//     records there and keeps the marks, now saying "moved".
//
// The marks are the store's own records (prefix 'g'), so every replica
// holds them alike and StateDigest covers them:
//
//	g 'o' office  → state (1 moving, 2 moved), destination group
//	g 'b' id      → destination group and office, for each booking of
//	                the office
//	g 'p' office string, parts, part (4 bytes BE each)
//	              → a part of an import in parts, kept until the last
//
//	O5. An office's records in a store change only through changes
//	     while the store holds no mark of the office as moving: a freeze
//	     is applied with a new epoch (package replica P1), so no change
//	     of an engine built before it is applied after it, and an engine
//	     built after it never loads the office (Recover skips a moving
//	     office, its bookings, number marks and watches).
//	O6. An import writes only where the store holds no record of the
//	     office: a second import of the same office (a retried move)
//	     never overwrites what the destination wrote since the first.
//	O7. A move-out deletes an office's records only while the office is
//	     marked moving, and keeps the marks of its bookings' ids.
//	O8. An import in parts writes the office's records only when its
//	     last part is applied with every other part kept, all in one
//	     batch with the new epoch; until then the parts lie under keys
//	     that neither Recover nor HasOffice reads, so no engine ever
//	     learns part of an office.
//
// An idempotency record belongs to an office when the change it travelled
// in was about that office (changeOffice: a booking's, the office
// record's, a watch's office), or, for a response stored alone (a
// refusal, DB.PutIdempotency), when the record names it (Office, which
// the edge reads from the request), decided when the change is staged,
// so the same on every replica: its time index key holds the office, and
// an office index key ('j', office, time, key) lists it. A response
// stored alone that names no office (a refusal about a booking by its
// id) and one of a region watch belong to no office and stay in the
// group that answered it, as do the records of stores written before
// the office index existed. An import does not
// overwrite a record the destination holds under the same key (the portal
// used the key there too, and may have been answered from it); a move-out
// deletes a record only if it is still the one its index entry was
// written for.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"slotd/allocator"
)

const prefixMove = 'g'

// importKeyPrefixes are the records an import may write: an office's
// (officeKeysLocked).
var importKeyPrefixes = [...]byte{prefixOffice, prefixBooking, prefixSeqMark, prefixWatch, prefixIdempotency, prefixIdemByTime, prefixIdemOffice}

// Move states of an office in a store (OfficeMove).
const (
	MoveNone   byte = 0
	MoveMoving byte = 1
	MoveMoved  byte = 2
)

// Answers of ApplyMoveFreeze.
const (
	FreezeDone    byte = 1 // frozen now, or already frozen for this destination
	FreezeMoved   byte = 2 // already moved out to this destination
	FreezeOther   byte = 3 // moving or moved to another group
	FreezeMissing byte = 4 // the store holds no such office
)

func moveOfficeKey(office string) []byte {
	return append([]byte{prefixMove, 'o'}, office...)
}

func moveBookingKey(id allocator.ID) []byte {
	return append([]byte{prefixMove, 'b'}, id[:]...)
}

// OfficeMove returns the office's move state in the store and the group
// it names.
func (db *DB) OfficeMove(office string) (state byte, to uint64, err error) {
	v, found, err := getDecoded(db, moveOfficeKey(office), func(v []byte) ([]byte, error) {
		if len(v) != 2 {
			return nil, fmt.Errorf("%w: move mark of %d bytes", ErrCorrupt, len(v))
		}
		return bytes.Clone(v), nil
	})
	if err != nil || !found {
		return MoveNone, 0, err
	}
	return v[0], uint64(v[1]), nil
}

// BookingMovedTo returns the group booking id's office moved (or is
// moving) to from this store's group, and the office (whose OfficeMove
// tells which); 0 if none. A store that never held a mark answers
// without a read: every request about a booking asks.
func (db *DB) BookingMovedTo(id allocator.ID) (to uint64, office string, err error) {
	if db.moveMarks.Load() == voidsUnknown {
		db.closeMu.RLock()
		state := voidsNone
		lo := []byte{prefixMove, 'b'}
		err := db.scanRange(lo, prefixEnd(lo), func(_, _ []byte) error {
			state = voidsSome
			return errRecoveryStopped
		})
		db.closeMu.RUnlock()
		if err != nil && !errors.Is(err, errRecoveryStopped) {
			return 0, "", err
		}
		db.moveMarks.CompareAndSwap(voidsUnknown, state)
	}
	if db.moveMarks.Load() == voidsNone {
		return 0, "", nil
	}
	v, found, err := getDecoded(db, moveBookingKey(id), func(v []byte) ([]byte, error) {
		if len(v) < 2 {
			return nil, fmt.Errorf("%w: booking move mark of %d bytes", ErrCorrupt, len(v))
		}
		return bytes.Clone(v), nil
	})
	if err != nil || !found {
		return 0, "", err
	}
	return uint64(v[0]), string(v[1:]), nil
}

// movingOfficesLocked returns the offices the store marks as moving.
// Caller holds closeMu.
func (db *DB) movingOfficesLocked() (map[string]bool, error) {
	moving := map[string]bool{}
	lo := []byte{prefixMove, 'o'}
	err := db.scanRange(lo, prefixEnd(lo), func(k, v []byte) error {
		if len(v) == 2 && v[0] == MoveMoving {
			moving[string(k[2:])] = true
		}
		return nil
	})
	return moving, err
}

// officeKeysLocked calls fn for the key of every record of office: its
// config, bookings, number marks, watches and idempotency records (with
// their time and office index keys). Caller holds closeMu.
func (db *DB) officeKeysLocked(office string, fn func(k, v []byte) error) error {
	if err := db.officeRecordsLocked(office, fn); err != nil {
		return err
	}
	return db.officeIdempotencyLocked(office, fn)
}

// officeIdempotencyLocked calls fn for the idempotency records of office,
// as its office index lists them (stage): for each, the record itself if
// it is still the one the index entry was written for (a later request
// under the same key, past the first's retention, may have replaced it),
// its time index key and the index key. Caller holds closeMu.
func (db *DB) officeIdempotencyLocked(office string, fn func(k, v []byte) error) error {
	lo := idemOfficePrefix(nil, office)
	var ik, tk []byte
	return db.scanRange(lo, prefixEnd(lo), func(k, _ []byte) error {
		_, at, key, ok := parseIdemOfficeKey(k)
		if !ok {
			return fmt.Errorf("%w: key %s is not an idempotency office key", ErrCorrupt, KeyString(k))
		}
		ik = idempotencyKey(ik[:0], string(key))
		v, closer, err := db.pdb.Get(ik)
		switch {
		case errors.Is(err, pebble.ErrNotFound):
		case err != nil:
			return fmt.Errorf("wal: cannot read %s: %w", KeyString(ik), err)
		default:
			r, derr := decodeIdempotency(v, string(key))
			if derr == nil && r.AtUnixNano == at {
				err = fn(ik, v)
			}
			_ = closer.Close()
			if derr != nil {
				return fmt.Errorf("%w: key %s: %w", ErrCorrupt, KeyString(ik), derr)
			}
			if err != nil {
				return err
			}
		}
		tk = idemByTimeKey(tk[:0], at, string(key))
		if err := fn(tk, []byte(office)); err != nil {
			return err
		}
		return fn(k, nil)
	})
}

// officeRecordsLocked calls fn for the key of every record of office but
// its idempotency records. Caller holds closeMu.
func (db *DB) officeRecordsLocked(office string, fn func(k, v []byte) error) error {
	if v, closer, err := db.pdb.Get(officeKey(nil, office)); err == nil {
		err = fn(officeKey(nil, office), v)
		_ = closer.Close()
		if err != nil {
			return err
		}
	} else if err != pebble.ErrNotFound {
		return err
	}
	in := make(interner)
	err := db.scan(prefixBooking, func(k, v []byte) error {
		rec, err := decodeBookingAt(k, v, in)
		if err != nil {
			return err
		}
		if rec.Office == office {
			return fn(k, v)
		}
		return nil
	})
	if err != nil {
		return err
	}
	lo := append(append([]byte{prefixSeqMark}, office...), 0)
	if err := db.scanRange(lo, prefixEnd(lo), fn); err != nil {
		return err
	}
	return db.scan(prefixWatch, func(k, v []byte) error {
		w, err := decodeWatch(k, v, in)
		if err != nil {
			return err
		}
		if w.Office == office {
			return fn(k, v)
		}
		return nil
	})
}

// scanRange calls fn for every key in [lo, hi). Caller holds closeMu.
func (db *DB) scanRange(lo, hi []byte, fn func(k, v []byte) error) error {
	it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return fmt.Errorf("wal: cannot read the store: %w", err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		if err := fn(it.Key(), it.Value()); err != nil {
			_ = it.Close()
			return err
		}
	}
	return it.Close()
}

// applyEntry applies the entry at index: under closeMu, on a writable
// store, fill puts the entry's records into a batch, which is committed
// with the applied index (W11), or dropped if the store applied index
// already.
func (db *DB) applyEntry(index uint64, fill func(b *pebble.Batch) error) error {
	db.closeMu.RLock()
	defer db.closeMu.RUnlock()
	if err := db.writableLocked(); err != nil {
		return err
	}
	b := db.pdb.NewBatch()
	defer b.Close()
	if err := fill(b); err != nil {
		return err
	}
	if index <= db.applied.Load() {
		return nil
	}
	return db.applyBatchLocked(b, index)
}

// ApplyMoveFreeze applies the freeze of office for a move to group to as
// the entry at index and answers FreezeDone when the office is frozen for
// to (now or before); then the entry is the store's epoch (W11, O5). Any
// other answer applies nothing but the index.
func (db *DB) ApplyMoveFreeze(index uint64, office string, to uint64) (answer byte, err error) {
	// Read before the lock, as ApplyVoid does: only the apply of the
	// group's entries writes the store.
	state, dest, err := db.OfficeMove(office)
	if err != nil {
		return 0, err
	}
	has, err := db.HasOffice(office)
	if err != nil {
		return 0, err
	}
	err = db.applyEntry(index, func(b *pebble.Batch) error {
		switch {
		case state != MoveNone && dest != to:
			answer = FreezeOther
		case state == MoveMoved:
			answer = FreezeMoved
		case state == MoveMoving:
			// Frozen before (a move run again): a new epoch all the same,
			// as the caller takes every FreezeDone for one.
			answer = FreezeDone
			var v [8]byte
			binary.BigEndian.PutUint64(v[:], index)
			set(b, metaKey(metaEpoch), v[:])
		default:
			if !has {
				answer = FreezeMissing
				break
			}
			answer = FreezeDone
			set(b, moveOfficeKey(office), []byte{MoveMoving, byte(to)})
			in := make(interner)
			err = db.scan(prefixBooking, func(k, v []byte) error {
				rec, err := decodeBookingAt(k, v, in)
				if err != nil {
					return err
				}
				if rec.Office == office {
					set(b, moveBookingKey(rec.ID), append([]byte{byte(to)}, office...))
					db.moveMarks.Store(voidsSome)
				}
				return nil
			})
			if err != nil {
				return err
			}
			var v [8]byte
			binary.BigEndian.PutUint64(v[:], index)
			set(b, metaKey(metaEpoch), v[:])
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return answer, nil
}

// ExportOptions tune ExportOffice.
type ExportOptions struct {
	// PartBytes, if not 0, splits the export into parts of about this
	// many bytes of records each: a part closes before the record that
	// would take it past PartBytes, and holds at least one record, so
	// a part is at most max(PartBytes, its largest record) plus its
	// framing. 0: one part.
	PartBytes int
	// LeaveIdempotency leaves the office's idempotency records out of
	// the export: only the broken variant of a test sets it, to show
	// that a retry after the move is then served anew.
	LeaveIdempotency bool
}

// ExportOffice returns the records of office, frozen in this store
// (O5), as the staged bytes of one or more parts for ApplyMoveImport
// (one part) or ApplyMoveImportPart (several), and how many bookings
// they hold. The records are frozen (O5) but for the idempotency
// records, which the group's retention sweep still deletes and which
// come last: every export of the office with the same options, from
// any replica at the same index, returns the same parts, and one at a
// later index may differ only from the part that held the first record
// swept on. The import's leader proposes again a part that differs from
// the one kept (replica's importParts).
func (db *DB) ExportOffice(office string, o ExportOptions) (parts [][]byte, bookings int, err error) {
	state, _, err := db.OfficeMove(office)
	if err != nil {
		return nil, 0, err
	}
	if state != MoveMoving {
		return nil, 0, fmt.Errorf("wal: office %q is not frozen for a move here", office)
	}
	db.closeMu.RLock()
	defer db.closeMu.RUnlock()
	if db.closed {
		return nil, 0, allocator.ErrJournalClosed
	}
	b := new(pebble.Batch)
	size := 0
	add := func(k, v []byte) error {
		if o.PartBytes > 0 && size > 0 && size+len(k)+len(v) > o.PartBytes {
			parts = append(parts, stagedRecords(b.Repr()))
			b, size = new(pebble.Batch), 0
		}
		if k[0] == prefixBooking {
			bookings++
		}
		set(b, k, v)
		size += len(k) + len(v)
		return nil
	}
	err = db.officeRecordsLocked(office, add)
	if err == nil && !o.LeaveIdempotency {
		err = db.officeIdempotencyLocked(office, add)
	}
	if err != nil {
		return nil, 0, err
	}
	return append(parts, stagedRecords(b.Repr())), bookings, nil
}

// stagedRecords frames a batch's records as staged bytes with no events.
func stagedRecords(repr []byte) []byte {
	out := make([]byte, 0, 1+2*binary.MaxVarintLen64+len(repr))
	out = append(out, stagedVersion)
	out = binary.AppendUvarint(out, uint64(len(repr)))
	out = append(out, repr...)
	return binary.AppendUvarint(out, 0) // no events
}

// ApplyMoveImport writes office's exported records (one part) as the
// entry at index, which becomes the store's epoch, unless the store
// already holds the office (O6); it reports whether it wrote them. Marks
// an earlier move out of this store left for the office and its
// bookings go.
func (db *DB) ApplyMoveImport(index uint64, office string, data []byte) (imported bool, err error) {
	s, err := decodeStaged(data)
	if err != nil {
		return false, err
	}
	has, err := db.HasOffice(office)
	if err != nil {
		return false, err
	}
	err = db.applyEntry(index, func(b *pebble.Batch) error {
		if !has {
			if err := db.importLocked(b, index, office, [][]byte{s.repr}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	return !has, nil
}

// Answers of ApplyMoveImportPart.
const (
	ImportDone    byte = 1 // the last part came with every other: the office is imported now
	ImportHeld    byte = 2 // the store holds the office: nothing written (O6)
	ImportStaged  byte = 3 // the part is kept until the last comes
	ImportMissing byte = 4 // the last part came, an earlier one is not here: it is kept, nothing imported
)

// ImportPartsMax bounds the parts of one import.
const ImportPartsMax = 1 << 16

// importPartKey keys a part kept until an import's last part:
//
//	g 'p' office string, parts (4 bytes BE), part (4 bytes BE) → staged bytes
//
// Nothing but ApplyMoveImportPart reads these keys: no engine learns of
// an office part by part (O8).
func importPartKey(office string, parts, part int) []byte {
	k := appendString([]byte{prefixMove, 'p'}, office)
	k = binary.BigEndian.AppendUint32(k, uint32(parts))
	return binary.BigEndian.AppendUint32(k, uint32(part))
}

// ApplyMoveImportPart applies part (0-based) of the parts of office's
// export as the entry at index. A part before the last is kept in the
// store, under keys nothing else reads; the last imports them all with
// itself, in one batch, as ApplyMoveImport imports one part, and deletes
// every part of the office kept (any count): the office appears whole or
// not at all (O8). Where the store holds the office, nothing is written
// (O6). A part applied again (a move run again) is kept again, over
// what was kept: the parts a last part imports are those of its count
// as the log last wrote them. Two runs of one move at once, with a sweep
// between their exports, could mix parts of two exports; the records
// that shift between parts are idempotency records only (they come
// last), so at worst such a record is not moved.
func (db *DB) ApplyMoveImportPart(index uint64, office string, part, parts int, data []byte) (answer byte, err error) {
	if parts < 2 || parts > ImportPartsMax || part < 0 || part >= parts {
		return 0, fmt.Errorf("%w: import part %d of %d", ErrCorrupt, part, parts)
	}
	s, err := decodeStaged(data)
	if err != nil {
		return 0, err
	}
	has, err := db.HasOffice(office)
	if err != nil {
		return 0, err
	}
	err = db.applyEntry(index, func(b *pebble.Batch) error {
		switch {
		case has:
			answer = ImportHeld
		case part < parts-1:
			answer = ImportStaged
			set(b, importPartKey(office, parts, part), data)
		default:
			reprs := make([][]byte, 0, parts)
			for i := range parts - 1 {
				v, closer, err := db.pdb.Get(importPartKey(office, parts, i))
				if errors.Is(err, pebble.ErrNotFound) {
					break
				}
				if err != nil {
					return fmt.Errorf("wal: cannot read part %d of the import of %q: %w", i, office, err)
				}
				p, err := decodeStaged(bytes.Clone(v))
				_ = closer.Close()
				if err != nil {
					return fmt.Errorf("%w: part %d of the import of %q: %w", ErrCorrupt, i, office, err)
				}
				reprs = append(reprs, p.repr)
			}
			if len(reprs) < parts-1 {
				answer = ImportMissing
				set(b, importPartKey(office, parts, part), data)
				break
			}
			answer = ImportDone
			if err := db.importLocked(b, index, office, append(reprs, s.repr)); err != nil {
				return err
			}
			lo := appendString([]byte{prefixMove, 'p'}, office)
			if err := b.DeleteRange(lo, prefixEnd(lo), nil); err != nil {
				panic(fmt.Sprintf("BUG: wal: batch delete range: %v", err))
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return answer, nil
}

// ImportPartKept reports whether the store keeps part of the parts of
// office's import with exactly data: the leader of an import run again
// proposes only the parts its replica does not keep yet.
func (db *DB) ImportPartKept(office string, part, parts int, data []byte) (bool, error) {
	v, found, err := getDecoded(db, importPartKey(office, parts, part), func(v []byte) (bool, error) {
		return bytes.Equal(v, data), nil
	})
	return found && v, err
}

// importLocked adds to b the writes of an import of office's records,
// given as the batch reprs of its parts, as the entry at index: the
// records, the deletion of the marks an earlier move out of this store
// left for the office and its bookings, and the new epoch. Caller holds
// closeMu.
func (db *DB) importLocked(b *pebble.Batch, index uint64, office string, reprs [][]byte) error {
	for _, repr := range reprs {
		records := new(pebble.Batch)
		if err := records.SetRepr(bytes.Clone(repr)); err != nil {
			return fmt.Errorf("%w: office import: %w", ErrCorrupt, err)
		}
		r := records.Reader()
		for {
			kind, k, v, ok, err := r.Next()
			if err != nil {
				return fmt.Errorf("%w: office import: %w", ErrCorrupt, err)
			}
			if !ok {
				break
			}
			if kind != pebble.InternalKeyKindSet || len(k) == 0 || bytes.IndexByte(importKeyPrefixes[:], k[0]) < 0 {
				return fmt.Errorf("%w: office import writes %s (kind %d)", ErrCorrupt, KeyString(k), kind)
			}
			if k[0] == prefixIdempotency {
				// A record this store holds under the same key (the
				// portal used the key here too) stays: a retry here has
				// been answered from it. Its time and office index keys
				// come all the same; the sweep deletes a record only with
				// the time key written for it.
				if _, closer, err := db.pdb.Get(k); err == nil {
					_ = closer.Close()
					continue
				} else if !errors.Is(err, pebble.ErrNotFound) {
					return fmt.Errorf("wal: cannot read %s: %w", KeyString(k), err)
				}
			}
			set(b, k, v)
			if _, id, ok := parseBookingKey(k); ok {
				if err := b.Delete(moveBookingKey(id), nil); err != nil {
					return err
				}
			}
		}
	}
	if err := b.Delete(moveOfficeKey(office), nil); err != nil {
		return err
	}
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], index)
	set(b, metaKey(metaEpoch), v[:])
	return nil
}

// ApplyMoveOut deletes the records of office, frozen for a move (O7),
// as the entry at index, and marks it moved; it reports whether it did.
func (db *DB) ApplyMoveOut(index uint64, office string) (done bool, err error) {
	state, to, err := db.OfficeMove(office)
	if err != nil {
		return false, err
	}
	err = db.applyEntry(index, func(b *pebble.Batch) error {
		if state == MoveMoving {
			err := db.officeKeysLocked(office, func(k, _ []byte) error {
				return b.Delete(k, nil)
			})
			if err != nil {
				return err
			}
			set(b, moveOfficeKey(office), []byte{MoveMoved, byte(to)})
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	return state == MoveMoving, nil
}

// OfficeBytes returns the size of office's records in the store, about
// what ExportOffice would return for it.
func (db *DB) OfficeBytes(office string) (int, error) {
	db.closeMu.RLock()
	defer db.closeMu.RUnlock()
	if db.closed {
		return 0, allocator.ErrJournalClosed
	}
	n := 0
	err := db.officeKeysLocked(office, func(k, v []byte) error {
		n += len(k) + len(v) + 8
		return nil
	})
	return n, err
}
