package httpapi

import (
	"errors"
	"net/http"
	"net/http/pprof"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"slotd/allocator"
)

// Metric names, spelled once. Counters end in _total, durations are in
// seconds (Prometheus conventions; TestMetricsLint runs promlint).
const (
	metricRequests          = "slotd_http_requests_total"
	metricRequestDuration   = "slotd_http_request_duration_seconds"
	metricRequestsInFlight  = "slotd_http_requests_in_flight"
	metricRateLimited       = "slotd_http_rate_limited_total"
	metricAcceptErrors      = "slotd_http_accept_errors_total"
	metricConnections       = "slotd_http_connections"
	metricConnectionsMax    = "slotd_http_connections_max"
	metricReady             = "slotd_ready"
	metricHolds             = "slotd_engine_holds_total"
	metricConflicts         = "slotd_engine_slot_conflicts_total"
	metricTransitions       = "slotd_engine_transitions_total"
	metricReschedules       = "slotd_engine_reschedules_total"
	metricReminders         = "slotd_engine_reminders_total"
	metricReleases          = "slotd_engine_releases_total"
	metricEngineCommitErrs  = "slotd_engine_commit_errors_total"
	metricLotteryEntries    = "slotd_engine_lottery_entries_total"
	metricWatchMatches      = "slotd_engine_watch_matches_total"
	metricBookings          = "slotd_engine_bookings"
	metricBookingsInStatus  = "slotd_engine_bookings_in_status"
	metricTimersPending     = "slotd_engine_timers_pending"
	metricWatches           = "slotd_engine_watches"
	metricApplicants        = "slotd_engine_applicants"
	metricDegraded          = "slotd_engine_degraded"
	metricOfficeFreeSeats   = "slotd_office_free_seats"
	metricJournalCommits    = "slotd_journal_commits_total"
	metricJournalCommitErrs = "slotd_journal_commit_errors_total"
	metricJournalGroups     = "slotd_journal_groups_total"
	metricJournalSyncs      = "slotd_journal_syncs_total"
	metricJournalSyncErrs   = "slotd_journal_sync_errors_total"
	metricJournalBatchBytes = "slotd_journal_batch_bytes_total"
	metricJournalEvents     = "slotd_journal_events_total"
	metricJournalIdem       = "slotd_journal_idempotency_records_total"
	metricJournalCommitDur  = "slotd_journal_commit_duration_seconds"
	metricJournalSyncDur    = "slotd_journal_fsync_duration_seconds"
	metricJournalRecovery   = "slotd_journal_recovery_duration_seconds"
	metricJournalRecovered  = "slotd_journal_recovered_bookings"

	metricStoreDisk               = "slotd_store_disk_usage_bytes"
	metricStoreWAL                = "slotd_store_wal_bytes"
	metricStoreWALWritten         = "slotd_store_wal_written_bytes_total"
	metricStoreMemTable           = "slotd_store_memtable_bytes"
	metricStoreCompactionDebt     = "slotd_store_compaction_debt_bytes"
	metricStoreCompactions        = "slotd_store_compactions_total"
	metricStoreCompactionsRunning = "slotd_store_compactions_running"
	metricStoreFlushes            = "slotd_store_flushes_total"
	metricStoreReadAmp            = "slotd_store_read_amplification"
	metricStoreL0Tables           = "slotd_store_l0_tables"
	metricStoreFSSize             = "slotd_store_filesystem_size_bytes"
	metricStoreFSAvail            = "slotd_store_filesystem_avail_bytes"
	metricBuildInfo               = "slotd_build_info"
)

// labelOther is the method label of unmatched requests: arbitrary methods
// must not create label values.
const labelOther = "other"

// httpLatencyBuckets, in seconds: from sub-millisecond reads to long-polls.
var httpLatencyBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

// metrics are the edge's collectors. Safe for concurrent use.
type metrics struct {
	requests  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	inFlight  prometheus.Gauge
	unmatched prometheus.Observer
	// limitedKey, limitedApplicant, limitedConns and limitedAuth count
	// 429 answers by the limit that refused: a key's bucket, an
	// applicant's hold bucket, an address's connections, or an address's
	// failed authentications (one metric, labelled by limit).
	limitedKey, limitedApplicant, limitedConns, limitedAuth prometheus.Counter
}

// routeMetrics are a route's pre-resolved latency observer.
type routeMetrics struct {
	latency prometheus.Observer
}

