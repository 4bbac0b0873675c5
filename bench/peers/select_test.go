package peers

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// The peer servers come from containers only where they can run without
// pulling anything; scripts/peers-select.sh decides, and these tests run
// it against the real container engine of this machine, with images made
// here (docker import of an empty file system: present, tagged, never
// pulled).

const selectScript = "scripts/peers-select.sh"

// selectCallMax bounds one run of the script or one docker command; a
// bound, not a measurement.
const selectCallMax = 2 * time.Minute

// runSelect runs the script with env added and returns its exit code and
// outputs.
func runSelect(t *testing.T, env ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), selectCallMax)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", selectScript)
	cmd.Env = append(os.Environ(), env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, out.String(), errOut.String()
	case errors.As(err, &exit):
		return exit.ExitCode(), out.String(), errOut.String()
	}
	t.Fatalf("%s: %v", selectScript, err)
	return 0, "", ""
}

func TestPeersSelectWithoutEngine(t *testing.T) {
	f := func(wantCode int, wantOut, wantErr string, env ...string) {
		t.Helper()
		code, out, errOut := runSelect(t, env...)
		if code != wantCode || strings.TrimSpace(out) != wantOut || !strings.Contains(errOut, wantErr) {
			t.Errorf("env %v: exit %d, out %q, err %q; want %d, %q, an error with %q", env, code, out, errOut, wantCode, wantOut, wantErr)
		}
	}
	f(0, "packages", "no container engine (no-such-engine not found)", "DOCKER=no-such-engine", "PEERS_ENGINE=")
	f(1, "", "PEERS_ENGINE=containers, but no container engine", "DOCKER=no-such-engine", "PEERS_ENGINE=containers")
	f(0, "packages", "", "DOCKER=no-such-engine", "PEERS_ENGINE=packages")
	f(2, "", "PEERS_ENGINE=podman: want auto, containers or packages", "PEERS_ENGINE=podman")
}

func TestPeersSelectWithEngine(t *testing.T) {
	docker, err := exec.LookPath("docker")
	if err != nil {
		t.Skip("docker not found: the selection with a container engine is not tested")
	}
	dockerCmd := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), selectCallMax)
		defer cancel()
		cmd := exec.CommandContext(ctx, docker, args...)
		if args[0] == "import" {
			cmd.Stdin = bytes.NewReader(emptyTar())
		}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := dockerCmd("info", "--format", "{{.ServerVersion}}"); err != nil {
		t.Skipf("the Docker daemon does not answer: %v %s", err, out)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	tag := hex.EncodeToString(b[:])
	pg, redis := "slotd-peers-test/postgres:"+tag, "slotd-peers-test/redis:"+tag
	images := []string{"PEERS_POSTGRES_IMAGE=" + pg, "PEERS_REDIS_IMAGE=" + redis, "DOCKER=" + docker}

	// Neither image here: the packages, and containers refused with why.
	code, out, errOut := runSelect(t, append(images, "PEERS_ENGINE=")...)
	if code != 0 || strings.TrimSpace(out) != "packages" || !strings.Contains(errOut, "image "+pg+" is not present locally") {
		t.Errorf("no images: exit %d, out %q, err %q", code, out, errOut)
	}
	code, _, errOut = runSelect(t, append(images, "PEERS_ENGINE=containers")...)
	if code != 1 || !strings.Contains(errOut, "is not present locally") {
		t.Errorf("containers without images: exit %d, err %q", code, errOut)
	}

	// One of the two is not enough.
	if out, err := dockerCmd("import", "-", pg); err != nil {
		t.Fatalf("docker import: %v %s", err, out)
	}
	t.Cleanup(func() { dockerCmd("rmi", pg) })
	code, out, errOut = runSelect(t, append(images, "PEERS_ENGINE=")...)
	if code != 0 || strings.TrimSpace(out) != "packages" || !strings.Contains(errOut, "image "+redis+" is not present locally") {
		t.Errorf("only the postgres image: exit %d, out %q, err %q", code, out, errOut)
	}

	// Both: the containers, with a Compose command that works, unless
	// the packages are asked for.
	if out, err := dockerCmd("import", "-", redis); err != nil {
		t.Fatalf("docker import: %v %s", err, out)
	}
	t.Cleanup(func() { dockerCmd("rmi", redis) })
	code, out, errOut = runSelect(t, append(images, "PEERS_ENGINE=")...)
	mode, compose, _ := strings.Cut(strings.TrimSpace(out), " ")
	if code != 0 || mode != "containers" {
		t.Fatalf("both images: exit %d, out %q, err %q", code, out, errOut)
	}
	if compose != docker+" compose" && compose != "docker-compose" {
		t.Errorf("compose command %q", compose)
	}
	fields := strings.Fields(compose)
	if o, err := exec.Command(fields[0], append(fields[1:], "version")...).CombinedOutput(); err != nil {
		t.Errorf("%s version: %v %s", compose, err, o)
	}
	code, out, _ = runSelect(t, append(images, "PEERS_ENGINE=packages")...)
	if code != 0 || strings.TrimSpace(out) != "packages" {
		t.Errorf("packages asked for: exit %d, out %q", code, out)
	}
}

// emptyTar is a tar archive with no files: docker import makes an image
// of it without a registry.
func emptyTar() []byte { return make([]byte, 1024) }
