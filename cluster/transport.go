package cluster

// The transport: raft messages of every group between the nodes, over
// TCP, framed as the package doc draws. See invariants N6 (order, loss),
// N7 (bounds) and N8 (marshalled by the caller of Send).

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// Defaults for zero TransportOptions fields.
const (
	DefaultQueueMessagesMax = 4096
	DefaultDialTimeout      = time.Second
	DefaultWriteTimeout     = 5 * time.Second
	DefaultIdleTimeout      = 10 * time.Second
	DefaultBackoffMin       = 50 * time.Millisecond
	DefaultBackoffMax       = 2 * time.Second

	// queueMessagesLimit bounds QueueMessagesMax.
	queueMessagesLimit = 1 << 20
	// readBufferBytes is the read buffer of an inbound connection.
	readBufferBytes = 64 << 10
)

// TransportOptions tune a Transport. The zero value is usable: every zero
// field takes the default its comment names.
type TransportOptions struct {
	// QueueMessagesMax bounds the messages waiting to be written to one
	// peer. A message sent to a full queue is dropped and counted
	// (TransportStats.DroppedQueueFull): Raft tolerates lost messages.
	// Zero means DefaultQueueMessagesMax (4096).
	QueueMessagesMax int
	// DialTimeout bounds one attempt to connect to a peer. Zero means
	// DefaultDialTimeout (1 s).
	DialTimeout time.Duration
	// WriteTimeout bounds the write of one frame: a peer that does not
	// take a frame within it loses the connection, and the frame. Zero
	// means DefaultWriteTimeout (5 s).
	WriteTimeout time.Duration
	// IdleTimeout is how long a reader waits for the next frame before it
	// closes the connection; a writer with nothing to send writes an empty
	// frame (a keepalive) after a quarter of it. The nodes of a cluster
	// must agree on it. Zero means DefaultIdleTimeout (10 s).
	IdleTimeout time.Duration
	// BackoffMin and BackoffMax bound the wait before connecting to a peer
	// again after a failed attempt or a broken connection: it starts at
	// BackoffMin and doubles up to BackoffMax; a connection that lasted
	// BackoffMax starts it over. Zero means DefaultBackoffMin (50 ms) and
	// DefaultBackoffMax (2 s).
	BackoffMin, BackoffMax time.Duration
	// FrameRefused, if set, is told why an inbound connection was closed
	// on a frame it refused (errors.Is ErrNewerFormat for a frame of a
	// newer release, V2), from the connection's reader goroutine. Nil:
	// the refusals are only counted (TransportStats.FrameErrors).
	FrameRefused func(err error)
	// TestNoRefusals closes the connection of a node that is not a peer
	// unanswered, as a release before refusals did: the broken variant
	// of M7 and M8, for tests only.
	TestNoRefusals bool
}

// validate returns the first problem with o, in words a user can act on.
func (o *TransportOptions) validate() error {
	switch {
	case o.QueueMessagesMax < 0 || o.QueueMessagesMax > queueMessagesLimit:
		return fmt.Errorf("cluster: QueueMessagesMax %d must be in 0..%d (0 means %d)", o.QueueMessagesMax, queueMessagesLimit, DefaultQueueMessagesMax)
	case o.DialTimeout < 0:
		return fmt.Errorf("cluster: DialTimeout %s is negative; use 0 for the default of %s", o.DialTimeout, DefaultDialTimeout)
	case o.WriteTimeout < 0:
		return fmt.Errorf("cluster: WriteTimeout %s is negative; use 0 for the default of %s", o.WriteTimeout, DefaultWriteTimeout)
	case o.IdleTimeout < 0:
		return fmt.Errorf("cluster: IdleTimeout %s is negative; use 0 for the default of %s", o.IdleTimeout, DefaultIdleTimeout)
	case o.BackoffMin < 0 || o.BackoffMax < 0:
		return fmt.Errorf("cluster: BackoffMin %s and BackoffMax %s must not be negative (0 means %s and %s)", o.BackoffMin, o.BackoffMax, DefaultBackoffMin, DefaultBackoffMax)
	}
	if d := o.withDefaults(); d.BackoffMin > d.BackoffMax {
		return fmt.Errorf("cluster: BackoffMin %s exceeds BackoffMax %s", d.BackoffMin, d.BackoffMax)
	}
	return nil
}

