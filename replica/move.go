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
	kindMoveFreeze     byte = 7
	kindMoveImport     byte = 8
	kindMoveOut        byte = 9
	kindMoveImportPart byte = 10
)

// Answers of a move entry's proposal (ProposeMove's first byte).
const (
	MoveOK          byte = 1 // done now or before (a retried step)
	MoveMoved       byte = 2 // freeze: the office already moved to this destination
	MoveOther       byte = 3 // freeze: the office moves or moved to another group
	MoveMissing     byte = 4 // freeze: the group does not hold the office
	MoveHeld        byte = 5 // import: the group already held the office
	MoveTooLarge    byte = 6 // freeze: not proposed, the office's records exceed MoveBytesMax
	MovePartKept    byte = 7 // import part: kept until the last part
	MovePartMissing byte = 8 // import part: the last part found an earlier one missing
)

// DefaultMovePartBytes is the records one import entry carries by
// default (Config.MovePartBytes): an office with more is imported in
// parts (kind 10) of about this many bytes, each with at least one
// record, so an entry is at most the larger of this and one record (an
// office's config, at most 1 MiB) plus its framing, under raft's
// proposal bound (3 MiB in slotd).
const DefaultMovePartBytes = 1 << 20

// MoveBytesMax bounds the records of an office that moves: the import's
// last part writes them all in one batch on every replica of the
// destination, and the office answers office_moving while its parts
// commit one after the other. 64 MiB: about 300,000 bookings without
// stored answers, 64 entries of DefaultMovePartBytes.
var MoveBytesMax = 64 << 20

// ErrMove is the error of a move that cannot go on as asked.
var ErrMove = errors.New("replica: move")

// MoveCall proposes a move entry to group on the node that leads it (that
// node's ProposeMove) and returns its answer.
type MoveCall func(ctx context.Context, group uint64, entry []byte) ([]byte, error)

// moveResult is the Result of a move entry.
type moveResult struct{ answer byte }

func freezeEntry(office string, to uint64) []byte {
	b := []byte{kindMoveFreeze}
	b = binary.AppendUvarint(b, to)
	return appendLedgerString(b, office)
}

func importEntry(office string, records []byte) []byte {
	b := appendLedgerString([]byte{kindMoveImport}, office)
	return append(b, records...)
}

