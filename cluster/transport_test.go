package cluster

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// received records what a transport's Handler was given.
type received struct {
	mu    sync.Mutex
	index []uint64 // each message's Index, in arrival order
	group []uint64
}

func (r *received) handle(from uint64, msgs []GroupMessage) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range msgs {
		r.index = append(r.index, m.Message.GetIndex())
		r.group = append(r.group, m.Group)
	}
}

func (r *received) snapshot() ([]uint64, []uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]uint64(nil), r.index...), append([]uint64(nil), r.group...)
}

// listen returns a listener on a free loopback port.
func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// newTestTransport starts the transport of node id on ln towards peers.
func newTestTransport(t *testing.T, id uint64, ln net.Listener, peers map[uint64]string, opts TransportOptions, h Handler) *Transport {
	t.Helper()
	if h == nil {
		h = func(uint64, []GroupMessage) {}
	}
	tr, err := NewTransport(id, peers, ln, opts, h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := tr.Close(); err != nil {
			t.Error(err)
		}
	})
	return tr
}

// appMsg is a message from 1 to 2 numbered i (in its Index).
func appMsg(i uint64) *pb.Message {
	return &pb.Message{Type: pb.MessageType_MsgApp.Enum(), From: new(uint64(1)), To: new(uint64(2)), Index: new(i)}
}

// breakConns closes every connection of tr, as a network that fails.
func breakConns(tr *Transport) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for c := range tr.conns {
		_ = c.Close()
	}
}

// TestTransportKeepsOrderAcrossReconnects: messages of several groups sent
// to a peer arrive in the order sent, some lost but none reordered or
// repeated, while the connections break and are made again (N6); and
// after the last break, messages get through again.
func TestTransportKeepsOrderAcrossReconnects(t *testing.T) {
	lnA, lnB := listen(t), listen(t)
	peers := map[uint64]string{1: lnA.Addr().String(), 2: lnB.Addr().String()}
	opts := TransportOptions{BackoffMin: time.Millisecond, BackoffMax: 20 * time.Millisecond}
	var got received
	a := newTestTransport(t, 1, lnA, peers, opts, nil)
	b := newTestTransport(t, 2, lnB, peers, opts, got.handle)

	next := uint64(1)
	for round := range 20 {
		for range 500 {
			a.Send(next%4+1, appMsg(next))
			next++
		}
		if round%2 == 0 {
			breakConns(a)
		} else {
			breakConns(b)
		}
	}
	// Messages get through again: poll with new ones until one arrives.
	sent := next - 1
	eventually(t, "a message after the last break arrives", func() error {
		a.Send(next%4+1, appMsg(next))
		next++
		index, _ := got.snapshot()
		if len(index) > 0 && index[len(index)-1] > sent {
			return nil
		}
		time.Sleep(time.Millisecond)
		return fmt.Errorf("%d messages arrived", len(index))
	})
	index, group := got.snapshot()
	for i := range index {
		if group[i] != index[i]%4+1 {
			t.Fatalf("message %d arrived in group %d, was sent in %d", index[i], group[i], index[i]%4+1)
		}
		if i > 0 && index[i] <= index[i-1] {
			t.Fatalf("message %d arrived after message %d", index[i], index[i-1])
		}
	}
	s := a.Stats()
	t.Logf("%d of %d messages arrived; sender: %+v", len(index), next-1, s)
	if s.Dials < 2 {
		t.Fatalf("the sender dialed %d times across the breaks", s.Dials)
	}
}

// TestTransportReconnectedPeerWaitsForItsOldConnection: a peer's new
// connection hands over nothing until the reader of its old one has
// stopped, so the old connection's last frames cannot arrive after the
// new one's first (N6). The handler holds the old connection's first
// frame while the new connection's arrives.
func TestTransportReconnectedPeerWaitsForItsOldConnection(t *testing.T) {
	lnB := listen(t)
	var got received
	entered, release := make(chan struct{}), make(chan struct{})
	var held atomic.Bool
	b := newTestTransport(t, 2, lnB, map[uint64]string{1: "127.0.0.1:1", 2: lnB.Addr().String()}, TransportOptions{}, func(from uint64, msgs []GroupMessage) {
		if held.CompareAndSwap(false, true) {
			close(entered)
			<-release
		}
		got.handle(from, msgs)
	})
	frame := func(i uint64) []byte {
		b, err := proto.Marshal(appMsg(i))
		if err != nil {
			t.Fatal(err)
		}
		return appendFrame(nil, 1, 2, []rawMessage{{group: 1, b: b}})
	}
	dial := func() net.Conn {
		conn, err := net.Dial("tcp", lnB.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		return conn
	}
	old := dial()
	for i := range uint64(5) {
		if _, err := old.Write(frame(i + 1)); err != nil {
			t.Fatal(err)
		}
	}
	<-entered
	reader := func() *reader {
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.inbound[1]
	}
	first := reader()
	if _, err := dial().Write(frame(6)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the new connection's reader takes over the peer", func() error {
		if reader() == first {
			return fmt.Errorf("the old connection's reader still has it")
		}
		return nil
	})
	close(release)
	eventually(t, "the new connection's frame arrives", func() error {
		if index, _ := got.snapshot(); !slices.Contains(index, 6) {
			return fmt.Errorf("arrived: %v", index)
		}
		return nil
	})
	index, _ := got.snapshot()
	if !slices.IsSorted(index) || index[0] != 1 {
		t.Fatalf("arrived in the order %v", index)
	}
}