func (o TransportOptions) withDefaults() TransportOptions {
	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	if o.QueueMessagesMax == 0 {
		o.QueueMessagesMax = DefaultQueueMessagesMax
	}
	def(&o.DialTimeout, DefaultDialTimeout)
	def(&o.WriteTimeout, DefaultWriteTimeout)
	def(&o.IdleTimeout, DefaultIdleTimeout)
	def(&o.BackoffMin, DefaultBackoffMin)
	def(&o.BackoffMax, DefaultBackoffMax)
	return o
}

// GroupMessage is a raft message and the group it belongs to.
type GroupMessage struct {
	Group   uint64
	Message *pb.Message
}

// Handler receives the messages of one frame from peer from, in the order
// the peer sent them. The transport calls it from its reader goroutines,
// for one peer at a time, and it must not block: a slow handler holds up
// the peer's connection. msgs is the handler's to keep.
type Handler func(from uint64, msgs []GroupMessage)

// Filter is the hook through which tests lose and delay messages
// (partitions, slow links). The writer to peer to asks it about each
// message just before writing the frame that carries it: drop loses the
// message (TransportStats.DroppedFilter), a delay holds the frame, and
// every later one, for the longest delay asked for — the order stays.
// It is called from the writers' goroutines and must be safe for
// concurrent use.
type Filter func(to, group uint64, t pb.MessageType) (drop bool, delay time.Duration)

// TransportStats are a Transport's counters since it was made.
type TransportStats struct {
	// FramesSent, MessagesSent and BytesSent count what was written to
	// peers (a keepalive is a frame of no messages).
	FramesSent, MessagesSent, BytesSent uint64
	// FramesReceived, MessagesReceived and BytesReceived count what was
	// read from peers and handed to the Handler.
	FramesReceived, MessagesReceived, BytesReceived uint64
	// DroppedQueueFull counts messages Send dropped because the peer's
	// queue was full.
	DroppedQueueFull uint64
	// DroppedUnreachable counts messages dropped because the peer could
	// not be reached: sent while the last attempt to connect had failed,
	// or queued before it failed.
	DroppedUnreachable uint64
	// DroppedBroken counts messages lost with a connection that broke
	// while they were being written.
	DroppedBroken uint64
	// DroppedTooLarge counts messages larger than a frame holds.
	DroppedTooLarge uint64
	// DroppedFilter counts messages the Filter dropped.
	DroppedFilter uint64
	// Dials and DialFailures count attempts to connect to peers and those
	// that failed.
	Dials, DialFailures uint64
	// ConnsAccepted counts peers' connections accepted; ConnsRefused those
	// closed at once because too many were open; ConnsStale those closed
	// at their first frame because a newer connection of the same peer
	// was already read (their frames are dropped).
	ConnsAccepted, ConnsRefused, ConnsStale uint64
	// FrameErrors counts inbound connections closed because a frame was
	// malformed, of another version, not addressed to this node, or
	// carried a message that was.
	FrameErrors uint64
	// FramesNewer counts, among FrameErrors, the frames refused for a
	// version newer than this release reads (V2).
	FramesNewer uint64
	// SnapshotBytesSent counts the state bytes of the snapshot streams
	// written in full to peers; SnapshotsReceived and
	// SnapshotBytesReceived the streams taken from peers and their state
	// bytes.
	SnapshotBytesSent, SnapshotsReceived, SnapshotBytesReceived uint64
	// RefusalsSent counts the refusal records written back to nodes that
	// are not peers; RefusalsReceived those read from peers (M7, M8).
	RefusalsSent, RefusalsReceived uint64
}

// transportStats are the counters behind TransportStats, each written by
// whichever goroutine counts the event and read by Stats.
type transportStats struct {
	framesSent, messagesSent, bytesSent             atomic.Uint64
	framesReceived, messagesReceived, bytesReceived atomic.Uint64
	droppedQueueFull, droppedUnreachable            atomic.Uint64
	droppedBroken, droppedTooLarge, droppedFilter   atomic.Uint64
	dials, dialFailures                             atomic.Uint64
	connsAccepted, connsRefused, connsStale         atomic.Uint64
	frameErrors, framesNewer                        atomic.Uint64
	snapshotBytesSent, snapshotBytesReceived        atomic.Uint64
	snapshotsReceived                               atomic.Uint64
	refusalsSent, refusalsReceived                  atomic.Uint64
}

