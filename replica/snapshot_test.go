package replica

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"slotd/internal/slotdtest/testtime"
)

// newCompactingCluster starts size nodes hosting groups 1..groups whose
// logs are compacted every 100 entries, keeping a margin of 20.
func newCompactingCluster(t *testing.T, size, groups int, broken func(*Replica)) *testCluster {
	return startCluster(&testCluster{t: t, isolated: map[uint64]bool{}, compactMin: 100, compactMargin: 20, broken: broken}, size, groups)
}

// fallBehind stops a node that does not lead group 1, books on the others
// until their logs are compacted well past the stopped node's applied
// index, and returns the node, stopped, and the bookings acknowledged.
func fallBehind(t *testing.T, c *testCluster) (*testNode, []acked) {
	t.Helper()
	c.putOffices(1, 0, 2)
	c.converged(1)
	leader, _ := c.leaderEngine(1)
	lag := c.node(leader.id%3 + 1)
	behind, _, err := lag.stores[1].Applied()
	if err != nil {
		t.Fatal(err)
	}
	lag.stop()
	l := c.startLoad(1, 0, 2, 4)
	testtimeEventually(t, fmt.Sprintf("the running nodes compact their logs past %d", behind), func() bool {
		for _, n := range c.nodes {
			if n.up.Load() && n.node.LogStatus(1).FirstIndex <= behind+50 {
				return false
			}
		}
		return true
	})
	acks := l.end()
	for _, n := range c.nodes {
		if n.up.Load() {
			t.Logf("node %d: log %+v", n.id, n.node.LogStatus(1))
		}
	}
	t.Logf("node %d stopped at %d; %d bookings acknowledged since", lag.id, behind, len(acks))
	return lag, acks
}

// Cluster invariants S3–S5: a node that was stopped while the others
// compacted their logs past its applied index comes back, installs a
// snapshot of the group's state streamed from the leader, catches up by
// the log tail and holds the same state as the others, every booking
// acknowledged meanwhile included; and then it serves in the quorum when
// another node stops.
func TestSnapshotCatchUp(t *testing.T) {
	c := newCompactingCluster(t, 3, 1, nil)
	lag, acks := fallBehind(t, c)
	lag.start(nil)
	c.converged(1)
	if got := lag.node.Stats().SnapshotsInstalled; got == 0 {
		t.Fatal("the node caught up without installing a snapshot: its log was not compacted past it")
	}
	checkAcked(t, restored(t, lag.stores[1]), acks)
	t.Logf("node %d installed a snapshot at %d", lag.id, lag.node.LogStatus(1).SnapshotIndex)
	// It starts again from the installed state and its log, which
	// begins at the snapshot.
	lag.stop()
	lag.start(nil)
	c.converged(1)

	// Another node stops: the one that caught up is needed for a quorum.
	var gone *testNode
	for _, n := range c.nodes {
		if n != lag && (gone == nil || n.rep.Engine(1) != nil) {
			gone = n
		}
	}
	gone.stop()
	l := c.startLoad(1, 0, 2, 2)
	testtimeEventually(t, "bookings are acknowledged with the caught-up node in the quorum", func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return len(l.acks) >= 20
	})
	more := l.end()
	c.converged(1)
	for _, n := range c.nodes {
		if n.up.Load() {
			e := restored(t, n.stores[1])
			checkAcked(t, e, acks)
			checkAcked(t, e, more)
		}
	}
}

// The broken variant that takes a snapshot without replacing the store
// (raft moves on, the store keeps its old state) must leave the replicas
// disagreeing: the check of TestSnapshotCatchUp catches it (S4).
func TestSnapshotWithoutReplaceCaught(t *testing.T) {
	c := newCompactingCluster(t, 3, 1, func(r *Replica) { r.testInstallWithoutReplace = true })
	lag, _ := fallBehind(t, c)
	lag.start(nil)
	testtimeEventually(t, "the node takes a snapshot", func() bool { return lag.node.Stats().SnapshotsInstalled > 0 })
	// Given time to catch up, the replicas still differ.
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := c.agreeNow(1); err == nil {
			t.Fatal("the replicas agree although the snapshot's state was never installed")
		}
		time.Sleep(50 * time.Millisecond)
	}
	_, err := c.agreeNow(1)
	t.Logf("caught: %v", err)
}

// A crash after a snapshot's state is installed and before the node's
// log records the snapshot (S4) leaves a store ahead of the log: the node
// starts again, raft hands it the snapshot or the entries once more, and
// it converges with the others.
func TestSnapshotCrashAfterInstall(t *testing.T) {
	c := newCompactingCluster(t, 3, 1, nil)
	lag, acks := fallBehind(t, c)
	crashed := make(chan struct{})
	c.broken = func(r *Replica) {
		r.testAfterInstall = func(uint64) error {
			close(crashed)
			return errors.New("crash after the install")
		}
	}
	lag.start(nil)
	c.broken = nil
	select {
	case <-crashed:
	case <-time.After(waitFor):
		t.Fatal("no snapshot was installed")
	}
	testtime.EventuallyTrue(t, waitFor, "the node's loop stops", func() bool { return lag.node.Err() != nil })
	lag.stop()
	lag.start(nil)
	c.converged(1)
	checkAcked(t, restored(t, lag.stores[1]), acks)
}

// Cluster invariant S2: under load, every node's log of a group keeps at
// most CompactEntriesMin + CompactMarginEntries applied entries, once the
// group is quiet; the log does not grow with the changes.
func TestLogBoundedUnderLoad(t *testing.T) {
	c := newCompactingCluster(t, 3, 1, nil)
	c.putOffices(1, 0, 2)
	l := c.startLoad(1, 0, 2, 4)
	testtimeEventually(t, "the group applies 1500 entries", func() bool {
		for _, n := range c.nodes {
			if ls := n.node.LogStatus(1); ls.LastIndex < 1500 {
				return false
			}
		}
		return true
	})
	l.end()
	c.converged(1)
	for _, n := range c.nodes {
		ls := n.node.LogStatus(1)
		kept := ls.LastIndex - ls.FirstIndex + 1
		t.Logf("node %d: log %d..%d, %d entries, %d compactions", n.id, ls.FirstIndex, ls.LastIndex, kept, n.node.Stats().Compactions)
		if bound := uint64(c.compactMin + c.compactMargin + 1); kept > bound {
			t.Fatalf("S2: node %d keeps %d entries of group 1, the bound is %d", n.id, kept, bound)
		}
	}
}
