// Package cluster replicates slotd's state over Raft groups: a Node hosts
// several groups (offices are sharded over them), each a raft.RawNode of
// go.etcd.io/raft/v3, with their logs in one raftlog.Store, their messages
// on one Transport, and their committed entries applied to one
// StateMachine. Raft is the consensus and this package writes none of its
// own: it is what raft leaves its user — the Ready loop, the transport,
// the bootstrap, and the bookkeeping that tells a proposer what became of
// its proposal. The state machine is an interface for now; the allocator,
// made deterministic, will be one (docs/design.md §7).
//
// # The loop
//
// One goroutine drives every group of the node, so that the Readys of all
// groups share one fsync (raftlog's Append):
//
//	loop:
//	  wait for an event — a tick, a frame from a peer, a proposal, a
//	    request — unless a group already has a Ready
//	  take the events that have arrived, at most drainEventsMax:
//	    Tick every group, Step the messages, queue the proposals
//	  Propose the queued proposals on their groups' RawNodes
//	  take the Ready of every group that has one; find this turn's
//	    proposals among its new entries                          (N2)
//	  Append all the Readys: one raftlog batch, one fsync          (N3, N4)
//	  send every group's messages                                  (N3, N6)
//	  apply every group's committed entries; settle the proposals
//	    they decide                                                (N1, N2, N5)
//	  Advance every group
//	  compact the log of each group with enough applied entries   (S1, S2)
//
// Rejected: a goroutine per group (raft.Node, as etcd runs one group),
// which costs an fsync per group per Ready, so that the fsyncs per second
// grow with the groups. Not yet taken: a leader may send its append
// messages before its own write completes (Raft thesis §10.2.1), saving
// it one fsync of latency, and raft's AsyncStorageWrites would let a
// turn's apply overlap the next turn's fsync; both make the simple rule of
// N3 conditional and wait for a measurement that asks for them.
//
// A request run by the loop may be raft's ReadIndex (readindex.go):
// Barrier waits until this node has applied every entry of a group
// committed before the call, the leader having confirmed its commit index
// with a majority, so that a follower's state machine can be read as of
// that instant (a cluster node's backup does).
//
// # Invariants
//
// Tests refer to them as "cluster invariant NN".
//
//	N1. A proposal is acknowledged — Propose returns nil and a result —
//	    only after its entry is committed and applied on this node, and
//	    the result is what the state machine's Apply set for that entry.
//	N2. Propose's errors are definite but three: after ErrNotLeader,
//	    ErrProposalDropped, ErrTooManyProposals, ErrProposalTooLarge or
//	    ErrUnknownGroup the data is not and will never be applied; after
//	    the caller's ctx ended, ErrStopped or ErrSnapshotOvertook (a
//	    snapshot installed here covered its index, S4) it may be. The node
//	    learns where each of its proposals landed, index i and term t, by
//	    the id in its entry's data, in the Ready that appended it, and
//	    settles it when i is applied: applied if the entry there is of
//	    term t (one leader per term, one entry per index in a term),
//	    dropped if not; and dropped as soon as an entry of a term above t
//	    is applied before i, since the terms along a log never fall. So a
//	    proposal lost to a change of leader fails instead of hanging,
//	    once this node applies the new leader's entries.
//	N3. A Ready is on stable storage before any of its messages is sent,
//	    its committed entries applied, or the group advanced — but for a
//	    leader's: a group that leads, before and after the Ready, and
//	    stores no new term or vote in it, sends its appends and heartbeats
//	    while the Append runs (raft thesis 10.2.1: a leader may write its
//	    log in parallel with replicating it; raft counts the leader's own
//	    copy only at Advance, after the Append). A commit then waits for
//	    the slower of the leader's fsync and a follower's, not their sum.
//	    A failed Append stops the node: nothing of that turn is applied,
//	    and nothing but such a leader's messages is sent; the entries they
//	    carried may still commit on the others, as a proposal's outcome is
//	    unknown whenever its leader fails (N2).
//	N4. One Append per turn of the loop, for every group with a Ready:
//	    one Pebble batch and one fsync (raftlog R1), however many groups.
//	N5. Committed entries reach the state machine in log order, each index
//	    once per start, each following the last, but where a snapshot is
//	    installed in their place (S4). A state machine that is a
//	    Snapshotter keeps its state on disk: the node starts each group at
//	    its durable applied index (raft.Config's Applied; S4 says why it
//	    is capped at the log's commit) and raft hands over the committed
//	    entries after it. Another state machine keeps its state in
//	    memory: the node starts each group at its log's snapshot (the
//	    bootstrap's, index 1), and raft hands over every committed entry
//	    again.
//	N6. Messages to a peer arrive in the order the loop sent them, or not
//	    at all: one queue and one writer per peer, one connection at a
//	    time; a peer's new inbound connection hands over nothing until the
//	    reader of its old one has stopped, and an old connection that
//	    speaks up after a newer one of the peer was read is closed unread
//	    (connections are numbered in the order they were accepted, which
//	    is the order the peer dialed them). Nothing is retransmitted:
//	    Raft is safe when messages are lost, repeated or reordered, and
//	    retransmits what matters (heartbeats, probes, appends), so a lost
//	    message costs time, never safety; the order only spares needless
//	    rejections.
//	N7. Every queue is bounded, and a full one drops or refuses instead of
//	    waiting: a peer's outgoing queue (TransportOptions.QueueMessagesMax:
//	    dropped, counted, and raft told the peer is unreachable), the inbox
//	    of frames (Config.InboxFramesMax: dropped, counted), the proposals
//	    (Config.ProposalsPendingMax: ErrTooManyProposals), a proposal's
//	    size (Config.ProposalBytesMax), a frame (4 MiB: a larger message is
//	    dropped and counted), what a leader holds uncommitted (raft's
//	    MaxUncommittedEntriesSize: ErrProposalDropped).
//	N8. Only the loop touches a RawNode, which is not safe for concurrent
//	    use, and the loop marshals the messages (in Transport.Send), as
//	    raft asks: no entry may be written while a message is marshalled.
//	N9. Entries enter a group's log only through Propose on its leader:
//	    raft's forwarding of proposals is off and a proposal from a peer is
//	    refused. An edge forwards a write to the leader NotLeaderError
//	    names.
//
// # Compaction and snapshots
//
// With a state machine that is a Snapshotter (package replica's), a
// group's log does not grow without bound. After each turn, a group
// whose log holds Config.CompactEntriesMin applied entries beyond
// Config.CompactMarginEntries is compacted: the node asks the state
// machine to make its applied state durable (a sync of the group's
// store, whose applies are not synced one by one) and drops the log
// through the durable applied index less the margin. A follower that lags
// by less than the margin catches up from the log; one further behind —
// stopped, cut off, new — gets a snapshot.
//
// Raft asks for a snapshot (raft.Storage's Snapshot) when it decides to
// send one. The node then pins the group's state as of that instant (a
// Pebble snapshot of the group's store) and answers a snapshot at the
// state's applied index whose Data is only a descriptor: the group, the
// index, the term and the descriptor's version. When the message leaves
// the loop, a goroutine of its own dials the peer and streams the
// message and then the state, read from the pinned state in chunks of
// 256 KiB, on a connection of its own (see snapshot.go for its format):
// a state of many megabytes neither waits behind nor holds up the frames,
// whose queues drop when full and whose heartbeats keep the leaderships.
// The peer writes the state into a staging directory of the group's
// store, answers, and only then hands the message to its raft, which
// restores the snapshot; the node installs the staged state (the store is
// replaced in one step) before it stores the Ready that carries the
// snapshot.
//
//	S1. A group's log is compacted only through an index the state
//	    machine reported durably applied (Snapshotter.DurableApplied, which
//	    syncs before it answers), less CompactMarginEntries: after a crash
//	    the state is at or past the compacted index, so every entry it
//	    lacks is still in the log.
//	S2. After a turn, a group's log keeps at most CompactEntriesMin +
//	    CompactMarginEntries applied entries, plus the entries applied as
//	    nothing since the state's last write (an empty entry of a new
//	    leader), plus those not yet applied.
//	S3. A snapshot sent is of the state at its index exactly: raft asks for
//	    it in the loop, where no Apply runs, and the state pinned then is
//	    at the index the snapshot names. The state is never in memory
//	    whole: it is read from the pinned state as the chunks go out, and
//	    written to the staging as they arrive. Raft hears SnapshotFinish
//	    only once the peer answered that the state is staged, else
//	    SnapshotFailure, and probes the peer again.
//	S4. A follower's raft takes a snapshot message only with its state
//	    staged (one that arrives in a frame is refused). The state is
//	    installed before the Ready that carries the snapshot is stored: a
//	    crash between the two leaves the state ahead of the log, which is
//	    harmless — the node starts raft at the lesser of the durable
//	    applied index and the log's commit, and the state machine applies
//	    the entries at or below its applied index as nothing. The reverse
//	    order could leave a log that starts after a state that lacks the
//	    entries between. Proposals of this node at indexes the snapshot
//	    covers fail with ErrSnapshotOvertook: their outcome is unknown.
//	S5. After the install the state machine's applied index is the
//	    snapshot's, and its state is the sender's at that index
//	    (replica's StateDigest equal); an engine of the group on the node
//	    is broken first (replica P4).
//
// # Membership
//
// A group that a node's store does not hold is created (bootstrap) with a
// log that starts after index 1, term 1, whose snapshot names every peer
// of the Config as a voter, as raft recommends over its Bootstrap; every
// node does the same, so their logs agree through index 1. A node that
// lost its data must not come back under its old id: it would bootstrap
// again and could vote twice in a term. Afterwards the members change
// only through raft's conf changes (ChangeMembers), one node at a time:
// a new node is added as a learner, which receives the log without
// counting in any quorum, and promoted to voter once it caught up (as
// etcd does), so that a slow catch-up never costs the group its quorum;
// a node is removed in one change. Rejected: joint consensus for these
// changes — a single change moves a quorum by one node, which raft's
// single-step rule keeps safe, and the admin's "remove 3, add 4" is two
// such changes. A snapshot, with a state machine that is not a Snapshotter,
// stops the node with ErrUnsupported.
//
//	M1. A conf change is applied to raft (ApplyConfChange) when its entry
//	    is applied, in log order with the other entries, and the
//	    group's membership record — raft's ConfState, every member's
//	    addresses and the ids removed — is stored (raftlog R7) before
//	    the group advances; a restart starts raft from it, and the
//	    transport from its addresses, which win over Config.Peers.
//	M2. A change is checked on the leader before raft sees it: it must
//	    move its node one stage up (absent → learner → voter →
//	    removed), and never remove a group's last voter; raft takes one
//	    change at a time (a second one before the first is applied
//	    becomes an empty entry: ErrProposalDropped). So every applied
//	    change is one raft accepts, on every node.
//	M3. A change whose stage raft's configuration already holds is not
//	    applied to raft again: a restart replays the log from its
//	    snapshot over the membership record's newer configuration, and
//	    a joining node the log over the configuration its snapshot
//	    names.
//	M4. An id removed from a group is never added to it again (the
//	    record keeps the removed ids): its old disk could vote twice.
//	M5. A node that applies its own removal from every group stops with
//	    ErrRemoved, and refuses to start on a store whose every group no
//	    longer names it; a leader that removes itself steps down.
//	M6. A node started with Config.Join creates no group: each waits for
//	    its leader to add the node and send it the bootstrap snapshot
//	    (index 1, no data: the empty state), whose ConfState is the
//	    group's current one (raftlog R7, or raft refuses it), then every
//	    entry from index 2. The change's entry carries the node's Raft
//	    and API addresses, so the members learn where it is from the
//	    log, not from flags.
//	M7. A node removed from every group of a peer gets nothing of that
//	    peer's raft: its frames are never handed to raft (RemovePeer),
//	    so it disturbs no group, whatever it sends (every group runs
//	    with PreVote and CheckQuorum besides). Its connection is
//	    answered with a refusal that says it was removed (refusal.go),
//	    and the node stops with ErrRemoved: a node removed while it was
//	    down, which will never apply its removal (no leader sends it
//	    anything), learns it from the first peer it sends to.
//	M8. A node runs only with a configuration that is its groups'. A
//	    store whose groups never had the node's id as a member is
//	    refused at start (ErrForeignStore). A node that created its
//	    groups itself (no Join) but is not one of the cluster's: a peer
//	    that knows it as no member answers its frames "not a member",
//	    and it stops with ErrNotMember if none of its groups' logs went
//	    past index 1 (its own bootstrap; a node that joined, or whose
//	    log went further, may meet a peer that lags behind its addition,
//	    and goes on); and should a leader have added it meanwhile, so
//	    that its log takes the group's from index 2, it stops with
//	    ErrNotMember on applying its own addition while its own
//	    bootstrap named it a voter.
//
// # Transport
//
// Each node dials every peer and writes to it on that one connection;
// it reads the connections its peers dialed. So there is one TCP
// connection per ordered pair of nodes, each carrying one direction, and
// no handshake: every frame names its sender and receiver. The one thing
// a reader ever writes back is a refusal, to a node that is not its peer
// (M7, M8), just before it closes the connection. A writer sends
// in one frame every message queued for its peer, whatever the group, up
// to the frame's limit; an idle writer sends an empty frame (a keepalive)
// so that the reader's idle timeout tells a dead peer from a quiet one. A
// writer that cannot connect waits, doubling the wait up to a cap, and
// meanwhile drops what is sent to the peer (N7).
//
// # Wire and log formats
//
// Changing anything below breaks mixed-version clusters (the frame) or
// existing logs (the entry data): a new layout needs a new version byte
// and a reader that still understands the old one, or refuses it by name.
//
// A frame (BE = big-endian; uvarints are encoding/binary's, in their
// shortest form — a longer one is refused, so a frame has one encoding):
//
//	field        size                  meaning
//	length       4 bytes BE            bytes after this field; the whole
//	                                   frame is at most 4 MiB
//	version      1 byte = 1            a receiver refuses another version,
//	                                   a newer one by name (V2)
//	from         8 bytes BE            the sending node's id
//	to           8 bytes BE            the receiving node's id
//	count        uvarint               messages that follow; 0: keepalive
//	count times:
//	  group      uvarint (≥ 1)         the message's Raft group
//	  size       uvarint               bytes of the message
//	  message    size bytes            raftpb.Message, protobuf; its From
//	                                   and To must be the frame's
//
// A receiver closes the connection on a frame that breaks any of these
// rules (TransportStats.FrameErrors). To a frame from a node that is not
// its peer it first answers, on that connection, a refusal record
// (refusal.go), which the dialer reads:
//
//	field        size                  meaning
//	magic        4 bytes BE            0xFF524546 (0xFF "REF")
//	version      1 byte = 1
//	reason       1 byte                1: removed from every group (M7);
//	                                   2: a member of none (M8)
//
// The data of an entry a proposal adds to a log (raft's own empty
// entries carry no data):
//
//	field        size                  meaning
//	version      1 byte = 1
//	node         8 bytes BE            the proposing node's id
//	seq          8 bytes BE            its number on that node, counted from
//	                                   a random start at each start
//	data         rest                  the proposal's data, for the state
//	                                   machine
//
// # Formats across releases
//
// FormatMax is the cluster format: one number for the frame's version,
// the entry header's version and what the state machine puts inside an
// entry (for slotd, replica's kinds and the records a change stages).
// This release reads and writes format 1. Two releases N and N+1 run in
// one cluster under one rule: a release that brings format F+1 reads F
// and F+1 but writes F until every node runs it and the operator raises
// the cluster's format (a setting of that release); only then does any
// node write F+1. A node of the older release therefore never meets
// F+1 unless that rule was broken, and then it stops by name instead of
// guessing:
//
//	V1. (cmd/slotd) A node refuses to start on a data directory stamped
//	    with a cluster format newer than FormatMax, and on a store whose
//	    own format stamp (wal's) is newer than it reads: exit 1, one line
//	    naming both formats, nothing written.
//	V2. A frame whose version is newer than this release reads is
//	    refused: the connection is closed, the refusal counted
//	    (TransportStats.FramesNewer) and handed, naming the version and
//	    the sender, to TransportOptions.FrameRefused. The version byte
//	    and the two node ids keep their places in every frame version.
//	V3. A committed entry whose header version is newer than this
//	    release reads stops the loop with ErrNewerFormat before the
//	    state machine sees it, and stops every later start on that log
//	    again: it is never applied.
//	V4. (replica) An entry of a kind the state machine does not know
//	    stops the loop the same way (ErrNewerFormat), never applied as
//	    nothing.
package cluster
