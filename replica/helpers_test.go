package replica

// The test cluster: nodes on 127.0.0.1 ports, each with its Raft log in
// one wal store and each group's replica in a store of its own (real
// Pebble, in the node's directory), a cluster.Node and a Replica. The
// engines run on a fixed clock, BenchNow, with the bench offices.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	pb "go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"

	"slotd/allocator"
	"slotd/cluster"
	"slotd/internal/slotdtest"
	"slotd/internal/slotdtest/testtime"
	"slotd/raftlog"
	"slotd/wal"
)

// waitFor bounds every wait of these tests: elections take 100–200 ms at
// the test's ticks; the bound is for a loaded machine.
const waitFor = 20 * time.Second

type testNode struct {
	c    *testCluster
	id   uint64
	dir  string
	addr string

	raftDB *wal.DB
	stores map[uint64]*wal.DB
	rep    *Replica
	node   *cluster.Node
	up     atomic.Bool
	// live is rep while the node runs, for the other nodes' calls.
	live atomic.Pointer[Replica]
	// diskFull fails every write of the node's stores once set (ENOSPC).
	diskFull atomic.Bool
}

type testCluster struct {
	t      testing.TB
	peers  []cluster.Peer
	groups []uint64
	nodes  []*testNode
	// tick, if set, is the Raft tick instead of 10 ms (elections after
	// ten ticks).
	tick time.Duration
	// broken, if set, is applied to every replica started: a variant
	// with a safety check taken out, which the tests must catch.
	broken func(r *Replica)
	// sweepBatchMax, if set, is the stores' wal.Options.SweepBatchMax.
	sweepBatchMax int

	// reconcileAfter, if set, is the replicas' LedgerReconcileAfter.
	reconcileAfter time.Duration
	// compactMin and compactMargin, if set, are the nodes'
	// CompactEntriesMin and CompactMarginEntries.
	compactMin, compactMargin int
	// logger, if set, is the replicas' Logger.
	logger *zap.Logger

	mu       sync.Mutex
	isolated map[uint64]bool
}

// ledgerRemote is a node's Config.LedgerRemote: the leader's
// ProposeLedger, called in process unless either node is down or cut off.
func (n *testNode) ledgerRemote(ctx context.Context, leader, group uint64, entry []byte) (byte, error) {
	c := n.c
	c.mu.Lock()
	cut := c.isolated[n.id] || c.isolated[leader]
	c.mu.Unlock()
	to := c.node(leader).live.Load()
	if cut || to == nil {
		return 0, fmt.Errorf("node %d is not reachable", leader)
	}
	return to.ProposeLedger(ctx, group, entry)
}

func newTestCluster(t *testing.T, size, groups int) *testCluster {
	return startCluster(&testCluster{t: t, isolated: map[uint64]bool{}}, size, groups)
}

// startCluster starts c with size nodes hosting groups 1..groups.
func startCluster(c *testCluster, size, groups int) *testCluster {
	t := c.t
	for g := range groups {
		c.groups = append(c.groups, uint64(g+1))
	}
	lns := make([]net.Listener, size)
	for i := range size {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns[i] = ln
		n := &testNode{c: c, id: uint64(i + 1), dir: t.TempDir(), addr: ln.Addr().String()}
		c.nodes = append(c.nodes, n)
		c.peers = append(c.peers, cluster.Peer{ID: n.id, Addr: n.addr})
	}
	for i, n := range c.nodes {
		n.start(lns[i])
	}
	t.Cleanup(func() {
		for _, n := range c.nodes {
			if n.up.Load() {
				n.stop()
			}
		}
	})
	return c
}

func (c *testCluster) node(id uint64) *testNode { return c.nodes[id-1] }

func (n *testNode) start(ln net.Listener) {
	t := n.c.t
	t.Helper()
	if ln == nil {
		testtime.Eventually(t, waitFor, fmt.Sprintf("node %d listens on %s again", n.id, n.addr), func() error {
			var err error
			ln, err = net.Listen("tcp", n.addr)
			return err
		})
	}
	opts := wal.Options{CacheBytes: 1 << 20, MemTableBytes: 1 << 20, FS: errorfs.Wrap(vfs.Default, slotdtest.NoSpace(n.dir, &n.diskFull)), SweepBatchMax: n.c.sweepBatchMax}
	var err error
	if n.raftDB, err = wal.Open(filepath.Join(n.dir, "raft"), opts); err != nil {
		t.Fatalf("node %d: %v", n.id, err)
	}
	store, err := raftlog.Open(n.raftDB.RaftRegion(), raftlog.Options{})
	if err != nil {
		t.Fatalf("node %d: %v", n.id, err)
	}
	n.stores = map[uint64]*wal.DB{}
	for _, g := range n.c.groups {
		if n.stores[g], err = wal.Open(filepath.Join(n.dir, fmt.Sprintf("g%d", g)), opts); err != nil {
			t.Fatalf("node %d: %v", n.id, err)
		}
	}
	n.rep, err = New(Config{
		Self: n.id, Stores: n.stores,
		Now:          func() time.Time { return slotdtest.BenchNow },
		TickInterval: 20 * time.Millisecond, PollInterval: 5 * time.Millisecond,
		LedgerRemote: n.ledgerRemote, LedgerReconcileAfter: n.c.reconcileAfter,
		Logger: n.c.logger,
	})
	if err != nil {
		t.Fatalf("node %d: %v", n.id, err)
	}
	if n.c.broken != nil {
		n.c.broken(n.rep)
	}
	tick := n.c.tick
	if tick == 0 {
		tick = 10 * time.Millisecond
	}
	n.node, err = cluster.NewNode(cluster.Config{
		ID: n.id, Peers: n.c.peers, Groups: n.c.groups, Listener: ln,
		TickInterval: tick, ProposalBytesMax: 3 << 20,
		CompactEntriesMin: n.c.compactMin, CompactMarginEntries: n.c.compactMargin,
		Transport: cluster.TransportOptions{BackoffMin: 5 * time.Millisecond, BackoffMax: 50 * time.Millisecond},
	}, store, n.rep)
	if err != nil {
		t.Fatalf("node %d: %v", n.id, err)
	}
	self := n.id
	n.node.Transport().SetFilter(func(to, _ uint64, _ pb.MessageType) (bool, time.Duration) {
		n.c.mu.Lock()
		defer n.c.mu.Unlock()
		return n.c.isolated[self] || n.c.isolated[to], 0
	})
	n.rep.Start(n.node)
	n.live.Store(n.rep)
	n.up.Store(true)
}