func newMetrics(s *Server, reg *prometheus.Registry, routes []*route) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: metricRequests, Help: "API requests by route pattern, method and HTTP status code.",
		}, []string{"route", "method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: metricRequestDuration, Help: "API request latency by route pattern and method, in seconds.",
			Buckets: httpLatencyBuckets,
		}, []string{"route", "method"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: metricRequestsInFlight, Help: "API requests being served.",
		}),
	}
	limited := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: metricRateLimited, Help: "Requests and connections refused with 429, by the limit that refused them: key, applicant, connections or auth (an address's failed authentications).",
	}, []string{"limit"})
	m.limitedKey = limited.WithLabelValues("key")
	m.limitedApplicant = limited.WithLabelValues("applicant")
	m.limitedConns = limited.WithLabelValues("connections")
	m.limitedAuth = limited.WithLabelValues("auth")
	for _, rt := range routes {
		rt.metrics.latency = m.latency.WithLabelValues(rt.pattern, rt.method)
	}
	m.unmatched = m.latency.WithLabelValues(routeUnmatched, labelOther)
	ready := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: metricReady, Help: "1 when the server accepts API requests (recovered, not shutting down).",
	}, func() float64 { return boolFloat(s.ready.Load()) })
	cs := []prometheus.Collector{m.requests, m.latency, m.inFlight, limited, ready, &engineCollector{s: s}}
	if s.cfg.JournalStats != nil {
		cs = append(cs, &journalCollector{stats: s.cfg.JournalStats})
	}
	if s.cfg.StoreStats != nil {
		cs = append(cs, &storeCollector{stats: s.cfg.StoreStats})
	}
	if s.cfg.Build != (BuildInfo{}) {
		cs = append(cs, buildInfoGauge(s.cfg.Build))
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, c := range []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if err := reg.Register(c); err != nil && !errors.As(err, &prometheus.AlreadyRegisteredError{}) {
			return nil, err
		}
	}
	return m, nil
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// observe records one request.
func (m *metrics) observe(rt *route, method string, status int, latency time.Duration) {
	code := strconv.Itoa(status)
	if rt == nil {
		m.requests.WithLabelValues(routeUnmatched, labelOther, code).Inc()
		m.unmatched.Observe(latency.Seconds())
		return
	}
	m.requests.WithLabelValues(rt.pattern, rt.method, code).Inc()
	rt.metrics.latency.Observe(latency.Seconds())
}

// engineCollector turns Engine.Stats and Engine.Offices into metrics at
// scrape time. Safe for concurrent use.
type engineCollector struct{ s *Server }

var (
	descHolds          = prometheus.NewDesc(metricHolds, "Bookings created (held, or held and confirmed at once).", nil, nil)
	descConflicts      = prometheus.NewDesc(metricConflicts, "Claims that found the wanted seat taken.", nil, nil)
	descTransitions    = prometheus.NewDesc(metricTransitions, "Booking transitions by the status entered.", []string{"status"}, nil)
	descReschedules    = prometheus.NewDesc(metricReschedules, "Bookings moved to a new seat.", nil, nil)
	descReminders      = prometheus.NewDesc(metricReminders, "reminder.due events emitted.", nil, nil)
	descReleases       = prometheus.NewDesc(metricReleases, "slots.released events emitted.", nil, nil)
	descCommitErrs     = prometheus.NewDesc(metricEngineCommitErrs, "Journal commits the engine saw fail.", nil, nil)
	descLotteryEntries = prometheus.NewDesc(metricLotteryEntries, "Hold requests that waited for a release lottery draw.", nil, nil)
	descWatchMatches   = prometheus.NewDesc(metricWatchMatches, "Watches served a freed or released seat.", nil, nil)
	descBookings       = prometheus.NewDesc(metricBookings, "Bookings in memory, archive included.", nil, nil)
	descInStatus       = prometheus.NewDesc(metricBookingsInStatus, "Bookings now in each status (held ones are the hold backlog).", []string{"status"}, nil)
	descTimers         = prometheus.NewDesc(metricTimersPending, "Scheduled hold expiries, no-shows and reminders.", nil, nil)
	descWatches        = prometheus.NewDesc(metricWatches, "Active watches.", nil, nil)
	descApplicants     = prometheus.NewDesc(metricApplicants, "Applicants with state in memory: a booking (archive included) or a hold under way.", nil, nil)
	descDegraded       = prometheus.NewDesc(metricDegraded, "1 after a storage failure (journal, idempotency store or event feed) stopped all writes.", nil, nil)
	descFreeSeats      = prometheus.NewDesc(metricOfficeFreeSeats, "Free seats over an office's released bookable dates.", []string{"office"}, nil)
)

func (c *engineCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descHolds, descConflicts, descTransitions, descReschedules, descReminders,
		descReleases, descCommitErrs, descLotteryEntries, descWatchMatches, descBookings, descInStatus, descTimers, descWatches,
		descApplicants, descDegraded, descFreeSeats} {
		ch <- d
	}
}

func (c *engineCollector) Collect(ch chan<- prometheus.Metric) {
	e := c.s.engine
	st := e.Stats()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter(descHolds, st.Holds)
	counter(descConflicts, st.SlotTaken)
	for status, n := range st.Transitions {
		counter(descTransitions, n, status)
	}
	counter(descReschedules, st.Reschedules)
	counter(descReminders, st.Reminders)
	counter(descReleases, st.Releases)
	counter(descCommitErrs, st.CommitErrors)
	counter(descLotteryEntries, st.LotteryEntries)
	counter(descWatchMatches, st.WatchMatches)
	gauge(descBookings, float64(st.Bookings))
	for status, n := range st.InStatus {
		gauge(descInStatus, float64(n), status)
	}
	gauge(descTimers, float64(st.TimersPending))
	gauge(descWatches, float64(st.Watches))
	gauge(descApplicants, float64(st.Applicants))
	gauge(descDegraded, boolFloat(st.Degraded))
	if st.Degraded {
		c.s.logDegraded()
	}
	for _, o := range e.Offices(c.s.now(), allocator.OfficeFilter{}) {
		gauge(descFreeSeats, float64(o.FreeSeats), o.Config.ID)
	}
}

