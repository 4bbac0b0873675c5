// Command slotd serves the slot allocation API (DESIGN §3) on fasthttp,
// with the engine in memory and its journal on Pebble. It parses flags,
// builds the parts, recovers, serves, and drains on SIGTERM.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"reflect"
	"runtime"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"slotd/allocator"
	"slotd/httpapi"
	"slotd/wal"
)

const (
	tickInterval    = 100 * time.Millisecond // hold expiry, releases, lottery draws
	sweepInterval   = time.Minute            // idempotency and event retention
	shutdownTimeout = 30 * time.Second       // in-flight requests get this long to finish
	// storeFilesMax is the file descriptors the Pebble store may hold:
	// its table cache's default bound (pebble.Options.MaxOpenFiles, 1000)
	// and its logs, manifest, lock and directories. The API's connection
	// cap leaves them free (httpapi.Config.FilesReserved).
	storeFilesMax = 1000 + 64
)

func main() {
	spareProc(os.Getenv)
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// spareProc runs Go code on one more scheduler P than the runtime's
// default (the usable cores), unless GOMAXPROCS is set. The journal's
// goroutines spend much of their time in write and fdatasync system
// calls; with a P per core, a core whose thread waits in one runs no Go
// code until the runtime hands that P on, and the cores sit partly idle
// while there is Go code to run. On two cores the spare P raised the
// engine's durable bookings by about a third (BenchmarkEngineDurableHold
// at 1,024 callers, -cpu 3 against -cpu 2). The price: once GOMAXPROCS
// is set by the program, the runtime no longer follows changes of a
// cgroup's CPU limit while slotd runs; a restart picks a new limit up.
func spareProc(getenv func(string) string) {
	if getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(runtime.GOMAXPROCS(0) + 1)
	}
}

func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) > 0 && subcommands[args[0]] != nil {
		return subcommands[args[0]](args[1:], getenv, stdout, stderr)
	}
	opts, err := parseOptions(args, getenv, stderr)
	if err != nil {
		if errors.Is(err, errHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "slotd:", err)
		return 2
	}
	if opts.version {
		printVersion(stdout)
		return 0
	}
	return start(opts, stdout, stderr)
}

// start runs slotd with parsed options and returns its exit status: 2
// when a keys or offices file is bad (files.go), 1 when it stops on an
// error, which it logs (a full disk at start too).
func start(opts options, stdout, stderr io.Writer) int {
	log, err := httpapi.NewLogger(opts.logLevel)
	if err != nil {
		fmt.Fprintln(stderr, "slotd:", err)
		return 2
	}
	defer log.Sync()
	files, err := readStartFiles(opts, stdout)
	if err != nil {
		fmt.Fprintln(stderr, "slotd:", err)
		return 2
	}
	if err := serve(opts, files, log); err != nil {
		log.Error("slotd stopped", zap.Error(err))
		return 1
	}
	return 0
}

