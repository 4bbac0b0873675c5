package main

import (
	"fmt"
	"io"
	"net/http"
	"slices"
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
	msgs := s.Messages()
	if !slices.Contains(msgs, "shutdown delay cut short") || !slices.Contains(msgs, "stopped") {
		t.Errorf("log messages %q: want the delay cut short, then stopped", msgs)
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
	msgs := s.Messages()
	over, stopped := slices.Index(msgs, "shutdown delay over"), slices.Index(msgs, "stopped")
	if over < 0 || stopped < over {
		t.Errorf("log messages %q: want the delay over, then stopped", msgs)
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
