package clusterbench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"syscall"
	"time"

	"slotd/bench/peers"
)

// Limits on a Config, so that a typo cannot start a run that never ends.
const (
	connectionsMax = 4096
	roundsMax      = 9
	killsMax       = 200
	writersMax     = 256
	datesMax       = 28
	groupsMax      = 16
)

// The rows of the rush table (Row).
const (
	RowSingle  = "slotd"          // one slotd alone
	RowSpread  = "cluster/spread" // three nodes, the workers spread over their API addresses
	RowLeader  = "cluster/leader" // three nodes, every worker at the group leader's address
	clusterLen = 3                // nodes of the cluster
	benchGroup = 1                // with one Raft group, the office is in group 1
)

// Config is one run of the cluster bench. The zero value of every field
// but Slotd takes the default its comment names; Run validates it.
type Config struct {
	// Slotd is the path of the slotd binary to start. Required.
	Slotd string
	// Connections are the concurrency levels of the rush table: closed-
	// loop workers, one connection each. Nil means 64.
	Connections []int
	// Rounds is how many times the rush table runs, the rows taking
	// turns within each round (the disk and the machine drift; see
	// package peers). Zero means 1.
	Rounds int
	// Dates is the number of dates rushed in each run. Zero means 3.
	Dates int
	// ApplicantsPct is how many applicants arrive per date, in percent of
	// the date's seats. Zero means 125.
	ApplicantsPct int
	// CancelEvery makes every n-th booked applicant cancel at once. Zero
	// means 20; negative means nobody cancels.
	CancelEvery int
	// RunTimeMax cuts one rush. Zero means 2 minutes.
	RunTimeMax time.Duration
	// RequestTimeout bounds one request of the rush. Zero means 30 s.
	RequestTimeout time.Duration
	// Kills is how many times the failover measurement kills the group
	// leader. Zero means 20; negative skips the measurement.
	Kills int
	// FailoverWriters are the goroutines that write during a failover,
	// each one request at a time. Zero means 4.
	FailoverWriters int
	// FailoverWaitMax bounds the wait for the first write after a kill:
	// a kill with none by then counts as a failure of the run. Zero
	// means 30 s.
	FailoverWaitMax time.Duration
	// Layout, if set, replaces peers.DefaultLayout(Now, Dates) (the smoke
	// test uses a small office).
	Layout *peers.Layout
	// DataDir is where the processes' data directories are made (each
	// run's removed after it). Empty means the system's temporary
	// directory.
	DataDir string
	// LogLevel is the processes' -log-level. Empty means warn: the rush
	// measures the serving path, not the access log's writes (the peers'
	// edge writes none either).
	LogLevel string
	// GeneratorCommand, if set, runs the rush's load generator in a child
	// process, as peers.Config.GeneratorCommand.
	GeneratorCommand []string
	// PostgresRate is PostgreSQL's bookings/s at the first of Connections
	// from make bench-peers, for the report's ratio; zero leaves the ratio
	// out.
	PostgresRate float64
	// Groups is the cluster rows' Raft groups (slotd -groups). With more
	// than one, the office is in the group its id hashes to and each
	// applicant's ledger in the group the applicant's hashes to, so a
	// hold and a cancel each make one more commit, often through another
	// node (docs/design.md §7, "Applicants across groups"). Zero means 1;
	// the failover measurement runs one group whatever it is.
	Groups int
	// Now is the clock the dates are chosen from. Zero means time.Now().
	Now time.Time
	// Progress, if set, receives a line as each run starts and ends.
	Progress io.Writer
}

func (c *Config) withDefaults() Config {
	out := *c
	if out.Connections == nil {
		out.Connections = []int{64}
	}
	out.Rounds = cmp.Or(out.Rounds, 1)
	out.Dates = cmp.Or(out.Dates, 3)
	out.ApplicantsPct = cmp.Or(out.ApplicantsPct, 125)
	out.CancelEvery = cmp.Or(out.CancelEvery, 20)
	out.RunTimeMax = cmp.Or(out.RunTimeMax, 2*time.Minute)
	out.RequestTimeout = cmp.Or(out.RequestTimeout, 30*time.Second)
	out.Kills = cmp.Or(out.Kills, 20)
	out.FailoverWriters = cmp.Or(out.FailoverWriters, 4)
	out.FailoverWaitMax = cmp.Or(out.FailoverWaitMax, 30*time.Second)
	out.LogLevel = cmp.Or(out.LogLevel, "warn")
	out.Groups = cmp.Or(out.Groups, 1)
	if out.Now.IsZero() {
		out.Now = time.Now()
	}
	if out.Progress == nil {
		out.Progress = io.Discard
	}
	return out
}