func serve(opts options, files startFiles, log *zap.Logger) error {
	hup, stopHup := notifyHangup()
	defer stopHup()
	if opts.cluster.nodeID != 0 {
		return serveCluster(opts, files, log, hup)
	}
	secret, err := ticketSecret(opts.data)
	if err != nil {
		return err
	}
	db, err := wal.Open(opts.data, wal.Options{Logger: log.Sugar().Named("pebble"), FS: opts.dataFS})
	if err != nil {
		return fmt.Errorf("cannot open data directory %s: %w", opts.data, err)
	}
	defer db.Close()
	engine, err := allocator.New(allocator.Config{Journal: db})
	if err != nil {
		return err
	}
	// One steady clock stamps idempotency records (httpapi) and sweeps
	// them (the journal), so a wall clock set forward deletes none early.
	steady := httpapi.NewSteadyClock()
	census := &legacyCensus{Engine: engine}
	srv, err := httpapi.New(httpapi.Config{
		Engine: engine, Idempotency: db, Events: db, Secret: secret, Steady: steady,
		Keys: files.keys, KeysSource: keysSource(opts, census), KeysFile: keysPath(opts),
		Logger: log, Registry: prometheus.NewRegistry(), JournalStats: journalStats(db),
		RatePerSecond: opts.ratePerKey, RateBurst: opts.rateBurst, InFlightMax: opts.inFlightMax,
		RatePerApplicant: applicantRate(opts.ratePerApplicant), RateApplicantBurst: opts.rateApplicantBurst,
		FilesReserved: httpapi.DefaultFilesReserved + storeFilesMax, Backup: storeBackup(db),
		StoreStats: storeStats(db), Build: buildInfo(),
	})
	if err != nil {
		return err
	}

	// The admin listener comes up first: /readyz says false until
	// recovery ends. Shutdown closes it once the API has drained; on the
	// way out after a failed start, closing the listener ends it.
	adminLn, err := net.Listen("tcp", opts.adminAddr)
	if err != nil {
		return fmt.Errorf("admin listener: %w", err)
	}
	go srv.ServeAdmin(adminLn)
	defer adminLn.Close()

	st, err := wal.Recover(db, census, time.Now())
	if err != nil {
		return fmt.Errorf("recovery: %w", err)
	}
	if err := httpapi.CheckLegacyBookings(files.keys, int(census.active.Load())); err != nil {
		return err
	}
	if err := engine.Tick(time.Now()); err != nil {
		return fmt.Errorf("after recovery: %w", err)
	}
	log.Info("recovered", zap.Int("offices", st.Offices), zap.Int("bookings", st.Bookings),
		zap.Int("active_bookings", st.ActiveBookings), zap.Int64("legacy_namespace_bookings", census.bookings.Load()),
		zap.Int("watches", st.Watches), zap.Duration("took", st.Duration))
	for _, cfg := range files.offices {
		if cur, err := engine.Office(cfg.ID); err == nil && reflect.DeepEqual(cur.Config, cfg) {
			continue
		}
		if _, err := engine.PutOffice(time.Now(), cfg, allocator.Meta{Actor: "config"}); err != nil {
			return fmt.Errorf("office %s: %w", cfg.ID, err)
		}
	}

	apiLn, err := net.Listen("tcp", opts.addr)
	if err != nil {
		return fmt.Errorf("API listener: %w", err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(apiLn) }()
	stop := make(chan struct{})
	done := make(chan struct{})
	go background(engine, db, steady, log, stop, done)
	// Signals are caught from before the ready line on: a SIGTERM sent
	// as soon as slotd says it is ready drains it, never kills it.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	srv.SetReady(true)
	go reloadOnHangup(srv, hup, stop)
	log.Info("slotd ready", zap.String("addr", apiLn.Addr().String()), zap.String("admin_addr", adminLn.Addr().String()),
		zap.String("data", opts.data), zap.Int("gomaxprocs", runtime.GOMAXPROCS(0)))

	select {
	case s := <-sig:
		log.Info("draining", zap.String("signal", s.String()))
	case err := <-served:
		return fmt.Errorf("API listener: %w", err)
	}
	drainDelay(srv.Drain, opts.shutdownDelay, sig, log)
	srv.SetReady(false)
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		log.Warn("shutdown did not finish cleanly", zap.Error(err))
	}
	close(stop)
	<-done
	if err := db.Close(); err != nil {
		return fmt.Errorf("closing the store: %w", err)
	}
	log.Info("stopped")
	return nil
}

// background drives time: Tick (expiries, releases, lottery draws,
// reminders) on the wall clock, and the journal's retention sweep on the
// steady clock that stamps idempotency records (httpapi/clock.go).
func background(e *allocator.Engine, db *wal.DB, steady func() time.Time, log *zap.Logger, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	tick := time.NewTicker(tickInterval)
	defer tick.Stop()
	sweep := time.NewTicker(sweepInterval)
	defer sweep.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-tick.C:
			if err := e.Tick(now); err != nil && !e.Degraded() {
				log.Error("tick", zap.Error(err))
			}
		case <-sweep.C:
			now := steady()
			for range 100 { // bounded: at most 100 batches a minute
				st, err := db.Sweep(now)
				if err != nil {
					log.Warn("sweep", zap.Error(err))
					break
				}
				if !st.More {
					break
				}
			}
		}
	}
}

func journalStats(db *wal.DB) func() httpapi.JournalStats {
	return func() httpapi.JournalStats {
		s := db.Stats()
		return httpapi.JournalStats{
			Commits: s.Commits, CommitErrors: s.CommitErrors, Groups: s.Groups, Syncs: s.WALSyncs, SyncErrors: s.WALSyncErrors,
			BatchBytes: s.BatchBytes, Events: s.Events, IdempotencyRecords: s.IdempotencyRecords,
			CommitLatency: latencyHistogram(s.CommitLatency), SyncLatency: latencyHistogram(s.WALSyncLatency),
			RecoveryDuration: s.RecoveryDuration, RecoveryBookings: s.RecoveryBookings,
		}
	}
}

func latencyHistogram(h wal.Histogram) httpapi.LatencyHistogram {
	return httpapi.LatencyHistogram{Bounds: h.Bounds, Counts: h.Counts, Sum: h.Sum, Count: h.Count}
}

// applicantRate maps the flag (0: off) onto httpapi.Config (negative: off).
func applicantRate(perSecond float64) float64 {
	if perSecond == 0 {
		return -1
	}
	return perSecond
}
