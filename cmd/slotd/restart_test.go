package main

// Restart over HTTP: the real slotd binary on loopback, bookings made,
// stopped with SIGTERM (clean drain) and with SIGKILL, restarted on the
// same data directory; everything acknowledged is there (DESIGN
// invariants 2 and 4 end to end).

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

type slotdProc struct {
	cmd       *exec.Cmd
	addr      string
	adminAddr string
	portalKey string
}

func buildSlotd(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "slotd")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// startSlotd runs the binary with -demo on ephemeral loopback ports and
// waits for its "slotd ready" log line.
func startSlotd(t *testing.T, bin, data string) *slotdProc {
	t.Helper()
	cmd := exec.Command(bin, "-demo", "-data", data, "-addr", "127.0.0.1:0", "-admin-addr", "127.0.0.1:0", "-log-level", "info")
	cmd.Stdout = io.Discard
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &slotdProc{cmd: cmd}
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sent := false
		for sc.Scan() {
			var raw map[string]any
			if json.Unmarshal(sc.Bytes(), &raw) == nil && raw["msg"] == "slotd ready" && !sent {
				p.addr, _ = raw["addr"].(string)
				p.adminAddr, _ = raw["admin_addr"].(string)
				ready <- true
				sent = true
			}
		}
		if !sent {
			ready <- false
		}
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatal("slotd exited before it was ready")
		}
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatal("slotd not ready within 60s")
	}
	var keys []keyFileEntry
	data2, _ := os.ReadFile(filepath.Join(data, devKeysFile))
	json.Unmarshal(data2, &keys)
	for _, k := range keys {
		if k.Name == "demo-portal" {
			p.portalKey = k.Key
		}
	}
	return p
}

func (p *slotdProc) call(t *testing.T, method, path, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, "http://"+p.addr+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+p.portalKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// book holds and (optionally) confirms a booking and returns its id.
func (p *slotdProc) book(t *testing.T, applicant string, dayOffset int, confirm bool) string {
	t.Helper()
	// Find the first free start a few days ahead at the demo migration centre.
	from := time.Now().AddDate(0, 0, dayOffset).Format("2006-01-02")
	body := fmt.Sprintf(`{"office":"msk-mfc-tverskoy","service":"patent","applicant":%q,"earliest_after":"%sT00:00:00+03:00","confirm":%v}`, applicant, from, confirm)
	code, b := p.call(t, "POST", "/v1/bookings", body)
	if code != 201 {
		t.Fatalf("hold: %d %v", code, b)
	}
	return b["id"].(string)
}

func (p *slotdProc) status(t *testing.T, id, applicant string) string {
	t.Helper()
	code, b := p.call(t, "GET", "/v1/bookings/"+id+"?applicant="+applicant, "")
	if code != 200 {
		t.Fatalf("get %s: %d %v", id, code, b)
	}
	return b["status"].(string)
}

func TestRestartKeepsAcknowledgedBookings(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the server")
	}
	bin := buildSlotd(t)
	data := t.TempDir()
	p := startSlotd(t, bin, data)
	want := map[string]string{}
	for i := 0; i < 5; i++ {
		app := fmt.Sprintf("term-%d", i)
		want[app+"/"+p.book(t, app, 3, i%2 == 0)] = map[bool]string{true: "confirmed", false: "held"}[i%2 == 0]
	}
	// SIGTERM: drains, exits 0.
	p.cmd.Process.Signal(syscall.SIGTERM)
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("SIGTERM exit: %v", err)
	}
	p = startSlotd(t, bin, data)
	check := func() {
		for k, st := range want {
			app, id, _ := strings.Cut(k, "/")
			if got := p.status(t, id, app); got != st {
				t.Fatalf("booking %s of %s is %s after restart, want %s", id, app, got, st)
			}
		}
	}
	check()
	for i := 0; i < 5; i++ {
		app := fmt.Sprintf("kill-%d", i)
		want[app+"/"+p.book(t, app, 4, true)] = "confirmed"
	}
	// SIGKILL: no drain at all.
	p.cmd.Process.Signal(syscall.SIGKILL)
	p.cmd.Wait()
	p = startSlotd(t, bin, data)
	check()
	p.cmd.Process.Signal(syscall.SIGTERM)
	p.cmd.Wait()
}
