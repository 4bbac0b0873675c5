package wal

// StoreStats is a snapshot of the Pebble store under the journal and of
// the file system that holds it, for the edge to export as metrics
// (pebble.Metrics, read at the moment of the call). Sizes are in bytes.
type StoreStats struct {
	// DiskBytes is what the store holds on disk: tables (live, obsolete
	// and zombie), logs (live and obsolete), manifest and options.
	DiskBytes uint64
	// WALBytes is the size of the live write-ahead log files;
	// WALWrittenBytes counts the bytes written to the log since Open.
	WALBytes, WALWrittenBytes uint64
	// MemTableBytes is the memory held by memtables.
	MemTableBytes uint64
	// CompactionDebtBytes is Pebble's estimate of the bytes to compact
	// before the tree's shape is stable again; it grows when writes
	// outrun compactions.
	CompactionDebtBytes uint64
	// Compactions and Flushes count those done since Open;
	// CompactionsRunning is how many run now.
	Compactions, Flushes int64
	CompactionsRunning   int64
	// ReadAmplification is the tables a point read may have to look in:
	// the sublevels of L0 plus the non-empty levels below it.
	ReadAmplification int
	// L0Files is the number of tables in level 0, where flushes land.
	L0Files int64
	// FilesystemKnown is false when the file system cannot say its size
	// (an in-memory one in tests); FilesystemBytes and
	// FilesystemAvailBytes are then 0. FilesystemAvailBytes is the space
	// this process may still write, as statfs(2) reports for the data
	// directory.
	FilesystemKnown                       bool
	FilesystemBytes, FilesystemAvailBytes uint64
}

// StoreStats returns a snapshot of the store's own metrics and of its
// file system's free space; ok is false once the DB is closed. It takes
// Pebble's metrics lock briefly and makes one statfs call: meant for a
// scrape every few seconds, not for a hot path.
func (db *DB) StoreStats() (s StoreStats, ok bool) {
	db.closeMu.RLock()
	defer db.closeMu.RUnlock()
	if db.closed {
		return StoreStats{}, false
	}
	m := db.pdb.Metrics()
	// Pebble learns a log file's physical size only when it closes the
	// file, so the log being written counts 0 in PhysicalSize (and in
	// DiskSpaceUsage) however large it is: take its live size instead.
	wal := max(m.WAL.PhysicalSize, m.WAL.Size)
	s = StoreStats{
		DiskBytes:           m.DiskSpaceUsage() - m.WAL.PhysicalSize + wal,
		WALBytes:            wal,
		WALWrittenBytes:     m.WAL.BytesWritten,
		MemTableBytes:       m.MemTable.Size,
		CompactionDebtBytes: m.Compact.EstimatedDebt,
		Compactions:         m.Compact.Count,
		Flushes:             m.Flush.Count,
		CompactionsRunning:  m.Compact.NumInProgress,
		ReadAmplification:   m.ReadAmp(),
		L0Files:             m.Levels[0].TablesCount,
	}
	if du, err := db.fs.GetDiskUsage(db.dir); err == nil {
		s.FilesystemKnown = true
		s.FilesystemBytes, s.FilesystemAvailBytes = du.TotalBytes, du.AvailBytes
	}
	return s, true
}
