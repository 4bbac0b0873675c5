package main

import (
	"bytes"
	"strings"
	"testing"
)

// assembleView's verdicts, from made-up reports of a three-node group:
// each case is the reports and the problems that must (or must not) be
// found.
func TestClusterStatusVerdicts(t *testing.T) {
	leader := groupStatus{Group: 1, Leader: 1, Term: 4, Applied: 90, Commit: 90, LastIndex: 90, SnapshotIndex: 1, Members: []uint64{1, 2, 3}, Engine: true,
		Followers: []followerStatus{{Node: 2, Match: 90}, {Node: 3, Match: 40, Lag: 50}}}
	follower := func(node uint64, leaderID uint64) nodeStatus {
		return nodeStatus{Node: node, Groups: []groupStatus{{Group: 1, Leader: leaderID, Term: 4, Applied: 90, Commit: 90, Members: []uint64{1, 2, 3}}}}
	}
	f := func(reports []nodeStatus, maxLag int64, want ...string) {
		t.Helper()
		v := assembleView(reports, maxLag)
		got := strings.Join(v.Problems, "\n")
		if len(want) == 0 && got != "" {
			t.Fatalf("problems %q, want none", got)
		}
		for _, w := range want {
			if !strings.Contains(got, w) {
				t.Fatalf("problems %q, want one saying %q", got, w)
			}
		}
	}
	all := []nodeStatus{{Node: 1, Groups: []groupStatus{leader}}, follower(2, 1), follower(3, 1)}
	f(all, -1)
	f(all, 50)
	f(all, 49, "group 1: node 3 lacks 50 entries")
	f(all[1:], -1)
	f(all[1:], 100, "its leader, node 1, was not asked")
	f([]nodeStatus{follower(2, 0), follower(3, 0)}, -1, "group 1 has no leader")
	f([]nodeStatus{{Node: 1, Groups: []groupStatus{leader}}, follower(2, 0)}, -1, "group 1: node 2 knows no leader")

	// The table: a row per member, the leader's tracking where a member
	// was not asked.
	var b bytes.Buffer
	printView(&b, assembleView(all[:1], -1))
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 4 || !strings.Contains(lines[3], "unknown") || !strings.Contains(lines[3], "40") || !strings.Contains(lines[3], "50") {
		t.Fatalf("the table of the leader's report alone:\n%s", b.String())
	}
}