// Transport carries raft messages of every group between this node and
// its peers over TCP. There is one connection per ordered pair of nodes:
// each node dials every peer and only writes on that connection, and only
// reads the connections its peers dialed. A message travels in a frame
// with the other messages queued for the same peer, whatever their group.
//
// Messages sent to one peer arrive in the order Send was called, or not at
// all (N6): nothing is retransmitted, as raft retransmits what matters.
// Safe for concurrent use.
type Transport struct {
	id      uint64
	ln      net.Listener
	opts    TransportOptions
	handler Handler
	// peers maps each peer's id to its writer: a map never changed
	// once stored, replaced whole by SetPeer and RemovePeer under mu.
	peers atomic.Pointer[map[uint64]*peer]

	filter    atomic.Pointer[Filter]          // the test hook; nil: none
	snapshots atomic.Pointer[SnapshotHandler] // nil: snapshot streams are refused
	// refused is told of the refusals peers answer this node's frames
	// with (refusal.go); nil: none is.
	refused atomic.Pointer[func(by uint64, why refusal)]

	// ctx is cancelled by Close; it ends dials, backoff waits and writers.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	conns    map[net.Conn]struct{} // guarded by mu: every open connection, for Close
	inbound  map[uint64]*reader    // guarded by mu: the connection read for each peer
	newest   map[uint64]uint64     // guarded by mu: per peer, the largest reader.accepted adopted
	removed  map[uint64]bool       // guarded by mu: the nodes RemovePeer removed, answered as removed
	accepted int                   // guarded by mu: inbound connections open
	closed   bool                  // guarded by mu

	stats transportStats
}

// peer is the writing side towards one peer. Its queue is filled by Send
// and emptied by the peer's writer goroutine, the only one that writes to
// the peer's connection.
type peer struct {
	id    uint64
	addr  string
	queue chan outMsg
	// ctx ends the peer's writer: cancelled by Close, and by RemovePeer
	// or a SetPeer that gives the peer another address.
	ctx    context.Context
	cancel context.CancelFunc
	// down is written by the writer and read by Send: true while the last
	// attempt to connect failed, so messages are dropped instead of queued
	// for a peer that is not there.
	down atomic.Bool
}

// outMsg is a marshalled message queued for a peer.
type outMsg struct {
	rawMessage
	typ pb.MessageType
}

// reader is the goroutine reading one inbound connection.
type reader struct {
	conn net.Conn
	// accepted numbers the inbound connections in the order they were
	// accepted. A peer dials again only once its previous connection has
	// ended, so its connections are accepted in the order it dialed them:
	// a larger number is a newer connection of the same peer.
	accepted uint64
	from     uint64        // the peer, known from the first frame; 0 until then
	done     chan struct{} // closed when the reader has stopped
}

// NewTransport starts the transport of node id: it accepts peers'
// connections on ln and connects to every node of peers (id → address;
// id itself is skipped) when there is something to send. Inbound
// messages go to h. The transport owns ln from now on.
func NewTransport(id uint64, peers map[uint64]string, ln net.Listener, opts TransportOptions, h Handler) (*Transport, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	if id == 0 || ln == nil || h == nil {
		panic("BUG: cluster: NewTransport needs a node id, a listener and a handler")
	}
	opts = opts.withDefaults()
	t := &Transport{
		id: id, ln: ln, opts: opts, handler: h,
		conns:   map[net.Conn]struct{}{},
		inbound: map[uint64]*reader{},
		newest:  map[uint64]uint64{},
		removed: map[uint64]bool{},
	}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	ps := map[uint64]*peer{}
	for pid, addr := range peers {
		if pid == id {
			continue
		}
		if pid == 0 || addr == "" {
			return nil, fmt.Errorf("cluster: peer %d at %q: a peer needs a non-zero id and an address", pid, addr)
		}
		ps[pid] = t.newPeer(pid, addr)
	}
	t.peers.Store(&ps)
	t.wg.Add(1 + len(ps))
	go t.accept()
	for _, p := range ps {
		go t.runPeer(p)
	}
	return t, nil
}

