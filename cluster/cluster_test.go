package cluster

// The node under real conditions: three nodes on 127.0.0.1 ports, each
// with its own Pebble store, four groups, the clock ticking every
// tickEvery. Waits poll with a deadline; nothing is timed.

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

const (
	clusterNodes  = 3
	clusterGroups = 4
)

// TestClusterReplicatesAndAgrees: leaders are elected in every group and
// spread over the nodes (moved there by leadership transfer); proposals
// through each leader are applied on all three nodes, and the replicas'
// state hashes agree at every index (N1, N5). A follower refuses a
// proposal and names the leader; too large a proposal is refused.
func TestClusterReplicatesAndAgrees(t *testing.T) {
	c := newTestCluster(t, clusterNodes, clusterGroups)
	all := c.running()
	// Group g is to be led by node (g-1)%3+1, so that every node leads.
	for _, g := range c.groups {
		l := c.waitLeader(g, all)
		want := c.node((g-1)%clusterNodes + 1)
		eventually(t, fmt.Sprintf("node %d leads group %d", want.id, g), func() error {
			l, err := c.leader(g, all)
			if err != nil {
				return err
			}
			if l != want {
				_ = l.node.TransferLeadership(context.Background(), g, want.id)
				return fmt.Errorf("led by node %d", l.id)
			}
			return nil
		})
		_ = l
	}

	last := c.proposeAll("a", 25, all)
	c.converged("every node applies a", last, all)

	// A follower refuses a proposal, naming the leader for forwarding.
	eventually(t, "a follower refuses a proposal", func() error {
		l, err := c.leader(1, all)
		if err != nil {
			return err
		}
		f := c.node(l.id%clusterNodes + 1)
		_, err = f.node.Propose(context.Background(), 1, []byte("via follower"))
		var nl *NotLeaderError
		if !errors.As(err, &nl) || !errors.Is(err, ErrNotLeader) {
			t.Fatalf("Propose on follower %d: %v, want a NotLeaderError", f.id, err)
		}
		if nl.Leader != l.id {
			return fmt.Errorf("follower %d names leader %d, the leader is %d", f.id, nl.Leader, l.id)
		}
		return nil
	})
	l := c.waitLeader(1, all)
	if _, err := l.node.Propose(context.Background(), 1, make([]byte, DefaultProposalBytesMax+1)); !errors.Is(err, ErrProposalTooLarge) {
		t.Fatalf("Propose of %d bytes: %v, want ErrProposalTooLarge", DefaultProposalBytesMax+1, err)
	}
	if _, err := l.node.Propose(context.Background(), 99, nil); !errors.Is(err, ErrUnknownGroup) {
		t.Fatalf("Propose to group 99: %v, want ErrUnknownGroup", err)
	}

	for _, n := range all {
		s := n.node.Stats()
		if s.Appends == 0 || s.GroupReadys < s.Appends || s.Transport.MessagesSent == 0 {
			t.Fatalf("node %d: stats %+v", n.id, s)
		}
		t.Logf("node %d: %d Ready batches of %d group Readys; %d messages in %d frames", n.id, s.Appends, s.GroupReadys, s.Transport.MessagesSent, s.Transport.FramesSent)
	}
}

// TestClusterLeaderCloseElectsNewLeaderAndCatchesUp: the leader of a
// group stops; the two others elect a new leader and take proposals; the
// stopped node, started again from its directory, replays its own log and
// catches up from the leader until every replica agrees.
func TestClusterLeaderCloseElectsNewLeaderAndCatchesUp(t *testing.T) {
	c := newTestCluster(t, clusterNodes, clusterGroups)
	all := c.running()
	last := c.proposeAll("a", 10, all)
	c.converged("every node applies a", last, all)

	old := c.waitLeader(1, all)
	old.stop()
	rest := c.running()
	next := c.waitLeader(1, rest)
	if next == old {
		t.Fatalf("the stopped node %d still leads", old.id)
	}
	last = c.proposeAll("b", 10, rest)
	c.converged("the two running nodes apply b", last, rest)

	old.start(nil)
	c.converged(fmt.Sprintf("node %d catches up after its restart", old.id), last, c.running())
	last = c.proposeAll("c", 5, c.running())
	c.converged("every node applies c", last, c.running())
}

