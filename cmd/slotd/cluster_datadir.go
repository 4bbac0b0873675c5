package main

// Whose a cluster node's data directory is (cluster invariants M5, M7,
// M8; docs/design.md §7 "Membership changes"): the id of the node that
// first ran on it, and, once the cluster refused that node for good, why.
// The stores cannot say the first (a store of a three-node cluster names
// nodes 1, 2 and 3 as members, whichever of them runs on it), nor the
// second when a peer told it (a node removed while it was down holds
// stores that still name it a member).

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

// nodeIDFile holds, in a cluster node's data directory, the id of the
// node that first ran on it, in decimal.
const nodeIDFile = "node-id"

// refusedFile holds, in a cluster node's data directory, why the cluster
// refused its node for good: removed (M5, M7), or not a member, its groups
// a cluster of their own (M8). No start uses a directory that has one.
const refusedFile = "refused"

// checkDataDirOwner refuses a data directory that the cluster refused for
// good, or that another node id ran on; it records id in one that names
// no node yet (a new directory, or one of an older release).
func checkDataDirOwner(dataDir string, id uint64) error {
	path := filepath.Join(dataDir, refusedFile)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		return fmt.Errorf("the cluster refused this data directory for good (%s says why): %s", path, strings.TrimSpace(string(b)))
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("cannot read %s: %w", path, err)
	}
	path = filepath.Join(dataDir, nodeIDFile)
	b, err = os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := writeDataFile(dataDir, nodeIDFile, fmt.Sprintf("%d\n", id)); err != nil {
			return fmt.Errorf("cannot record the node id in the data directory: %w", err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("cannot read %s: %w", path, err)
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	switch {
	case err != nil || v == 0:
		return fmt.Errorf("%s holds %q, not a node id: write the id of the node that ran on this data directory", path, b)
	case v != id:
		return fmt.Errorf("the data directory belongs to node %d (%s), not to node %d (-node-id): start node %d on it; a new node gets a new id, an empty data directory and -join (slotd cluster add)",
			v, path, id, v)
	}
	return nil
}

// refusedForGood marks dataDir refused (refusedFile) if err is the
// cluster's refusal of this node for good, and returns err with what the
// operator does next. A data directory that belongs to another node or
// cluster (cluster.ErrForeignStore) is not marked: it is not this node's
// to mark.
func refusedForGood(dataDir string, err error) error {
	switch {
	case errors.Is(err, cluster.ErrRemoved):
		err = fmt.Errorf("%w; to replace the node, start one with a new id on an empty data directory with -join, then run slotd cluster add", err)
	case errors.Is(err, cluster.ErrNotMember):
		err = fmt.Errorf("%w; to add this node, empty its data directory, start it with -join, then run slotd cluster add", err)
	default:
		return err
	}
	if merr := writeDataFile(dataDir, refusedFile, err.Error()+"\n"); merr != nil {
		return fmt.Errorf("%w (and the data directory could not be marked as not to be used again: %v)", err, merr)
	}
	return err
}
