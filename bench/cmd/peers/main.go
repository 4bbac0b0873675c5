// Command peers runs the rush against slotd, the PostgreSQL peer and the
// Redis peer and prints the HTTP and engine tables (DESIGN §6). The peers'
// addresses come from SLOTD_PEERS_PG and SLOTD_PEERS_REDIS, which
// bench/peers/scripts/peers.sh sets after starting both servers; a peer
// whose variable is empty is skipped. With -cluster, the HTTP table has a
// row of three slotd processes from that binary as a cluster on loopback
// (package clusterbench's cluster/spread row, and with -cluster-rows its
// cluster/leader row), taking its turn in every round, with its ratio to
// each peer round by round.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strings"
	"syscall"

	"slotd/bench/clusterbench"
	"slotd/bench/peers"
)

func main() {
	var cfg peers.Config
	conns := flag.String("conns", "64,256", "comma-separated connection counts of the HTTP table")
	engine := flag.String("engine", "", "comma-separated goroutine counts of the engine table (default: as -conns; \"none\" skips it)")
	flag.IntVar(&cfg.Rounds, "rounds", 0, "how many times the HTTP table runs, the backends taking turns; each row is its backend's median round (0: 1)")
	flag.IntVar(&cfg.Dates, "dates", 0, "dates rushed per run (0: 3)")
	flag.IntVar(&cfg.ApplicantsPct, "applicants-pct", 0, "applicants per date in percent of its seats (0: 125)")
	flag.IntVar(&cfg.CancelEvery, "cancel-every", 0, "every n-th booked applicant cancels at once (0: 20, -1: none)")
	flag.DurationVar(&cfg.RunTimeMax, "run-time-max", 0, "cut one run after this long (0: 2m)")
	flag.IntVar(&cfg.PostgresConnsMax, "pg-conns-max", 0, "PostgreSQL pool size (0: one per worker)")
	flag.StringVar(&cfg.DataDir, "data-dir", "", "parent directory of slotd's temporary stores (default: the system's temporary directory)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file and, unless -in-process, of the last HTTP run's generator child to this file + \".generator\"")
	inProcess := flag.Bool("in-process", false, "run the HTTP load generator in this process instead of a child process")
	procs := flag.Int("procs", 0, "scheduler Ps (GOMAXPROCS) of this process, which runs the edge and the backends (0: as slotd runs, one more than the cores unless GOMAXPROCS is set)")
	cluster := flag.String("cluster", "", "the slotd `binary` whose three processes as a cluster on loopback take a turn in every round of the HTTP table (default: no cluster row)")
	clusterRows := flag.String("cluster-rows", "spread", "the cluster's rows with -cluster, comma-separated: spread (the workers go round the three nodes), leader (every worker at the group leader)")
	clusterGroups := flag.Int("cluster-groups", 0, "the cluster's Raft groups with -cluster (slotd -groups; 0: 1)")
	generator := flag.Bool("generator", false, "internal: be the load generator child (a peers.Rush as JSON on stdin, the outcome on stdout)")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fail(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fail(err)
		}
		defer pprof.StopCPUProfile()
	}
	if *generator {
		if err := peers.RunGeneratorChild(os.Stdin, os.Stdout); err != nil {
			fail(err)
		}
		return
	}
	// The edge serves every backend from this process, so all three get
	// the scheduler slotd gives itself (cmd/slotd spareProc); the
	// generator child keeps the runtime's default.
	switch {
	case *procs < 0:
		fail(fmt.Errorf("-procs %d: must be 0 (as slotd runs) or more", *procs))
	case *procs > 0:
		runtime.GOMAXPROCS(*procs)
	case os.Getenv("GOMAXPROCS") == "":
		runtime.GOMAXPROCS(runtime.GOMAXPROCS(0) + 1)
	}
	cfg.PostgresDSN = os.Getenv("SLOTD_PEERS_PG")
	cfg.RedisURL = os.Getenv("SLOTD_PEERS_REDIS")
	cfg.Progress = os.Stderr
	var err error
	if cfg.Connections, err = peers.ParseInts(*conns); err != nil {
		fail(fmt.Errorf("-conns: %w", err))
	}
	switch *engine {
	case "":
	case "none":
		cfg.EngineGoroutines = []int{}
	default:
		if cfg.EngineGoroutines, err = peers.ParseInts(*engine); err != nil {
			fail(fmt.Errorf("-engine: %w", err))
		}
	}
	if *cluster != "" {
		for _, name := range strings.Split(*clusterRows, ",") {
			row, err := clusterbench.NewRow("cluster/"+strings.TrimSpace(name), *cluster, *clusterGroups, "")
			if err != nil {
				fail(fmt.Errorf("-cluster, -cluster-rows: %w", err))
			}
			cfg.Processes = append(cfg.Processes, row)
		}
	}
	if !*inProcess {
		self, err := os.Executable()
		if err != nil {
			fail(err)
		}
		cfg.GeneratorCommand = []string{self, "-generator"}
		if *cpuProfile != "" {
			// The child profiles itself: the last run's generator.
			cfg.GeneratorCommand = append(cfg.GeneratorCommand, "-cpuprofile", *cpuProfile+".generator")
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := peers.Run(ctx, cfg)
	rep.WriteTables(os.Stdout)
	fmt.Printf("Edge and backends ran with GOMAXPROCS=%d on %d cores.\n", runtime.GOMAXPROCS(0), runtime.NumCPU())
	if err != nil {
		fail(err)
	}
}

func fail(err error) {
	pprof.StopCPUProfile() // a profile being written is completed, not cut
	fmt.Fprintln(os.Stderr, "peers:", err)
	os.Exit(1)
}
