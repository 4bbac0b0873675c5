package wal

// The sync mark: how Open tells a torn final write from damage before the
// end of what was synced (wal invariant W9; the package doc's "Recovery"
// says why it is built this way).

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// SyncMarkFile is the name of the sync mark in the data directory, beside
// Pebble's files (which Pebble leaves alone: it only touches names it
// made).
const SyncMarkFile = "SYNCMARK"

// syncMarkIntervalMin is the least time between two writes of the mark.
// Each write costs an fsync of its own on the log's device; at most 10 a
// second stay small next to the log's hundreds a second under load
// (BenchmarkEngineDurableHold does not move beyond its run-to-run spread
// with this interval or a fifth of it). The mark trails the synced round
// by at most this and one fsync; a clean Close writes it exact.
const syncMarkIntervalMin = 100 * time.Millisecond

// The mark file holds two slots, written in turn, so that a write torn by
// a crash leaves the other slot's mark whole:
//
//	field   size
//	round   8 bytes BE: a sync round known synced
//	crc     4 bytes: CRC-32C (Castagnoli) of round and magic
//	magic   4 bytes "slsm"
//
// A slot of zeroes was never written.
const (
	syncMarkSlotBytes = 16
	syncMarkMagic     = "slsm"
)

var crc32c = crc32.MakeTable(crc32.Castagnoli)

func encodeSyncMarkSlot(dst []byte, round uint64) {
	binary.BigEndian.PutUint64(dst[0:8], round)
	copy(dst[12:16], syncMarkMagic)
	binary.BigEndian.PutUint32(dst[8:12], crc32.Checksum(append(dst[0:8:8], dst[12:16]...), crc32c))
}

// decodeSyncMarkSlot returns the slot's round; ok is false for a slot that
// is neither empty nor whole.
func decodeSyncMarkSlot(s []byte) (round uint64, ok bool) {
	if allZero(s) {
		return 0, true
	}
	want := crc32.Checksum(append(s[0:8:8], s[12:16]...), crc32c)
	if string(s[12:16]) != syncMarkMagic || binary.BigEndian.Uint32(s[8:12]) != want {
		return 0, false
	}
	return binary.BigEndian.Uint64(s[0:8]), true
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// syncMark is the open mark file. Owned by the marker goroutine once it
// runs; before, by Open.
type syncMark struct {
	f    vfs.File
	slot int // the slot the next write goes to: not the one of the highest mark
	buf  [syncMarkSlotBytes]byte
}

// readSyncMark returns the highest whole mark in the file at path (0 if
// there is no file) and the slot the next write should go to.
func readSyncMark(fs vfs.FS, path string) (round uint64, next int, err error) {
	f, err := fs.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("wal: cannot read %s: %w", path, err)
	}
	defer f.Close()
	var data [2*syncMarkSlotBytes + 1]byte
	n, err := io.ReadFull(f, data[:])
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return 0, 0, fmt.Errorf("wal: cannot read %s: %w", path, err)
	}
	if n > 2*syncMarkSlotBytes {
		return 0, 0, fmt.Errorf("%w: %s is longer than %d bytes", ErrCorrupt, path, 2*syncMarkSlotBytes)
	}
	r0, ok0 := decodeSyncMarkSlot(data[:syncMarkSlotBytes])
	r1, ok1 := decodeSyncMarkSlot(data[syncMarkSlotBytes : 2*syncMarkSlotBytes])
	if !ok0 && !ok1 {
		// One write can tear one slot, not two.
		return 0, 0, fmt.Errorf("%w: both slots of %s are damaged", ErrCorrupt, path)
	}
	if r1 > r0 {
		return r1, 0, nil
	}
	return r0, 1, nil
}

