package wal

import (
	"strings"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// syncCountingFS wraps the FS Pebble writes through and counts and times
// fsyncs of write-ahead log files (names ending in ".log"). Commits divided
// by these syncs is the group-commit factor; their latency is what every
// commit waits for, and what a slow or busy disk shows in first. Safe for
// concurrent use.
type syncCountingFS struct {
	vfs.FS
	syncs       paddedUint64
	syncErrors  atomic.Uint64
	syncLatency latencyHistogram
}

func newSyncCountingFS(fs vfs.FS) *syncCountingFS { return &syncCountingFS{FS: fs} }

func (fs *syncCountingFS) wrap(name string, f vfs.File, err error) (vfs.File, error) {
	if err != nil || !strings.HasSuffix(name, ".log") {
		return f, err
	}
	return &syncCountingFile{File: f, fs: fs}, nil
}

// Create implements vfs.FS.
func (fs *syncCountingFS) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, category)
	return fs.wrap(name, f, err)
}

// OpenReadWrite implements vfs.FS.
func (fs *syncCountingFS) OpenReadWrite(name string, category vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := fs.FS.OpenReadWrite(name, category, opts...)
	return fs.wrap(name, f, err)
}

// ReuseForWrite implements vfs.FS.
func (fs *syncCountingFS) ReuseForWrite(oldname, newname string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, category)
	return fs.wrap(newname, f, err)
}

// Unwrap implements vfs.FS.
func (fs *syncCountingFS) Unwrap() vfs.FS { return fs.FS }

// syncCountingFile counts the syncs of one log file.
type syncCountingFile struct {
	vfs.File
	fs *syncCountingFS
}

func (f *syncCountingFile) count(start time.Time, err error) error {
	if err != nil {
		f.fs.syncErrors.Add(1)
	} else {
		f.fs.syncs.Add(1)
		f.fs.syncLatency.observe(time.Since(start))
	}
	return err
}

// timed runs sync and counts it.
func (f *syncCountingFile) timed(sync func() error) error {
	start := time.Now()
	return f.count(start, sync())
}

// Sync implements vfs.File.
func (f *syncCountingFile) Sync() error { return f.timed(f.File.Sync) }

// SyncData implements vfs.File.
func (f *syncCountingFile) SyncData() error { return f.timed(f.File.SyncData) }

// SyncTo implements vfs.File. Only a full sync counts: a partial one gives
// no durability.
func (f *syncCountingFile) SyncTo(length int64) (bool, error) {
	start := time.Now()
	full, err := f.File.SyncTo(length)
	if full || err != nil {
		f.count(start, err)
	}
	return full, err
}
