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
