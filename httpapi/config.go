package httpapi

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"slotd/allocator"
)

// IdempotencyStore keeps the first responses of requests that carried an
// Idempotency-Key. Responses that came with a state change reach it inside
// the change (allocator.Change.Idempotency, written by the journal in the
// same atomic commit); responses without one (refusals) through
// PutIdempotency. Implementations must be safe for concurrent use and must
// not return from PutIdempotency before the record is durable.
type IdempotencyStore interface {
	// LookupIdempotency returns the record stored under key, if any.
	LookupIdempotency(key string) (*allocator.IdempotencyRecord, bool, error)
	// PutIdempotency stores rec durably.
	PutIdempotency(rec *allocator.IdempotencyRecord) error
}

// EventFeed is the ordered, durable outbox the journal writes. Safe for
// concurrent use.
type EventFeed interface {
	// ReadEvents returns up to limit events with cursor > after, in cursor
	// order, only ever events whose commit has completed.
	ReadEvents(after uint64, limit int) ([]allocator.Event, error)
	// EventsDeletedThrough returns retention's deletion mark: every event
	// with a cursor at or below it is deleted. Loaded after a ReadEvents,
	// it covers every event that read found deleted (wal W10).
	EventsDeletedThrough() uint64
	// Wait returns when an event with cursor > after is readable, or ctx
	// ends (then with ctx's error).
	Wait(ctx context.Context, after uint64) error
}

// JournalStats is a snapshot of the journal's counters, polled at each
// scrape of /metrics (Config.JournalStats). Counters only grow.
type JournalStats struct {
	// Commits counts acknowledged commits; CommitErrors failed ones.
	Commits, CommitErrors uint64
	// Groups counts the batches the commits were written in; Commits/Groups
	// is the mean group size.
	Groups uint64
	// Syncs counts fsyncs of the log; Commits/Syncs is how many commits
	// one fsync made durable.
	Syncs, SyncErrors uint64
	// BatchBytes is the sum of the sizes of committed batches.
	BatchBytes uint64
	// Events and IdempotencyRecords count what commits appended.
	Events, IdempotencyRecords uint64
	// CommitLatency is the latency of acknowledged commits; SyncLatency
	// that of the log's fsyncs.
	CommitLatency, SyncLatency LatencyHistogram
	// RecoveryDuration is how long the last recovery took; RecoveryBookings
	// how many bookings it restored.
	RecoveryDuration time.Duration
	RecoveryBookings uint64
}

// LatencyHistogram is a histogram snapshot: Counts[i] counts observations
// in (Bounds[i-1], Bounds[i]], per bucket (not cumulative); the last entry
// of Counts, one more than Bounds, is the +Inf bucket.
type LatencyHistogram struct {
	Bounds []time.Duration
	Counts []uint64
	Sum    time.Duration
	Count  uint64
}

// Defaults for the zero values of Config.
const (
	DefaultBodyBytesMax   = 64 << 10
	DefaultHeaderBytesMax = 8 << 10
	// DefaultWriteBufferBytes holds any day's availability answer, 288
	// starts of 256 windows (about 14 KiB with its headers), so that it
	// goes out in one system call.
	DefaultWriteBufferBytes = 16 << 10
	DefaultInFlightMax      = 4096
	DefaultPollersMax       = 1024
	DefaultRatePerSecond    = 1000
	// DefaultRatePerApplicant and DefaultRateApplicantBurst: a person
	// presses "book" once and perhaps again; a bot that fires ten times
	// in a second gets two through.
	DefaultRatePerApplicant   = 1
	DefaultRateApplicantBurst = 2
	DefaultReadTimeout        = 10 * time.Second
	DefaultWriteTimeout       = 10 * time.Second
	DefaultIdleTimeout        = 60 * time.Second
	DefaultConnsMax           = 64 << 10
	DefaultConnsPerIPMax      = 4096
	DefaultEventsWaitMax      = 30 * time.Second
	DefaultIdempotencyTTL     = 24 * time.Hour
	DefaultAlternativesMax    = 5
	// DefaultFilesReserved is the process's own file descriptors: the
	// standard streams, the network poller, the listeners, log files.
	DefaultFilesReserved = 64
)

