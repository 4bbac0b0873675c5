package replica

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"slotd/cluster"
	"slotd/wal"
)

// Entry kinds of a move of an office between groups (see the package
// doc).
const (
	kindMoveFreeze byte = 7
	kindMoveImport byte = 8
	kindMoveOut    byte = 9
)

// Answers of a move entry's proposal (ProposeMove's first byte).
const (
	MoveOK      byte = 1 // done now or before (a retried step)
	MoveMoved   byte = 2 // freeze: the office already moved to this destination
	MoveOther   byte = 3 // freeze: the office moves or moved to another group
	MoveMissing byte = 4 // freeze: the group does not hold the office
	MoveHeld    byte = 5 // import: the group already held the office
)

// ErrMove is the error of a move that cannot go on as asked.
var ErrMove = errors.New("replica: move")

// MoveCall proposes a move entry to group on the node that leads it (that
// node's ProposeMove) and returns its answer.
type MoveCall func(ctx context.Context, group uint64, entry []byte) ([]byte, error)

// moveResult is the Result of a move entry.
type moveResult struct {
	answer byte
	export []byte // freeze: the office's frozen records, read at the entry
}

func freezeEntry(office string, to uint64) []byte {
	b := []byte{kindMoveFreeze}
	b = binary.AppendUvarint(b, to)
	return appendLedgerString(b, office)
}

func importEntry(office string, records []byte) []byte {
	b := appendLedgerString([]byte{kindMoveImport}, office)
	return append(b, records...)
}

func moveOutEntry(office string) []byte {
	return appendLedgerString([]byte{kindMoveOut}, office)
}

func readString(p []byte) (string, []byte, bool) {
	n, k := binary.Uvarint(p)
	if k <= 0 || uint64(len(p)-k) < n {
		return "", nil, false
	}
	return string(p[k : k+int(n)]), p[k+int(n):], true
}

// applyMove applies the move entry e of g (O1–O4). A freeze and an
// import that write begin a new epoch of g (P1): an engine built before
// them makes no more changes, and the next one is built from the store
// as they left it; the engine running here, if any, is broken at once
// (P4) so that it is replaced without waiting for a change to be refused.
func (r *Replica) applyMove(g *group, e *cluster.Entry) error {
	corrupt := func(what string) error {
		return fmt.Errorf("replica: group %d: entry %d: %w: move entry: %s", g.id, e.Index, cluster.ErrCorruptEntry, what)
	}
	var (
		res      moveResult
		newEpoch bool
	)
	switch e.Data[0] {
	case kindMoveFreeze:
		to, n := binary.Uvarint(e.Data[1:])
		office, rest, ok := readString(e.Data[1+max(n, 0):])
		if n <= 0 || !ok || len(rest) != 0 || to == 0 || to > 255 {
			return corrupt("freeze")
		}
		a, err := g.db.ApplyMoveFreeze(e.Index, office, to)
		if err != nil {
			return err
		}
		switch a {
		case wal.FreezeDone:
			res.answer = MoveOK
			newEpoch = !r.testMoveNoFreeze
		case wal.FreezeMoved:
			res.answer = MoveMoved
		case wal.FreezeOther:
			res.answer = MoveOther
		default:
			res.answer = MoveMissing
		}
	case kindMoveImport:
		office, rest, ok := readString(e.Data[1:])
		if !ok {
			return corrupt("import")
		}
		imported, err := g.db.ApplyMoveImport(e.Index, office, rest)
		if err != nil {
			return fmt.Errorf("replica: group %d: entry %d: %w", g.id, e.Index, err)
		}
		res.answer = MoveHeld
		if imported {
			res.answer = MoveOK
			newEpoch = true
		}
	case kindMoveOut:
		office, rest, ok := readString(e.Data[1:])
		if !ok || len(rest) != 0 {
			return corrupt("move-out")
		}
		if _, err := g.db.ApplyMoveOut(e.Index, office); err != nil {
			return err
		}
		res.answer = MoveOK
	}
	if newEpoch {
		g.epoch = e.Index
		g.mu.Lock()
		if j := g.jr.Load(); j != nil {
			j.l.broken.Store(true)
		}
		g.mu.Unlock()
	}
	r.moves.Add(1)
	e.Result = res
	return nil
}

// Moves counts the move entries this node applied, in any group: a
// front that caches where offices live reads them again when it changes.
func (r *Replica) Moves() uint64 { return r.moves.Load() }

// ProposeMove proposes a move entry to group, which this node must lead
// (else a *cluster.NotLeaderError), and returns its answer: one byte, and
// for a freeze that froze the office, the office's records as this
// node's replica holds them frozen.
func (r *Replica) ProposeMove(ctx context.Context, group uint64, entry []byte) ([]byte, error) {
	g := r.groups[group]
	if g == nil {
		return nil, fmt.Errorf("replica: group %d has no store here", group)
	}
	if len(entry) == 0 || entry[0] < kindMoveFreeze || entry[0] > kindMoveOut {
		return nil, fmt.Errorf("%w: not a move entry", cluster.ErrCorruptEntry)
	}
	res, err := r.node.Propose(ctx, group, entry)
	if err != nil {
		return nil, err
	}
	mr, ok := res.(moveResult)
	if !ok {
		return nil, fmt.Errorf("replica: group %d: the move entry was applied before this node's start", group)
	}
	out := []byte{mr.answer}
	if entry[0] == kindMoveFreeze && mr.answer == MoveOK {
		office, _, _ := readString(entry[1+uvarintLen(entry[1:]):])
		data, _, err := g.db.ExportOffice(office)
		if err != nil {
			return nil, err
		}
		out = append(out, data...)
	}
	return out, nil
}

func uvarintLen(p []byte) int {
	_, n := binary.Uvarint(p)
	return max(n, 0)
}

// MoveOffice moves office from group from to group to (O1–O4), calling
// each group's leader through call; it retries a step that fails until
// ctx ends. A move that stopped part way (a crash, ctx) is finished by
// running it again: each step is idempotent, and the office answers
// nowhere between its freeze and its import.
func MoveOffice(ctx context.Context, log *zap.Logger, call MoveCall, office string, from, to uint64) error {
	if from == to {
		return fmt.Errorf("%w: office %q is in group %d already", ErrMove, office, to)
	}
	step := func(group uint64, entry []byte) ([]byte, error) {
		for {
			out, err := call(ctx, group, entry)
			if err == nil && len(out) > 0 {
				return out, nil
			}
			if ctx.Err() != nil {
				return nil, fmt.Errorf("%w: group %d: %w (last: %v)", ErrMove, group, ctx.Err(), err)
			}
			if log != nil {
				log.Info("move step retried", zap.String("office", office), zap.Uint64("group", group), zap.Error(err))
			}
			if !sleep(ctx, 50*time.Millisecond) {
				return nil, fmt.Errorf("%w: group %d: %w", ErrMove, group, ctx.Err())
			}
		}
	}
	out, err := step(from, freezeEntry(office, to))
	if err != nil {
		return err
	}
	switch out[0] {
	case MoveMoved:
		return nil // moved by an earlier run
	case MoveOther:
		return fmt.Errorf("%w: office %q moves or moved from group %d to another group than %d", ErrMove, office, from, to)
	case MoveMissing:
		return fmt.Errorf("%w: group %d holds no office %q", ErrMove, from, office)
	}
	if _, err := step(to, importEntry(office, out[1:])); err != nil {
		return err
	}
	_, err = step(from, moveOutEntry(office))
	return err
}
