package peers

import (
	"bytes"
	stdcmp "cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// Limits on a Config, so that a typo cannot start a run that never ends.
const (
	connectionsMax   = 4096
	datesMax         = 28
	applicantsPctMax = 1000
	roundsMax        = 9
)

// Config is one comparison run. The zero value of every field but the
// peers' addresses takes the default its comment names; Run validates it.
type Config struct {
	// Connections are the concurrency levels of the HTTP table, each run
	// against every backend: closed-loop workers, one connection each.
	// Nil means 64 and 256.
	Connections []int
	// Rounds is how many times the HTTP table runs, the backends taking
	// turns within each round, so that a slow moment of the machine (the
	// shared disk, above all) falls on one round of one backend rather
	// than decides a ratio. The table shows each backend's median round
	// and the ratio of slotd to each peer in every round. Zero means 1;
	// at most roundsMax.
	Rounds int
	// EngineGoroutines are the concurrency levels of the engine table (no
	// HTTP). Nil means the same as Connections; empty (non-nil) skips the
	// engine table.
	EngineGoroutines []int
	// Dates is the number of dates rushed in each run, one after the
	// other. Zero means 3.
	Dates int
	// Layout, if set, replaces DefaultLayout(Now, Dates) (tests use a
	// small office).
	Layout *Layout
	// ApplicantsPct is how many applicants arrive per date, in percent of
	// the date's seats (9216 with the default layout). Zero means 125.
	ApplicantsPct int
	// CancelEvery makes every n-th booked applicant of the HTTP table
	// cancel at once. Zero means 20; negative means nobody cancels. The
	// engine table never cancels.
	CancelEvery int
	// RunTimeMax cuts one run (one backend at one concurrency). Zero means
	// 2 minutes.
	RunTimeMax time.Duration
	// RequestTimeout bounds one HTTP request. Zero means 30 seconds.
	RequestTimeout time.Duration
	// PostgresDSN is the PostgreSQL peer's DSN (the script exports it as
	// SLOTD_PEERS_PG). Empty skips the peer.
	PostgresDSN string
	// PostgresConnsMax bounds its connection pool. Zero means the run's
	// concurrency (one server connection per worker).
	PostgresConnsMax int
	// RedisURL is the Redis peer's URL, redis://host:port/db (the script
	// exports it as SLOTD_PEERS_REDIS). Empty skips the peer.
	RedisURL string
	// Processes are backends served by processes of their own (slotd's
	// binary as a cluster: bench/cmd/peers -cluster), each taking its
	// turn in every round of the HTTP table after the peers, with its
	// ratio to each peer in every round beside slotd's. Nil runs none.
	Processes []ProcessBackend
	// DataDir is where slotd's temporary stores are made (each run's is
	// removed after it). Empty means the system's temporary directory.
	// Put it on the same disk as the peers' data for a fair comparison.
	DataDir string
	// GeneratorCommand, if set, runs the HTTP table's load generator in a
	// child process: the command gets a Rush as JSON on its standard input
	// and must call GenerateHTTP and write the Outcome as JSON to its
	// standard output (bench/cmd/peers -generator does). Nil runs the
	// generator in this process, where its goroutines share the Go
	// scheduler with the server under test.
	GeneratorCommand []string
	// Now is the clock the dates are chosen from. Zero means time.Now().
	Now time.Time
	// Progress, if set, receives one line as each run starts and ends.
	Progress io.Writer
}

func (c *Config) withDefaults() Config {
	out := *c
	if out.Connections == nil {
		out.Connections = []int{64, 256}
	}
	if out.EngineGoroutines == nil {
		out.EngineGoroutines = out.Connections
	}
	if out.Rounds == 0 {
		out.Rounds = 1
	}
	if out.Dates == 0 {
		out.Dates = 3
	}
	if out.ApplicantsPct == 0 {
		out.ApplicantsPct = 125
	}
	if out.CancelEvery == 0 {
		out.CancelEvery = 20
	}
	if out.RunTimeMax == 0 {
		out.RunTimeMax = 2 * time.Minute
	}
	if out.RequestTimeout == 0 {
		out.RequestTimeout = 30 * time.Second
	}
	if out.Now.IsZero() {
		out.Now = time.Now()
	}
	if out.Progress == nil {
		out.Progress = io.Discard
	}
	return out
}

// validate returns the first problem with c (after defaults).
func (c *Config) validate() error {
	for _, n := range append(append([]int(nil), c.Connections...), c.EngineGoroutines...) {
		if n < 1 || n > connectionsMax {
			return fmt.Errorf("peers: concurrency %d must be in 1..%d", n, connectionsMax)
		}
	}
	switch {
	case len(c.Connections) == 0:
		return errors.New("peers: Config.Connections is empty; nil means 64 and 256")
	case c.Rounds < 1 || c.Rounds > roundsMax:
		return fmt.Errorf("peers: Config.Rounds %d must be in 1..%d; 0 means 1", c.Rounds, roundsMax)
	case c.Dates < 1 || c.Dates > datesMax:
		return fmt.Errorf("peers: Config.Dates %d must be in 1..%d", c.Dates, datesMax)
	case c.ApplicantsPct < 1 || c.ApplicantsPct > applicantsPctMax:
		return fmt.Errorf("peers: Config.ApplicantsPct %d must be in 1..%d", c.ApplicantsPct, applicantsPctMax)
	case c.RunTimeMax < 0 || c.RequestTimeout < 0:
		return errors.New("peers: Config.RunTimeMax and RequestTimeout must not be negative; 0 means the default")
	case c.PostgresConnsMax < 0:
		return errors.New("peers: Config.PostgresConnsMax must not be negative; 0 means one per worker")
	}
	names := []string{"slotd", "postgres", "redis"}
	for _, p := range c.Processes {
		if slices.Contains(names, p.Name()) {
			return fmt.Errorf("peers: Config.Processes: a second backend named %q", p.Name())
		}
		names = append(names, p.Name())
	}
	return nil
}

// Report is the outcome of Run: the rows of the two tables.
type Report struct {
	Layout Layout
	HTTP   []Result
	Engine []Result
	// Skipped names the peers that were not configured.
	Skipped []string
	// subjects are the rows whose ratio to each peer the HTTP table
	// shows: slotd, then every process backend. Nil means slotd alone.
	subjects []subject
}

// A subject is a backend whose bookings/s the tables divide by each
// peer's, round by round, with DESIGN §6's target by peer name (none
// where it is missing).
type subject struct {
	name    string
	targets map[string]float64
}

// slotdSubject is slotd behind the edge: DESIGN §6's ratios to the peers.
var slotdSubject = subject{name: "slotd", targets: map[string]float64{"postgres": 10, "redis": 2}}

// Run rushes every configured backend at every concurrency, through the
// edge and then directly, and returns the rows. An error of one backend's
// setup ends the run; errors during a rush are counted in its row.
func Run(ctx context.Context, cfg Config) (Report, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return Report{}, err
	}
	lay := DefaultLayout(cfg.Now, cfg.Dates)
	if cfg.Layout != nil {
		lay = *cfg.Layout
		if err := lay.validate(); err != nil {
			return Report{}, err
		}
	}
	rep := Report{Layout: lay, subjects: []subject{slotdSubject}}
	for _, p := range cfg.Processes {
		targets := map[string]float64{}
		for _, peer := range []string{"postgres", "redis"} {
			if t := p.TimesPeerTarget(peer); t > 0 {
				targets[peer] = t
			}
		}
		rep.subjects = append(rep.subjects, subject{name: p.Name(), targets: targets})
	}
	type opener struct {
		name string
		open func(workers int) (Backend, func(), error)
	}
	openers := []opener{{"slotd", func(int) (Backend, func(), error) {
		dir, err := os.MkdirTemp(cfg.DataDir, "slotd-peers-*")
		if err != nil {
			return nil, nil, err
		}
		b, err := OpenSlotd(dir, lay)
		if err != nil {
			_ = os.RemoveAll(dir)
			return nil, nil, err
		}
		return b, func() { _ = os.RemoveAll(dir) }, nil
	}}}
	if cfg.PostgresDSN != "" {
		openers = append(openers, opener{"postgres", func(workers int) (Backend, func(), error) {
			b, err := OpenPostgres(ctx, cfg.PostgresDSN, lay, cmp(cfg.PostgresConnsMax, workers))
			return b, func() {}, err
		}})
	} else {
		rep.Skipped = append(rep.Skipped, "postgres")
	}
	if cfg.RedisURL != "" {
		openers = append(openers, opener{"redis", func(workers int) (Backend, func(), error) {
			b, err := OpenRedis(ctx, cfg.RedisURL, lay, workers)
			return b, func() {}, err
		}})
	} else {
		rep.Skipped = append(rep.Skipped, "redis")
	}
	r := Rush{
		Layout:            lay,
		ApplicantsPerDate: lay.Seats() * cfg.ApplicantsPct / 100,
		CancelEvery:       max(cfg.CancelEvery, 0),
		ReadAvailability:  true,
		DurationMax:       cfg.RunTimeMax,
		RequestTimeout:    cfg.RequestTimeout,
	}
	// table runs the rush r rounds times for every worker count and
	// backend (the process backends in the HTTP table only), and keeps
	// each one's median round.
	table := func(mode string, rounds int, workers []int, processes []ProcessBackend, rows *[]Result) error {
		var all []Result
		for round := range rounds {
			for _, n := range workers {
				r.Workers = n
				for _, o := range openers {
					res, err := runOne(ctx, cfg, o.name, mode, r, o.open)
					if err != nil {
						return err
					}
					res.Round = round
					all = append(all, res)
				}
				for _, p := range processes {
					res, err := runProcesses(ctx, cfg, p, r)
					if err != nil {
						return err
					}
					res.Round = round
					all = append(all, res)
				}
			}
		}
		*rows = medianRounds(all)
		return nil
	}
	if err := table("http", cfg.Rounds, cfg.Connections, cfg.Processes, &rep.HTTP); err != nil {
		return rep, err
	}
	r.CancelEvery, r.ReadAvailability = 0, false
	if err := table("engine", 1, cfg.EngineGoroutines, nil, &rep.Engine); err != nil {
		return rep, err
	}
	return rep, nil
}

