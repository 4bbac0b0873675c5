package raftlog

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"slotd/wal"
)

// Test fixtures shared by the package's tests.

// testWALOptions keeps each test store's Pebble small: tests open many.
func testWALOptions(fs vfs.FS) wal.Options {
	return wal.Options{FS: fs, CacheBytes: 1 << 20, MemTableBytes: 1 << 20}
}

// opened is a raftlog Store on its own wal.DB.
type opened struct {
	db *wal.DB
	s  *Store
}

// openAt opens the wal store in dir (on fs; nil is the disk) and the
// raftlog Store in its region. The caller closes db (close does).
func openAt(t testing.TB, fs vfs.FS, dir string, opts Options) opened {
	t.Helper()
	db, err := wal.Open(dir, testWALOptions(fs))
	if err != nil {
		t.Fatalf("wal.Open: %v", err)
	}
	s, err := Open(db.RaftRegion(), opts)
	if err != nil {
		_ = db.Close()
		t.Fatalf("raftlog.Open: %v", err)
	}
	return opened{db: db, s: s}
}

func (o opened) close(t testing.TB) {
	t.Helper()
	if err := o.db.Close(); err != nil {
		t.Fatalf("wal close: %v", err)
	}
}

// entry returns entry i of term term with a payload of n random bytes.
func entry(rng *rand.Rand, i, term uint64, n int) *pb.Entry {
	e := &pb.Entry{Index: new(i), Term: new(term)}
	if n > 0 {
		e.Data = make([]byte, n)
		for j := range e.Data {
			e.Data[j] = byte(rng.Uint32())
		}
	}
	return e
}

// entries returns entries first..first+n-1 of term term with payloads of
// size bytes.
func entries(rng *rand.Rand, first, term uint64, n, size int) []*pb.Entry {
	out := make([]*pb.Entry, n)
	for i := range out {
		out[i] = entry(rng, first+uint64(i), term, size)
	}
	return out
}

// hardState returns a hard state.
func hardState(term, vote, commit uint64) *pb.HardState {
	return &pb.HardState{Term: new(term), Vote: new(vote), Commit: new(commit)}
}

// snapshot returns a snapshot at index of term with voters and data.
func snapshot(index, term uint64, data []byte, voters ...uint64) *pb.Snapshot {
	return &pb.Snapshot{Data: data, Metadata: &pb.SnapshotMetadata{
		Index: new(index), Term: new(term), ConfState: &pb.ConfState{Voters: voters},
	}}
}

// dump describes everything a group's raft.Storage answers, so that two
// states can be compared: after a restart, after a crash.
func dump(t testing.TB, st raft.Storage) string {
	t.Helper()
	var b strings.Builder
	hs, cs, err := st.InitialState()
	fmt.Fprintf(&b, "hard %v conf %v err %v\n", hs, cs, err)
	first, _ := st.FirstIndex()
	last, _ := st.LastIndex()
	fmt.Fprintf(&b, "first %d last %d\n", first, last)
	for i := first - 1; i <= last; i++ {
		term, err := st.Term(i)
		fmt.Fprintf(&b, "term(%d) %d %v\n", i, term, err)
	}
	if last >= first {
		ents, err := st.Entries(first, last+1, 1<<62)
		if err != nil {
			t.Fatalf("entries: %v", err)
		}
		for _, e := range ents {
			fmt.Fprintf(&b, "entry %d/%d type %v %x\n", e.GetIndex(), e.GetTerm(), e.GetType(), e.GetData())
		}
	}
	snap, err := st.Snapshot()
	fmt.Fprintf(&b, "snapshot %v data %x err %v\n", snap.GetMetadata(), snap.GetData(), err)
	return b.String()
}

// sameEntries reports how got and want differ, or "" if they do not.
func sameEntries(got, want []*pb.Entry) string {
	if len(got) != len(want) {
		return fmt.Sprintf("%d entries, want %d", len(got), len(want))
	}
	for i := range got {
		if !proto.Equal(got[i], want[i]) {
			return fmt.Sprintf("entry %d: %v, want %v", i, got[i], want[i])
		}
	}
	return ""
}

// sameSnapshot reports how got and want differ, or "" if they do not.
// A ConfState's AutoLeave of false counts the same whether it is set or
// not: MemoryStorage sets it in some answers and not in others.
func sameSnapshot(got, want *pb.Snapshot) string {
	norm := func(m *pb.SnapshotMetadata) *pb.SnapshotMetadata {
		return pb.EnsureSnapshotMetadata(proto.Clone(m).(*pb.SnapshotMetadata))
	}
	if !proto.Equal(norm(got.GetMetadata()), norm(want.GetMetadata())) || !bytes.Equal(got.GetData(), want.GetData()) {
		return fmt.Sprintf("snapshot %v data %x, want %v data %x", got.GetMetadata(), got.GetData(), want.GetMetadata(), want.GetData())
	}
	return ""
}

// sameErr reports whether got is want. raft compares its sentinels with
// ==, so the read methods must return them unwrapped.
func sameErr(got, want error) bool {
	if want == nil || got == nil {
		return got == want
	}
	return got == want || (errors.Is(got, want) && !isRaftSentinel(want))
}

func isRaftSentinel(err error) bool {
	return err == raft.ErrCompacted || err == raft.ErrUnavailable || err == raft.ErrSnapshotTemporarilyUnavailable
}
