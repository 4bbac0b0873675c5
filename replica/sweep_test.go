package replica

import (
	"fmt"
	"testing"
	"time"

	"slotd/allocator"
	"slotd/internal/slotdtest"
	"slotd/internal/slotdtest/testtime"
	"slotd/wal"
)

// The retention sweep of a group is an entry of its log (wal W12): the
// leader stamps the plan, every replica deletes by it in bounded
// batches, and the replicas hold the same records and the same deletion
// mark afterwards, across a restart too, so a cursor below the mark is
// refused on every node alike. With each replica applying a plan of its
// own clock instead (as it would if the sweep stayed a timer of each
// node's), the replicas' clocks differ by minutes and their digests
// differ: the check fails without W12.
func TestSweepReplicasAgree(t *testing.T) {
	const batchMax = 3
	// The sweep's instant: 7 days (the default event retention) after
	// BenchNow plus 10½ minutes, so the holds made in BenchNow's first
	// ten minutes are past retention and the later ones are not.
	sweepNow := slotdtest.BenchNow.Add(wal.DefaultEventRetention + 10*time.Minute + 30*time.Second)
	for _, v := range []struct {
		name     string
		ownClock bool
	}{
		{name: "as built"},
		{name: "broken: each replica's own clock", ownClock: true},
	} {
		t.Run(v.name, func(t *testing.T) {
			c := &testCluster{t: t, isolated: map[uint64]bool{}, sweepBatchMax: batchMax}
			if v.ownClock {
				c.broken = func(r *Replica) {
					skew := time.Duration(r.cfg.Self-2) * 3 * time.Minute
					r.testSweepOwnClock = func() time.Time { return sweepNow.Add(skew) }
				}
			}
			c = startCluster(c, 3, 1)
			c.putOffices(1, 0, 1)
			leader, e := c.leaderEngine(1)
			for i := range 20 {
				_, start := slotdtest.BenchSeat(int64(i) * slotdtest.BenchOffices)
				at := slotdtest.BenchNow.Add(time.Duration(i) * time.Minute)
				if _, err := e.Hold(at, allocator.HoldRequest{Office: "o000", Service: "s", Applicant: fmt.Sprint("a", i), Start: start, Confirm: true}, allocator.Meta{Actor: "test"}); err != nil {
					t.Fatalf("hold %d: %v", i, err)
				}
			}
			// Idempotency records around the TTL's cutoff: the first five
			// are older than it.
			idemCutoff := sweepNow.Add(-wal.DefaultIdempotencyTTL)
			for i := range 11 {
				rec := &allocator.IdempotencyRecord{Key: fmt.Sprint("k", i), Status: 201, AtUnixNano: idemCutoff.Add(time.Duration(i-5) * time.Minute).UnixNano()}
				if err := leader.rep.Commit(1, &allocator.Change{Idempotency: rec}); err != nil {
					t.Fatalf("idempotency record %d: %v", i, err)
				}
			}
			sweeps, idemDeleted, eventsDeleted := 0, 0, 0
			for {
				st, err := leader.rep.Sweep(1, sweepNow)
				if err != nil {
					t.Fatalf("sweep %d: %v", sweeps, err)
				}
				sweeps++
				if st.IdempotencyDeleted > batchMax {
					t.Fatalf("one sweep entry deleted %d idempotency records, bound %d", st.IdempotencyDeleted, batchMax)
				}
				idemDeleted += st.IdempotencyDeleted
				eventsDeleted += st.EventsDeleted
				if !st.More {
					break
				}
				if sweeps > 100 {
					t.Fatal("the sweep never ends")
				}
			}
			t.Logf("%d sweep entries deleted %d idempotency records and %d events", sweeps, idemDeleted, eventsDeleted)
			err := sameDigests(c, 1)
			if v.ownClock {
				if err == nil {
					t.Fatal("the broken variant left the replicas alike: the test cannot tell")
				}
				t.Logf("as expected: %v", err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if sweeps < 2 || idemDeleted != 5 || eventsDeleted == 0 {
				t.Fatalf("%d sweeps deleted %d idempotency records (want 5 in several bounded sweeps) and %d events", sweeps, idemDeleted, eventsDeleted)
			}
			mark := checkMarks(t, c, 1)
			// Nothing is left past retention: another sweep proposes no
			// entry.
			before, _, _ := leader.stores[1].Applied()
			if st, err := leader.rep.Sweep(1, sweepNow); err != nil || st != (wal.SweepStats{}) {
				t.Fatalf("a sweep with nothing due: %+v %v", st, err)
			}
			if after, _, _ := leader.stores[1].Applied(); after != before {
				t.Fatalf("a sweep with nothing due was proposed: applied %d, then %d", before, after)
			}
			// A restarted replica loads the same mark and holds the same
			// records (W10, W11).
			n := c.node(leader.id%3 + 1)
			n.stop()
			n.start(nil)
			c.converged(1)
			if got := checkMarks(t, c, 1); got != mark {
				t.Fatalf("the deletion mark moved from %d to %d over a restart", mark, got)
			}
		})
	}
}

// sameDigests waits until every running replica of group applied the
// same index, then compares their digests.
func sameDigests(c *testCluster, group uint64) error {
	c.t.Helper()
	var applied uint64
	testtime.Eventually(c.t, waitFor, "the replicas applied the same index", func() error {
		applied = 0
		for _, n := range c.nodes {
			_, a, err := n.stores[group].StateDigest()
			if err != nil {
				return err
			}
			if applied != 0 && a != applied {
				return fmt.Errorf("node %d at %d, another at %d", n.id, a, applied)
			}
			applied = a
		}
		return nil
	})
	var first [32]byte
	for i, n := range c.nodes {
		d, a, err := n.stores[group].StateDigest()
		if err != nil {
			return err
		}
		if a != applied {
			return fmt.Errorf("node %d moved on to %d", n.id, a)
		}
		if i == 0 {
			first = d
		} else if d != first {
			return fmt.Errorf("at index %d node 1 holds %x, node %d %x", applied, first[:4], n.id, d[:4])
		}
	}
	return nil
}

// checkMarks requires every replica of group to hold the same event
// deletion mark, above 0, with no event at or below it and the one after
// it kept: a reader's cursor below the mark is refused (410
// cursor_expired) on whichever node reads.
func checkMarks(t *testing.T, c *testCluster, group uint64) uint64 {
	t.Helper()
	var mark uint64
	for _, n := range c.nodes {
		db := n.stores[group]
		m := db.EventsDeletedThrough()
		if m == 0 || (mark != 0 && m != mark) {
			t.Fatalf("node %d's deletion mark is %d, another's %d", n.id, m, mark)
		}
		mark = m
		evs, err := db.ReadEvents(0, 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) != 1 || evs[0].Cursor != mark+1 {
			t.Fatalf("node %d: the first event kept is %+v, want cursor %d", n.id, evs, mark+1)
		}
	}
	return mark
}
