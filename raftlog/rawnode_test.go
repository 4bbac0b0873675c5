package raftlog

// The Store under the real library: three in-process nodes, each with its
// own wal store in its own directory, each hosting two Raft groups driven
// by raft.RawNode. A minimal Ready loop per node stores every group's
// Ready with one Append, then sends the messages — marshalled, through a
// channel per node, as a network would carry them — then applies the
// committed entries to a toy state machine (the list of proposals) and
// advances. The loop is driven in rounds by the test, one tick per round,
// so nothing depends on the clock.

import (
	"encoding/json"
	"fmt"
	"io"
	"log"
	"slices"
	"testing"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"slotd/wal"
)

var clusterGroups = []uint64{1, 2}

// roundsMax bounds every wait of the cluster test, in rounds (ticks): a
// bound, not a measurement; elections take tens of rounds.
const roundsMax = 3000

// envelope is one message on the wire.
type envelope struct {
	group uint64
	bytes []byte
}

// testNode is one slotd node of the test: a wal store, its raftlog, and a
// RawNode per group.
type testNode struct {
	t     *testing.T
	id    uint64
	dir   string
	db    *wal.DB
	store *Store
	rafts map[uint64]*raft.RawNode
	// state is each group's state machine: the proposals applied, in log
	// order; applied is its applied index.
	state   map[uint64][]string
	applied map[uint64]uint64
	inbox   chan envelope
	up      bool
	// snapshotsReceived counts the snapshots the node's Ready loop stored.
	snapshotsReceived int
}

type cluster struct {
	t     *testing.T
	nodes map[uint64]*testNode
}

// quietLogger keeps raft's election chatter out of the test output; its
// Panic and Fatal still end the test.
var quietLogger = &raft.DefaultLogger{Logger: log.New(io.Discard, "", 0)}

func raftConfig(id uint64, st raft.Storage, applied uint64) *raft.Config {
	return &raft.Config{
		ID: id, ElectionTick: 10, HeartbeatTick: 1, Storage: st, Applied: applied,
		MaxSizePerMsg: 4 << 10, MaxInflightMsgs: 64, PreVote: true, Logger: quietLogger,
	}
}

// start opens the node's store and its groups' RawNodes. A new node
// bootstraps each group with a snapshot at index 1 that names the three
// voters; a restarted one continues from what its store holds: its state
// machine from the latest snapshot, and raft replays the entries after it.
func (n *testNode) start() {
	t := n.t
	db, err := wal.Open(n.dir, testWALOptions(nil))
	if err != nil {
		t.Fatal(err)
	}
	n.db = db
	if n.store, err = Open(db.RaftRegion(), Options{CacheBytes: 64 << 10}); err != nil {
		t.Fatal(err)
	}
	if len(n.store.Groups()) == 0 {
		var boot []Update
		for _, g := range clusterGroups {
			boot = append(boot, Update{Group: g, Snapshot: snapshot(1, 1, encodeState(nil), 1, 2, 3), HardState: hardState(1, 0, 1)})
		}
		if err := n.store.Append(boot); err != nil {
			t.Fatal(err)
		}
	}
	n.rafts, n.state, n.applied = map[uint64]*raft.RawNode{}, map[uint64][]string{}, map[uint64]uint64{}
	for _, g := range clusterGroups {
		st := n.store.Group(g)
		snap, err := st.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		n.state[g] = decodeState(t, snap.GetData())
		n.applied[g] = snap.GetMetadata().GetIndex()
		if n.rafts[g], err = raft.NewRawNode(raftConfig(n.id, st, n.applied[g])); err != nil {
			t.Fatal(err)
		}
	}
	n.inbox = make(chan envelope, 4096)
	n.up = true
}

// stop closes the node's store, as a process that ends; messages to it are
// lost until it starts again.
func (n *testNode) stop() {
	if err := n.db.Close(); err != nil {
		n.t.Fatal(err)
	}
	n.up = false
	n.rafts = nil
}

func encodeState(s []string) []byte {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err)
	}
	return b
}

func decodeState(t *testing.T, b []byte) []string {
	var s []string
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("snapshot data %q: %v", b, err)
	}
	return s
}

