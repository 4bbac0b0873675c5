package cluster

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"time"

	"go.etcd.io/raft/v3"
)

// Defaults for zero Config fields.
const (
	DefaultTickInterval        = 100 * time.Millisecond
	DefaultElectionTicks       = 10
	DefaultHeartbeatTicks      = 1
	DefaultProposalBytesMax    = 64 << 10
	DefaultProposalsPendingMax = 4096
	DefaultInboxFramesMax      = 1024

	// proposalBytesLimit bounds ProposalBytesMax: an append message of
	// raftMsgBytesMax plus one entry of it must fit in a frame.
	proposalBytesLimit = 3 << 20
	// proposalsPendingLimit and inboxFramesLimit bound their settings.
	proposalsPendingLimit = 1 << 20
	inboxFramesLimit      = 1 << 16
)

// What the node asks of raft for every group (raft.Config); the frame size
// (frameBytesMax) is chosen to hold raftMsgBytesMax plus one proposal.
const (
	// raftMsgBytesMax bounds the entries of one append message, but for
	// its first entry, which raft sends whatever its size.
	raftMsgBytesMax = 256 << 10
	// raftCommittedBytesMax bounds the committed entries of one Ready, so
	// one apply call of a group is bounded.
	raftCommittedBytesMax = 4 << 20
	// raftUncommittedBytesMax bounds what a leader has proposed and not yet
	// committed: beyond it raft drops proposals (ErrProposalDropped).
	raftUncommittedBytesMax = 16 << 20
	// raftInflightMsgsMax bounds the append messages in flight to one
	// follower of one group.
	raftInflightMsgsMax = 256
)

// Peer is one node of the cluster.
type Peer struct {
	// ID is the node's id: not zero, unique in the cluster, and never
	// reused by a node that lost its data (it would vote twice).
	ID uint64
	// Addr is the host:port the node's transport accepts peers on.
	Addr string
}

// Config configures a Node. Zero fields take the default their comment
// names, but ID, Peers and Groups, which are required.
type Config struct {
	// ID is this node's id, one of Peers.
	ID uint64
	// Peers are the nodes of the cluster, this one included; every node
	// is given the same list. Membership is static for now: a group
	// created on a node's disk for the first time (bootstrap) has every
	// peer as a voter. Afterwards the membership is what the group's log
	// holds, and Peers gives only the addresses: NewNode refuses a group
	// with a voter that is not among them.
	Peers []Peer
	// Groups are the Raft groups the node hosts, by id (from 1); every
	// node of the cluster is given the same list.
	Groups []uint64
	// Join starts a node that is to be added to the cluster (M6): a group
	// its store does not hold is not created, but waits for the group's
	// leader, once a membership change added this node, to send it the
	// group's log. Peers then names the nodes it is to join, and itself.
	// A node the cluster was not started with that starts without Join
	// creates groups of its own, and stops with ErrNotMember once a peer
	// refuses it (M8).
	Join bool
	// Listener, unless nil, is where the transport accepts peers;
	// otherwise the node listens on its own Peer address. The node owns it
	// from NewNode on. Tests pass a listener bound to port 0.
	Listener net.Listener

	// TickInterval is the duration of one Raft tick, the unit of the two
	// timeouts below. Zero means DefaultTickInterval (100 ms). Not used
	// when Ticks is set.
	TickInterval time.Duration
	// Ticks, unless nil, drives the clock instead of TickInterval: one
	// tick of every group per value received. Tests drive time with it.
	Ticks <-chan time.Time
	// ElectionTicks is how many ticks a follower waits to hear from its
	// leader before it campaigns (raft's ElectionTick; raft draws each
	// wait from [ElectionTicks, 2×ElectionTicks)); a leader that has not
	// heard from a quorum for as long steps down (CheckQuorum). Zero means
	// DefaultElectionTicks (10).
	ElectionTicks int
	// HeartbeatTicks is how many ticks pass between a leader's heartbeats;
	// it must be less than ElectionTicks. Zero means DefaultHeartbeatTicks
	// (1).
	HeartbeatTicks int

	// ProposalBytesMax bounds the data of one proposal, in bytes
	// (ErrProposalTooLarge). Zero means DefaultProposalBytesMax (64 KiB);
	// at most 3 MiB.
	ProposalBytesMax int
	// ProposalsPendingMax bounds the proposals of this node not yet
	// applied or failed, queued or in the log; beyond it Propose returns
	// ErrTooManyProposals. A proposal whose caller gave up still counts
	// until its index is applied or overtaken. Zero means
	// DefaultProposalsPendingMax (4096).
	ProposalsPendingMax int
	// InboxFramesMax bounds the frames received from peers and not yet
	// handed to raft; a frame beyond it is dropped and counted
	// (Stats.InboxDropped). Zero means DefaultInboxFramesMax (1024).
	InboxFramesMax int

	// CompactEntriesMin is how many applied entries a group's log holds
	// beyond CompactMarginEntries before the node compacts it, in
	// entries: then it makes the state machine's applied state durable
	// (one sync of the group's store) and drops the entries through the
	// durable applied index less the margin (S1, S2). So a log keeps at
	// most CompactEntriesMin + CompactMarginEntries applied entries, and
	// a group's store is synced once per CompactEntriesMin entries. Zero
	// means DefaultCompactEntriesMin (10000); negative never compacts.
	// Only with a state machine that is a Snapshotter.
	CompactEntriesMin int
	// CompactMarginEntries is how many durably applied entries a
	// compaction keeps, so that a follower that lags by fewer catches up
	// from the log (cheaper than a snapshot), in entries. Zero means
	// DefaultCompactMarginEntries (10000); negative keeps none.
	CompactMarginEntries int

	// Transport tunes the connections to peers.
	Transport TransportOptions
	// Logger receives raft's messages: elections, leader changes, refused
	// messages. Nil means none (raft's panics still panic).
	Logger raft.Logger

	// testNoSelfAddCheck skips the check that stops a node applying its
	// own addition while its own bootstrap named it a voter: the broken
	// variant of M8 that this package's tests show failing.
	testNoSelfAddCheck bool
}

