package deploy

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"slotd/internal/slotdtest/testtime"
)

// devKeyRe matches a development key line that slotd -demo prints.
var devKeyRe = regexp.MustCompile(`(?m)^\s+demo-portal\s+\S+\s+Authorization: Bearer (\S+)$`)

// container is a slotd container started by TestContainer, reached
// through ports published on the host's loopback.
type container struct {
	name            string
	api, admin, key string
}

func (c *container) call(t *testing.T, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+c.api+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (c *container) adminGet(path string) (int, string, error) {
	resp, err := client.Get("http://" + c.admin + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// TestContainer builds the image as `make image` does, runs it with the
// demo offices on a network of its own, books through it over HTTP (hold,
// then confirm), reads its readiness and metrics, and stops it: SIGTERM
// must end it with status 0. The image runs FROM scratch, so this also
// proves the binary needs nothing the image lacks (time zones included).
// Everything it creates carries a name unique to the run and is removed
// at the end, whatever the outcome.
func TestContainer(t *testing.T) {
	if testing.Short() {
		t.Skip("builds an image and runs a container")
	}
	docker := dockerOrSkip(t)
	makeCmd, err := exec.LookPath("make")
	if err != nil {
		t.Skip("make not found on PATH: the image is built by make image")
	}
	suffix := randomSuffix(t)
	name := "slotd-test-" + suffix
	image := "slotd-test:" + suffix
	version := "test-" + suffix

	// The build: make image with this run's names, into a scratch
	// context, with no slotd:latest tag.
	run(t, makeCmd, "-C", "..", "image", "IMAGE="+image, "IMAGE_LATEST=", "IMAGE_CONTEXT="+t.TempDir(), "VERSION="+version)
	cleanup(t, docker, "rmi", "--force", image)
	if user := strings.TrimSpace(run(t, docker, "image", "inspect", "--format", "{{.Config.User}}", image)); user != "65532:65532" {
		t.Errorf("image user %q, want the numeric non-root 65532:65532", user)
	}
	// Not --rm: the daemon removes such a container and its anonymous
	// /data volume after the command has returned (a volume was seen
	// left behind); rm --volumes removes both before it returns.
	out := run(t, docker, "run", "--name", name+"-version", image, "-version")
	cleanup(t, docker, "rm", "--force", "--volumes", name+"-version")
	if !strings.HasPrefix(out, "slotd "+version+" commit ") {
		t.Errorf("slotd -version in the image: %q, want version %s", out, version)
	}

	run(t, docker, "network", "create", name)
	cleanup(t, docker, "network", "rm", name)
	// Cleanups run last-in first-out: the container goes before its
	// network and image. -v removes its anonymous /data volume.
	run(t, docker, "run", "--detach", "--name", name, "--network", name,
		"--publish", "127.0.0.1::8080", "--publish", "127.0.0.1::9090", image, "-demo")
	cleanup(t, docker, "rm", "--force", "--volumes", name)

	c := &container{name: name}
	c.api = publishedPort(t, docker, name, "8080/tcp")
	c.admin = publishedPort(t, docker, name, "9090/tcp")
	testtime.Eventually(t, waitMax, "the container's /readyz to answer 200", func() error {
		if state := strings.TrimSpace(run(t, docker, "inspect", "--format", "{{.State.Status}}", name)); state != "running" {
			t.Fatalf("the container is %s, not running:\n%s", state, containerLogs(t, docker, name))
		}
		code, body, err := c.adminGet("/readyz")
		if err != nil || code != 200 {
			return fmt.Errorf("%d %q %v", code, body, err)
		}
		return nil
	})
	m := devKeyRe.FindStringSubmatch(run(t, docker, "logs", name))
	if m == nil {
		t.Fatal("no demo-portal key in the container's output")
	}
	c.key = m[1]

	// Hold, then confirm: through the journal on the container's volume.
	after := time.Now().AddDate(0, 0, 3).Format("2006-01-02") + "T10:00:00+03:00"
	code, body := c.call(t, "POST", "/v1/bookings",
		`{"office":"msk-mfc-tverskoy","service":"patent","applicant":"container-1","earliest_after":"`+after+`"}`)
	id := regexp.MustCompile(`"id":"([^"]+)"`).FindStringSubmatch(body)
	if code != 201 || id == nil || !strings.Contains(body, `"status":"held"`) {
		t.Fatalf("hold: %d %s", code, body)
	}
	code, body = c.call(t, "POST", "/v1/bookings/"+id[1]+"/confirm", `{"applicant":"container-1"}`)
	if code != 200 || !strings.Contains(body, `"status":"confirmed"`) {
		t.Fatalf("confirm: %d %s", code, body)
	}
	if code, body = c.call(t, "GET", "/v1/bookings/"+id[1]+"?applicant=container-1", ""); code != 200 || !strings.Contains(body, `"status":"confirmed"`) {
		t.Fatalf("read back: %d %s", code, body)
	}

	var metrics string
	testtime.Eventually(t, waitMax, "the container's /metrics to count the confirmation", func() error {
		code, body, err := c.adminGet("/metrics")
		if err != nil || code != 200 {
			return fmt.Errorf("%d %v", code, err)
		}
		metrics = body
		if !strings.Contains(body, `slotd_engine_transitions_total{status="confirmed"} 1`+"\n") {
			return fmt.Errorf("no confirmed transition counted yet")
		}
		return nil
	})
	for _, want := range []string{
		`slotd_build_info{commit="`, `version="` + version + `"} 1`,
		"slotd_ready 1\n", "slotd_engine_degraded 0\n",
		"slotd_store_disk_usage_bytes ", "slotd_store_filesystem_avail_bytes ", "slotd_store_compaction_debt_bytes ",
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("the container's /metrics lacks %q", want)
		}
	}

	// docker stop sends the image's STOPSIGNAL (SIGTERM), and SIGKILL
	// only after the timeout: a clean drain exits 0 well before it.
	run(t, docker, "stop", "--time", "60", name)
	if code := strings.TrimSpace(run(t, docker, "inspect", "--format", "{{.State.ExitCode}}", name)); code != "0" {
		t.Errorf("exit status after docker stop: %s, want 0\n%s", code, containerLogs(t, docker, name))
	}
}

// containerLogs returns the last lines the container wrote, both streams.
func containerLogs(t *testing.T, docker, name string) string {
	t.Helper()
	stdout, stderr, err := runErr(dockerCallMax, docker, "logs", "--tail", "30", name)
	if err != nil {
		return fmt.Sprintf("docker logs: %v", err)
	}
	return stdout + stderr
}

// publishedPort returns the host address ("127.0.0.1:port") that docker
// published the container's port on.
func publishedPort(t *testing.T, docker, name, port string) string {
	t.Helper()
	for _, line := range strings.Split(run(t, docker, "port", name, port), "\n") {
		if addr := strings.TrimSpace(line); strings.HasPrefix(addr, "127.0.0.1:") {
			return addr
		}
	}
	t.Fatalf("docker port %s %s: nothing published on 127.0.0.1", name, port)
	return ""
}

// randomSuffix names this run's image, container and network.
func randomSuffix(t *testing.T) string {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