// importPartEntry is part (0-based) of the parts of office's import:
// 1 byte = 10, office string, part uvarint, parts uvarint, the part's
// records (wal.DB.ExportOffice's bytes).
func importPartEntry(office string, part, parts int, records []byte) []byte {
	b := appendLedgerString([]byte{kindMoveImportPart}, office)
	b = binary.AppendUvarint(b, uint64(part))
	b = binary.AppendUvarint(b, uint64(parts))
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
		// The engine running here learns of the import before a front
		// on this node can find the office in the store: broken first,
		// it refuses (503) instead of answering that the office does
		// not exist.
		if has, err := g.db.HasOffice(office); err == nil && !has {
			r.breakEngine(g)
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
	case kindMoveImportPart:
		office, rest, ok := readString(e.Data[1:])
		part, n := binary.Uvarint(rest)
		parts, m := binary.Uvarint(rest[max(n, 0):])
		if !ok || n <= 0 || m <= 0 || parts < 2 || parts > wal.ImportPartsMax || part >= parts {
			return corrupt("import part")
		}
		// As for an import in one entry: the engine running here is
		// broken before its store can hold the office (O8: only the
		// last part writes it).
		if part == parts-1 {
			if has, err := g.db.HasOffice(office); err == nil && !has {
				r.breakEngine(g)
			}
		}
		if r.testMoveImportEachPart {
			imported, err := g.db.ApplyMoveImport(e.Index, office, rest[n+m:])
			if err != nil {
				return err
			}
			res.answer, newEpoch = MovePartKept, imported
			if part == parts-1 {
				res.answer = MoveOK
			}
			break
		}
		a, err := g.db.ApplyMoveImportPart(e.Index, office, int(part), int(parts), rest[n+m:])
		if err != nil {
			return fmt.Errorf("replica: group %d: entry %d: %w", g.id, e.Index, err)
		}
		switch a {
		case wal.ImportDone:
			res.answer = MoveOK
			newEpoch = true
		case wal.ImportHeld:
			res.answer = MoveHeld
		case wal.ImportStaged:
			res.answer = MovePartKept
		default:
			res.answer = MovePartMissing
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
		r.breakEngine(g)
	}
	r.moves.Add(1)
	e.Result = res
	return nil
}

// Moves counts the move entries this node applied, in any group: a
// front that caches where offices live reads them again when it changes.
func (r *Replica) Moves() uint64 { return r.moves.Load() }

// importRequest asks the destination's leader to import office from
// group from: 1 byte = 8, from uvarint, office string. The leader reads
// the records from its own replica of from, once that replica applied
// the freeze (the frozen records are the same on every replica that
// applied it, O5), and proposes the import entry with them: the records
// never cross the network but in the destination's log.
func importRequest(office string, from uint64) []byte {
	b := binary.AppendUvarint([]byte{kindMoveImport}, from)
	return appendLedgerString(b, office)
}

// ProposeMove proposes a move entry (a freeze, a move-out) or an import
// request to group, which this node must lead (else a
// *cluster.NotLeaderError), and returns its one-byte answer (MoveOK…).
func (r *Replica) ProposeMove(ctx context.Context, group uint64, entry []byte) ([]byte, error) {
	g := r.groups[group]
	if g == nil {
		return nil, fmt.Errorf("replica: group %d has no store here", group)
	}
	if len(entry) == 0 || entry[0] < kindMoveFreeze || entry[0] > kindMoveOut {
		return nil, fmt.Errorf("%w: not a move entry", ErrMove)
	}
	if entry[0] == kindMoveFreeze {
		// An office whose records a move does not carry is not
		// frozen: it would stay frozen, nowhere served.
		_, n := binary.Uvarint(entry[1:])
		office, _, _ := readString(entry[1+max(n, 0):])
		size, err := g.db.OfficeBytes(office)
		if err != nil {
			return nil, err
		}
		if size > MoveBytesMax {
			return []byte{MoveTooLarge}, nil
		}
	}
	if entry[0] == kindMoveImport {
		from, n := binary.Uvarint(entry[1:])
		office, rest, ok := readString(entry[1+max(n, 0):])
		src := r.Store(from)
		if n <= 0 || !ok || len(rest) != 0 || src == nil || from == group {
			return nil, fmt.Errorf("%w: not an import request", ErrMove)
		}
		for {
			state, to, err := src.OfficeMove(office)
			if err != nil {
				return nil, err
			}
			if state == wal.MoveMoving && to == group {
				break
			}
			if state == wal.MoveMoved && to == group {
				return []byte{MoveHeld}, nil // moved out: imported before
			}
			// This node's replica of the source lags the freeze.
			if !sleep(ctx, r.cfg.PollInterval) {
				return nil, fmt.Errorf("replica: group %d: office %q is not frozen for group %d in this node's replica: %w", from, office, group, ctx.Err())
			}
		}
		parts, _, err := src.ExportOffice(office, wal.ExportOptions{PartBytes: r.cfg.MovePartBytes, LeaveIdempotency: r.testMoveLeaveIdempotency})
		if err != nil {
			return nil, err
		}
		if len(parts) > 1 {
			return r.importParts(ctx, g, office, parts)
		}
		entry = importEntry(office, parts[0])
	}
	res, err := r.node.Propose(ctx, group, entry)
	if err != nil {
		return nil, err
	}
	mr, ok := res.(moveResult)
	if !ok {
		return nil, fmt.Errorf("replica: group %d: the move entry was applied before this node's start", group)
	}
	return []byte{mr.answer}, nil
}

// importParts proposes the parts of office's import to g, which this
// node leads, one after the other, and answers as the last did (MoveOK,
// or MoveHeld where g already held the office). A part this node's
// replica of g keeps already (an import run again after it stopped part
// way) is not proposed again, but the last always is, so that a run
// again goes on where the last one stopped. A last part that finds one
// missing (another leader's run stopped in between and this replica
// lagged) is an error: the step is retried.
func (r *Replica) importParts(ctx context.Context, g *group, office string, parts [][]byte) ([]byte, error) {
	last := len(parts) - 1
	for i, part := range parts {
		if i < last {
			kept, err := g.db.ImportPartKept(office, i, len(parts), part)
			if err != nil {
				return nil, err
			}
			if kept {
				continue
			}
		}
		if r.testMoveStopAfterParts != nil && r.testMoveStopAfterParts(i) {
			return nil, fmt.Errorf("replica: group %d: the import of %q stopped before its part %d of %d", g.id, office, i+1, len(parts))
		}
		res, err := r.node.Propose(ctx, g.id, importPartEntry(office, i, len(parts), part))
		if err != nil {
			return nil, err
		}
		mr, ok := res.(moveResult)
		if !ok {
			return nil, fmt.Errorf("replica: group %d: the move entry was applied before this node's start", g.id)
		}
		switch mr.answer {
		case MovePartKept:
		case MovePartMissing:
			return nil, fmt.Errorf("replica: group %d: the last part of the import of %q found a part missing", g.id, office)
		default:
			if mr.answer == MoveOK {
				r.cfg.Logger.Info("office imported in parts", zap.String("office", office), zap.Uint64("group", g.id), zap.Int("parts", len(parts)))
			}
			return []byte{mr.answer}, nil // MoveOK with the last part, or MoveHeld
		}
	}
	return nil, fmt.Errorf("BUG: replica: the last part of the import of %q answered that it was kept", office)
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
	case MoveTooLarge:
		return fmt.Errorf("%w: office %q has more records than a move carries (%d bytes); nothing was changed", ErrMove, office, MoveBytesMax)
	}
	if _, err := step(to, importRequest(office, from)); err != nil {
		return err
	}
	_, err = step(from, moveOutEntry(office))
	return err
}

// breakEngine breaks the engine this node runs for g, if any (P4): the
// watcher builds the next one under a new epoch.
func (r *Replica) breakEngine(g *group) {
	g.mu.Lock()
	if j := g.jr.Load(); j != nil {
		j.l.broken.Store(true)
	}
	g.mu.Unlock()
}
