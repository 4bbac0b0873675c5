package replica

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"slotd/allocator"
	"slotd/cluster"
	"slotd/wal"
)

// Entry kinds (see the package doc).
const (
	kindEpoch  byte = 1
	kindChange byte = 2
	kindSweep  byte = 6
)

// Defaults of Config.
const (
	DefaultTickInterval = 100 * time.Millisecond
	DefaultPollInterval = 10 * time.Millisecond
)

// Rebuilding a broken engine: the longest wait between two engines, and
// how long an engine must last for the waits to start over.
const (
	rebuildWaitMax = 2 * time.Second
	rebuildSettled = 10 * time.Second
)

// ErrRefused is a change's commit error when its entry was applied as
// nothing because a newer epoch had begun (P1): its engine is outdated.
var ErrRefused = errors.New("replica: change refused: its engine's epoch has ended")

// ErrNoEngine answers for a group this node does not lead, or whose
// engine is being built.
var ErrNoEngine = errors.New("replica: this node runs no engine for the group")

// Config configures a Replica.
type Config struct {
	// Self is this node's id.
	Self uint64
	// Stores are the groups' stores, by group: every group of the node.
	Stores map[uint64]*wal.DB
	// Engine is the base of each engine's config; the replica sets its
	// Journal.
	Engine allocator.Config
	// Now is the wall clock the leader stamps changes with. Nil: time.Now.
	Now func() time.Time
	// TickInterval is how often a leader's engine runs its timers (hold
	// expiry, releases, lottery draws). Zero: DefaultTickInterval.
	TickInterval time.Duration
	// PollInterval is how often the replica checks the groups' leaders.
	// Zero: DefaultPollInterval.
	PollInterval time.Duration
	// Logger receives leadership changes. Nil: none.
	Logger *zap.Logger
	// OnEngine, if set, is called (from one goroutine, never
	// concurrently) whenever a group's engine here changes: the new one,
	// or nil when the group has none here.
	OnEngine func(group uint64, e *allocator.Engine)
	// LedgerRemote hands a ledger entry for group to node leader, which
	// leads it (that node's ProposeLedger), and returns its answer. With
	// more than one group it turns the applicants' ledger on (L1–L7);
	// nil: each group's engine enforces the applicant rules for its own
	// offices only.
	LedgerRemote func(ctx context.Context, leader, group uint64, entry []byte) (byte, error)
	// LedgerReconcileAfter is the age of a token at which its group's
	// leader checks it against its booking (L5). Zero:
	// DefaultLedgerReconcileAfter.
	LedgerReconcileAfter time.Duration
	// MovePartBytes is the records one entry of a move's import carries,
	// in bytes: an office with more moves in parts (kind 10, O8). It
	// must leave room for one record (1 MiB) and the entry's framing
	// under the node's proposal bound. Zero: DefaultMovePartBytes.
	MovePartBytes int
}

