package raftlog

import (
	"math/rand/v2"
	"slices"
	"testing"

	pb "go.etcd.io/raft/v3/raftpb"
)

// TestMembershipRecord: the membership an Update stores is the ConfState
// InitialState and Snapshot return, from memory and after a restart, and
// a newer snapshot's ConfState takes over from an older record (R7).
func TestMembershipRecord(t *testing.T) {
	dir := t.TempDir()
	o := openAt(t, nil, dir, Options{})
	rng := rand.New(rand.NewPCG(5, 6))
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(o.s.Append([]Update{{Group: 1, Snapshot: snapshot(1, 1, nil, 1, 2, 3)}}))
	must(o.s.Append([]Update{{Group: 1, Entries: entries(rng, 2, 1, 5, 20), HardState: hardState(1, 1, 6)}}))
	changed := &pb.ConfState{Voters: []uint64{1, 2}, Learners: []uint64{4}}
	must(o.s.Append([]Update{{Group: 1, Membership: &Membership{Index: 4, ConfState: changed, Context: []byte("addresses")}}}))
	check := func(when string, s *Store) {
		t.Helper()
		g := s.Group(1)
		_, cs, err := g.InitialState()
		must(err)
		if !slices.Equal(cs.GetVoters(), []uint64{1, 2}) || !slices.Equal(cs.GetLearners(), []uint64{4}) {
			t.Fatalf("%s: InitialState's ConfState %v, want voters [1 2] learners [4] (R7)", when, cs)
		}
		snap, err := g.Snapshot()
		must(err)
		if cs := snap.GetMetadata().GetConfState(); !slices.Equal(cs.GetLearners(), []uint64{4}) || snap.GetMetadata().GetIndex() != 1 {
			t.Fatalf("%s: Snapshot %v, want index 1 naming learner 4 (R7)", when, snap.GetMetadata())
		}
		if m := g.Membership(); m == nil || m.Index != 4 || string(m.Context) != "addresses" {
			t.Fatalf("%s: Membership %+v, want the record at 4 with its context", when, m)
		}
	}
	check("before the restart", o.s)
	o.close(t)
	o = openAt(t, nil, dir, Options{})
	defer o.close(t)
	check("after the restart", o.s)

	// A snapshot received past the record names the membership from then on.
	must(o.s.Append([]Update{{Group: 1, Snapshot: snapshot(20, 2, []byte("state"), 1, 2, 4)}}))
	_, cs, err := o.s.Group(1).InitialState()
	must(err)
	if !slices.Equal(cs.GetVoters(), []uint64{1, 2, 4}) || len(cs.GetLearners()) != 0 {
		t.Fatalf("after a newer snapshot, ConfState %v, want the snapshot's voters [1 2 4]", cs)
	}
}