// TestClusterPartitionedLeaderCannotCommit: the leader of a group is cut
// off from the others, and its clock stopped so that it goes on believing
// it leads. Its proposals are not applied anywhere: one gives up at its
// deadline. The two others elect a leader and commit; the cut-off node
// applies nothing they did not. Once healed it converges, and its other
// proposals, still waiting, fail as dropped instead of hanging (N2):
// those at indexes the new leader filled, and those beyond.
func TestClusterPartitionedLeaderCannotCommit(t *testing.T) {
	c := newTestCluster(t, clusterNodes, clusterGroups)
	all := c.running()
	last := c.proposeAll("a", 10, all)
	c.converged("every node applies a", last, all)

	old := c.waitLeader(1, all)
	old.frozen.Store(true)
	c.isolate(old.id, true)

	// The proposal that gives up comes first; then more than the majority
	// will commit, so that the last ones lie beyond the majority's log
	// and fail only by the rule of terms (an entry of a newer term applied
	// before their index).
	ctx, cancel := context.WithTimeout(context.Background(), 20*tickEvery)
	_, err := old.node.Propose(ctx, 1, []byte("gave up"))
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Propose on the cut-off leader: %v, want its deadline", err)
	}
	const lostCount = 15
	lost := make(chan error, lostCount)
	for i := range lostCount {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), waitMax)
			defer cancel()
			_, err := old.node.Propose(ctx, 1, fmt.Appendf(nil, "lost-%d", i))
			lost <- err
		}()
	}

	var rest []*testNode
	for _, n := range all {
		if n != old {
			rest = append(rest, n)
		}
	}
	c.waitLeader(1, rest)
	last = c.proposeAll("b", 10, rest)
	c.converged("the majority applies b", last, rest)
	c.agree(all)
	if i, _ := old.sm.state(1); i >= last[1] {
		t.Fatalf("the cut-off node applied group 1 through %d, the majority's b ends at %d", i, last[1])
	}

	c.isolate(old.id, false)
	old.frozen.Store(false)
	for range lostCount {
		select {
		case err := <-lost:
			if !errors.Is(err, ErrProposalDropped) {
				t.Fatalf("a waiting proposal of the cut-off leader: %v, want ErrProposalDropped", err)
			}
		case <-time.After(waitMax):
			t.Fatalf("a proposal of the cut-off leader still waits after the heal")
		}
	}
	c.converged("every node after the heal", last, all)
	for _, n := range all {
		for i := range lostCount + 1 {
			v := fmt.Sprintf("lost-%d", i)
			if i == lostCount {
				v = "gave up"
			}
			if n.sm.holds(1, []byte(v)) {
				t.Fatalf("node %d applied %q, proposed on the cut-off leader", n.id, v)
			}
		}
	}
	last = c.proposeAll("c", 5, all)
	c.converged("every node applies c", last, all)
}

// TestClusterRestartAllRecovers: every node stops and starts again from
// its directory with an empty state machine; each replays its log and
// holds, at the index it had applied, the state it held before; then the
// cluster takes proposals again.
func TestClusterRestartAllRecovers(t *testing.T) {
	c := newTestCluster(t, clusterNodes, clusterGroups)
	all := c.running()
	last := c.proposeAll("a", 20, all)
	c.converged("every node applies a", last, all)
	type state struct {
		index uint64
		hash  [32]byte
	}
	before := map[[2]uint64]state{}
	for _, n := range all {
		for _, g := range c.groups {
			i, h := n.sm.state(g)
			before[[2]uint64{n.id, g}] = state{i, h}
		}
	}

	for _, n := range all {
		n.stop()
	}
	for _, n := range all {
		n.start(nil)
	}
	for _, n := range all {
		for _, g := range c.groups {
			want := before[[2]uint64{n.id, g}]
			eventually(t, fmt.Sprintf("node %d replays group %d through %d", n.id, g, want.index), func() error {
				h, ok := n.sm.hashAt(g, want.index)
				switch {
				case !ok:
					i, _ := n.sm.state(g)
					return fmt.Errorf("applied through %d", i)
				case h != want.hash:
					t.Fatalf("node %d group %d: hash %x at %d after the restart, %x before", n.id, g, h[:4], want.index, want.hash[:4])
				}
				return nil
			})
		}
	}
	last = c.proposeAll("b", 10, all)
	c.converged("every node applies b after the restart", last, all)
}
