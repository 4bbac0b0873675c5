package wal

// Opening a store to read it only: a stopped store or a backup, for an
// export or a check, without changing a byte of it.

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"syscall"

	"github.com/cockroachdb/pebble/v2"
)

var (
	// ErrReadOnly refuses a write to a store opened with OpenReadOnly.
	ErrReadOnly = errors.New("wal: the store is open for reading only")
	// ErrInUse refuses to open a store that another process (a running
	// slotd) holds: Pebble's lock file is locked.
	ErrInUse = errors.New("wal: the store is in use by another process")
	// ErrNotStore refuses a directory that holds no store.
	ErrNotStore = errors.New("wal: not a slotd data directory")
)

// pebbleLockFile is the file Pebble locks while a process has the store
// open (pebble.LockDirectory).
const pebbleLockFile = "LOCK"

// OpenReadOnly opens the store in dir for reading: Recover and the reads
// work, every write answers ErrReadOnly. It checks what Open checks (the
// sync mark, W9; the format), and writes nothing, neither the format
// stamp nor the sync mark; a store that Open would first upgrade (format
// 1 or 2, or an upgrade cut short) is refused with ErrFormat. Pebble
// replays its log into memory without flushing it. A store a running
// process holds answers ErrInUse; a directory that is missing or holds no
// Pebble store, ErrNotStore. Only the lock file may be created in dir.
func OpenReadOnly(dir string, opts Options) (*DB, error) {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("%w: %s does not exist", ErrNotStore, dir)
	case err != nil:
		return nil, fmt.Errorf("wal: cannot open %s: %w", dir, err)
	case !fi.IsDir():
		return nil, fmt.Errorf("%w: %s is a file, not a directory", ErrNotStore, dir)
	}
	vfsys := opts.withDefaults().FS
	desc, err := pebble.Peek(dir, vfsys)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrNotStore, dir, err)
	}
	if !desc.Exists {
		return nil, fmt.Errorf("%w: %s holds no Pebble store (no MANIFEST)", ErrNotStore, dir)
	}
	return openDB(dir, opts, true)
}

// openReadOnly checks the store Pebble opened read-only, as open does
// for a writable one, and readies the feed; it writes nothing.
func (db *DB) openReadOnly(dir string) error {
	if _, _, err := db.checkSynced(dir); err != nil {
		return err
	}
	if err := db.checkFormatReadOnly(); err != nil {
		return err
	}
	last, deleted, err := db.lastCursor()
	if err != nil {
		return err
	}
	db.feed.start(last, deleted)
	applied, err := db.metaUint64(metaApplied)
	if err != nil {
		return err
	}
	db.applied.Store(applied)
	return nil
}

// checkFormatReadOnly accepts a store that this version reads as it is
// (formats 3 to 7) and refuses anything else, without stamping.
func (db *DB) checkFormatReadOnly() error {
	k := metaKey(metaFormat)
	v, closer, err := db.pdb.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return fmt.Errorf("%w: the Pebble store holds no %s key: it is not slotd's, or slotd never finished creating it", ErrNotStore, KeyString(k))
	}
	if err != nil {
		return fmt.Errorf("wal: cannot read the format version: %w", err)
	}
	stamp := append([]byte(nil), v...)
	_ = closer.Close()
	if len(stamp) == 1 && stamp[0] >= 3 && stamp[0] <= formatVersion {
		return nil
	}
	if len(stamp) == 1 && (stamp[0] == 1 || stamp[0] == 2 || stamp[0]&0x80 != 0 && stamp[0]&0x7f >= 3 && stamp[0]&0x7f <= formatVersion) {
		return fmt.Errorf("%w: %s is %x: start slotd on the store once to upgrade it, then read it", ErrFormat, KeyString(k), stamp)
	}
	return fmt.Errorf("%w: %s is %x, this version reads 1 to %d", ErrFormat, KeyString(k), stamp, formatVersion)
}

// lockHeld reports whether Pebble's Open failed on the lock of a store
// that is open elsewhere: fcntl's F_SETLK answers EAGAIN or EACCES for a
// lock another process holds (a bare errno, where a failure to create the
// lock file is a *fs.PathError), and Pebble refuses a second lock within
// one process with a message of its own.
func lockHeld(err error) bool {
	if err == nil {
		return false
	}
	if _, ok := errors.AsType[*fs.PathError](err); ok {
		return false
	}
	return errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EACCES) ||
		strings.Contains(err.Error(), "lock held by current process")
}
