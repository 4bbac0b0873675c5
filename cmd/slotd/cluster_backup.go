package main

// The online backup of a cluster node (POST /admin/backup on its admin
// listener; `slotd backup` asks for it as of a single slotd): a copy of
// every group store the node holds, each consistent at its own applied
// index, the files a restore needs beside them, and a manifest.
// cluster_restore.go seeds a fresh cluster from it.
//
// What the copy holds. Each group is a point in its own log: its store's
// copy holds exactly the group's entries through the applied index the
// manifest names (wal W11). Before any store is copied the node waits,
// group by group, until it has applied every entry the group committed
// before the backup began (cluster.Node.Barrier: raft's ReadIndex, the
// leader's commit index confirmed by a majority): a booking acknowledged
// anywhere in the cluster before the backup began is in the copy, even
// when this node is a follower that lagged. The groups' copies are not one
// instant of the cluster — no such instant exists without stopping every
// group — and need not be: a booking, its events and its idempotency
// record live in one group, so each is whole or absent with its group.
// What spans groups is the applicants' ledger (replica L1–L7), kept in
// each applicant's home group: its copy may be ahead of the copy of a
// booking's group (a token whose booking is not in the backup) or behind
// it (a booking made after the ledger's copy, which holds no token). The
// restored cluster's ledger reconciler settles the first (L5, L6: the
// booking is voided in its group and the token released); the second is
// a booking the applicant's limit counts only in its own group until it
// ends, as for bookings made before the ledger was on.
//
// The Raft logs are not copied: a restored cluster starts new ones at
// each group's applied index (cluster_restore.go).

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"slotd/allocator"
	"slotd/cluster"
	"slotd/httpapi"
	"slotd/wal"
)

// backupManifestFile names the manifest in a cluster node's backup.
const backupManifestFile = "backup-manifest.json"

// backupManifestFormat is the layout of the manifest this release writes
// and reads.
const backupManifestFormat = 1

// backupBarrierTimeout bounds the wait, per group, for a leader to
// confirm the group's commit index and for this node to apply through it.
const backupBarrierTimeout = 30 * time.Second

// backupManifest describes a cluster node's backup.
type backupManifest struct {
	// Format is the manifest's layout (backupManifestFormat).
	Format int `json:"format"`
	// Node is the id of the node the backup was taken on.
	Node uint64 `json:"node"`
	// ClusterFormat is the cluster format of the release that took it
	// (cluster.FormatMax): what its stores may hold.
	ClusterFormat uint64 `json:"cluster_format"`
	// Began is when the backup began (RFC 3339, UTC): every booking
	// acknowledged before it is in the backup.
	Began string `json:"began"`
	// Groups are the group stores copied, by group id.
	Groups []backupGroup `json:"groups"`
}

// backupGroup is one group store in a backup.
type backupGroup struct {
	Group uint64 `json:"group"`
	// Applied is the index of the last entry the copy holds (wal W11);
	// Epoch the group's epoch then (replica P1).
	Applied uint64 `json:"applied"`
	Epoch   uint64 `json:"epoch"`
	// ReadIndex is the commit index the group's leader confirmed when
	// the backup began: the node applied through it before the copy.
	ReadIndex uint64 `json:"read_index"`
	// Digest is the copy's state digest (wal.DB.StateDigest), in hex:
	// a restore checks its copy against it.
	Digest string `json:"digest"`
}

// clusterDataDirFiles are the files beside the stores in a cluster node's
// data directory that a restored node needs: the ticket secret (tickets
// printed so far stay valid, and the nodes derive their forward token
// from it), the development keys, the cluster format stamp.
var clusterDataDirFiles = []string{secretFile, devKeysFile, clusterFormatFile}

