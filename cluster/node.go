package cluster

// The node: the Raft groups one process hosts, driven by one loop. See the
// package doc for the loop as pseudo-code and its invariants (N1…N9).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"

	"slotd/raftlog"
)

// drainEventsMax bounds the events (frames, ticks, proposals) one turn of
// the loop takes before it writes a Ready batch, so that a flood of frames
// cannot hold back the write, and a turn's batch stays bounded.
const drainEventsMax = 1024

// StateMachine is what the groups' committed entries are applied to.
type StateMachine interface {
	// Apply applies committed entries of group, in log order. The node
	// calls it from its loop, one group at a time, with every index once
	// per start, each following the last (N5). Apply sets each entry's
	// Result, which the Propose that proposed the entry on this node
	// returns. An error stops the node: proposals waiting on it fail with
	// ErrStopped. Apply must not call the Node, nor keep entries (the
	// node reuses it) past its return.
	Apply(group uint64, entries []Entry) error
}

// Entry is a committed entry as the state machine sees it.
type Entry struct {
	Index, Term uint64
	// Data is the proposal's data, as given to Propose; nil for an entry
	// raft writes itself (a new leader's empty entry). It is shared with
	// the log and must not be modified.
	Data []byte
	// Result is set by Apply and handed to the entry's Propose call.
	Result any

	id proposalID // the proposal's id; zero for raft's own entries
}

// Stats are a Node's counters since NewNode.
type Stats struct {
	// Appends counts the Ready batches stored, one raftlog Append each;
	// GroupReadys counts the groups' Readys in them, so
	// GroupReadys/Appends is how many groups share an fsync.
	Appends, GroupReadys uint64
	// EntriesApplied counts the committed entries applied.
	EntriesApplied uint64
	// ProposalsApplied counts this node's proposals applied and
	// acknowledged; ProposalsFailed those that failed (not the leader,
	// dropped, too many, too large, caller gone).
	ProposalsApplied, ProposalsFailed uint64
	// InboxDropped counts frames from peers dropped because the inbox was
	// full.
	InboxDropped uint64
	// StepsRefused counts messages from peers not handed to raft, or that
	// raft refused: of an unknown group, a proposal, a stale response.
	StepsRefused uint64
	// Compactions counts the compactions of a group's log;
	// SnapshotsSent the snapshots streamed to peers in full and staged
	// there; SnapshotsInstalled those installed here.
	Compactions, SnapshotsSent, SnapshotsInstalled uint64
	// Transport are the transport's counters.
	Transport TransportStats
}

// nodeStats are the counters behind Stats: written by the loop (and
// inboxDropped by the transport's readers), read by Stats.
type nodeStats struct {
	appends, groupReadys, entriesApplied atomic.Uint64
	proposalsApplied, proposalsFailed    atomic.Uint64
	inboxDropped, stepsRefused           atomic.Uint64
	compactions, snapshotsSent           atomic.Uint64
	snapshotsInstalled                   atomic.Uint64
}

// Node hosts Raft groups of a slotd cluster: one raft.RawNode per group,
// their logs in one raftlog.Store, their messages on one Transport, all
// driven by one goroutine (the loop), and their committed entries applied
// to one StateMachine. Safe for concurrent use.
type Node struct {
	id    uint64
	cfg   Config // with defaults
	store *raftlog.Store
	sm    StateMachine
	// snapshotter is sm if it is a Snapshotter, else nil: then logs are
	// not compacted and a snapshot stops the node.
	snapshotter Snapshotter
	tr          *Transport
	// groups are sorted by id; a group's RawNode belongs to the loop.
	groups []*group
	byID   map[uint64]*group // read-only after NewNode
	// heardp is when a frame from each peer last arrived (Unix
	// nanoseconds), by peer: a map never changed once stored, replaced
	// whole when a membership change adds a peer (syncPeers).
	heardp atomic.Pointer[map[uint64]*atomic.Int64]

	propc chan *proposal   // Propose → loop; bounded by ProposalsPendingMax
	recvc chan inbound     // transport → loop; bounded by InboxFramesMax
	ctlc  chan func()      // requests run by the loop (TransferLeadership)
	ticks <-chan time.Time // Config.Ticks or the ticker's channel
	stopc chan struct{}    // closed by Close
	ended chan struct{}    // closed when the loop has ended and err is set
	done  chan struct{}    // closed after ended, once every proposal held has failed
	err   error            // why the loop ended; written before ended is closed
	stop  sync.Once        // closes stopc
	tick  *time.Ticker     // nil when Config.Ticks drives the clock
	seq   atomic.Uint64    // numbers this node's proposals
	stats nodeStats
	// testEntryVersion, when set, replaces the version byte of the
	// entries Propose writes: a test's newer release (V3).
	testEntryVersion byte

	// The loop's own state and scratch.
	queued    []*proposal              // taken from propc this turn
	proposing map[proposalID]*proposal // proposed this turn, not yet found in a Ready
	pending   int                      // proposals proposing or in a group's pending
	updates   []raftlog.Update         // this turn's Ready batch
	readys    []*group                 // the groups with a Ready this turn
	entries   []Entry                  // one group's committed entries for Apply
	outSnaps  []outSnapshot            // states pinned for this turn's snapshot messages
	// streamed are the groups whose streamed snapshot message the loop
	// stepped this turn: their receiving flag is cleared after the turn.
	streamed []*group

	// snapWG counts the goroutines streaming snapshots to peers.
	snapWG sync.WaitGroup
	// testCompactIgnoresDurable compacts through the applied index
	// whether or not the state machine has it on disk: the broken
	// variant the compaction tests must catch (S1).
	testCompactIgnoresDurable atomic.Bool
	// reads are the ReadIndex calls waiting for raft's answer, by their
	// request context (readindex.go).
	reads map[string]chan<- uint64
	// memberUpdates are the membership records of this turn's conf
	// changes, stored before the groups advance (M1).
	memberUpdates []raftlog.Update
	// removedBy and unknownTo are the first peer that answered this
	// node's frames with a refusal, removed or not a member (0: none):
	// written by the transport's goroutines, read by the loop, which
	// stops on them (refusal.go; M7, M8).
	removedBy, unknownTo atomic.Uint64
}

