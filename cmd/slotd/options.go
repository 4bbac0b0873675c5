package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"slotd/httpapi"
)

// options are slotd's command line (DESIGN §4). Every flag can also be set
// by the environment variable SLOTD_<NAME> (dashes as underscores); a flag
// given on the command line wins over the environment.
type options struct {
	addr      string // API listener
	adminAddr string // metrics, health, pprof
	data      string // Pebble directory
	keys      string // API keys file; empty: none (or development keys with -demo)
	offices   string // office configs to load at start; empty: none
	demo      bool   // load demo offices; print development keys when no keys file
	logLevel  string // debug, info, warn, error
	// ratePerKey is each API key's sustained rate in requests per second;
	// rateBurst its bucket size (0: twice the rate). A portal backend sends
	// all its applicants' requests under one key: size it for the rush.
	ratePerKey float64
	rateBurst  int
	// ratePerApplicant is each applicant's rate of holds per key (0: off),
	// rateApplicantBurst its bucket size; checked before the key's bucket.
	ratePerApplicant   float64
	rateApplicantBurst int
	inFlightMax        int // requests inside the engine at once; beyond, 503 overloaded
	// shutdownDelay is how long slotd keeps serving after SIGTERM with
	// /readyz at 503, before it closes the listener and drains (0: none).
	shutdownDelay time.Duration
	version       bool // print the version and exit
	// dataFS is the file system the store is written through; not a
	// flag. Nil means the operating system's; tests inject faults.
	dataFS vfs.FS
	// cluster are the flags of cluster mode (cluster.go).
	cluster clusterOptions
}

// errHelp: -h was asked for; usage is printed, nothing runs.
var errHelp = errors.New("help requested")

func parseOptions(args []string, getenv func(string) string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("slotd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.addr, "addr", ":8080", "API listener `address`")
	// Loopback by default: the admin listener answers without a key, and
	// pprof and the metrics are not for the world. Give a management
	// network's address for a Prometheus on another host.
	fs.StringVar(&o.adminAddr, "admin-addr", "127.0.0.1:9090", "metrics, health and pprof listener `address` (unauthenticated: keep it off public networks)")
	fs.StringVar(&o.data, "data", "./data", "Pebble data `directory`")
	fs.StringVar(&o.keys, "keys", "", "API keys `file` (JSON)")
	fs.StringVar(&o.offices, "offices", "", "office configs `file` to load at start (JSON array)")
	fs.BoolVar(&o.demo, "demo", false, "load demo offices; create and print development keys when -keys is not given")
	fs.StringVar(&o.logLevel, "log-level", "info", "log `level`: debug, info, warn, error")
	fs.Float64Var(&o.ratePerKey, "rate-per-key", httpapi.DefaultRatePerSecond, "each API key's sustained `requests per second` (token bucket)")
	fs.IntVar(&o.rateBurst, "rate-burst", 0, "each API key's bucket `size` in requests (0: twice -rate-per-key)")
	fs.Float64Var(&o.ratePerApplicant, "rate-per-applicant", httpapi.DefaultRatePerApplicant,
		"each applicant's sustained hold `requests per second` per key, checked before the key's bucket (0: off)")
	fs.IntVar(&o.rateApplicantBurst, "rate-applicant-burst", httpapi.DefaultRateApplicantBurst, "each applicant's hold bucket `size` in requests")
	fs.IntVar(&o.inFlightMax, "in-flight-max", httpapi.DefaultInFlightMax, "`requests` inside the engine at once; more are shed with 503")
	fs.DurationVar(&o.shutdownDelay, "shutdown-delay", 0,
		"after SIGTERM, keep serving for this `duration` with /readyz at 503 so load balancers stop sending, then drain (a second signal cuts it short)")
	fs.BoolVar(&o.version, "version", false, "print the version, commit and Go version, and exit")
	addClusterFlags(fs, &o.cluster)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: slotd [flags]\n       slotd backup|dump|verify|cluster status [flags] (-h for each)\nEvery flag can also be set as SLOTD_<NAME>, e.g. SLOTD_ADMIN_ADDR.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return o, errHelp
		}
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		// -version only from the command line: a SLOTD_VERSION that a
		// deploy tool sets for its own use must not turn a start into a
		// print, nor fail it.
		if f.Name == "version" {
			return
		}
		env := "SLOTD_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := getenv(env); v != "" && !set[f.Name] && err == nil {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s=%q: %w", env, v, e)
			}
		}
	})
	if err != nil {
		return o, err
	}
	o.cluster.noHandOff = getenv("SLOTD_TEST_NO_HAND_OFF") == "1"
	o.cluster.noRefusals = getenv("SLOTD_TEST_NO_REFUSALS") == "1"
	if v := getenv("SLOTD_TEST_MOVE_PART_BYTES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1<<20 {
			return o, fmt.Errorf("SLOTD_TEST_MOVE_PART_BYTES=%q: want 1 to %d bytes", v, 1<<20)
		}
		o.cluster.movePartBytes = n
	}
	if o.ratePerKey <= 0 || o.rateBurst < 0 || o.inFlightMax < 1 {
		return o, fmt.Errorf("-rate-per-key must be positive, -rate-burst not negative, -in-flight-max at least 1")
	}
	if o.ratePerApplicant < 0 || o.rateApplicantBurst < 1 {
		return o, fmt.Errorf("-rate-per-applicant must not be negative (0 switches it off), -rate-applicant-burst at least 1")
	}
	if o.shutdownDelay < 0 || o.shutdownDelay > shutdownDelayMax {
		return o, fmt.Errorf("-shutdown-delay %s: use 0 to %s", o.shutdownDelay, shutdownDelayMax)
	}
	switch o.logLevel {
	case "debug", "info", "warn", "error":
	default:
		return o, fmt.Errorf("-log-level %q: use debug, info, warn or error", o.logLevel)
	}
	return o, nil
}
