package cluster

// The test cluster: nodes on 127.0.0.1 ports, each with its own wal store
// (real Pebble) in its own directory, its own raftlog.Store and a toy
// state machine, ticked by the test every tickEvery.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"

	"slotd/raftlog"
	"slotd/wal"
)

// tickEvery is the test clock: elections take 10–20 ticks.
const tickEvery = 10 * time.Millisecond

// register is one group's toy state: the proposals applied, in log order,
// and a hash after every applied index of everything applied through it.
type register struct {
	applied uint64
	values  [][]byte
	hashAt  map[uint64][sha256.Size]byte
}

// toySM is an append-only register per group. It checks that entries
// arrive once each, in order. Safe for concurrent use.
type toySM struct {
	mu     sync.Mutex
	groups map[uint64]*register // guarded by mu
	// first is the index after which a new register starts: the log's
	// bootstrap snapshot (index 1), where a restart's replay begins.
	first uint64
}

func newToySM() *toySM { return &toySM{groups: map[uint64]*register{}, first: 1} }

// Apply appends each entry's data and chains its hash; the Result is the
// entry's index.
func (s *toySM) Apply(group uint64, entries []Entry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.groups[group]
	if r == nil {
		r = &register{applied: s.first, hashAt: map[uint64][sha256.Size]byte{}}
		s.groups[group] = r
	}
	for i := range entries {
		e := &entries[i]
		if e.Index != r.applied+1 {
			return fmt.Errorf("toy: group %d: entry %d after %d", group, e.Index, r.applied)
		}
		h := sha256.New()
		prev := r.hashAt[r.applied]
		h.Write(prev[:])
		var num [16]byte
		binary.BigEndian.PutUint64(num[:], e.Index)
		binary.BigEndian.PutUint64(num[8:], e.Term)
		h.Write(num[:])
		h.Write(e.Data)
		r.hashAt[e.Index] = [sha256.Size]byte(h.Sum(nil))
		if e.Data != nil {
			r.values = append(r.values, bytes.Clone(e.Data))
		}
		r.applied = e.Index
		e.Result = e.Index
	}
	return nil
}

// state returns group's applied index and the hash at it.
func (s *toySM) state(group uint64) (uint64, [sha256.Size]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.groups[group]
	if r == nil {
		return s.first, [sha256.Size]byte{}
	}
	return r.applied, r.hashAt[r.applied]
}

// hashAt returns the hash of group after index i, if applied.
func (s *toySM) hashAt(group, i uint64) ([sha256.Size]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.groups[group]; r != nil {
		h, ok := r.hashAt[i]
		return h, ok
	}
	return [sha256.Size]byte{}, false
}

// holds reports whether group applied a proposal of data v.
func (s *toySM) holds(group uint64, v []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.groups[group]
	return r != nil && slices.ContainsFunc(r.values, func(x []byte) bool { return bytes.Equal(x, v) })
}

// testNode is one node of the test cluster and what it runs on.
type testNode struct {
	c    *testCluster
	id   uint64
	dir  string
	addr string
	// ticks is the node's clock, fed by the cluster's ticker unless
	// frozen. The same channel serves every start of the node.
	ticks  chan time.Time
	frozen atomic.Bool

	// join starts the node as one to be added (Config.Join), with peers
	// as its Peers instead of the cluster's.
	join  bool
	peers []Peer
	// noSelfAddCheck starts the node with Config.testNoSelfAddCheck.
	noSelfAddCheck bool

	db    *wal.DB
	store *raftlog.Store
	sm    *toySM
	node  *Node
	up    bool
}

type testCluster struct {
	t      *testing.T
	peers  []Peer
	groups []uint64
	nodes  []*testNode // nodes[i] has id i+1; appended to under mu
	// isolated are the nodes cut off from the others: every node's
	// transport drops what it sends to or from them.
	mu       sync.Mutex
	isolated map[uint64]bool // guarded by mu
	stopTick chan struct{}
	ticking  sync.WaitGroup
	// noRefusals starts every node with TransportOptions.TestNoRefusals:
	// the broken variant of M7 and M8.
	noRefusals bool
}

// newTestCluster starts size nodes hosting groups 1..groups.
func newTestCluster(t *testing.T, size, groups int) *testCluster {
	return newTestClusterRefusing(t, size, groups, true)
}

