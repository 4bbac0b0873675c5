package cluster

// Log compaction and snapshots: how a group's log stays bounded, and how a
// replica behind the compacted log gets the group's state instead (the
// package doc's "Compaction and snapshots", invariants S1…S5).

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"slotd/raftlog"
)

// ErrSnapshotOvertook fails a proposal whose index a snapshot installed
// on this node covered: the snapshot holds the group's state through that
// index, but not which entry is there, so the proposal may or may not
// have been applied (like ErrStopped, it is not definite).
var ErrSnapshotOvertook = errors.New("cluster: a snapshot covered the proposal's index; its outcome is unknown")

// Snapshotter is a StateMachine whose state is durable and can be copied
// to another node: with one, the node compacts its groups' logs and sends
// snapshots to replicas behind them. Without one, logs grow and a
// snapshot stops the node (ErrUnsupported).
type Snapshotter interface {
	StateMachine
	// DurableApplied makes group's applied state durable and returns the
	// index it is applied through (entries that change nothing may leave
	// it below the last index Apply was given). Called by the loop.
	DurableApplied(group uint64) (uint64, error)
	// SnapshotState pins group's state as of now. Called by the loop, so
	// no Apply of the group runs meanwhile; the state may be written and
	// closed from another goroutine.
	SnapshotState(group uint64) (SnapshotState, error)
	// StageSnapshot reads a state SnapshotState wrote on another node
	// into a staging area, leaving the group's state alone, and returns
	// the index it is applied through. Called from the transport's
	// goroutines, one at a time per group.
	StageSnapshot(group uint64, r io.Reader) (uint64, error)
	// InstallSnapshot replaces group's state with the one staged at
	// index, atomically: after a crash the state is the old one or the
	// staged one. Called by the loop.
	InstallSnapshot(group, index uint64) error
}

// SnapshotState is one instant of a group's state.
type SnapshotState interface {
	// Index is the index of the last entry the state holds.
	Index() uint64
	// WriteTo writes the state, reading it as it goes.
	WriteTo(w io.Writer) (int64, error)
	// Close releases the state.
	Close() error
}

// Defaults of the compaction's Config fields.
const (
	DefaultCompactEntriesMin    = 10000
	DefaultCompactMarginEntries = 10000
)

// The snapshot descriptor: the Data of a raft snapshot of a group, which
// names the state rather than holding it. A layout that lives in Raft
// logs (raftlog stores a received snapshot's data): a new one needs a new
// version and a reader of the old.
//
//	field        size
//	version      1 byte = 1: the state is streamed beside the message
//	group        uvarint
//	index        uvarint: the state's index, the snapshot's
//	term         uvarint: the term of the entry at index
const snapshotDescriptorVersion = 1

type snapshotDescriptor struct{ group, index, term uint64 }

func appendSnapshotDescriptor(dst []byte, d snapshotDescriptor) []byte {
	dst = append(dst, snapshotDescriptorVersion)
	dst = binary.AppendUvarint(dst, d.group)
	dst = binary.AppendUvarint(dst, d.index)
	return binary.AppendUvarint(dst, d.term)
}

func decodeSnapshotDescriptor(b []byte) (snapshotDescriptor, error) {
	var d snapshotDescriptor
	if len(b) == 0 || b[0] != snapshotDescriptorVersion {
		return d, fmt.Errorf("%w: snapshot descriptor of version %v, this release reads %d", ErrCorruptEntry, b[:min(len(b), 1)], snapshotDescriptorVersion)
	}
	b = b[1:]
	for _, f := range []*uint64{&d.group, &d.index, &d.term} {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return d, fmt.Errorf("%w: snapshot descriptor cut short", ErrCorruptEntry)
		}
		*f, b = v, b[n:]
	}
	if len(b) != 0 {
		return d, fmt.Errorf("%w: snapshot descriptor with %d trailing bytes", ErrCorruptEntry, len(b))
	}
	return d, nil
}

// groupStorage is a group's raft.Storage: its log in the raftlog Store,
// and, with a Snapshotter, snapshots made when raft asks for one.
type groupStorage struct {
	*raftlog.Group
	n *Node
	g *group // set once the group is built; raft asks for no snapshot before
}

// outSnapshot is a state pinned for a snapshot raft asked for this turn,
// until send hands it to the peer it is for.
type outSnapshot struct {
	group, index uint64
	state        SnapshotState
}

