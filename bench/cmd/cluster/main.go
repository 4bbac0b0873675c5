// Command cluster runs the cluster bench (make bench-cluster): the rush
// of the peer comparison against one slotd process and against three
// slotd processes as a cluster on loopback, in the same run, and the time
// to the first acknowledged write after the group leader is killed with
// SIGKILL (package clusterbench).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"slotd/bench/clusterbench"
	"slotd/bench/peers"
)

func main() {
	var cfg clusterbench.Config
	flag.StringVar(&cfg.Slotd, "slotd", "bin/slotd", "the slotd `binary` to start")
	conns := flag.String("conns", "64", "comma-separated connection counts of the rush table; the first is the one the targets are read at")
	flag.IntVar(&cfg.Rounds, "rounds", 0, "how many times the rush table runs, the rows taking turns; each row is its median round (0: 1)")
	flag.IntVar(&cfg.Dates, "dates", 0, "dates rushed per run (0: 3)")
	flag.IntVar(&cfg.Groups, "groups", 0, "Raft groups of the cluster rows (slotd -groups; 0: 1); the failover measurement runs one")
	flag.IntVar(&cfg.ApplicantsPct, "applicants-pct", 0, "applicants per date in percent of its seats (0: 125)")
	flag.IntVar(&cfg.CancelEvery, "cancel-every", 0, "every n-th booked applicant cancels at once (0: 20, -1: none)")
	flag.DurationVar(&cfg.RunTimeMax, "run-time-max", 0, "cut one rush after this long (0: 2m)")
	flag.IntVar(&cfg.Kills, "kills", 0, "SIGKILLs of the group leader in the failover measurement (0: 20, -1: none)")
	flag.IntVar(&cfg.FailoverWriters, "failover-writers", 0, "goroutines writing during a failover, one request at a time each (0: 4)")
	flag.StringVar(&cfg.DataDir, "data-dir", "", "parent `directory` of the processes' temporary data (default: the system's temporary directory)")
	flag.StringVar(&cfg.LogLevel, "log-level", "", "the processes' -log-level (default warn: no access log)")
	flag.Float64Var(&cfg.PostgresRate, "postgres-rate", 0, "PostgreSQL's bookings/s at the first -conns from make bench-peers, for the ratio (0: left out)")
	generator := flag.Bool("generator", false, "internal: be the load generator child (a peers.Rush as JSON on stdin, the outcome on stdout)")
	flag.Parse()
	if *generator {
		if err := peers.RunGeneratorChild(os.Stdin, os.Stdout); err != nil {
			fail(err)
		}
		return
	}
	var err error
	if cfg.Connections, err = peers.ParseInts(*conns); err != nil {
		fail(fmt.Errorf("-conns: %w", err))
	}
	self, err := os.Executable()
	if err != nil {
		fail(err)
	}
	cfg.GeneratorCommand = []string{self, "-generator"}
	cfg.Progress = os.Stderr
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	rep, err := clusterbench.Run(ctx, cfg)
	rep.WriteTables(os.Stdout)
	fmt.Printf("\n%s, %s\n", start.Format(time.DateOnly), time.Since(start).Round(time.Second))
	if err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bench-cluster:", err)
	os.Exit(1)
}
