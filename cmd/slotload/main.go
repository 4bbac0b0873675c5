// Command slotload replays booking load against a slotd server with vegeta
// and checks the server's invariants afterwards (see package loadtest).
//
//	slotload -url http://127.0.0.1:8080 -keys-file data/dev-keys.json -scenario rush -out reports/
//
// It prints a summary and exits 1 when an invariant check or the fairness
// bound failed, 2 when the run could not happen. The run's -out directory
// also gets results.bin, vegeta's raw results. Subcommands work on files:
//
//	slotload report [-out dir] results.bin...            # re-report raw results (several: merged)
//	slotload merge -out all.bin a.bin b.bin              # merge the results of several generators
//	slotload profile -from prometheus|access-log file... # a real day as a -profile CSV
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"slotd/loadtest"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		if sub, ok := subcommands[args[0]]; ok {
			return sub(args[1:], stdout, stderr)
		}
	}
	cfg, cpuProfile, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "slotload:", err)
		return 2
	}
	if cpuProfile != "" {
		f, err := os.Create(cpuProfile)
		if err != nil {
			fmt.Fprintln(stderr, "slotload:", err)
			return 2
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(stderr, "slotload:", err)
			return 2
		}
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := loadtest.Run(ctx, cfg)
	if err != nil && rep.All == nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	_ = rep.WriteSummary(stdout)
	for _, f := range rep.Files {
		fmt.Fprintln(stdout, "wrote", f)
	}
	switch {
	case err != nil:
		fmt.Fprintln(stderr, err)
		return 2
	case !rep.OK():
		return 1
	}
	return 0
}