// round runs one turn of every running node: a tick, the messages that
// arrived, one Ready of every group stored with one Append.
func (c *cluster) round() {
	for _, id := range []uint64{1, 2, 3} {
		n := c.nodes[id]
		if !n.up {
			continue
		}
		for _, g := range clusterGroups {
			n.rafts[g].Tick()
		}
		n.receive()
		n.ready(c)
	}
}

func (n *testNode) receive() {
	for {
		select {
		case env := <-n.inbox:
			m := &pb.Message{}
			if err := proto.Unmarshal(env.bytes, m); err != nil {
				n.t.Fatal(err)
			}
			// A message of an old term or to a stopped peer may be
			// refused; raft copes, as with a network.
			_ = n.rafts[env.group].Step(m)
		default:
			return
		}
	}
}

// ready is the node's Ready loop, once: store every group's Ready in one
// Append (synced once), then send, apply, advance.
func (n *testNode) ready(c *cluster) {
	type groupReady struct {
		g  uint64
		rd raft.Ready
	}
	var readys []groupReady
	var updates []Update
	for _, g := range clusterGroups {
		rn := n.rafts[g]
		if !rn.HasReady() {
			continue
		}
		rd := rn.Ready()
		readys = append(readys, groupReady{g, rd})
		updates = append(updates, Update{Group: g, Snapshot: rd.Snapshot, Entries: rd.Entries, HardState: rd.HardState})
	}
	if err := n.store.Append(updates); err != nil {
		n.t.Fatalf("node %d: append: %v", n.id, err)
	}
	for _, r := range readys {
		rn := n.rafts[r.g]
		for _, m := range r.rd.Messages {
			c.send(n, r.g, m)
		}
		if !raft.IsEmptySnap(r.rd.Snapshot) {
			n.state[r.g] = decodeState(n.t, r.rd.Snapshot.GetData())
			n.applied[r.g] = r.rd.Snapshot.GetMetadata().GetIndex()
			n.snapshotsReceived++
		}
		for _, e := range r.rd.CommittedEntries {
			if e.GetIndex() <= n.applied[r.g] {
				n.t.Fatalf("node %d group %d: entry %d applied twice (applied %d)", n.id, r.g, e.GetIndex(), n.applied[r.g])
			}
			if e.GetType() == pb.EntryType_EntryNormal && len(e.GetData()) > 0 {
				n.state[r.g] = append(n.state[r.g], string(e.GetData()))
			}
			n.applied[r.g] = e.GetIndex()
		}
		rn.Advance(r.rd)
	}
}

// send delivers m to its node's inbox, marshalled; a stopped node or a
// full inbox loses it. A snapshot is reported delivered or failed.
func (c *cluster) send(from *testNode, g uint64, m *pb.Message) {
	to := c.nodes[m.GetTo()]
	b, err := proto.Marshal(m)
	if err != nil {
		c.t.Fatal(err)
	}
	delivered := false
	if to.up {
		select {
		case to.inbox <- envelope{group: g, bytes: b}:
			delivered = true
		default:
		}
	}
	if m.GetType() == pb.MessageType_MsgSnap {
		status := raft.SnapshotFinish
		if !delivered {
			status = raft.SnapshotFailure
		}
		from.rafts[g].ReportSnapshot(m.GetTo(), status)
	}
	if !delivered {
		from.rafts[g].ReportUnreachable(m.GetTo())
	}
}

// runUntil runs rounds until cond holds, at most roundsMax.
func (c *cluster) runUntil(what string, cond func() error) {
	c.t.Helper()
	var err error
	for range roundsMax {
		if err = cond(); err == nil {
			return
		}
		c.round()
	}
	c.t.Fatalf("%s: not reached in %d rounds: %v", what, roundsMax, err)
}

// leader returns the running node that leads group g, or nil.
func (c *cluster) leader(g uint64) *testNode {
	for _, id := range []uint64{1, 2, 3} {
		if n := c.nodes[id]; n.up && n.rafts[g].BasicStatus().RaftState == raft.StateLeader {
			return n
		}
	}
	return nil
}