// validate returns the first problem with c, in words a user can act on.
func (c *Config) validate() error {
	if c.ID == 0 {
		return errors.New("cluster: ID is 0; a node needs a non-zero id")
	}
	ids, addrs := map[uint64]bool{}, map[string]bool{}
	for _, p := range c.Peers {
		switch {
		case p.ID == 0:
			return fmt.Errorf("cluster: peer at %q has id 0; ids start at 1", p.Addr)
		case ids[p.ID]:
			return fmt.Errorf("cluster: peer id %d is listed twice", p.ID)
		case p.Addr == "":
			return fmt.Errorf("cluster: peer %d has no address", p.ID)
		case addrs[p.Addr]:
			return fmt.Errorf("cluster: address %s is listed for two peers", p.Addr)
		}
		ids[p.ID], addrs[p.Addr] = true, true
	}
	if !ids[c.ID] {
		return fmt.Errorf("cluster: this node's id %d is not among the %d peers", c.ID, len(c.Peers))
	}
	if len(c.Groups) == 0 {
		return errors.New("cluster: no groups; a node hosts at least one")
	}
	groups := slices.Clone(c.Groups)
	slices.Sort(groups)
	if groups[0] == 0 {
		return errors.New("cluster: group id 0 is reserved; groups are numbered from 1")
	}
	for i := 1; i < len(groups); i++ {
		if groups[i] == groups[i-1] {
			return fmt.Errorf("cluster: group %d is listed twice", groups[i])
		}
	}
	d := c.withDefaults()
	switch {
	case c.TickInterval < 0:
		return fmt.Errorf("cluster: TickInterval %s is negative; use 0 for the default of %s", c.TickInterval, DefaultTickInterval)
	case c.ElectionTicks < 0 || c.HeartbeatTicks < 0:
		return fmt.Errorf("cluster: ElectionTicks %d and HeartbeatTicks %d must not be negative", c.ElectionTicks, c.HeartbeatTicks)
	case d.HeartbeatTicks >= d.ElectionTicks:
		return fmt.Errorf("cluster: HeartbeatTicks %d must be less than ElectionTicks %d", d.HeartbeatTicks, d.ElectionTicks)
	case c.ProposalBytesMax < 0 || c.ProposalBytesMax > proposalBytesLimit:
		return fmt.Errorf("cluster: ProposalBytesMax %d must be in 0..%d (0 means %d)", c.ProposalBytesMax, proposalBytesLimit, DefaultProposalBytesMax)
	case c.ProposalsPendingMax < 0 || c.ProposalsPendingMax > proposalsPendingLimit:
		return fmt.Errorf("cluster: ProposalsPendingMax %d must be in 0..%d (0 means %d)", c.ProposalsPendingMax, proposalsPendingLimit, DefaultProposalsPendingMax)
	case c.InboxFramesMax < 0 || c.InboxFramesMax > inboxFramesLimit:
		return fmt.Errorf("cluster: InboxFramesMax %d must be in 0..%d (0 means %d)", c.InboxFramesMax, inboxFramesLimit, DefaultInboxFramesMax)
	}
	return c.Transport.validate()
}

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	if c.TickInterval == 0 {
		c.TickInterval = DefaultTickInterval
	}
	def(&c.ElectionTicks, DefaultElectionTicks)
	def(&c.HeartbeatTicks, DefaultHeartbeatTicks)
	def(&c.ProposalBytesMax, DefaultProposalBytesMax)
	def(&c.ProposalsPendingMax, DefaultProposalsPendingMax)
	def(&c.InboxFramesMax, DefaultInboxFramesMax)
	def(&c.CompactEntriesMin, DefaultCompactEntriesMin)
	def(&c.CompactMarginEntries, DefaultCompactMarginEntries)
	c.Transport = c.Transport.withDefaults()
	return c
}

// peerAddrs returns the peers' addresses by id.
func (c *Config) peerAddrs() map[uint64]string {
	m := make(map[uint64]string, len(c.Peers))
	for _, p := range c.Peers {
		m[p.ID] = p.Addr
	}
	return m
}
