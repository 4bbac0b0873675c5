package main

import (
	"testing"
	"time"
)

func TestTransferPlanSpreadsLeaders(t *testing.T) {
	for _, tc := range []struct {
		name    string
		self    uint64
		leaders []uint64 // by group 1..
		group   uint64
		to      uint64
		ok      bool
	}{
		{name: "all on me", self: 1, leaders: []uint64{1, 1, 1, 1}, group: 4, to: 2, ok: true},
		{name: "one more than the least: stay", self: 1, leaders: []uint64{1, 1, 2, 3}},
		{name: "spread", self: 1, leaders: []uint64{1, 2, 3, 1}},
		{name: "not mine to move", self: 2, leaders: []uint64{1, 1, 1, 1}},
		{name: "an election under way", self: 1, leaders: []uint64{1, 1, 1, 0}},
		{name: "two ahead of node 3", self: 2, leaders: []uint64{2, 2, 1, 1, 2, 1}, group: 5, to: 3, ok: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &front{self: tc.self, node: nil}
			for i := range tc.leaders {
				f.groups = append(f.groups, uint64(i+1))
			}
			status := func(g uint64) uint64 { return tc.leaders[g-1] }
			g, to, ok := transferPlanOf(f.self, f.groups, []uint64{1, 2, 3}, status)
			if g != tc.group || to != tc.to || ok != tc.ok {
				t.Fatalf("plan %d → %d %v, want %d → %d %v", g, to, ok, tc.group, tc.to, tc.ok)
			}
		})
	}
}

func TestInContactNeedsAMajority(t *testing.T) {
	now := time.Unix(1000, 0)
	fresh, stale := now.Add(-100*time.Millisecond), now.Add(-2*time.Second)
	for _, tc := range []struct {
		name  string
		heard []time.Time
		want  bool
	}{
		{"alone in a cluster of one", nil, true},
		{"both peers heard", []time.Time{fresh, fresh}, true},
		{"one peer of two heard", []time.Time{fresh, stale}, true},
		{"cut off from both", []time.Time{stale, stale}, false},
		{"never heard", []time.Time{{}, {}}, false},
		{"two of four peers heard", []time.Time{fresh, fresh, stale, stale}, true},
		{"one of four peers heard", []time.Time{fresh, stale, stale, stale}, false},
	} {
		if got := inContact(now, tc.heard, 500*time.Millisecond); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// A peer that lost a leadership to this node lately — one that stops,
// handing its groups away — is no target of the balancer until
// handBackAfter has passed, so that its groups are not handed back to it.
func TestBalanceTargetsSkipAPeerThatHandedUsAGroup(t *testing.T) {
	now := time.Unix(1000, 0)
	handedUs := map[uint64]time.Time{2: now.Add(-time.Second), 3: now.Add(-handBackAfter)}
	got := balanceTargets([]uint64{1, 2, 3}, handedUs, now)
	if len(got) != 2 || got[0] != 1 || got[1] != 3 {
		t.Fatalf("targets %v, want [1 3]: node 2 handed a group a second ago, node 3 a window ago", got)
	}
	// With node 2 out of the targets, the node leading all four groups
	// hands one to node 3, not to node 2, which leads none.
	leaders := []uint64{1, 1, 1, 3, 3}
	g, to, ok := transferPlanOf(1, []uint64{1, 2, 3, 4, 5}, got, func(g uint64) uint64 { return leaders[g-1] })
	if ok {
		t.Fatalf("plan %d → %d, want none: node 3 leads two, this node three", g, to)
	}
	leaders = []uint64{1, 1, 1, 1, 3}
	if g, to, ok = transferPlanOf(1, []uint64{1, 2, 3, 4, 5}, got, func(g uint64) uint64 { return leaders[g-1] }); !ok || to != 3 {
		t.Fatalf("plan %d → %d %v, want a group to node 3", g, to, ok)
	}
}
