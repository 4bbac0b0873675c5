package httpapi

import (
	"github.com/prometheus/client_golang/prometheus"
)

// What an operator needs beside the API's own metrics: the storage
// engine's figures (StoreStats), which binary runs (BuildInfo), and the
// drain that takes an instance out of a load balancer before its
// listener closes (Drain).

// StoreStats is a snapshot of the storage engine under the journal and of
// the file system holding it, polled at each scrape of /metrics
// (Config.StoreStats). Sizes are in bytes; Compactions, Flushes and
// WALWrittenBytes only grow.
type StoreStats struct {
	DiskBytes           uint64 // the store's files on disk, logs included
	WALBytes            uint64 // the live write-ahead log files
	WALWrittenBytes     uint64 // written to the log since the store opened
	MemTableBytes       uint64 // memory held by memtables
	CompactionDebtBytes uint64 // estimated bytes to compact before the tree is stable
	Compactions         int64  // done since the store opened
	CompactionsRunning  int64  // running now
	Flushes             int64  // memtable flushes since the store opened
	ReadAmplification   int    // tables a point read may look in
	L0Tables            int64  // tables in level 0
	// FilesystemKnown is false when the file system cannot tell its size:
	// FilesystemBytes and FilesystemAvailBytes are then not exported.
	FilesystemKnown                       bool
	FilesystemBytes, FilesystemAvailBytes uint64
}

// BuildInfo names the running binary (Config.Build); exported as
// slotd_build_info with value 1.
type BuildInfo struct {
	Version, Commit, GoVersion string
}

// Drain turns /readyz to 503 "draining" while the API goes on answering
// as before, so that load balancers stop sending new requests before the
// listener closes (cmd/slotd -shutdown-delay). Shutdown follows it. Safe
// for concurrent use; there is no way back.
func (s *Server) Drain() { s.draining.Store(true) }

// storeCollector polls Config.StoreStats at scrape time.
type storeCollector struct {
	stats func() (StoreStats, bool)
}

var (
	descSDisk        = prometheus.NewDesc(metricStoreDisk, "Bytes of the storage engine's files on disk: tables, write-ahead logs, manifest.", nil, nil)
	descSWAL         = prometheus.NewDesc(metricStoreWAL, "Bytes of the storage engine's live write-ahead log files.", nil, nil)
	descSWALWritten  = prometheus.NewDesc(metricStoreWALWritten, "Bytes written to the storage engine's write-ahead log.", nil, nil)
	descSMemTable    = prometheus.NewDesc(metricStoreMemTable, "Bytes of memory held by the storage engine's memtables.", nil, nil)
	descSDebt        = prometheus.NewDesc(metricStoreCompactionDebt, "Estimated bytes the storage engine must compact before its tree is stable again.", nil, nil)
	descSCompactions = prometheus.NewDesc(metricStoreCompactions, "Compactions the storage engine finished.", nil, nil)
	descSRunning     = prometheus.NewDesc(metricStoreCompactionsRunning, "Compactions the storage engine is running.", nil, nil)
	descSFlushes     = prometheus.NewDesc(metricStoreFlushes, "Memtable flushes of the storage engine.", nil, nil)
	descSReadAmp     = prometheus.NewDesc(metricStoreReadAmp, "Tables a point read may have to look in: L0 sublevels plus non-empty levels below.", nil, nil)
	descSL0          = prometheus.NewDesc(metricStoreL0Tables, "Tables in the storage engine's level 0.", nil, nil)
	descSFSSize      = prometheus.NewDesc(metricStoreFSSize, "Size in bytes of the file system holding the data directory.", nil, nil)
	descSFSAvail     = prometheus.NewDesc(metricStoreFSAvail, "Bytes slotd may still write on the file system holding the data directory.", nil, nil)
	descBuildInfo    = prometheus.NewDesc(metricBuildInfo, "The running binary: its version, commit and Go version; always 1.", []string{"version", "commit", "goversion"}, nil)
)

func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descSDisk, descSWAL, descSWALWritten, descSMemTable, descSDebt,
		descSCompactions, descSRunning, descSFlushes, descSReadAmp, descSL0, descSFSSize, descSFSAvail} {
		ch <- d
	}
}

func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	st, ok := c.stats()
	if !ok {
		return
	}
	gauge := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	counter := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	gauge(descSDisk, float64(st.DiskBytes))
	gauge(descSWAL, float64(st.WALBytes))
	counter(descSWALWritten, float64(st.WALWrittenBytes))
	gauge(descSMemTable, float64(st.MemTableBytes))
	gauge(descSDebt, float64(st.CompactionDebtBytes))
	counter(descSCompactions, float64(st.Compactions))
	gauge(descSRunning, float64(st.CompactionsRunning))
	counter(descSFlushes, float64(st.Flushes))
	gauge(descSReadAmp, float64(st.ReadAmplification))
	gauge(descSL0, float64(st.L0Tables))
	if st.FilesystemKnown {
		gauge(descSFSSize, float64(st.FilesystemBytes))
		gauge(descSFSAvail, float64(st.FilesystemAvailBytes))
	}
}

// NewStoreCollector exports the storage metrics of Config.StoreStats
// polled from stats at each scrape, for a registry of the caller's own
// (a cluster node's, whose stores are not one Server's).
func NewStoreCollector(stats func() (StoreStats, bool)) prometheus.Collector {
	return &storeCollector{stats: stats}
}

// NewBuildInfoCollector exports slotd_build_info for b, for a registry of
// the caller's own.
func NewBuildInfoCollector(b BuildInfo) prometheus.Collector { return buildInfoGauge(b) }

// buildInfoGauge is slotd_build_info for b.
func buildInfoGauge(b BuildInfo) prometheus.Collector {
	return constCollector{prometheus.MustNewConstMetric(descBuildInfo, prometheus.GaugeValue, 1, b.Version, b.Commit, b.GoVersion)}
}

// constCollector exports fixed metrics.
type constCollector []prometheus.Metric

func (c constCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range c {
		ch <- m.Desc()
	}
}

func (c constCollector) Collect(ch chan<- prometheus.Metric) {
	for _, m := range c {
		ch <- m
	}
}
