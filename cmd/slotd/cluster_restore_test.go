package main

import (
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"slotd/raftlog"
	"slotd/wal"
)

// writeTestBackup writes a backup of one group whose store applied
// through index applied, as a cluster node's backup route lays it out.
func writeTestBackup(t *testing.T, applied uint64) (dir string, m backupManifest) {
	t.Helper()
	live := filepath.Join(t.TempDir(), "live")
	db, err := wal.Open(live, wal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for i := uint64(1); i <= applied; i++ {
		if err := db.ApplyEpoch(i, i); err != nil {
			t.Fatal(err)
		}
	}
	dir = filepath.Join(t.TempDir(), "backup")
	if err := os.MkdirAll(filepath.Join(dir, "groups"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Backup(filepath.Join(dir, "groups", "1"), nil); err != nil {
		t.Fatal(err)
	}
	bg := backupGroup{Group: 1}
	if err := describeGroupCopy(filepath.Join(dir, "groups", "1"), &bg); err != nil {
		t.Fatal(err)
	}
	m = backupManifest{Format: backupManifestFormat, Node: 2, ClusterFormat: 1, Groups: []backupGroup{bg}}
	writeManifest(t, dir, m)
	if err := os.WriteFile(filepath.Join(dir, secretFile), make([]byte, 32), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, m
}

func writeManifest(t *testing.T, dir string, m backupManifest) {
	t.Helper()
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, backupManifestFile), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestRestoreSeedsLogAtAppliedIndex: the restored node's Raft log of a
// group starts after the store's applied index, with the new peers as
// voters, so that the replica applies the new log's entries (replica P5).
func TestRestoreSeedsLogAtAppliedIndex(t *testing.T) {
	backup, m := writeTestBackup(t, 42)
	if m.Groups[0].Applied != 42 {
		t.Fatalf("the manifest names index %d, want 42", m.Groups[0].Applied)
	}
	data := filepath.Join(t.TempDir(), "node")
	if _, err := restoreCluster(backup, data, []uint64{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	db, err := wal.Open(filepath.Join(data, "raft"), wal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	logs, err := raftlog.Open(db.RaftRegion(), raftlog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := logs.Group(1).Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if got := snap.GetMetadata().GetIndex(); got != 42 {
		t.Fatalf("group 1's log starts after %d, want 42", got)
	}
	if v := snap.GetMetadata().GetConfState().GetVoters(); len(v) != 3 {
		t.Fatalf("voters %v, want the three peers", v)
	}
	group, err := wal.Open(filepath.Join(data, "groups", "1"), wal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer group.Close()
	stores := map[uint64]*wal.DB{1: group}
	if err := checkStoresAgainstLog(stores, logs); err != nil {
		t.Fatalf("the restored store and log: %v", err)
	}
	if _, err := os.Stat(filepath.Join(data, secretFile)); err != nil {
		t.Fatalf("the ticket secret is not restored: %v", err)
	}
}

// TestRestoreRefusals: a damaged backup, a data directory in use and a
// store ahead of its log are refused, and a failed restore leaves
// nothing behind.
func TestRestoreRefusals(t *testing.T) {
	f := func(name string, prepare func(backup, data string), want string) {
		t.Helper()
		backup, _ := writeTestBackup(t, 7)
		data := filepath.Join(t.TempDir(), "node")
		prepare(backup, data)
		_, err := restoreCluster(backup, data, []uint64{1, 2, 3})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("%s: %v, want an error naming %q", name, err, want)
		}
		if entries, _ := os.ReadDir(data); len(entries) > 0 && want != "not empty" {
			t.Fatalf("%s: the failed restore left %s behind", name, entries[0].Name())
		}
	}
	f("digest", func(backup, _ string) {
		var m backupManifest
		raw, _ := os.ReadFile(filepath.Join(backup, backupManifestFile))
		_ = json.Unmarshal(raw, &m)
		m.Groups[0].Digest = hex.EncodeToString(make([]byte, 32))
		writeManifest(t, backup, m)
	}, "the backup is damaged")
	f("format", func(backup, _ string) {
		writeManifest(t, backup, backupManifest{Format: 9})
	}, "manifest format 9")
	f("not empty", func(_, data string) {
		_ = os.MkdirAll(data, 0o700)
		_ = os.WriteFile(filepath.Join(data, "x"), nil, 0o600)
	}, "not empty")
	f("no secret", func(backup, _ string) {
		_ = os.Remove(filepath.Join(backup, secretFile))
	}, "no ticket-secret")
	f("no manifest", func(backup, _ string) {
		_ = os.Remove(filepath.Join(backup, backupManifestFile))
	}, "not a cluster node's backup")

	// A backup's store beside a log that does not continue it.
	backup, _ := writeTestBackup(t, 7)
	store, err := wal.Open(filepath.Join(backup, "groups", "1"), wal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	rdb, err := wal.Open(filepath.Join(t.TempDir(), "raft"), wal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	logs, err := raftlog.Open(rdb.RaftRegion(), raftlog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := checkStoresAgainstLog(map[uint64]*wal.DB{1: store}, logs); err == nil || !strings.Contains(err.Error(), "slotd cluster restore") {
		t.Fatalf("a store ahead of an empty log: %v", err)
	}
}
