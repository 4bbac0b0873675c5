package cluster

// Membership changes: a node is added to a group, promoted, or removed
// through raft's conf changes, one at a time (M1…M8 in the package doc;
// refusal.go tells a node that is no member, M7 and M8).
// The change's entry carries the node's addresses, so that the members and
// where to reach them are replicated data, not flags.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync/atomic"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"slotd/raftlog"
)

// ErrRemoved stops a node that its groups no longer count as a member:
// it applied its own removal, or it starts on a data directory whose
// groups all removed it (M5).
var ErrRemoved = errors.New("cluster: this node was removed from the cluster; its data directory must not be used again (start a new node with a new id and an empty data directory)")

// ErrMemberChange refuses a membership change that the group's current
// configuration does not allow (M2); nothing was proposed.
var ErrMemberChange = errors.New("cluster: membership change refused")

// ChangeOp is what a membership change does to a node.
type ChangeOp int

const (
	// AddLearner adds the node as a learner: it receives the log and
	// votes in nothing, so the group's quorum is unchanged while it
	// catches up.
	AddLearner ChangeOp = iota + 1
	// Promote makes a learner a voter.
	Promote
	// Remove removes the node, voter or learner. Its id is never added
	// again (M4).
	Remove
)

func (o ChangeOp) String() string {
	switch o {
	case AddLearner:
		return "add-learner"
	case Promote:
		return "promote"
	case Remove:
		return "remove"
	}
	return fmt.Sprintf("ChangeOp(%d)", int(o))
}

// MemberChange is one membership change of one group.
type MemberChange struct {
	Op ChangeOp
	// Node is the node changed.
	Node uint64
	// RaftAddr and APIAddr are where the node added takes its peers' Raft
	// traffic and its API requests; required by AddLearner.
	RaftAddr, APIAddr string
}

// Member is a node of a group, as this node last applied its membership.
type Member struct {
	ID uint64
	// RaftAddr and APIAddr are the node's addresses as its change gave
	// them; "" for the members of the bootstrap (the -peers).
	RaftAddr, APIAddr string
	Learner           bool
}

// stage is where a node stands in a group: the stages only go up (M4).
type stage int

const (
	stageAbsent stage = iota
	stageLearner
	stageVoter
	stageRemoved
)

// target is the stage a change of op puts its node in.
func (o ChangeOp) target() stage {
	switch o {
	case AddLearner:
		return stageLearner
	case Promote:
		return stageVoter
	}
	return stageRemoved
}

// membership is a group's members as this node applied them: the loop
// owns it; a copy is published for readers (group.members).
type membership struct {
	// index is the entry of the last conf change applied to raft, or of
	// the snapshot the configuration came from.
	index   uint64
	cs      *pb.ConfState
	addrs   map[uint64]Member // by id: every member, with what is known of its addresses
	removed []uint64          // sorted: every node ever removed (M4)
}

// stageOf is where node id stands in m.
func (m *membership) stageOf(id uint64) stage {
	switch {
	case slices.Contains(m.removed, id):
		return stageRemoved
	case slices.Contains(m.cs.GetVoters(), id):
		return stageVoter
	case slices.Contains(m.cs.GetLearners(), id):
		return stageLearner
	}
	return stageAbsent
}

// isMember reports whether id is a voter or learner of cs.
func isMember(cs *pb.ConfState, id uint64) bool {
	return slices.Contains(cs.GetVoters(), id) || slices.Contains(cs.GetLearners(), id) ||
		slices.Contains(cs.GetVotersOutgoing(), id)
}

// members returns m's members, sorted by id.
func (m *membership) members() []Member {
	var out []Member
	for _, id := range slices.Concat(m.cs.GetVoters(), m.cs.GetLearners()) {
		mb := m.addrs[id]
		mb.ID, mb.Learner = id, slices.Contains(m.cs.GetLearners(), id)
		out = append(out, mb)
	}
	slices.SortFunc(out, func(a, b Member) int { return compareIDs(a.ID, b.ID) })
	return out
}