// DefaultAuthFailRatePerSecond and DefaultAuthFailBurst: a client whose
// key is wrong or missing learns it from its first answers; keys are at
// least 16 random bytes, so what the limit saves is the work and the log
// lines of a source that keeps sending wrong ones.
const (
	DefaultAuthFailRatePerSecond = 1
	DefaultAuthFailBurst         = 20
)

// SecretBytesMin is the shortest ticket-signing secret accepted.
const SecretBytesMin = 32

// Config configures a Server. Zero values take the Default* constants
// unless said otherwise.
type Config struct {
	// Engine is the allocator. Required.
	Engine *allocator.Engine
	// Idempotency stores first responses. Required.
	Idempotency IdempotencyStore
	// Events is the outbox read by GET /v1/events. Required.
	Events EventFeed
	// Keys are the API keys (LoadKeys). At least one is required.
	Keys []Key
	// KeysSource reads the keys anew for Server.ReloadKeys (SIGHUP, and
	// POST /admin/reload-keys on the admin listener): the keys, or an
	// error that says what is wrong with them. Nil: the keys are never
	// reloaded and the admin listener has no such path.
	KeysSource func() ([]Key, error)
	// KeysFile names what KeysSource reads, the keys file's path: a
	// refused reload's error and log line begin with "keys file <path>:".
	KeysFile string
	// Limits, if set, are rate limits shared with the other Servers given
	// the same Limits: a key's bucket, an applicant's and a failing
	// address's count across them, as they would on one Server (a cluster
	// node runs a Server per Raft group it leads). The first Server sets
	// the applicant and failed-authentication limits; the others must be
	// configured alike. Nil: the Server's own.
	Limits *SharedLimits
	// WatchID, if set, returns the id a watch created by the request must
	// take (allocator.WatchRequest.ID), or false for a new one. A
	// cluster's front sets it for the parts of a region watch that spans
	// its groups, which share one id; it must never honour a client's
	// choice. Nil: every watch gets a new id.
	WatchID func(ctx *fasthttp.RequestCtx) (allocator.ID, bool)
	// Secret signs ticket tokens (HMAC-SHA256); at least 32 bytes. Tickets
	// stay valid as long as the secret does.
	Secret []byte
	// Logger receives the access log and errors. Nil: no logs. NewLogger
	// builds the production one (JSON, sampled).
	Logger *zap.Logger
	// Registry receives the metrics. Nil: a private registry, still
	// served by AdminHandler.
	Registry *prometheus.Registry
	// Now is the wall clock passed to every engine call. Nil: time.Now.
	Now func() time.Time
	// Steady is the clock of the edge's intervals: token buckets and the
	// age of idempotency records. It must not step when the system clock
	// is set (see clock.go). Nil: NewSteadyClock(), started by New.
	Steady func() time.Time
	// JournalStats, if set, is polled at each scrape for the journal
	// metrics. Nil: no journal metrics.
	JournalStats func() JournalStats
	// StoreStats, if set, is polled at each scrape for the storage
	// engine's metrics (ops.go); ok false exports none of them (the
	// store is closed). Nil: no storage metrics.
	StoreStats func() (StoreStats, bool)
	// Build names the running binary in slotd_build_info. Zero: no such
	// metric.
	Build BuildInfo
	// Backup, if set, is served on the admin listener as POST
	// /admin/backup?to=DIR (backup.go): it copies the running store into
	// DIR, an absolute path on the server, and returns a one-line
	// report. Nil: no backup route (404).
	Backup BackupFunc

	// BodyBytesMax bounds a request body, in bytes.
	BodyBytesMax int
	// HeaderBytesMax bounds the request line and headers, in bytes. It is
	// also the read buffer each open connection holds.
	HeaderBytesMax int
	// WriteBufferBytes is the write buffer each open connection holds
	// once it has answered, in bytes. An answer that fits, headers
	// included, is sent in one write system call, a larger one in two or
	// more, and each write is a large share of what a small answer
	// costs. With the defaults an open connection holds 24 KiB of
	// buffers. Zero: DefaultWriteBufferBytes.
	WriteBufferBytes int
	// InFlightMax bounds the requests inside the engine at once; beyond
	// it requests are shed with 503 overloaded at once, never queued.
	InFlightMax int
	// PollersMax bounds the GET /v1/events long-polls waiting at once.
	PollersMax int
	// RatePerSecond is each API key's sustained request rate (token
	// bucket refill, requests per second), unless the key has its own
	// (Key.RatePerSecond).
	RatePerSecond float64
	// RateBurst is each API key's bucket size, in requests, unless the key
	// has its own rate or size. Zero: twice RatePerSecond, at least 1.
	RateBurst int
	// RatePerApplicant is each applicant's sustained rate of hold requests
	// (POST /v1/bookings) per API key, in requests per second. It is
	// checked before the key's own bucket, so one applicant's repeats do
	// not spend the budget of the key's other applicants. Zero:
	// DefaultRatePerApplicant; negative: no per-applicant limit.
	RatePerApplicant float64
	// RateApplicantBurst is each applicant's bucket size. Zero:
	// DefaultRateApplicantBurst.
	RateApplicantBurst int
	// AuthFailRatePerSecond is each client address's sustained rate of
	// requests with a missing or unknown key (an IPv6 client's /64 counts
	// as one address), in requests per second; beyond it they answer 429
	// rate_limited instead of 401. Requests with a valid key are never
	// refused by it. Zero: DefaultAuthFailRatePerSecond; negative: no
	// limit.
	AuthFailRatePerSecond float64
	// AuthFailBurst is each address's bucket size, in failed requests.
	// Zero: DefaultAuthFailBurst.
	AuthFailBurst int
	// ReadTimeout bounds reading one request (headers and body), so a slow
	// client cannot hold a connection (slowloris).
	ReadTimeout time.Duration
	// WriteTimeout bounds writing one response.
	WriteTimeout time.Duration
	// IdleTimeout bounds a keep-alive connection's wait for its next request.
	IdleTimeout time.Duration
	// ConnsMax bounds open API connections in total. Zero:
	// DefaultConnsMax. Either is lowered, with a log line, to what the
	// process's file descriptor limit (RLIMIT_NOFILE) leaves after
	// FilesReserved and the admin listener's: past that limit accept
	// fails with EMFILE, and the store cannot open its files either
	// (connlimit.go, F1).
	ConnsMax int
	// FilesReserved is how many file descriptors to keep for everything
	// but connections: the store's files and the process's own. Zero:
	// DefaultFilesReserved, for a store that opens no files; a caller
	// with a store on disk adds what the store may hold open.
	FilesReserved int
	// ConnsPerIPMax bounds open connections per client IP. Load generators
	// on one host need it high.
	ConnsPerIPMax int
	// EventsWaitMax bounds the wait= of a GET /v1/events long-poll.
	EventsWaitMax time.Duration
	// IdempotencyTTL is how long a first response is returned again,
	// measured on the Steady clock.
	IdempotencyTTL time.Duration
	// AlternativesMax bounds the alternatives of a slot_taken answer.
	AlternativesMax int
}

