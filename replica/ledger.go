package replica

// The applicant ledger (package doc, "Applicants across groups", L1–L7):
// entries of kinds 3 to 5, their apply, the allocator.ApplicantLedger
// the engines call, and the reconciler of lost releases.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"time"

	"go.uber.org/zap"

	"slotd/allocator"
	"slotd/cluster"
	"slotd/wal"
)

// Entry kinds of the ledger (see the package doc).
const (
	kindReserve byte = 3
	kindRelease byte = 4
	kindVoid    byte = 5
)

// Answers of a ledger entry (LedgerRemote's byte).
const (
	// LedgerOK: the token is reserved, released, or the booking voided.
	LedgerOK byte = 0
	// LedgerLimit: a reservation past the applicant's limit.
	LedgerLimit byte = 1
	// LedgerDuplicate: a reservation of a service the applicant holds.
	LedgerDuplicate byte = 2
	// LedgerExists: a void of a booking its group's store holds.
	LedgerExists byte = 3
)

// Bounds of the ledger's calls and of the reconciler.
const (
	// ledgerReserveWait bounds a reservation, retries included: a hold
	// waits that long at most for its applicant's home group.
	ledgerReserveWait = 2 * time.Second
	// ledgerReleaseWait bounds a release: one that fails is the
	// reconciler's (L5), and the engine's timers must not wait long.
	ledgerReleaseWait = 500 * time.Millisecond
	// DefaultLedgerReconcileAfter is the default age at which the
	// reconciler checks a token against its booking.
	DefaultLedgerReconcileAfter = 30 * time.Second
	// reconcileActionsMax bounds the proposals of one pass.
	reconcileActionsMax = 256
)

// ErrLedgerEntry refuses a malformed ledger entry handed to ProposeLedger.
var ErrLedgerEntry = errors.New("replica: malformed ledger entry")

// ledgerEntry is a decoded entry of kind 3, 4 or 5.
type ledgerEntry struct {
	kind    byte
	limit   int
	token   wal.LedgerToken
	booking allocator.ID // kindVoid's (token.Booking otherwise)
}

func appendLedgerString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func reserveEntry(t wal.LedgerToken, limit int) []byte {
	b := []byte{kindReserve}
	b = binary.AppendUvarint(b, uint64(max(limit, 0)))
	b = appendLedgerString(b, t.Applicant)
	b = append(b, t.Booking[:]...)
	b = appendLedgerString(b, t.Service)
	return binary.AppendVarint(b, t.CreatedUnixNano)
}

func releaseEntry(applicant string, id allocator.ID) []byte {
	b := []byte{kindRelease}
	b = appendLedgerString(b, applicant)
	return append(b, id[:]...)
}

func voidEntry(id allocator.ID, createdUnixNano int64) []byte {
	b := append([]byte{kindVoid}, id[:]...)
	return binary.AppendVarint(b, createdUnixNano)
}

// Bounds of a ledger entry's strings (the engine's own are smaller).
const (
	ledgerApplicantBytesMax = 256
	ledgerServiceBytesMax   = 4096
	ledgerLimitMax          = 1 << 20
)

// decodeLedgerEntry decodes and checks data, an entry of kind 3 to 5.
func decodeLedgerEntry(data []byte) (ledgerEntry, error) {
	var le ledgerEntry
	if len(data) == 0 {
		return le, ErrLedgerEntry
	}
	le.kind = data[0]
	p := data[1:]
	str := func(maxBytes int) (string, bool) {
		n, k := binary.Uvarint(p)
		if k <= 0 || n > uint64(maxBytes) || uint64(len(p)-k) < n {
			return "", false
		}
		s := string(p[k : k+int(n)])
		p = p[k+int(n):]
		return s, true
	}
	id := func(dst *allocator.ID) bool {
		if len(p) < len(dst) {
			return false
		}
		copy(dst[:], p)
		p = p[len(dst):]
		return true
	}
	ok := true
	switch le.kind {
	case kindReserve:
		n, k := binary.Uvarint(p)
		if k <= 0 || n > ledgerLimitMax {
			return le, fmt.Errorf("%w: limit", ErrLedgerEntry)
		}
		le.limit = int(n)
		p = p[k:]
		le.token.Applicant, ok = str(ledgerApplicantBytesMax)
		ok = ok && le.token.Applicant != "" && id(&le.token.Booking)
		if ok {
			le.token.Service, ok = str(ledgerServiceBytesMax)
		}
		if ok {
			var k int
			le.token.CreatedUnixNano, k = binary.Varint(p)
			ok = k > 0
			p = p[max(k, 0):]
		}
		le.booking = le.token.Booking
	case kindRelease:
		le.token.Applicant, ok = str(ledgerApplicantBytesMax)
		ok = ok && le.token.Applicant != "" && id(&le.token.Booking)
		le.booking = le.token.Booking
	case kindVoid:
		ok = id(&le.booking)
		if ok {
			var k int
			le.token.CreatedUnixNano, k = binary.Varint(p)
			ok = k > 0
			p = p[max(k, 0):]
		}
	default:
		return le, fmt.Errorf("%w: kind %d", ErrLedgerEntry, le.kind)
	}
	if !ok || len(p) != 0 {
		return le, fmt.Errorf("%w: kind %d", ErrLedgerEntry, le.kind)
	}
	return le, nil
}