// newPeer returns the writer side of peer id at addr, not yet running.
func (t *Transport) newPeer(id uint64, addr string) *peer {
	p := &peer{id: id, addr: addr, queue: make(chan outMsg, t.opts.QueueMessagesMax)}
	p.ctx, p.cancel = context.WithCancel(t.ctx)
	return p
}

// peer returns the writer of peer id, nil if id is not a peer.
func (t *Transport) peer(id uint64) *peer { return (*t.peers.Load())[id] }

// PeerAddr returns the address of peer id, "" if it is not a peer.
func (t *Transport) PeerAddr(id uint64) string {
	if p := t.peer(id); p != nil {
		return p.addr
	}
	return ""
}

// SetPeer makes node id at addr a peer, or gives a peer a new address
// (its old connection ends): a node added to the cluster. Its frames are
// read from then on, and messages to it sent.
func (t *Transport) SetPeer(id uint64, addr string) error {
	if id == 0 || id == t.id || addr == "" {
		return fmt.Errorf("cluster: peer %d at %q: a peer needs a non-zero id other than this node's and an address", id, addr)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	delete(t.removed, id)
	old := *t.peers.Load()
	if p := old[id]; p != nil && p.addr == addr {
		return nil
	}
	ps := maps.Clone(old)
	if p := old[id]; p != nil {
		p.cancel()
	}
	p := t.newPeer(id, addr)
	ps[id] = p
	t.peers.Store(&ps)
	t.wg.Add(1)
	go t.runPeer(p)
	return nil
}

// RemovePeer forgets peer id: a node removed from the cluster. Its writer
// stops, what is queued for it is dropped, and its frames are refused
// from then on: its connection is answered with a refusal that says it
// was removed (M7), and closed, at its next frame. Whether or not id was
// a peer, it is answered so until SetPeer makes it one.
func (t *Transport) RemovePeer(id uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.removed[id] = true
	old := *t.peers.Load()
	p := old[id]
	if p == nil {
		return
	}
	ps := maps.Clone(old)
	delete(ps, id)
	t.peers.Store(&ps)
	p.cancel()
}

// Addr is the address the transport accepts peers on.
func (t *Transport) Addr() net.Addr { return t.ln.Addr() }

// SetFilter installs f, the hook tests lose and delay messages with; nil
// removes it.
func (t *Transport) SetFilter(f Filter) {
	if f == nil {
		t.filter.Store(nil)
		return
	}
	t.filter.Store(&f)
}

// Send queues m for the peer m.To, in group's name, and reports whether it
// was queued. It marshals m before it returns (raft asks that messages be
// marshalled in the Ready loop), so raft may reuse m. A message is dropped
// — Send returns false and counts it — when the peer is unknown or
// unreachable, its queue is full, or m is larger than a frame holds: raft
// treats it as lost, and the caller may tell raft the peer is unreachable.
// Messages to one peer keep the order of the Send calls that queued them.
func (t *Transport) Send(group uint64, m *pb.Message) bool {
	p := t.peer(m.GetTo())
	if p == nil || p.down.Load() {
		t.stats.droppedUnreachable.Add(1)
		return false
	}
	b, err := proto.Marshal(m)
	if err != nil {
		panic(fmt.Sprintf("BUG: cluster: cannot marshal a raft message: %v", err))
	}
	if messageFrameBytes(group, len(b)) > messageBytesMax {
		t.stats.droppedTooLarge.Add(1)
		return false
	}
	select {
	case p.queue <- outMsg{rawMessage: rawMessage{group: group, b: b}, typ: m.GetType()}:
		return true
	default:
		t.stats.droppedQueueFull.Add(1)
		return false
	}
}

// Stats returns a snapshot of the counters.
func (t *Transport) Stats() TransportStats {
	s := &t.stats
	return TransportStats{
		FramesSent: s.framesSent.Load(), MessagesSent: s.messagesSent.Load(), BytesSent: s.bytesSent.Load(),
		FramesReceived: s.framesReceived.Load(), MessagesReceived: s.messagesReceived.Load(), BytesReceived: s.bytesReceived.Load(),
		DroppedQueueFull: s.droppedQueueFull.Load(), DroppedUnreachable: s.droppedUnreachable.Load(),
		DroppedBroken: s.droppedBroken.Load(), DroppedTooLarge: s.droppedTooLarge.Load(), DroppedFilter: s.droppedFilter.Load(),
		Dials: s.dials.Load(), DialFailures: s.dialFailures.Load(),
		ConnsAccepted: s.connsAccepted.Load(), ConnsRefused: s.connsRefused.Load(), ConnsStale: s.connsStale.Load(),
		FrameErrors: s.frameErrors.Load(), FramesNewer: s.framesNewer.Load(),
		SnapshotBytesSent: s.snapshotBytesSent.Load(), SnapshotsReceived: s.snapshotsReceived.Load(), SnapshotBytesReceived: s.snapshotBytesReceived.Load(),
		RefusalsSent: s.refusalsSent.Load(), RefusalsReceived: s.refusalsReceived.Load(),
	}
}

// Close stops the transport: it closes the listener and every connection
// and waits for its goroutines. Queued messages are lost.
func (t *Transport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	conns := make([]net.Conn, 0, len(t.conns))
	for c := range t.conns {
		conns = append(conns, c)
	}
	t.mu.Unlock()
	t.cancel()
	err := t.ln.Close()
	for _, c := range conns {
		_ = c.Close()
	}
	t.wg.Wait()
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("cluster: cannot close the peer listener: %w", err)
	}
	return nil
}