// TestTransportRefusesAnOlderConnectionOfAPeer: a peer's connection that
// sends its first frame only after a newer connection of the same peer
// has been read from is stale — its frames were sent before the newer
// one's — and is closed with its frames dropped, instead of handing them
// over after the newer ones (N6); also once the newer connection ended.
func TestTransportRefusesAnOlderConnectionOfAPeer(t *testing.T) {
	for _, newerEnds := range []bool{false, true} {
		t.Run(fmt.Sprintf("newerEnds=%v", newerEnds), func(t *testing.T) {
			lnB := listen(t)
			var got received
			b := newTestTransport(t, 2, lnB, map[uint64]string{1: "127.0.0.1:1", 2: lnB.Addr().String()}, TransportOptions{}, got.handle)
			frame := func(i uint64) []byte {
				b, err := proto.Marshal(appMsg(i))
				if err != nil {
					t.Fatal(err)
				}
				return appendFrame(nil, 1, 2, []rawMessage{{group: 1, b: b}})
			}
			dial := func(accepted uint64) net.Conn {
				conn, err := net.Dial("tcp", lnB.Addr().String())
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = conn.Close() })
				eventually(t, "the connection is accepted", func() error {
					if n := b.Stats().ConnsAccepted; n != accepted {
						return fmt.Errorf("%d accepted", n)
					}
					return nil
				})
				return conn
			}
			older, newer := dial(1), dial(2)
			if _, err := newer.Write(frame(2)); err != nil {
				t.Fatal(err)
			}
			eventually(t, "the newer connection's frame arrives", func() error {
				if index, _ := got.snapshot(); len(index) != 1 {
					return fmt.Errorf("arrived: %v", index)
				}
				return nil
			})
			if newerEnds {
				_ = newer.Close()
				eventually(t, "the newer connection's reader stops", func() error {
					b.mu.Lock()
					defer b.mu.Unlock()
					if b.inbound[1] != nil {
						return fmt.Errorf("still reading")
					}
					return nil
				})
			}
			if _, err := older.Write(frame(1)); err != nil {
				t.Fatal(err)
			}
			if err := older.SetReadDeadline(time.Now().Add(waitMax)); err != nil {
				t.Fatal(err)
			}
			if _, err := older.Read(make([]byte, 1)); err == nil {
				t.Fatal("the older connection stays open")
			}
			if index, _ := got.snapshot(); !slices.Equal(index, []uint64{2}) {
				t.Fatalf("arrived in the order %v, want only the newer connection's 2", index)
			}
			if s := b.Stats(); s.ConnsStale != 1 {
				t.Fatalf("ConnsStale %d, want 1", s.ConnsStale)
			}
		})
	}
}

// TestTransportDropsOnFullQueue: a peer's queue holds QueueMessagesMax
// messages; while the writer is held (a delaying filter), Send drops the
// rest, says so, and counts them — it never blocks.
func TestTransportDropsOnFullQueue(t *testing.T) {
	lnA, lnB := listen(t), listen(t)
	peers := map[uint64]string{1: lnA.Addr().String(), 2: lnB.Addr().String()}
	var got received
	a := newTestTransport(t, 1, lnA, peers, TransportOptions{QueueMessagesMax: 8}, nil)
	newTestTransport(t, 2, lnB, peers, TransportOptions{}, got.handle)
	release := make(chan struct{})
	a.SetFilter(func(uint64, uint64, pb.MessageType) (bool, time.Duration) {
		<-release // hold the writer until the queue has overflowed
		return false, 0
	})
	refused := 0
	for i := range 100 {
		if !a.Send(1, appMsg(uint64(i+1))) {
			refused++
		}
	}
	close(release)
	if s := a.Stats(); refused == 0 || s.DroppedQueueFull != uint64(refused) {
		t.Fatalf("Send refused %d of 100 to a queue of 8, DroppedQueueFull %d", refused, s.DroppedQueueFull)
	}
	eventually(t, "the queued messages arrive", func() error {
		if index, _ := got.snapshot(); len(index) != 100-refused {
			return fmt.Errorf("%d of %d arrived", len(index), 100-refused)
		}
		return nil
	})
}

