package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"slotd/internal/slotdtest"
	"slotd/internal/slotdtest/testtime"
)

// drainWaitMax bounds each wait on the process; a bound, not a measurement.
const drainWaitMax = 60 * time.Second

func readyz(t *testing.T, s *slotdtest.Server) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: drainWaitMax}
	resp, err := c.Get("http://" + s.AdminAddr + "/readyz")
	if err != nil {
		t.Fatalf("GET /readyz: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestShutdownDelayServesWhileUnready runs the real binary with a delay
// longer than the test: after SIGTERM, /readyz turns 503 "draining"
// while bookings are still held and confirmed over the API; a second
// SIGTERM ends the delay and the process drains and exits cleanly.
func TestShutdownDelayServesWhileUnready(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs slotd")
	}
	s := slotdtest.StartArgs(t, slotdtest.Build(t), t.TempDir(), "-shutdown-delay", "5m")
	key := s.Keys["demo-portal"]
	if code, body := readyz(t, s); code != 200 {
		t.Fatalf("/readyz before SIGTERM: %d %q", code, body)
	}
	s.Signal(t, syscall.SIGTERM)
	testtime.Eventually(t, drainWaitMax, "/readyz to answer 503 draining", func() error {
		if code, body := readyz(t, s); code != 503 || body != "draining\n" {
			return fmt.Errorf("%d %q", code, body)
		}
		return nil
	})
	id := book(t, s, key, "drain-a", 3, false)
	if code, b := s.Call(t, key, "POST", "/v1/bookings/"+id+"/confirm", `{"applicant":"drain-a"}`); code != 200 || b["status"] != "confirmed" {
		t.Fatalf("confirm while draining: %d %v", code, b)
	}
	if s.Exited() {
		t.Fatal("slotd exited during its shutdown delay")
	}
	s.Signal(t, syscall.SIGTERM)
	if !s.Wait(t) {
		t.Fatal("slotd did not exit cleanly after the second SIGTERM")
	}
	if len(s.Logged("shutdown delay cut short")) != 1 || len(s.Logged("stopped")) != 1 {
		t.Errorf("want the log to say the delay was cut short, and stopped")
	}
}

// TestShutdownDelayEnds: with a short delay and one SIGTERM, the delay
// runs out by itself and the process exits cleanly.
func TestShutdownDelayEnds(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs slotd")
	}
	s := slotdtest.StartArgs(t, slotdtest.Build(t), t.TempDir(), "-shutdown-delay", "200ms")
	if !s.Stop(t, syscall.SIGTERM) {
		t.Fatal("slotd did not exit cleanly after its shutdown delay")
	}
	// "stopped" comes only once the delay has returned.
	if len(s.Logged("shutdown delay over")) != 1 || len(s.Logged("stopped")) != 1 {
		t.Errorf("want the log to say the delay was over, and stopped")
	}
}

// TestShutdownDelayOption: the delay comes from the flag or the
// environment, defaults to none, and is bounded.
func TestShutdownDelayOption(t *testing.T) {
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == "SLOTD_SHUTDOWN_DELAY" {
				return v
			}
			return ""
		}
	}
	if o, err := parseOptions(nil, env(""), io.Discard); err != nil || o.shutdownDelay != 0 {
		t.Errorf("default: %s %v, want 0", o.shutdownDelay, err)
	}
	if o, err := parseOptions(nil, env("15s"), io.Discard); err != nil || o.shutdownDelay != 15*time.Second {
		t.Errorf("SLOTD_SHUTDOWN_DELAY=15s: %s %v", o.shutdownDelay, err)
	}
	for _, bad := range []string{"-1s", "6m", "soon"} {
		if _, err := parseOptions([]string{"-shutdown-delay", bad}, env(""), io.Discard); err == nil {
			t.Errorf("-shutdown-delay %s accepted", bad)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for a process's writes and the
// test's reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestClusterShutdownDelay: a cluster node honours -shutdown-delay too —
// after SIGTERM its /readyz answers 503 "draining" while its API still
// answers; a second SIGTERM ends the delay and it exits cleanly. It also
// exports the build and its stores' metrics, which the disk alerts read.
func TestClusterShutdownDelay(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs slotd")
	}
	addrs := slotdtest.FreeAddrs(t, 3)
	raft, api, admin := addrs[0], addrs[1], addrs[2]
	data := t.TempDir()
	var logs syncBuffer
	cmd := exec.Command(slotdtest.Build(t), "-demo", "-data", data, "-addr", api, "-admin-addr", admin,
		"-node-id", "1", "-peers", "1="+raft, "-edges", "1="+api, "-groups", "2", "-shutdown-delay", "5m")
	cmd.Stdout, cmd.Stderr = io.Discard, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{}) // closed once Wait returned waitErr
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			cmd.Process.Kill()
			<-exited
		}
	})
	c := &http.Client{Timeout: drainWaitMax}
	get := func(url, key string) (int, string, error) {
		req, _ := http.NewRequest("GET", url, nil)
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := c.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), err
	}
	var key string
	testtime.Eventually(t, drainWaitMax, "the node to answer the office list", func() error {
		if key == "" {
			raw, err := os.ReadFile(filepath.Join(data, devKeysFile))
			if err != nil {
				return err
			}
			var keys []struct{ Key, Name string }
			if err := json.Unmarshal(raw, &keys); err != nil {
				return err
			}
			for _, k := range keys {
				if k.Name == "demo-portal" {
					key = k.Key
				}
			}
		}
		if code, body, err := get("http://"+api+"/v1/offices", key); err != nil || code != 200 {
			return fmt.Errorf("%d %.200s %v", code, body, err)
		}
		return nil
	})
	_, metrics, err := get("http://"+admin+"/metrics", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"slotd_build_info{", "\nslotd_store_disk_usage_bytes ", "\nslotd_store_filesystem_avail_bytes "} {
		if !strings.Contains(metrics, want) {
			t.Errorf("a cluster node's /metrics lacks %q", strings.TrimSpace(want))
		}
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	testtime.Eventually(t, drainWaitMax, "the node's /readyz to answer 503 draining", func() error {
		if code, body, err := get("http://"+admin+"/readyz", ""); err != nil || code != 503 || body != "draining\n" {
			return fmt.Errorf("%d %q %v", code, body, err)
		}
		return nil
	})
	if code, body, err := get("http://"+api+"/v1/offices", key); err != nil || code != 200 {
		t.Fatalf("office list while draining: %d %.200s %v", code, body, err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
		if waitErr != nil {
			t.Fatalf("the node exited with %v after the second SIGTERM\n%s", waitErr, logs.String())
		}
	case <-time.After(drainWaitMax):
		t.Fatalf("the node did not exit within %s after the second SIGTERM", drainWaitMax)
	}
	if !strings.Contains(logs.String(), `"shutdown delay cut short"`) {
		t.Errorf("no \"shutdown delay cut short\" in the node's log")
	}
}
