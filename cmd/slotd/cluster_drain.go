package main

// A cluster node's stop (SIGTERM): a rolling restart takes the nodes down
// one at a time, and each must leave without losing an acknowledged write
// and without the second of unavailability an election costs.
//
//	SIGTERM
//	  readiness off (/readyz 503 "draining"): load balancers stop sending
//	  hand off: each group this node leads goes, by raft's leadership
//	    transfer, to a peer heard from lately — one election's worth of
//	    messages, not an election timeout of silence         (D1)
//	  keep handing off until the process ends: a leadership that comes
//	    back (an election; peers' balancers hand nothing to a node that
//	    handed them a group within handBackAfter) is handed on again
//	  -shutdown-delay: the API goes on answering; what arrives for a group
//	    is forwarded to its new leader, or answered 503 no_leader with
//	    Retry-After while that leader builds its engine        (D2)
//	  close the listener, let in-flight requests finish (shutdownTimeout)
//	  stop the Raft loop, close the stores
//
//	D1. A node hands a leadership only to a peer it has heard from within
//	    heardWithin: a transfer to a node that is down stalls the group's
//	    writes until raft gives it up (an election timeout).
//	D2. A request the draining node took is answered by a Server's engine
//	    (its own, while it still leads: the transfer waits for the Server
//	    to finish what it holds only as far as raft does — an entry
//	    proposed before the transfer is committed by the new leader or
//	    dropped, and its proposer learns which, cluster N2) or forwarded;
//	    a refusal is 503 with Retry-After — no_leader's 1 s, also for a
//	    commit that failed because raft refused proposals during the
//	    transfer (leadershipLost). The Raft loop stops only after
//	    the listener has drained, so no request in flight sees ErrStopped.
//
// Rejected: stopping without a transfer, as before: the node's groups
// are leaderless until the followers' election timeout fires, a second
// or more of 503s, which the rolling restart test measures against the
// hand-off (SLOTD_TEST_NO_HAND_OFF).

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"slotd/api"
	"slotd/httpapi"
)

const (
	// handOffWaitMax bounds how long a stopping node waits for its
	// leaderships to move before it goes on stopping anyway: raft gives
	// a transfer up after an election timeout, so this allows a few.
	handOffWaitMax = 5 * time.Second
	// handOffPollInterval is how often the stopping node looks whether
	// its transfers are done, or a leadership came back to it.
	handOffPollInterval = 20 * time.Millisecond
	// handOffRetryInterval: a transfer not done after this long is asked
	// again (raft drops one whose transferee did not take over).
	handOffRetryInterval = 500 * time.Millisecond
)

// ledHere returns the groups raft says this node leads.
func (f *front) ledHere() []uint64 {
	var out []uint64
	for _, g := range f.groups {
		if f.node.Leader(g) == f.self {
			out = append(out, g)
		}
	}
	return out
}

// handOffTarget picks the live peer (D1) that leads the fewest groups,
// the lowest id among equals; false when no peer is live.
func (f *front) handOffTarget() (uint64, bool) {
	led := map[uint64]int{}
	for _, g := range f.groups {
		led[f.node.Leader(g)]++
	}
	var best uint64
	for _, p := range f.nodeIDs(f.peerIDs) {
		if p == f.self || time.Since(f.node.LastHeard(p)) >= heardWithin {
			continue
		}
		if best == 0 || led[p] < led[best] || (led[p] == led[best] && p < best) {
			best = p
		}
	}
	return best, best != 0
}

// handOff transfers every leadership this node holds to live peers, and
// keeps doing so until stop is closed: a stopping node must lead nothing.
// done is closed the first time it leads nothing, or after
// handOffWaitMax, whichever comes first.
func (f *front) handOff(stop <-chan struct{}, done chan<- struct{}) {
	started := time.Now()
	asked := map[uint64]time.Time{}
	t := time.NewTicker(handOffPollInterval)
	defer t.Stop()
	for {
		led := f.ledHere()
		_, anyPeer := f.handOffTarget()
		if done != nil && (len(led) == 0 || !anyPeer || time.Since(started) > handOffWaitMax) {
			switch {
			case len(led) == 0:
				f.log.Info("leaderships handed off", zap.Duration("took", time.Since(started)))
			case !anyPeer:
				f.log.Warn("stopping while still leading: no peer heard from lately to hand the groups to", zap.Uint64s("groups", led))
			default:
				f.log.Warn("stopping while still leading: a transfer did not complete", zap.Uint64s("groups", led))
			}
			close(done)
			done = nil
		}
		for _, g := range led {
			if time.Since(asked[g]) < handOffRetryInterval {
				continue
			}
			to, ok := f.handOffTarget()
			if !ok {
				break
			}
			asked[g] = time.Now()
			err := f.transferLeadership(g, to)
			f.log.Info("handing a group's leadership on before stopping", zap.Uint64("group", g), zap.Uint64("to", to), zap.Error(err))
		}
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}

// degradedCode is how a problem answer names the degraded state.
var degradedCode = []byte(`,"code":"` + api.CodeDegraded + `"`)

// leadershipLost rewrites a group Server's 503 degraded into 503
// no_leader with the short Retry-After of an election, when the engine
// failed because this node was handing group g on or had lost it: raft
// refuses proposals during a transfer, and the proposal's failure
// degrades the engine (replica P4), but the store is sound and the group
// has a leader again within moments — the 30 s of a storage failure's
// Retry-After would keep the client away for nothing. The write was not
// acknowledged and no idempotent answer was kept for a 5xx, so a retry
// with the same Idempotency-Key finds the booking if its entry
// committed after all, or makes it.
func (f *front) leadershipLost(ctx *fasthttp.RequestCtx, g uint64) {
	if ctx.Response.StatusCode() != fasthttp.StatusServiceUnavailable || !bytes.Contains(ctx.Response.Body(), degradedCode) {
		return
	}
	if !f.draining.Load() && f.node.Leader(g) == f.self && !f.transferAskedLately(g) {
		return // a storage failure, or the engine's own: answered as it is
	}
	ctx.Response.Reset()
	httpapi.WriteProblem(ctx, api.CodeNoLeader, fmt.Sprintf("node %d was handing group %d's leadership on, or lost it, while it served the request; retry", f.self, g), retryAfterNoLeaderSeconds)
}

// transferWindow is how long after this node asked to hand group g on a
// failed commit of g's engine is taken for the transfer's doing: raft
// gives a transfer up after an election timeout (1 s).
const transferWindow = 2 * time.Second

// transferLeadership asks raft to hand group g's leadership to node to,
// and notes when, for leadershipLost.
func (f *front) transferLeadership(g, to uint64) error {
	f.transferAsked[g].Store(time.Now().UnixNano())
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return f.node.TransferLeadership(ctx, g, to)
}

// transferAskedLately reports whether this node asked to hand group g on
// within transferWindow.
func (f *front) transferAskedLately(g uint64) bool {
	at := f.transferAsked[g]
	return at != nil && time.Since(time.Unix(0, at.Load())) < transferWindow
}