// TestTransportReconnectsToPeerThatStarts: messages to a peer that is not
// listening are dropped and counted, and Send reports them; once the peer
// listens, the transport connects (backing off meanwhile) and messages
// arrive.
func TestTransportReconnectsToPeerThatStarts(t *testing.T) {
	lnA, lnB := listen(t), listen(t)
	addrB := lnB.Addr().String()
	if err := lnB.Close(); err != nil {
		t.Fatal(err)
	}
	peers := map[uint64]string{1: lnA.Addr().String(), 2: addrB}
	a := newTestTransport(t, 1, lnA, peers, TransportOptions{BackoffMin: time.Millisecond, BackoffMax: 20 * time.Millisecond}, nil)
	eventually(t, "Send reports the peer unreachable", func() error {
		if a.Send(1, appMsg(1)) {
			return fmt.Errorf("queued")
		}
		return nil
	})
	if s := a.Stats(); s.DialFailures == 0 || s.DroppedUnreachable == 0 {
		t.Fatalf("stats %+v: want dial failures and unreachable drops", s)
	}
	lnB, err := net.Listen("tcp", addrB)
	if err != nil {
		t.Skipf("the peer's port was taken meanwhile: %v", err)
	}
	var got received
	newTestTransport(t, 2, lnB, peers, TransportOptions{}, got.handle)
	eventually(t, "a message reaches the started peer", func() error {
		a.Send(1, appMsg(2))
		if index, _ := got.snapshot(); len(index) == 0 {
			time.Sleep(time.Millisecond)
			return fmt.Errorf("nothing arrived")
		}
		return nil
	})
}

// TestTransportRefusesBadFrames: a connection whose frame is malformed, of
// another version, addressed to another node, from an unknown node, or
// carries a message that is not from its sender, is closed and counted,
// and nothing of it reaches the handler. A node that is not a peer is
// answered with a refusal first: removed if RemovePeer removed it, not a
// member otherwise (M7, M8).
func TestTransportRefusesBadFrames(t *testing.T) {
	lnB := listen(t)
	var got received
	b := newTestTransport(t, 2, lnB, map[uint64]string{1: "127.0.0.1:1", 2: lnB.Addr().String()}, TransportOptions{}, got.handle)
	b.RemovePeer(8)
	hb := func(from, to uint64) rawMessage { return rawMessage{group: 1, b: heartbeat(t, from, to, 1)} }
	v2 := appendFrame(nil, 1, 2, []rawMessage{hb(1, 2)})
	v2[frameLenBytes] = frameVersion + 1
	bad := map[string][]byte{
		"too long a length": {0xff, 0xff, 0xff, 0xff},
		"another version":   v2,
		"to another node":   appendFrame(nil, 1, 3, []rawMessage{hb(1, 3)}),
		"from an unknown":   appendFrame(nil, 9, 2, []rawMessage{hb(9, 2)}),
		"from a removed":    appendFrame(nil, 8, 2, []rawMessage{hb(8, 2)}),
		"a forged sender":   appendFrame(nil, 1, 2, []rawMessage{hb(3, 2)}),
		"not protobuf":      appendFrame(nil, 1, 2, []rawMessage{{group: 1, b: []byte{0xff}}}),
	}
	for what, frame := range bad {
		conn, err := net.Dial("tcp", lnB.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Write(frame); err != nil {
			t.Fatal(err)
		}
		// The transport closes the connection: the read ends, after the
		// refusal for a node that is not a peer.
		if err := conn.SetReadDeadline(time.Now().Add(waitMax)); err != nil {
			t.Fatal(err)
		}
		answer, err := io.ReadAll(conn)
		if err != nil {
			t.Fatalf("%s: the connection stays open: %v", what, err)
		}
		want := map[string][]byte{"from an unknown": appendRefusal(nil, refusalUnknown), "from a removed": appendRefusal(nil, refusalRemoved)}[what]
		if !bytes.Equal(answer, want) {
			t.Fatalf("%s: answered %x, want %x", what, answer, want)
		}
		_ = conn.Close()
	}
	eventually(t, "every bad frame counted", func() error {
		if s := b.Stats(); s.FrameErrors != uint64(len(bad)) || s.RefusalsSent != 2 {
			return fmt.Errorf("%d frame errors, want %d; %d refusals sent, want 2", s.FrameErrors, len(bad), s.RefusalsSent)
		}
		return nil
	})
	if index, _ := got.snapshot(); len(index) != 0 {
		t.Fatalf("the handler got %d messages of bad frames", len(index))
	}
}
