package wal

import (
	"sync/atomic"
	"time"
)

// paddedUint64 is a counter alone on its cache line: the commit path adds to
// several of them from every committing goroutine, and sharing a line would
// make them contend for nothing.
type paddedUint64 struct {
	atomic.Uint64
	_ [56]byte
}

// CommitLatencyBuckets are the upper bounds of the latency histograms
// (Stats.CommitLatency, Stats.WALSyncLatency), in the style of Prometheus
// buckets; a final +Inf bucket is implied. A commit's latency runs from its
// queueing to its acknowledgement (group commit wait, write and fsync).
var CommitLatencyBuckets = [...]time.Duration{
	50 * time.Microsecond,
	100 * time.Microsecond,
	250 * time.Microsecond,
	500 * time.Microsecond,
	time.Millisecond,
	2500 * time.Microsecond,
	5 * time.Millisecond,
	10 * time.Millisecond,
	25 * time.Millisecond,
	50 * time.Millisecond,
	100 * time.Millisecond,
	250 * time.Millisecond,
	time.Second,
}

// latencyHistogram counts observations per bucket. Safe for concurrent use:
// every field is an atomic written with Add only.
type latencyHistogram struct {
	counts       [len(CommitLatencyBuckets) + 1]paddedUint64
	sumNanos     paddedUint64
	observations paddedUint64
}

func (h *latencyHistogram) observe(d time.Duration) {
	i := 0
	for i < len(CommitLatencyBuckets) && d > CommitLatencyBuckets[i] {
		i++
	}
	h.counts[i].Add(1)
	if d > 0 {
		h.sumNanos.Add(uint64(d))
	}
	h.observations.Add(1)
}

// Histogram is a snapshot of a latency histogram. Counts[i] counts the
// observations in (Bounds[i-1], Bounds[i]]; the last entry of Counts is the
// +Inf bucket. Counts are per bucket, not cumulative.
type Histogram struct {
	Bounds []time.Duration
	Counts []uint64
	Sum    time.Duration
	Count  uint64
}

// Mean returns the mean observation, 0 when there is none.
func (h Histogram) Mean() time.Duration {
	if h.Count == 0 {
		return 0
	}
	return h.Sum / time.Duration(h.Count)
}

func (h *latencyHistogram) snapshot() Histogram {
	s := Histogram{Bounds: CommitLatencyBuckets[:], Counts: make([]uint64, len(h.counts))}
	for i := range h.counts {
		s.Counts[i] = h.counts[i].Load()
	}
	s.Sum = time.Duration(h.sumNanos.Load())
	s.Count = h.observations.Load()
	return s
}

// stats holds the DB's counters. Safe for concurrent use: every field is an
// atomic, and each is written only by Add (or Store during Open/Recover).
type stats struct {
	commits       paddedUint64 // successful Commit calls that wrote something
	commitErrors  paddedUint64
	groups        paddedUint64 // batches the committers wrote
	batchBytes    paddedUint64 // sum of committed batch sizes
	events        paddedUint64 // events appended
	idempotency   paddedUint64 // idempotency records written
	commitLatency latencyHistogram

	backgroundErrors atomic.Uint64
	corruptions      atomic.Uint64

	sweepIdempotencyDeleted atomic.Uint64
	sweepEventsDeleted      atomic.Uint64

	recoveryOffices  atomic.Uint64
	recoveryBookings atomic.Uint64
	recoveryNanos    atomic.Int64
}

// Stats is a snapshot of the DB's counters, for the edge to export as
// metrics. Counters only grow while the DB is open.
type Stats struct {
	// Commits counts acknowledged commits (Commit and PutIdempotency that
	// wrote a batch and returned nil).
	Commits uint64
	// CommitErrors counts commits that returned an error.
	CommitErrors uint64
	// Groups counts the batches the committers wrote; Commits/Groups is
	// the mean number of changes per batch.
	Groups uint64
	// WALSyncs counts fsyncs of the write-ahead log. Commits/WALSyncs is the
	// mean group-commit size.
	WALSyncs uint64
	// WALSyncErrors counts fsyncs of the write-ahead log that failed.
	WALSyncErrors uint64
	// WALSyncLatency is the latency of the successful fsyncs of the
	// write-ahead log.
	WALSyncLatency Histogram
	// BatchBytes is the sum of the sizes of committed batches.
	BatchBytes uint64
	// Events counts events appended; IdempotencyRecords counts idempotency
	// records written.
	Events, IdempotencyRecords uint64
	// CommitLatency is the latency of acknowledged commits.
	CommitLatency Histogram
	// PublishedCursor is the event cursor readers can read up to.
	PublishedCursor uint64
	// Degraded is true after a failed write or sync.
	Degraded bool
	// BackgroundErrors counts errors of Pebble's background work (flushes,
	// compactions); Corruptions counts data corruption Pebble reported.
	BackgroundErrors, Corruptions uint64
	// SweepIdempotencyDeleted and SweepEventsDeleted count what Sweep removed.
	SweepIdempotencyDeleted, SweepEventsDeleted uint64
	// RecoveryOffices and RecoveryBookings count what the last Recover
	// restored; RecoveryDuration is how long it took.
	RecoveryOffices, RecoveryBookings uint64
	RecoveryDuration                  time.Duration
}