// Snapshot implements raft.Storage. With a Snapshotter it pins the
// group's state now (S3) and answers a snapshot at the state's index,
// whose data is only the descriptor; the state itself is streamed to the
// peer when send sees the message. raft calls it from the loop, as it
// decides to send a snapshot.
func (s *groupStorage) Snapshot() (*pb.Snapshot, error) {
	ss := s.n.snapshotter
	if ss == nil || s.g == nil {
		return s.Group.Snapshot()
	}
	state, err := ss.SnapshotState(s.g.id)
	if err != nil {
		s.n.logf("group %d: cannot pin a snapshot of the state: %v", s.g.id, err)
		return nil, raft.ErrSnapshotTemporarilyUnavailable
	}
	index := state.Index()
	term, err := s.Group.Term(index)
	if err != nil {
		// The state is behind the compacted log (S1 broken) or ahead of
		// the log after a crash: no snapshot of it now.
		_ = state.Close()
		s.n.logf("group %d: no snapshot at %d: %v", s.g.id, index, err)
		return nil, raft.ErrSnapshotTemporarilyUnavailable
	}
	_, cs, err := s.Group.InitialState()
	if err != nil {
		_ = state.Close()
		return nil, raft.ErrSnapshotTemporarilyUnavailable
	}
	s.n.outSnaps = append(s.n.outSnaps, outSnapshot{group: s.g.id, index: index, state: state})
	return &pb.Snapshot{
		Data:     appendSnapshotDescriptor(nil, snapshotDescriptor{group: s.g.id, index: index, term: term}),
		Metadata: &pb.SnapshotMetadata{Index: new(index), Term: new(term), ConfState: cs},
	}, nil
}

// logf logs through raft's logger, if the node has one.
func (n *Node) logf(format string, args ...any) {
	if n.cfg.Logger != nil {
		n.cfg.Logger.Warningf(format, args...)
	}
}

// startApplied is where group g's RawNode starts (raft.Config.Applied):
// the state machine's durable applied index, but no further than the
// log's commit (a crash after a snapshot's install and before the log
// recorded it leaves the state ahead: S4), and no lower than the log's
// snapshot.
func (n *Node) startApplied(st *raftlog.Group, snapIndex uint64) (uint64, error) {
	if n.snapshotter == nil {
		return snapIndex, nil
	}
	durable, err := n.snapshotter.DurableApplied(st.ID())
	if err != nil {
		return 0, err
	}
	hs, _, err := st.InitialState()
	if err != nil {
		return 0, err
	}
	applied := max(snapIndex, min(durable, hs.GetCommit()))
	if first, _ := st.FirstIndex(); applied < first-1 {
		return 0, fmt.Errorf("the state is applied through %d, but the log was compacted through %d: the state lost what the log dropped", applied, first-1)
	}
	return applied, nil
}

// compact truncates g's log once it holds CompactEntriesMin applied
// entries beyond the margin: through the state machine's durable applied
// index, less CompactMarginEntries (S1, S2).
func (n *Node) compact(g *group) error {
	if n.snapshotter == nil || n.cfg.CompactEntriesMin < 0 {
		return nil
	}
	st := n.store.Group(g.id)
	first, _ := st.FirstIndex()
	margin := uint64(max(n.cfg.CompactMarginEntries, 0))
	if g.applied < first+uint64(n.cfg.CompactEntriesMin)+margin {
		return nil
	}
	durable, err := n.snapshotter.DurableApplied(g.id)
	if err != nil {
		return fmt.Errorf("cluster: group %d: cannot make the applied state durable: %w", g.id, err)
	}
	if n.testCompactIgnoresDurable.Load() {
		durable = g.applied
	}
	if durable <= margin || durable-margin < first {
		return nil
	}
	to := durable - margin
	if err := n.store.Compact(g.id, to); err != nil && !errors.Is(err, raft.ErrCompacted) {
		return fmt.Errorf("cluster: group %d: cannot compact the log through %d: %w", g.id, to, err)
	}
	n.stats.compactions.Add(1)
	return nil
}