// withDefaults returns cfg with zero values replaced by defaults.
func (cfg Config) withDefaults() Config {
	setInt := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	setDur := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	setInt(&cfg.BodyBytesMax, DefaultBodyBytesMax)
	setInt(&cfg.HeaderBytesMax, DefaultHeaderBytesMax)
	setInt(&cfg.WriteBufferBytes, DefaultWriteBufferBytes)
	setInt(&cfg.InFlightMax, DefaultInFlightMax)
	setInt(&cfg.PollersMax, DefaultPollersMax)
	if cfg.RatePerSecond == 0 {
		cfg.RatePerSecond = DefaultRatePerSecond
	}
	setInt(&cfg.RateBurst, int(min(max(1, 2*cfg.RatePerSecond), 1<<30)))
	if cfg.RatePerApplicant == 0 {
		cfg.RatePerApplicant = DefaultRatePerApplicant
	}
	setInt(&cfg.RateApplicantBurst, DefaultRateApplicantBurst)
	if cfg.AuthFailRatePerSecond == 0 {
		cfg.AuthFailRatePerSecond = DefaultAuthFailRatePerSecond
	}
	setInt(&cfg.AuthFailBurst, DefaultAuthFailBurst)
	setDur(&cfg.ReadTimeout, DefaultReadTimeout)
	setDur(&cfg.WriteTimeout, DefaultWriteTimeout)
	setDur(&cfg.IdleTimeout, DefaultIdleTimeout)
	setInt(&cfg.ConnsMax, DefaultConnsMax)
	setInt(&cfg.ConnsPerIPMax, DefaultConnsPerIPMax)
	setInt(&cfg.FilesReserved, DefaultFilesReserved)
	setDur(&cfg.EventsWaitMax, DefaultEventsWaitMax)
	setDur(&cfg.IdempotencyTTL, DefaultIdempotencyTTL)
	setInt(&cfg.AlternativesMax, DefaultAlternativesMax)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Steady == nil {
		cfg.Steady = NewSteadyClock()
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	return cfg
}

// validate checks a Config after withDefaults.
func (cfg *Config) validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf("httpapi: "+format, args...)) }
	if cfg.Engine == nil {
		add("Config.Engine is required")
	}
	if cfg.Idempotency == nil {
		add("Config.Idempotency is required (the journal's idempotency store)")
	}
	if cfg.Events == nil {
		add("Config.Events is required (the journal's event feed)")
	}
	if err := validateKeys(cfg.Keys); err != nil {
		add("Config.Keys: %v", err)
	}
	if len(cfg.Secret) < SecretBytesMin {
		add("Config.Secret must be at least %d bytes (it signs tickets)", SecretBytesMin)
	}
	positive := func(name string, v int, lo, hi int) {
		if v < lo || v > hi {
			add("Config.%s %d must be in %d..%d", name, v, lo, hi)
		}
	}
	positive("BodyBytesMax", cfg.BodyBytesMax, 1<<10, 16<<20)
	positive("HeaderBytesMax", cfg.HeaderBytesMax, 1<<10, 1<<20)
	positive("WriteBufferBytes", cfg.WriteBufferBytes, 1<<10, 1<<20)
	positive("InFlightMax", cfg.InFlightMax, 1, 1<<20)
	positive("PollersMax", cfg.PollersMax, 1, 1<<20)
	positive("RateBurst", cfg.RateBurst, 1, 1<<30)
	positive("RateApplicantBurst", cfg.RateApplicantBurst, 1, 1<<20)
	positive("AuthFailBurst", cfg.AuthFailBurst, 1, 1<<20)
	positive("ConnsMax", cfg.ConnsMax, 1, 1<<24)
	positive("ConnsPerIPMax", cfg.ConnsPerIPMax, 1, 1<<24)
	positive("FilesReserved", cfg.FilesReserved, 1, 1<<24)
	positive("AlternativesMax", cfg.AlternativesMax, 1, 100)
	if cfg.RatePerSecond < 0 || cfg.RatePerSecond > 1e9 {
		add("Config.RatePerSecond %g must be in (0, 1e9]", cfg.RatePerSecond)
	}
	if cfg.RatePerApplicant > 1e6 || math.IsNaN(cfg.RatePerApplicant) {
		add("Config.RatePerApplicant %g must be at most 1e6 (negative: off)", cfg.RatePerApplicant)
	}
	if cfg.AuthFailRatePerSecond > 1e6 || math.IsNaN(cfg.AuthFailRatePerSecond) {
		add("Config.AuthFailRatePerSecond %g must be at most 1e6 (negative: off)", cfg.AuthFailRatePerSecond)
	}
	for name, d := range map[string]time.Duration{
		"ReadTimeout": cfg.ReadTimeout, "WriteTimeout": cfg.WriteTimeout, "IdleTimeout": cfg.IdleTimeout,
		"EventsWaitMax": cfg.EventsWaitMax, "IdempotencyTTL": cfg.IdempotencyTTL,
	} {
		if d < 0 {
			add("Config.%s %s must not be negative", name, d)
		}
	}
	if cfg.EventsWaitMax > 10*time.Minute {
		add("Config.EventsWaitMax %s must be at most 10m", cfg.EventsWaitMax)
	}
	return errors.Join(errs...)
}

// NewLogger builds the production logger: JSON to stderr, sampled (the
// first 100 identical messages a second, then every 100th), at level
// ("debug", "info", "warn", "error").
func NewLogger(level string) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("log level %q: use debug, info, warn or error", level)
	}
	zc := zap.NewProductionConfig()
	zc.Level = zap.NewAtomicLevelAt(lvl)
	zc.EncoderConfig.TimeKey = "ts"
	zc.EncoderConfig.EncodeTime = zapcore.RFC3339NanoTimeEncoder
	return zc.Build()
}