// newTestClusterRefusing is newTestCluster; unless refusals, the nodes
// answer no refusal to a node that is not a peer (M7, M8 broken).
func newTestClusterRefusing(t *testing.T, size, groups int, refusals bool) *testCluster {
	c := &testCluster{t: t, isolated: map[uint64]bool{}, stopTick: make(chan struct{}), noRefusals: !refusals}
	for g := range groups {
		c.groups = append(c.groups, uint64(g+1))
	}
	listeners := make([]net.Listener, size)
	for i := range size {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		listeners[i] = ln
		id := uint64(i + 1)
		n := &testNode{c: c, id: id, dir: t.TempDir(), addr: ln.Addr().String(), ticks: make(chan time.Time, 1)}
		c.nodes = append(c.nodes, n)
		c.peers = append(c.peers, Peer{ID: id, Addr: n.addr})
	}
	for i, n := range c.nodes {
		n.start(listeners[i])
	}
	c.ticking.Add(1)
	go c.tick()
	t.Cleanup(c.stop)
	return c
}

// tick feeds every running node's clock until the cluster stops; a node
// still busy with its last tick misses this one, as with a real ticker.
func (c *testCluster) tick() {
	defer c.ticking.Done()
	ticker := time.NewTicker(tickEvery)
	defer ticker.Stop()
	for {
		select {
		case now := <-ticker.C:
			c.mu.Lock()
			nodes := slices.Clone(c.nodes) // a test may add a node
			c.mu.Unlock()
			for _, n := range nodes {
				if !n.frozen.Load() {
					select {
					case n.ticks <- now:
					default:
					}
				}
			}
		case <-c.stopTick:
			return
		}
	}
}

func (c *testCluster) stop() {
	close(c.stopTick)
	c.ticking.Wait()
	for _, n := range c.nodes {
		if n.up {
			n.stop()
		}
	}
}

func (c *testCluster) node(id uint64) *testNode { return c.nodes[id-1] }

// start opens the node's store in its directory and starts it with an
// empty state machine, on ln or, if nil, on a new listener at its address.
func (n *testNode) start(ln net.Listener) {
	t := n.c.t
	t.Helper()
	if ln == nil {
		// The port was the node's before: take it again (it may linger
		// a moment after the close).
		eventually(t, fmt.Sprintf("node %d listens on %s again", n.id, n.addr), func() error {
			var err error
			ln, err = net.Listen("tcp", n.addr)
			return err
		})
	}
	db, err := wal.Open(n.dir, wal.Options{CacheBytes: 1 << 20, MemTableBytes: 1 << 20})
	if err != nil {
		t.Fatalf("node %d: wal.Open: %v", n.id, err)
	}
	store, err := raftlog.Open(db.RaftRegion(), raftlog.Options{})
	if err != nil {
		t.Fatalf("node %d: raftlog.Open: %v", n.id, err)
	}
	n.db, n.store, n.sm = db, store, newToySM()
	peers := n.c.peers
	if n.peers != nil {
		peers = n.peers
	}
	n.node, err = NewNode(Config{
		ID: n.id, Peers: peers, Groups: n.c.groups, Listener: ln, Ticks: n.ticks, Join: n.join,
		Transport:          TransportOptions{BackoffMin: 5 * time.Millisecond, BackoffMax: 100 * time.Millisecond, TestNoRefusals: n.c.noRefusals},
		testNoSelfAddCheck: n.noSelfAddCheck,
	}, store, n.sm)
	if err != nil {
		t.Fatalf("node %d: NewNode: %v", n.id, err)
	}
	self := n.id
	n.node.Transport().SetFilter(func(to, _ uint64, _ pb.MessageType) (bool, time.Duration) {
		n.c.mu.Lock()
		defer n.c.mu.Unlock()
		return n.c.isolated[self] || n.c.isolated[to], 0
	})
	n.up = true
}

// stop closes the node and its store, as a process that ends.
func (n *testNode) stop() {
	t := n.c.t
	t.Helper()
	if err := n.node.Close(); err != nil {
		t.Errorf("node %d: Close: %v", n.id, err)
	}
	if err := n.db.Close(); err != nil {
		t.Errorf("node %d: wal close: %v", n.id, err)
	}
	n.up = false
}

// isolate cuts node id off from the others (both ways), or heals it.
func (c *testCluster) isolate(id uint64, cut bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.isolated[id] = cut
}

// running returns the running nodes among ids (all nodes if none given).
func (c *testCluster) running(ids ...uint64) []*testNode {
	var out []*testNode
	for _, n := range c.nodes {
		if n.up && (len(ids) == 0 || slices.Contains(ids, n.id)) {
			out = append(out, n)
		}
	}
	return out
}

