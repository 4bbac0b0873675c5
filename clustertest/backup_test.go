package clustertest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"slotd/internal/slotdtest"
	"slotd/internal/slotdtest/testtime"
)

// backupOffices are demo offices in each group with -groups 2.
var backupOffices = []string{"spb-mmc", "msk-mfc-tverskoy"} // groups 1, 2

// A three-node cluster of two groups under a booking rush at an office of
// each group; one node, cut off from the others' Raft traffic while
// bookings go on and mended just before, is backed up mid-rush with
// `slotd backup`, as the runbook does. Every booking
// acknowledged before the backup began is in it: each group store of the
// backup passes `slotd verify`, and a fresh three-node cluster, every node
// seeded from that one backup with `slotd cluster restore`, elects
// leaders, serves every such booking with its seat, agrees on each
// group's state, takes new bookings that share no seat with them, and
// keeps them all across a restart of a restored node.
func TestClusterBackupRestoresIntoFreshCluster(t *testing.T) {
	bin := slotdtest.Build(t)
	c := startClusterLinked(t, bin, 3, 2, true)
	l1, l2 := c.leader(1), c.leader(2)
	date := nextWeekday(5)
	var rushes []*rush
	for _, o := range backupOffices {
		rushes = append(rushes, c.startRush(o, date, 6))
	}
	acked := func(atLeast []int) {
		t.Helper()
		testtime.Eventually(t, waitFor, "both rushes have bookings acknowledged", func() error {
			for i, r := range rushes {
				r.mu.Lock()
				n := len(r.acks)
				r.mu.Unlock()
				if n < atLeast[i] {
					return fmt.Errorf("%s: %d acknowledged, waiting for %d", backupOffices[i], n, atLeast[i])
				}
			}
			return nil
		})
	}
	counts := func() []int {
		var out []int
		for _, r := range rushes {
			r.mu.Lock()
			out = append(out, len(r.acks))
			r.mu.Unlock()
		}
		return out
	}
	acked([]int{20, 20})
	// The node leading fewest groups: its replicas may lag the leaders,
	// which the backup waits out (cluster.Node.Barrier).
	source := c.nodes[0]
	for _, n := range c.nodes {
		if n != l1 && n != l2 {
			source = n
			break
		}
		if n != l1 {
			source = n
		}
	}
	// The source is cut off from the others' Raft traffic while more
	// bookings are acknowledged, then mended just before the backup: its
	// replicas lack those bookings when the backup is asked for, and the
	// backup must wait until it holds them.
	c.partition(source.id, true)
	now := counts()
	acked([]int{now[0] + 20, now[1] + 20})
	c.partition(source.id, false)
	// What was acknowledged before the backup began.
	var before [][]booked
	for _, r := range rushes {
		r.mu.Lock()
		before = append(before, append([]booked(nil), r.acks...))
		r.mu.Unlock()
	}
	backup := filepath.Join(t.TempDir(), "backup")
	out, err := exec.Command(bin, "backup", "-to", backup, "-admin-addr", source.admin).CombinedOutput()
	if err != nil || !strings.Contains(string(out), fmt.Sprintf("cluster backup of node %d written to %s", source.id, backup)) {
		t.Fatalf("slotd backup of node %d: %v\n%s", source.id, err, out)
	}
	t.Logf("%s", strings.TrimSpace(string(out)))
	// The rush goes on a moment after the backup, then ends.
	for i, r := range rushes {
		acks := r.end()
		t.Logf("%s: %d acknowledged before the backup, %d in all", backupOffices[i], len(before[i]), len(acks))
	}
	for g := 1; g <= 2; g++ {
		store := filepath.Join(backup, "groups", fmt.Sprint(g))
		out, err := exec.Command(bin, "verify", "-data", store).CombinedOutput()
		if err != nil {
			t.Fatalf("slotd verify of group %d's store in the backup: %v\n%s", g, err, out)
		}
		t.Logf("%s", strings.TrimSpace(string(out)))
	}
	// A second backup into the same directory is refused.
	if out, err := exec.Command(bin, "backup", "-to", backup, "-admin-addr", source.admin).CombinedOutput(); err == nil || !strings.Contains(string(out), "not empty") {
		t.Fatalf("a backup into a backup: %v\n%s", err, out)
	}
	for _, n := range c.nodes {
		n.kill()
	}

	r := restoreCluster(t, bin, 3, 2, backup)
	r.leader(1)
	r.leader(2)
	for _, n := range r.nodes {
		for i, o := range backupOffices {
			checkBooked(t, n, o, before[i])
		}
	}
	// The restored cluster takes new bookings, on seats none of the
	// restored ones holds.
	var all [][]booked
	for i, o := range backupOffices {
		fresh := bookSome(t, r, o, date, 10)
		all = append(all, append(append([]booked(nil), before[i]...), fresh...))
	}
	for g := 1; g <= 2; g++ {
		r.converged(uint64(g))
	}
	for _, n := range r.nodes {
		for i, o := range backupOffices {
			checkBooked(t, n, o, all[i])
		}
	}
	// A restored node killed and started again starts from its own
	// store and log, which begins at the backup's index.
	n := r.nodes[0]
	n.kill()
	n.start()
	for g := 1; g <= 2; g++ {
		r.converged(uint64(g))
	}
	for i, o := range backupOffices {
		checkBooked(t, n, o, all[i])
	}
}