// medianRounds keeps one row per backend and concurrency, in the order
// they first ran: the round with the median bookings/s (the lower of the
// two middle ones for an even count), with every round's bookings/s in
// RoundRates, in round order.
func medianRounds(all []Result) []Result {
	type key struct {
		backend string
		conns   int
	}
	var order []key
	runs := map[key][]Result{}
	for _, res := range all {
		k := key{res.Backend, res.Connections}
		if _, seen := runs[k]; !seen {
			order = append(order, k)
		}
		runs[k] = append(runs[k], res)
	}
	out := make([]Result, 0, len(order))
	for _, k := range order {
		rs := runs[k]
		rates := make([]float64, len(rs))
		for i := range rs {
			rates[i] = rs[i].BookingsPerSecond()
		}
		byRate := slices.Clone(rs)
		slices.SortStableFunc(byRate, func(a, b Result) int { return stdcmp.Compare(a.BookingsPerSecond(), b.BookingsPerSecond()) })
		med := byRate[(len(byRate)-1)/2]
		med.RoundRates = rates
		out = append(out, med)
	}
	return out
}

// cmp returns a if it is set, else b.
func cmp(a, b int) int {
	if a > 0 {
		return a
	}
	return b
}

// runOne opens a fresh backend, rushes it (through a loopback edge in
// mode "http"), verifies and closes it.
func runOne(ctx context.Context, cfg Config, name, mode string, r Rush,
	open func(workers int) (Backend, func(), error)) (Result, error) {
	fmt.Fprintf(cfg.Progress, "%-14s %-6s %4d workers: setting up\n", name, mode, r.Workers)
	b, cleanup, err := open(r.Workers)
	if err != nil {
		return Result{}, fmt.Errorf("cannot open %s: %w", name, err)
	}
	defer cleanup()
	defer b.Close()
	if err := settle(ctx, cfg); err != nil {
		return Result{}, fmt.Errorf("before %s: %w", name, err)
	}
	var out Outcome
	if mode == "http" {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return Result{}, err
		}
		// No read or write timeout: fasthttp would set up to three
		// deadlines per request, for every backend alike, and the
		// generator on loopback bounds each request itself
		// (Rush.RequestTimeout) and the run (Rush.DurationMax).
		srv := &fasthttp.Server{
			Handler:            NewEdge(b, r.Layout),
			Name:               "slotd-peers",
			MaxRequestBodySize: requestBodyBytesMax,
		}
		go func() { _ = srv.Serve(ln) }()
		defer func() { _ = srv.Shutdown() }()
		r.Addr = ln.Addr().String()
		if len(cfg.GeneratorCommand) > 0 {
			out, err = GenerateInChild(ctx, cfg.GeneratorCommand, r)
		} else {
			out, err = GenerateHTTP(ctx, r)
		}
		if err != nil {
			return Result{}, fmt.Errorf("%s: generator: %w", name, err)
		}
	} else {
		out = rush(ctx, r, func(int) rushClient { return &directClient{b: b, lay: &r.Layout} })
	}
	res := out.Result
	res.Backend, res.Mode = name, mode
	if err := Verify(ctx, b, &r.Layout, out.Acked, res.Errors > 0); err != nil {
		res.VerifyError = err.Error()
	} else {
		res.Verified = true
	}
	if n, ok := b.(interface{ Note() string }); ok {
		res.Note = n.Note()
	}
	fmt.Fprintf(cfg.Progress, "%-14s %-6s %4d workers: %d bookings in %s (%.0f/s), verified=%v %s\n",
		name, mode, r.Workers, res.Bookings, res.Elapsed.Round(time.Millisecond), res.BookingsPerSecond(), res.Verified, res.VerifyError)
	return res, nil
}

