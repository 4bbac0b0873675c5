package wal

// Online backup: a consistent copy of the running store that opens, and
// passes Open's check of what was synced (W9), as a data directory of its
// own.
//
// Pebble's Checkpoint links the store's tables and copies its log and
// manifest as of one instant, while commits go on. Its copy of the log
// ends wherever the log's writer had got to, perhaps in the middle of a
// record: a torn end, as after a crash, which Open takes for the end of
// the log. What the copy is sure to hold is every round synced before the
// checkpoint began: Pebble syncs its log in order, so every record of
// such a round is on disk, in a log file or a table the checkpoint takes.
//
// A replicated store (replica.go) writes its batches without an fsync
// (W11), and Pebble's log writer may still hold the last of them in
// memory: the checkpoint flushes and syncs the log first, so that it
// holds every batch written before Backup was called, synced or not —
// a cluster's backup waits until the store has applied every
// acknowledged entry, then counts on that.
//
// The live SYNCMARK is not copied. It keeps moving while the checkpoint
// runs, and a mark written after the checkpoint's log was copied names a
// round the copy does not hold: the backup would fail Open with
// ErrLogDamaged. The backup gets a mark of its own instead, the round
// synced just before the checkpoint began, so that Open checks the copy
// holds every change acknowledged before the backup began (W9 applied to
// the copy). Changes written after that instant may or may not be in the
// copy, exactly as after a crash at that instant (DESIGN invariant 4).
//
// The copy is made in a hidden directory beside the target and renamed
// to the target once whole, so a failed or interrupted backup never
// leaves a target that looks like a store.

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

var (
	// ErrBackupTargetExists refuses a backup target that is there and
	// is not an empty directory: a backup never overwrites anything.
	ErrBackupTargetExists = errors.New("wal: backup target exists")
	// ErrBackupTargetUnusable refuses a backup target that cannot be
	// written: its parent is missing or not a directory, or the file
	// system refuses to create it.
	ErrBackupTargetUnusable = errors.New("wal: backup target cannot be written")
	// ErrBackupRunning refuses a backup while another one runs.
	ErrBackupRunning = errors.New("wal: a backup is already running")
)

// BackupStats says what Backup wrote.
type BackupStats struct {
	// Dir is the backup's directory, cleaned.
	Dir string
	// SyncedRound is the sync round the backup's SYNCMARK holds: every
	// change acknowledged before the backup began is in a round at or
	// below it, and Open of the backup checks that it is there (W9).
	SyncedRound uint64
	// Files and Bytes count what the directory holds (tables linked
	// from the store count in full).
	Files int
	Bytes int64
	// Duration is the wall time the backup took (measured for the
	// report; nothing depends on it).
	Duration time.Duration
}

// Backup writes a consistent copy of the store into dir, which must not
// exist or be an empty directory, and whose parent must exist. files
// names further files of the data directory (not Pebble's, such as the
// ticket secret) to copy beside it; a name that is not there is skipped.
// The copy opens with Open as a data directory of its own and holds every
// change acknowledged before Backup was called. Safe for concurrent use;
// one backup runs at a time (ErrBackupRunning). A degraded DB refuses
// (W2): its memtable may hold changes that are not on disk.
func (db *DB) Backup(dir string, files []string) (BackupStats, error) {
	start := time.Now()
	st := BackupStats{Dir: filepath.Clean(dir)}
	if !db.backupMu.TryLock() {
		return st, ErrBackupRunning
	}
	defer db.backupMu.Unlock()
	db.closeMu.RLock()
	defer db.closeMu.RUnlock()
	if err := db.writableLocked(); err != nil {
		return st, err
	}
	if db.opts.FS != vfs.Default {
		// The staging, the rename over an empty target and the copies
		// keeping their permissions are the operating system's.
		return st, errors.New("wal: Backup needs a store on the operating system's file system (Options.FS nil)")
	}
	for _, name := range files {
		if name == "" || name != filepath.Base(name) || name == SyncMarkFile {
			panic(fmt.Sprintf("BUG: wal: Backup of file %q: want a plain name in the data directory other than %s", name, SyncMarkFile))
		}
	}
	if Inside(st.Dir, db.dir) {
		return st, fmt.Errorf("%w: %s is inside the data directory %s; a backup belongs on another disk, or at least beside it", ErrBackupTargetUnusable, st.Dir, db.dir)
	}
	tmp, err := BackupStaging(st.Dir)
	if err != nil {
		return st, err
	}
	defer os.RemoveAll(tmp) // gone after the rename; left over only on failure
	// The round is read before the checkpoint begins: every change
	// acknowledged so far is in it or an earlier one.
	st.SyncedRound = db.syncedRound.Load()
	if err := pebbleCall(func() error { return db.pdb.Checkpoint(tmp, pebble.WithFlushedWAL()) }); err != nil {
		return st, fmt.Errorf("wal: backup: pebble checkpoint into %s: %w", tmp, err)
	}
	if err := writeBackupMark(tmp, st.SyncedRound); err != nil {
		return st, err
	}
	for _, name := range files {
		if err := CopyFileSynced(filepath.Join(db.dir, name), filepath.Join(tmp, name)); err != nil {
			return st, fmt.Errorf("wal: backup: %w", err)
		}
	}
	if err := syncPath(tmp); err != nil {
		return st, fmt.Errorf("wal: backup: %w", err)
	}
	if st.Files, st.Bytes, err = dirUsage(tmp); err != nil {
		return st, fmt.Errorf("wal: backup: %w", err)
	}
	// rename(2) replaces an empty directory and refuses one that is not:
	// a target filled meanwhile is not touched. (os.Rename refuses any
	// directory as the new name, empty or not.)
	if err := syscall.Rename(tmp, st.Dir); err != nil {
		if errors.Is(err, syscall.ENOTEMPTY) || errors.Is(err, syscall.EEXIST) || errors.Is(err, syscall.ENOTDIR) {
			return st, fmt.Errorf("%w: %s was filled while the backup ran", ErrBackupTargetExists, st.Dir)
		}
		return st, fmt.Errorf("wal: backup: cannot rename %s to %s: %w", tmp, st.Dir, err)
	}
	if err := syncPath(filepath.Dir(st.Dir)); err != nil {
		return st, fmt.Errorf("wal: backup: %w", err)
	}
	st.Duration = time.Since(start)
	return st, nil
}