func compareIDs(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// membersContextVersion is the first byte of the membership record's
// context (raftlog R7): the members' addresses and the removed ids.
const membersContextVersion byte = 1

// appendMembersContext encodes the addresses of m's members and the ids it
// removed:
//
//	version 1 byte = 1
//	count   uvarint, then per member: id uvarint, raft address and API
//	        address each as uvarint length and bytes
//	count   uvarint, then per removed node: id uvarint
func appendMembersContext(dst []byte, m *membership) []byte {
	dst = append(dst, membersContextVersion)
	ms := m.members()
	dst = binary.AppendUvarint(dst, uint64(len(ms)))
	for _, mb := range ms {
		dst = binary.AppendUvarint(dst, mb.ID)
		dst = appendString(dst, mb.RaftAddr)
		dst = appendString(dst, mb.APIAddr)
	}
	dst = binary.AppendUvarint(dst, uint64(len(m.removed)))
	for _, id := range m.removed {
		dst = binary.AppendUvarint(dst, id)
	}
	return dst
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// byteReader reads what appendMembersContext and appendChangeContext
// wrote; its first failure sticks.
type byteReader struct {
	b   []byte
	err error
}

func (r *byteReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = fmt.Errorf("%w: a membership record is truncated", ErrCorruptEntry)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *byteReader) string() string {
	n := r.uvarint()
	if r.err != nil {
		return ""
	}
	if uint64(len(r.b)) < n {
		r.err = fmt.Errorf("%w: a membership record is truncated", ErrCorruptEntry)
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

// decodeMembersContext reads a context of appendMembersContext into m.
func decodeMembersContext(b []byte, m *membership) error {
	if len(b) == 0 || b[0] != membersContextVersion {
		return fmt.Errorf("%w: membership record of an unknown version", ErrCorruptEntry)
	}
	r := &byteReader{b: b[1:]}
	for n := r.uvarint(); n > 0 && r.err == nil; n-- {
		mb := Member{ID: r.uvarint(), RaftAddr: r.string(), APIAddr: r.string()}
		m.addrs[mb.ID] = mb
	}
	for n := r.uvarint(); n > 0 && r.err == nil; n-- {
		m.removed = append(m.removed, r.uvarint())
	}
	slices.Sort(m.removed)
	return r.err
}

// appendChangeContext encodes what a change's entry carries beyond raft's
// change, after the proposal header: the node's two addresses.
func appendChangeContext(dst []byte, c MemberChange) []byte {
	dst = appendString(dst, c.RaftAddr)
	return appendString(dst, c.APIAddr)
}

// loadMembership is group id's membership as the store holds it: the
// ConfState raft will start from (raftlog R7), and the addresses of the
// record, or of the peers for a group that has none yet.
func (n *Node) loadMembership(st *raftlog.Group) (*membership, error) {
	_, cs, err := st.InitialState()
	if err != nil {
		return nil, err
	}
	snap, err := st.Snapshot()
	if err != nil {
		return nil, err
	}
	m := &membership{index: snap.GetMetadata().GetIndex(), cs: cs, addrs: map[uint64]Member{}}
	for _, p := range n.cfg.Peers {
		if isMember(cs, p.ID) {
			m.addrs[p.ID] = Member{ID: p.ID, RaftAddr: p.Addr}
		}
	}
	if rec := st.Membership(); rec != nil {
		m.index = max(m.index, rec.Index)
		if err := decodeMembersContext(rec.Context, m); err != nil {
			return nil, fmt.Errorf("group %d: %w", st.ID(), err)
		}
	}
	return m, nil
}

// Members returns group's members as this node last applied them, sorted
// by id, nil for a group not hosted here.
func (n *Node) Members(group uint64) []Member {
	g := n.byID[group]
	if g == nil {
		return nil
	}
	return slices.Clone(*g.members.Load())
}

// EachVoter calls fn with every voter of group but this node, as this
// node last applied the group's membership; it allocates nothing.
func (n *Node) EachVoter(group uint64, fn func(id uint64)) {
	if g := n.byID[group]; g != nil {
		for _, mb := range *g.members.Load() {
			if !mb.Learner && mb.ID != n.id {
				fn(mb.ID)
			}
		}
	}
}

// MemberAPIAddr returns the API address a membership change gave node id,
// in any group, "" if none did (a node of the bootstrap: its -edges).
func (n *Node) MemberAPIAddr(id uint64) string {
	for _, g := range n.groups {
		for _, mb := range *g.members.Load() {
			if mb.ID == id && mb.APIAddr != "" {
				return mb.APIAddr
			}
		}
	}
	return ""
}

// ChangeMembers proposes change c to group and returns once it is
// applied on this node (as Propose: N1, N2), or refused. Only the group's
// leader takes it (*NotLeaderError otherwise). Raft takes one change at a
// time: a change proposed while another is not yet applied is dropped
// (ErrProposalDropped), and may be asked again.
func (n *Node) ChangeMembers(ctx context.Context, group uint64, c MemberChange) error {
	g := n.byID[group]
	if g == nil {
		return fmt.Errorf("%w: %d", ErrUnknownGroup, group)
	}
	if c.Node == 0 || (c.Op == AddLearner && (c.RaftAddr == "" || c.APIAddr == "")) || c.Op < AddLearner || c.Op > Remove {
		return fmt.Errorf("%w: %v of node %d needs a node id, and to add one its Raft and API addresses", ErrMemberChange, c.Op, c.Node)
	}
	id := proposalID{node: n.id, seq: n.seq.Add(1)}
	typ := map[ChangeOp]pb.ConfChangeType{AddLearner: pb.ConfChangeAddLearnerNode, Promote: pb.ConfChangeAddNode, Remove: pb.ConfChangeRemoveNode}[c.Op]
	cc := &pb.ConfChangeV2{
		Changes: []*pb.ConfChangeSingle{{Type: typ.Enum(), NodeId: new(c.Node)}},
		Context: appendEntryData(nil, id, appendChangeContext(nil, c)),
	}
	p := &proposal{ctx: ctx, group: g, id: id, cc: cc, change: &c, done: make(chan outcome, 1)}
	_, err := n.submit(ctx, p)
	return err
}

// checkChange refuses c unless it moves its node one stage up from where
// the group's configuration has it (M2, M4). Called by the loop before it
// proposes c; raft refuses a change while another is not yet applied, so
// the configuration the change meets at its apply is this one.
func (n *Node) checkChange(g *group, c *MemberChange) error {
	m := g.ms
	st, want := m.stageOf(c.Node), c.Op.target()
	switch {
	case st == stageRemoved:
		return fmt.Errorf("%w: node %d was removed from group %d and its id is never used again", ErrMemberChange, c.Node, g.id)
	case want == stageLearner && st != stageAbsent:
		return fmt.Errorf("%w: node %d is already a member of group %d", ErrMemberChange, c.Node, g.id)
	case want == stageVoter && st != stageLearner:
		return fmt.Errorf("%w: node %d is not a learner of group %d (add it first; a voter stays one)", ErrMemberChange, c.Node, g.id)
	case want == stageRemoved && st == stageAbsent:
		return fmt.Errorf("%w: node %d is not a member of group %d", ErrMemberChange, c.Node, g.id)
	case want == stageRemoved && st == stageVoter && len(m.cs.GetVoters()) <= 1:
		return fmt.Errorf("%w: node %d is group %d's last voter", ErrMemberChange, c.Node, g.id)
	}
	return nil
}

// changeOf decodes the conf change of entry e: raft's change, the
// proposal's id, and the node's addresses.
func changeOf(e *pb.Entry) (*pb.ConfChangeV2, proposalID, MemberChange, error) {
	cc := &pb.ConfChangeV2{}
	if err := proto.Unmarshal(e.GetData(), cc); err != nil || len(cc.GetChanges()) != 1 || cc.GetTransition() != pb.ConfChangeTransitionAuto {
		return nil, proposalID{}, MemberChange{}, fmt.Errorf("%w: entry %d is not a conf change of one node", ErrCorruptEntry, e.GetIndex())
	}
	id, rest, err := decodeEntryData(cc.GetContext())
	if err != nil {
		return nil, proposalID{}, MemberChange{}, err
	}
	r := &byteReader{b: rest}
	ch := cc.GetChanges()[0]
	c := MemberChange{Node: ch.GetNodeId(), RaftAddr: r.string(), APIAddr: r.string()}
	switch ch.GetType() {
	case pb.ConfChangeAddLearnerNode:
		c.Op = AddLearner
	case pb.ConfChangeAddNode:
		c.Op = Promote
	case pb.ConfChangeRemoveNode:
		c.Op = Remove
	default:
		return nil, proposalID{}, MemberChange{}, fmt.Errorf("%w: entry %d is a conf change of type %v", ErrCorruptEntry, e.GetIndex(), ch.GetType())
	}
	return cc, id, c, r.err
}

// applyChange applies the conf change of committed entry e to g: to raft
// unless raft's configuration already holds it (M3), then to the
// members' addresses, the transport, and the membership record stored
// before the group advances (M1). It returns the proposal's id.
func (n *Node) applyChange(g *group, e *pb.Entry) (proposalID, error) {
	cc, id, c, err := changeOf(e)
	if err != nil {
		return proposalID{}, fmt.Errorf("cluster: group %d: %w", g.id, err)
	}
	m := g.ms
	if c.Node == n.id && c.Op == AddLearner && e.GetIndex() > m.index && m.stageOf(n.id) >= stageVoter && !n.cfg.testNoSelfAddCheck {
		// Only a node that created the group itself, with itself a
		// voter, holds that stage before its addition: a joining node
		// starts from a configuration that names it a learner at most
		// (M6), a restart from one newer than the entry (M3). Its
		// configuration is not the group's (M8).
		return proposalID{}, fmt.Errorf("cluster: group %d: entry %d adds this node as a learner, and this node created the group itself with itself as a voter: %w", g.id, e.GetIndex(), ErrNotMember)
	}
	if c.Op.target() > m.stageOf(c.Node) {
		m.cs = g.rn.ApplyConfChange(cc)
	}
	if e.GetIndex() > m.index {
		m.index = e.GetIndex()
	}
	switch c.Op {
	case AddLearner:
		m.addrs[c.Node] = Member{ID: c.Node, RaftAddr: c.RaftAddr, APIAddr: c.APIAddr}
	case Remove:
		delete(m.addrs, c.Node)
		if !slices.Contains(m.removed, c.Node) {
			m.removed = append(m.removed, c.Node)
			slices.Sort(m.removed)
		}
	}
	// The whole membership after the change; members() drops the
	// addresses of nodes no longer in the ConfState.
	g.members.Store(new(m.members()))
	n.syncPeers()
	u := raftlog.Update{Group: g.id, Membership: &raftlog.Membership{
		Index: m.index, ConfState: proto.Clone(m.cs).(*pb.ConfState), Context: appendMembersContext(nil, m),
	}}
	// Several changes of a group in one turn: the last one's record.
	if i := slices.IndexFunc(n.memberUpdates, func(u raftlog.Update) bool { return u.Group == g.id }); i >= 0 {
		n.memberUpdates[i] = u
	} else {
		n.memberUpdates = append(n.memberUpdates, u)
	}
	if !isMember(m.cs, n.id) && c.Node == n.id {
		g.removed = true
	}
	return id, nil
}

// syncPeers makes the transport's peers the members of every group with
// a known Raft address, and the Config's peers: a node added is dialled,
// one removed from every group forgotten.
func (n *Node) syncPeers() {
	want := map[uint64]string{}
	for _, p := range n.cfg.Peers {
		want[p.ID] = p.Addr
	}
	removed := map[uint64]bool{}
	for _, g := range n.groups {
		for _, id := range g.ms.removed {
			removed[id] = true
		}
		for _, mb := range *g.members.Load() {
			if mb.RaftAddr != "" {
				want[mb.ID] = mb.RaftAddr
			}
		}
	}
	heard := *n.heardp.Load()
	for id, addr := range want {
		if id != n.id && !removed[id] {
			_ = n.tr.SetPeer(id, addr)
			if heard[id] == nil {
				heard = maps.Clone(heard)
				heard[id] = new(atomic.Int64)
				n.heardp.Store(&heard)
			}
		}
	}
	for id := range removed {
		still := false
		for _, g := range n.groups {
			still = still || isMember(g.ms.cs, id)
		}
		if !still {
			n.tr.RemovePeer(id)
		}
	}
}

// storeMembership stores the membership records of this turn's changes
// (M1), before any group of the turn advances.
func (n *Node) storeMembership() error {
	if len(n.memberUpdates) == 0 {
		return nil
	}
	err := n.store.Append(n.memberUpdates)
	clear(n.memberUpdates)
	n.memberUpdates = n.memberUpdates[:0]
	if err != nil {
		return fmt.Errorf("cluster: cannot store the membership: %w", err)
	}
	for _, g := range n.groups {
		if !g.removed {
			return nil
		}
	}
	return ErrRemoved
}

// bootstrapSnapshot reports whether snap is a group's bootstrap snapshot
// as a leader sends it to a node it added: index 1, term 1, no data — the
// state machine's empty state, which a node joining takes as it is (M6).
func bootstrapSnapshot(snap *pb.Snapshot) bool {
	md := snap.GetMetadata()
	return md.GetIndex() == 1 && md.GetTerm() == 1 && len(snap.GetData()) == 0
}

// takeSnapshot takes g's Ready's snapshot, which only a joining node
// accepts, the bootstrap's (M6): the group's configuration is the
// snapshot's.
func (n *Node) takeSnapshot(g *group) error {
	snap := g.rd.Snapshot
	if !bootstrapSnapshot(snap) {
		return fmt.Errorf("cluster: group %d: a snapshot at index %d arrived: %w", g.id, snap.GetMetadata().GetIndex(), ErrUnsupported)
	}
	n.snapshotMembership(g, snap)
	g.applied, g.appliedTerm = 1, 1
	return nil
}

// snapshotMembership makes the ConfState of snap, which raft restored,
// g's membership; the addresses of its members are the Config's peers'
// where no change gave them. Whoever installs a snapshot calls it
// (the Ready's Update stores the snapshot, which raftlog R7 reads the
// ConfState from).
func (n *Node) snapshotMembership(g *group, snap *pb.Snapshot) {
	m := g.ms
	m.cs = proto.Clone(pb.EnsureConfState(snap.GetMetadata().GetConfState())).(*pb.ConfState)
	m.index = max(m.index, snap.GetMetadata().GetIndex())
	for _, p := range n.cfg.Peers {
		if _, known := m.addrs[p.ID]; !known && isMember(m.cs, p.ID) {
			m.addrs[p.ID] = Member{ID: p.ID, RaftAddr: p.Addr}
		}
	}
	g.members.Store(new(m.members()))
	n.syncPeers()
}
