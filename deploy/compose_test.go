package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

const (
	composeFile           = "compose.yaml"
	composePrometheusFile = "prometheus/prometheus-compose.yml"
	grafanaDatasources    = "grafana/provisioning/datasources/slotd.yml"
	grafanaDashboards     = "grafana/provisioning/dashboards/slotd.yml"
)

// composeOrSkip returns the command that runs Compose: the docker CLI's
// plugin ("docker compose") where it is installed, else the standalone
// docker-compose; it skips the test when there is neither.
func composeOrSkip(t *testing.T) []string {
	t.Helper()
	if docker, err := exec.LookPath("docker"); err == nil {
		if _, _, err := runErr(dockerCleanupMax, docker, "compose", "version"); err == nil {
			return []string{docker, "compose"}
		}
	}
	if path, err := exec.LookPath("docker-compose"); err == nil {
		return []string{path}
	}
	t.Skip("neither docker compose nor docker-compose is installed: compose.yaml is not validated")
	return nil
}

// TestComposeConfig: Compose accepts compose.yaml with and without the
// monitoring profile, and the profile is what adds Prometheus and
// Grafana.
func TestComposeConfig(t *testing.T) {
	compose := composeOrSkip(t)
	// The defaults, whatever the environment names (empty is unset to
	// Compose's ${VAR:-default}).
	for _, v := range []string{"SLOTD_IMAGE", "PROMETHEUS_IMAGE", "GRAFANA_IMAGE"} {
		t.Setenv(v, "")
	}
	config := func(extra ...string) string {
		args := append(append(append([]string{}, compose[1:]...), "-f", composeFile), extra...)
		return run(t, compose[0], append(args, "config")...)
	}
	plain := config()
	monitoring := config("--profile", "monitoring")
	for _, want := range []string{"slotd:latest", "/data", "stop_grace_period: 45s", "127.0.0.1:9090:9090"} {
		if !strings.Contains(plain, want) {
			t.Errorf("compose config lacks %q:\n%s", want, plain)
		}
	}
	for _, want := range []string{"prom/prometheus", "grafana/grafana", "prometheus-compose.yml", "monitoring"} {
		if !strings.Contains(monitoring, want) {
			t.Errorf("compose config with the monitoring profile lacks %q:\n%s", want, monitoring)
		}
	}
}

// bindSourceRe matches a short-syntax bind mount of a path relative to
// the compose file: "- ./grafana/slotd.json:/etc/…".
var bindSourceRe = regexp.MustCompile(`(?m)^\s*-\s*"?(\.{1,2}/[^:"]+):`)

// TestComposeFilesExist: every file compose.yaml mounts is in the
// repository (Compose itself would create a missing source as an empty
// directory), Prometheus's configuration there loads the rules, and
// Grafana's provisioning points at the mounted dashboard and at the
// Prometheus service.
func TestComposeFilesExist(t *testing.T) {
	data, err := os.ReadFile(composeFile)
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	sources := bindSourceRe.FindAllStringSubmatch(text, -1)
	if len(sources) < 3 {
		t.Fatalf("%s: %d bind mounts found, want Prometheus's rules and Grafana's provisioning and dashboard", composeFile, len(sources))
	}
	for _, m := range sources {
		if _, err := os.Stat(filepath.FromSlash(m[1])); err != nil {
			t.Errorf("%s mounts %s: %v", composeFile, m[1], err)
		}
	}
	for _, want := range []string{
		"./prometheus:/etc/prometheus/slotd:ro",
		"--config.file=/etc/prometheus/slotd/" + filepath.Base(composePrometheusFile),
		"./grafana/slotd.json:/etc/grafana/dashboards/slotd.json:ro",
		"./grafana/provisioning:/etc/grafana/provisioning:ro",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("%s lacks %q", composeFile, want)
		}
	}
	for path, want := range map[string]string{
		grafanaDatasources:    "url: http://prometheus:9090",
		grafanaDashboards:     "path: /etc/grafana/dashboards",
		composePrometheusFile: `targets: ["slotd:9090"]`,
	} {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), want) {
			t.Errorf("%s lacks %q", path, want)
		}
	}
	// promtool loads the rule files the configuration names, beside it.
	t.Log(runPromtool(t, "check", "config", composePrometheusFile))
}
