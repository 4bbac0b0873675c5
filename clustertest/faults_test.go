package clustertest

import (
	"flag"
	"math/rand/v2"
	"testing"
	"time"

	"slotd/internal/slotdtest"
)

// faultRounds is how many faults TestFaultsUnderRush injects; make
// stress-cluster asks for hundreds.
var faultRounds = flag.Int("faults.rounds", 3, "faults injected by TestFaultsUnderRush")

// A rush runs while faults hit one node at a time: SIGKILL and restart,
// SIGSTOP for a while, a partition from the others. After every fault,
// once the cluster has settled: every acknowledged booking is on every
// node with its seat, no seat is owned twice, and the replicas agree.
// The first three rounds are one fault of each kind; the rest are drawn.
func TestFaultsUnderRush(t *testing.T) {
	c := startClusterLinked(t, slotdtest.Build(t), 3, 2, true)
	date := nextWeekday(5)
	c.leader(1)
	c.leader(2)
	offices := []string{"msk-mfc-tverskoy", "msk-mfc-mitino", "spb-mmc", "msk-sakharovo"}
	var rushes []*rush
	for i, o := range offices {
		rushes = append(rushes, c.startRush(o, date, 6-4*min(i, 1)))
	}
	kinds := []string{"kill", "pause", "partition"}
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
		t.Logf("round %d: %s node %d for %v", round, kind, victim.id, hold)
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
		}
		c.leader(1)
		c.leader(2)
		c.caughtUp(1)
		c.caughtUp(2)
	}
	time.Sleep(300 * time.Millisecond)
	c.endRushes(offices, rushes)
}
