package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"slotd/raftlog"
	"slotd/wal"
)

// lagSM is a toySM whose applied state reaches the disk lag entries late,
// as a store that does not sync each apply: DurableApplied reports what
// is on disk. It sends no snapshots.
type lagSM struct {
	*toySM
	lag uint64

	mu         sync.Mutex
	durableMax uint64 // guarded by mu: the highest index DurableApplied reported
}

func (s *lagSM) DurableApplied(group uint64) (uint64, error) {
	applied, _ := s.state(group)
	d := uint64(0)
	if applied > s.lag {
		d = applied - s.lag
	}
	s.mu.Lock()
	s.durableMax = max(s.durableMax, d)
	s.mu.Unlock()
	return d, nil
}

func (s *lagSM) SnapshotState(uint64) (SnapshotState, error) {
	return nil, errors.New("lagSM: no snapshots")
}

func (s *lagSM) StageSnapshot(uint64, io.Reader) (uint64, error) {
	return 0, errors.New("lagSM: no snapshots")
}

func (s *lagSM) InstallSnapshot(uint64, uint64) error { return errors.New("lagSM: no snapshots") }

// compactedWithin runs one node of one group whose state machine's disk
// lags 30 entries behind its applies, proposes 400 entries, and checks
// that the log was compacted, never past the durable applied index (S1),
// and keeps at most CompactEntriesMin + CompactMarginEntries applied
// entries (S2).
func compactedWithin(t *testing.T, broken bool) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	db, err := wal.Open(t.TempDir(), wal.Options{CacheBytes: 1 << 20, MemTableBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	store, err := raftlog.Open(db.RaftRegion(), raftlog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sm := &lagSM{toySM: newToySM(), lag: 30}
	const compactMin, margin = 40, 10
	n, err := NewNode(Config{
		ID: 1, Peers: []Peer{{ID: 1, Addr: ln.Addr().String()}}, Groups: []uint64{1}, Listener: ln,
		TickInterval: 5 * time.Millisecond, CompactEntriesMin: compactMin, CompactMarginEntries: margin,
	}, store, sm)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	n.testCompactIgnoresDurable.Store(broken)
	for i := 0; i < 400; {
		ctx, cancel := context.WithTimeout(context.Background(), waitMax)
		_, err := n.Propose(ctx, 1, fmt.Appendf(nil, "v%d", i))
		cancel()
		switch {
		case err == nil:
			i++
		case errors.Is(err, ErrNotLeader):
			time.Sleep(5 * time.Millisecond)
		default:
			t.Fatal(err)
		}
	}
	ls := n.LogStatus(1)
	sm.mu.Lock()
	durable := sm.durableMax
	sm.mu.Unlock()
	if n.Stats().Compactions == 0 {
		t.Fatalf("400 entries and no compaction (log %d..%d)", ls.FirstIndex, ls.LastIndex)
	}
	if kept := ls.LastIndex - ls.FirstIndex + 1; kept > compactMin+margin+sm.lag+1 {
		t.Fatalf("S2: the log keeps %d entries (%d..%d), the bound is %d", kept, ls.FirstIndex, ls.LastIndex, compactMin+margin+sm.lag+1)
	}
	if ls.FirstIndex-1 > durable {
		return fmt.Errorf("S1: the log was compacted through %d, the state is durable only through %d", ls.FirstIndex-1, durable)
	}
	return nil
}

// Cluster invariants S1 and S2: a log is compacted only through the
// durable applied index less the margin, and stays within its bound. The
// broken variant that compacts through the applied index, durable or
// not, must fail the check.
func TestCompactionKeepsDurableAppliedRule(t *testing.T) {
	if err := compactedWithin(t, false); err != nil {
		t.Fatal(err)
	}
	if err := compactedWithin(t, true); err == nil {
		t.Fatal("the compaction that ignores the durable applied index passed the S1 check")
	} else {
		t.Logf("broken variant caught: %v", err)
	}
}

func TestSnapshotDescriptorRoundTrip(t *testing.T) {
	d := snapshotDescriptor{group: 3, index: 1 << 40, term: 7}
	b := appendSnapshotDescriptor(nil, d)
	got, err := decodeSnapshotDescriptor(b)
	if err != nil || got != d {
		t.Fatalf("%+v, %v", got, err)
	}
	for _, bad := range [][]byte{nil, {2, 1, 1, 1}, b[:len(b)-1], append(b, 0)} {
		if _, err := decodeSnapshotDescriptor(bad); !errors.Is(err, ErrCorruptEntry) {
			t.Fatalf("%x: %v", bad, err)
		}
	}
}

// Cluster invariant S4: a node with a Snapshotter takes a snapshot
// message only with its state streamed and staged; one that arrives in a
// frame is refused, so raft never restores a snapshot whose state is not
// there to install (the lagSM refuses every install: the node would stop).
func TestSnapshotInFrameRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	db, err := wal.Open(t.TempDir(), wal.Options{CacheBytes: 1 << 20, MemTableBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	store, err := raftlog.Open(db.RaftRegion(), raftlog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	n, err := NewNode(Config{
		ID: 1, Peers: []Peer{{ID: 1, Addr: ln.Addr().String()}, {ID: 2, Addr: "127.0.0.1:1"}}, Groups: []uint64{1}, Listener: ln,
		TickInterval: 5 * time.Millisecond,
	}, store, &lagSM{toySM: newToySM()})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	m := &pb.Message{
		Type: pb.MessageType_MsgSnap.Enum(), From: new(uint64(2)), To: new(uint64(1)), Term: new(uint64(5)),
		Snapshot: &pb.Snapshot{
			Data:     appendSnapshotDescriptor(nil, snapshotDescriptor{group: 1, index: 100, term: 5}),
			Metadata: &pb.SnapshotMetadata{Index: new(uint64(100)), Term: new(uint64(5)), ConfState: &pb.ConfState{Voters: []uint64{1, 2}}},
		},
	}
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write(appendFrame(nil, 2, 1, []rawMessage{{group: 1, b: b}})); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the snapshot message is refused", func() error {
		if err := n.Err(); err != nil {
			return fmt.Errorf("the node stopped: %w", err)
		}
		if n.Stats().StepsRefused == 0 {
			return errors.New("not refused yet")
		}
		return nil
	})
	if err := n.Err(); err != nil {
		t.Fatalf("the node stopped: %v", err)
	}
}
