package loadtest

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"slotd/internal/slotdtest"
)

// The end-to-end tests build cmd/slotd, start it with -demo on loopback
// ports and a temporary data directory, and run short, bounded scenarios
// against it followed by the invariant check. They skip under -short.

type slotdProcess struct {
	url    string
	portal string
	admin  string
}

// startSlotd builds and starts the real slotd with demo offices on
// ephemeral loopback ports (slotdtest).
func startSlotd(t *testing.T) *slotdProcess {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end: starts slotd")
	}
	srv := slotdtest.Start(t, slotdtest.Build(t), t.TempDir())
	p := &slotdProcess{url: "http://" + srv.Addr, portal: srv.Keys["demo-portal"], admin: srv.Keys["demo-admin"]}
	if p.portal == "" || p.admin == "" {
		t.Fatalf("development keys lack demo-portal or demo-admin: %v", srv.Keys)
	}
	return p
}

func runE2E(t *testing.T, cfg Config) Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var log bytes.Buffer
	cfg.Log = &log
	cfg.OutDir = t.TempDir()
	rep, err := Run(ctx, cfg)
	var sum bytes.Buffer
	if rep.All != nil {
		_ = rep.WriteSummary(&sum)
	}
	t.Logf("%s\n%s", log.String(), sum.String())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Check == nil || !rep.Check.OK() {
		t.Fatalf("invariant check failed")
	}
	for _, name := range []string{"hold.txt", "hold.json", "hold.hdr", "all.txt", "plot.html", "plot.png", "summary.json"} {
		if _, err := os.Stat(filepath.Join(cfg.OutDir, name)); err != nil {
			t.Errorf("report %s: %v", name, err)
		}
	}
	return rep
}

func TestE2ERush(t *testing.T) {
	s := startSlotd(t)
	rep := runE2E(t, Config{URL: s.url, Key: s.portal, AdminKey: s.admin, Scenario: ScenarioRush,
		Applicants: 300, Lead: 500 * time.Millisecond, Spread: time.Second, Seed: 1,
		DrainTimeout: 15 * time.Second})
	if rep.Outcomes[OutcomeBooked] == 0 {
		t.Errorf("nobody booked: %v", rep.Outcomes)
	}
	if n := rep.Outcomes[OutcomeUnfinished] + rep.Outcomes[OutcomeError]; n > 0 {
		t.Errorf("%d applicants unfinished or in error: %v", n, rep.Outcomes)
	}
	if rep.Applicants != 300 {
		t.Errorf("%d applicants, want 300", rep.Applicants)
	}
	if rep.All.Requests > 300*60 {
		t.Errorf("%d requests: the flow is not bounded", rep.All.Requests)
	}
	if !strings.Contains(rep.Release, "released") {
		t.Errorf("no release: %s", rep.Release)
	}
}

func TestE2EBotRush(t *testing.T) {
	s := startSlotd(t)
	rep := runE2E(t, Config{URL: s.url, Key: s.portal, AdminKey: s.admin, Scenario: ScenarioBotRush,
		Applicants: 800, Seed: 2, DrainTimeout: 15 * time.Second})
	if rep.Fairness == nil {
		t.Fatal("no fairness verdict")
	}
	if !rep.Fairness.OK {
		t.Errorf("bots won more than their share: %s", rep.Fairness)
	}
	if f := rep.Fairness; f.BotRequests < 5*f.HumanRequests*f.Bots/max(f.Humans, 1) {
		t.Errorf("bots did not send many more requests than humans: %s", f)
	}
}

func TestE2EMixed(t *testing.T) {
	s := startSlotd(t)
	rep := runE2E(t, Config{URL: s.url, Key: s.portal, AdminKey: s.admin, Scenario: ScenarioMixed,
		RatePerSecond: 150, Duration: 2 * time.Second, Seed: 3})
	if rep.Requests(ClassOK) == 0 {
		t.Errorf("no 2xx at all")
	}
}
