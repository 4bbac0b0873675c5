package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The end-to-end tests build cmd/slotd, start it with -demo on loopback
// ports and a temporary data directory, and run short, bounded scenarios
// against it followed by the invariant check. They skip under -short and
// when the slotd binary does not serve yet.

type slotdProcess struct {
	url     string
	portal  string
	admin   string
	stderr  *bytes.Buffer
	dataDir string
}

// The slotd binary is built once per test binary run.
var slotdBuild struct {
	once sync.Once
	dir  string
	bin  string
	err  error
}

func slotdBinary(goBin string) (string, error) {
	slotdBuild.once.Do(func() {
		slotdBuild.dir, slotdBuild.err = os.MkdirTemp("", "slotload-e2e-")
		if slotdBuild.err != nil {
			return
		}
		slotdBuild.bin = filepath.Join(slotdBuild.dir, "slotd")
		out, err := exec.Command(goBin, "build", "-o", slotdBuild.bin, "slotd/cmd/slotd").CombinedOutput()
		if err != nil {
			slotdBuild.err = fmt.Errorf("cannot build slotd: %v\n%s", err, out)
		}
	})
	return slotdBuild.bin, slotdBuild.err
}

func TestMain(m *testing.M) {
	code := m.Run()
	if slotdBuild.dir != "" {
		os.RemoveAll(slotdBuild.dir)
	}
	os.Exit(code)
}

// freePort asks the kernel for a loopback port. Another process could take
// it before slotd binds it; the start then fails loudly, not silently.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func startSlotd(t *testing.T) *slotdProcess {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end: starts slotd")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("end-to-end: no go tool to build slotd")
	}
	dir := t.TempDir()
	bin, err := slotdBinary(goBin)
	if err != nil {
		t.Fatal(err)
	}
	addr, adminAddr := freePort(t), freePort(t)
	p := &slotdProcess{url: "http://" + addr, stderr: &bytes.Buffer{}, dataDir: filepath.Join(dir, "data")}
	cmd := exec.Command(bin, "-demo", "-addr", addr, "-admin-addr", adminAddr, "-data", p.dataDir, "-log-level", "warn")
	cmd.Stdout, cmd.Stderr = p.stderr, p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{}) // closed when slotd exits; then waitErr is set
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	// Poll /readyz with a deadline.
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + adminAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-exited:
			if strings.Contains(p.stderr.String(), "not built yet") {
				t.Skip("end-to-end: slotd does not serve yet")
			}
			t.Fatalf("slotd exited before ready: %v\n%s", waitErr, p.stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("slotd not ready after 30s\n%s", p.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	data, err := os.ReadFile(filepath.Join(p.dataDir, "dev-keys.json"))
	if err != nil {
		t.Fatalf("no development keys: %v", err)
	}
	var keys []struct {
		Key, Name string
	}
	if err := json.Unmarshal(data, &keys); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		switch k.Name {
		case "demo-portal":
			p.portal = k.Key
		case "demo-admin":
			p.admin = k.Key
		}
	}
	if p.portal == "" || p.admin == "" {
		t.Fatalf("dev-keys.json lacks demo-portal or demo-admin: %s", data)
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
	for _, name := range []string{"hold.txt", "hold.json", "hold.hdr", "all.txt", "plot.html", "summary.json"} {
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