// installSnapshot installs the state of the snapshot in g's Ready before
// the Ready is stored (S4): the state machine replaces its state with the
// one staged for it; the proposals waiting at indexes it covers are told
// their outcome is unknown.
func (n *Node) installSnapshot(g *group) error {
	snap := g.rd.Snapshot
	if n.snapshotter == nil {
		return fmt.Errorf("cluster: group %d: a snapshot at index %d arrived: %w", g.id, snap.GetMetadata().GetIndex(), ErrUnsupported)
	}
	d, err := decodeSnapshotDescriptor(snap.GetData())
	if err != nil {
		return fmt.Errorf("cluster: group %d: %w", g.id, err)
	}
	index, term := snap.GetMetadata().GetIndex(), snap.GetMetadata().GetTerm()
	if d.group != g.id || d.index != index || d.term != term {
		return fmt.Errorf("cluster: group %d: %w: snapshot at %d/%d describes group %d at %d/%d", g.id, ErrCorruptEntry, index, term, d.group, d.index, d.term)
	}
	if err := n.snapshotter.InstallSnapshot(g.id, index); err != nil {
		return fmt.Errorf("cluster: group %d: cannot install the snapshot at %d: %w", g.id, index, err)
	}
	for i, p := range g.pending {
		if i > index {
			continue
		}
		for ; p != nil; p = p.next {
			n.pending--
			n.fail(p, fmt.Errorf("%w: index %d, snapshot at %d", ErrSnapshotOvertook, i, index))
		}
		delete(g.pending, i)
	}
	g.applied, g.appliedTerm = index, term
	g.snapshotIndex.Store(index)
	n.stats.snapshotsInstalled.Add(1)
	return nil
}

// sendSnapshot streams the state raft's snapshot message m names to its
// peer, from a goroutine of its own, and tells raft how it went (S3). m
// is marshalled here, in the loop (N8).
func (n *Node) sendSnapshot(g *group, m *pb.Message) {
	to, index := m.GetTo(), m.GetSnapshot().GetMetadata().GetIndex()
	var state SnapshotState
	for i, o := range n.outSnaps {
		if o.group == g.id && o.index == index && o.state != nil {
			state, n.outSnaps[i].state = o.state, nil
			break
		}
	}
	b, err := proto.Marshal(m)
	if state == nil || err != nil {
		if state != nil {
			_ = state.Close()
		}
		g.rn.ReportSnapshot(to, raft.SnapshotFailure)
		return
	}
	g.snapshotIndex.Store(index)
	n.snapWG.Add(1)
	go func() {
		defer n.snapWG.Done()
		err := n.tr.sendSnapshot(g.id, to, b, state)
		_ = state.Close()
		status := raft.SnapshotFinish
		if err != nil {
			status = raft.SnapshotFailure
			n.logf("group %d: snapshot at %d to node %d: %v", g.id, index, to, err)
		} else {
			n.stats.snapshotsSent.Add(1)
		}
		select {
		case n.ctlc <- func() { g.rn.ReportSnapshot(to, status) }:
		case <-n.ended:
		}
	}()
}

// closeOutSnapshots releases the states pinned this turn that no message
// took.
func (n *Node) closeOutSnapshots() {
	for _, o := range n.outSnaps {
		if o.state != nil {
			_ = o.state.Close()
		}
	}
	clear(n.outSnaps)
	n.outSnaps = n.outSnaps[:0]
}

// receiveSnapshot is the transport's snapshot handler: it stages the state
// streamed from peer from for group, then queues the snapshot message for
// the loop, which installs the state as raft restores the snapshot (S4).
// One stream per group at a time; a message that arrives in a frame is
// refused (step), so raft only restores a snapshot whose state is staged.
func (n *Node) receiveSnapshot(from, group uint64, m *pb.Message, r io.Reader) error {
	g := n.byID[group]
	if g == nil || n.snapshotter == nil {
		return fmt.Errorf("%w: %d", ErrUnknownGroup, group)
	}
	d, err := decodeSnapshotDescriptor(m.GetSnapshot().GetData())
	if err != nil {
		return err
	}
	if d.group != group || d.index != m.GetSnapshot().GetMetadata().GetIndex() {
		return fmt.Errorf("%w: snapshot descriptor of group %d at %d in a message of group %d at %d", ErrCorruptEntry, d.group, d.index, group, m.GetSnapshot().GetMetadata().GetIndex())
	}
	if !g.receiving.CompareAndSwap(false, true) {
		return fmt.Errorf("cluster: group %d: a snapshot is already being received", group)
	}
	index, err := n.snapshotter.StageSnapshot(group, r)
	if err == nil && index != d.index {
		err = fmt.Errorf("cluster: group %d: the streamed state is at %d, the snapshot at %d", group, index, d.index)
	}
	if err != nil {
		g.receiving.Store(false)
		return err
	}
	// receiving is cleared by the loop once it has stepped the message.
	select {
	case n.recvc <- inbound{from: from, msgs: []GroupMessage{{Group: group, Message: m}}, snapshot: true}:
		return nil
	case <-n.ended:
		g.receiving.Store(false)
		return ErrStopped
	}
}

