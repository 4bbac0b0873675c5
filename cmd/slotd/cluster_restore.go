package main

// slotd cluster restore: seeds the data directory of one node of a fresh
// cluster from a cluster node's backup (cluster_backup.go). Every node of
// the new cluster is seeded from the same backup, then started as usual.
//
// The backup holds each group's store at its applied index A (wal W11),
// not its Raft log. The restore starts each group's new log after A: it
// writes the group's Raft state as a bootstrap does (cluster.Node's
// bootstrap, a snapshot naming every peer as a voter), but at index A
// instead of 1, term 1. So:
//
//   - raft hands the state machine entries from A+1 on, and the replica,
//     which skips every index at or below its store's applied one (replica
//     P5), applies each of them once; had the log started at 1, the
//     replica would skip the new log's first A entries;
//   - every node seeded from the same backup starts every group with the
//     same log (empty, after A, term 1) and the same store, so their logs
//     agree through A as after a bootstrap, and their stores hold the same
//     bytes (the digest the manifest names, checked here);
//   - the group's first leader proposes its epoch entry above A, so the
//     epoch it builds its engine under is new (replica P1, P2), and the
//     old cluster's epochs mean nothing to the new log.
//
// A group whose store applied nothing (A = 0) starts at 1, as a bootstrap
// does. The Raft log store is created here, so the first start finds
// every group there and bootstraps none.

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"

	"slotd/cluster"
	"slotd/raftlog"
	"slotd/wal"
)

// runClusterRestore is `slotd cluster restore -from BACKUP -data DIR
// -node-id N -peers …`.
func runClusterRestore(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("slotd cluster restore", flag.ContinueOnError)
	fs.SetOutput(stderr)
	from := fs.String("from", "", "`directory` of a cluster node's backup (slotd backup on a cluster node)")
	data := fs.String("data", "", "the new node's data `directory`: new, or empty")
	var co clusterOptions
	fs.Uint64Var(&co.nodeID, "node-id", 0, "the new node's `id`, as it will be started")
	fs.StringVar(&co.peers, "peers", "", "every node of the new cluster as `id=host:port` of its Raft listener, as the nodes will be started")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: slotd cluster restore -from BACKUP -data DIR -node-id N -peers 1=HOST:PORT,…\n"+
			"Seeds a new node's data directory from a cluster node's backup: every group store, the ticket secret,\n"+
			"and new Raft logs that start at each group's backed-up index. Seed every node of the new cluster from\n"+
			"the same backup, then start each with -data DIR and the same -node-id, -peers and the backup's group count.")
		fs.PrintDefaults()
	}
	if code, ok := parseSub(fs, args, stderr); !ok {
		return code
	}
	if *from == "" || *data == "" || co.nodeID == 0 || co.peers == "" {
		fmt.Fprintln(stderr, "slotd cluster restore: -from, -data, -node-id and -peers are required")
		return 2
	}
	peers, err := parseNodeList("peers", co.peers)
	if err != nil {
		fmt.Fprintln(stderr, "slotd cluster restore:", err)
		return 2
	}
	if _, ok := peers[co.nodeID]; !ok {
		fmt.Fprintf(stderr, "slotd cluster restore: -node-id %d is not in -peers\n", co.nodeID)
		return 2
	}
	var voters []uint64
	for id := range peers {
		voters = append(voters, id)
	}
	slices.Sort(voters)
	m, err := restoreCluster(*from, *data, voters)
	if err != nil {
		fmt.Fprintln(stderr, "slotd cluster restore:", err)
		return 1
	}
	var at []string
	for _, bg := range m.Groups {
		at = append(at, fmt.Sprintf("group %d at %d", bg.Group, max(bg.Applied, 1)))
	}
	fmt.Fprintf(stdout, "node %d seeded in %s from node %d's backup (began %s): %s; start it with -data %s -node-id %d -groups %d and the new cluster's -peers and -edges\n",
		co.nodeID, *data, m.Node, m.Began, strings.Join(at, ", "), *data, co.nodeID, len(m.Groups))
	return 0
}

