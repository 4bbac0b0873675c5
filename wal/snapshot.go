package wal

// State snapshots of a replicated store (package replica): how a replica
// that fell behind a group's compacted Raft log gets the group's state
// instead of the entries it missed.
//
// The sender takes a Pebble snapshot of its store (StateSnapshot), which
// pins one instant — every record and the applied index of that instant,
// as they are in one batch (W11) — and writes it as a stream of records
// (StateSnapshot.WriteTo), read from the snapshot as the stream goes: the
// state is never in memory whole. The receiver writes the stream into
// sstables in a staging directory inside its data directory
// (StageSnapshot), never touching the store, then replaces the store's
// state with them in one step (InstallSnapshot): Pebble's IngestAndExcise
// deletes every key of the store and adds the staged tables in one
// version edit of its manifest, so a crash leaves the old state or the
// new one, whole, never a mix (S6). The store's node-local sync round
// (W9) is not part of the state: the sender leaves it out and the
// receiver keeps its own, ingested beside the staged tables.
//
//	S6. InstallSnapshot replaces every record of the store, the applied
//	     index and epoch included, with the staged state, atomically: after
//	     a crash at any point the store opens with its old state or with
//	     the staged one, and its applied index is the one its records are
//	     at (W11). A staged state is installed only if it arrived whole
//	     (its end and its CRC read) and its applied index is the one the
//	     caller names. A staging directory left by a crash is removed when
//	     the store opens.
//
// The stream, a format between nodes of one version (a new layout needs
// a new version byte and a reader that refuses what it does not know):
//
//	field        size
//	version      1 byte = 1
//	records:     in increasing key order, each:
//	  key length  uvarint (1 .. snapshotKeyBytesMax)
//	  key         key length bytes
//	  value len   uvarint (0 .. snapshotValueBytesMax)
//	  value       value length bytes
//	end          uvarint 0
//	count        uvarint: the records
//	crc          4 bytes BE: CRC-32C of every byte before it

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"path/filepath"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/objstorage/objstorageprovider"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// ErrSnapshotStream refuses a state stream that is malformed, cut short or
// fails its CRC, and an install of a state that was not staged whole.
var ErrSnapshotStream = errors.New("wal: bad state snapshot stream")

const (
	snapshotStreamVersion byte = 1
	// SnapshotStagingDir is the directory, inside the data directory,
	// where StageSnapshot writes a received state.
	SnapshotStagingDir    = "snapshot.staging"
	snapshotKeyBytesMax   = 64 << 10
	snapshotValueBytesMax = 64 << 20
	// snapshotTableBytes is the size at which the staging starts a new
	// sstable, so that a large state is ingested as several tables.
	snapshotTableBytes = 64 << 20
)

// StateSnapshot is one instant of a replicated store, pinned until Close:
// its records and the applied index they are at. Safe for use by one
// goroutine at a time; the store must stay open until Close.
type StateSnapshot struct {
	db             *DB
	snap           *pebble.Snapshot
	applied, epoch uint64
}

// SnapshotState pins the store's state as of now.
func (db *DB) SnapshotState() (*StateSnapshot, error) {
	db.closeMu.RLock()
	defer db.closeMu.RUnlock()
	if err := db.usableLocked(); err != nil {
		return nil, err
	}
	s := &StateSnapshot{db: db, snap: db.pdb.NewSnapshot()}
	read := func(name string) (uint64, error) {
		v, closer, err := s.snap.Get(metaKey(name))
		if errors.Is(err, pebble.ErrNotFound) {
			return 0, nil
		}
		if err != nil {
			return 0, err
		}
		defer closer.Close()
		if len(v) != 8 {
			return 0, fmt.Errorf("%w: %s: value of %d bytes, want 8", ErrCorrupt, KeyString(metaKey(name)), len(v))
		}
		return binary.BigEndian.Uint64(v), nil
	}
	var err error
	if s.applied, err = read(metaApplied); err == nil {
		s.epoch, err = read(metaEpoch)
	}
	if err != nil {
		_ = s.snap.Close()
		return nil, fmt.Errorf("wal: state snapshot: %w", err)
	}
	return s, nil
}