// group is one Raft group on this node. Only the loop touches its fields,
// but leader.
type group struct {
	id uint64
	rn *raft.RawNode
	rd raft.Ready // this turn's, when the group is in Node.readys
	// leader is the group's leader as this node last learned it (0: none
	// known). Written by the loop, read by Node.Leader.
	leader atomic.Uint64
	// term is the group's term as this node last stored it (its
	// HardState's), written before leader. Read by Node.Status.
	term atomic.Uint64
	// pending are this node's proposals in the group's log, by index (a
	// chain through proposal.next when several leaderships of this node
	// put entries at one index), waiting for that index to be applied.
	pending map[uint64]*proposal
	// applied and appliedTerm are the index and term of the last entry
	// applied.
	applied, appliedTerm uint64
	// receiving is set while a snapshot of the group is received, until
	// the loop has stepped its message (one at a time).
	receiving atomic.Bool
	// snapshotIndex is the index of the last snapshot sent or installed
	// (LogStatus).
	snapshotIndex atomic.Uint64
	// state is the group's raft role here, and storedTerm and storedVote
	// the term and vote of its last stored HardState: what tells
	// handleReady a Ready's messages may go out before its entries are
	// stored (N3). Owned by the loop.
	state                  raft.StateType
	storedTerm, storedVote uint64
	// ms is the group's membership as this node applied it (the loop's);
	// members its copy for readers (Node.Members); removed is set once
	// this node applied its own removal (M5).
	ms      *membership
	members atomic.Pointer[[]Member]
	removed bool
}

// inbound is one frame's messages from peer from.
type inbound struct {
	from uint64
	msgs []GroupMessage
	// snapshot: a snapshot message whose state was streamed and staged
	// (receiveSnapshot); raft takes a snapshot message only so.
	snapshot bool
}

// quietLogger is raft's logger when Config.Logger is nil: silent, but its
// Panic still panics (and Fatal still exits, as raft's own).
var quietLogger = &raft.DefaultLogger{Logger: log.New(io.Discard, "", 0)}

