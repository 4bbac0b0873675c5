package cluster

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"slotd/raftlog"
	"slotd/wal"
)

// refusalsSeen sums the frames the nodes among refused from nodes that
// are not their peers (each closes the connection it came on).
func refusalsSeen(among []*testNode) uint64 {
	var sum uint64
	for _, n := range among {
		sum += n.node.Stats().Transport.FrameErrors
	}
	return sum
}

// halt closes n, whose loop may have stopped on a refusal, and its
// store.
func (n *testNode) halt() {
	_ = n.node.Close()
	if err := n.db.Close(); err != nil {
		n.c.t.Errorf("node %d: wal close: %v", n.id, err)
	}
	n.up = false
}

// stopsWith waits until n's loop stops with want, and returns an error
// if it does not, or runs on after the nodes among refused its frames
// twenty times (the broken variant: nothing tells it).
func stopsWith(n *testNode, want error, among []*testNode) error {
	base := refusalsSeen(among)
	var ran error
	err := poll(fmt.Sprintf("node %d stops", n.id), func() error {
		select {
		case <-n.node.Done():
			return nil
		default:
		}
		if seen := refusalsSeen(among) - base; seen >= 20 {
			ran = fmt.Errorf("node %d runs on after %d of its frames were refused", n.id, seen)
			return nil
		}
		return errors.New("node runs")
	})
	switch {
	case err != nil:
		return err
	case ran != nil:
		return ran
	}
	if err := n.node.Err(); !errors.Is(err, want) {
		return fmt.Errorf("node %d stopped with %v, want %v", n.id, err, want)
	}
	return nil
}

// removedWhileDown: node 3 is stopped, removed from every group by
// nodes 1 and 2, and started again on its data directory, which still
// names it a member: nothing it applies can tell it. With refusals, the
// first frame it sends is answered "removed" and it stops with
// ErrRemoved (M7); meanwhile, and after, 1 and 2 commit.
func removedWhileDown(t *testing.T, refusals bool) error {
	c := newTestClusterRefusing(t, 3, 2, refusals)
	all := c.running()
	for _, g := range c.groups {
		c.waitLeader(g, all)
	}
	last := c.proposeAll("before", 5, all)
	c.converged("three nodes apply the first entries", last, all)
	n3 := c.node(3)
	n3.stop()
	live := c.running(1, 2)
	for _, g := range c.groups {
		c.change(g, MemberChange{Op: Remove, Node: 3}, live)
	}
	n3.start(nil)
	err := stopsWith(n3, ErrRemoved, live)
	n3.halt()
	last = c.proposeAll("after", 5, live)
	c.converged("nodes 1 and 2 go on", last, live)
	return err
}

// Cluster invariant M7: a node removed while it was down learns it from
// the first peer it sends to, and stops with ErrRemoved. The broken
// variant, whose peers close its connections unanswered, runs on.
func TestRemovedWhileDownStops(t *testing.T) {
	if err := removedWhileDown(t, true); err != nil {
		t.Fatal(err)
	}
	t.Run("no-refusals", func(t *testing.T) {
		if err := removedWhileDown(t, false); err == nil {
			t.Fatal("the removed node stopped without refusals: the test cannot tell")
		} else {
			t.Logf("broken variant caught: %v", err)
		}
	})
}

// notMember: node 4 starts on an empty data directory without Join,
// its peers nodes 1, 2 and itself, as a replacement started with a new
// cluster's settings would: it creates its groups with 1, 2, 4 as the
// voters, a cluster of its own, and campaigns. Nodes 1 and 2 do not know
// node 4: with refusals its first frame is answered "not a member" and
// it stops with ErrNotMember (M8); 1, 2 and 3 go on.
func notMember(t *testing.T, refusals bool) error {
	c := newTestClusterRefusing(t, 3, 2, refusals)
	all := c.running()
	for _, g := range c.groups {
		c.waitLeader(g, all)
	}
	n4 := c.addNode(false, 1, 2)
	err := stopsWith(n4, ErrNotMember, all)
	n4.halt()
	last := c.proposeAll("after", 5, all)
	c.converged("nodes 1, 2 and 3 go on", last, all)
	return err
}

// Cluster invariant M8: a node that created its groups under an id the
// cluster does not know stops with ErrNotMember once a peer refuses it.
// The broken variant runs on.
func TestNotMemberStops(t *testing.T) {
	if err := notMember(t, true); err != nil {
		t.Fatal(err)
	}
	t.Run("no-refusals", func(t *testing.T) {
		if err := notMember(t, false); err == nil {
			t.Fatal("the stranger stopped without refusals: the test cannot tell")
		} else {
			t.Logf("broken variant caught: %v", err)
		}
	})
}