// propose proposes "<prefix>-<i>" for i in 0..count-1 to the leader of
// every group, and runs until every running node applied them all.
func (c *cluster) propose(prefix string, count int) {
	c.t.Helper()
	for _, g := range clusterGroups {
		for i := range count {
			data := []byte(fmt.Sprintf("%s-%d", prefix, i))
			c.runUntil(fmt.Sprintf("group %d takes %s", g, data), func() error {
				l := c.leader(g)
				if l == nil {
					return fmt.Errorf("no leader")
				}
				return l.rafts[g].Propose(data) // ErrProposalDropped: again next round
			})
		}
	}
	c.runUntil("every running node applied "+prefix, func() error {
		for _, n := range c.nodes {
			if !n.up {
				continue
			}
			for _, g := range clusterGroups {
				if !slices.Contains(n.state[g], fmt.Sprintf("%s-%d", prefix, count-1)) {
					return fmt.Errorf("node %d group %d applied %d proposals", n.id, g, len(n.state[g]))
				}
			}
		}
		return nil
	})
}

// converged runs until every node is up to date with the leader's state
// machine in every group, and checks they all hold the same.
func (c *cluster) converged(what string) {
	c.t.Helper()
	c.runUntil(what, func() error {
		for _, g := range clusterGroups {
			l := c.leader(g)
			if l == nil {
				return fmt.Errorf("group %d has no leader", g)
			}
			for _, n := range c.nodes {
				if n.up && !slices.Equal(n.state[g], l.state[g]) {
					return fmt.Errorf("group %d: node %d applied %d proposals, leader %d applied %d", g, n.id, len(n.state[g]), l.id, len(l.state[g]))
				}
			}
		}
		return nil
	})
}

// compact snapshots every group of n at its applied index and compacts
// its log there, as the apply loop will.
func (n *testNode) compact() {
	for _, g := range clusterGroups {
		i := n.applied[g]
		if _, err := n.store.CreateSnapshot(g, i, &pb.ConfState{Voters: []uint64{1, 2, 3}}, encodeState(n.state[g])); err != nil {
			n.t.Fatal(err)
		}
		if err := n.store.Compact(g, i); err != nil {
			n.t.Fatal(err)
		}
	}
}

// TestRawNodeClusterCatchesUpAfterRestart: three nodes elect leaders and
// replicate proposals through their Stores; a node restarted from its own
// directory catches up from the leader's log; a node restarted after the
// others compacted past its log catches up from a snapshot, which its
// Store then holds.
func TestRawNodeClusterCatchesUpAfterRestart(t *testing.T) {
	c := &cluster{t: t, nodes: map[uint64]*testNode{}}
	for _, id := range []uint64{1, 2, 3} {
		n := &testNode{t: t, id: id, dir: t.TempDir()}
		n.start()
		c.nodes[id] = n
	}
	defer func() {
		for _, n := range c.nodes {
			if n.up {
				n.stop()
			}
		}
	}()

	c.propose("a", 20)
	c.converged("all nodes after a")

	// Node 3 misses b while it is down, and gets it from the leader's log.
	c.nodes[3].stop()
	c.propose("b", 20)
	c.nodes[3].start()
	c.converged("node 3 after its restart")
	if n := c.nodes[3].snapshotsReceived; n != 0 {
		t.Fatalf("node 3 caught up by %d snapshots, want by the log", n)
	}

	// Node 2 misses c while the others compact their logs past it: only a
	// snapshot can bring it back.
	c.nodes[2].stop()
	c.propose("c", 30)
	c.nodes[1].compact()
	c.nodes[3].compact()
	c.nodes[2].start()
	c.converged("node 2 after its restart")
	if n := c.nodes[2].snapshotsReceived; n == 0 {
		t.Fatalf("node 2 caught up without a snapshot")
	}
	for _, g := range clusterGroups {
		if first, _ := c.nodes[2].store.Group(g).FirstIndex(); first <= 2 {
			t.Fatalf("group %d: node 2's log starts at %d, want after the received snapshot", g, first)
		}
		if len(c.nodes[2].state[g]) != 70 {
			t.Fatalf("group %d: node 2 holds %d proposals, want 70", g, len(c.nodes[2].state[g]))
		}
	}

	// And every node's store gives the same log after one more restart.
	c.propose("d", 5)
	c.converged("all nodes after d")
	for _, id := range []uint64{1, 2, 3} {
		c.nodes[id].stop()
		c.nodes[id].start()
	}
	c.propose("e", 5)
	c.converged("all nodes after restarting all")
	for _, id := range []uint64{1, 2, 3} {
		t.Logf("node %d since its last start: %+v", id, c.nodes[id].store.Stats())
	}
}