// NewNode starts the node: it creates every group of cfg that store does
// not hold yet (bootstrap: a log that starts after index 1 with every
// peer as a voter), starts a RawNode per group, the transport and the
// loop. The caller keeps store's wal.DB open until Close has returned.
// cfg.Listener is closed if NewNode fails.
func NewNode(cfg Config, store *raftlog.Store, sm StateMachine) (_ *Node, err error) {
	if cfg.Listener != nil {
		defer func() {
			if err != nil {
				_ = cfg.Listener.Close()
			}
		}()
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	n := &Node{
		id: cfg.ID, cfg: cfg, store: store, sm: sm,
		byID:      map[uint64]*group{},
		propc:     make(chan *proposal, cfg.ProposalsPendingMax),
		recvc:     make(chan inbound, cfg.InboxFramesMax),
		ctlc:      make(chan func(), 16),
		stopc:     make(chan struct{}),
		ended:     make(chan struct{}),
		done:      make(chan struct{}),
		proposing: map[proposalID]*proposal{},
	}
	n.snapshotter, _ = sm.(Snapshotter)
	n.seq.Store(rand.Uint64())
	heard := map[uint64]*atomic.Int64{}
	for _, p := range cfg.Peers {
		heard[p.ID] = new(atomic.Int64)
	}
	n.heardp.Store(&heard)
	if err := n.bootstrap(); err != nil {
		return nil, err
	}
	for _, id := range slices.Sorted(slices.Values(cfg.Groups)) {
		g, err := n.startGroup(id)
		if err != nil {
			return nil, err
		}
		n.groups = append(n.groups, g)
		n.byID[id] = g
	}
	ln := cfg.Listener
	if ln == nil {
		if ln, err = net.Listen("tcp", cfg.peerAddrs()[n.id]); err != nil {
			return nil, fmt.Errorf("cluster: cannot listen for peers: %w", err)
		}
	}
	if n.tr, err = NewTransport(n.id, cfg.peerAddrs(), ln, cfg.Transport, n.receive); err != nil {
		if cfg.Listener == nil {
			_ = ln.Close()
		}
		return nil, err
	}
	n.tr.SetSnapshotHandler(n.receiveSnapshot)
	n.tr.setRefusedHandler(n.refused)
	n.syncPeers() // the members that changes added, at their addresses
	n.ticks = cfg.Ticks
	if n.ticks == nil {
		n.tick = time.NewTicker(cfg.TickInterval)
		n.ticks = n.tick.C
	}
	go n.run()
	return n, nil
}

// bootstrap creates, with one Append, every group of the config that the
// store does not hold: its log starts after index 1, term 1, whose
// snapshot names every peer as a voter — as a new etcd cluster does
// (raft recommends it over raft.Bootstrap). Every node does the same, so
// their logs agree through index 1. A group the store holds keeps its own
// membership, which must name only known peers, and this node as a
// member or as removed (M8).
func (n *Node) bootstrap() error {
	voters := make([]uint64, 0, len(n.cfg.Peers))
	for _, p := range n.cfg.Peers {
		voters = append(voters, p.ID)
	}
	slices.Sort(voters)
	addrs := n.cfg.peerAddrs()
	var boot []raftlog.Update
	removed := 0
	for _, id := range n.cfg.Groups {
		st := n.store.Group(id)
		hs, cs, err := st.InitialState()
		if err != nil {
			return fmt.Errorf("cluster: group %d: cannot read its state: %w", id, err)
		}
		last, err := st.LastIndex()
		if err != nil {
			return fmt.Errorf("cluster: group %d: cannot read its last index: %w", id, err)
		}
		if last > 0 || !raft.IsEmptyHardState(hs) {
			m, err := n.loadMembership(st)
			if err != nil {
				return fmt.Errorf("cluster: group %d: cannot read its membership: %w", id, err)
			}
			for _, v := range slices.Concat(cs.GetVoters(), cs.GetLearners(), cs.GetVotersOutgoing()) {
				if addrs[v] == "" && m.addrs[v].RaftAddr == "" {
					return fmt.Errorf("cluster: group %d has node %d as a member, which is not among the peers", id, v)
				}
			}
			if len(cs.GetVoters()) > 0 && !isMember(cs, n.id) {
				if !slices.Contains(m.removed, n.id) {
					return fmt.Errorf("cluster: group %d has members %v and never had node %d: %w", id, slices.Concat(cs.GetVoters(), cs.GetLearners()), n.id, ErrForeignStore)
				}
				removed++
			}
			continue
		}
		if n.cfg.Join {
			// A node joining waits for a leader to add it and send it the
			// group's log (M6).
			continue
		}
		boot = append(boot, raftlog.Update{
			Group: id,
			Snapshot: &pb.Snapshot{Metadata: &pb.SnapshotMetadata{
				Index: new(uint64(1)), Term: new(uint64(1)), ConfState: &pb.ConfState{Voters: voters},
			}},
			HardState: &pb.HardState{Term: new(uint64(1)), Commit: new(uint64(1))},
		})
	}
	if removed == len(n.cfg.Groups) {
		return ErrRemoved
	}
	if err := n.store.Append(boot); err != nil {
		return fmt.Errorf("cluster: cannot create %d groups: %w", len(boot), err)
	}
	return nil
}

// startGroup starts the RawNode of group id from what the store holds.
// The state machine is in memory and starts empty, so raft hands over
// every committed entry after the log's snapshot again (N5).
func (n *Node) startGroup(id uint64) (*group, error) {
	st := n.store.Group(id)
	snap, err := st.Snapshot()
	if err != nil {
		return nil, fmt.Errorf("cluster: group %d: cannot read its snapshot: %w", id, err)
	}
	applied, err := n.startApplied(st, snap.GetMetadata().GetIndex())
	if err != nil {
		return nil, fmt.Errorf("cluster: group %d: %w", id, err)
	}
	appliedTerm, err := st.Term(applied)
	if err != nil {
		return nil, fmt.Errorf("cluster: group %d: term of the applied entry %d: %w", id, applied, err)
	}
	storage := &groupStorage{Group: st, n: n}
	logger := n.cfg.Logger
	if logger == nil {
		logger = quietLogger
	}
	rn, err := raft.NewRawNode(&raft.Config{
		ID:                        n.id,
		ElectionTick:              n.cfg.ElectionTicks,
		HeartbeatTick:             n.cfg.HeartbeatTicks,
		Storage:                   storage,
		Applied:                   applied,
		MaxSizePerMsg:             raftMsgBytesMax,
		MaxCommittedSizePerReady:  raftCommittedBytesMax,
		MaxUncommittedEntriesSize: raftUncommittedBytesMax,
		MaxInflightMsgs:           raftInflightMsgsMax,
		CheckQuorum:               true,
		PreVote:                   true,
		// Proposals enter the log only through Propose on the leader; an
		// edge forwards a write to the leader itself (NotLeaderError).
		DisableProposalForwarding: true,
		// A leader that removed itself hands the group on (M5).
		StepDownOnRemoval: true,
		Logger:            logger,
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: group %d: %w", id, err)
	}
	g := &group{id: id, rn: rn, pending: map[uint64]*proposal{}, applied: applied, appliedTerm: appliedTerm}
	bs := rn.BasicStatus()
	g.state, g.storedTerm, g.storedVote = bs.RaftState, bs.GetTerm(), bs.GetVote()
	storage.g = g
	g.term.Store(rn.Status().GetTerm())
	if g.ms, err = n.loadMembership(st); err != nil {
		return nil, fmt.Errorf("cluster: group %d: cannot read its membership: %w", id, err)
	}
	g.members.Store(new(g.ms.members()))
	return g, nil
}

// Propose proposes data to group and returns once the entry is committed
// and applied on this node, with the Result the state machine set (N1).
// Only the group's leader takes proposals: elsewhere it returns a
// *NotLeaderError naming the leader, so that the caller can forward.
//
// An error from Propose is definite — the data is not and will never be
// applied — but for three: the caller's ctx ended (its error is
// returned), ErrStopped, and ErrTooManyProposals is definite too. After
// ctx's end or ErrStopped the data may still be applied (N2).
func (n *Node) Propose(ctx context.Context, group uint64, data []byte) (any, error) {
	g := n.byID[group]
	if g == nil {
		return nil, fmt.Errorf("%w: %d", ErrUnknownGroup, group)
	}
	if len(data) > n.cfg.ProposalBytesMax {
		return nil, fmt.Errorf("%w: %d bytes, the limit is %d", ErrProposalTooLarge, len(data), n.cfg.ProposalBytesMax)
	}
	id := proposalID{node: n.id, seq: n.seq.Add(1)}
	p := &proposal{
		ctx: ctx, group: g, id: id,
		data: appendEntryData(make([]byte, 0, entryHeaderBytes+len(data)), id, data),
		done: make(chan outcome, 1),
	}
	if n.testEntryVersion != 0 {
		p.data[0] = n.testEntryVersion
	}
	return n.submit(ctx, p)
}

// submit hands p to the loop and waits for its outcome.
func (n *Node) submit(ctx context.Context, p *proposal) (any, error) {
	select {
	case n.propc <- p:
	case <-n.done:
		return nil, n.stopped()
	case <-ctx.Done():
		return nil, ctx.Err()
	default:
		n.stats.proposalsFailed.Add(1)
		return nil, fmt.Errorf("%w: %d queued", ErrTooManyProposals, cap(n.propc))
	}
	select {
	case o := <-p.done:
		return o.result, o.err
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-n.done:
		// The loop finished every proposal it held before it closed done.
		select {
		case o := <-p.done:
			return o.result, o.err
		default:
			return nil, n.stopped()
		}
	}
}

// stopped is the error of a proposal cut short by the end of the loop.
func (n *Node) stopped() error {
	if n.err == nil || errors.Is(n.err, ErrStopped) {
		return ErrStopped
	}
	return fmt.Errorf("%w: %w", ErrStopped, n.err)
}

// Leader returns the leader of group as this node last learned it, 0 if
// none is known or the group is not hosted here.
func (n *Node) Leader(group uint64) uint64 {
	if g := n.byID[group]; g != nil {
		return g.leader.Load()
	}
	return 0
}

// Status returns the leader of group as this node last learned it (0:
// none known, or the node's loop has ended) and the group's term as this
// node last stored it. A node
// that reads itself as leader at term t is leader in t or was until a
// moment ago; what it proposes lands in t or is dropped (N2).
func (n *Node) Status(group uint64) (leader, term uint64) {
	if g := n.byID[group]; g != nil {
		if n.Err() == nil {
			leader = g.leader.Load()
		}
		return leader, g.term.Load()
	}
	return 0, 0
}

// TransferLeadership asks the leader of group, if it is this node, to hand
// leadership to node to (raft's leadership transfer), to spread leaders
// over the nodes. It returns once the loop has passed on the request; the
// transfer completes, or not, later (Leader tells).
func (n *Node) TransferLeadership(ctx context.Context, group, to uint64) error {
	g := n.byID[group]
	if g == nil {
		return fmt.Errorf("%w: %d", ErrUnknownGroup, group)
	}
	select {
	case n.ctlc <- func() { g.rn.TransferLeader(to) }:
		return nil
	case <-n.done:
		return n.stopped()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Stats returns a snapshot of the counters.
func (n *Node) Stats() Stats {
	s := &n.stats
	return Stats{
		Appends: s.appends.Load(), GroupReadys: s.groupReadys.Load(), EntriesApplied: s.entriesApplied.Load(),
		ProposalsApplied: s.proposalsApplied.Load(), ProposalsFailed: s.proposalsFailed.Load(),
		InboxDropped: s.inboxDropped.Load(), StepsRefused: s.stepsRefused.Load(),
		Compactions: s.compactions.Load(), SnapshotsSent: s.snapshotsSent.Load(), SnapshotsInstalled: s.snapshotsInstalled.Load(),
		Transport: n.tr.Stats(),
	}
}

// Transport returns the node's transport (tests install its Filter).
func (n *Node) Transport() *Transport { return n.tr }

// Err returns why the loop ended: nil while it runs, ErrStopped after
// Close, or the failure that stopped it (a failed Append, a failed
// Apply, an entry it cannot read).
func (n *Node) Err() error {
	select {
	case <-n.ended:
		return n.err
	default:
		return nil
	}
}

// LastHeard returns when a frame with messages from peer last arrived,
// zero if none has since NewNode: a peer that answers the groups' traffic
// is up and reachable.
func (n *Node) LastHeard(peer uint64) time.Time {
	if h := (*n.heardp.Load())[peer]; h != nil {
		if ns := h.Load(); ns != 0 {
			return time.Unix(0, ns)
		}
	}
	return time.Time{}
}

// Done is closed when the loop has ended (Err says why).
func (n *Node) Done() <-chan struct{} { return n.ended }

// Close stops the loop, fails the proposals it holds with ErrStopped, and
// closes the transport. It returns the failure that stopped the loop
// before Close, if one did. The store is the caller's to close after.
func (n *Node) Close() error {
	n.stop.Do(func() { close(n.stopc) })
	<-n.done
	if n.tick != nil {
		n.tick.Stop()
	}
	err := n.tr.Close()
	n.snapWG.Wait() // the streams fail with the transport's connections
	if n.err != nil && !errors.Is(n.err, ErrStopped) {
		err = errors.Join(n.err, err)
	}
	return err
}

// receive is the transport's Handler: it queues a frame's messages for
// the loop, or drops them when the inbox is full (raft resends).
func (n *Node) receive(from uint64, msgs []GroupMessage) {
	if h := (*n.heardp.Load())[from]; h != nil {
		h.Store(time.Now().UnixNano())
	}
	select {
	case n.recvc <- inbound{from: from, msgs: msgs}:
	default:
		n.stats.inboxDropped.Add(1)
	}
}

// run is the loop's goroutine.
func (n *Node) run() {
	n.err = n.loop()
	close(n.ended)
	n.failAll(n.stopped())
	close(n.done)
}

// loop drives every group until Close or a failure: it waits for an
// event, takes what else has arrived, proposes, and handles the groups'
// Readys as one batch. A turn that leaves a group with a Ready goes round
// again without waiting.
func (n *Node) loop() error {
	for {
		if err := n.refusedErr(); err != nil {
			return err
		}
		if !n.hasReady() {
			select {
			case <-n.ticks:
				n.tickAll()
			case in := <-n.recvc:
				n.step(in)
			case p := <-n.propc:
				n.queued = append(n.queued, p)
			case f := <-n.ctlc:
				f()
			case <-n.stopc:
				return ErrStopped
			}
		}
		if stopping := n.drain(); stopping {
			return ErrStopped
		}
		n.propose()
		err := n.handleReady()
		for _, g := range n.streamed {
			g.receiving.Store(false)
		}
		clear(n.streamed)
		n.streamed = n.streamed[:0]
		if err != nil {
			return err
		}
	}
}

// hasReady reports whether a group has a Ready.
func (n *Node) hasReady() bool {
	for _, g := range n.groups {
		if g.rn.HasReady() {
			return true
		}
	}
	return false
}

// drain takes the events that have arrived, at most drainEventsMax; true
// if the node is closing.
func (n *Node) drain() bool {
	for range drainEventsMax {
		select {
		case <-n.ticks:
			n.tickAll()
		case in := <-n.recvc:
			n.step(in)
		case p := <-n.propc:
			n.queued = append(n.queued, p)
		case f := <-n.ctlc:
			f()
		case <-n.stopc:
			return true
		default:
			return false
		}
	}
	return false
}

func (n *Node) tickAll() {
	for _, g := range n.groups {
		g.rn.Tick()
	}
}

// step hands a frame's messages to their groups' RawNodes. A proposal from
// a peer is refused: proposals enter only through Propose on the leader.
func (n *Node) step(in inbound) {
	for _, gm := range in.msgs {
		g := n.byID[gm.Group]
		if g == nil || gm.Message.GetType() == pb.MessageType_MsgProp {
			n.stats.stepsRefused.Add(1)
			continue
		}
		if gm.Message.GetType() == pb.MessageType_MsgSnap && n.snapshotter != nil {
			if !in.snapshot {
				// Its state was not streamed: there is nothing to install.
				n.stats.stepsRefused.Add(1)
				continue
			}
			n.streamed = append(n.streamed, g)
		}
		// raft refuses a response from a node that is not a member
		// and local messages; a stale message is taken and ignored.
		if err := g.rn.Step(gm.Message); err != nil {
			n.stats.stepsRefused.Add(1)
		}
	}
}

// propose hands the queued proposals to their groups' RawNodes. One that
// raft takes is appended to the leader's log at once, so it appears in
// this turn's Ready, where handleReady finds it.
func (n *Node) propose() {
	for i, p := range n.queued {
		n.queued[i] = nil
		if err := p.ctx.Err(); err != nil {
			n.fail(p, err)
			continue
		}
		if n.pending >= n.cfg.ProposalsPendingMax {
			n.fail(p, fmt.Errorf("%w: %d pending", ErrTooManyProposals, n.pending))
			continue
		}
		var err error
		if p.change != nil {
			if err := n.checkChange(p.group, p.change); err != nil {
				n.fail(p, err)
				continue
			}
			err = p.group.rn.ProposeConfChange(p.cc)
		} else {
			err = p.group.rn.Propose(p.data)
		}
		if err != nil {
			if st := p.group.rn.BasicStatus(); st.RaftState != raft.StateLeader {
				n.fail(p, &NotLeaderError{Group: p.group.id, Leader: st.Lead})
			} else {
				n.fail(p, fmt.Errorf("%w: %w", ErrProposalDropped, err))
			}
			continue
		}
		n.proposing[p.id] = p
		n.pending++
	}
	n.queued = n.queued[:0]
}

// handleReady handles the Ready of every group that has one: stores them
// all with one Append (N3, N4), then sends their messages, applies their
// committed entries and advances each.
func (n *Node) handleReady() error {
	n.updates, n.readys = n.updates[:0], n.readys[:0]
	for _, g := range n.groups {
		if !g.rn.HasReady() {
			continue
		}
		g.rd = g.rn.Ready()
		u := raftlog.Update{Group: g.id, Entries: g.rd.Entries, HardState: g.rd.HardState}
		if !raft.IsEmptySnap(g.rd.Snapshot) {
			if n.snapshotter != nil {
				// The state first, then the log that records it (S4).
				if err := n.installSnapshot(g); err != nil {
					return err
				}
				n.snapshotMembership(g, g.rd.Snapshot)
			} else if err := n.takeSnapshot(g); err != nil {
				return err
			}
			u.Snapshot = g.rd.Snapshot
		}
		n.readys = append(n.readys, g)
		n.updates = append(n.updates, u)
		if len(n.proposing) > 0 {
			n.place(g)
		}
	}
	// A proposal raft took is in its group's Ready; one that is not was
	// cut from the log before it was written, and is gone.
	for id, p := range n.proposing {
		delete(n.proposing, id)
		n.pending--
		n.fail(p, fmt.Errorf("%w: cut from the log before it was written", ErrProposalDropped))
	}
	if len(n.readys) == 0 {
		return nil
	}
	// A leader's appends go to its followers while it stores them (N3).
	for _, g := range n.readys {
		if g.sendsEarly() {
			n.send(g)
			g.rd.Messages = nil
		}
	}
	if err := n.store.Append(n.updates); err != nil {
		return fmt.Errorf("cluster: cannot store the Readys of %d groups: %w", len(n.updates), err)
	}
	clear(n.updates) // drop the references to raft's entries
	n.stats.appends.Add(1)
	n.stats.groupReadys.Add(uint64(len(n.readys)))
	for _, g := range n.readys {
		if hs := g.rd.HardState; !raft.IsEmptyHardState(hs) {
			g.storedTerm, g.storedVote = hs.GetTerm(), hs.GetVote()
		}
		if ss := g.rd.SoftState; ss != nil {
			g.state = ss.RaftState
		}
		n.send(g)
	}
	n.closeOutSnapshots()
	for _, g := range n.readys {
		if !raft.IsEmptyHardState(g.rd.HardState) {
			g.term.Store(g.rd.HardState.GetTerm())
		}
		if ss := g.rd.SoftState; ss != nil {
			g.leader.Store(ss.Lead)
		}
		if err := n.apply(g); err != nil {
			return err
		}
		n.answerReads(g)
	}
	if err := n.storeMembership(); err != nil {
		return err
	}
	for _, g := range n.readys {
		g.rn.Advance(g.rd)
		g.rd = raft.Ready{}
	}
	for _, g := range n.readys {
		if err := n.compact(g); err != nil {
			return err
		}
	}
	return nil
}

// sendsEarly reports whether g's Ready may send its messages before its
// entries are stored (N3): g leads, before and after this Ready, and the
// Ready stores no new term or vote. A leader's messages are then appends
// and heartbeats of its own term; raft's thesis (10.2.1) lets a leader
// write its log in parallel with replicating it, since an entry counts as
// committed only once a majority stored it, and the leader counts itself
// only after its own store (raft takes the leader's own acknowledgement
// at Advance). A vote, or anything said in a term not yet stored, waits
// for the store.
func (g *group) sendsEarly() bool {
	if g.state != raft.StateLeader || len(g.rd.Messages) == 0 {
		return false
	}
	if ss := g.rd.SoftState; ss != nil && ss.RaftState != raft.StateLeader {
		return false
	}
	hs := g.rd.HardState
	return raft.IsEmptyHardState(hs) || (hs.GetTerm() == g.storedTerm && hs.GetVote() == g.storedVote)
}

// place finds this turn's proposals among g's new entries and records
// where each landed: it now waits for that index to be applied.
func (n *Node) place(g *group) {
	for _, e := range g.rd.Entries {
		var id proposalID
		var err error
		switch {
		case e.GetType() == pb.EntryType_EntryConfChangeV2:
			_, id, _, err = changeOf(e)
		case e.GetType() != pb.EntryType_EntryNormal || len(e.GetData()) == 0:
			continue
		default:
			id, _, err = decodeEntryData(e.GetData())
		}
		if err != nil || id.node != n.id {
			continue
		}
		p := n.proposing[id]
		if p == nil {
			continue
		}
		if invariantsEnabled && p.change == nil && !slices.Equal(e.GetData(), p.data) {
			panic(fmt.Sprintf("BUG: cluster: group %d: proposal %v found at index %d with other data", g.id, id, e.GetIndex()))
		}
		delete(n.proposing, id)
		p.index, p.term = e.GetIndex(), e.GetTerm()
		p.next = g.pending[p.index]
		g.pending[p.index] = p
	}
}

// send hands g's messages to the transport, after their Ready is stored
// (N3). raft hears of a message the transport could not queue, and of
// every snapshot message's fate.
func (n *Node) send(g *group) {
	for _, m := range g.rd.Messages {
		to := m.GetTo()
		if to == n.id {
			panic(fmt.Sprintf("BUG: cluster: group %d: raft addressed a %v to this node", g.id, m.GetType()))
		}
		if m.GetType() == pb.MessageType_MsgSnap && n.snapshotter != nil {
			n.sendSnapshot(g, m)
			continue
		}
		queued := n.tr.Send(g.id, m)
		if m.GetType() == pb.MessageType_MsgSnap {
			status := raft.SnapshotFinish
			if !queued {
				status = raft.SnapshotFailure
			}
			g.rn.ReportSnapshot(to, status)
		}
		if !queued {
			g.rn.ReportUnreachable(to)
		}
	}
}

// apply applies g's committed entries of this turn to the state machine
// and settles the proposals they decide (N1, N2).
func (n *Node) apply(g *group) error {
	ents := g.rd.CommittedEntries
	if len(ents) == 0 {
		return nil
	}
	n.entries = n.entries[:0]
	for _, e := range ents {
		ce := Entry{Index: e.GetIndex(), Term: e.GetTerm()}
		if invariantsEnabled && ce.Index != g.applied+1+uint64(len(n.entries)) {
			panic(fmt.Sprintf("BUG: cluster: group %d: entry %d committed after %d", g.id, ce.Index, g.applied+uint64(len(n.entries))))
		}
		switch {
		case e.GetType() == pb.EntryType_EntryConfChangeV2:
			// The state machine sees the index, with no data (N5).
			var err error
			if ce.id, err = n.applyChange(g, e); err != nil {
				return err
			}
		case e.GetType() != pb.EntryType_EntryNormal:
			return fmt.Errorf("cluster: group %d: entry %d is a %v: %w", g.id, ce.Index, e.GetType(), ErrUnsupported)
		case len(e.GetData()) > 0:
			var err error
			if ce.id, ce.Data, err = decodeEntryData(e.GetData()); err != nil {
				return fmt.Errorf("cluster: group %d: entry %d: %w", g.id, ce.Index, err)
			}
		}
		n.entries = append(n.entries, ce)
	}
	if err := n.sm.Apply(g.id, n.entries); err != nil {
		return fmt.Errorf("cluster: group %d: cannot apply entries %d..%d: %w", g.id, n.entries[0].Index, lastEntry(n.entries).Index, err)
	}
	n.stats.entriesApplied.Add(uint64(len(n.entries)))
	term := g.appliedTerm
	for i := range n.entries {
		e := &n.entries[i]
		if p := g.pending[e.Index]; p != nil {
			delete(g.pending, e.Index)
			n.settleAt(p, e)
		}
		term = e.Term
	}
	g.applied = lastEntry(n.entries).Index
	if term > g.appliedTerm && len(g.pending) > 0 {
		n.overtaken(g, term)
	}
	g.appliedTerm = term
	clear(n.entries) // drop the references to the data and results
	return nil
}

// lastEntry returns the last entry of es.
func lastEntry(es []Entry) *Entry { return &es[len(es)-1] }

// settleAt settles the chain of proposals placed at e's index, now that e
// is applied there: the one of e's term is e (one leader per term, one
// entry per index in a term); the others lost the index.
func (n *Node) settleAt(p *proposal, e *Entry) {
	for ; p != nil; p = p.next {
		n.pending--
		if p.term != e.Term {
			n.fail(p, fmt.Errorf("%w: index %d holds an entry of term %d, not of term %d", ErrProposalDropped, e.Index, e.Term, p.term))
			continue
		}
		if e.id != p.id {
			panic(fmt.Sprintf("BUG: cluster: group %d: entry %d of term %d is proposal %v, this node placed %v there", p.group.id, e.Index, e.Term, e.id, p.id))
		}
		n.stats.proposalsApplied.Add(1)
		p.finish(e.Result, nil)
	}
}

// overtaken fails g's pending proposals of a term below term, now that an
// entry of term is applied before their index: every entry committed
// after it has a term of at least term (log terms never fall), so theirs
// can never be (N2).
func (n *Node) overtaken(g *group, term uint64) {
	for i, p := range g.pending {
		var keep *proposal
		for p != nil {
			next := p.next
			if p.term < term {
				n.pending--
				n.fail(p, fmt.Errorf("%w: an entry of term %d was applied before index %d", ErrProposalDropped, term, p.index))
			} else {
				p.next, keep = keep, p
			}
			p = next
		}
		if keep == nil {
			delete(g.pending, i)
		} else {
			g.pending[i] = keep
		}
	}
}

// fail settles p with err.
func (n *Node) fail(p *proposal, err error) {
	n.stats.proposalsFailed.Add(1)
	p.finish(nil, err)
}

// failAll fails every proposal the loop holds, as it ends.
func (n *Node) failAll(err error) {
	for _, p := range n.queued {
		if p != nil {
			n.fail(p, err)
		}
	}
	n.queued = nil
	for id, p := range n.proposing {
		delete(n.proposing, id)
		n.fail(p, err)
	}
	for _, g := range n.groups {
		for i, p := range g.pending {
			for ; p != nil; p = p.next {
				n.fail(p, err)
			}
			delete(g.pending, i)
		}
	}
	n.pending = 0
	for {
		select {
		case p := <-n.propc:
			n.fail(p, err)
		default:
			return
		}
	}
}