// runProcesses starts p's processes on fresh data, settles the disk,
// rushes them over HTTP, checks what they stored and stops them.
func runProcesses(ctx context.Context, cfg Config, p ProcessBackend, r Rush) (Result, error) {
	name := p.Name()
	fmt.Fprintf(cfg.Progress, "%-14s %-6s %4d workers: setting up\n", name, "http", r.Workers)
	procs, err := p.Start(ctx, cfg.DataDir, &r.Layout)
	if err != nil {
		return Result{}, fmt.Errorf("cannot start %s: %w", name, err)
	}
	defer procs.Close()
	if err := settle(ctx, cfg); err != nil {
		return Result{}, fmt.Errorf("before %s: %w", name, err)
	}
	res, err := RushProcesses(ctx, cfg.GeneratorCommand, procs, r)
	if err != nil {
		return Result{}, fmt.Errorf("%s: %w", name, err)
	}
	res.Backend, res.Mode = name, "http"
	fmt.Fprintf(cfg.Progress, "%-14s %-6s %4d workers: %d bookings in %s (%.0f/s), verified=%v %s\n",
		name, "http", r.Workers, res.Bookings, res.Elapsed.Round(time.Millisecond), res.BookingsPerSecond(), res.Verified, res.VerifyError)
	return res, nil
}

