package deploy

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"slotd/internal/slotdtest"
)

const (
	unitFile = "slotd.service"
	// unitExecStart is where the unit expects the binary.
	unitExecStart = "/usr/local/bin/slotd"
	// drainMax is how long slotd gives in-flight requests after the
	// shutdown delay (cmd/slotd shutdownTimeout); the unit's stop
	// timeout must exceed it.
	drainMax = 30 * time.Second
)

// unitSettings reads a systemd unit: section → key → values, in order
// (keys such as Environment= repeat).
func unitSettings(t *testing.T, path string) map[string]map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = strings.Trim(line, "[]")
			out[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s: line %q is not key=value in a section", path, line)
			}
			out[section][k] = append(out[section][k], v)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// flagRe matches a flag in slotd -h's output.
var flagRe = regexp.MustCompile(`(?m)^\s+-([a-z][a-z0-9-]*)`)

// TestSystemdUnit: the unit is what the runbook assumes — unit name
// slotd, data in /var/lib/slotd kept by systemd, a descriptor limit, a
// stop timeout longer than the drain — its settings name real flags, and
// systemd-analyze accepts it where it is installed.
func TestSystemdUnit(t *testing.T) {
	u := unitSettings(t, unitFile)
	svc := u["Service"]
	one := func(key string) string {
		t.Helper()
		if len(svc[key]) != 1 {
			t.Errorf("[Service] %s: %q, want one value", key, svc[key])
			return ""
		}
		return svc[key][0]
	}
	if got := one("ExecStart"); got != unitExecStart {
		t.Errorf("ExecStart=%s, want %s", got, unitExecStart)
	}
	if one("StateDirectory") != "slotd" || one("User") == "" || one("User") == "root" {
		t.Errorf("want StateDirectory=slotd (/var/lib/slotd) owned by a User other than root")
	}
	if one("KillSignal") != "SIGTERM" || one("Restart") != "on-failure" || one("LimitNOFILE") == "" {
		t.Errorf("want KillSignal=SIGTERM, Restart=on-failure and a LimitNOFILE")
	}
	if d, err := time.ParseDuration(one("TimeoutStopSec") + "s"); err != nil || d <= drainMax {
		t.Errorf("TimeoutStopSec=%s: want seconds, more than the %s drain", one("TimeoutStopSec"), drainMax)
	}
	if len(u["Install"]["WantedBy"]) == 0 {
		t.Error("no [Install] WantedBy=: systemctl enable would do nothing")
	}

	// Every SLOTD_ variable the unit sets is a flag slotd knows, and
	// the data directory is the runbook's.
	bin := slotdtest.Build(t)
	help, _ := exec.Command(bin, "-h").CombinedOutput()
	flags := map[string]bool{}
	for _, m := range flagRe.FindAllStringSubmatch(string(help), -1) {
		flags[m[1]] = true
	}
	env := map[string]string{}
	for _, e := range svc["Environment"] {
		k, v, _ := strings.Cut(e, "=")
		env[k] = v
		name := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(k, "SLOTD_"), "_", "-"))
		if !strings.HasPrefix(k, "SLOTD_") || !flags[name] {
			t.Errorf("Environment=%s: slotd has no flag -%s (slotd -h lists %d)", e, name, len(flags))
		}
	}
	if env["SLOTD_DATA"] != "/var/lib/slotd" {
		t.Errorf("SLOTD_DATA=%q, want /var/lib/slotd (the runbook's $DATA, systemd's StateDirectory)", env["SLOTD_DATA"])
	}

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Log("systemd-analyze not found: the unit's syntax is not checked by systemd")
		return
	}
	// systemd-analyze checks that ExecStart exists: point it at the
	// binary just built. It reports unknown keys without failing, so any
	// output fails the test.
	data, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	unit := filepath.Join(t.TempDir(), unitFile)
	if err := os.WriteFile(unit, []byte(strings.Replace(string(data), "ExecStart="+unitExecStart, "ExecStart="+bin, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", unit).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify %s: %v\n%s", unitFile, err, out)
	}
}
