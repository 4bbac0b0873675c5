package main

// The cluster format stamp of a cluster node's data directory (format
// invariant V1, docs/design.md §7 "Mixed releases"). The stores under it
// carry wal's own format stamp, which wal.Open checks; this one covers
// what the stores cannot tell: the format of the entries in the Raft log
// and of the records they staged, which a node of an older release must
// not replay.

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"slotd/cluster"
)

// clusterFormatFile holds, in a cluster node's data directory, the
// cluster format (cluster.FormatMax) of the newest release that ran on
// it, in decimal: what its Raft log and stores may hold. It is never
// lowered.
const clusterFormatFile = "cluster-format"

// checkClusterFormat refuses a data directory stamped with a cluster
// format newer than this release reads (V1), before anything in it is
// opened, and stamps a directory that has no stamp, or an older one,
// with this release's.
func checkClusterFormat(dataDir string) error {
	path := filepath.Join(dataDir, clusterFormatFile)
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return writeClusterFormat(dataDir, path)
	case err != nil:
		return fmt.Errorf("cannot read the cluster format stamp: %w", err)
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 8)
	switch {
	case err != nil || v == 0:
		return fmt.Errorf("%s holds %q, not a cluster format: restore the file from a backup of the directory, or write the format of the newest release that ran on it", path, b)
	case v > cluster.FormatMax:
		return fmt.Errorf("%s: the data directory holds cluster format %d, newer than this release reads (up to %d): a newer release ran on it; run that release or a newer one (a node cannot go back across a change of format)",
			path, v, cluster.FormatMax)
	case v < cluster.FormatMax:
		return writeClusterFormat(dataDir, path)
	}
	return nil
}

// writeClusterFormat stamps the directory with cluster.FormatMax.
func writeClusterFormat(dataDir, path string) error {
	if err := writeDataFile(dataDir, filepath.Base(path), fmt.Sprintf("%d\n", cluster.FormatMax)); err != nil {
		return fmt.Errorf("cannot write the cluster format stamp: %w", err)
	}
	return nil
}

// writeDataFile writes content to the file name of dataDir whole or not
// at all: written and synced under a temporary name, renamed over name,
// the directory synced, so that a crash leaves the old file or the new
// one.
func writeDataFile(dataDir, name, content string) error {
	tmp, err := os.CreateTemp(dataDir, name+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.WriteString(content)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), filepath.Join(dataDir, name))
	}
	if err == nil {
		err = syncDir(dataDir)
	}
	return err
}