// openSyncMark opens (creating) the mark file for writing; a new file's
// name is made durable by syncing the directory.
func openSyncMark(fs vfs.FS, dir string, next int) (*syncMark, error) {
	path := fs.PathJoin(dir, SyncMarkFile)
	_, statErr := fs.Stat(path)
	f, err := fs.OpenReadWrite(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return nil, fmt.Errorf("wal: cannot open %s: %w", path, err)
	}
	if errors.Is(statErr, os.ErrNotExist) {
		d, err := fs.OpenDir(dir)
		if err == nil {
			err = d.Sync()
			_ = d.Close()
		}
		if err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("wal: cannot sync %s after creating %s: %w", dir, SyncMarkFile, err)
		}
	}
	return &syncMark{f: f, slot: next}, nil
}

// write makes round the mark: written to the slot after the last one, and
// synced.
func (m *syncMark) write(round uint64) error {
	encodeSyncMarkSlot(m.buf[:], round)
	if _, err := m.f.WriteAt(m.buf[:], int64(m.slot*syncMarkSlotBytes)); err != nil {
		return fmt.Errorf("wal: cannot write %s: %w", SyncMarkFile, err)
	}
	if err := m.f.SyncData(); err != nil {
		return fmt.Errorf("wal: cannot sync %s: %w", SyncMarkFile, err)
	}
	m.slot ^= 1
	return nil
}

// recoveredRound reads the last sync round Pebble recovered
// (meta/synced-round), 0 if none was ever written.
func (db *DB) recoveredRound() (uint64, error) {
	return db.metaUint64(metaSyncedRound)
}

// checkSynced refuses a store that recovered fewer sync rounds than the
// mark says were synced (W9), before anything is written to it.
func (db *DB) checkSynced(dir string) (mark uint64, next int, err error) {
	recovered, err := db.recoveredRound()
	if err != nil {
		return 0, 0, err
	}
	path := db.opts.FS.PathJoin(dir, SyncMarkFile)
	mark, next, err = readSyncMark(db.opts.FS, path)
	if err != nil {
		return 0, 0, fmt.Errorf("%w; if it alone is damaged, delete it to start without the check", err)
	}
	if recovered < mark {
		return 0, 0, fmt.Errorf("%w: the store recovers through sync round %d, but %s says round %d was synced: "+
			"changes acknowledged as durable are missing (Pebble logs where it stopped reading the log). "+
			"Restore the data directory from a backup; to start with what could be read and lose those changes, delete %s",
			ErrLogDamaged, recovered, path, mark, path)
	}
	db.round = recovered
	db.syncedRound.Store(recovered)
	db.markedRound.Store(mark)
	return mark, next, nil
}

// startMarker starts the goroutine that writes the mark after the syncer's
// rounds; stopMarker ends it after writing the last round synced.
func (db *DB) startMarker(m *syncMark) {
	db.markWake = make(chan struct{}, 1)
	db.markStop = make(chan struct{})
	db.markDone = make(chan error, 1)
	go func() { db.markDone <- db.runMarker(m) }()
}

func (db *DB) stopMarker() error {
	close(db.markStop)
	return <-db.markDone
}

// wakeMarker tells the marker a round was synced; it never blocks the
// syncer.
func (db *DB) wakeMarker() {
	select {
	case db.markWake <- struct{}{}:
	default:
	}
}

// runMarker writes the latest synced round whenever one was synced, at
// most once per syncMarkIntervalMin, and once more when stopped. A failed
// write degrades the DB (W2): the mark is part of what makes a change
// durable-and-checkable, and the disk under it just failed.
func (db *DB) runMarker(m *syncMark) error {
	defer m.f.Close()
	pace := time.NewTimer(syncMarkIntervalMin)
	pace.Stop()
	defer pace.Stop()
	mark := func() error {
		round := db.syncedRound.Load()
		if round <= db.markedRound.Load() {
			return nil
		}
		if err := m.write(round); err != nil {
			db.degrade(err)
			return err
		}
		db.markedRound.Store(round)
		return nil
	}
	for {
		select {
		case <-db.markStop:
			return mark()
		case <-db.markWake:
		}
		if err := mark(); err != nil {
			<-db.markStop
			return err
		}
		pace.Reset(syncMarkIntervalMin)
		select {
		case <-db.markStop:
			return mark()
		case <-pace.C:
		}
	}
}