// Applied returns the applied index of the snapshot's state (W11).
func (s *StateSnapshot) Applied() uint64 { return s.applied }

// WriteTo writes the state as a stream (the file's doc), reading it from
// the snapshot as it goes.
func (s *StateSnapshot) WriteTo(w io.Writer) (int64, error) {
	s.db.closeMu.RLock()
	defer s.db.closeMu.RUnlock()
	if s.db.closed {
		return 0, errors.New("wal: state snapshot of a closed store")
	}
	cw := &countingWriter{w: bufio.NewWriterSize(w, 64<<10), crc: crc32.New(crc32c)}
	it, err := s.snap.NewIter(nil)
	if err != nil {
		return 0, err
	}
	defer it.Close()
	var hdr [2 * binary.MaxVarintLen64]byte
	cw.write([]byte{snapshotStreamVersion})
	var count uint64
	for ok := it.First(); ok && cw.err == nil; ok = it.Next() {
		k := it.Key()
		if bytes.Equal(k, syncedRoundKey) {
			continue // node-local (W9)
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return cw.n, err
		}
		if len(k) > snapshotKeyBytesMax || len(v) > snapshotValueBytesMax {
			return cw.n, fmt.Errorf("wal: state snapshot: %s of %d+%d bytes is beyond the stream's limits", KeyString(k), len(k), len(v))
		}
		cw.write(hdr[:binary.PutUvarint(hdr[:], uint64(len(k)))])
		cw.write(k)
		cw.write(hdr[:binary.PutUvarint(hdr[:], uint64(len(v)))])
		cw.write(v)
		count++
	}
	if err := it.Error(); err != nil {
		return cw.n, err
	}
	n := binary.PutUvarint(hdr[:], 0)
	n += binary.PutUvarint(hdr[n:], count)
	cw.write(hdr[:n])
	cw.write(binary.BigEndian.AppendUint32(nil, cw.crc.Sum32()))
	if cw.err == nil {
		cw.err = cw.w.Flush()
	}
	return cw.n, cw.err
}

// Close releases the snapshot.
func (s *StateSnapshot) Close() error { return s.snap.Close() }

type countingWriter struct {
	w   *bufio.Writer
	crc hash.Hash32
	n   int64
	err error
}

func (c *countingWriter) write(b []byte) {
	if c.err != nil {
		return
	}
	_, _ = c.crc.Write(b)
	var m int
	m, c.err = c.w.Write(b)
	c.n += int64(m)
}

// staged is a state written by StageSnapshot, waiting to be installed.
type stagedState struct {
	applied uint64
	paths   []string
}

// SyncApplied makes every write the store holds durable and returns the
// applied index (W11) that is now on disk: the Raft log may be compacted
// through it. Replicated writes are not synced one by one; one synced
// record in Pebble's log makes every earlier one durable.
func (db *DB) SyncApplied() (uint64, error) {
	db.closeMu.RLock()
	defer db.closeMu.RUnlock()
	if err := db.writableLocked(); err != nil {
		return 0, err
	}
	applied := db.applied.Load()
	if err := pebbleCall(func() error { return db.pdb.LogData(nil, pebble.Sync) }); err != nil {
		db.degrade(err)
		return 0, fmt.Errorf("%w: sync: %w", ErrDegraded, err)
	}
	return applied, nil
}