// backup writes a backup of every group store of this node into dir (the
// admin route's BackupFunc).
func (f *front) backup(dir string) (string, error) {
	if !f.backupMu.TryLock() {
		return "", refusal(httpapi.ErrBackupRunning, wal.ErrBackupRunning, nil)
	}
	defer f.backupMu.Unlock()
	began := time.Now()
	if wal.Inside(dir, f.dataDir) {
		return "", &backupRefusal{kind: httpapi.ErrBackupTargetUnusable,
			detail: fmt.Sprintf("%s is inside the data directory %s; a backup belongs on another disk, or at least beside it", dir, f.dataDir)}
	}
	tmp, err := backupStagingDir(dir)
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp) // gone after the rename; left over only on failure
	m := backupManifest{Format: backupManifestFormat, Node: f.self, ClusterFormat: cluster.FormatMax, Began: began.UTC().Format(time.RFC3339Nano)}
	// Every group first: each is brought to the backup's start before
	// any store is copied.
	for _, g := range f.groups {
		ctx, cancel := context.WithTimeout(context.Background(), backupBarrierTimeout)
		index, err := f.node.Barrier(ctx, g)
		cancel()
		if err != nil {
			return "", &backupRefusal{kind: httpapi.ErrBackupUnavailable,
				detail: fmt.Sprintf("group %d: no leader confirmed its commit index within %s, or this node did not apply through it (%v): is a majority of the cluster up?", g, backupBarrierTimeout, err)}
		}
		m.Groups = append(m.Groups, backupGroup{Group: g, ReadIndex: index})
	}
	if err := os.Mkdir(filepath.Join(tmp, "groups"), 0o700); err != nil {
		return "", fmt.Errorf("backup: %w", err)
	}
	var files int
	var bytes int64
	for i := range m.Groups {
		bg := &m.Groups[i]
		to := filepath.Join(tmp, "groups", strconv.FormatUint(bg.Group, 10))
		st, err := f.stores[bg.Group].Backup(to, nil)
		switch {
		case errors.Is(err, wal.ErrDegraded), errors.Is(err, allocator.ErrJournalClosed):
			return "", refusal(httpapi.ErrBackupUnavailable, fmt.Errorf("group %d: %w", bg.Group, err), nil)
		case err != nil:
			return "", fmt.Errorf("group %d: %w", bg.Group, err)
		}
		files, bytes = files+st.Files, bytes+st.Bytes
		if err := describeGroupCopy(to, bg); err != nil {
			return "", err
		}
	}
	for _, name := range clusterDataDirFiles {
		if err := wal.CopyFileSynced(filepath.Join(f.dataDir, name), filepath.Join(tmp, name)); err != nil {
			return "", fmt.Errorf("backup: %w", err)
		}
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return "", err
	}
	if err := writeFileSynced(filepath.Join(tmp, backupManifestFile), append(data, '\n')); err != nil {
		return "", fmt.Errorf("backup: %w", err)
	}
	if err := syncDir(tmp); err != nil {
		return "", fmt.Errorf("backup: %w", err)
	}
	// rename(2) replaces an empty directory and refuses one that is not.
	if err := syscall.Rename(tmp, dir); err != nil {
		if errors.Is(err, syscall.ENOTEMPTY) || errors.Is(err, syscall.EEXIST) || errors.Is(err, syscall.ENOTDIR) {
			return "", &backupRefusal{kind: httpapi.ErrBackupTargetExists, detail: dir + " was filled while the backup ran"}
		}
		return "", fmt.Errorf("backup: cannot rename %s to %s: %w", tmp, dir, err)
	}
	if err := syncDir(filepath.Dir(dir)); err != nil {
		return "", fmt.Errorf("backup: %w", err)
	}
	var at []string
	for _, bg := range m.Groups {
		at = append(at, fmt.Sprintf("group %d through %d", bg.Group, bg.Applied))
	}
	return fmt.Sprintf("cluster backup of node %d written to %s: %s; %d files, %s, in %s",
		f.self, dir, strings.Join(at, ", "), files, sizeText(bytes), time.Since(began).Round(time.Millisecond)), nil
}

// describeGroupCopy fills bg's applied index, epoch and digest from the
// group store's copy at dir, opened read-only as a restore will open it.
func describeGroupCopy(dir string, bg *backupGroup) error {
	db, err := wal.OpenReadOnly(dir, wal.Options{})
	if err != nil {
		return fmt.Errorf("group %d: the copy does not open: %w", bg.Group, err)
	}
	defer db.Close()
	digest, applied, err := db.StateDigest()
	if err != nil {
		return fmt.Errorf("group %d: the copy: %w", bg.Group, err)
	}
	_, epoch, err := db.Applied()
	if err != nil {
		return fmt.Errorf("group %d: the copy: %w", bg.Group, err)
	}
	bg.Applied, bg.Epoch, bg.Digest = applied, epoch, hex.EncodeToString(digest[:])
	return nil
}

// backupStagingDir checks the backup target dir as a single node's
// backup does (wal.BackupStaging), with its refusals, and makes the new
// directory beside it to build the backup in.
func backupStagingDir(dir string) (string, error) {
	tmp, err := wal.BackupStaging(dir)
	switch {
	case errors.Is(err, wal.ErrBackupTargetExists):
		return "", refusal(httpapi.ErrBackupTargetExists, err, wal.ErrBackupTargetExists)
	case errors.Is(err, wal.ErrBackupTargetUnusable):
		return "", refusal(httpapi.ErrBackupTargetUnusable, err, wal.ErrBackupTargetUnusable)
	case err != nil:
		return "", err
	}
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return "", refusal(httpapi.ErrBackupTargetUnusable, fmt.Errorf("%s: %w", dir, err), nil)
	}
	return tmp, nil
}

// writeFileSynced writes data to the new file path, synced.
func writeFileSynced(path string, data []byte) error {
	out, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	_, err = out.Write(data)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("cannot write %s: %w", path, err)
	}
	return nil
}
