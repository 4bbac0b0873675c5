package wal

// The store's format stamp and the upgrade of older formats (wal
// invariant W8). The layout of every format is drawn in the package doc.

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// formatUpgrading stamps a store while Open upgrades it to formatVersion:
// every version refuses a stamp it does not know, so a store caught half
// upgraded (some bookings under format 2's keys, some under format 3's)
// is refused by an older slotd instead of being read wrong, and finished
// by this one. formatUpgrading3 to formatUpgrading7 are the stamps of the
// same upgrade by versions of formats 3 to 7, which this one finishes too.
const (
	formatUpgrading  byte = 0x80 | formatVersion
	formatUpgrading3 byte = 0x80 | 3
	formatUpgrading4 byte = 0x80 | 4
	formatUpgrading5 byte = 0x80 | 5
	formatUpgrading6 byte = 0x80 | 6
	formatUpgrading7 byte = 0x80 | 7
)

// Bounds of one batch of the upgrade's moves: bookings and bytes.
const (
	upgradeBatchBookingsMax = 4096
	upgradeBatchBytesMax    = 4 << 20
)

// checkFormat refuses data of another format and stamps a new store. A
// store of format 1 or 2, or one whose upgrade was cut short, is upgraded
// before anything else is written to it (upgrade, W8); one of format 3 to
// 7 is stamped with the current format.
func (db *DB) checkFormat() error {
	v, closer, err := db.pdb.Get(metaKey(metaFormat))
	if err == nil {
		stamp := append([]byte(nil), v...)
		_ = closer.Close()
		switch {
		case len(stamp) == 1 && stamp[0] == formatVersion:
			return nil
		case len(stamp) == 1 && stamp[0] >= 3 && stamp[0] <= 7:
			// Format 4 added the event value of version 2, format 5 the
			// office value of version 2, format 6 that of version 3,
			// format 7 that of version 4 and format 8 that of version 5
			// and the statuses awaiting_approval and rejected, which only
			// this version reads; the records of formats 3 to 7 are read
			// as they are.
			b := db.pdb.NewBatch()
			defer b.Close()
			return db.stamp(b, formatVersion)
		case len(stamp) == 1 && (stamp[0] == 1 || stamp[0] == 2 || stamp[0] == formatUpgrading3 || stamp[0] == formatUpgrading4 || stamp[0] == formatUpgrading5 || stamp[0] == formatUpgrading6 || stamp[0] == formatUpgrading7 || stamp[0] == formatUpgrading):
			if err := db.upgrade(); err != nil {
				return fmt.Errorf("wal: cannot upgrade the store from %s %x: %w", KeyString(metaKey(metaFormat)), stamp, err)
			}
			return nil
		}
		return fmt.Errorf("%w: %s is %x, this version reads 1 to %d", ErrFormat, KeyString(metaKey(metaFormat)), stamp, formatVersion)
	}
	if !errors.Is(err, pebble.ErrNotFound) {
		return fmt.Errorf("wal: cannot read the format version: %w", err)
	}
	// No stamp: the store must be empty, else it is not ours.
	it, err := db.pdb.NewIter(nil)
	if err != nil {
		return fmt.Errorf("wal: cannot read the store: %w", err)
	}
	nonEmpty := it.First()
	if err := it.Close(); err != nil {
		return fmt.Errorf("wal: cannot read the store: %w", err)
	}
	if nonEmpty {
		return fmt.Errorf("%w: the store holds data but no %s key", ErrFormat, KeyString(metaKey(metaFormat)))
	}
	b := db.pdb.NewBatch()
	defer b.Close()
	return db.stamp(b, formatVersion)
}

// upgrade brings a store of format 1 or 2, or one stamped formatUpgrading
// or formatUpgrading3 to formatUpgrading7, to the current format (W8):
//  1. stamp formatUpgrading, synced, and delete format 1's applicant index
//     (prefix 'a'), which later formats neither write nor read;
//  2. move every booking from its format-2 key (the id) to its format-3
//     (and 4) key (creation time, then id), the old key's delete and the new
//     key's set in one batch, the value kept as it is (versions 1 and 2
//     are both read); batches of at most upgradeBatchBookingsMax bookings
//     and upgradeBatchBytesMax bytes, not synced;
//  3. stamp formatVersion, synced: Pebble's log is synced in order, so
//     this makes every batch of step 2 durable too.
//
// A crash at any point leaves every booking under exactly one key and the
// store stamped with something an older version refuses (after step 1),
// and the next Open upgrades again: bookings already moved are skipped.
// The iterator of step 2 reads the store as it was when it was opened, so
// the keys the batches write do not show up in it; it keeps the files it
// reads until it is closed, so the upgrade needs about as much free disk
// as the bookings take.
func (db *DB) upgrade() error {
	b := db.pdb.NewBatch()
	defer func() { b.Close() }()
	if err := b.DeleteRange([]byte{prefixReservedApplicant}, []byte{prefixReservedApplicant + 1}, nil); err != nil {
		return err
	}
	if err := db.stamp(b, formatUpgrading); err != nil {
		return err
	}
	b.Close()
	b = db.pdb.NewBatch()
	batchBookingsMax := cmp.Or(db.opts.upgradeBatchBookings, upgradeBatchBookingsMax)
	moved := 0
	err := db.scan(prefixBooking, func(k, v []byte) error {
		if len(k) == bookingKeyBytes {
			return nil // moved by an upgrade that was cut short
		}
		if len(k) != bookingKeyBytesV2 {
			return fmt.Errorf("%w: key %s is not a booking key of format 2", ErrCorrupt, KeyString(k))
		}
		r, err := decodeBooking(v, nil)
		if err != nil {
			return fmt.Errorf("%w: key %s: %w", ErrCorrupt, KeyString(k), err)
		}
		if !bytes.Equal(k[1:], r.ID[:]) {
			return fmt.Errorf("%w: key %s: %w: holds booking %s", ErrCorrupt, KeyString(k), errKeyMismatch, r.ID)
		}
		if err := b.Delete(k, nil); err != nil {
			return err
		}
		if err := b.Set(bookingKeyOf(nil, r), v, nil); err != nil {
			return err
		}
		if moved++; moved < batchBookingsMax && b.Len() < upgradeBatchBytesMax {
			return nil
		}
		if err := b.Commit(pebble.NoSync); err != nil {
			return err
		}
		b.Close()
		b, moved = db.pdb.NewBatch(), 0
		return nil
	})
	if err != nil {
		return err
	}
	return db.stamp(b, formatVersion)
}

// stamp commits b, synced, with the format stamp set to v.
func (db *DB) stamp(b *pebble.Batch, v byte) error {
	if err := b.Set(metaKey(metaFormat), []byte{v}, nil); err != nil {
		return fmt.Errorf("wal: cannot stamp the format version: %w", err)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("wal: cannot stamp the format version: %w", err)
	}
	return nil
}