// StageSnapshot reads a state stream from r into sstables in the staging
// directory (replacing what an earlier call staged) and returns the
// applied index of the state. The store is not touched: InstallSnapshot
// installs what was staged. One stage or install runs at a time.
func (db *DB) StageSnapshot(r io.Reader) (applied uint64, err error) {
	db.stageMu.Lock()
	defer db.stageMu.Unlock()
	db.staged = nil
	dir := filepath.Join(db.dir, SnapshotStagingDir)
	fs := db.fs
	if err := fs.RemoveAll(dir); err != nil {
		return 0, fmt.Errorf("wal: cannot clear %s: %w", dir, err)
	}
	if err := fs.MkdirAll(dir, 0o755); err != nil {
		return 0, fmt.Errorf("wal: cannot create %s: %w", dir, err)
	}
	defer func() {
		if err != nil {
			_ = fs.RemoveAll(dir)
		}
	}()
	db.closeMu.RLock()
	if err := db.writableLocked(); err != nil {
		db.closeMu.RUnlock()
		return 0, err
	}
	format := db.pdb.FormatMajorVersion().MaxTableFormat()
	db.closeMu.RUnlock()

	br := &crcReader{r: bufio.NewReaderSize(r, 64<<10), crc: crc32.New(crc32c)}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrSnapshotStream, fmt.Sprintf(format, args...))
	}
	uvarint := func(max uint64, what string) (uint64, error) {
		v, err := binary.ReadUvarint(br)
		if err != nil {
			return 0, bad("%s: %v", what, err)
		}
		if v > max {
			return 0, bad("%s %d is beyond %d", what, v, max)
		}
		return v, nil
	}
	if v, err := br.ReadByte(); err != nil || v != snapshotStreamVersion {
		return 0, bad("version %d (%v), this version reads %d", v, err, snapshotStreamVersion)
	}
	var (
		paths      []string
		w          *sstable.Writer
		tableSize  int
		prev       []byte
		count      uint64
		key, val   []byte
		sawApplied bool
	)
	finish := func() error {
		if w == nil {
			return nil
		}
		err := w.Close()
		w = nil
		return err
	}
	defer func() { _ = finish() }()
	for {
		kl, err := uvarint(snapshotKeyBytesMax, "key length")
		if err != nil {
			return 0, err
		}
		if kl == 0 {
			break
		}
		key = grow(key, int(kl))
		if _, err := io.ReadFull(br, key); err != nil {
			return 0, bad("key: %v", err)
		}
		vl, err := uvarint(snapshotValueBytesMax, "value length")
		if err != nil {
			return 0, err
		}
		val = grow(val, int(vl))
		if _, err := io.ReadFull(br, val); err != nil {
			return 0, bad("value: %v", err)
		}
		if prev != nil && bytes.Compare(key, prev) <= 0 || bytes.Equal(key, syncedRoundKey) {
			return 0, bad("key %s out of order or node-local", KeyString(key))
		}
		if bytes.Equal(key, metaKey(metaApplied)) {
			if len(val) != 8 {
				return 0, bad("%s of %d bytes", KeyString(key), len(val))
			}
			applied, sawApplied = binary.BigEndian.Uint64(val), true
		}
		// A new table where the receiver's own sync round will go, so
		// the tables InstallSnapshot ingests do not overlap, and past
		// the size of a table.
		crossed := prev != nil && bytes.Compare(prev, syncedRoundKey) < 0 && bytes.Compare(key, syncedRoundKey) > 0
		if w != nil && (crossed || tableSize >= snapshotTableBytes) {
			if err := finish(); err != nil {
				return 0, fmt.Errorf("wal: staging: %w", err)
			}
		}
		if w == nil {
			p := filepath.Join(dir, fmt.Sprintf("%06d.sst", len(paths)+1))
			f, err := fs.Create(p, vfs.WriteCategoryUnspecified)
			if err != nil {
				return 0, fmt.Errorf("wal: staging: %w", err)
			}
			w = sstable.NewWriter(objstorageprovider.NewFileWritable(f), sstable.WriterOptions{TableFormat: format, Comparer: pebble.DefaultComparer})
			paths, tableSize = append(paths, p), 0
		}
		if err := w.Set(key, val); err != nil {
			return 0, fmt.Errorf("wal: staging: %w", err)
		}
		tableSize += len(key) + len(val)
		prev = append(prev[:0], key...)
		count++
	}
	n, err := uvarint(^uint64(0), "count")
	if err != nil {
		return 0, err
	}
	sum := br.crc.Sum32()
	var tail [4]byte
	if _, err := io.ReadFull(br.r, tail[:]); err != nil {
		return 0, bad("crc: %v", err)
	}
	if got := binary.BigEndian.Uint32(tail[:]); got != sum {
		return 0, bad("crc %08x, the stream's bytes give %08x", got, sum)
	}
	if n != count || !sawApplied {
		return 0, bad("%d records, the stream says %d; applied index present: %v", count, n, sawApplied)
	}
	if err := finish(); err != nil {
		return 0, fmt.Errorf("wal: staging: %w", err)
	}
	if err := syncDir(fs, dir); err != nil {
		return 0, err
	}
	db.staged = &stagedState{applied: applied, paths: paths}
	return applied, nil
}

