package cluster

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"
)

// TestBarrierOnLaggingFollower: a follower that the leader's appends do
// not reach lacks an acknowledged entry, so a read of its state alone
// misses it; Barrier on that follower returns only once the follower has
// applied it.
func TestBarrierOnLaggingFollower(t *testing.T) {
	c := newTestCluster(t, 3, 1)
	leader := c.waitLeader(1, c.nodes)
	var lagging *testNode
	for _, n := range c.nodes {
		if n != leader {
			lagging = n
			break
		}
	}
	var cut atomic.Bool
	cut.Store(true)
	leader.node.Transport().SetFilter(func(to, _ uint64, mt pb.MessageType) (bool, time.Duration) {
		return cut.Load() && to == lagging.id && mt == pb.MessageType_MsgApp, 0
	})
	v := []byte("acknowledged-while-lagging")
	if _, err := c.propose(1, v, []*testNode{leader}); err != nil {
		t.Fatal(err)
	}
	if lagging.sm.holds(1, v) {
		t.Fatal("the lagging follower holds the entry the leader never sent it: the test shows nothing")
	}
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitMax)
		defer cancel()
		_, err := lagging.node.Barrier(ctx, 1)
		done <- err
	}()
	cut.Store(false)
	if err := <-done; err != nil {
		t.Fatalf("Barrier: %v", err)
	}
	if !lagging.sm.holds(1, v) {
		t.Fatal("Barrier returned before the follower applied an entry committed before it began")
	}
}

// TestReadIndexWithoutLeader: with no leader ReadIndex waits, asking
// again, until its context ends.
func TestReadIndexWithoutLeader(t *testing.T) {
	c := newTestCluster(t, 3, 1)
	n := c.node(1)
	c.isolate(1, true)
	defer c.isolate(1, false)
	eventually(t, "node 1 knows no leader", func() error {
		if l := n.node.Leader(1); l != 0 && l != 1 {
			return fmt.Errorf("leader %d", l)
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := n.node.ReadIndex(ctx, 1); err == nil {
		t.Fatal("ReadIndex answered on a node cut off from the others")
	}
}
