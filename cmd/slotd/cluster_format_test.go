package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"slotd/internal/slotdtest"
	"slotd/internal/slotdtest/testtime"
)

// soloNode runs bin as node 1 of a one-node cluster on data, and returns
// the process and its stderr.
func soloNode(t *testing.T, bin, data string) (*exec.Cmd, *syncBuffer, string) {
	t.Helper()
	addrs := slotdtest.FreeAddrs(t, 3)
	cmd := exec.Command(bin, "-demo", "-data", data, "-addr", addrs[0], "-admin-addr", addrs[1],
		"-node-id", "1", "-peers", "1="+addrs[2], "-edges", "1="+addrs[0])
	var stderr syncBuffer
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, &stderr, addrs[1]
}

// exitOf waits for cmd to exit, within drainWaitMax, and returns its
// status.
func exitOf(t *testing.T, cmd *exec.Cmd) int {
	t.Helper()
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(drainWaitMax):
		_ = cmd.Process.Kill()
		<-done
		t.Fatal("the node did not exit")
	}
	return cmd.ProcessState.ExitCode()
}

// errorLines returns the error-level lines of a JSON log.
func errorLines(log string) []string {
	var out []string
	for l := range strings.SplitSeq(strings.TrimSpace(log), "\n") {
		var line struct{ Level, Msg, Error string }
		if json.Unmarshal([]byte(l), &line) == nil && line.Level == "error" {
			out = append(out, line.Msg+": "+line.Error)
		}
	}
	return out
}

// Format invariant V1: a cluster node stamps its data directory with its
// cluster format, and refuses to start — exit 1, one error line naming
// the format found and the one it reads — on a directory stamped with a
// newer one, or on a store whose own format stamp (wal's) is newer,
// before it writes anything.
func TestClusterRefusesANewerFormat(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs slotd")
	}
	bin := slotdtest.Build(t)
	data := t.TempDir()
	stamp := filepath.Join(data, clusterFormatFile)

	cmd, stderr, admin := soloNode(t, bin, data)
	testtime.Eventually(t, drainWaitMax, "the node is ready", func() error {
		resp, err := http.Get("http://" + admin + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("readyz %d", resp.StatusCode)
		}
		return nil
	})
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if code := exitOf(t, cmd); code != 0 {
		t.Fatalf("the first start exited %d:\n%s", code, stderr)
	}
	if b, err := os.ReadFile(stamp); err != nil || string(b) != "1\n" {
		t.Fatalf("the stamp after the first start: %q %v, want \"1\\n\"", b, err)
	}

	refused := func(what, want string) {
		t.Helper()
		cmd, stderr, _ := soloNode(t, bin, data)
		code := exitOf(t, cmd)
		lines := errorLines(stderr.String())
		if code != 1 || len(lines) != 1 || !strings.Contains(lines[0], want) {
			t.Fatalf("%s: exit %d, error lines %q, want exit 1 and one line saying %q\n%s", what, code, lines, want, stderr)
		}
		t.Logf("%s: %s", what, lines[0])
	}
	if err := os.WriteFile(stamp, []byte("2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	groupStore := filepath.Join(data, "groups", "1")
	before, err := os.ReadDir(groupStore)
	if err != nil {
		t.Fatal(err)
	}
	refused("a directory of cluster format 2", "holds cluster format 2, newer than this release reads (up to 1)")
	if after, _ := os.ReadDir(groupStore); len(after) != len(before) {
		t.Fatalf("the refused start touched the group store: %d files, %d before", len(after), len(before))
	}

	// A store stamped by a newer wal format is refused by its own stamp.
	if err := os.WriteFile(stamp, []byte("1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := pebble.Open(groupStore, &pebble.Options{Logger: quietPebble{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Set([]byte("mformat"), []byte{99}, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	refused("a group store of wal format 99", "cannot open the store of group 1: wal: unknown on-disk format")
}
