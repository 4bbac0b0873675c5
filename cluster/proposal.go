package cluster

// Proposals: the data a proposal puts in the log, and how the node that
// proposed it learns its fate (invariants N1, N2, N7).

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	pb "go.etcd.io/raft/v3/raftpb"
)

// Sentinel errors. Callers compare with errors.Is.
var (
	// ErrStopped: the node was closed, or its loop ended on a failure,
	// before the proposal's fate was known. The proposal may still be
	// applied.
	ErrStopped = errors.New("cluster: node stopped")
	// ErrNotLeader: this node does not lead the proposal's group. The
	// error is a *NotLeaderError that names the leader if known. The
	// proposal was not made and will not be applied.
	ErrNotLeader = errors.New("cluster: not the group's leader")
	// ErrProposalDropped: the proposal will never be applied. Raft refused
	// it (a leadership transfer, too much uncommitted), or another entry
	// took its place in the log after a change of leader.
	ErrProposalDropped = errors.New("cluster: proposal dropped")
	// ErrProposalTooLarge refuses data beyond Config.ProposalBytesMax.
	ErrProposalTooLarge = errors.New("cluster: proposal too large")
	// ErrTooManyProposals refuses a proposal beyond
	// Config.ProposalsPendingMax.
	ErrTooManyProposals = errors.New("cluster: too many proposals pending")
	// ErrUnknownGroup refuses a group the node does not host.
	ErrUnknownGroup = errors.New("cluster: unknown group")
	// ErrCorruptEntry stops the node at a committed entry it cannot read:
	// data without a valid proposal header.
	ErrCorruptEntry = errors.New("cluster: corrupt entry")
	// ErrUnsupported stops the node at what raft hands over and this
	// release cannot act on yet: a configuration change to apply, or a
	// snapshot to install in a state machine that is not a Snapshotter.
	ErrUnsupported = errors.New("cluster: not supported by this release")
	// ErrNewerFormat refuses a frame or stops the node at a committed
	// entry written in a format newer than this release reads (V2, V3):
	// a node of a newer release wrote it.
	ErrNewerFormat = errors.New("cluster: written in a newer format than this release reads")
)

// FormatMax is the cluster format of this release: the newest it reads,
// and the one it writes. It names the frame's version byte, the entry
// header's version byte and the state machine's entries inside (for
// slotd, replica's kinds and the records a change stages); any of them
// changing raises it. The package doc states the rule for running two
// releases side by side.
const FormatMax = 1

// NotLeaderError is the error of a proposal made on a node that does not
// lead its group. errors.Is(err, ErrNotLeader) holds.
type NotLeaderError struct {
	Group uint64
	// Leader is the group's leader as this node knows it; 0 while no
	// leader is known (an election is under way).
	Leader uint64
}

func (e *NotLeaderError) Error() string {
	if e.Leader == 0 {
		return fmt.Sprintf("cluster: group %d has no known leader", e.Group)
	}
	return fmt.Sprintf("cluster: group %d is led by node %d", e.Group, e.Leader)
}

// Is makes errors.Is(err, ErrNotLeader) hold.
func (e *NotLeaderError) Is(target error) bool { return target == ErrNotLeader }

// The header of a proposal's entry data; the package doc draws it.
const (
	entryVersion     = 1
	entryHeaderBytes = 1 + 8 + 8
)

// proposalID names a proposal: the node that made it and its number
// there. A node numbers its proposals from a random start at each start,
// so ids do not repeat across restarts either.
type proposalID struct{ node, seq uint64 }

// appendEntryData appends the entry data of proposal id carrying data.
func appendEntryData(dst []byte, id proposalID, data []byte) []byte {
	dst = append(dst, entryVersion)
	dst = binary.BigEndian.AppendUint64(dst, id.node)
	dst = binary.BigEndian.AppendUint64(dst, id.seq)
	return append(dst, data...)
}

// decodeEntryData splits the data of a proposal's entry into its id and
// the proposal's data (aliasing b).
func decodeEntryData(b []byte) (proposalID, []byte, error) {
	if len(b) < entryHeaderBytes {
		return proposalID{}, nil, fmt.Errorf("%w: %d bytes, shorter than a proposal header", ErrCorruptEntry, len(b))
	}
	switch {
	case b[0] > entryVersion:
		// A newer release wrote it: refuse it by name, never guess (V3).
		return proposalID{}, nil, fmt.Errorf("%w: entry format %d, this release reads formats up to %d: a node of a newer release proposed it; upgrade this node", ErrNewerFormat, b[0], entryVersion)
	case b[0] != entryVersion:
		return proposalID{}, nil, fmt.Errorf("%w: version %d, this release reads %d", ErrCorruptEntry, b[0], entryVersion)
	}
	id := proposalID{node: binary.BigEndian.Uint64(b[1:]), seq: binary.BigEndian.Uint64(b[9:])}
	return id, b[entryHeaderBytes:], nil
}

// proposal is one Propose call as the loop tracks it. The loop owns every
// field but done's receiving end, which the caller waits on.
type proposal struct {
	ctx   context.Context
	group *group
	id    proposalID
	data  []byte // the entry's data: header and the caller's data
	// cc and change, for a membership change, are raft's change and the
	// caller's; data is then unused.
	cc     *pb.ConfChangeV2
	change *MemberChange
	// index and term are where the entry landed in the group's log, set
	// when the loop finds it in a Ready.
	index, term uint64
	// next chains the proposals waiting at the same index (of different
	// terms, from successive leaderships of this node); see group.pending.
	next *proposal
	done chan outcome // buffered 1: the loop sends exactly once
}

// outcome is the fate of a proposal: the result Apply set for its entry,
// or why it failed.
type outcome struct {
	result any
	err    error
}

// finish hands p its outcome. The loop calls it once per proposal.
func (p *proposal) finish(result any, err error) { p.done <- outcome{result: result, err: err} }
