package wal

import (
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"slotd/internal/slotdtest"
)

// TestStoreStats: the store's own figures follow what was written — log
// bytes grow with commits, a flush puts a table in L0 and makes reads
// look in it — and the file system's size is the data directory's.
func TestStoreStats(t *testing.T) {
	db, _ := openWithOffice(t)
	before, ok := db.StoreStats()
	if !ok {
		t.Fatal("StoreStats of an open DB: not ok")
	}
	for n := range uint64(200) {
		mustCommit(t, db, holdChange(n+1))
	}
	after, _ := db.StoreStats()
	if after.WALWrittenBytes <= before.WALWrittenBytes {
		t.Errorf("WALWrittenBytes %d after 200 commits, %d before: want more", after.WALWrittenBytes, before.WALWrittenBytes)
	}
	if after.WALBytes == 0 || after.DiskBytes < after.WALBytes {
		t.Errorf("WALBytes %d, DiskBytes %d: want a log on disk, counted in DiskBytes", after.WALBytes, after.DiskBytes)
	}
	if after.MemTableBytes == 0 {
		t.Error("MemTableBytes 0 with unflushed commits")
	}
	if !after.FilesystemKnown || after.FilesystemAvailBytes == 0 || after.FilesystemAvailBytes > after.FilesystemBytes {
		t.Errorf("file system: known %v, %d of %d bytes free: want the temporary directory's",
			after.FilesystemKnown, after.FilesystemAvailBytes, after.FilesystemBytes)
	}

	if err := db.Flush(); err != nil {
		t.Fatal(err)
	}
	flushed, _ := db.StoreStats()
	if flushed.Flushes <= after.Flushes || flushed.L0Files == 0 || flushed.ReadAmplification == 0 {
		t.Errorf("after a flush: %d flushes (%d before), %d L0 tables, read amplification %d: want a table in L0",
			flushed.Flushes, after.Flushes, flushed.L0Files, flushed.ReadAmplification)
	}
	if flushed.DiskBytes <= flushed.WALBytes {
		t.Errorf("after a flush: DiskBytes %d, WALBytes %d: the table is not counted", flushed.DiskBytes, flushed.WALBytes)
	}

	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if s, ok := db.StoreStats(); ok {
		t.Errorf("StoreStats of a closed DB: ok, %+v", s)
	}
}

// TestStoreStatsFilesystem: the free space is asked of the store's own
// file system for its directory, and a file system that cannot tell
// leaves it unknown rather than zero.
func TestStoreStatsFilesystem(t *testing.T) {
	mem := slotdtest.MemFS(t, "db")
	db, err := Open("db", Options{FS: mem})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if s, _ := db.StoreStats(); s.FilesystemKnown {
		t.Errorf("in-memory file system without a size: known, %+v", s)
	}
	mem.TestingSetDiskUsage(vfs.DiskUsage{AvailBytes: 3 << 30, TotalBytes: 10 << 30, UsedBytes: 7 << 30})
	s, _ := db.StoreStats()
	if !s.FilesystemKnown || s.FilesystemAvailBytes != 3<<30 || s.FilesystemBytes != 10<<30 {
		t.Errorf("file system: known %v, %d of %d bytes free: want 3 GiB of 10 GiB", s.FilesystemKnown, s.FilesystemAvailBytes, s.FilesystemBytes)
	}
}
