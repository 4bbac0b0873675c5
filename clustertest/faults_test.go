package clustertest

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"slotd/internal/slotdtest"
	"slotd/internal/slotdtest/testtime"
)

// faultRounds is how many faults TestFaultsUnderRush injects; make
// stress-cluster asks for hundreds.
var faultRounds = flag.Int("faults.rounds", 4, "faults injected by TestFaultsUnderRush")

// A rush runs while faults hit one node at a time: SIGKILL and restart,
// SIGSTOP for a while, a partition from the others, and the replacement
// of a node (SIGKILL, slotd cluster remove, a node of a new id started
// with -join on an empty data directory, slotd cluster add), after which
// the faults hit the new set of members. After every fault the groups
// have leaders and every replica catches up; after a replacement the
// rush pauses until the replicas of every member, the new one's too,
// agree (one applied index, one digest). At the end every acknowledged
// booking is on every member with its seat, no seat is owned twice, and
// the replicas agree. The first four rounds are one fault of each kind;
// the rest are drawn.
func TestFaultsUnderRush(t *testing.T) {
	c := startClusterLinked(t, slotdtest.Build(t), 3, 2, true)
	date := nextWeekday(5)
	c.leader(1)
	c.leader(2)
	offices := []string{"msk-mfc-tverskoy", "msk-mfc-mitino", "spb-mmc", "msk-sakharovo"}
	callers := func(i int) int { return 6 - 4*min(i, 1) }
	var rushes []*rush
	for i, o := range offices {
		rushes = append(rushes, c.startRush(o, date, callers(i)))
	}
	kinds := []string{"kill", "pause", "partition", "replace"}
	for round := range *faultRounds {
		kind := kinds[round%len(kinds)]
		if round >= len(kinds) {
			kind = kinds[rand.IntN(len(kinds))]
		}
		victim := c.nodes[rand.IntN(len(c.nodes))]
		if rand.IntN(2) == 0 {
			victim = c.leader(uint64(1 + rand.IntN(2)))
		}
		hold := time.Duration(500+rand.IntN(1500)) * time.Millisecond
		if kind == "replace" {
			t.Logf("round %d: replace node %d", round, victim.id)
		} else {
			t.Logf("round %d: %s node %d for %v", round, kind, victim.id, hold)
		}
		switch kind {
		case "kill":
			victim.kill()
			time.Sleep(hold)
			victim.start()
		case "pause":
			victim.pause(true)
			time.Sleep(hold)
			victim.pause(false)
		case "partition":
			c.partition(victim.id, true)
			time.Sleep(hold)
			c.partition(victim.id, false)
		case "replace":
			c.replace(victim)
			// Reads are the leader's: the new member's replica is
			// compared with the others' by digest, while the rush pauses.
			for _, r := range rushes {
				r.end()
			}
			for g := range c.groups {
				c.converged(uint64(g + 1))
			}
			for i, r := range rushes {
				rushes[i] = c.startRushFrom(r.office, date, callers(i), r.seq.Load(), false)
				rushes[i].acks = r.acks
				rushes[i].failed.Add(r.failed.Load())
			}
		}
		c.leader(1)
		c.leader(2)
		c.caughtUp(1)
		c.caughtUp(2)
	}
	time.Sleep(300 * time.Millisecond)
	c.endRushes(offices, rushes)
}

// replace replaces the member old as the runbook's "Replace a dead node"
// does: old is killed and removed; a node of the next unused id starts
// with -join on an empty data directory and is added (a learner, then a
// voter once it caught up); the survivors' flags name the new member for
// their next restart. It returns the new node, once ready, among
// c.nodes. With proxies, every node reaches the new one through one
// proxy of its own (c.inbound), which is the address it was added with,
// and the new one reaches each other through a link of its own.
func (c *cluster) replace(old *node) *node {
	t := c.t
	t.Helper()
	old.kill()
	var among []*node
	id := old.id
	for _, n := range c.nodes {
		id = max(id, n.id)
		if n != old {
			among = append(among, n)
		}
	}
	id++
	// A former member's id is never used again, nor a port of its own.
	var admins []string
	for _, n := range among {
		admins = append(admins, n.admin)
	}
	testtime.Eventually(t, waitFor, fmt.Sprintf("slotd cluster remove -node %d", old.id), func() error {
		if code, out := c.clusterCmd("remove", "-node", fmt.Sprint(old.id), "-admin-addr", strings.Join(admins, ",")); code != 0 {
			return fmt.Errorf("exit %d: %s", code, out)
		}
		return nil
	})
	n := c.joiner(id, among...)
	raftAddr := n.raft
	if c.links != nil {
		delete(c.links, old.id)
		delete(c.inbound, old.id)
		for _, to := range c.links {
			delete(to, old.id)
		}
		if c.inbound == nil {
			c.inbound = map[int]*proxy{}
		}
		in := newProxyFrom(t, n.raft, c.dialler)
		c.inbound[id] = in
		raftAddr = in.addr()
		c.links[id] = map[int]*proxy{}
		var own []string
		for _, m := range among {
			p := newProxy(t, m.raft)
			c.links[id][m.id] = p
			own = append(own, fmt.Sprintf("%d=%s", m.id, p.addr()))
		}
		n.peers = strings.Join(append(own, fmt.Sprintf("%d=%s", id, n.raft)), ",")
	}
	n.launch()
	began := time.Now()
	if code, out := c.clusterCmd("add", "-node", fmt.Sprint(id), "-raft-addr", raftAddr, "-api-addr", n.addr, "-admin-addr", strings.Join(admins, ","), "-max-lag", "100"); code != 0 {
		t.Fatalf("slotd cluster add -node %d: exit %d: %s\nnode %d:\n%s", id, code, out, id, n.tail(3000))
	}
	n.waitReady()
	t.Logf("node %d replaced by node %d, added and promoted in %v", old.id, id, time.Since(began).Round(time.Millisecond))
	// The members' next start names the new member and not the old: the
	// cluster's -peers and -edges, or, through proxies, their own -peers.
	c.peers = dropPeer(c.peers, old.id) + fmt.Sprintf(",%d=%s", id, n.raft)
	c.edges = dropPeer(c.edges, old.id) + fmt.Sprintf(",%d=%s", id, n.addr)
	n.edges = ""
	if c.links == nil {
		n.peers = ""
	}
	for _, m := range among {
		if m.peers != "" {
			m.peers = dropPeer(m.peers, old.id) + fmt.Sprintf(",%d=%s", id, raftAddr)
		}
	}
	c.nodesMu.Lock()
	c.nodes = append(among, n)
	c.nodesMu.Unlock()
	return n
}

// dropPeer returns list ("id=addr,…") without id's entry.
func dropPeer(list string, id int) string {
	var kept []string
	for e := range strings.SplitSeq(list, ",") {
		if e != "" && !strings.HasPrefix(e, fmt.Sprintf("%d=", id)) {
			kept = append(kept, e)
		}
	}
	return strings.Join(kept, ",")
}
