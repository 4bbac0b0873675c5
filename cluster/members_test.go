package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"slotd/raftlog"
	"slotd/wal"
)

// change has c applied to group g through its leader among the nodes
// among, retrying while leadership moves or raft holds another change.
func (c *testCluster) change(g uint64, ch MemberChange, among []*testNode) {
	c.t.Helper()
	eventually(c.t, fmt.Sprintf("group %d applies %v of node %d", g, ch.Op, ch.Node), func() error {
		l, err := c.leader(g, among)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), waitMax)
		defer cancel()
		err = l.node.ChangeMembers(ctx, g, ch)
		if err != nil && !errors.Is(err, ErrNotLeader) && !errors.Is(err, ErrProposalDropped) {
			c.t.Fatalf("group %d: node %d: %v of node %d: %v", g, l.id, ch.Op, ch.Node, err)
		}
		return err
	})
}

// memberIDs are the ids of ms, learners marked with an L.
func memberIDs(ms []Member) string {
	var out []string
	for _, m := range ms {
		s := fmt.Sprint(m.ID)
		if m.Learner {
			s += "L"
		}
		out = append(out, s)
	}
	return fmt.Sprint(out)
}

// addJoiner adds a node that is to join the cluster, with an empty data
// directory, and starts it with Config.Join and the given peers (itself
// added).
func (c *testCluster) addJoiner(peers ...uint64) *testNode {
	c.t.Helper()
	return c.addNode(true, peers...)
}

// addNode adds a node with an empty data directory and starts it with
// the given peers (itself added), with Config.Join if join.
func (c *testCluster) addNode(join bool, peers ...uint64) *testNode {
	c.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		c.t.Fatal(err)
	}
	n := &testNode{c: c, id: uint64(len(c.nodes) + 1), dir: c.t.TempDir(), addr: ln.Addr().String(), ticks: make(chan time.Time, 1), join: join}
	for _, p := range c.peers {
		if slices.Contains(peers, p.ID) {
			n.peers = append(n.peers, p)
		}
	}
	n.peers = append(n.peers, Peer{ID: n.id, Addr: n.addr})
	c.mu.Lock()
	c.nodes = append(c.nodes, n)
	c.mu.Unlock()
	n.start(ln)
	return n
}

// TestMemberReplace replaces a dead node with a new one on an empty disk,
// one conf change at a time (M1–M6): node 3 stops for good and is removed
// from every group; node 4 starts empty with Join, is added as a learner,
// catches up from the whole log and is promoted. Then node 1 restarts and
// must know from its own store — not from its Peers, which still name
// node 3 and not node 4 — that the members are 1, 2, 4 and where node 4
// is; with node 2 stopped, 1 and 4 alone are a quorum that commits.
func TestMemberReplace(t *testing.T) {
	c := newTestCluster(t, 3, 2)
	all := c.running()
	for _, g := range c.groups {
		c.waitLeader(g, all)
	}
	last := c.proposeAll("before", 20, all)
	c.converged("three nodes apply the first entries", last, all)

	c.node(3).stop()
	live := c.running(1, 2)
	for _, g := range c.groups {
		c.change(g, MemberChange{Op: Remove, Node: 3}, live)
	}
	n4 := c.addJoiner(1, 2)
	live = c.running(1, 2, 4)
	for _, g := range c.groups {
		c.change(g, MemberChange{Op: AddLearner, Node: 4, RaftAddr: n4.addr, APIAddr: "127.0.0.1:4004"}, c.running(1, 2))
	}
	c.converged("node 4 catches up from the whole log", last, live)
	for _, g := range c.groups {
		c.change(g, MemberChange{Op: Promote, Node: 4}, c.running(1, 2))
	}
	eventually(t, "every node applied 1, 2, 4 as the members", func() error {
		for _, n := range live {
			for _, g := range c.groups {
				if got := memberIDs(n.node.Members(g)); got != "[1 2 4]" {
					return fmt.Errorf("node %d group %d: members %s", n.id, g, got)
				}
			}
		}
		return nil
	})
	// A change that would break the rules is refused before raft sees it.
	l := c.waitLeader(1, live)
	for _, bad := range []MemberChange{{Op: AddLearner, Node: 3, RaftAddr: "x:1", APIAddr: "x:2"}, {Op: Promote, Node: 4}, {Op: Remove, Node: 3}} {
		if err := l.node.ChangeMembers(context.Background(), 1, bad); !errors.Is(err, ErrMemberChange) {
			t.Fatalf("%v of node %d: %v, want ErrMemberChange", bad.Op, bad.Node, err)
		}
	}

	// Node 1's store holds the membership (raftlog R7) with node 4's
	// address, as applied.
	n1 := c.node(1)
	n1.stop()
	checkStoredMembers(t, n1.dir, c.groups, n4.addr)
	n1.start(nil)

	c.node(2).stop()
	quorum := c.running(1, 4)
	last = c.proposeAll("after", 10, quorum)
	c.converged("nodes 1 and 4 commit without 2 and 3", last, quorum)
}

