package raftlog

// The conformance oracle (invariant R5): the same random operations —
// Appends of several groups at once (new entries, overwritten suffixes,
// entries below the compacted index, snapshots, hard states), Compact,
// CreateSnapshot, restarts from disk — run against the Store and against
// one raft.MemoryStorage per group, and every read method of raft.Storage
// must answer the same after each operation: the same entries, terms,
// indexes, states, snapshots and errors. Each seed runs with no cache
// (every entry read from Pebble), a small cache (entries read partly from
// Pebble and partly from memory, evicted often) and the default one.
//
// A failure prints the seed and the operations that led to it. Scale a run
// with -oracle.ops and -oracle.seeds (for example -oracle.ops=20000).

import (
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

var (
	oracleOpsFlag   = flag.Int("oracle.ops", 600, "operations per seed in the oracle test")
	oracleSeedsFlag = flag.Int("oracle.seeds", 3, "seeds of the oracle test")
)

// oracleGroups is how many groups one run writes, several per Append.
const oracleGroups = 3

type oracleRun struct {
	t      *testing.T
	seed   uint64
	rng    *rand.Rand
	dir    string
	opts   Options
	o      opened
	models map[uint64]*raft.MemoryStorage
	terms  map[uint64]uint64 // each group's current term: entries are written with it
	ops    []string          // the latest operations, for the failure message
}

func (r *oracleRun) note(format string, args ...any) {
	r.ops = append(r.ops, fmt.Sprintf(format, args...))
	if len(r.ops) > 30 {
		r.ops = r.ops[1:]
	}
}

func (r *oracleRun) fail(format string, args ...any) {
	r.t.Helper()
	r.t.Fatalf("seed %d: %s\nlast operations:\n  %s", r.seed, fmt.Sprintf(format, args...), strings.Join(r.ops, "\n  "))
}

func TestOracleMemoryStorage(t *testing.T) {
	caches := []struct {
		name  string
		bytes int64
	}{{"none", 1}, {"small", 2 << 10}, {"default", 0}}
	for seed := uint64(1); seed <= uint64(*oracleSeedsFlag); seed++ {
		for _, c := range caches {
			t.Run(fmt.Sprintf("seed=%d/cache=%s", seed, c.name), func(t *testing.T) {
				r := &oracleRun{
					t: t, seed: seed, rng: rand.New(rand.NewPCG(seed, seed^0x5eed)),
					dir: t.TempDir(), opts: Options{CacheBytes: c.bytes},
					models: map[uint64]*raft.MemoryStorage{}, terms: map[uint64]uint64{},
				}
				r.o = openAt(t, nil, r.dir, r.opts)
				defer func() {
					if r.o.db != nil {
						r.o.close(t)
					}
				}()
				for g := uint64(1); g <= oracleGroups; g++ {
					r.models[g] = raft.NewMemoryStorage()
					r.terms[g] = 1
				}
				for n := 0; n < *oracleOpsFlag; n++ {
					r.step()
					if n%100 == 99 {
						for g := uint64(1); g <= oracleGroups; g++ {
							r.check(g, true)
						}
					}
				}
				for g := uint64(1); g <= oracleGroups; g++ {
					r.check(g, true)
				}
				st := r.o.s.Stats()
				t.Logf("appends %d, entries read from the cache %d, from Pebble %d", st.Appends, st.CachedEntryReads, st.StoredEntryReads)
			})
		}
	}
}

// step runs one random operation on both sides and compares the groups
// it touched.
func (r *oracleRun) step() {
	g := 1 + r.rng.Uint64N(oracleGroups)
	switch p := r.rng.IntN(100); {
	case p < 60:
		r.appendOp()
		return // appendOp checks its groups
	case p < 75:
		r.compactOp(g)
	case p < 85:
		r.createSnapshotOp(g)
	case p < 87:
		r.restart()
		for g := uint64(1); g <= oracleGroups; g++ {
			r.check(g, true)
		}
		return
	default:
		r.note("read group %d", g)
	}
	r.check(g, false)
}

// bounds returns the model's first index, last index and snapshot index.
func (r *oracleRun) bounds(g uint64) (first, last, snap uint64) {
	m := r.models[g]
	first, _ = m.FirstIndex()
	last, _ = m.LastIndex()
	s, _ := m.Snapshot()
	return first, last, s.GetMetadata().GetIndex()
}

// pick returns a random value in lo..hi (lo if hi < lo).
func (r *oracleRun) pick(lo, hi uint64) uint64 {
	if hi <= lo {
		return lo
	}
	return lo + r.rng.Uint64N(hi-lo+1)
}

// randomEntry returns entry i of term with a random payload: none, empty
// but present, or up to 300 bytes, and sometimes an explicit type; the
// size raft measures (proto.Size) depends on each.
func (r *oracleRun) randomEntry(i, term uint64) *pb.Entry {
	e := entry(r.rng, i, term, r.rng.IntN(300))
	switch r.rng.IntN(6) {
	case 0:
		e.Data = nil
	case 1:
		e.Data = []byte{}
	case 2:
		e.Type = pb.EntryType_EntryConfChange.Enum()
	case 3:
		e.Type = pb.EntryType_EntryNormal.Enum()
	}
	return e
}

// appendOp appends updates for a random set of groups in one Append.
func (r *oracleRun) appendOp() {
	var updates []Update
	stale := false
	for _, g := range r.rng.Perm(oracleGroups)[:1+r.rng.IntN(oracleGroups)] {
		g := uint64(g) + 1
		first, last, snapIndex := r.bounds(g)
		u := Update{Group: g}
		if r.rng.IntN(10) == 0 {
			index := r.pick(snapIndex+1, last+4)
			if snapIndex > 0 && r.rng.IntN(5) == 0 {
				index = r.pick(1, snapIndex) // not newer: refused
				stale = true
			}
			r.terms[g] += r.rng.Uint64N(2)
			data := make([]byte, r.rng.IntN(64))
			for i := range data {
				data[i] = byte(r.rng.Uint32())
			}
			u.Snapshot = snapshot(index, r.terms[g], data, 1, 2, 1+r.rng.Uint64N(5))
			if !stale {
				first, last = index+1, index
			}
		}
		if n := r.rng.IntN(9); n > 0 {
			// Mostly at the end; sometimes over the tail, with a new
			// term, as a new leader overwrites; sometimes partly below
			// the compacted index.
			e0 := last + 1
			if r.rng.IntN(3) == 0 {
				e0 = r.pick(max(first, 3)-2, last+1)
			}
			if e0 <= last {
				r.terms[g]++
			}
			for i := range uint64(n) {
				u.Entries = append(u.Entries, r.randomEntry(e0+i, r.terms[g]))
			}
			if end := e0 + uint64(n) - 1; end >= first {
				last = end
			}
		}
		if r.rng.IntN(2) == 0 {
			u.HardState = hardState(r.terms[g], r.rng.Uint64N(4), r.pick(0, last))
		}
		updates = append(updates, u)
	}
	r.note("append %s", describe(updates))
	err := r.o.s.Append(updates)
	if stale {
		if !sameErr(err, raft.ErrSnapOutOfDate) {
			r.fail("append with an old snapshot: %v, want ErrSnapOutOfDate", err)
		}
	} else {
		if err != nil {
			r.fail("append: %v", err)
		}
		for _, u := range updates {
			m := r.models[u.Group]
			if !raft.IsEmptySnap(u.Snapshot) {
				if err := m.ApplySnapshot(proto.Clone(u.Snapshot).(*pb.Snapshot)); err != nil {
					r.fail("model apply snapshot: %v", err)
				}
			}
			// The model gets copies: equal answers must not come from
			// shared pointers.
			ents := make([]*pb.Entry, len(u.Entries))
			for i, e := range u.Entries {
				ents[i] = proto.Clone(e).(*pb.Entry)
			}
			if err := m.Append(ents); err != nil {
				r.fail("model append: %v", err)
			}
			if !raft.IsEmptyHardState(u.HardState) {
				_ = m.SetHardState(proto.Clone(u.HardState).(*pb.HardState))
			}
		}
	}
	for _, u := range updates {
		r.check(u.Group, false)
	}
}

func describe(updates []Update) string {
	var b strings.Builder
	for _, u := range updates {
		fmt.Fprintf(&b, "[g%d", u.Group)
		if !raft.IsEmptySnap(u.Snapshot) {
			fmt.Fprintf(&b, " snap %d/%d", u.Snapshot.GetMetadata().GetIndex(), u.Snapshot.GetMetadata().GetTerm())
		}
		if n := len(u.Entries); n > 0 {
			fmt.Fprintf(&b, " entries %d..%d term %d", u.Entries[0].GetIndex(), u.Entries[n-1].GetIndex(), u.Entries[0].GetTerm())
		}
		if u.HardState != nil {
			fmt.Fprintf(&b, " hs %d/%d/%d", u.HardState.GetTerm(), u.HardState.GetVote(), u.HardState.GetCommit())
		}
		b.WriteString("] ")
	}
	return b.String()
}

func (r *oracleRun) compactOp(g uint64) {
	first, last, _ := r.bounds(g)
	index := r.pick(max(first, 2)-2, last) // sometimes already compacted
	r.note("compact group %d through %d", g, index)
	want := r.models[g].Compact(index)
	if got := r.o.s.Compact(g, index); !sameErr(got, want) {
		r.fail("compact %d: %v, want %v", index, got, want)
	}
}

func (r *oracleRun) createSnapshotOp(g uint64) {
	first, last, snapIndex := r.bounds(g)
	index := r.pick(first-1, last)
	if snapIndex > 0 && r.rng.IntN(5) == 0 {
		index = r.pick(max(first-1, 1), snapIndex) // not newer: refused, if still in the log
		if index > snapIndex {
			index = snapIndex
		}
		if index < first-1 {
			return
		}
	}
	var cs *pb.ConfState
	if r.rng.IntN(2) == 0 {
		cs = &pb.ConfState{Voters: []uint64{1, 2, 3}, Learners: []uint64{4 + r.rng.Uint64N(3)}}
	}
	data := []byte(fmt.Sprintf("state of %d at %d", g, index))
	r.note("create snapshot group %d at %d conf %v", g, index, cs)
	var modelCS *pb.ConfState
	if cs != nil {
		modelCS = proto.Clone(cs).(*pb.ConfState)
	}
	want, werr := r.models[g].CreateSnapshot(index, modelCS, data)
	got, gerr := r.o.s.CreateSnapshot(g, index, cs, data)
	if !sameErr(gerr, werr) {
		r.fail("create snapshot at %d: %v, want %v", index, gerr, werr)
	}
	if werr == nil {
		if d := sameSnapshot(got, want); d != "" {
			r.fail("create snapshot at %d: %s", index, d)
		}
	}
}

// restart closes the store and opens it again from disk: the state must
// be the same (recovery, R2).
func (r *oracleRun) restart() {
	r.note("restart")
	r.o.close(r.t)
	r.o = opened{}
	r.o = openAt(r.t, nil, r.dir, r.opts)
}

// check compares every read method of group g with the model's: at the
// log's edges and a few random places, or everywhere when full.
func (r *oracleRun) check(g uint64, full bool) {
	r.t.Helper()
	m, s := r.models[g], r.o.s.Group(g)
	mf, _ := m.FirstIndex()
	ml, _ := m.LastIndex()
	sf, err1 := s.FirstIndex()
	sl, err2 := s.LastIndex()
	if sf != mf || sl != ml || err1 != nil || err2 != nil {
		r.fail("group %d: indexes %d..%d (%v %v), want %d..%d", g, sf, sl, err1, err2, mf, ml)
	}
	mhs, mcs, _ := m.InitialState()
	shs, scs, err := s.InitialState()
	if err != nil || !proto.Equal(shs, mhs) || !proto.Equal(scs, mcs) {
		r.fail("group %d: initial state %v %v (%v), want %v %v", g, shs, scs, err, mhs, mcs)
	}
	msnap, _ := m.Snapshot()
	ssnap, err := s.Snapshot()
	if err != nil {
		r.fail("group %d: snapshot: %v", g, err)
	}
	if d := sameSnapshot(ssnap, msnap); d != "" {
		r.fail("group %d: %s", g, d)
	}
	// Terms: from two below the first index to two past the last.
	lo, hi := max(mf, 2)-2, ml+2
	var terms []uint64
	if full {
		for i := lo; i <= hi; i++ {
			terms = append(terms, i)
		}
	} else {
		terms = []uint64{lo, mf - 1, mf, ml, ml + 1, r.pick(lo, hi), r.pick(lo, hi)}
	}
	for _, i := range terms {
		wt, werr := m.Term(i)
		gt, gerr := s.Term(i)
		if gt != wt || !sameErr(gerr, werr) {
			r.fail("group %d: term(%d) = %d, %v; want %d, %v", g, i, gt, gerr, wt, werr)
		}
	}
	// Entries: random ranges, with no limit, a tight one and none at all.
	n := 3
	if full {
		n = 20
	}
	for range n {
		lo := r.pick(max(mf, 2)-2, ml+1)
		hi := r.pick(lo, ml+1)
		var maxSize uint64
		switch r.rng.IntN(3) {
		case 0:
			maxSize = math.MaxUint64
		case 1:
			maxSize = r.rng.Uint64N(1000)
		}
		want, werr := m.Entries(lo, hi, maxSize)
		got, gerr := s.Entries(lo, hi, maxSize)
		if !sameErr(gerr, werr) {
			r.fail("group %d: entries [%d, %d) max %d: %v, want %v", g, lo, hi, maxSize, gerr, werr)
		}
		if d := sameEntries(got, want); d != "" {
			r.fail("group %d: entries [%d, %d) max %d: %s", g, lo, hi, maxSize, d)
		}
	}
}
