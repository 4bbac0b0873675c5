package raftlog

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"

	"slotd/wal"
)

// writeHistory gives groups 1..4 each a different history: plain appends,
// an overwritten suffix, a compaction, a local snapshot, a received
// snapshot followed by entries, and a hard state.
func writeHistory(t testing.TB, s *Store, rng *rand.Rand) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.Append([]Update{
		{Group: 1, Entries: entries(rng, 1, 1, 10, 100), HardState: hardState(1, 1, 5)},
		{Group: 2, Entries: entries(rng, 1, 1, 10, 100), HardState: hardState(1, 2, 3)},
		{Group: 3, Entries: entries(rng, 1, 1, 10, 100)},
		{Group: 4, Snapshot: snapshot(20, 3, []byte("state at 20"), 1, 2, 3)},
	}))
	must(s.Append([]Update{
		// A new leader overwrites 6..10 with 6..7 of term 2.
		{Group: 2, Entries: entries(rng, 6, 2, 2, 50), HardState: hardState(2, 1, 7)},
		{Group: 4, Entries: entries(rng, 21, 3, 5, 80), HardState: hardState(3, 2, 25)},
	}))
	must(s.Compact(1, 4))
	_, err := s.CreateSnapshot(3, 8, &pb.ConfState{Voters: []uint64{1, 2, 3}}, []byte("state at 8"))
	must(err)
	must(s.Compact(3, 8))
}

// TestRestartKeepsState: everything written is read the same after the
// store is closed and opened again, from Pebble alone (R2, R5).
func TestRestartKeepsState(t *testing.T) {
	dir := t.TempDir()
	o := openAt(t, nil, dir, Options{})
	writeHistory(t, o.s, rand.New(rand.NewPCG(1, 2)))
	before := map[uint64]string{}
	for _, g := range o.s.Groups() {
		before[g] = dump(t, o.s.Group(g))
	}
	o.close(t)

	o = openAt(t, nil, dir, Options{})
	defer o.close(t)
	if got := o.s.Groups(); len(got) != 4 {
		t.Fatalf("groups after restart %v, want 1..4", got)
	}
	for g, want := range before {
		if got := dump(t, o.s.Group(g)); got != want {
			t.Errorf("group %d after restart:\n%s\nwant:\n%s", g, got, want)
		}
	}
	if st := o.s.Stats(); st.StoredEntryReads == 0 || st.CachedEntryReads != 0 {
		t.Fatalf("after a restart entries come from Pebble: %+v", st)
	}
	// And the log goes on from where it was.
	g2 := o.s.Group(2)
	if last, _ := g2.LastIndex(); last != 7 {
		t.Fatalf("group 2 last index %d, want 7 (the overwritten suffix stays gone)", last)
	}
	if err := o.s.Append([]Update{{Group: 2, Entries: entries(rand.New(rand.NewPCG(3, 4)), 8, 2, 1, 10)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := g2.Term(8); err != nil {
		t.Fatal(err)
	}
}

// TestOpenRefusesForeignRegion: raft keys without the format stamp are
// not read as a log (R6).
func TestOpenRefusesForeignRegion(t *testing.T) {
	dir := t.TempDir()
	db, err := wal.Open(dir, testWALOptions(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	b := db.RaftRegion().NewBatch()
	defer b.Close()
	b.Set(entryKey(nil, db.RaftRegion().Prefix(), 1, 1), []byte("x"))
	if err := b.Commit(true); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(db.RaftRegion(), Options{}); !errors.Is(err, ErrFormat) {
		t.Fatalf("Open of a region without a stamp: %v, want ErrFormat", err)
	}
}

// TestOpenRefusesCorruptEntry: a stored entry that is not the one its key
// names stops a read with ErrCorrupt naming the key (R6).
func TestOpenRefusesCorruptEntry(t *testing.T) {
	dir := t.TempDir()
	o := openAt(t, nil, dir, Options{CacheBytes: 1})
	defer o.close(t)
	rng := rand.New(rand.NewPCG(5, 6))
	if err := o.s.Append([]Update{{Group: 1, Entries: entries(rng, 1, 1, 3, 10)}}); err != nil {
		t.Fatal(err)
	}
	// Entry 2's value under entry 3's key.
	b := o.db.RaftRegion().NewBatch()
	defer b.Close()
	b.Set(entryKey(nil, o.s.prefix, 1, 3), appendProto(nil, entry(rng, 2, 1, 10)))
	if err := b.Commit(true); err != nil {
		t.Fatal(err)
	}
	g := o.s.Group(1)
	if _, err := g.Entries(1, 4, 1<<20); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Entries over a corrupt entry: %v, want ErrCorrupt", err)
	}
	if _, err := g.Term(3); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Term of a corrupt entry: %v, want ErrCorrupt", err)
	}
	if ents, err := g.Entries(1, 3, 1<<20); err != nil || len(ents) != 2 {
		t.Fatalf("Entries before the corrupt one: %d, %v", len(ents), err)
	}
	if _, err := g.Term(0); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Entries(0, 1, 0); err != raft.ErrCompacted {
		t.Fatalf("Entries(0): %v, want raft.ErrCompacted unwrapped", err)
	}
}

// TestConcurrentReadsSeeWholeBatches: readers of a group never see a
// batch in part while a writer appends, overwrites its tail and compacts
// (R3): every read is a contiguous run whose terms never fall, as the log
// is at every moment. Half the entries are read from Pebble (a small
// cache), so the run crosses from Pebble to the cache too.
func TestConcurrentReadsSeeWholeBatches(t *testing.T) {
	o := openAt(t, nil, t.TempDir(), Options{CacheBytes: 2 << 10})
	defer o.close(t)
	g := o.s.Group(1)
	rng := rand.New(rand.NewPCG(11, 12))
	if err := o.s.Append([]Update{{Group: 1, Entries: entries(rng, 1, 1, 20, 100)}}); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	errs := make(chan error, 4)
	for r := range 3 {
		go func() {
			rng := rand.New(rand.NewPCG(uint64(r), 13))
			for {
				select {
				case <-done:
					errs <- nil
					return
				default:
				}
				first, _ := g.FirstIndex()
				last, _ := g.LastIndex() // never falls: the writer does not shorten the log
				lo := first + rng.Uint64N(last-first+1)
				ents, err := g.Entries(lo, last+1, 1<<20)
				if err == raft.ErrCompacted {
					continue
				}
				if err != nil {
					errs <- err
					return
				}
				for i, e := range ents {
					if e.GetIndex() != lo+uint64(i) || (i > 0 && e.GetTerm() < ents[i-1].GetTerm()) {
						errs <- fmt.Errorf("read [%d, %d): entry %d/%d after %d/%d", lo, last+1, e.GetIndex(), e.GetTerm(), ents[max(i, 1)-1].GetIndex(), ents[max(i, 1)-1].GetTerm())
						return
					}
				}
			}
		}()
	}
	last, term := uint64(20), uint64(1)
	for n := 0; n < 300; n++ {
		// Overwrite from a random place in the last ten entries, with a
		// new term, and end at least where the log ended.
		term++
		e0 := last - rng.Uint64N(10)
		count := int(last-e0) + 1 + rng.IntN(4)
		if err := o.s.Append([]Update{{Group: 1, Entries: entries(rng, e0, term, count, 100)}}); err != nil {
			t.Fatal(err)
		}
		last = e0 + uint64(count) - 1
		if n%20 == 19 {
			if err := o.s.Compact(1, last-15); err != nil {
				t.Fatal(err)
			}
		}
	}
	close(done)
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