// settle gives every run a quiet disk to start on: PostgreSQL, when it
// takes part, writes its dirty pages now (CHECKPOINT) rather than during a
// later run, then every file system flushes what it holds (sync(2)). The
// backends' own setup writes land before the clock starts, whoever runs
// next.
func settle(ctx context.Context, cfg Config) error {
	if cfg.PostgresDSN != "" {
		db, err := sql.Open("pgx", cfg.PostgresDSN)
		if err != nil {
			return err
		}
		defer db.Close()
		if _, err := db.ExecContext(ctx, "CHECKPOINT"); err != nil {
			return fmt.Errorf("PostgreSQL CHECKPOINT: %w", err)
		}
	}
	syscall.Sync()
	return nil
}

// GenerateInChild runs the generator command with r on its standard input
// and reads its Outcome from its standard output (Config.GeneratorCommand),
// with the child's CPU time in Result.GeneratorCPU.
func GenerateInChild(ctx context.Context, argv []string, r Rush) (Outcome, error) {
	in, err := json.Marshal(r)
	if err != nil {
		return Outcome{}, err
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdin = bytes.NewReader(in)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.Output()
	if err != nil {
		return Outcome{}, fmt.Errorf("%s: %w", strings.Join(argv, " "), err)
	}
	var out Outcome
	if err := json.Unmarshal(stdout, &out); err != nil {
		return Outcome{}, fmt.Errorf("%s answered: %w", strings.Join(argv, " "), err)
	}
	out.Result.GeneratorCPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	return out, nil
}

// WriteTables prints the HTTP table and the engine table.
func (r *Report) WriteTables(w io.Writer) {
	l := &r.Layout
	fmt.Fprintf(w, "Rush: office %s, %d dates × %d seats (%d windows × %d starts), applicants in order, more than seats.\n",
		l.Office, len(l.Dates), l.Seats(), l.Windows, l.Steps())
	if len(r.Skipped) > 0 {
		fmt.Fprintf(w, "Skipped (not configured): %s\n", strings.Join(r.Skipped, ", "))
	}
	if len(r.HTTP)+len(r.Engine) > 0 {
		fmt.Fprintf(w, "cpu: how busy the machine's cores were during the run, everything on it; cpu/bkg: that busy time per booking.\n")
	}
	subjects := r.subjects
	if subjects == nil {
		subjects = []subject{slotdSubject}
	}
	if len(subjects) > 1 {
		fmt.Fprintf(w, "A row other than slotd, postgres and redis is slotd's binary in processes of its own, behind slotd's own\n"+
			"edge (keys, idempotency, metrics), rushed by the same generator; \"<row> ×\" is its ratio to each peer.\n")
	}
	if len(r.HTTP) > 0 {
		fmt.Fprintf(w, "\nHTTP (one fasthttp edge, closed loop over loopback; latency of POST /v1/bookings)\n")
		writeTable(w, r.HTTP, true, subjects)
	}
	if len(r.Engine) > 0 {
		fmt.Fprintf(w, "\nEngine (no HTTP: slotd Go API / claim statement over database/sql / EVALSHA; latency of one claim)\n")
		writeTable(w, r.Engine, false, subjects)
	}
}

// writeTable prints rows with one ratio column for every subject that
// has rows in the table: the subject's bookings/s divided by each peer
// row's, the median of the ratios taken round by round, against the
// subject's target for that peer.
func writeTable(w io.Writer, rows []Result, http bool, subjects []subject) {
	rates := map[string]map[int][]float64{} // subject → connections → rates by round
	var present []subject
	for _, s := range subjects {
		for _, r := range rows {
			if r.Backend != s.name {
				continue
			}
			if rates[s.name] == nil {
				rates[s.name] = map[int][]float64{}
				present = append(present, s)
			}
			rates[s.name][r.Connections] = r.Rates()
		}
	}
	nameWidth := 9
	for _, r := range rows {
		nameWidth = max(nameWidth, len(r.Backend))
	}
	ratioWidth := func(s subject) int { return max(18, len(s.name)+3) }
	fmt.Fprintf(w, "%-*s %5s %10s %9s %9s %4s %8s %9s %7s %7s %7s ", nameWidth,
		"backend", "conns", "bookings/s", "p50", "p99", "cpu", "cpu/bkg", "conflicts", "cancels", "errors", "soldout")
	for _, s := range present {
		fmt.Fprintf(w, " %-*s", ratioWidth(s), s.name+" ×")
	}
	fmt.Fprintf(w, " %s\n", "verified")
	for _, r := range rows {
		var ratios []string // the ratio column of every present subject
		var roundLines []string
		for _, s := range present {
			ratio := "-"
			var rounds []float64 // the subject ÷ this peer in each round
			if sr, ok := rates[s.name][r.Connections]; ok && rates[r.Backend] == nil {
				rounds = RoundRatios(sr, r.Rates())
			}
			t := s.targets[r.Backend]
			if len(rounds) > 0 {
				ratio = fmt.Sprintf("%.1f×", median(rounds))
				if t > 0 {
					ok := "met"
					if median(rounds) < t {
						ok = "MISSED"
					}
					ratio += fmt.Sprintf(" (≥%.0f× %s)", t, ok)
				}
				line := fmt.Sprintf("%s × in each round: %s", s.name, join(rounds, "%.1f×"))
				if t > 0 {
					line += fmt.Sprintf(" (%s below %.0f×)", countBelow(rounds, t), t)
				}
				roundLines = append(roundLines, line)
			}
			ratios = append(ratios, fmt.Sprintf("%-*s", ratioWidth(s), ratio))
		}
		verified := "ok"
		if !r.Verified {
			verified = "FAILED: " + r.VerifyError
		}
		if r.Cut {
			verified += " (cut by time limit)"
		}
		cancels := fmt.Sprint(r.Cancels)
		if !http {
			cancels = "-"
		}
		busy, perBooking := "-", "-"
		if r.CPU != nil {
			busy = fmt.Sprintf("%.0f%%", 100*r.CPU.Busy)
			if r.Bookings > 0 {
				perBooking = fmtLatency(r.CPU.Time / time.Duration(r.Bookings))
			}
		}
		fmt.Fprintf(w, "%-*s %5d %10.0f %9s %9s %4s %8s %9d %7s %7d %7d  %s %s\n", nameWidth,
			r.Backend, r.Connections, r.BookingsPerSecond(), fmtLatency(r.HoldP50), fmtLatency(r.HoldP99),
			busy, perBooking, r.Conflicts, cancels, r.Errors, r.SoldOut, strings.Join(ratios, " "), verified)
		if len(r.RoundRates) > 1 {
			line := fmt.Sprintf("          rounds: %s bookings/s, the median round shown", join(r.RoundRates, "%.0f"))
			for _, rl := range roundLines {
				line += "; " + rl
			}
			fmt.Fprintln(w, line)
		}
		if r.FirstError != "" {
			fmt.Fprintf(w, "          first error: %s\n", r.FirstError)
		}
		if r.Note != "" {
			fmt.Fprintf(w, "          %s\n", r.Note)
		}
	}
}

// Rates returns the bookings/s of every round of r (just r's own when it
// was run once).
func (r *Result) Rates() []float64 {
	if len(r.RoundRates) > 0 {
		return r.RoundRates
	}
	return []float64{r.BookingsPerSecond()}
}

// RoundRatios divides slotd's bookings/s by a peer's round by round; a
// round the peer booked nothing in has no ratio.
func RoundRatios(slotd, peer []float64) []float64 {
	var out []float64
	for i := range min(len(slotd), len(peer)) {
		if peer[i] > 0 {
			out = append(out, slotd[i]/peer[i])
		}
	}
	return out
}

// median is the middle of xs (the lower middle for an even count), as
// medianRounds picks rows.
func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[(len(s)-1)/2]
}

func countBelow(xs []float64, t float64) string {
	n := 0
	for _, x := range xs {
		if x < t {
			n++
		}
	}
	return fmt.Sprintf("%d of %d", n, len(xs))
}

// join writes every x of xs with format, comma-separated.
func join(xs []float64, format string) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprintf(format, x)
	}
	return strings.Join(parts, ", ")
}

func fmtLatency(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond))
}
