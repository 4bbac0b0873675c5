package clustertest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"slotd/internal/slotdtest/testtime"
)

// The same checks against three containers of the slotd image on a
// private Docker network: docker kill stops a node, docker network
// disconnect cuts it off. The image is built FROM scratch over the
// static binary (the Dockerfile at the repository's root), so it needs
// no registry. Skipped, with the reason, where Docker is not there.

// dockerMax bounds one docker command; a bound, not a measurement.
const dockerMax = 5 * time.Minute

func docker(t *testing.T, args ...string) string {
	t.Helper()
	out, err := dockerErr(args...)
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(out)
}

func dockerErr(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), dockerMax)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func dockerOrSkip(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("docker not found on PATH: the container cluster test needs the Docker client and daemon")
	}
	if out, err := dockerErr("info", "--format", "{{.ServerVersion}}"); err != nil || strings.TrimSpace(out) == "" {
		t.Skipf("the Docker daemon does not answer: %v %s", err, strings.TrimSpace(out))
	}
}

// buildImage builds the slotd image from the repository's Dockerfile
// over a static binary, tagged tag, removed at the end of the test.
func buildImage(t *testing.T, tag string) {
	t.Helper()
	ctxDir := t.TempDir()
	build := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(ctxDir, "slotd"), "slotd/cmd/slotd")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("static build: %v\n%s", err, out)
	}
	if err := os.Mkdir(filepath.Join(ctxDir, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	docker(t, "build", "-q", "-f", filepath.Join("..", "Dockerfile"), "-t", tag, ctxDir)
	t.Cleanup(func() { dockerErr("image", "rm", "-f", tag) })
}

func TestContainersKillAndPartition(t *testing.T) {
	dockerOrSkip(t)
	var rnd [4]byte
	rand.Read(rnd[:])
	id := "slotd-ct-" + hex.EncodeToString(rnd[:])
	buildImage(t, id+":test")
	// A subnet of its own, so that each container keeps its address
	// across a restart.
	net := id + "-net"
	var subnet string
	for try := 0; ; try++ {
		var b [2]byte
		rand.Read(b[:])
		subnet = fmt.Sprintf("10.%d.%d", 100+int(b[0])%100, b[1])
		out, err := dockerErr("network", "create", "--subnet", subnet+".0/24", net)
		if err == nil {
			break
		}
		if try == 5 {
			t.Fatalf("docker network create: %v\n%s", err, out)
		}
	}
	t.Cleanup(func() { dockerErr("network", "rm", net) })

	dir := t.TempDir()
	keys := filepath.Join(dir, "keys.json")
	if err := os.WriteFile(keys, []byte(fmt.Sprintf(`[{"key":%q,"name":"portal","scopes":["portal"],"offices":["*"]},{"key":%q,"name":"admin","scopes":["admin","portal","operator"],"offices":["*"]}]`, portalKey, adminKey)), 0o644); err != nil {
		t.Fatal(err)
	}
	secret := make([]byte, 32)
	rand.Read(secret)
	c := &cluster{t: t, groups: 2}
	var peers, edges []string
	for i := 1; i <= 3; i++ {
		name := fmt.Sprintf("%s-n%d", id, i)
		peers = append(peers, fmt.Sprintf("%d=%s:7001", i, name))
		edges = append(edges, fmt.Sprintf("%d=%s:8080", i, name))
	}
	for i := 1; i <= 3; i++ {
		name := fmt.Sprintf("%s-n%d", id, i)
		data := filepath.Join(dir, fmt.Sprintf("data%d", i))
		if err := os.Mkdir(data, 0o777); err != nil {
			t.Fatal(err)
		}
		os.Chmod(data, 0o777) // the image's user writes here
		if err := os.WriteFile(filepath.Join(data, "ticket-secret"), secret, 0o644); err != nil {
			t.Fatal(err)
		}
		ip := fmt.Sprintf("%s.%d", subnet, 10+i)
		docker(t, "run", "-d", "--name", name, "--network", net, "--ip", ip, "-v", data+":/data", "-v", keys+":/etc/slotd/keys.json:ro",
			id+":test", "-demo", "-keys", "/etc/slotd/keys.json", "-node-id", fmt.Sprint(i),
			"-peers", strings.Join(peers, ","), "-edges", strings.Join(edges, ","), "-groups", "2",
			"-rate-per-key", "100000", "-rate-per-applicant", "0", "-log-level", "warn")
		t.Cleanup(func() {
			if t.Failed() {
				out, _ := dockerErr("logs", "--tail", "40", name)
				t.Logf("%s log tail:\n%s", name, out)
			}
			dockerErr("rm", "-f", name)
		})
		c.nodes = append(c.nodes, &node{c: c, id: i, addr: ip + ":8080", admin: ip + ":9090", container: name})
	}
	for _, n := range c.nodes {
		n.waitReady()
	}
	c.leader(1)
	c.leader(2)
	date := nextWeekday(6)
	offices := []string{"msk-mfc-tverskoy", "msk-mfc-mitino", "spb-mmc"}
	var rushes []*rush
	for _, o := range offices {
		rushes = append(rushes, c.startRush(o, date, 4))
	}
	time.Sleep(time.Second)

	// docker kill the leader of group 1, then start it again.
	victim := c.leader(1)
	victim.containerDown.Store(true)
	docker(t, "kill", victim.container)
	c.leader(1)
	time.Sleep(time.Second)
	docker(t, "start", victim.container)
	victim.containerDown.Store(false)
	victim.waitReady()

	// Cut the leader of group 2 off the network, then mend it.
	cut := c.leader(2)
	cut.containerDown.Store(true)
	docker(t, "network", "disconnect", net, cut.container)
	testtime.Eventually(t, waitFor, "a leader of group 2 on the connected side", func() error {
		l := c.leader(2)
		if l == cut {
			return fmt.Errorf("still node %d", l.id)
		}
		return nil
	})
	time.Sleep(time.Second)
	docker(t, "network", "connect", "--ip", strings.Split(cut.addr, ":")[0], net, cut.container)
	cut.containerDown.Store(false)
	cut.waitReady()

	time.Sleep(500 * time.Millisecond)
	c.endRushes(offices, rushes)
}
