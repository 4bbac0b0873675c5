package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"slotd/cluster"
	"slotd/internal/slotdtest"
)

// Cluster invariants M7 and M8 on the data directory: its first start
// records the node's id, and a start under another id is refused; a
// directory the cluster refused for good (removed, or a cluster of its
// own) is refused by every later start, and nothing else marks it.
func TestDataDirOwner(t *testing.T) {
	dir := t.TempDir()
	if err := checkDataDirOwner(dir, 3); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, nodeIDFile)); err != nil || string(b) != "3\n" {
		t.Fatalf("node-id after the first start: %q %v", b, err)
	}
	if err := checkDataDirOwner(dir, 3); err != nil {
		t.Fatalf("node 3 again: %v", err)
	}
	refused := func(id uint64, want string) {
		t.Helper()
		if err := checkDataDirOwner(dir, id); err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("node %d: %v, want %q", id, err, want)
		}
	}
	refused(4, "belongs to node 3 (")

	other := fmt.Errorf("cluster node stopped: %w", cluster.ErrStopped)
	if err := refusedForGood(dir, other); !errors.Is(err, cluster.ErrStopped) {
		t.Fatal(err)
	}
	if err := checkDataDirOwner(dir, 3); err != nil {
		t.Fatalf("a stop for another reason marked the directory: %v", err)
	}
	for _, cause := range []error{cluster.ErrRemoved, cluster.ErrNotMember} {
		d := t.TempDir()
		if err := checkDataDirOwner(d, 3); err != nil {
			t.Fatal(err)
		}
		err := refusedForGood(d, fmt.Errorf("cluster node stopped: node 1 refuses this node's messages: %w", cause))
		if !errors.Is(err, cause) {
			t.Fatal(err)
		}
		if err := checkDataDirOwner(d, 3); err == nil || !strings.Contains(err.Error(), "refused this data directory for good") || !strings.Contains(err.Error(), cause.Error()) {
			t.Fatalf("after %v: %v", cause, err)
		}
	}

	if err := os.WriteFile(filepath.Join(dir, nodeIDFile), []byte("three\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	refused(3, "not a node id")
}

// Cluster invariant M8: a node started under an id that is not the one
// its data directory's first start recorded exits 1 with one error line
// naming both, before it opens a store.
func TestClusterRefusesAnotherNodesDataDir(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs slotd")
	}
	bin := slotdtest.Build(t)
	data := t.TempDir()
	if err := os.WriteFile(filepath.Join(data, nodeIDFile), []byte("2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd, stderr, _ := soloNode(t, bin, data)
	code := exitOf(t, cmd)
	lines := errorLines(stderr.String())
	want := "the data directory belongs to node 2"
	if code != 1 || len(lines) != 1 || !strings.Contains(lines[0], want) {
		t.Fatalf("exit %d, error lines %q, want exit 1 and one line saying %q\n%s", code, lines, want, stderr)
	}
	if _, err := os.Stat(filepath.Join(data, "raft")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the refused start created the Raft log store: %v", err)
	}
	t.Logf("%s", lines[0])
}
