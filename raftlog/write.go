package raftlog

// The write path: Append (the Ready loop's one synced batch for every
// group), Compact and CreateSnapshot. See the package doc for the
// invariants (R1…R6).

import (
	"fmt"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// Update is what one group's Ready asks the log to store, applied in the
// order raft prescribes: snapshot, then entries, then hard state.
type Update struct {
	Group uint64
	// Snapshot, unless nil or empty (raft.IsEmptySnap), replaces the
	// group's log: every entry goes, the log continues after the
	// snapshot's index, and the snapshot becomes the one Snapshot returns.
	// A snapshot not newer than the stored one is refused with
	// raft.ErrSnapOutOfDate, as MemoryStorage.ApplySnapshot does.
	Snapshot *pb.Snapshot
	// Entries are appended. An entry at index i replaces the stored entry
	// i and every entry after it (raft's rule for a conflicting tail);
	// entries at or below the compacted index are skipped. They must be
	// contiguous and start at most one past the last index. The log keeps
	// the entries themselves in its cache: neither raft nor the caller may
	// change them (raft's contract for Ready.Entries).
	Entries []*pb.Entry
	// HardState is stored unless nil or empty (raft.IsEmptyHardState).
	HardState *pb.HardState
	// Membership, unless nil, replaces the group's membership record
	// (R7): the ConfState raft returned for the conf change applied at
	// its Index, which InitialState returns from then on.
	Membership *Membership
}

// Membership is a group's membership as its last applied conf change left
// it: raft's ConfState after the entry at Index, and Context, the
// caller's own record of the change (the cluster keeps the members'
// addresses there).
type Membership struct {
	Index     uint64
	ConfState *pb.ConfState
	Context   []byte
}

// clone returns a deep copy of m.
func (m *Membership) clone() *Membership {
	if m == nil {
		return nil
	}
	return &Membership{Index: m.Index, ConfState: proto.Clone(pb.EnsureConfState(m.ConfState)).(*pb.ConfState), Context: append([]byte(nil), m.Context...)}
}

// plan is what one Update changes in its group, worked out before the
// batch is committed and applied to memory after (R3).
type plan struct {
	g          *Group
	next       groupState // the group's state after the batch, but its tail
	snapped    bool       // a snapshot replaced the log: the tail goes
	lastBefore uint64     // the last index before the entries were appended
	e0         uint64     // index of the first entry appended
	from, to   int        // the appended entries: s.appended[from:to]
}

// Append stores the updates of several groups — the Readys of one turn of
// the node's Ready loop — in one Pebble batch, committed with one fsync
// (invariant R1). It returns nil only once all of it is on stable
// storage; after a crash the batch is wholly there or wholly absent. A
// refused update (an old snapshot, a snapshot too large) refuses the
// whole batch before anything is written. Malformed updates (a group
// twice, entries with a gap) are programmer errors and panic.
func (s *Store) Append(updates []Update) error { return s.append(updates, true) }

// append is Append; sync false leaves the batch to the next fsync (the
// crash tests tear such a batch).
func (s *Store) append(updates []Update, sync bool) error {
	if len(updates) == 0 {
		return nil
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if err := s.appendLocked(updates, sync); err != nil {
		return err
	}
	s.evictLocked()
	return nil
}

// appendLocked plans, commits and applies updates with every group of the
// batch locked, so that no reader sees the disk ahead of memory (R3).
// Caller holds s.writeMu.
func (s *Store) appendLocked(updates []Update, sync bool) error {
	s.appendSeq++
	plans := s.plans[:0]
	for i := range updates {
		g := s.Group(updates[i].Group)
		if g.planned == s.appendSeq {
			panic(fmt.Sprintf("BUG: raftlog: group %d twice in one Append", g.id))
		}
		g.planned = s.appendSeq
		plans = append(plans, plan{g: g})
	}
	for i := range plans {
		plans[i].g.mu.Lock()
	}
	defer func() {
		for i := range plans {
			plans[i].g.mu.Unlock()
		}
		clear(plans)
		s.plans = plans[:0]
		clear(s.appended)
		s.appended = s.appended[:0]
	}()
	for i := range plans {
		if err := s.stage(&plans[i], &updates[i]); err != nil {
			s.batch.Reset()
			return err
		}
	}
	if s.batch.Empty() {
		return nil
	}
	n := s.batch.Len()
	err := s.batch.Commit(sync)
	s.batch.Reset()
	if err != nil {
		return fmt.Errorf("raftlog: append: %w", err)
	}
	for i := range plans {
		s.apply(&plans[i])
	}
	s.stats.appends.Add(1)
	s.stats.appendEntries.Add(uint64(len(s.appended)))
	s.stats.appendBytes.Add(uint64(n))
	return nil
}

// stage checks update u of plan p's group and writes it into s.batch;
// p.next becomes the group's state after it. Caller holds s.writeMu and
// the group's mu.
func (s *Store) stage(p *plan, u *Update) error {
	g := p.g
	p.next = g.st
	st := &p.next
	if snap := u.Snapshot; !raft.IsEmptySnap(snap) {
		meta := pb.EnsureSnapshotMetadata(proto.Clone(snap.GetMetadata()).(*pb.SnapshotMetadata))
		if have := st.snap.GetIndex(); have != 0 && have >= meta.GetIndex() {
			return fmt.Errorf("raftlog: group %d: snapshot at %d, the log has one at %d: %w", g.id, meta.GetIndex(), have, raft.ErrSnapOutOfDate)
		}
		if err := s.stageSnapshot(g.id, meta, snap.GetData()); err != nil {
			return err
		}
		s.batch.DeleteRange(entryKey(s.key[:0], s.prefix, g.id, 0), entriesEnd(nil, s.prefix, g.id))
		st.trunc = truncated{index: meta.GetIndex(), term: meta.GetTerm()}
		s.setTruncated(g.id, st.trunc)
		st.last = st.trunc.index
		st.snap, st.snapDataBytes = meta, uint64(len(snap.GetData()))
		p.snapped = true
	}
	p.lastBefore = st.last
	p.from, p.to = len(s.appended), len(s.appended)
	if len(u.Entries) > 0 {
		s.stageEntries(p, u.Entries)
	}
	if hs := u.HardState; !raft.IsEmptyHardState(hs) {
		if invariantsEnabled && hs.GetCommit() > st.last {
			panic(fmt.Sprintf("BUG: raftlog: group %d: hard state commits %d beyond the last entry %d", g.id, hs.GetCommit(), st.last))
		}
		st.hard = proto.Clone(hs).(*pb.HardState)
		s.val = appendProto(s.val[:0], st.hard)
		s.batch.Set(groupKey(s.key[:0], s.prefix, g.id, kindHardState), s.val)
	}
	if m := u.Membership; m != nil {
		st.members = m.clone()
		s.val = appendMembership(s.val[:0], st.members)
		s.batch.Set(groupKey(s.key[:0], s.prefix, g.id, kindMembership), s.val)
	}
	return nil
}

// stageEntries writes ents into s.batch as MemoryStorage.Append would
// change its log, and deletes the stored entries they replace (R2).
func (s *Store) stageEntries(p *plan, ents []*pb.Entry) {
	g, st := p.g, &p.next
	first := st.trunc.index + 1
	e0 := ents[0].GetIndex()
	last := e0 + uint64(len(ents)) - 1
	if last < first {
		return // all compacted
	}
	if e0 < first {
		ents = ents[first-e0:]
		e0 = first
	}
	if e0 > st.last+1 {
		panic(fmt.Sprintf("BUG: raftlog: group %d: entry %d appended after the last entry %d", g.id, e0, st.last))
	}
	var term uint64
	for i, e := range ents {
		if e.GetIndex() != e0+uint64(i) {
			panic(fmt.Sprintf("BUG: raftlog: group %d: entry %d where %d belongs", g.id, e.GetIndex(), e0+uint64(i)))
		}
		if invariantsEnabled && e.GetTerm() < term {
			panic(fmt.Sprintf("BUG: raftlog: group %d: entry %d of term %d after term %d", g.id, e.GetIndex(), e.GetTerm(), term))
		}
		term = e.GetTerm()
	}
	if last < st.last {
		// The new entries end before the old tail did: the rest of the
		// old tail goes too.
		s.batch.DeleteRange(entryKey(s.key[:0], s.prefix, g.id, last+1), entryKey(nil, s.prefix, g.id, st.last+1))
	}
	for _, e := range ents {
		s.val = appendProto(s.val[:0], e)
		if invariantsEnabled {
			verifyEntry(g.id, e, s.val)
		}
		s.batch.Set(entryKey(s.key[:0], s.prefix, g.id, e.GetIndex()), s.val)
		s.appended = append(s.appended, cached{e: e, size: uint64(len(s.val))})
	}
	p.e0, p.to = e0, len(s.appended)
	st.last = last
}

// verifyEntry decodes v again and panics unless it is e (invariants only):
// a record is asserted right before it is written.
func verifyEntry(g uint64, e *pb.Entry, v []byte) {
	got, err := decodeEntry(v, e.GetIndex())
	if err != nil {
		panic(fmt.Sprintf("BUG: raftlog: group %d: entry %d does not decode after encoding: %v", g, e.GetIndex(), err))
	}
	if !proto.Equal(got, e) || uint64(proto.Size(e)) != uint64(len(v)) {
		panic(fmt.Sprintf("BUG: raftlog: group %d: entry %d changes through encoding", g, e.GetIndex()))
	}
}

// stageSnapshot writes a snapshot's metadata and data into s.batch. The
// data is copied into the batch and not kept: Snapshot reads it back when
// raft asks for it.
func (s *Store) stageSnapshot(g uint64, meta *pb.SnapshotMetadata, data []byte) error {
	if int64(len(data)) > s.opts.SnapshotBytesMax {
		return fmt.Errorf("%w: group %d: snapshot at %d has %d bytes, at most %d", ErrSnapshotTooLarge, g, meta.GetIndex(), len(data), s.opts.SnapshotBytesMax)
	}
	s.val = appendSnapshotMeta(s.val[:0], snapshotMeta{meta: meta, form: dataInline, dataBytes: uint64(len(data))})
	s.batch.Set(groupKey(s.key[:0], s.prefix, g, kindSnapshotMeta), s.val)
	s.batch.Set(groupKey(s.key[:0], s.prefix, g, kindSnapshotData), data)
	return nil
}

func (s *Store) setTruncated(g uint64, t truncated) {
	s.val = appendTruncated(s.val[:0], t)
	s.batch.Set(groupKey(s.key[:0], s.prefix, g, kindTruncated), s.val)
}

// apply makes plan p's group state what its committed batch wrote (R3),
// and caches the appended entries (R4). Caller holds s.writeMu and the
// group's mu.
func (s *Store) apply(p *plan) {
	st := &p.g.st
	if p.snapped {
		s.keepTail(st, 0)
	}
	if p.to > p.from {
		// The tail ends at lastBefore; the new entries replace it from e0.
		first := p.lastBefore + 1 - uint64(len(st.tail))
		keep := 0
		if p.e0 >= first {
			keep = int(p.e0 - first)
		}
		s.keepTail(st, keep)
		for _, c := range s.appended[p.from:p.to] {
			st.tail = append(st.tail, c)
			st.tailBytes += c.bytes()
			s.cachedBytes += c.bytes()
		}
	}
	tail, tailBytes := st.tail, st.tailBytes
	*st = p.next
	st.tail, st.tailBytes = tail, tailBytes
	s.stats.cacheBytes.Store(s.cachedBytes)
}

// keepTail keeps the first n cached entries of st and lets the rest go.
// Caller holds s.writeMu and the group's mu.
func (s *Store) keepTail(st *groupState, n int) {
	for _, c := range st.tail[n:] {
		st.tailBytes -= c.bytes()
		s.cachedBytes -= c.bytes()
	}
	clear(st.tail[n:]) // the entries are garbage unless raft holds them
	st.tail = st.tail[:n]
}

// dropTail lets the n oldest cached entries of st go. Caller holds
// s.writeMu and the group's mu.
func (s *Store) dropTail(st *groupState, n int) {
	for _, c := range st.tail[:n] {
		st.tailBytes -= c.bytes()
		s.cachedBytes -= c.bytes()
	}
	clear(st.tail[:n])
	st.tail = st.tail[n:]
}

// evictLocked lets cached entries go until the cache holds at most
// Options.CacheBytes (R4): the oldest entries of the group that holds the
// most, down to seven eighths of the bound, so that a full cache is not
// trimmed on every Append. Caller holds s.writeMu and no group's mu.
func (s *Store) evictLocked() {
	if s.cachedBytes <= s.opts.CacheBytes {
		return
	}
	target := s.opts.CacheBytes - s.opts.CacheBytes/8
	s.groupsMu.RLock()
	defer s.groupsMu.RUnlock()
	for s.cachedBytes > target {
		var victim *Group
		// tailBytes changes only under s.writeMu, which this holds.
		for _, g := range s.groups {
			if victim == nil || g.st.tailBytes > victim.st.tailBytes {
				victim = g
			}
		}
		if victim == nil || victim.st.tailBytes == 0 {
			panic(fmt.Sprintf("BUG: raftlog: cache counts %d bytes but no group holds any", s.cachedBytes))
		}
		victim.mu.Lock()
		st := &victim.st
		n := 0
		for over := s.cachedBytes - target; over > 0 && n < len(st.tail); n++ {
			over -= st.tail[n].bytes()
		}
		s.dropTail(st, n)
		victim.mu.Unlock()
	}
	s.stats.cacheBytes.Store(s.cachedBytes)
}

// Compact discards the entries up to and including index, as
// MemoryStorage.Compact does: FirstIndex becomes index+1 and Term still
// answers for index. It returns raft.ErrCompacted if index is already
// compacted; an index beyond the last entry is a programmer error. The
// caller compacts only what its state machine has applied durably and
// what a snapshot covers for followers that lag (see the package doc).
//
// The batch is not synced: lost in a crash, the entries come back, which
// is harmless, and Pebble's log keeps the order of batches, so a later
// synced Append makes it durable first.
func (s *Store) Compact(group, index uint64) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	g := s.Group(group)
	g.mu.Lock()
	defer g.mu.Unlock()
	st := &g.st
	if index <= st.trunc.index {
		return raft.ErrCompacted
	}
	if index > st.last {
		panic(fmt.Sprintf("BUG: raftlog: group %d: compact %d beyond the last entry %d", g.id, index, st.last))
	}
	term, err := g.termLocked(index)
	if err != nil {
		return err
	}
	t := truncated{index: index, term: term}
	s.batch.DeleteRange(entryKey(s.key[:0], s.prefix, g.id, st.trunc.index+1), entryKey(nil, s.prefix, g.id, index+1))
	s.setTruncated(g.id, t)
	err = s.batch.Commit(false)
	s.batch.Reset()
	if err != nil {
		return fmt.Errorf("raftlog: group %d: compact through %d: %w", g.id, index, err)
	}
	st.trunc = t
	if first := st.tailFirst(); index >= first {
		s.dropTail(st, int(index-first+1))
	}
	s.stats.cacheBytes.Store(s.cachedBytes)
	return nil
}

// CreateSnapshot records a snapshot of the group's state machine at index
// i, as MemoryStorage.CreateSnapshot does: Snapshot returns it from now on.
// cs is the configuration at i; nil keeps the previous snapshot's. It
// returns raft.ErrSnapOutOfDate unless i is above the stored snapshot's
// index; i outside the log is a programmer error. The log keeps its
// entries until Compact.
//
// The data is written to Pebble and not kept in memory; the returned
// snapshot holds the caller's data slice. Not synced, like Compact: a
// crash may lose the snapshot, never the entries it covers, as Pebble's
// log keeps the order of batches.
func (s *Store) CreateSnapshot(group, i uint64, cs *pb.ConfState, data []byte) (*pb.Snapshot, error) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	g := s.Group(group)
	g.mu.Lock()
	defer g.mu.Unlock()
	st := &g.st
	if i <= st.snap.GetIndex() {
		return nil, raft.ErrSnapOutOfDate
	}
	if i > st.last || i < st.trunc.index {
		panic(fmt.Sprintf("BUG: raftlog: group %d: snapshot at %d outside the log %d..%d", g.id, i, st.trunc.index, st.last))
	}
	term, err := g.termLocked(i)
	if err != nil {
		return nil, err
	}
	if cs == nil {
		cs = st.snap.GetConfState()
	}
	meta := pb.EnsureSnapshotMetadata(&pb.SnapshotMetadata{Index: new(i), Term: new(term)})
	if cs != nil {
		meta.ConfState = pb.EnsureConfState(proto.Clone(cs).(*pb.ConfState))
	}
	if err := s.stageSnapshot(g.id, meta, data); err != nil {
		s.batch.Reset()
		return nil, err
	}
	err = s.batch.Commit(false)
	s.batch.Reset()
	if err != nil {
		return nil, fmt.Errorf("raftlog: group %d: snapshot at %d: %w", g.id, i, err)
	}
	st.snap, st.snapDataBytes = meta, uint64(len(data))
	return &pb.Snapshot{Metadata: proto.Clone(meta).(*pb.SnapshotMetadata), Data: data}, nil
}