// Inside reports whether path is dir or lies under it, by their absolute
// names (symbolic links are not followed).
func Inside(path, dir string) bool {
	p, err1 := filepath.Abs(path)
	d, err2 := filepath.Abs(dir)
	if err1 != nil || err2 != nil {
		return false
	}
	rel, err := filepath.Rel(d, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// BackupStaging checks the target dir of a backup (new, or an empty
// directory, in a directory that exists) and returns the name of a new
// directory beside it to build the backup in, which does not exist
// (Pebble's Checkpoint creates it) but could be created. Its refusals
// wrap ErrBackupTargetExists or ErrBackupTargetUnusable.
func BackupStaging(dir string) (string, error) {
	fi, err := os.Stat(dir)
	switch {
	case err == nil && !fi.IsDir():
		return "", fmt.Errorf("%w: %s is a file, not a directory", ErrBackupTargetExists, dir)
	case err == nil:
		f, err := os.Open(dir)
		if err != nil {
			return "", fmt.Errorf("%w: %s: %w", ErrBackupTargetUnusable, dir, err)
		}
		names, err := f.Readdirnames(1)
		_ = f.Close()
		if len(names) > 0 {
			return "", fmt.Errorf("%w: %s is not empty (it holds %s); name a new or empty directory", ErrBackupTargetExists, dir, names[0])
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return "", fmt.Errorf("%w: %s: %w", ErrBackupTargetUnusable, dir, err)
		}
	case errors.Is(err, syscall.ENOTDIR):
		return "", fmt.Errorf("%w: %s: its parent %s is not a directory", ErrBackupTargetUnusable, dir, filepath.Dir(dir))
	case !errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("%w: %s: %w", ErrBackupTargetUnusable, dir, unwrapPath(err))
	}
	parent := filepath.Dir(dir)
	pi, err := os.Stat(parent)
	switch {
	case errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR):
		return "", fmt.Errorf("%w: %s: its parent directory %s does not exist", ErrBackupTargetUnusable, dir, parent)
	case err != nil:
		return "", fmt.Errorf("%w: %s: %w", ErrBackupTargetUnusable, dir, err)
	case !pi.IsDir():
		return "", fmt.Errorf("%w: %s: its parent %s is not a directory", ErrBackupTargetUnusable, dir, parent)
	}
	var suffix [8]byte
	_, _ = rand.Read(suffix[:])
	tmp := filepath.Join(parent, "."+filepath.Base(dir)+".partial-"+hex.EncodeToString(suffix[:]))
	// Try the parent's permission now, with a clear answer, rather than
	// from inside Pebble's checkpoint.
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return "", fmt.Errorf("%w: %s: cannot create a directory in %s: %w", ErrBackupTargetUnusable, dir, parent, unwrapPath(err))
	}
	if err := os.Remove(tmp); err != nil {
		return "", fmt.Errorf("%w: %s: %w", ErrBackupTargetUnusable, dir, err)
	}
	return tmp, nil
}

// unwrapPath returns the system error inside a *fs.PathError, whose
// path the caller names itself.
func unwrapPath(err error) error {
	if pe, ok := errors.AsType[*fs.PathError](err); ok {
		return pe.Err
	}
	return err
}

// writeBackupMark writes dir's SYNCMARK holding round in its first slot,
// synced.
func writeBackupMark(dir string, round uint64) error {
	var data [2 * syncMarkSlotBytes]byte
	encodeSyncMarkSlot(data[:syncMarkSlotBytes], round)
	path := filepath.Join(dir, SyncMarkFile)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("wal: backup: %w", err)
	}
	_, err = f.Write(data[:])
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("wal: backup: cannot write %s: %w", path, err)
	}
	return nil
}

// CopyFileSynced copies src to the new file dst with src's permissions,
// and syncs it; a missing src is skipped.
func CopyFileSynced(src, dst string) error {
	in, err := os.Open(src)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", src)
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fi.Mode().Perm())
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("cannot copy %s to %s: %w", src, dst, err)
	}
	return nil
}

// syncPath syncs the directory at path, making the names in it durable.
func syncPath(path string) error {
	d, err := os.Open(path)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("cannot sync %s: %w", path, err)
	}
	return nil
}

// dirUsage counts the regular files directly in dir and their bytes.
func dirUsage(dir string) (files int, bytes int64, err error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, 0, err
	}
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			return 0, 0, err
		}
		if fi.Mode().IsRegular() {
			files++
			bytes += fi.Size()
		}
	}
	return files, bytes, nil
}

// writableLocked refuses a write after Close (ErrJournalClosed), after a
// failed write (ErrDegraded, W2), and on a store opened read-only
// (ErrReadOnly). Caller holds db.closeMu.
func (db *DB) writableLocked() error {
	if err := db.usableLocked(); err != nil {
		return err
	}
	if db.readOnly {
		return ErrReadOnly
	}
	return nil
}
