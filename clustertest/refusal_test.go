package clustertest

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"

	"slotd/internal/slotdtest"
	"slotd/internal/slotdtest/testtime"
)

// refusedLine is what a node logs for each connection of a node that is
// not a member, which it refuses.
const refusedLine = "refused the Raft traffic of a node that is not a member"

// refusalsLogged counts refusedLine in the logs of nodes among.
func refusalsLogged(among ...*node) int {
	sum := 0
	for _, n := range among {
		sum += strings.Count(n.tail(1<<30), refusedLine)
	}
	return sum
}

// refusalsSent reads slotd_cluster_refusals_sent_total from n's metrics.
func refusalsSent(t *testing.T, n *node) float64 {
	t.Helper()
	resp, err := client.Get("http://" + n.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for l := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "slotd_cluster_refusals_sent_total "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("node %d: %q: %v", n.id, l, err)
			}
			return f
		}
	}
	t.Fatalf("node %d exports no slotd_cluster_refusals_sent_total", n.id)
	return 0
}

// exits waits until n's process exits, and returns an error unless it
// exited 1 with a log that holds want; or unless it still runs after
// the nodes among refused its connections six times (the broken
// variant: nothing tells it).
func (n *node) exits(want string, among ...*node) error {
	base := refusalsLogged(among...)
	var ran error
	err := testtime.Poll(waitFor, func() error {
		if !n.up() {
			return nil
		}
		if seen := refusalsLogged(among...) - base; seen >= 6 {
			ran = fmt.Errorf("node %d runs on after %d of its connections were refused", n.id, seen)
			return nil
		}
		return errors.New("runs")
	})
	switch {
	case err != nil:
		return fmt.Errorf("node %d neither exited nor was refused: %w", n.id, err)
	case ran != nil:
		return ran
	}
	n.mu.Lock()
	code := n.cmd.ProcessState.ExitCode()
	n.mu.Unlock()
	if log := n.tail(1 << 20); code != 1 || !strings.Contains(log, want) {
		return fmt.Errorf("node %d exited %d; want 1 and %q in its log:\n%s", n.id, code, want, n.tail(2000))
	}
	for l := range strings.SplitSeq(n.tail(1<<20), "\n") {
		if strings.Contains(l, want) {
			n.c.t.Logf("node %d exited 1: %s", n.id, l)
		}
	}
	return nil
}

// removedWhileDead: node 3 is killed with SIGKILL and removed (slotd
// cluster remove) while nodes 1 and 2 take bookings, then started again
// on its data directory, whose stores still name it a member: no leader
// sends it anything, so it can never apply its removal. It exits 1 with
// "this node was removed from the cluster" once nodes 1 or 2 refuse its
// first frame (cluster invariant M7), and a start after that refuses
// the data directory at once. Nodes 1 and 2 book throughout, and hold
// every booking they acknowledged. env is every node's environment.
func removedWhileDead(t *testing.T, env []string) error {
	c := startClusterWith(t, slotdtest.Build(t), 3, 2, false, env)
	c.leader(1)
	c.leader(2)
	n1, n2, n3 := c.nodes[0], c.nodes[1], c.nodes[2]
	date := nextWeekday(3)
	offices := rollingOffices
	var rushes []*rush
	for i, o := range offices {
		rushes = append(rushes, c.startRushFrom(o, date, 2, int64(1_000_000*(1+i)), false))
	}
	n3.kill()
	if code, out := c.clusterCmd("remove", "-node", "3", "-admin-addr", n1.admin+","+n2.admin); code != 0 {
		t.Fatalf("slotd cluster remove -node 3: exit %d: %s", code, out)
	}
	acked := func() []int {
		var out []int
		for _, r := range rushes {
			r.mu.Lock()
			out = append(out, len(r.acks))
			r.mu.Unlock()
		}
		return out
	}
	before := acked()
	n3.launch()
	err := n3.exits("this node was removed from the cluster", n1, n2)
	if err == nil {
		n3.launch()
		err = n3.exits("the cluster refused this data directory for good", n1, n2)
	}
	if err == nil {
		if sent := refusalsSent(t, n1) + refusalsSent(t, n2); sent == 0 {
			err = errors.New("slotd_cluster_refusals_sent_total is 0 on nodes 1 and 2")
		}
	}
	n3.kill()
	testtime.Eventually(t, waitFor, "nodes 1 and 2 acknowledge bookings at every office after node 3's start", func() error {
		for i, n := range acked() {
			if n <= before[i] {
				return fmt.Errorf("%s: %d acknowledged, as before node 3 started", offices[i], n)
			}
		}
		return nil
	})
	var acks [][]booked
	for _, r := range rushes {
		acks = append(acks, r.end())
	}
	for g := range c.groups {
		c.converged(uint64(g + 1))
	}
	for _, n := range []*node{n1, n2} {
		for i, o := range offices {
			checkBooked(t, n, o, acks[i])
		}
	}
	return err
}

// A node removed while it was dead and started again on its data
// directory learns of its removal from the others and stops for good
// (cluster invariant M7). The broken variant, whose nodes close a
// non-member's connections unanswered (SLOTD_TEST_NO_REFUSALS), leaves
// it running.
func TestRemovedWhileDeadStops(t *testing.T) {
	if err := removedWhileDead(t, nil); err != nil {
		t.Fatal(err)
	}
	t.Run("no-refusals", func(t *testing.T) {
		if err := removedWhileDead(t, []string{"SLOTD_TEST_NO_REFUSALS=1"}); err == nil {
			t.Fatal("the removed node stopped without refusals: the test cannot tell")
		} else {
			t.Logf("broken variant caught: %v", err)
		}
	})
}

// A replacement node started with a new cluster's flags — an id the
// cluster does not know in its -peers, no -join — would create groups of
// its own: node 4 exits 1 saying the cluster does not know its id once a
// node refuses it (cluster invariant M8), and a start after that refuses
// its data directory, which must be emptied. Nodes 1, 2 and 3 go on.
func TestUnknownNodeWithoutJoinStops(t *testing.T) {
	c := startCluster(t, slotdtest.Build(t), 3, 1)
	n1, n2, n3 := c.nodes[0], c.nodes[1], c.nodes[2]
	n4 := c.joiner(4, n1, n2, n3)
	n4.args = nil // the mistake: no -join
	n4.launch()
	if err := n4.exits("the cluster does not know this node's id", n1, n2, n3); err != nil {
		t.Fatal(err)
	}
	n4.launch()
	if err := n4.exits("the cluster refused this data directory for good", n1, n2, n3); err != nil {
		t.Fatal(err)
	}
	r := c.startRushFrom(rollingOffices[0], nextWeekday(3), 2, 1_000_000, true)
	testtime.EventuallyTrue(t, waitFor, "nodes 1, 2 and 3 acknowledge a booking", func() bool {
		select {
		case <-r.firstOK:
			return true
		default:
			return false
		}
	})
	c.endRushes(rollingOffices[:1], []*rush{r})
}