func (c *Config) validate() error {
	if c.Slotd == "" {
		return errors.New("clusterbench: Config.Slotd must name the slotd binary")
	}
	if _, err := os.Stat(c.Slotd); err != nil {
		return fmt.Errorf("clusterbench: Config.Slotd: %w", err)
	}
	for _, n := range c.Connections {
		if n < 1 || n > connectionsMax {
			return fmt.Errorf("clusterbench: concurrency %d must be in 1..%d", n, connectionsMax)
		}
	}
	switch {
	case len(c.Connections) == 0:
		return errors.New("clusterbench: Config.Connections is empty; nil means 64")
	case c.Rounds < 1 || c.Rounds > roundsMax:
		return fmt.Errorf("clusterbench: Config.Rounds %d must be in 1..%d; 0 means 1", c.Rounds, roundsMax)
	case c.Dates < 1 || c.Dates > datesMax:
		return fmt.Errorf("clusterbench: Config.Dates %d must be in 1..%d", c.Dates, datesMax)
	case c.ApplicantsPct < 1 || c.ApplicantsPct > 1000:
		return fmt.Errorf("clusterbench: Config.ApplicantsPct %d must be in 1..1000", c.ApplicantsPct)
	case c.Kills > killsMax:
		return fmt.Errorf("clusterbench: Config.Kills %d must be at most %d", c.Kills, killsMax)
	case c.FailoverWriters < 1 || c.FailoverWriters > writersMax:
		return fmt.Errorf("clusterbench: Config.FailoverWriters %d must be in 1..%d", c.FailoverWriters, writersMax)
	case c.RunTimeMax < 0 || c.RequestTimeout < 0 || c.FailoverWaitMax < 0:
		return errors.New("clusterbench: durations must not be negative; 0 means the default")
	case c.Groups < 1 || c.Groups > groupsMax:
		return fmt.Errorf("clusterbench: Config.Groups %d must be in 1..%d; 0 means 1", c.Groups, groupsMax)
	case c.PostgresRate < 0:
		return errors.New("clusterbench: Config.PostgresRate must not be negative; 0 leaves the ratio out")
	}
	return nil
}

// Report is the outcome of Run.
type Report struct {
	Layout peers.Layout
	// Rush holds one row per row name and concurrency: its median round,
	// with every round's bookings/s in RoundRates.
	Rush []peers.Result
	// Failover is the failover measurement; nil when it was skipped.
	Failover *Failover
	// PostgresRate is Config.PostgresRate.
	PostgresRate float64
	// Connections are Config.Connections.
	Connections []int
}