// Cluster invariant M8: a node that joined (Config.Join) and a node whose
// log went past its bootstrap are not stopped by a peer that does not
// know them (one lagging behind their addition).
func TestUnknownRefusalSparesMembers(t *testing.T) {
	c := newTestCluster(t, 3, 1)
	all := c.running()
	c.waitLeader(1, all)
	last := c.proposeAll("before", 3, all)
	c.converged("three nodes apply", last, all)
	for _, n := range all {
		n.node.refused(9, refusalUnknown)
	}
	// A node that stopped would fail the proposals or the convergence.
	last = c.proposeAll("after", 3, all)
	c.converged("three nodes go on", last, all)
	for _, n := range all {
		if err := n.node.Err(); err != nil {
			t.Fatalf("node %d stopped: %v", n.id, err)
		}
	}
	n4 := c.addJoiner(1, 2, 3)
	n4.node.unknownTo.Store(9)
	if err := n4.node.refusedErr(); err != nil {
		t.Fatalf("a joining node refused as not a member: %v", err)
	}
}

func TestRefusalRoundTrip(t *testing.T) {
	for _, r := range []refusal{refusalRemoved, refusalUnknown} {
		got, err := decodeRefusal(appendRefusal(nil, r))
		if err != nil || got != r {
			t.Fatalf("%v: %v, %v", r, got, err)
		}
	}
	good := appendRefusal(nil, refusalRemoved)
	for _, bad := range [][]byte{nil, good[:5], {0, 0, 0, 4, 1, 1}, {0xFF, 'R', 'E', 'F', 2, 1}, {0xFF, 'R', 'E', 'F', 1, 3}} {
		if _, err := decodeRefusal(bad); err == nil {
			t.Fatalf("%x decoded", bad)
		}
	}
}

// Cluster invariant M8: a node refuses to start on a store whose groups
// never had its id as a member (ErrForeignStore), where it used to take
// it for its own removal (ErrRemoved).
func TestForeignStoreRefused(t *testing.T) {
	c := newTestCluster(t, 3, 2)
	all := c.running()
	for _, g := range c.groups {
		c.waitLeader(g, all)
	}
	n1 := c.node(1)
	n1.stop()
	db, err := wal.Open(n1.dir, wal.Options{CacheBytes: 1 << 20, MemTableBytes: 1 << 20})
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
	peers := append(slices.Clone(c.peers), Peer{ID: 4, Addr: ln.Addr().String()})
	if _, err := NewNode(Config{ID: 4, Peers: peers, Groups: c.groups, Listener: ln, Ticks: n1.ticks}, store, newToySM()); !errors.Is(err, ErrForeignStore) {
		t.Fatalf("node 4 started on node 1's data directory: %v, want ErrForeignStore", err)
	}
}

// addedThenBootstrapped: node 4, added as a learner and then started
// without Join (its peers 1, 2 and itself, as a replacement given a new
// cluster's settings would be), creates its group with itself a voter,
// and the leader's log agrees with it at index 1: it takes the log from
// index 2 and thinks itself a voter, and could win an election as one.
// With the check, it stops with ErrNotMember when it applies its own
// addition (M8); 1 and 2 go on.
func addedThenBootstrapped(t *testing.T, check bool) error {
	c := newTestCluster(t, 3, 1)
	all := c.running()
	c.waitLeader(1, all)
	last := c.proposeAll("before", 5, all)
	c.converged("three nodes apply", last, all)
	c.node(3).stop()
	live := c.running(1, 2)
	c.change(1, MemberChange{Op: Remove, Node: 3}, live)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c.change(1, MemberChange{Op: AddLearner, Node: 4, RaftAddr: ln.Addr().String(), APIAddr: "127.0.0.1:4004"}, live)
	added, _ := c.node(1).sm.state(1)
	n4 := &testNode{c: c, id: 4, dir: t.TempDir(), addr: ln.Addr().String(), ticks: make(chan time.Time, 1), noSelfAddCheck: !check}
	n4.peers = []Peer{c.peers[0], c.peers[1], {ID: 4, Addr: n4.addr}}
	c.mu.Lock()
	c.nodes = append(c.nodes, n4)
	c.mu.Unlock()
	n4.start(ln)
	var ran error
	err = poll("node 4 stops, or applies its addition", func() error {
		select {
		case <-n4.node.Done():
			return nil
		default:
		}
		if applied, _ := n4.sm.state(1); applied >= added {
			ran = fmt.Errorf("node 4 applied its addition at %d and runs on, members %s", added, memberIDs(n4.node.Members(1)))
			return nil
		}
		return errors.New("neither")
	})
	if err == nil && ran == nil {
		if err = n4.node.Err(); errors.Is(err, ErrNotMember) {
			err = nil
		} else {
			err = fmt.Errorf("node 4 stopped with %v, want ErrNotMember", err)
		}
	}
	n4.halt()
	last = c.proposeAll("after", 5, live)
	c.converged("nodes 1 and 2 go on", last, live)
	if err != nil {
		return err
	}
	return ran
}

// Cluster invariant M8: a node that applies its own addition as a
// learner while its own bootstrap named it a voter stops. The broken
// variant runs on, a voter of a configuration of its own.
func TestAddedThenBootstrappedStops(t *testing.T) {
	if err := addedThenBootstrapped(t, true); err != nil {
		t.Fatal(err)
	}
	t.Run("no-check", func(t *testing.T) {
		if err := addedThenBootstrapped(t, false); err == nil {
			t.Fatal("node 4 stopped without the check: the test cannot tell")
		} else {
			t.Logf("broken variant caught: %v", err)
		}
	})
}