// leader returns the node that every node of among (running ones) names
// as g's leader, itself among them.
func (c *testCluster) leader(g uint64, among []*testNode) (*testNode, error) {
	var lead uint64
	for _, n := range among {
		l := n.node.Leader(g)
		switch {
		case l == 0:
			return nil, fmt.Errorf("group %d: node %d knows no leader", g, n.id)
		case lead != 0 && l != lead:
			return nil, fmt.Errorf("group %d: nodes name leaders %d and %d", g, lead, l)
		}
		lead = l
	}
	for _, n := range among {
		if n.id == lead {
			return n, nil
		}
	}
	return nil, fmt.Errorf("group %d: leader %d is not among the nodes asked", g, lead)
}

// waitLeader waits until the nodes among agree on g's leader, one of them.
func (c *testCluster) waitLeader(g uint64, among []*testNode) *testNode {
	c.t.Helper()
	var l *testNode
	eventually(c.t, fmt.Sprintf("group %d elects a leader", g), func() (err error) {
		l, err = c.leader(g, among)
		return err
	})
	return l
}

// propose has data applied in group g through its leader among the
// nodes among, retrying while leadership moves (those errors are
// definite: the data was not applied); it returns the entry's index. It
// may run outside the test's goroutine.
func (c *testCluster) propose(g uint64, data []byte, among []*testNode) (uint64, error) {
	var index uint64
	var failed error
	err := poll(fmt.Sprintf("group %d applies %q", g, data), func() error {
		l, err := c.leader(g, among)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), waitMax)
		defer cancel()
		res, err := l.node.Propose(ctx, g, data)
		switch {
		case err == nil:
			index = res.(uint64)
		case errors.Is(err, ErrNotLeader) || errors.Is(err, ErrProposalDropped):
			return err
		default:
			failed = fmt.Errorf("group %d: node %d: Propose %q: %w", g, l.id, data, err)
		}
		return nil
	})
	if failed != nil {
		return 0, failed
	}
	return index, err
}

// proposeAll proposes count values "<prefix>-g<group>-<i>" to every group,
// the groups in parallel, through leaders among; it returns the index of
// each group's last one.
func (c *testCluster) proposeAll(prefix string, count int, among []*testNode) map[uint64]uint64 {
	c.t.Helper()
	last := map[uint64]uint64{}
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for _, g := range c.groups {
		wg.Go(func() {
			for i := range count {
				index, err := c.propose(g, fmt.Appendf(nil, "%s-g%d-%d", prefix, g, i), among)
				mu.Lock()
				last[g], errs = index, append(errs, err)
				mu.Unlock()
				if err != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		c.t.Fatal(err)
	}
	return last
}

// converged waits until every node of among has applied every group
// through at least last[g] and all hold the same state; then it checks
// that they agree at every index two of them applied.
func (c *testCluster) converged(what string, last map[uint64]uint64, among []*testNode) {
	c.t.Helper()
	eventually(c.t, what, func() error {
		for _, g := range c.groups {
			i0, h0 := among[0].sm.state(g)
			for _, n := range among {
				i, h := n.sm.state(g)
				switch {
				case i < last[g]:
					return fmt.Errorf("group %d: node %d applied through %d, want %d", g, n.id, i, last[g])
				case i != i0 || h != h0:
					return fmt.Errorf("group %d: node %d applied through %d (%x), node %d through %d (%x)", g, n.id, i, h[:4], among[0].id, i0, h0[:4])
				}
			}
		}
		return nil
	})
	c.agree(among)
}

// agree checks that the nodes of among hold the same hash at every index
// of every group that more than one of them applied: no replica applied
// anything the others did not apply at the same index.
func (c *testCluster) agree(among []*testNode) {
	c.t.Helper()
	for _, g := range c.groups {
		for _, a := range among {
			ai, _ := a.sm.state(g)
			for _, b := range among {
				bi, _ := b.sm.state(g)
				for i := uint64(2); i <= min(ai, bi); i++ {
					ha, _ := a.sm.hashAt(g, i)
					hb, _ := b.sm.hashAt(g, i)
					if ha != hb {
						c.t.Fatalf("group %d index %d: node %d holds %x, node %d %x", g, i, a.id, ha[:4], b.id, hb[:4])
					}
				}
			}
		}
	}
}
