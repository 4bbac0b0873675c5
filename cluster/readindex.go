package cluster

// Reads that must see every committed entry, on any node: raft's
// ReadIndex. A follower asks the leader, the leader confirms with a
// heartbeat round that it still leads (raft's ReadOnlySafe) and answers
// its commit index; once this node has applied through that index, its
// state machine holds every entry committed before the request. An
// operator's backup of a follower's replicas uses it (slotd's cluster
// backup), so that a booking acknowledged anywhere before the backup
// began is in the copy.

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"
)

// barrierPollInterval is how often Barrier looks at the applied index
// while it waits for this node to catch up to the read index.
const barrierPollInterval = 5 * time.Millisecond

// ReadIndex returns an index at or above that of every entry of group
// committed before the call, as the group's leader confirmed it with a
// majority. It waits for a leader: without one raft drops the request,
// and ReadIndex asks again each election timeout until ctx ends.
func (n *Node) ReadIndex(ctx context.Context, group uint64) (uint64, error) {
	g := n.byID[group]
	if g == nil {
		return 0, fmt.Errorf("%w: %d", ErrUnknownGroup, group)
	}
	retry := time.Duration(n.cfg.ElectionTicks) * n.cfg.TickInterval
	for {
		var rctx [8]byte
		binary.BigEndian.PutUint64(rctx[:], n.seq.Add(1))
		key := string(rctx[:])
		answer := make(chan uint64, 1)
		if err := n.onLoop(ctx, func() {
			if n.reads == nil {
				n.reads = map[string]chan<- uint64{}
			}
			n.reads[key] = answer
			g.rn.ReadIndex(rctx[:])
		}); err != nil {
			return 0, err
		}
		t := time.NewTimer(retry)
		select {
		case index := <-answer:
			t.Stop()
			return index, nil
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
		// Forget the request: raft dropped it, or its answer comes too
		// late for anyone to take it.
		forget := func() { delete(n.reads, key) }
		if err := n.onLoop(context.Background(), forget); err != nil {
			return 0, err
		}
		if err := ctx.Err(); err != nil {
			return 0, err
		}
	}
}

// Barrier returns once this node has applied every entry of group
// committed before the call (ReadIndex, then a wait for the apply), and
// the index it applied through.
func (n *Node) Barrier(ctx context.Context, group uint64) (uint64, error) {
	index, err := n.ReadIndex(ctx, group)
	if err != nil {
		return 0, err
	}
	g := n.byID[group]
	for {
		var applied uint64
		if err := n.onLoop(ctx, func() { applied = g.applied }); err != nil {
			return 0, err
		}
		if applied >= index {
			return applied, nil
		}
		select {
		case <-time.After(barrierPollInterval):
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// answerReads hands g's read states of this turn to the ReadIndex calls
// waiting for them. Called by the loop.
func (n *Node) answerReads(g *group) {
	for _, rs := range g.rd.ReadStates {
		key := string(rs.RequestCtx)
		if answer := n.reads[key]; answer != nil {
			delete(n.reads, key)
			answer <- rs.Index
		}
	}
}

// onLoop runs f on the loop and returns once it has run.
func (n *Node) onLoop(ctx context.Context, f func()) error {
	ran := make(chan struct{})
	select {
	case n.ctlc <- func() { f(); close(ran) }:
	case <-n.done:
		return n.stopped()
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-ran:
		return nil
	case <-n.done:
		// The loop may have run f before it ended.
		select {
		case <-ran:
			return nil
		default:
			return n.stopped()
		}
	}
}
