package main

// Spreading the groups' leaders over the nodes. Elections put a group's
// leadership wherever a timer fired first, so one node may end up leading
// most groups and doing most of the work. Each node looks, now and then,
// at who leads what; one that leads at least two groups more than some
// other node hands one of its groups to that node (raft's leadership
// transfer). Only a node that leads more than its share acts, so two
// nodes never hand the same group back and forth.

import (
	"time"

	"go.uber.org/zap"
)

// heardWithin: a peer the node has heard from this recently is up and
// reachable, and may be handed a leadership. A transfer to a node that is
// down stalls the group's writes until raft gives it up.
const heardWithin = 2 * time.Second

// balanceInterval is how often a node looks at the spread of leaders;
// a transfer takes an election's time, so looking more often gains
// nothing.
const balanceInterval = 5 * time.Second

// balanceSampleInterval is how often the balancer looks who leads each
// group, to learn which peer handed a leadership to this node.
const balanceSampleInterval = 100 * time.Millisecond

// handBackAfter: a node hands no leadership to a peer that lost one to
// it within this long. A node that stops hands its leaderships away
// (cluster_drain.go) and would otherwise be handed them back, as the
// node leading fewest, every balanceInterval of its -shutdown-delay;
// the window is renewed each time the peer hands one over again.
const handBackAfter = time.Minute

// balance runs until stop is closed.
func (f *front) balance(peers []uint64, stop <-chan struct{}) {
	t := time.NewTicker(balanceSampleInterval)
	defer t.Stop()
	last := map[uint64]uint64{}        // each group's leader at the last sample
	handedUs := map[uint64]time.Time{} // by peer: when it last lost a leadership to this node
	nextPlan := time.Now().Add(balanceInterval)
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		now := time.Now()
		for _, g := range f.groups {
			l := f.node.Leader(g)
			if prev := last[g]; l == f.self && prev != 0 && prev != f.self {
				handedUs[prev] = now
			}
			last[g] = l
		}
		if now.Before(nextPlan) {
			continue
		}
		nextPlan = now.Add(balanceInterval)
		peers = f.nodeIDs(peers) // the members as changed (cluster_members.go)
		g, to, ok := f.transferPlan(peers, balanceTargets(peers, handedUs, now))
		if !ok {
			continue
		}
		err := f.transferLeadership(g, to)
		f.log.Info("handing a group's leadership on to spread the leaders", zap.Uint64("group", g), zap.Uint64("to", to), zap.Error(err))
	}
}

// balanceTargets are the peers a leadership may be handed to: all but
// those that lost one to this node within handBackAfter of now.
func balanceTargets(peers []uint64, handedUs map[uint64]time.Time, now time.Time) []uint64 {
	var out []uint64
	for _, p := range peers {
		if at, ok := handedUs[p]; !ok || now.Sub(at) >= handBackAfter {
			out = append(out, p)
		}
	}
	return out
}

// transferPlan picks a group this node leads to hand to the node that
// leads the fewest, if this node leads at least two more than it. Every
// group must have a known leader and every peer must be heard from: while
// a node is down or an election runs, nothing moves. The node handed
// to is one of targets.
func (f *front) transferPlan(peers, targets []uint64) (group, to uint64, ok bool) {
	var live []uint64
	for _, p := range peers {
		if p == f.self || time.Since(f.node.LastHeard(p)) < heardWithin {
			live = append(live, p)
		}
	}
	if len(live) < len(peers) {
		// A node is down or cut off: its groups are being taken over,
		// and a leadership handed around now would only stall writes.
		return 0, 0, false
	}
	return transferPlanOf(f.self, f.groups, targets, func(g uint64) uint64 {
		l, _ := f.node.Status(g)
		return l
	})
}

// transferPlanOf is transferPlan over leaderOf, each group's leader as
// node self sees it.
func transferPlanOf(self uint64, groups, peers []uint64, leaderOf func(uint64) uint64) (group, to uint64, ok bool) {
	led := map[uint64]int{}
	for _, p := range peers {
		led[p] = 0
	}
	var mine []uint64
	for _, g := range groups {
		l := leaderOf(g)
		if l == 0 {
			return 0, 0, false
		}
		led[l]++
		if l == self {
			mine = append(mine, g)
		}
	}
	least := self
	for _, p := range peers {
		if led[p] < led[least] || (led[p] == led[least] && p < least) {
			least = p
		}
	}
	if least == self || len(mine) < led[least]+2 {
		return 0, 0, false
	}
	return mine[len(mine)-1], least, true
}
