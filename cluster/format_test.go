package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"slotd/raftlog"
	"slotd/wal"
)

// Format invariant V2: a frame of a version newer than this release
// reads is refused by name — the error says the version and the sender —
// the connection is closed, the refusal counted apart from malformed
// frames, and nothing of the frame reaches raft.
func TestFrameOfNewerVersionRefused(t *testing.T) {
	hb := rawMessage{group: 1, b: heartbeat(t, 1, 2, 1)}
	newer := appendFrame(nil, 1, 2, []rawMessage{hb})
	newer[frameLenBytes] = frameVersion + 1
	_, err := decodeFrame(newer)
	if !errors.Is(err, ErrNewerFormat) || !strings.Contains(err.Error(), fmt.Sprintf("frame version %d from node 1", frameVersion+1)) {
		t.Fatalf("decodeFrame of a version %d frame: %v, want ErrNewerFormat naming the version and the sender", frameVersion+1, err)
	}
	zero := appendFrame(nil, 1, 2, []rawMessage{hb})
	zero[frameLenBytes] = 0
	if _, err := decodeFrame(zero); err == nil || errors.Is(err, ErrNewerFormat) {
		t.Fatalf("a frame of version 0: %v, want a malformed frame, not a newer one", err)
	}

	lnB := listen(t)
	var got received
	var mu sync.Mutex
	var refused []error
	opts := TransportOptions{FrameRefused: func(err error) {
		mu.Lock()
		defer mu.Unlock()
		refused = append(refused, err)
	}}
	b := newTestTransport(t, 2, lnB, map[uint64]string{1: "127.0.0.1:1", 2: lnB.Addr().String()}, opts, got.handle)
	conn, err := net.Dial("tcp", lnB.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write(newer); err != nil {
		t.Fatal(err)
	}
	if err := conn.SetReadDeadline(time.Now().Add(waitMax)); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Read(make([]byte, 1)); err == nil {
		t.Fatal("the connection of a newer frame stays open")
	}
	eventually(t, "the newer frame refused and counted", func() error {
		if s := b.Stats(); s.FrameErrors != 1 || s.FramesNewer != 1 {
			return fmt.Errorf("%d frame errors, %d newer, want 1 and 1", s.FrameErrors, s.FramesNewer)
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	if len(refused) != 1 || !errors.Is(refused[0], ErrNewerFormat) {
		t.Fatalf("FrameRefused was told %v, want one ErrNewerFormat", refused)
	}
	if index, _ := got.snapshot(); len(index) != 0 {
		t.Fatalf("the handler got %d messages of a newer frame", len(index))
	}
}

// Format invariant V3: a committed entry of a format newer than this
// release reads stops the node's loop with ErrNewerFormat before the
// state machine sees it, and so does every later start on that log:
// the entry is never applied, whatever its bytes would have meant.
func TestEntryOfNewerFormatStopsTheNode(t *testing.T) {
	dir := t.TempDir()
	open := func() (*wal.DB, *raftlog.Store, net.Listener) {
		db, err := wal.Open(dir, wal.Options{CacheBytes: 1 << 20, MemTableBytes: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		store, err := raftlog.Open(db.RaftRegion(), raftlog.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return db, store, listen(t)
	}
	db, store, ln := open()
	sm := newToySM()
	n, err := NewNode(Config{ID: 1, Peers: []Peer{{1, ln.Addr().String()}}, Groups: []uint64{1}, Listener: ln, TickInterval: tickEvery}, store, sm)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the node applies a proposal", func() error {
		_, err := n.Propose(context.Background(), 1, []byte("a"))
		return err
	})
	// The node writes the entry as a newer release would; it cannot
	// read its own entry back, so the proposal is not found where it
	// landed and fails, and the entry, committed, stops the loop.
	n.testEntryVersion = FormatMax + 1
	if _, err := n.Propose(context.Background(), 1, []byte("b")); err == nil {
		t.Fatalf("a proposal of entry format %d was acknowledged", FormatMax+1)
	}
	select {
	case <-n.Done():
	case <-time.After(waitMax):
		t.Fatal("the node goes on running after an entry of a newer format was committed")
	}
	if err := n.Err(); !errors.Is(err, ErrNewerFormat) || !strings.Contains(err.Error(), fmt.Sprintf("entry format %d", FormatMax+1)) {
		t.Fatalf("Err: %v, want ErrNewerFormat naming the format", err)
	}
	if sm.holds(1, []byte("b")) || !sm.holds(1, []byte("a")) {
		t.Fatal("the state machine applied the entry of a newer format, or lost the one before it")
	}
	_ = n.Close()
	_ = db.Close()

	// The entry is committed in the log: a start on it stops there again.
	db, store, ln = open()
	defer db.Close()
	sm = newToySM()
	n, err = NewNode(Config{ID: 1, Peers: []Peer{{1, ln.Addr().String()}}, Groups: []uint64{1}, Listener: ln, TickInterval: tickEvery}, store, sm)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-n.Done():
	case <-time.After(waitMax):
		t.Fatal("a node on a log holding an entry of a newer format goes on running")
	}
	if err := n.Close(); !errors.Is(err, ErrNewerFormat) {
		t.Fatalf("restarted on the log: %v, want ErrNewerFormat", err)
	}
	if sm.holds(1, []byte("b")) {
		t.Fatal("the restarted node applied the entry of a newer format")
	}
}
