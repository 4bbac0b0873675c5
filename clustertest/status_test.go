package clustertest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"slotd/internal/slotdtest"
	"slotd/internal/slotdtest/testtime"
)

// clusterStatus runs `slotd cluster status` with args and returns its
// exit status and output.
func (c *cluster) clusterStatus(args ...string) (int, string) {
	c.t.Helper()
	cmd := exec.Command(c.bin, append([]string{"cluster", "status"}, args...)...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		c.t.Fatal(err)
	}
	if errOut.Len() > 0 {
		c.t.Logf("slotd cluster status stderr: %s", errOut.String())
	}
	return cmd.ProcessState.ExitCode(), out.String()
}

// adminAddrs is every node's admin address, comma-separated, as
// `slotd cluster status -admin-addr` takes them.
func (c *cluster) adminAddrs() string {
	var a []string
	for _, n := range c.nodes {
		a = append(a, n.admin)
	}
	return strings.Join(a, ",")
}

// clusterStatusView is `slotd cluster status -json` as the test reads it.
type clusterStatusView struct {
	Groups []struct {
		Group, Leader, Term, Commit uint64
		SnapshotIndex               uint64 `json:"snapshot_index"`
		Members                     []uint64
		Nodes                       []struct {
			Node       uint64
			Asked      bool
			Role       string
			Applied    uint64
			Match, Lag *uint64
		}
	}
	Unreachable []string
	Problems    []string
}

// `slotd cluster status` against a running three-node, two-group
// cluster: every group with its leader, its members, its term and
// commit index, each node's applied index and its lag behind the
// leader; 0 while all is well. With a node down it exits 1, says which
// node did not answer, and the leader's view shows the stopped node's
// lag growing past -max-lag; once the node is back and has caught up,
// -max-lag 0 holds again.
func TestClusterStatusCommand(t *testing.T) {
	c := startCluster(t, slotdtest.Build(t), 3, 2)
	c.leader(1)
	c.leader(2)
	var view clusterStatusView
	testtime.Eventually(t, waitFor, "cluster status exits 0", func() error {
		code, out := c.clusterStatus("-admin-addr", c.adminAddrs(), "-json", "-max-lag", "0")
		view = clusterStatusView{}
		if err := json.Unmarshal([]byte(out), &view); err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		if code != 0 {
			return fmt.Errorf("exit %d: %v", code, view.Problems)
		}
		return nil
	})
	if len(view.Groups) != 2 {
		t.Fatalf("%d groups, want 2: %+v", len(view.Groups), view)
	}
	for _, g := range view.Groups {
		if g.Leader == 0 || g.Term == 0 || g.Commit == 0 || g.SnapshotIndex != 1 || !slices.Equal(g.Members, []uint64{1, 2, 3}) || len(g.Nodes) != 3 {
			t.Fatalf("group %d: %+v", g.Group, g)
		}
		for _, n := range g.Nodes {
			wantRole := "follower"
			if n.Node == g.Leader {
				wantRole = "leader"
			}
			if !n.Asked || n.Role != wantRole || n.Applied == 0 || n.Applied > g.Commit || n.Match == nil || n.Lag == nil || *n.Lag != 0 {
				t.Fatalf("group %d, node %d: %+v", g.Group, n.Node, n)
			}
		}
	}
	code, table := c.clusterStatus("-admin-addr", c.adminAddrs())
	lines := strings.Split(strings.TrimSpace(table), "\n")
	if code != 0 || len(lines) != 7 || !strings.HasPrefix(lines[0], "GROUP  LEADER  TERM  COMMIT  SNAPSHOT  NODE  ROLE") {
		t.Fatalf("the table: exit %d:\n%s", code, table)
	}
	t.Logf("slotd cluster status:\n%s", table)

	// Node 3 stops; writes go on without it.
	down := c.nodes[2]
	down.kill()
	for i := range 20 {
		n := c.nodes[i%2]
		body := fmt.Sprintf(`{"office":"msk-mfc-tverskoy","service":"patent","applicant":"st-%d","earliest_after":"%sT10:00:00+03:00","confirm":true}`, i, nextWeekday(3))
		testtime.Eventually(t, waitFor, "a booking", func() error {
			if status, out, err := n.call("POST", "/v1/bookings", body, fmt.Sprintf("st-%d", i)); err != nil || status != 201 {
				return fmt.Errorf("%d %v %v", status, out, err)
			}
			return nil
		})
	}
	code, out := c.clusterStatus("-admin-addr", c.adminAddrs(), "-json", "-max-lag", "5")
	view = clusterStatusView{}
	if err := json.Unmarshal([]byte(out), &view); err != nil {
		t.Fatal(err, out)
	}
	if code != 1 || len(view.Unreachable) != 1 || !strings.HasPrefix(view.Unreachable[0], down.admin) {
		t.Fatalf("with node 3 down: exit %d, unreachable %v, want 1 and node 3's address", code, view.Unreachable)
	}
	lagging := false
	for _, p := range view.Problems {
		lagging = lagging || strings.Contains(p, "node 3 lacks")
	}
	if !lagging {
		t.Fatalf("with node 3 down and 20 bookings made since: no problem names its lag: %v\n%s", view.Problems, out)
	}
	code, table = c.clusterStatus("-admin-addr", c.adminAddrs())
	if code != 1 || !strings.Contains(table, "unreachable: "+down.admin) {
		t.Fatalf("the table with node 3 down: exit %d:\n%s", code, table)
	}
	t.Logf("slotd cluster status, node 3 down:\n%s", table)

	down.start()
	testtime.Eventually(t, waitFor, "node 3 caught up", func() error {
		if code, out := c.clusterStatus("-admin-addr", c.adminAddrs(), "-max-lag", "0"); code != 0 {
			return fmt.Errorf("exit %d:\n%s", code, out)
		}
		return nil
	})
}