// Replica applies the committed entries of a node's groups to their
// stores and runs the engines of the groups the node leads. It is the
// cluster.StateMachine of the node. Safe for concurrent use.
type Replica struct {
	cfg    Config
	groups map[uint64]*group
	// groupIDs are the groups' ids in order (HomeGroup).
	groupIDs []uint64
	node     *cluster.Node
	stopc    chan struct{}
	stop     sync.Once
	wg       sync.WaitGroup
	events   chan engineEvent // → notifier; OnEngine in order

	// Test variants with a safety check taken out, which the tests must
	// catch: testBeforePropose runs before a journal proposes;
	// testDetached proposes outside the leadership's life (a proposal
	// queued as it ends); testNoEpochs applies changes of any epoch.
	testBeforePropose func(j *journal, c *allocator.Change)
	testDetached      bool
	testNoEpochs      bool
	// testStaleLeader keeps a former leader's engine serving and lets its
	// journal acknowledge without the log: a node answering writes it no
	// longer leads.
	testStaleLeader bool
	// testSweepOwnClock, if set, makes each replica apply a sweep entry
	// with a plan of its own, from this clock and its store's options,
	// instead of the plan in the entry (W12 taken out).
	testSweepOwnClock func() time.Time
	// testNoLedger makes no engine reserve in the applicants' ledger.
	testNoLedger bool
	// testInstallWithoutReplace takes a snapshot without installing its
	// state: the store keeps its old state while raft moves on.
	testInstallWithoutReplace bool
	// testAfterInstall, if set, runs once a snapshot's state is installed
	// and before the node's log records the snapshot; an error stops the
	// node there, as a crash would.
	testAfterInstall func(group uint64) error
	// testMoveNoFreeze applies a move's freeze without its epoch: the
	// engine that serves the office keeps writing it while it is copied.
	testMoveNoFreeze bool
	// testSettleNoMarks makes the ledger's reconciler look for a booking
	// only in the group its id names, not where its office moved.
	testSettleNoMarks bool
	// testMoveLeaveIdempotency leaves the office's idempotency records
	// out of a move's import: a retry after the move is served anew.
	testMoveLeaveIdempotency bool
	// testMoveStopAfterParts, if set, is asked before each part of an
	// import in parts is proposed; true stops the import there, as if
	// its leader died.
	testMoveStopAfterParts func(part int) bool
	// testMoveImportEachPart writes each part of an import in parts as
	// an import of its own: the destination holds part of the office
	// once the first is applied, and refuses the rest.
	testMoveImportEachPart bool

	moves atomic.Uint64 // move entries applied (Moves)
}

// group is one group's replica on this node.
type group struct {
	id uint64
	db *wal.DB
	// The apply side, touched only by the node's loop (Apply).
	epoch       uint64 // the group's epoch (P1)
	skipThrough uint64 // the store's applied index at start (P5)
	// The leader side: lead is written by the watcher only; eng is the
	// engine handlers may use.
	lead *leadership
	// rebuildWait is the wait before the next engine after one broke,
	// rebuildAt when it ends; the watcher's.
	rebuildWait time.Duration
	rebuildAt   time.Time
	// mu orders the engine's publication against the end of its
	// leadership: an engine is stored only while its leadership lasts.
	mu  sync.Mutex
	eng atomic.Pointer[allocator.Engine]
	jr  atomic.Pointer[journal] // eng's journal
}

// leadership is one engine's life on a leader: from the proposal of its
// epoch to the end of the leadership or the engine's first failed commit.
type leadership struct {
	term   uint64
	ctx    context.Context
	cancel context.CancelFunc
	broken atomic.Bool // a commit failed (P4)
	// started is when the watcher began it.
	started time.Time
}

type engineEvent struct {
	group uint64
	eng   *allocator.Engine
}