// LogStatus is what a node's log of a group holds.
type LogStatus struct {
	// FirstIndex is the first entry the log keeps (one past the
	// compacted index); LastIndex the last one.
	FirstIndex, LastIndex uint64
	// SnapshotIndex is the index of the last snapshot this node sent or
	// installed for the group since it started, 0 if none.
	SnapshotIndex uint64
}

// LogStatus returns the log status of group (zero for a group the node
// does not host). Safe for concurrent use.
func (n *Node) LogStatus(group uint64) LogStatus {
	g := n.byID[group]
	if g == nil {
		return LogStatus{}
	}
	st := n.store.Group(group)
	first, _ := st.FirstIndex()
	last, _ := st.LastIndex()
	return LogStatus{FirstIndex: first, LastIndex: last, SnapshotIndex: g.snapshotIndex.Load()}
}

// The snapshot stream: a connection of its own to the peer's transport
// listener, dialed per snapshot, so that a state of many megabytes
// neither waits in nor holds up the frame queues, whose messages are
// dropped when full (N7) and whose heartbeats keep the leaderships. The
// stream starts with a magic that no frame's length prefix can hold (it
// is beyond frameBytesMax), so a release without snapshots refuses it as
// a malformed frame.
//
//	field        size
//	magic        4 bytes BE = snapshotMagic
//	version      1 byte = 1
//	from, to     8 bytes BE each
//	group        uvarint
//	msg length   uvarint (≤ messageBytesMax)
//	message      raftpb.Message, protobuf: the MsgSnap, its Data the
//	             descriptor
//	chunks:      each: length uvarint (1 .. snapshotChunkBytes), bytes
//	end          uvarint 0
//
// and the receiver answers one byte: 1 once the state is staged and the
// message queued for its raft, 0 if not.
const (
	snapshotMagic         = 0xFF534E50 // 0xFF "SNP"
	snapshotStreamVersion = 1
	snapshotChunkBytes    = 256 << 10
)

// chunkWriter writes what it is given as chunks of the snapshot stream.
type chunkWriter struct {
	conn    net.Conn
	bw      *bufio.Writer
	buf     []byte
	timeout time.Duration
	n       uint64
}

func (c *chunkWriter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		k := min(len(p), snapshotChunkBytes-len(c.buf))
		c.buf = append(c.buf, p[:k]...)
		p, written = p[k:], written+k
		if len(c.buf) == snapshotChunkBytes {
			if err := c.flush(); err != nil {
				return written, err
			}
		}
	}
	return written, nil
}

func (c *chunkWriter) flush() error {
	if len(c.buf) == 0 {
		return nil
	}
	if err := c.conn.SetWriteDeadline(time.Now().Add(c.timeout)); err != nil {
		return err
	}
	if _, err := c.bw.Write(binary.AppendUvarint(nil, uint64(len(c.buf)))); err != nil {
		return err
	}
	if _, err := c.bw.Write(c.buf); err != nil {
		return err
	}
	c.n += uint64(len(c.buf))
	c.buf = c.buf[:0]
	return c.bw.Flush()
}

// sendSnapshot streams msg (a marshalled MsgSnap of group) and the state
// to peer to, and returns nil once the peer has staged the state and
// queued the message.
func (t *Transport) sendSnapshot(group, to uint64, msg []byte, state io.WriterTo) error {
	p := t.peer(to)
	if p == nil {
		return fmt.Errorf("cluster: unknown peer %d", to)
	}
	if fp := t.filter.Load(); fp != nil {
		if drop, d := (*fp)(to, group, pb.MessageType_MsgSnap); drop {
			t.stats.droppedFilter.Add(1)
			return errors.New("cluster: snapshot dropped by the filter")
		} else if d > 0 && !t.wait(d) {
			return net.ErrClosed
		}
	}
	conn, err := t.dial(p)
	if err != nil {
		t.stats.dialFailures.Add(1)
		return err
	}
	defer t.untrack(conn)
	hdr := binary.BigEndian.AppendUint32(nil, snapshotMagic)
	hdr = append(hdr, snapshotStreamVersion)
	hdr = binary.BigEndian.AppendUint64(hdr, t.id)
	hdr = binary.BigEndian.AppendUint64(hdr, to)
	hdr = binary.AppendUvarint(hdr, group)
	hdr = binary.AppendUvarint(hdr, uint64(len(msg)))
	cw := &chunkWriter{conn: conn, bw: bufio.NewWriterSize(conn, 64<<10), timeout: t.opts.WriteTimeout}
	if err := conn.SetWriteDeadline(time.Now().Add(t.opts.WriteTimeout)); err != nil {
		return err
	}
	if _, err := cw.bw.Write(append(hdr, msg...)); err != nil {
		return err
	}
	if _, err := state.WriteTo(cw); err != nil {
		return fmt.Errorf("cluster: snapshot stream to peer %d: %w", to, err)
	}
	if err := cw.flush(); err != nil {
		return err
	}
	if _, err := cw.bw.Write([]byte{0}); err != nil {
		return err
	}
	if err := cw.bw.Flush(); err != nil {
		return err
	}
	t.stats.snapshotBytesSent.Add(cw.n)
	// The peer answers once the state is staged: writing it takes as
	// long as receiving it, at most.
	if err := conn.SetReadDeadline(time.Now().Add(t.opts.IdleTimeout + t.opts.WriteTimeout)); err != nil {
		return err
	}
	var ack [1]byte
	if _, err := io.ReadFull(conn, ack[:]); err != nil {
		return fmt.Errorf("cluster: snapshot to peer %d: no answer: %w", to, err)
	}
	if ack[0] != 1 {
		return fmt.Errorf("cluster: snapshot to peer %d: refused", to)
	}
	return nil
}