// parseFlags returns the run's configuration and where to write a CPU
// profile of the generator ("" for none).
func parseFlags(args []string, stderr io.Writer) (cfg loadtest.Config, cpuProfile string, err error) {
	var (
		keysFile string
		profile  string
		mix      string
	)
	fs := flag.NewFlagSet("slotload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.URL, "url", "http://127.0.0.1:8080", "slotd API base `URL`")
	fs.StringVar(&cfg.Key, "key", "", "API `key` with the portal scope")
	fs.StringVar(&cfg.AdminKey, "admin-key", "", "API `key` with the admin scope (releases the rush date)")
	fs.StringVar(&keysFile, "keys-file", "", "keys `file` (slotd's dev-keys.json): takes the portal and admin keys from it")
	fs.StringVar(&cfg.Scenario, "scenario", loadtest.ScenarioRush, "rush, peakday, mixed or botrush")
	fs.StringVar(&cfg.Office, "office", "", "office `id` [msk-sakharovo]")
	fs.StringVar(&cfg.Service, "service", "", "service `id` [patent]")
	fs.IntVar(&cfg.Applicants, "applicants", 0, "distinct applicants (rush, botrush) or cap on arrivals [1000 for rush and botrush]")
	fs.Float64Var(&cfg.RatePerSecond, "rate", 0, "mixed: operations per second [200]; peakday: peak rate to rescale the profile to")
	fs.DurationVar(&cfg.Duration, "duration", 0, "cap on the arrival phase [mixed 10s, peakday the compressed profile]")
	fs.StringVar(&profile, "profile", "", "peakday rate profile `CSV` (HH:MM,rate) [the shipped migration-centre day]")
	fs.Float64Var(&cfg.Compress, "compress", 0, "peakday: play the profile this many times faster [60]")
	fs.DurationVar(&cfg.Lead, "lead", 0, "rush: arrivals before the release instant [1s]")
	fs.DurationVar(&cfg.Spread, "spread", 0, "rush: arrivals after the release instant [2s]")
	fs.StringVar(&cfg.ReleaseDate, "release-date", "", "rush: `date` to release [the first after the released ones]")
	fs.Float64Var(&cfg.GiveUpRatio, "give-up", 0, "fraction of applicants who let their hold expire [0.1]")
	fs.Float64Var(&cfg.BotRatio, "bots", 0, "botrush: fraction of applicants that are bots [0.2]")
	fs.IntVar(&cfg.BotFactor, "bot-factor", 0, "botrush: requests per bot per human request [10]")
	fs.StringVar(&mix, "mix", "", "mixed: weights `read,hold,confirm,cancel,reschedule` [60,20,10,5,5]")
	fs.DurationVar(&cfg.RequestTimeout, "timeout", 0, "per-request timeout [10s]")
	fs.DurationVar(&cfg.DrainTimeout, "drain", 0, "bound on follow-up steps after the last arrival [30s]")
	fs.Uint64Var(&cfg.WorkersMax, "workers", 0, "max requests in flight per attack [4096]")
	fs.BoolVar(&cfg.NoCheck, "no-check", false, "skip the invariant check")
	fs.StringVar(&cfg.OutDir, "out", "", "`directory` for the reports, plot.html and results.bin (vegeta's raw results)")
	fs.BoolVar(&cfg.NoResults, "no-results", false, "leave results.bin out of -out")
	fs.Int64Var(&cfg.Seed, "seed", 0, "seed of the applicants' choices [random]")
	fs.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the generator to `file`")
	quiet := fs.Bool("quiet", false, "no progress lines")
	if err := fs.Parse(args); err != nil {
		return cfg, "", err
	}
	if fs.NArg() > 0 {
		return cfg, "", fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if !*quiet {
		cfg.Log = stderr
	}
	if keysFile != "" {
		portal, admin, err := keysFromFile(keysFile)
		if err != nil {
			return cfg, "", err
		}
		if cfg.Key == "" {
			cfg.Key = portal
		}
		if cfg.AdminKey == "" {
			cfg.AdminKey = admin
		}
	}
	if profile != "" {
		f, err := os.Open(profile)
		if err != nil {
			return cfg, "", fmt.Errorf("cannot open profile: %w", err)
		}
		defer f.Close()
		p, err := loadtest.ParseProfile(f)
		if err != nil {
			return cfg, "", fmt.Errorf("%s: %w", profile, err)
		}
		cfg.Profile = &p
	}
	if mix != "" {
		var w [5]int
		parts := strings.Split(mix, ",")
		if len(parts) != len(w) {
			return cfg, "", fmt.Errorf("-mix %q: want five weights read,hold,confirm,cancel,reschedule", mix)
		}
		for i, p := range parts {
			n, err := strconv.Atoi(strings.TrimSpace(p))
			if err != nil || n < 0 {
				return cfg, "", fmt.Errorf("-mix %q: weight %q is not an integer ≥ 0", mix, p)
			}
			w[i] = n
		}
		cfg.Mix = loadtest.Mix{Read: w[0], Hold: w[1], Confirm: w[2], Cancel: w[3], Reschedule: w[4]}
	}
	return cfg, cpuProfile, nil
}

// keysFromFile picks the portal and admin keys of a keys file: the entries
// named demo-portal and demo-admin, else the first with each scope.
func keysFromFile(path string) (portal, admin string, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", "", fmt.Errorf("cannot read keys: %w", err)
	}
	var keys []struct {
		Key    string   `json:"key"`
		Name   string   `json:"name"`
		Scopes []string `json:"scopes"`
	}
	if err := json.Unmarshal(data, &keys); err != nil {
		return "", "", fmt.Errorf("%s: %w", path, err)
	}
	pick := func(name, scope string) string {
		for _, k := range keys {
			if k.Name == name {
				return k.Key
			}
		}
		for _, k := range keys {
			if slices.Contains(k.Scopes, scope) {
				return k.Key
			}
		}
		return ""
	}
	portal, admin = pick("demo-portal", "portal"), pick("demo-admin", "admin")
	if portal == "" {
		return "", "", fmt.Errorf("%s: no key with the portal scope", path)
	}
	return portal, admin, nil
}
