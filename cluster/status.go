package cluster

// A group's Raft state for operators: what `slotd cluster status` shows.

import (
	"context"
	"fmt"
	"slices"

	"go.etcd.io/raft/v3"
)

// GroupStatus is one group's Raft state as this node's loop saw it.
type GroupStatus struct {
	Group uint64
	// Leader is the leader this node knows (0: none), Term its current
	// term, Commit the highest index it knows committed, Applied the
	// highest it has applied.
	Leader, Term, Commit, Applied uint64
	// LastIndex is the last index of this node's log.
	LastIndex uint64
	// SnapshotIndex is the index the log starts after: its snapshot's
	// (the bootstrap's, 1, until a release compacts logs).
	SnapshotIndex uint64
	// Members are the group's voters, sorted; Learners its learners.
	Members, Learners []uint64
	// Progress is, on the group's leader, every member's replication as
	// the leader tracks it (its own included), by node; nil elsewhere.
	Progress map[uint64]Progress
}

// Progress is how far a member's log matches the leader's.
type Progress struct {
	// Match is the highest index known to be in the member's log; Lag
	// is how many entries of the leader's log it lacks (the leader's
	// last index minus Match).
	Match, Lag uint64
	// State is raft's replication state: probe, replicate or snapshot.
	State string
}

// GroupStatus returns group's state as the loop sees it. It waits for
// the loop (a turn), so it is for operators, not for every request.
func (n *Node) GroupStatus(ctx context.Context, group uint64) (GroupStatus, error) {
	g := n.byID[group]
	if g == nil {
		return GroupStatus{}, fmt.Errorf("%w: %d", ErrUnknownGroup, group)
	}
	out := make(chan GroupStatus, 1)
	read := func() {
		st := g.rn.Status()
		gs := GroupStatus{Group: group, Leader: st.Lead, Term: st.GetTerm(), Commit: st.GetCommit(), Applied: st.Applied}
		first, err := n.store.Group(group).FirstIndex()
		if err == nil {
			gs.SnapshotIndex = first - 1
		}
		gs.LastIndex, _ = n.store.Group(group).LastIndex()
		for id := range st.Config.Voters.IDs() {
			gs.Members = append(gs.Members, id)
		}
		slices.Sort(gs.Members)
		for id := range st.Config.Learners {
			gs.Learners = append(gs.Learners, id)
		}
		slices.Sort(gs.Learners)
		if st.RaftState == raft.StateLeader {
			gs.Progress = map[uint64]Progress{}
			for id, pr := range st.Progress {
				p := Progress{Match: pr.Match, State: pr.State.String()}
				if gs.LastIndex > pr.Match {
					p.Lag = gs.LastIndex - pr.Match
				}
				gs.Progress[id] = p
			}
		}
		out <- gs
	}
	select {
	case n.ctlc <- read:
	case <-n.done:
		return GroupStatus{}, n.stopped()
	case <-ctx.Done():
		return GroupStatus{}, ctx.Err()
	}
	select {
	case gs := <-out:
		return gs, nil
	case <-n.done:
		// The loop may have run read before it ended.
		select {
		case gs := <-out:
			return gs, nil
		default:
			return GroupStatus{}, n.stopped()
		}
	case <-ctx.Done():
		return GroupStatus{}, ctx.Err()
	}
}