// checkStoredMembers opens a stopped node's store and checks that every
// group's ConfState is voters 1, 2, 4 and its record names node 4 at
// addr.
func checkStoredMembers(t *testing.T, dir string, groups []uint64, addr string) {
	t.Helper()
	db, err := wal.Open(dir, wal.Options{CacheBytes: 1 << 20, MemTableBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	store, err := raftlog.Open(db.RaftRegion(), raftlog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	n := &Node{}
	for _, g := range groups {
		m, err := n.loadMembership(store.Group(g))
		if err != nil {
			t.Fatal(err)
		}
		if got := memberIDs(m.members()); got != "[1 2 4]" || m.addrs[4].RaftAddr != addr || !slices.Equal(m.removed, []uint64{3}) {
			t.Fatalf("group %d: stored members %s, node 4 at %q, removed %v; want [1 2 4], %s, [3]", g, got, m.addrs[4].RaftAddr, m.removed, addr)
		}
	}
}

// TestMemberRemovedStops: a running node removed from every group applies
// its removal and stops with ErrRemoved, and refuses to start again on
// its data directory (M5); the others go on as two.
func TestMemberRemovedStops(t *testing.T) {
	c := newTestCluster(t, 3, 2)
	all := c.running()
	for _, g := range c.groups {
		c.waitLeader(g, all)
	}
	last := c.proposeAll("before", 5, all)
	c.converged("three nodes apply the first entries", last, all)
	n3 := c.node(3)
	for _, g := range c.groups {
		// Moved off node 3 first, so that the change is proposed by a
		// leader that stays.
		eventually(t, fmt.Sprintf("group %d is led by node 1 or 2", g), func() error {
			l, err := c.leader(g, all)
			if err != nil {
				return err
			}
			if l.id == 3 {
				_ = l.node.TransferLeadership(context.Background(), g, 1)
				return errors.New("node 3 leads")
			}
			return nil
		})
		c.change(g, MemberChange{Op: Remove, Node: 3}, all)
	}
	select {
	case <-n3.node.Done():
	case <-time.After(waitMax):
		t.Fatal("node 3 runs on after its removal from every group")
	}
	if err := n3.node.Err(); !errors.Is(err, ErrRemoved) {
		t.Fatalf("node 3 stopped with %v, want ErrRemoved", err)
	}
	_ = n3.node.Close()
	if err := n3.db.Close(); err != nil {
		t.Fatal(err)
	}
	n3.up = false
	db, err := wal.Open(n3.dir, wal.Options{CacheBytes: 1 << 20, MemTableBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	store, err := raftlog.Open(db.RaftRegion(), raftlog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewNode(Config{ID: 3, Peers: c.peers, Groups: c.groups, Listener: ln, Ticks: n3.ticks}, store, newToySM()); !errors.Is(err, ErrRemoved) {
		t.Fatalf("node 3 started again on its data directory: %v, want ErrRemoved", err)
	}
	live := c.running(1, 2)
	last = c.proposeAll("after", 5, live)
	c.converged("nodes 1 and 2 go on", last, live)
}
