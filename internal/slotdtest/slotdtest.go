// Package slotdtest starts the real slotd binary for tests: built from
// cmd/slotd, run with demo offices on ephemeral loopback ports and a
// scratch data directory, its addresses read from its "slotd ready" log
// line. Tests talk to it only over 127.0.0.1. It also holds the office
// configs the packages' tests and benchmarks share (offices.go), and the
// in-memory and full-disk file systems of the tests on Pebble (fs.go). The
// clock fixtures and the deadline poll are in the subpackage testtime,
// which imports only the standard library so that the allocator's own
// tests can use them too.
package slotdtest

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// readyWaitMax bounds the wait for the server to come up; a bound, not a
// measurement.
const readyWaitMax = 60 * time.Second

// Build compiles cmd/slotd into a temporary directory and returns its path.
func Build(t testing.TB) string {
	t.Helper()
	return BuildFlags(t)
}

// BuildFlags is Build with more go build flags, e.g. "-ldflags", "-X …".
func BuildFlags(t testing.TB, flags ...string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "slotd")
	args := append(append([]string{"build", "-o", bin}, flags...), "slotd/cmd/slotd")
	if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return bin
}

// logLinesMax bounds the log lines a Server keeps for Logged; later ones
// are read and dropped.
const logLinesMax = 10000

// Server is one running slotd process.
type Server struct {
	Addr, AdminAddr string // host:port of the API and admin listeners
	Data            string // its data directory
	// Keys are the development keys by name (demo-portal, demo-operator,
	// demo-admin); empty when a keys file was given (StartArgs).
	Keys map[string]string
	cmd  *exec.Cmd
	done chan struct{}

	logMu sync.Mutex
	logs  [][]byte // its first logLinesMax log lines; guarded by logMu
}

// Start runs bin with -demo on data and waits until it logs that it is
// ready. The process is killed at the end of the test if still running.
func Start(t testing.TB, bin, data string) *Server {
	t.Helper()
	s := StartArgs(t, bin, data)
	if len(s.Keys) == 0 {
		t.Fatal("slotd -demo made no development keys")
	}
	return s
}

// StartArgs is Start with more arguments, such as -keys FILE (then slotd
// makes no development keys and Server.Keys is empty).
func StartArgs(t testing.TB, bin, data string, args ...string) *Server {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"-demo", "-data", data, "-addr", "127.0.0.1:0", "-admin-addr", "127.0.0.1:0"}, args...)...)
	cmd.Stdout = io.Discard
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &Server{Data: data, cmd: cmd, done: make(chan struct{})}
	t.Cleanup(func() {
		select {
		case <-s.done:
		default:
			cmd.Process.Kill()
			<-s.done
		}
	})
	type readyLine struct {
		Msg       string `json:"msg"`
		Addr      string `json:"addr"`
		AdminAddr string `json:"admin_addr"`
	}
	ready := make(chan readyLine, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sent := false
		for sc.Scan() {
			s.logMu.Lock()
			if len(s.logs) < logLinesMax {
				s.logs = append(s.logs, append([]byte(nil), sc.Bytes()...))
			}
			s.logMu.Unlock()
			var l readyLine
			if json.Unmarshal(sc.Bytes(), &l) != nil {
				continue
			}
			if !sent && l.Msg == "slotd ready" {
				ready <- l
				sent = true
			}
		}
		close(ready)
		cmd.Wait()
		close(s.done)
	}()
	select {
	case l, ok := <-ready:
		if !ok {
			t.Fatal("slotd exited before it was ready")
		}
		s.Addr, s.AdminAddr = l.Addr, l.AdminAddr
	case <-time.After(readyWaitMax):
		t.Fatalf("slotd not ready within %s", readyWaitMax)
	}
	var keys []struct{ Key, Name string }
	s.Keys = map[string]string{}
	raw, err := os.ReadFile(filepath.Join(data, "dev-keys.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return s
	}
	if err != nil || json.Unmarshal(raw, &keys) != nil {
		t.Fatalf("development keys: %v", err)
	}
	for _, k := range keys {
		s.Keys[k.Name] = k.Key
	}
	return s
}

// callClient bounds each request of Call; a bound, not a measurement.
var callClient = &http.Client{Timeout: readyWaitMax}

// Call sends an API request with the bearer key and decodes the JSON
// answer, if there is one; a request that gets no answer fails the test.
func (s *Server) Call(t testing.TB, key, method, path, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+s.Addr+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := callClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// Stop sends sig and waits for the process to end; it returns whether the
// process exited with status 0.
func (s *Server) Stop(t testing.TB, sig syscall.Signal) bool {
	t.Helper()
	s.cmd.Process.Signal(sig) // an error means it has ended already
	return s.Wait(t)
}

// Wait waits for the process to end, and kills it and fails the test if
// it has not ended within a bound; it returns whether the process exited
// with status 0.
func (s *Server) Wait(t testing.TB) bool {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(readyWaitMax):
		s.cmd.Process.Kill()
		<-s.done
		t.Fatalf("slotd did not stop within %s", readyWaitMax)
	}
	return s.cmd.ProcessState != nil && s.cmd.ProcessState.Success()
}

// Signal sends sig to the process, which goes on running unless sig ends it.
func (s *Server) Signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %s: %v", sig, err)
	}
}

// Exited reports whether the process has ended.
func (s *Server) Exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// Logged returns the log lines so far whose "msg" is msg, decoded.
func (s *Server) Logged(msg string) []map[string]any {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	var out []map[string]any
	for _, line := range s.logs {
		var m map[string]any
		if json.Unmarshal(line, &m) == nil && m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}