// New returns the replica of cfg's groups. Start it with the node built
// over it.
func New(cfg Config) (*Replica, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.TickInterval <= 0 {
		cfg.TickInterval = DefaultTickInterval
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.LedgerReconcileAfter <= 0 {
		cfg.LedgerReconcileAfter = DefaultLedgerReconcileAfter
	}
	if cfg.MovePartBytes <= 0 {
		cfg.MovePartBytes = DefaultMovePartBytes
	}
	r := &Replica{cfg: cfg, groups: map[uint64]*group{}, stopc: make(chan struct{}), events: make(chan engineEvent, 64)}
	for id, db := range cfg.Stores {
		if id == 0 || id > 255 {
			return nil, fmt.Errorf("replica: group %d: groups are numbered 1 to 255 (a booking id's first byte names its group)", id)
		}
		applied, epoch, err := db.Applied()
		if err != nil {
			return nil, fmt.Errorf("replica: group %d: %w", id, err)
		}
		r.groups[id] = &group{id: id, db: db, epoch: epoch, skipThrough: applied}
	}
	r.groupIDs = sortedGroupIDs(r.groups)
	return r, nil
}

// Start begins watching the node's leaderships; the node must have been
// built with r as its state machine.
func (r *Replica) Start(n *cluster.Node) {
	r.node = n
	r.wg.Go(r.notify)
	r.wg.Go(r.watch)
}

// Close stops the engines and the watcher. The node is the caller's to
// close (after Close).
func (r *Replica) Close() {
	r.stop.Do(func() { close(r.stopc) })
	r.wg.Wait()
}

// Engine returns the engine of group if this node leads it and its
// engine is built, else nil.
func (r *Replica) Engine(group uint64) *allocator.Engine {
	if g := r.groups[group]; g != nil {
		return g.eng.Load()
	}
	return nil
}

// Commit commits c to group through its engine's journal here, for
// records that are no engine change (an idempotent answer the edge
// stores): ErrNoEngine where this node runs none.
func (r *Replica) Commit(group uint64, c *allocator.Change) error {
	g := r.groups[group]
	if g == nil {
		return fmt.Errorf("%w: group %d", ErrNoEngine, group)
	}
	j := g.jr.Load()
	if j == nil {
		return fmt.Errorf("%w: group %d", ErrNoEngine, group)
	}
	return j.Commit(c)
}

// Sweep proposes one retention sweep of group as an entry of its log and
// returns what it deleted once the entry is applied here; st.More says
// that more is past retention than one sweep deletes, so call again. A
// group with nothing past retention in this node's store gets no entry. The
// plan (wal.SweepPlan) is stamped here, from now and the retention
// options of this node's store of the group, and every replica applies
// it as it is (wal W12): no replica reads its own clock. Only the node
// running the group's engine sweeps (elsewhere ErrNoEngine), so one node
// sweeps a group at a time.
//
// A sweep names no epoch (P1): it deletes only idempotency records and
// events, which no engine holds in memory, so a sweep that commits after
// its proposer's leadership ended deletes nothing an engine relies on,
// only what was past retention at its stamp.
func (r *Replica) Sweep(group uint64, now time.Time) (st wal.SweepStats, err error) {
	g := r.groups[group]
	if g == nil {
		return st, fmt.Errorf("%w: group %d", ErrNoEngine, group)
	}
	j := g.jr.Load()
	if j == nil {
		return st, fmt.Errorf("%w: group %d", ErrNoEngine, group)
	}
	plan := g.db.PlanSweep(now)
	if due, err := g.db.SweepDue(plan); err != nil || !due {
		return st, err // nothing past retention: no entry
	}
	data := append([]byte{kindSweep}, wal.EncodeSweepPlan(plan)...)
	res, err := r.node.Propose(j.l.ctx, group, data)
	if err != nil {
		return st, fmt.Errorf("replica: group %d: sweep: %w", group, err)
	}
	sr, _ := res.(sweepResult) // none for an entry this store held before its start (P5)
	return sr.stats, nil
}

// Store returns group's store, nil for a group the node does not host.
func (r *Replica) Store(group uint64) *wal.DB {
	if g := r.groups[group]; g != nil {
		return g.db
	}
	return nil
}

// markerResult is the Result of an epoch entry.
type markerResult struct{ index, term uint64 }

// sweepResult is the Result of a sweep entry.
type sweepResult struct{ stats wal.SweepStats }

// changeResult is the Result of a change entry.
type changeResult struct {
	refused     bool
	firstCursor uint64
}

// Apply applies committed entries of group to its store (the
// cluster.StateMachine).
func (r *Replica) Apply(groupID uint64, entries []cluster.Entry) error {
	g := r.groups[groupID]
	if g == nil {
		return fmt.Errorf("replica: entries of group %d, which has no store here", groupID)
	}
	for i := range entries {
		e := &entries[i]
		if e.Index <= g.skipThrough || len(e.Data) == 0 {
			continue // P5; raft's own empty entries
		}
		switch e.Data[0] {
		case kindEpoch:
			if len(e.Data) != 1 {
				return fmt.Errorf("replica: group %d: entry %d: %w: epoch entry of %d bytes", groupID, e.Index, cluster.ErrCorruptEntry, len(e.Data))
			}
			if err := g.db.ApplyEpoch(e.Index, e.Index); err != nil {
				return err
			}
			g.epoch = e.Index
			e.Result = markerResult{index: e.Index, term: e.Term}
		case kindChange:
			epoch, n := binary.Uvarint(e.Data[1:])
			if n <= 0 {
				return fmt.Errorf("replica: group %d: entry %d: %w: change without an epoch", groupID, e.Index, cluster.ErrCorruptEntry)
			}
			if epoch != g.epoch && !r.testNoEpochs {
				e.Result = changeResult{refused: true}
				continue
			}
			first, err := g.db.ApplyStaged(e.Index, e.Data[1+n:])
			if errors.Is(err, wal.ErrVoided) {
				e.Result = changeResult{refused: true} // L4
				continue
			}
			if err != nil {
				return err
			}
			e.Result = changeResult{firstCursor: first}
		case kindSweep:
			plan := e.Data[1:]
			if r.testSweepOwnClock != nil {
				plan = wal.EncodeSweepPlan(g.db.PlanSweep(r.testSweepOwnClock()))
			}
			st, err := g.db.ApplySweep(e.Index, plan)
			if err != nil {
				return fmt.Errorf("replica: group %d: entry %d: %w", groupID, e.Index, err)
			}
			e.Result = sweepResult{stats: st}
		case 0:
			return fmt.Errorf("replica: group %d: entry %d: %w: kind 0", groupID, e.Index, cluster.ErrCorruptEntry)
		case kindReserve, kindRelease, kindVoid:
			if err := r.applyLedger(g, e); err != nil {
				return err
			}
		case kindMoveFreeze, kindMoveImport, kindMoveOut, kindMoveImportPart:
			if err := r.applyMove(g, e); err != nil {
				return err
			}
		default:
			// A kind this release does not know is a newer release's:
			// stop rather than misapply it (V4).
			return fmt.Errorf("replica: group %d: entry %d: %w: kind %d, which this release does not know: a node of a newer release proposed it; upgrade this node", groupID, e.Index, cluster.ErrNewerFormat, e.Data[0])
		}
	}
	return nil
}

// watch follows the groups' leaderships: it starts an engine's life where
// this node became leader and ends it where it stopped being one or the
// engine broke (P4).
func (r *Replica) watch() {
	t := time.NewTicker(r.cfg.PollInterval)
	defer t.Stop()
	defer func() {
		for _, g := range r.groups {
			r.endLeadership(g)
		}
	}()
	for {
		select {
		case <-r.stopc:
			return
		case <-t.C:
		}
		for _, g := range r.groups {
			leader, term := r.node.Status(g.id)
			l := g.lead
			switch {
			case leader != r.cfg.Self:
				if l != nil && !r.testStaleLeader {
					r.endLeadership(g)
				}
			case l != nil && l.broken.Load() && l.term == term:
				// The engine broke (P4). A new one is built under a new
				// epoch, but not at once again and again if it keeps
				// breaking (a store Recover refuses, a change too large
				// to propose): the waits double up to rebuildWaitMax,
				// and reset once an engine has lasted rebuildSettled.
				r.endLeadership(g)
				if time.Since(l.started) > rebuildSettled {
					g.rebuildWait = 0
				}
				g.rebuildWait = min(max(2*g.rebuildWait, r.cfg.PollInterval), rebuildWaitMax)
				g.rebuildAt = time.Now().Add(g.rebuildWait)
			case l == nil || l.term != term:
				if l != nil {
					r.endLeadership(g)
				}
				if l == nil && time.Now().Before(g.rebuildAt) {
					continue
				}
				r.beginLeadership(g, term)
			}
		}
	}
}

func (r *Replica) beginLeadership(g *group, term uint64) {
	ctx, cancel := context.WithCancel(context.Background())
	l := &leadership{term: term, ctx: ctx, cancel: cancel, started: time.Now()}
	g.lead = l
	r.wg.Go(func() { r.lead(g, l) })
}

func (r *Replica) endLeadership(g *group) {
	l := g.lead
	if l == nil {
		return
	}
	g.lead = nil
	g.mu.Lock()
	defer g.mu.Unlock()
	l.cancel()
	g.jr.Store(nil)
	if g.eng.Swap(nil) != nil {
		r.publish(engineEvent{group: g.id})
		r.cfg.Logger.Info("group engine stopped", zap.Uint64("group", g.id), zap.Uint64("term", l.term), zap.Bool("broken", l.broken.Load()))
	}
}

// publish queues ev for OnEngine unless the replica is closing.
func (r *Replica) publish(ev engineEvent) {
	select {
	case r.events <- ev:
	case <-r.stopc:
	}
}

// lead runs one engine's life: it proposes the epoch entry, builds the
// engine once the entry is applied in this leadership's term (P2), and
// runs its timers until the leadership ends.
func (r *Replica) lead(g *group, l *leadership) {
	var epoch uint64
	for epoch == 0 {
		res, err := r.node.Propose(l.ctx, g.id, []byte{kindEpoch})
		if l.ctx.Err() != nil {
			return
		}
		if err != nil {
			// Not (yet) the leader as raft sees it, or the proposal was
			// dropped: try again until the watcher ends this leadership.
			if !sleep(l.ctx, r.cfg.PollInterval) {
				return
			}
			continue
		}
		m := res.(markerResult)
		if m.term != l.term {
			return // applied in another term: this leadership is over (P2)
		}
		epoch = m.index
	}
	jr := &journal{r: r, g: g, l: l, epoch: epoch}
	var ledger allocator.ApplicantLedger
	if r.ledgerOn() {
		ledger = applicantLedger{r}
	}
	eng, err := allocator.New(allocator.Config{
		Journal:     jr,
		LotterySeed: r.cfg.Engine.LotterySeed,
		IDTag:       byte(g.id),
		Ledger:      ledger,
	})
	if err != nil {
		r.cfg.Logger.Error("cannot build a group engine", zap.Uint64("group", g.id), zap.Error(err))
		l.broken.Store(true)
		return
	}
	start := time.Now()
	st, err := wal.RecoverContext(l.ctx, g.db, eng, r.cfg.Now())
	if l.ctx.Err() != nil {
		return // the leadership ended mid-rebuild (wal W13): drop the engine
	}
	if err != nil {
		// The store is this node's own and refused its own records: the
		// node must not lead with it. Hand the leadership on.
		r.cfg.Logger.Error("cannot build a group engine from its store", zap.Uint64("group", g.id), zap.Error(err))
		l.broken.Store(true)
		return
	}
	g.mu.Lock()
	if l.ctx.Err() != nil {
		g.mu.Unlock()
		return
	}
	g.jr.Store(jr)
	g.eng.Store(eng)
	r.publish(engineEvent{group: g.id, eng: eng})
	g.mu.Unlock()
	// The timers that fell due while the group had no leader (hold
	// expiries, releases) fire now, while the engine already serves: each
	// is a commit of its own, and a backlog of them must not keep the
	// group's requests waiting.
	_ = eng.Tick(r.cfg.Now())
	if r.ledgerOn() {
		r.wg.Go(func() { r.reconcile(g, l) })
	}
	r.cfg.Logger.Info("group engine started", zap.Uint64("group", g.id), zap.Uint64("term", l.term), zap.Uint64("epoch", epoch),
		zap.Int("offices", st.Offices), zap.Int("bookings", st.Bookings), zap.Duration("took", time.Since(start)))
	t := time.NewTicker(r.cfg.TickInterval)
	defer t.Stop()
	for {
		select {
		case <-l.ctx.Done():
			return
		case <-t.C:
			_ = eng.Tick(r.cfg.Now())
		}
	}
}

// notify hands engine changes to OnEngine, in order.
func (r *Replica) notify() {
	for {
		select {
		case ev := <-r.events:
			if r.cfg.OnEngine != nil {
				r.cfg.OnEngine(ev.group, ev.eng)
			}
		case <-r.stopc:
			return
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// journal is a leader's engine's journal: it proposes each change to the
// group under the engine's epoch.
type journal struct {
	r     *Replica
	g     *group
	l     *leadership
	epoch uint64
}

// Commit stages c and proposes it; it returns nil once the entry is
// applied here and was not refused (P3). Any error breaks the engine
// (P4).
func (j *journal) Commit(c *allocator.Change) error {
	if c.Empty() {
		return nil
	}
	staged, err := wal.Stage(c)
	if err != nil {
		j.l.broken.Store(true)
		return err
	}
	data := make([]byte, 0, 1+binary.MaxVarintLen64+len(staged))
	data = append(data, kindChange)
	data = binary.AppendUvarint(data, j.epoch)
	data = append(data, staged...)
	if j.r.testStaleLeader {
		if leader, _ := j.r.node.Status(j.g.id); leader != j.r.cfg.Self {
			return nil
		}
	}
	if j.r.testBeforePropose != nil {
		j.r.testBeforePropose(j, c)
	}
	ctx := j.l.ctx
	if j.r.testDetached {
		ctx = context.Background()
	}
	if j.r.testStaleLeader {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 20*time.Millisecond)
		defer cancel()
	}
	res, err := j.r.node.Propose(ctx, j.g.id, data)
	if err != nil && j.r.testStaleLeader {
		return nil
	}
	if err != nil {
		j.l.broken.Store(true)
		return fmt.Errorf("replica: group %d: %w", j.g.id, err)
	}
	cr := res.(changeResult)
	if cr.refused {
		j.l.broken.Store(true)
		return fmt.Errorf("replica: group %d: %w", j.g.id, ErrRefused)
	}
	for i := range c.Events {
		c.Events[i].Cursor = cr.firstCursor + uint64(i)
	}
	return nil
}

// Degraded reports a broken engine (allocator.SelfDegradingJournal), so
// that its writes are refused at once until it is replaced.
func (j *journal) Degraded() bool {
	return !j.r.testStaleLeader && (j.l.broken.Load() || j.l.ctx.Err() != nil)
}

// The replica is a cluster.Snapshotter: its groups' logs are compacted
// and a replica behind a compacted log installs the group's state (S1…S5
// in package cluster; S6 in package wal).
var _ cluster.Snapshotter = (*Replica)(nil)

// DurableApplied makes the group store's writes durable and returns its
// applied index (cluster.Snapshotter).
func (r *Replica) DurableApplied(group uint64) (uint64, error) {
	g := r.groups[group]
	if g == nil {
		return 0, fmt.Errorf("replica: group %d has no store here", group)
	}
	return g.db.SyncApplied()
}

// stateSnapshot is a wal.StateSnapshot as a cluster.SnapshotState.
type stateSnapshot struct{ *wal.StateSnapshot }

func (s stateSnapshot) Index() uint64 { return s.Applied() }

// SnapshotState pins the group store's state (cluster.Snapshotter).
func (r *Replica) SnapshotState(group uint64) (cluster.SnapshotState, error) {
	g := r.groups[group]
	if g == nil {
		return nil, fmt.Errorf("replica: group %d has no store here", group)
	}
	s, err := g.db.SnapshotState()
	if err != nil {
		return nil, err
	}
	return stateSnapshot{s}, nil
}

// StageSnapshot stages a group state streamed from another node
// (cluster.Snapshotter).
func (r *Replica) StageSnapshot(group uint64, rd io.Reader) (uint64, error) {
	g := r.groups[group]
	if g == nil {
		return 0, fmt.Errorf("replica: group %d has no store here", group)
	}
	return g.db.StageSnapshot(rd)
}

// InstallSnapshot replaces the group store's state with the one staged at
// index (cluster.Snapshotter). An engine this node still runs for the
// group is broken first (P4): it was built from the state being replaced,
// and a node that receives a snapshot leads no more.
func (r *Replica) InstallSnapshot(group, index uint64) error {
	g := r.groups[group]
	if g == nil {
		return fmt.Errorf("replica: group %d has no store here", group)
	}
	g.mu.Lock()
	if j := g.jr.Load(); j != nil {
		j.l.broken.Store(true)
		j.l.cancel()
	}
	g.mu.Unlock()
	if r.testInstallWithoutReplace {
		return nil
	}
	if err := g.db.InstallSnapshot(index); err != nil {
		return err
	}
	applied, epoch, err := g.db.Applied()
	if err != nil {
		return err
	}
	if applied != index {
		panic(fmt.Sprintf("BUG: replica: group %d: installed the state at %d, the store says %d", group, index, applied))
	}
	g.epoch, g.skipThrough = epoch, applied
	if r.testAfterInstall != nil {
		return r.testAfterInstall(group)
	}
	return nil
}
