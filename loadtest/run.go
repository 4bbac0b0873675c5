package loadtest

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net/http"
	"sort"
	"time"
)

// Run runs one load test as cfg says, then checks the server's invariants
// against what the run was told, and writes the reports to cfg.OutDir. It
// returns an error when the run could not happen (bad config, server
// unreachable, setup refused); a run that happened but broke an invariant
// or the fairness bound returns a Report whose OK() is false.
func Run(ctx context.Context, cfg Config) (Report, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return Report{}, fmt.Errorf("slotload: %w", err)
	}
	httpClient := &http.Client{Timeout: cfg.RequestTimeout}
	api := &apiClient{base: cfg.URL, key: cfg.Key, http: httpClient, attemptsMax: 5, retryAfterMax: cfg.RetryAfterMax}
	var admin *apiClient
	if cfg.AdminKey != "" {
		a := *api
		a.key = cfg.AdminKey
		admin = &a
	}
	seed := uint64(cfg.Seed)
	if seed == 0 {
		var b [8]byte
		_, _ = rand.Read(b[:])
		seed = binary.LittleEndian.Uint64(b[:])
	}
	e := newEngine(cfg, api, seed)
	if cfg.OutDir != "" && !cfg.NoResults {
		rw, err := createResults(cfg.OutDir)
		if err != nil {
			return Report{}, fmt.Errorf("slotload: %w", err)
		}
		e.stats.results = rw
		defer rw.close() // a no-op after the close below; a failed run's error comes first
	}

	var (
		note     string
		fairness *Fairness
		err      error
	)
	switch cfg.Scenario {
	case ScenarioRush:
		note, err = runRush(ctx, e, admin)
	case ScenarioBotRush:
		note, fairness, err = runBotRush(ctx, e, admin)
	case ScenarioPeakDay:
		note, err = runPeakDay(ctx, e, admin)
	case ScenarioMixed:
		note, err = runMixed(ctx, e, admin)
	default:
		panic("BUG: scenario passed validate: " + cfg.Scenario)
	}
	if err != nil {
		return Report{}, fmt.Errorf("slotload: %s: %w", cfg.Scenario, err)
	}
	rep := e.stats.report(cfg.Scenario)
	if rw := e.stats.results; rw != nil {
		if err := rw.close(); err != nil {
			return rep, fmt.Errorf("slotload: %w", err)
		}
		rep.Files = append(rep.Files, rw.path)
	}
	rep.Release, rep.Fairness, rep.Bookings = note, fairness, len(e.created)

	if !cfg.NoCheck {
		// The check reads every booking back as its portal would: through
		// the key that booked it, since a booking is found only in the
		// namespace of the portal that made it. That key has a rate
		// limit: the check waits out 429s patiently rather than report a
		// booking it could not read.
		checkAPI := *api
		checkAPI.attemptsMax = checkAttemptsMax
		checkCtx, cancel := context.WithTimeout(ctx, cfg.CheckTimeout)
		defer cancel()
		in := CheckInput{Bookings: e.created}
		for d := range e.days {
			in.Days = append(in.Days, d)
		}
		sort.Slice(in.Days, func(i, j int) bool {
			a, b := in.Days[i], in.Days[j]
			if a.Office != b.Office {
				return a.Office < b.Office
			}
			return a.Date < b.Date
		})
		e.logf("checking invariants: %d bookings, %d dates", len(in.Bookings), len(in.Days))
		began := time.Now()
		check, err := CheckInvariants(checkCtx, &checkAPI, in)
		if err != nil {
			return rep, fmt.Errorf("slotload: %w", err)
		}
		e.logf("check took %s", time.Since(began).Round(time.Millisecond))
		rep.Check = &check
	}
	if cfg.OutDir != "" {
		if err := rep.writeFiles(cfg.OutDir, e.stats.plot, &e.stats.chart); err != nil {
			return rep, fmt.Errorf("slotload: %w", err)
		}
	}
	return rep, nil
}