// track records c as open, so that Close closes it; false (and c closed)
// once the transport is closed.
func (t *Transport) track(c net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		_ = c.Close()
		return false
	}
	t.conns[c] = struct{}{}
	return true
}

// untrack closes c and forgets it.
func (t *Transport) untrack(c net.Conn) {
	t.mu.Lock()
	delete(t.conns, c)
	t.mu.Unlock()
	_ = c.Close()
}

// wait waits d, or less if the transport closes; false if it closed.
func (t *Transport) wait(d time.Duration) bool { return waitFor(t.ctx, d) }

// waitFor waits d, or less if ctx ends; false if it ended.
func waitFor(ctx context.Context, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// runPeer is the writer of peer p: it connects, writes what is queued,
// and connects again with capped exponential backoff when the peer is
// unreachable or the connection breaks.
func (t *Transport) runPeer(p *peer) {
	defer t.wg.Done()
	backoff := t.opts.BackoffMin
	for {
		conn, err := t.dial(p)
		if err == nil {
			p.down.Store(false)
			t.wg.Add(1)
			go t.watchRefusal(p, conn)
			began := time.Now()
			t.write(p, conn)
			t.untrack(conn)
			if time.Since(began) >= t.opts.BackoffMax {
				backoff = t.opts.BackoffMin
			}
		} else if p.ctx.Err() == nil {
			t.stats.dialFailures.Add(1)
			p.down.Store(true)
			t.discard(p)
		}
		if !waitFor(p.ctx, backoff) {
			return
		}
		backoff = min(2*backoff, t.opts.BackoffMax)
	}
}

// dial connects to p.
func (t *Transport) dial(p *peer) (net.Conn, error) {
	t.stats.dials.Add(1)
	d := net.Dialer{Timeout: t.opts.DialTimeout}
	conn, err := d.DialContext(p.ctx, "tcp", p.addr)
	if err != nil {
		return nil, fmt.Errorf("cluster: cannot connect to peer %d at %s: %w", p.id, p.addr, err)
	}
	if !t.track(conn) {
		return nil, net.ErrClosed
	}
	return conn, nil
}

// discard drops what is queued for the unreachable peer p.
func (t *Transport) discard(p *peer) {
	for {
		select {
		case <-p.queue:
			t.stats.droppedUnreachable.Add(1)
		default:
			return
		}
	}
}

// write writes p's queued messages to conn, as many as a frame holds per
// write, and a keepalive after a quarter of IdleTimeout of silence, until
// a write fails or the transport closes.
func (t *Transport) write(p *peer, conn net.Conn) {
	keepaliveEvery := t.opts.IdleTimeout / 4
	keepalive := time.NewTimer(keepaliveEvery)
	defer keepalive.Stop()
	var (
		batch []outMsg
		raw   []rawMessage
		buf   []byte
		carry outMsg // taken from the queue but left for the next frame
		held  bool
	)
	for {
		batch = batch[:0]
		if held {
			batch, held = append(batch, carry), false
		} else {
			select {
			case m := <-p.queue:
				batch = append(batch, m)
			case <-keepalive.C:
			case <-p.ctx.Done():
				return
			}
		}
		msgBytes := 0
		for _, m := range batch {
			msgBytes += messageFrameBytes(m.group, len(m.b))
		}
	fill:
		for {
			select {
			case m := <-p.queue:
				mb := messageFrameBytes(m.group, len(m.b))
				if frameBytes(len(batch)+1, msgBytes+mb) > frameBytesMax {
					carry, held = m, true
					break fill
				}
				batch, msgBytes = append(batch, m), msgBytes+mb
			default:
				break fill
			}
		}
		var delay time.Duration
		if batch, delay = t.filtered(p, batch); delay > 0 && !waitFor(p.ctx, delay) {
			return
		}
		raw = raw[:0]
		for _, m := range batch {
			raw = append(raw, m.rawMessage)
		}
		buf = appendFrame(buf[:0], t.id, p.id, raw)
		err := conn.SetWriteDeadline(time.Now().Add(t.opts.WriteTimeout))
		if err == nil {
			_, err = conn.Write(buf)
		}
		if err != nil {
			lost := len(batch)
			if held {
				lost++
			}
			t.stats.droppedBroken.Add(uint64(lost))
			return
		}
		t.stats.framesSent.Add(1)
		t.stats.messagesSent.Add(uint64(len(batch)))
		t.stats.bytesSent.Add(uint64(len(buf)))
		keepalive.Reset(keepaliveEvery)
	}
}

// filtered asks the Filter about each message of batch: it returns the
// messages to write and how long to hold them.
func (t *Transport) filtered(p *peer, batch []outMsg) ([]outMsg, time.Duration) {
	fp := t.filter.Load()
	if fp == nil {
		return batch, 0
	}
	var delay time.Duration
	kept := batch[:0]
	for _, m := range batch {
		drop, d := (*fp)(p.id, m.group, m.typ)
		if drop {
			t.stats.droppedFilter.Add(1)
			continue
		}
		delay = max(delay, d)
		kept = append(kept, m)
	}
	return kept, delay
}

// inboundConnsMax bounds the inbound connections open at once: one per
// peer, its replacement, and a few that have not yet sent a frame (each
// closed after IdleTimeout without one).
func (t *Transport) inboundConnsMax() int { return 2*len(*t.peers.Load()) + 4 }

// accept accepts peers' connections until the listener closes.
func (t *Transport) accept() {
	defer t.wg.Done()
	var accepted uint64
	for {
		conn, err := t.ln.Accept()
		if err != nil {
			if t.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors, or the like: wait, do not spin.
			if !t.wait(t.opts.BackoffMin) {
				return
			}
			continue
		}
		t.mu.Lock()
		full := t.accepted >= t.inboundConnsMax()
		if !full {
			t.accepted++
		}
		t.mu.Unlock()
		if full {
			t.stats.connsRefused.Add(1)
			_ = conn.Close()
			continue
		}
		if !t.track(conn) {
			return
		}
		t.stats.connsAccepted.Add(1)
		accepted++
		t.wg.Add(1)
		go t.read(&reader{conn: conn, accepted: accepted, done: make(chan struct{})})
	}
}

// read reads the frames of one inbound connection and hands their
// messages to the handler, until the connection ends or fails a check.
func (t *Transport) read(r *reader) {
	defer t.wg.Done()
	defer close(r.done)
	defer func() {
		t.mu.Lock()
		if r.from != 0 && t.inbound[r.from] == r {
			delete(t.inbound, r.from)
		}
		t.accepted--
		t.mu.Unlock()
		t.untrack(r.conn)
	}()
	br := bufio.NewReaderSize(r.conn, readBufferBytes)
	var buf []byte
	for {
		// A read error is the end of the connection: the peer closed it,
		// it broke, it stayed silent past IdleTimeout, or Close closed it.
		if err := r.conn.SetReadDeadline(time.Now().Add(t.opts.IdleTimeout)); err != nil {
			return
		}
		var prefix [frameLenBytes]byte
		if _, err := io.ReadFull(br, prefix[:]); err != nil {
			return
		}
		if r.from == 0 && binary.BigEndian.Uint32(prefix[:]) == snapshotMagic {
			t.readSnapshot(r.conn, br) // a snapshot stream, not frames
			return
		}
		n, err := frameBodyBytes(prefix)
		if err != nil {
			t.stats.frameErrors.Add(1)
			return
		}
		buf = slices.Grow(buf[:0], frameLenBytes+n)[:frameLenBytes+n]
		copy(buf, prefix[:])
		if _, err := io.ReadFull(br, buf[frameLenBytes:]); err != nil {
			return
		}
		msgs, from, err := t.decode(r, buf)
		if err != nil {
			t.stats.frameErrors.Add(1)
			if errors.Is(err, ErrNewerFormat) {
				t.stats.framesNewer.Add(1)
			}
			if t.opts.FrameRefused != nil {
				t.opts.FrameRefused(err)
			}
			if errors.Is(err, ErrUnknownPeer) {
				t.refuse(r.conn, from)
			}
			return
		}
		if r.from == 0 {
			r.from = from
			if !t.adopt(r) {
				t.stats.connsStale.Add(1)
				return
			}
		}
		t.stats.framesReceived.Add(1)
		t.stats.bytesReceived.Add(uint64(len(buf)))
		if len(msgs) > 0 {
			t.stats.messagesReceived.Add(uint64(len(msgs)))
			t.handler(from, msgs)
		}
	}
}

// decode decodes and checks frame b read by r: addressed to this node,
// from a known peer (the same as the connection's earlier frames), every
// message from that peer to this node. A frame from a node that is not a
// peer is refused with ErrUnknownPeer and the node's id.
func (t *Transport) decode(r *reader, b []byte) ([]GroupMessage, uint64, error) {
	f, err := decodeFrame(b)
	switch {
	case err != nil:
		return nil, 0, err
	case f.to != t.id:
		return nil, 0, fmt.Errorf("%w: addressed to node %d, this is node %d", errFrame, f.to, t.id)
	case t.peer(f.from) == nil:
		return nil, f.from, fmt.Errorf("%w: %w: node %d", errFrame, ErrUnknownPeer, f.from)
	case r.from != 0 && f.from != r.from:
		return nil, 0, fmt.Errorf("%w: from node %d on node %d's connection", errFrame, f.from, r.from)
	}
	var msgs []GroupMessage
	if len(f.msgs) > 0 {
		msgs = make([]GroupMessage, len(f.msgs))
	}
	for i, rm := range f.msgs {
		// proto.Unmarshal copies the bytes it keeps: b is reused.
		m := &pb.Message{}
		if err := proto.Unmarshal(rm.b, m); err != nil || m.GetFrom() != f.from || m.GetTo() != t.id {
			return nil, 0, fmt.Errorf("%w: message %d from node %d is not a raft message from it to this node", errFrame, i, f.from)
		}
		msgs[i] = GroupMessage{Group: rm.group, Message: m}
	}
	return msgs, f.from, nil
}

// adopt makes r the reader of its peer's messages, unless a newer
// connection of the peer has been read from already (even one that has
// ended since): then r is stale,
// its frames older than those handed over, and adopt returns false. A
// peer that reconnects leaves its old connection behind; adopt closes it
// and waits for its reader to stop before r hands over anything. So the
// peer's messages reach the handler in the order they were sent, even
// when a reader is slow to read its first frame (N6).
func (t *Transport) adopt(r *reader) bool {
	t.mu.Lock()
	if t.newest[r.from] > r.accepted {
		t.mu.Unlock()
		return false
	}
	prev := t.inbound[r.from]
	t.inbound[r.from], t.newest[r.from] = r, r.accepted
	t.mu.Unlock()
	if prev != nil {
		_ = prev.conn.Close()
		<-prev.done
	}
	return true
}