// restoreCluster seeds the data directory dir, which must be new or
// empty, from the backup in from, for a cluster whose nodes are voters.
// On failure it removes what it wrote.
func restoreCluster(from, dir string, voters []uint64) (m backupManifest, err error) {
	raw, err := os.ReadFile(filepath.Join(from, backupManifestFile))
	if err != nil {
		return m, fmt.Errorf("%s is not a cluster node's backup: %w", from, err)
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return m, fmt.Errorf("%s: %w", backupManifestFile, err)
	}
	switch {
	case m.Format != backupManifestFormat:
		return m, fmt.Errorf("%s: manifest format %d; this release reads %d", backupManifestFile, m.Format, backupManifestFormat)
	case m.ClusterFormat > cluster.FormatMax:
		return m, fmt.Errorf("the backup holds cluster format %d, newer than this release reads (up to %d): restore it with the release that took it, or a newer one", m.ClusterFormat, cluster.FormatMax)
	case len(m.Groups) == 0:
		return m, fmt.Errorf("%s names no groups", backupManifestFile)
	}
	for i, bg := range m.Groups {
		if bg.Group != uint64(i+1) {
			return m, fmt.Errorf("%s: group %d where group %d belongs: groups are numbered from 1", backupManifestFile, bg.Group, i+1)
		}
	}
	created, err := newRestoreTarget(dir)
	if err != nil {
		return m, err
	}
	defer func() {
		if err != nil {
			clearRestoreTarget(dir, created)
		}
	}()
	if err := os.Mkdir(filepath.Join(dir, "groups"), 0o700); err != nil {
		return m, err
	}
	for _, bg := range m.Groups {
		name := strconv.FormatUint(bg.Group, 10)
		to := filepath.Join(dir, "groups", name)
		if err := copyStoreDir(filepath.Join(from, "groups", name), to); err != nil {
			return m, fmt.Errorf("group %d: %w", bg.Group, err)
		}
		if err := checkGroupCopy(to, bg); err != nil {
			return m, err
		}
	}
	for _, name := range clusterDataDirFiles {
		if err := wal.CopyFileSynced(filepath.Join(from, name), filepath.Join(dir, name)); err != nil {
			return m, err
		}
	}
	if _, err := os.Stat(filepath.Join(dir, secretFile)); err != nil {
		return m, fmt.Errorf("the backup holds no %s: tickets printed so far would fail, and the nodes would not share a forward token", secretFile)
	}
	if err := seedRaftLog(filepath.Join(dir, "raft"), m.Groups, voters); err != nil {
		return m, err
	}
	return m, syncDir(dir)
}

// seedRaftLog creates the Raft log store at dir with every group of the
// backup starting after its applied index (at least 1), term 1, with
// voters as its members.
func seedRaftLog(dir string, groups []backupGroup, voters []uint64) error {
	db, err := wal.Open(dir, wal.Options{})
	if err != nil {
		return fmt.Errorf("cannot create the Raft log store: %w", err)
	}
	defer db.Close()
	logs, err := raftlog.Open(db.RaftRegion(), raftlog.Options{})
	if err != nil {
		return err
	}
	var boot []raftlog.Update
	for _, bg := range groups {
		at := max(bg.Applied, 1)
		boot = append(boot, raftlog.Update{
			Group: bg.Group,
			Snapshot: &pb.Snapshot{Metadata: &pb.SnapshotMetadata{
				Index: new(at), Term: new(uint64(1)), ConfState: &pb.ConfState{Voters: voters},
			}},
			HardState: &pb.HardState{Term: new(uint64(1)), Commit: new(at)},
		})
	}
	if err := logs.Append(boot); err != nil {
		return fmt.Errorf("cannot start the Raft logs of %d groups: %w", len(boot), err)
	}
	return nil
}