// ledgerResult is the Result of a ledger entry.
type ledgerResult struct{ answer byte }

// applyLedger applies the ledger entry e of g (L1, L2, L4).
func (r *Replica) applyLedger(g *group, e *cluster.Entry) error {
	le, err := decodeLedgerEntry(e.Data)
	if err != nil {
		return fmt.Errorf("replica: group %d: entry %d: %w: %w", g.id, e.Index, cluster.ErrCorruptEntry, err)
	}
	switch le.kind {
	case kindReserve:
		v, err := g.db.ApplyLedgerReserve(e.Index, le.token, le.limit)
		if err != nil {
			return err
		}
		answer := LedgerOK
		switch v {
		case wal.LedgerLimit:
			answer = LedgerLimit
		case wal.LedgerDuplicate:
			answer = LedgerDuplicate
		}
		e.Result = ledgerResult{answer}
	case kindRelease:
		if err := g.db.ApplyLedgerRelease(e.Index, le.token.Applicant, le.token.Booking); err != nil {
			return err
		}
		e.Result = ledgerResult{LedgerOK}
	case kindVoid:
		exists, err := g.db.ApplyVoid(e.Index, le.booking, le.token.CreatedUnixNano)
		if err != nil {
			return err
		}
		answer := LedgerOK
		if exists {
			answer = LedgerExists
		}
		e.Result = ledgerResult{answer}
	}
	return nil
}

// ledgerOn reports whether the groups keep applicants' ledgers: with
// more than one group and a way to reach the other leaders.
func (r *Replica) ledgerOn() bool {
	return len(r.groupIDs) > 1 && r.cfg.LedgerRemote != nil && !r.testNoLedger
}

// HomeGroup returns the group that keeps applicant's ledger: a hash of
// the engine's applicant id (namespace included) over the groups.
func (r *Replica) HomeGroup(applicant string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(applicant))
	return r.groupIDs[h.Sum64()%uint64(len(r.groupIDs))]
}

// ProposeLedger proposes entry, a ledger entry (kinds 3 to 5) another
// node's replica made, to group, which this node must lead, and returns
// its answer once applied here. LedgerRemote's other end.
func (r *Replica) ProposeLedger(ctx context.Context, group uint64, entry []byte) (byte, error) {
	if _, err := decodeLedgerEntry(entry); err != nil {
		return 0, err // never into the log: its apply would stop every node
	}
	if r.groups[group] == nil {
		return 0, fmt.Errorf("%w: %d", cluster.ErrUnknownGroup, group)
	}
	if leader, _ := r.node.Status(group); leader != r.cfg.Self {
		return 0, fmt.Errorf("%w: group %d", cluster.ErrNotLeader, group)
	}
	res, err := r.node.Propose(ctx, group, entry)
	if err != nil {
		return 0, err
	}
	lr, ok := res.(ledgerResult)
	if !ok {
		return 0, fmt.Errorf("replica: group %d: a ledger entry applied as %T", group, res)
	}
	return lr.answer, nil
}

// ledgerCall brings entry to group's leader, here or through
// LedgerRemote, retrying (every entry is idempotent) until wait ends.
func (r *Replica) ledgerCall(group uint64, entry []byte, wait time.Duration) (byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	for {
		leader, _ := r.node.Status(group)
		var answer byte
		var err error
		switch leader {
		case 0:
			err = fmt.Errorf("group %d has no leader", group)
		case r.cfg.Self:
			answer, err = r.ProposeLedger(ctx, group, entry)
		default:
			answer, err = r.cfg.LedgerRemote(ctx, leader, group, entry)
		}
		if err == nil {
			return answer, nil
		}
		if !sleep(ctx, r.cfg.PollInterval) {
			return 0, err
		}
	}
}

// applicantLedger is the allocator.ApplicantLedger of a node's engines.
// Safe for concurrent use.
type applicantLedger struct{ r *Replica }

func (a applicantLedger) Reserve(applicant string, id allocator.ID, service string, createdUnixNano int64, limit int) error {
	t := wal.LedgerToken{Applicant: applicant, Booking: id, Service: service, CreatedUnixNano: createdUnixNano}
	answer, err := a.r.ledgerCall(a.r.HomeGroup(applicant), reserveEntry(t, limit), ledgerReserveWait)
	if err != nil {
		return fmt.Errorf("%w: %w", allocator.ErrLedgerUnavailable, err)
	}
	switch answer {
	case LedgerLimit:
		return allocator.ErrLimitReached
	case LedgerDuplicate:
		return allocator.ErrDuplicateBooking
	}
	return nil
}