// journalCollector polls Config.JournalStats at scrape time.
type journalCollector struct{ stats func() JournalStats }

var (
	descJCommits    = prometheus.NewDesc(metricJournalCommits, "Acknowledged journal commits.", nil, nil)
	descJCommitErrs = prometheus.NewDesc(metricJournalCommitErrs, "Journal commits that failed.", nil, nil)
	descJGroups     = prometheus.NewDesc(metricJournalGroups, "Batches the journal's commits were written in; commits per group is the group-commit size.", nil, nil)
	descJSyncs      = prometheus.NewDesc(metricJournalSyncs, "fsyncs of the journal's log; commits per sync is the group-commit size.", nil, nil)
	descJSyncErrs   = prometheus.NewDesc(metricJournalSyncErrs, "fsyncs of the journal's log that failed.", nil, nil)
	descJBatchBytes = prometheus.NewDesc(metricJournalBatchBytes, "Bytes of committed journal batches.", nil, nil)
	descJEvents     = prometheus.NewDesc(metricJournalEvents, "Events appended to the outbox.", nil, nil)
	descJIdem       = prometheus.NewDesc(metricJournalIdem, "Idempotency records written.", nil, nil)
	descJCommitDur  = prometheus.NewDesc(metricJournalCommitDur, "Latency of acknowledged journal commits, in seconds.", nil, nil)
	descJSyncDur    = prometheus.NewDesc(metricJournalSyncDur, "Latency of the journal log's fsyncs, in seconds.", nil, nil)
	descJRecovery   = prometheus.NewDesc(metricJournalRecovery, "Duration of the last recovery, in seconds.", nil, nil)
	descJRecovered  = prometheus.NewDesc(metricJournalRecovered, "Bookings the last recovery restored.", nil, nil)
)

func (c *journalCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descJCommits, descJCommitErrs, descJGroups, descJSyncs, descJSyncErrs, descJBatchBytes,
		descJEvents, descJIdem, descJCommitDur, descJSyncDur, descJRecovery, descJRecovered} {
		ch <- d
	}
}

func (c *journalCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.stats()
	for d, v := range map[*prometheus.Desc]uint64{
		descJCommits: st.Commits, descJCommitErrs: st.CommitErrors, descJGroups: st.Groups, descJSyncs: st.Syncs, descJSyncErrs: st.SyncErrors,
		descJBatchBytes: st.BatchBytes, descJEvents: st.Events, descJIdem: st.IdempotencyRecords,
	} {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	constHistogram(ch, descJCommitDur, st.CommitLatency)
	constHistogram(ch, descJSyncDur, st.SyncLatency)
	ch <- prometheus.MustNewConstMetric(descJRecovery, prometheus.GaugeValue, st.RecoveryDuration.Seconds())
	ch <- prometheus.MustNewConstMetric(descJRecovered, prometheus.GaugeValue, float64(st.RecoveryBookings))
}

// constHistogram sends h as a Prometheus histogram (cumulative buckets);
// nothing for a malformed snapshot.
func constHistogram(ch chan<- prometheus.Metric, d *prometheus.Desc, h LatencyHistogram) {
	if len(h.Counts) != len(h.Bounds)+1 {
		return
	}
	buckets := make(map[float64]uint64, len(h.Bounds))
	var cum uint64
	for i, b := range h.Bounds {
		cum += h.Counts[i]
		buckets[b.Seconds()] = cum
	}
	ch <- prometheus.MustNewConstHistogram(d, h.Count, h.Sum.Seconds(), buckets)
}

// AdminHandler serves the operations endpoints for the admin listener:
// /metrics, /healthz (the process is up), /readyz (200 when ready; 503
// "not ready" before recovery ends and during shutdown, 503 "draining"
// from Drain on while the API still answers, 503 "degraded:
// <cause>" once storage failed, degraded.go), /admin/backup (with
// Config.Backup, backup.go), POST /admin/reload-keys (with
// Config.KeysSource, reload.go) and /debug/pprof/.
func (s *Server) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(s.cfg.Registry, promhttp.HandlerOpts{ErrorLog: nil}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !s.ready.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("not ready\n"))
			return
		}
		if s.draining.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("draining\n"))
			return
		}
		if cause := s.engine.DegradedCause(); cause != nil {
			s.logDegraded()
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("degraded: " + cause.Error() + "\n"))
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	if s.cfg.Backup != nil {
		mux.HandleFunc("/admin/backup", s.backup)
	}
	if s.cfg.KeysSource != nil {
		mux.HandleFunc(RouteAdminReloadKeys, s.serveReloadKeys)
	}
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}