// crcReader hashes the bytes read through it.
type crcReader struct {
	r   *bufio.Reader
	crc hash.Hash32
}

func (c *crcReader) ReadByte() (byte, error) {
	b, err := c.r.ReadByte()
	if err == nil {
		_, _ = c.crc.Write([]byte{b})
	}
	return b, err
}

func (c *crcReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	_, _ = c.crc.Write(p[:n])
	return n, err
}

// grow returns b with length n, reusing its array when it is large enough.
func grow(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n)
	}
	return b[:n]
}

func syncDir(fs vfs.FS, dir string) error {
	d, err := fs.OpenDir(dir)
	if err != nil {
		return fmt.Errorf("wal: cannot open %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("wal: cannot sync %s: %w", dir, err)
	}
	return nil
}

// StagedSnapshot returns the applied index of the state staged and not yet
// installed, 0 if none.
func (db *DB) StagedSnapshot() uint64 {
	db.stageMu.Lock()
	defer db.stageMu.Unlock()
	if db.staged == nil {
		return 0
	}
	return db.staged.applied
}

// InstallSnapshot replaces the store's state with the state staged at
// applied (S6). Every other operation on the store waits while it runs.
// The store's in-memory state (the applied index, the event feed)
// follows the new records.
func (db *DB) InstallSnapshot(applied uint64) error {
	db.stageMu.Lock()
	defer db.stageMu.Unlock()
	if db.staged == nil || db.staged.applied != applied {
		return fmt.Errorf("%w: no state staged at %d", ErrSnapshotStream, applied)
	}
	db.closeMu.Lock()
	defer db.closeMu.Unlock()
	if err := db.writableLocked(); err != nil {
		return err
	}
	dir := filepath.Join(db.dir, SnapshotStagingDir)
	paths := db.staged.paths
	// The node's own sync round stays (W9), in a table of its own
	// between the staged ones.
	v, closer, err := db.pdb.Get(syncedRoundKey)
	switch {
	case err == nil:
		p := filepath.Join(dir, "synced-round.sst")
		f, ferr := db.fs.Create(p, vfs.WriteCategoryUnspecified)
		if ferr != nil {
			_ = closer.Close()
			return fmt.Errorf("wal: install: %w", ferr)
		}
		w := sstable.NewWriter(objstorageprovider.NewFileWritable(f), sstable.WriterOptions{TableFormat: db.pdb.FormatMajorVersion().MaxTableFormat(), Comparer: pebble.DefaultComparer})
		err = w.Set(syncedRoundKey, v)
		_ = closer.Close()
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("wal: install: %w", err)
		}
		paths = append(paths[:len(paths):len(paths)], p)
	case !errors.Is(err, pebble.ErrNotFound):
		return fmt.Errorf("wal: install: %w", err)
	}
	span := pebble.KeyRange{Start: []byte{0}, End: []byte{0xff}}
	if err := pebbleCall(func() error {
		_, err := db.pdb.IngestAndExcise(context.Background(), paths, nil, nil, span)
		return err
	}); err != nil {
		db.degrade(err)
		return fmt.Errorf("%w: install the state at %d: %w", ErrDegraded, applied, err)
	}
	db.staged = nil
	_ = db.fs.RemoveAll(dir)
	last, deleted, err := db.lastCursor()
	if err != nil {
		db.degrade(err)
		return err
	}
	db.feed.restart(last, deleted)
	// The installed state may hold void marks this store never had: the
	// next apply looks again (ledger.go), or it would write a voided
	// booking that every other replica refuses.
	db.voids.Store(voidsUnknown)
	// Not "unknown": a reader's scan of the state replaced could answer
	// after this and say none. Every booking id is looked up instead.
	db.moveMarks.Store(voidsSome)
	db.applied.Store(applied)
	return nil
}
