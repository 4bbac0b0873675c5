package deploy

import (
	"os"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v4"
)

const peersSelectScript = "../bench/peers/scripts/peers-select.sh"

// composeService is what the peers' test reads of a service in the
// configuration Compose resolves.
type composeService struct {
	Image       string            `yaml:"image"`
	Profiles    []string          `yaml:"profiles"`
	Command     []string          `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	Ports       []any             `yaml:"ports"`
	Volumes     []any             `yaml:"volumes"`
}

// TestComposePeersProfile: Compose accepts compose.yaml with the profile
// "peers", which holds PostgreSQL and Redis as the peer comparison runs
// them (every write synced, published on loopback only, data under
// PEERS_DATA) with the official images peers-select.sh looks for; slotd
// itself is in no profile, so a plain up starts it alone.
func TestComposePeersProfile(t *testing.T) {
	compose := composeOrSkip(t)
	for _, v := range []string{"SLOTD_IMAGE", "PROMETHEUS_IMAGE", "GRAFANA_IMAGE", "PEERS_POSTGRES_IMAGE",
		"PEERS_REDIS_IMAGE", "PEERS_PG_PORT", "PEERS_REDIS_PORT"} {
		t.Setenv(v, "")
	}
	t.Setenv("PEERS_DATA", t.TempDir())
	args := append(append([]string{}, compose[1:]...), "-f", composeFile, "--profile", "peers", "config")
	var cfg struct {
		Services map[string]composeService `yaml:"services"`
	}
	if err := yaml.Unmarshal([]byte(run(t, compose[0], args...)), &cfg); err != nil {
		t.Fatal(err)
	}
	pg, redis, slotd := cfg.Services["postgres"], cfg.Services["redis"], cfg.Services["slotd"]
	if len(slotd.Profiles) != 0 {
		t.Errorf("slotd is in profiles %v", slotd.Profiles)
	}
	script, err := os.ReadFile(peersSelectScript)
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]composeService{"postgres": pg, "redis": redis} {
		if !slices.Equal(s.Profiles, []string{"peers"}) {
			t.Errorf("%s: profiles %v, want [peers]", name, s.Profiles)
		}
		// The same default image as the script that looks for it.
		if !strings.Contains(string(script), ":-"+s.Image+"}") {
			t.Errorf("%s: image %s is not %s's default", name, s.Image, peersSelectScript)
		}
		if ports := toString(s.Ports); !strings.Contains(ports, "127.0.0.1") {
			t.Errorf("%s: ports %s not on loopback", name, ports)
		}
		if !strings.Contains(toString(s.Volumes), os.Getenv("PEERS_DATA")) {
			t.Errorf("%s: volumes %v not under PEERS_DATA", name, s.Volumes)
		}
	}
	if pg.Image != "postgres:15" || redis.Image != "redis:7" {
		t.Errorf("images %s, %s; want the official postgres:15 and redis:7 (DESIGN §5)", pg.Image, redis.Image)
	}
	pgCmd, redisCmd := strings.Join(pg.Command, " "), strings.Join(redis.Command, " ")
	for _, want := range []string{"-c fsync=on", "-c synchronous_commit=on", "-c max_connections=600"} {
		if !strings.Contains(pgCmd, want) {
			t.Errorf("postgres command %q lacks %q", pgCmd, want)
		}
	}
	for _, want := range []string{"--appendonly yes", "--appendfsync always"} {
		if !strings.Contains(redisCmd, want) {
			t.Errorf("redis command %q lacks %q", redisCmd, want)
		}
	}
	if pg.Environment["POSTGRES_HOST_AUTH_METHOD"] != "trust" {
		t.Errorf("postgres environment %v: the script connects without a password", pg.Environment)
	}
}

// toString renders what Compose wrote in either of its syntaxes.
func toString(v any) string {
	b, _ := yaml.Marshal(v)
	return string(b)
}
