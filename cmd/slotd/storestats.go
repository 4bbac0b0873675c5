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
		return edgeStoreStats(s), ok
	}
}

// nodeStoreStats polls every store of a cluster node (the Raft log's and
// each group's) as one: sizes and counts add up, read amplification is
// the worst store's, and the file system is the one of the data
// directory that holds them all. Not ok when no store is open.
func nodeStoreStats(dbs []*wal.DB) func() (httpapi.StoreStats, bool) {
	return func() (httpapi.StoreStats, bool) {
		var sum httpapi.StoreStats
		open := false
		for _, db := range dbs {
			w, ok := db.StoreStats()
			if !ok {
				continue
			}
			s := edgeStoreStats(w)
			open = true
			sum.DiskBytes += s.DiskBytes
			sum.WALBytes += s.WALBytes
			sum.WALWrittenBytes += s.WALWrittenBytes
			sum.MemTableBytes += s.MemTableBytes
			sum.CompactionDebtBytes += s.CompactionDebtBytes
			sum.Compactions += s.Compactions
			sum.CompactionsRunning += s.CompactionsRunning
			sum.Flushes += s.Flushes
			sum.ReadAmplification = max(sum.ReadAmplification, s.ReadAmplification)
			sum.L0Tables += s.L0Tables
			if s.FilesystemKnown && !sum.FilesystemKnown {
				sum.FilesystemKnown, sum.FilesystemBytes, sum.FilesystemAvailBytes = true, s.FilesystemBytes, s.FilesystemAvailBytes
			}
		}
		return sum, open
	}
}

func edgeStoreStats(s wal.StoreStats) httpapi.StoreStats {
	return httpapi.StoreStats{
		DiskBytes: s.DiskBytes, WALBytes: s.WALBytes, WALWrittenBytes: s.WALWrittenBytes, MemTableBytes: s.MemTableBytes,
		CompactionDebtBytes: s.CompactionDebtBytes, Compactions: s.Compactions, CompactionsRunning: s.CompactionsRunning,
		Flushes: s.Flushes, ReadAmplification: s.ReadAmplification, L0Tables: s.L0Files,
		FilesystemKnown: s.FilesystemKnown, FilesystemBytes: s.FilesystemBytes, FilesystemAvailBytes: s.FilesystemAvailBytes,
	}
}

// allStores returns every store of the node: the Raft log's, then each
// group's.
func (f *front) allStores() []*wal.DB {
	dbs := []*wal.DB{f.raftDB}
	for _, g := range f.groups {
		dbs = append(dbs, f.stores[g])
	}
	return dbs
}