// restoreCluster starts a fresh cluster of size nodes, each seeded from
// backup with `slotd cluster restore`, on new ports and data directories.
func restoreCluster(t *testing.T, bin string, size, groups int, backup string) *cluster {
	c := &cluster{t: t, bin: bin, groups: groups}
	dir := t.TempDir()
	c.keys = filepath.Join(dir, "keys.json")
	keys := fmt.Sprintf(`[{"key":%q,"name":"portal","scopes":["portal"],"offices":["*"]},{"key":%q,"name":"admin","scopes":["admin","portal","operator"],"offices":["*"]}]`, portalKey, adminKey)
	if err := os.WriteFile(c.keys, []byte(keys), 0o600); err != nil {
		t.Fatal(err)
	}
	addrs := slotdtest.FreeAddrs(t, 3*size)
	var peers, edges []string
	for i := range size {
		n := &node{c: c, id: i + 1, raft: addrs[3*i], addr: addrs[3*i+1], admin: addrs[3*i+2], data: filepath.Join(dir, fmt.Sprintf("node%d", i+1))}
		peers = append(peers, fmt.Sprintf("%d=%s", n.id, n.raft))
		edges = append(edges, fmt.Sprintf("%d=%s", n.id, n.addr))
		c.nodes = append(c.nodes, n)
	}
	c.peers, c.edges = strings.Join(peers, ","), strings.Join(edges, ",")
	t.Cleanup(func() {
		for _, n := range c.nodes {
			n.kill()
		}
		if t.Failed() {
			for _, n := range c.nodes {
				t.Logf("restored node %d log tail:\n%s", n.id, n.tail(4000))
			}
		}
	})
	for _, n := range c.nodes {
		out, err := exec.Command(bin, "cluster", "restore", "-from", backup, "-data", n.data, "-node-id", fmt.Sprint(n.id), "-peers", c.peers).CombinedOutput()
		if err != nil {
			t.Fatalf("slotd cluster restore of node %d: %v\n%s", n.id, err, out)
		}
		t.Logf("%s", strings.TrimSpace(string(out)))
	}
	// A restore never writes over a data directory.
	if out, err := exec.Command(bin, "cluster", "restore", "-from", backup, "-data", c.nodes[0].data, "-node-id", "1", "-peers", c.peers).CombinedOutput(); err == nil || !strings.Contains(string(out), "not empty") {
		t.Fatalf("a restore over a seeded node: %v\n%s", err, out)
	}
	for _, n := range c.nodes {
		n.launch()
	}
	for _, n := range c.nodes {
		n.waitReady()
	}
	return c
}

// bookSome books count confirmed seats at office on date, through nodes
// in turn, retrying what the cluster answers 503, with applicants and
// idempotency keys of their own.
func bookSome(t *testing.T, c *cluster, office, date string, count int) []booked {
	t.Helper()
	var out []booked
	for i := range count {
		n := c.nodes[i%len(c.nodes)]
		applicant := fmt.Sprintf("restored-%s-%d", office, i)
		body := fmt.Sprintf(`{"office":%q,"service":"patent","applicant":%q,"earliest_after":"%sT09:00:00+03:00","confirm":true}`, office, applicant, date)
		var b booked
		testtime.Eventually(t, waitFor, fmt.Sprintf("node %d books at %s", n.id, office), func() error {
			status, ans, err := n.call("POST", "/v1/bookings", body, "restored-"+applicant)
			switch {
			case err != nil:
				return err
			case status != 201 && status != 200:
				return fmt.Errorf("%d %v", status, ans)
			}
			b = booked{id: str(ans["id"]), applicant: applicant, start: str(ans["start"]), node: n.id}
			b.window, _ = ans["window"].(float64)
			if b.id == "" {
				return errors.New("no id in the answer")
			}
			return nil
		})
		out = append(out, b)
	}
	return out
}