// stop ends the node as a process that ends: its replica, its Raft node,
// its stores.
func (n *testNode) stop() {
	t := n.c.t
	n.live.Store(nil)
	n.rep.Close()
	if err := n.node.Close(); err != nil && !errors.Is(err, cluster.ErrStopped) {
		t.Logf("node %d: close: %v", n.id, err)
	}
	report := t.Errorf
	if n.diskFull.Load() {
		report = t.Logf // a full disk fails the closing flush too
	}
	for g, db := range n.stores {
		if err := db.Close(); err != nil {
			report("node %d: group %d store: %v", n.id, g, err)
		}
	}
	if err := n.raftDB.Close(); err != nil {
		report("node %d: raft store: %v", n.id, err)
	}
	n.up.Store(false)
}

// isolate cuts node id off from the others, both ways, or heals it.
func (c *testCluster) isolate(id uint64, cut bool) {
	c.mu.Lock()
	c.isolated[id] = cut
	c.mu.Unlock()
}

// leaderEngine waits until a running node runs group's engine and
// returns the node and the engine.
func (c *testCluster) leaderEngine(group uint64) (*testNode, *allocator.Engine) {
	c.t.Helper()
	var n *testNode
	var e *allocator.Engine
	testtime.Eventually(c.t, waitFor, fmt.Sprintf("group %d has an engine", group), func() error {
		for _, cand := range c.nodes {
			c.mu.Lock()
			cut := c.isolated[cand.id]
			c.mu.Unlock()
			if cand.up.Load() && !cut {
				if e = cand.rep.Engine(group); e != nil && !e.Degraded() {
					n = cand
					return nil
				}
			}
		}
		return errors.New("no running node runs it")
	})
	return n, e
}

// putOffices puts bench offices o000… into group's engine, count of them
// from first.
func (c *testCluster) putOffices(group uint64, first, count int) {
	c.t.Helper()
	_, e := c.leaderEngine(group)
	for i := first; i < first+count; i++ {
		if _, err := e.PutOffice(slotdtest.BenchNow, slotdtest.BenchOffice(i), allocator.Meta{Actor: "test"}); err != nil {
			c.t.Fatalf("PutOffice o%03d: %v", i, err)
		}
	}
}

// converged waits until every running replica of group applied the same
// index and holds the same digest (agreeNow), and returns the digest.
func (c *testCluster) converged(group uint64) [32]byte {
	c.t.Helper()
	var d [32]byte
	testtime.Eventually(c.t, waitFor, fmt.Sprintf("replicas of group %d agree", group), func() error {
		var err error
		d, err = c.agreeNow(group)
		return err
	})
	return d
}

// restored builds a fresh engine from a node's store of group: recovery
// refuses a store where two active bookings own one seat.
func restored(t *testing.T, db *wal.DB) *allocator.Engine {
	t.Helper()
	e, err := allocator.New(allocator.Config{Journal: &allocator.MemJournal{}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wal.Recover(db, e, slotdtest.BenchNow); err != nil {
		t.Fatalf("recover: %v", err)
	}
	if err := e.Verify(); err != nil {
		t.Fatalf("verify: %v", err)
	}
	return e
}

func testtimeEventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testtime.EventuallyTrue(t, waitFor, what, cond)
}

// agreeNow reports whether every running replica of group holds the same
// state at the same applied index, and returns that state's digest.
func (c *testCluster) agreeNow(group uint64) ([32]byte, error) {
	var first *testNode
	var d [32]byte
	var at uint64
	for _, n := range c.nodes {
		if !n.up.Load() {
			continue
		}
		dig, applied, err := n.stores[group].StateDigest()
		if err != nil {
			return d, err
		}
		if first == nil {
			first, d, at = n, dig, applied
			continue
		}
		if applied != at || dig != d {
			return d, fmt.Errorf("node %d at %d %x, node %d at %d %x", first.id, at, d[:4], n.id, applied, dig[:4])
		}
	}
	return d, nil
}