// checkGroupCopy opens the group store restored at dir as a start will
// and checks it holds what the manifest says the backup held.
func checkGroupCopy(dir string, bg backupGroup) error {
	db, err := wal.Open(dir, wal.Options{})
	if err != nil {
		return fmt.Errorf("group %d: the backup's store does not open: %w", bg.Group, err)
	}
	defer db.Close()
	digest, applied, err := db.StateDigest()
	if err != nil {
		return fmt.Errorf("group %d: %w", bg.Group, err)
	}
	if got := hex.EncodeToString(digest[:]); applied != bg.Applied || got != bg.Digest {
		return fmt.Errorf("group %d: the backup's store holds index %d, digest %.16s…; its manifest names %d, %.16s…: the backup is damaged", bg.Group, applied, got, bg.Applied, bg.Digest)
	}
	return nil
}

// newRestoreTarget checks that dir is new or an empty directory, and
// makes it; created says it did not exist before.
func newRestoreTarget(dir string) (created bool, err error) {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.Mkdir(dir, 0o700); err != nil {
			return false, fmt.Errorf("cannot create %s: %w", dir, err)
		}
		return true, nil
	case err != nil:
		return false, fmt.Errorf("-data %s: %w", dir, err)
	case len(entries) > 0:
		return false, fmt.Errorf("-data %s is not empty (it holds %s): a restore seeds a new node; name a new or empty directory", dir, entries[0].Name())
	}
	return false, nil
}

// clearRestoreTarget removes what a failed restore wrote into dir.
func clearRestoreTarget(dir string, created bool) {
	if created {
		_ = os.RemoveAll(dir)
		return
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		_ = os.RemoveAll(filepath.Join(dir, e.Name()))
	}
}

// copyStoreDir copies the store directory src (regular files only, as a
// backup's store holds) into the new directory dst, synced.
func copyStoreDir(src, dst string) error {
	entries, err := os.ReadDir(src)
	if err != nil {
		return fmt.Errorf("the backup's store: %w", err)
	}
	if err := os.Mkdir(dst, 0o700); err != nil {
		return err
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			return fmt.Errorf("the backup's store holds %s, which is not a regular file", filepath.Join(src, e.Name()))
		}
		if err := wal.CopyFileSynced(filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())); err != nil {
			return err
		}
	}
	return syncDir(dst)
}

// checkStoresAgainstLog refuses to start a node with a group store that
// has applied entries but no Raft log of the group: a store copied in
// without its log (a backup's store without `slotd cluster restore`, or
// another node's). The node would bootstrap the group's log at index 1
// and the replica skip the new log's entries through the store's applied
// index (replica P5), diverging from the other replicas. A store ahead of
// a log that exists is no such case: a crash between a snapshot's install
// and the log's record of it leaves one, which is harmless (cluster S4).
func checkStoresAgainstLog(stores map[uint64]*wal.DB, logs *raftlog.Store) error {
	for g, db := range stores {
		applied, _, err := db.Applied()
		if err != nil {
			return fmt.Errorf("group %d: %w", g, err)
		}
		if applied == 0 {
			continue
		}
		st := logs.Group(g)
		hs, _, err := st.InitialState()
		if err != nil {
			return fmt.Errorf("group %d: cannot read its Raft state: %w", g, err)
		}
		last, err := st.LastIndex()
		if err != nil {
			return fmt.Errorf("group %d: cannot read its Raft log's last index: %w", g, err)
		}
		if last == 0 && raft.IsEmptyHardState(hs) {
			return fmt.Errorf("group %d: its store holds the group's log through index %d, but this node has no Raft log of the group: the store was copied in without the log that continues it; "+
				"to start a cluster from a backup, seed each node's empty data directory with `slotd cluster restore`", g, applied)
		}
	}
	return nil
}
