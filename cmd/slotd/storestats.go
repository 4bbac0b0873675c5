package main

import (
	"slotd/httpapi"
	"slotd/wal"
)

// storeStats polls the store's own figures for /metrics
// (httpapi.Config.StoreStats).
func storeStats(db *wal.DB) func() (httpapi.StoreStats, bool) {
	return func() (httpapi.StoreStats, bool) {
		s, ok := db.StoreStats()
		return httpapi.StoreStats{
			DiskBytes: s.DiskBytes, WALBytes: s.WALBytes, WALWrittenBytes: s.WALWrittenBytes, MemTableBytes: s.MemTableBytes,
			CompactionDebtBytes: s.CompactionDebtBytes, Compactions: s.Compactions, CompactionsRunning: s.CompactionsRunning,
			Flushes: s.Flushes, ReadAmplification: s.ReadAmplification, L0Tables: s.L0Files,
			FilesystemKnown: s.FilesystemKnown, FilesystemBytes: s.FilesystemBytes, FilesystemAvailBytes: s.FilesystemAvailBytes,
		}, ok
	}
}