// Run rushes one slotd and a three-node cluster, then measures failover.
// An error of a process's start or of the setup ends the run; errors
// during a rush are counted in its row, and a failed verification shows
// in it.
func Run(ctx context.Context, cfg Config) (Report, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return Report{}, err
	}
	lay := peers.DefaultLayout(cfg.Now, cfg.Dates)
	if cfg.Layout != nil {
		lay = *cfg.Layout
	}
	rep := Report{Layout: lay, PostgresRate: cfg.PostgresRate, Connections: cfg.Connections}
	r := peers.Rush{
		Layout:            lay,
		ApplicantsPerDate: lay.Seats() * cfg.ApplicantsPct / 100,
		CancelEvery:       max(cfg.CancelEvery, 0),
		ReadAvailability:  true,
		DurationMax:       cfg.RunTimeMax,
		RequestTimeout:    cfg.RequestTimeout,
		Authorization:     "Bearer " + portalKey,
	}
	var all []peers.Result
	for round := range cfg.Rounds {
		for _, n := range cfg.Connections {
			for _, row := range []string{RowSingle, RowSpread, RowLeader} {
				r.Workers = n
				res, err := runRush(ctx, &cfg, row, r)
				if err != nil {
					return rep, err
				}
				res.Round = round
				all = append(all, res)
			}
		}
	}
	rep.Rush = medianRounds(all)
	if cfg.Kills > 0 {
		f, err := measureFailover(ctx, &cfg, r)
		rep.Failover = f
		if err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// runRush starts the processes of row on fresh data, rushes them, checks
// what they stored against what they acknowledged, and stops them.
func runRush(ctx context.Context, cfg *Config, row string, r peers.Rush) (peers.Result, error) {
	fmt.Fprintf(cfg.Progress, "%-15s %4d workers: starting\n", row, r.Workers)
	b, err := NewRow(row, cfg.Slotd, cfg.Groups, cfg.LogLevel)
	if err != nil {
		return peers.Result{}, err
	}
	p, err := b.Start(ctx, cfg.DataDir, &r.Layout)
	if err != nil {
		return peers.Result{}, err
	}
	defer p.Close()
	syscall.Sync() // a quiet disk to start on, as package peers does
	res, err := peers.RushProcesses(ctx, cfg.GeneratorCommand, p, r)
	if err != nil {
		return peers.Result{}, fmt.Errorf("%s: %w", row, err)
	}
	res.Backend, res.Mode = row, "http"
	fmt.Fprintf(cfg.Progress, "%-15s %4d workers: %d bookings in %s (%.0f/s), p99 %s, verified=%v %s\n",
		row, r.Workers, res.Bookings, res.Elapsed.Round(time.Millisecond), res.BookingsPerSecond(),
		res.HoldP99.Round(10*time.Microsecond), res.Verified, res.VerifyError)
	return res, nil
}

// leader waits until a running node runs the engine of the bench group
// and returns it.
func (f *fleet) leader(timeout time.Duration) (*server, error) {
	return f.leaderOf(benchGroup, timeout)
}

// leaderOf waits until a running node runs the engine of group and
// returns it.
func (f *fleet) leaderOf(group uint64, timeout time.Duration) (*server, error) {
	var l *server
	err := poll(timeout, func() error {
		for _, s := range f.servers {
			if !s.up() {
				continue
			}
			st, err := s.status(group)
			if err == nil && st.Engine && st.Leader == uint64(s.id) {
				l = s
				return nil
			}
		}
		return errors.New("no node runs the group's engine")
	})
	return l, err
}

// converged waits until every running node's replica of group is at one
// applied index with one digest, and returns that status.
func (f *fleet) converged(group uint64, timeout time.Duration) (groupStatus, error) {
	var first groupStatus
	err := poll(timeout, func() error {
		var sts []groupStatus
		for _, s := range f.servers {
			if !s.up() {
				continue
			}
			st, err := s.status(group)
			if err != nil {
				return err
			}
			sts = append(sts, st)
		}
		if len(sts) == 0 {
			return errStop{errors.New("no node runs")}
		}
		first = sts[0]
		for _, st := range sts[1:] {
			if st.Applied != first.Applied || st.Digest != first.Digest {
				return fmt.Errorf("replicas of group %d differ: applied %d digest %s and applied %d digest %s",
					group, first.Applied, first.Digest, st.Applied, st.Digest)
			}
		}
		return nil
	})
	return first, err
}

// medianRounds keeps one row per row name and concurrency, in the order
// they first ran: the round with the median bookings/s (the lower middle
// for an even count), with every round's bookings/s in RoundRates.
func medianRounds(all []peers.Result) []peers.Result {
	type key struct {
		row   string
		conns int
	}
	var order []key
	runs := map[key][]peers.Result{}
	for _, res := range all {
		k := key{res.Backend, res.Connections}
		if _, seen := runs[k]; !seen {
			order = append(order, k)
		}
		runs[k] = append(runs[k], res)
	}
	out := make([]peers.Result, 0, len(order))
	for _, k := range order {
		rs := runs[k]
		rates := make([]float64, len(rs))
		for i := range rs {
			rates[i] = rs[i].BookingsPerSecond()
		}
		byRate := slices.Clone(rs)
		slices.SortStableFunc(byRate, func(a, b peers.Result) int {
			return cmp.Compare(a.BookingsPerSecond(), b.BookingsPerSecond())
		})
		med := byRate[(len(byRate)-1)/2]
		med.RoundRates = rates
		out = append(out, med)
	}
	return out
}