func (a applicantLedger) Release(applicant string, id allocator.ID) {
	if _, err := a.r.ledgerCall(a.r.HomeGroup(applicant), releaseEntry(applicant, id), ledgerReleaseWait); err != nil {
		a.r.cfg.Logger.Debug("ledger release left to the reconciler", zap.String("booking", id.String()), zap.Error(err))
	}
}

// reconcile runs while l leads g: every half of LedgerReconcileAfter it
// settles g's tokens it has seen for that long against their bookings
// (L5, L6). A token's age is counted on this node's own clock from the
// pass that first saw it, not from its creation time: the engines stamp
// that with their clock, which may differ from this node's, and a new
// leader so waits the full age again before it settles anything. The
// cost is a map entry per token of the group while the node leads it.
func (r *Replica) reconcile(g *group, l *leadership) {
	t := time.NewTicker(r.cfg.LedgerReconcileAfter / 2)
	defer t.Stop()
	seen := map[allocator.ID]time.Time{}
	for {
		select {
		case <-l.ctx.Done():
			return
		case <-t.C:
		}
		var err error
		if seen, err = r.reconcilePass(g, l, seen); err != nil && l.ctx.Err() == nil {
			r.cfg.Logger.Warn("ledger reconciliation", zap.Uint64("group", g.id), zap.Error(err))
		}
	}
}

// reconcilePass is one pass over g's ledger; seen holds when a pass
// first saw each token, and the pass returns it for the tokens it saw.
func (r *Replica) reconcilePass(g *group, l *leadership, seen map[allocator.ID]time.Time) (map[allocator.ID]time.Time, error) {
	now := time.Now()
	next := make(map[allocator.ID]time.Time, len(seen))
	var old []wal.LedgerToken
	err := g.db.EachLedgerToken(func(t wal.LedgerToken) bool {
		first, ok := seen[t.Booking]
		if !ok {
			first = now
		}
		next[t.Booking] = first
		if now.Sub(first) >= r.cfg.LedgerReconcileAfter && len(old) < reconcileActionsMax {
			old = append(old, t)
		}
		return true
	})
	if err != nil {
		return seen, err
	}
	for _, t := range old {
		if l.ctx.Err() != nil {
			return next, nil
		}
		if err := r.settle(g, t); err != nil {
			return next, err
		}
	}
	return next, nil
}

// settle releases t if its booking ended or never will exist.
func (r *Replica) settle(g *group, t wal.LedgerToken) error {
	bg := uint64(t.Booking[0])
	db := r.Store(bg)
	if db == nil {
		return fmt.Errorf("token of booking %s of group %d, which this node does not host", t.Booking, bg)
	}
	rec, found, err := db.LoadBooking(t.Booking, t.CreatedUnixNano)
	if err != nil {
		return err
	}
	// A booking whose office moved lives in the group the move names
	// (O4): follow the marks, a few hops at most.
	for hops := 0; !found && hops < 8 && !r.testSettleNoMarks; hops++ {
		to, _, err := db.BookingMovedTo(t.Booking)
		if err != nil {
			return err
		}
		if to == 0 || r.Store(to) == nil {
			break
		}
		bg, db = to, r.Store(to)
		if rec, found, err = db.LoadBooking(t.Booking, t.CreatedUnixNano); err != nil {
			return err
		}
	}
	switch {
	case found && rec.Status.Active():
		return nil // a live booking keeps its token
	case !found:
		voided, err := db.Voided(t.Booking)
		if err != nil {
			return err
		}
		if !voided {
			// Not in this replica of its group: it may be still to come
			// (a slow engine, or this replica lags). A void settles it in
			// the group's log order (L4): either the booking is there
			// first, or it can never be written.
			answer, err := r.ledgerCall(bg, voidEntry(t.Booking, t.CreatedUnixNano), ledgerReserveWait)
			if err != nil || answer == LedgerExists {
				return err
			}
		}
	}
	if _, err := r.ledgerCall(g.id, releaseEntry(t.Applicant, t.Booking), ledgerReserveWait); err != nil {
		return err
	}
	r.cfg.Logger.Info("ledger token settled", zap.Uint64("group", g.id), zap.String("booking", t.Booking.String()), zap.Bool("booking_found", found))
	return nil
}

// sortedGroupIDs returns the ids of groups in order.
func sortedGroupIDs(groups map[uint64]*group) []uint64 {
	ids := make([]uint64, 0, len(groups))
	for id := range groups {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}