// SnapshotHandler receives a snapshot stream from peer from: the message
// and the state's bytes in r. It returns nil once it has taken both.
type SnapshotHandler func(from, group uint64, m *pb.Message, r io.Reader) error

// SetSnapshotHandler installs h, which takes the peers' snapshot streams;
// without one they are refused.
func (t *Transport) SetSnapshotHandler(h SnapshotHandler) { t.snapshots.Store(&h) }

// chunkReader reads the chunks of a snapshot stream until its end.
type chunkReader struct {
	br      *bufio.Reader
	conn    net.Conn
	timeout time.Duration
	left    uint64
	ended   bool
	read    uint64 // the state's bytes read
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if c.ended {
		return 0, io.EOF
	}
	if c.left == 0 {
		if err := c.conn.SetReadDeadline(time.Now().Add(c.timeout)); err != nil {
			return 0, err
		}
		n, err := binary.ReadUvarint(c.br)
		if err != nil {
			return 0, io.ErrUnexpectedEOF
		}
		if n > snapshotChunkBytes {
			return 0, fmt.Errorf("cluster: snapshot chunk of %d bytes", n)
		}
		if n == 0 {
			c.ended = true
			return 0, io.EOF
		}
		c.left = n
	}
	k := min(uint64(len(p)), c.left)
	m, err := c.br.Read(p[:k])
	c.left -= uint64(m)
	c.read += uint64(m)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return m, err
}

// readSnapshot reads a snapshot stream whose magic br has just read.
func (t *Transport) readSnapshot(conn net.Conn, br *bufio.Reader) {
	refuse := func() { t.stats.frameErrors.Add(1) }
	if err := conn.SetReadDeadline(time.Now().Add(t.opts.IdleTimeout)); err != nil {
		return
	}
	var fixed [17]byte
	if _, err := io.ReadFull(br, fixed[:]); err != nil || fixed[0] != snapshotStreamVersion {
		refuse()
		return
	}
	from, to := binary.BigEndian.Uint64(fixed[1:9]), binary.BigEndian.Uint64(fixed[9:17])
	group, err := binary.ReadUvarint(br)
	if err != nil || to != t.id || t.peer(from) == nil || group == 0 {
		refuse()
		return
	}
	size, err := binary.ReadUvarint(br)
	if err != nil || size > messageBytesMax {
		refuse()
		return
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(br, b); err != nil {
		return
	}
	m := &pb.Message{}
	if err := proto.Unmarshal(b, m); err != nil || m.GetType() != pb.MessageType_MsgSnap || m.GetFrom() != from || m.GetTo() != to {
		refuse()
		return
	}
	hp := t.snapshots.Load()
	if hp == nil {
		return
	}
	cr := &chunkReader{br: br, conn: conn, timeout: t.opts.IdleTimeout}
	err = (*hp)(from, group, m, cr)
	if err == nil && !cr.ended {
		err = errors.New("the state ended before the stream")
	}
	ack := byte(1)
	if err != nil {
		ack = 0
	} else {
		t.stats.snapshotsReceived.Add(1)
		t.stats.snapshotBytesReceived.Add(cr.read)
	}
	_ = conn.SetWriteDeadline(time.Now().Add(t.opts.WriteTimeout))
	_, _ = conn.Write([]byte{ack})
}
