package clustertest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"slotd/internal/slotdtest"
	"slotd/internal/slotdtest/testtime"
)

// clusterCmd runs `slotd cluster SUB args…` and returns its exit status
// and output (stdout then stderr).
func (c *cluster) clusterCmd(sub string, args ...string) (int, string) {
	c.t.Helper()
	cmd := exec.Command(c.bin, append([]string{"cluster", sub}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		c.t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), out.String()
}

// startRushFrom is startRush with applicants (and idempotency keys)
// numbered from seq0, so that rushes at several offices, whose applicant
// limits hold across groups, do not book as the same applicants; armed
// closes the rush's firstOK at its first acknowledgement.
func (c *cluster) startRushFrom(office, date string, callers int, seq0 int64, armed bool) *rush {
	r := &rush{c: c, office: office, date: date, stop: make(chan struct{}), firstOK: make(chan struct{})}
	r.seq.Store(seq0)
	r.armed.Store(armed)
	for range callers {
		r.wg.Go(r.run)
	}
	return r
}

// joiner prepares node id to be added to the running nodes among: an
// empty data directory (but the cluster's ticket secret, which every node
// shares), -join, and -peers/-edges naming the nodes among and itself.
func (c *cluster) joiner(id int, among ...*node) *node {
	c.t.Helper()
	addrs := slotdtest.FreeAddrs(c.t, 3)
	n := &node{c: c, id: id, raft: addrs[0], addr: addrs[1], admin: addrs[2], data: filepath.Join(c.t.TempDir(), fmt.Sprintf("node%d", id)), args: []string{"-join"}}
	if err := os.MkdirAll(n.data, 0o700); err != nil {
		c.t.Fatal(err)
	}
	secret, err := os.ReadFile(filepath.Join(among[0].data, "ticket-secret"))
	if err != nil {
		c.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(n.data, "ticket-secret"), secret, 0o600); err != nil {
		c.t.Fatal(err)
	}
	var peers, edges []string
	for _, m := range append(among, n) {
		peers = append(peers, fmt.Sprintf("%d=%s", m.id, m.raft))
		edges = append(edges, fmt.Sprintf("%d=%s", m.id, m.addr))
	}
	n.peers, n.edges = strings.Join(peers, ","), strings.Join(edges, ",")
	c.t.Cleanup(func() {
		n.kill()
		if c.t.Failed() {
			c.t.Logf("node %d log tail:\n%s", n.id, n.tail(4000))
		}
	})
	return n
}

// Replacing a dead node, as the runbook does it, under a light booking
// load: node 3 is killed with SIGKILL and removed (slotd cluster remove);
// node 4 starts on an empty data directory with -join and is added
// (slotd cluster add: a learner in every group, then a voter once it
// caught up); its replicas then agree with the others'. Then node 1 is
// killed: the groups' quorum is now nodes 2 and 4, and writes still
// succeed; every acknowledged booking, before and after, is on 2 and 4
// with its seat, and no seat is owned twice.
func TestReplaceDeadNode(t *testing.T) {
	c := startCluster(t, slotdtest.Build(t), 3, 2)
	c.leader(1)
	c.leader(2)
	date := nextWeekday(3)
	offices := rollingOffices
	var rushes []*rush
	for i, o := range offices {
		rushes = append(rushes, c.startRushFrom(o, date, 2, int64(1_000_000*(1+i)), false))
	}
	time.Sleep(time.Second)
	n1, n2, n3 := c.nodes[0], c.nodes[1], c.nodes[2]
	n3.kill()
	admins := n1.admin + "," + n2.admin
	if code, out := c.clusterCmd("remove", "-node", "3", "-admin-addr", admins); code != 0 {
		t.Fatalf("slotd cluster remove -node 3: exit %d: %s", code, out)
	}
	// A second remove finds nothing to do; adding the removed id back is
	// refused, in one line, exit 1.
	if code, out := c.clusterCmd("remove", "-node", "3", "-admin-addr", admins); code != 0 {
		t.Fatalf("slotd cluster remove -node 3 again: exit %d: %s", code, out)
	}
	if code, out := c.clusterCmd("add", "-node", "3", "-raft-addr", n3.raft, "-api-addr", n3.addr, "-admin-addr", admins); code != 1 || !strings.Contains(out, "member_change_refused") {
		t.Fatalf("slotd cluster add -node 3 after its removal: exit %d: %s; want 1 and member_change_refused", code, out)
	}

	n4 := c.joiner(4, n1, n2)
	n4.launch()
	began := time.Now()
	if code, out := c.clusterCmd("add", "-node", "4", "-raft-addr", n4.raft, "-api-addr", n4.addr, "-admin-addr", admins, "-max-lag", "100"); code != 0 {
		t.Fatalf("slotd cluster add -node 4: exit %d: %s\nnode 4:\n%s", code, out, n4.tail(3000))
	}
	t.Logf("node 4 added and promoted in %v", time.Since(began).Round(time.Millisecond))
	n4.waitReady()
	var acks [][]booked
	for _, r := range rushes {
		acks = append(acks, r.end())
	}
	c.nodes = append(c.nodes, n4)
	testtime.Eventually(t, waitFor, "slotd cluster status shows 1, 2, 4 with no lag", func() error {
		code, out := c.clusterStatus("-admin-addr", n1.admin+","+n2.admin+","+n4.admin, "-max-lag", "0")
		if code != 0 {
			return fmt.Errorf("exit %d:\n%s", code, out)
		}
		return nil
	})
	for g := range c.groups {
		c.converged(uint64(g + 1))
	}
	for i, o := range offices {
		checkBooked(t, n4, o, acks[i])
	}

	n1.kill()
	rushes = rushes[:0]
	for i, o := range offices {
		// A day with free seats, and applicants of their own.
		rushes = append(rushes, c.startRushFrom(o, nextWeekday(4), 2, int64(1_000_000*(10+i)), true))
	}
	for _, r := range rushes {
		select {
		case <-r.firstOK:
		case <-time.After(waitFor):
			_, st := c.clusterStatus("-admin-addr", n2.admin+","+n4.admin)
			t.Fatalf("%s: %d retryable failures, %d refused; no booking acknowledged by nodes 2 and 4 within %v; status:\n%s", r.office, r.failed.Load(), r.refused.Load(), waitFor, st)
		}
	}
	time.Sleep(time.Second) // a second more of writes to nodes 2 and 4
	for i, r := range rushes {
		after := r.end()
		t.Logf("%s: %d acknowledged before node 1 was killed, %d after", offices[i], len(acks[i]), len(after))
		acks[i] = append(acks[i], after...)
	}
	for g := range c.groups {
		c.converged(uint64(g + 1))
	}
	for _, n := range []*node{n2, n4} {
		for i, o := range offices {
			checkBooked(t, n, o, acks[i])
		}
	}
}
