package raftlog

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"

	"slotd/wal"
)

// Sentinel errors. Callers compare with errors.Is. The read methods of
// raft.Storage return raft's own sentinels (raft.ErrCompacted and the
// rest) unwrapped, as raft compares them with ==.
var (
	// ErrCorrupt wraps every stored key or value that fails to decode or
	// fails its check. The message names the key.
	ErrCorrupt = errors.New("raftlog: corrupt record")
	// ErrFormat refuses a region written in a format this version does
	// not know.
	ErrFormat = errors.New("raftlog: unknown on-disk format")
	// ErrSnapshotTooLarge refuses a snapshot whose data exceeds
	// Options.SnapshotBytesMax.
	ErrSnapshotTooLarge = errors.New("raftlog: snapshot data too large")
)

// Defaults for zero Options fields.
const (
	DefaultCacheBytes       = 16 << 20
	DefaultSnapshotBytesMax = 256 << 20

	// snapshotBytesLimit bounds Options.SnapshotBytesMax: the data goes
	// into one Pebble batch, which holds at most 4 GiB.
	snapshotBytesLimit = 1 << 30
)

// Options configure Open. The zero value is usable: every zero field takes
// the default its comment names.
type Options struct {
	// CacheBytes bounds the tail cache of all groups together, in bytes:
	// an entry counts its encoded size plus entryOverheadBytes. A group's
	// newest entries are served from the cache; older ones, and those the
	// cache let go, are read from Pebble. Zero means DefaultCacheBytes
	// (16 MiB); 1 keeps nothing cached.
	CacheBytes int64
	// SnapshotBytesMax bounds the data of one snapshot, in bytes. Zero
	// means DefaultSnapshotBytesMax (256 MiB).
	SnapshotBytesMax int64
}

// validate returns the first problem with o, in words a user can act on.
func (o *Options) validate() error {
	switch {
	case o.CacheBytes < 0:
		return fmt.Errorf("raftlog: CacheBytes %d is negative; use 0 for the default of %d", o.CacheBytes, DefaultCacheBytes)
	case o.SnapshotBytesMax < 0 || o.SnapshotBytesMax > snapshotBytesLimit:
		return fmt.Errorf("raftlog: SnapshotBytesMax %d must be in 0..%d (0 means %d)", o.SnapshotBytesMax, snapshotBytesLimit, DefaultSnapshotBytesMax)
	}
	return nil
}

func (o Options) withDefaults() Options {
	if o.CacheBytes == 0 {
		o.CacheBytes = DefaultCacheBytes
	}
	if o.SnapshotBytesMax == 0 {
		o.SnapshotBytesMax = DefaultSnapshotBytesMax
	}
	return o
}

// Store keeps the Raft state of every group of one node in the node's wal
// store. Safe for concurrent use: writers (Append, Compact,
// CreateSnapshot) take turns; a group's reads wait only for a writer of
// that group. The Store owns no file: it lives as long as the wal.DB its
// region belongs to, and refuses once that is closed.
type Store struct {
	region *wal.Region
	prefix byte
	opts   Options

	groupsMu sync.RWMutex
	groups   map[uint64]*Group // guarded by groupsMu

	// writeMu serialises the writers. A writer holds it from planning a
	// batch until the groups' memory follows the committed batch, and
	// takes each group's mu inside it; readers take only one group's mu,
	// so the order cannot deadlock.
	writeMu     sync.Mutex
	batch       *wal.RegionBatch // guarded by writeMu; reset after each commit
	key, val    []byte           // guarded by writeMu; scratch
	plans       []plan           // guarded by writeMu; one per update of an Append
	cachedBytes int64            // guarded by writeMu: sum of the groups' tailBytes
	appended    []cached         // guarded by writeMu: the entries of the Append in progress
	appendSeq   uint64           // guarded by writeMu: numbers the Appends, see Group.planned

	stats stats
}

// stats are the Store's counters. Each is written by the writer holding
// writeMu or by readers, and read by Stats; atomics because of the latter.
type stats struct {
	appends       atomic.Uint64
	appendEntries atomic.Uint64
	appendBytes   atomic.Uint64
	cachedReads   atomic.Uint64
	storedReads   atomic.Uint64
	cacheBytes    atomic.Int64
}

// Stats are the Store's counters since Open.
type Stats struct {
	Appends         uint64 // Append calls that committed
	AppendedEntries uint64 // entries those calls wrote
	// AppendedBytes is the size of those calls' batches as Pebble's log
	// writes them: keys, values and the batch's framing.
	AppendedBytes uint64
	// CachedEntryReads and StoredEntryReads count the entries Entries
	// returned from the tail cache and from Pebble.
	CachedEntryReads, StoredEntryReads uint64
	CacheBytes                         int64 // what the tail cache holds now
}

// Stats returns a snapshot of the counters.
func (s *Store) Stats() Stats {
	return Stats{
		Appends:          s.stats.appends.Load(),
		AppendedEntries:  s.stats.appendEntries.Load(),
		AppendedBytes:    s.stats.appendBytes.Load(),
		CachedEntryReads: s.stats.cachedReads.Load(),
		StoredEntryReads: s.stats.storedReads.Load(),
		CacheBytes:       s.stats.cacheBytes.Load(),
	}
}

// Open reads the Raft state of every group stored in region (wal's
// DB.RaftRegion) and returns the Store. A new region is stamped with the
// format version first.
func Open(region *wal.Region, opts Options) (*Store, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	s := &Store{
		region: region,
		prefix: region.Prefix(),
		opts:   opts.withDefaults(),
		groups: map[uint64]*Group{},
		batch:  region.NewBatch(),
	}
	if err := s.checkFormat(); err != nil {
		return nil, err
	}
	if err := s.recover(); err != nil {
		return nil, err
	}
	return s, nil
}

// checkFormat refuses a region of another format and stamps a new one.
func (s *Store) checkFormat() error {
	k := groupKey(nil, s.prefix, formatGroup, kindFormat)
	var stamp []byte
	found, err := s.region.Get(k, func(v []byte) error { stamp = bytes.Clone(v); return nil })
	if err != nil {
		return fmt.Errorf("raftlog: cannot read the format version: %w", err)
	}
	if found {
		if len(stamp) != 1 || stamp[0] != formatVersion {
			return fmt.Errorf("%w: %s is %x, this version reads %d", ErrFormat, keyString(s.prefix, k), stamp, formatVersion)
		}
		return nil
	}
	// No stamp: the region must be empty, else it is not ours.
	var nonEmpty bool
	err = s.region.Scan([]byte{s.prefix}, []byte{s.prefix + 1}, func(it *pebble.Iterator) error {
		nonEmpty = it.First()
		return nil
	})
	if err != nil {
		return fmt.Errorf("raftlog: cannot read the region: %w", err)
	}
	if nonEmpty {
		return fmt.Errorf("%w: the region holds keys but no %s key", ErrFormat, keyString(s.prefix, k))
	}
	b := s.region.NewBatch()
	defer b.Close()
	b.Set(k, []byte{formatVersion})
	if err := b.Commit(true); err != nil {
		return fmt.Errorf("raftlog: cannot stamp the format version: %w", err)
	}
	return nil
}

// recover rebuilds every group's state from its keys: one pass of seeks
// per group, not a read of its entries (but under invariants, which checks
// every entry).
func (s *Store) recover() error {
	lo := groupKey(nil, s.prefix, formatGroup+1, 0)
	return s.region.Scan(lo, []byte{s.prefix + 1}, func(it *pebble.Iterator) error {
		for ok := it.SeekGE(lo); ok; {
			g, _, _, parsed := parseKey(s.prefix, it.Key())
			if !parsed {
				return fmt.Errorf("%w: key %s is not a raft log key", ErrCorrupt, keyString(s.prefix, it.Key()))
			}
			st, err := s.recoverGroup(it, g)
			if err != nil {
				return err
			}
			s.groups[g] = &Group{s: s, id: g, st: st}
			if g == math.MaxUint64 {
				break
			}
			ok = it.SeekGE(groupKey(nil, s.prefix, g+1, 0))
		}
		return it.Error()
	})
}

// recoverGroup reads group g's state with the iterator of recover.
func (s *Store) recoverGroup(it *pebble.Iterator, g uint64) (groupState, error) {
	var st groupState
	// exact positions it at k and reports whether k exists.
	exact := func(k []byte) bool { return it.SeekGE(k) && bytes.Equal(it.Key(), k) }
	value := func() ([]byte, error) {
		v, err := it.ValueAndErr()
		if err != nil {
			return nil, fmt.Errorf("raftlog: cannot read %s: %w", keyString(s.prefix, it.Key()), err)
		}
		return v, nil
	}
	corrupt := func(err error) error {
		return fmt.Errorf("%w: key %s: %w", ErrCorrupt, keyString(s.prefix, it.Key()), err)
	}
	if exact(groupKey(nil, s.prefix, g, kindHardState)) {
		v, err := value()
		if err != nil {
			return st, err
		}
		if st.hard, err = decodeHardState(v); err != nil {
			return st, corrupt(err)
		}
	}
	if exact(groupKey(nil, s.prefix, g, kindTruncated)) {
		v, err := value()
		if err != nil {
			return st, err
		}
		if st.trunc, err = decodeTruncated(v); err != nil {
			return st, corrupt(err)
		}
	}
	if exact(groupKey(nil, s.prefix, g, kindSnapshotMeta)) {
		v, err := value()
		if err != nil {
			return st, err
		}
		m, err := decodeSnapshotMeta(v)
		if err != nil {
			return st, corrupt(err)
		}
		st.snap, st.snapDataBytes = m.meta, m.dataBytes
	}
	if exact(groupKey(nil, s.prefix, g, kindMembership)) {
		v, err := value()
		if err != nil {
			return st, err
		}
		if st.members, err = decodeMembership(v); err != nil {
			return st, corrupt(err)
		}
	}
	st.last = st.trunc.index
	isEntry := func() (uint64, bool) {
		kg, kind, i, ok := parseKey(s.prefix, it.Key())
		return i, ok && kg == g && kind == kindEntry
	}
	if it.SeekGE(entryKey(nil, s.prefix, g, 0)) {
		if first, ok := isEntry(); ok {
			if first != st.trunc.index+1 {
				return st, corrupt(fmt.Errorf("first entry %d, but the log was truncated through %d", first, st.trunc.index))
			}
			if !it.SeekLT(entriesEnd(nil, s.prefix, g)) {
				return st, fmt.Errorf("raftlog: cannot read group %d: %w", g, it.Error())
			}
			st.last, _ = isEntry()
		}
	}
	if err := it.Error(); err != nil {
		return st, fmt.Errorf("raftlog: cannot read group %d: %w", g, err)
	}
	if st.hard.GetCommit() > st.last {
		return st, fmt.Errorf("%w: group %d: hard state commits %d beyond the last entry %d", ErrCorrupt, g, st.hard.GetCommit(), st.last)
	}
	if invariantsEnabled {
		if err := s.checkEntries(it, g, st); err != nil {
			return st, err
		}
	}
	return st, nil
}

// checkEntries reads every stored entry of group g and checks that they
// are exactly those of st's log (invariant R2), each under its own index,
// with terms that never fall. Invariants only: it reads the whole log.
func (s *Store) checkEntries(it *pebble.Iterator, g uint64, st groupState) error {
	next, term := st.trunc.index+1, st.trunc.term
	for ok := it.SeekGE(entryKey(nil, s.prefix, g, 0)); ok; ok = it.Next() {
		kg, kind, i, parsed := parseKey(s.prefix, it.Key())
		if !parsed || kg != g || kind != kindEntry {
			break
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return err
		}
		e, err := decodeEntry(v, i)
		if err != nil || i != next || e.GetTerm() < term {
			return fmt.Errorf("%w: key %s: entry %d term %d after term %d, want index %d (%v)", ErrCorrupt, keyString(s.prefix, it.Key()), i, e.GetTerm(), term, next, err)
		}
		next, term = next+1, e.GetTerm()
	}
	if next != st.last+1 {
		return fmt.Errorf("%w: group %d: entries end at %d, last index %d", ErrCorrupt, g, next-1, st.last)
	}
	return it.Error()
}

// Group returns the raft.Storage of group id, creating an empty one (a new
// log, as raft's NewMemoryStorage) if the store has none: a group is
// written to disk by its first Append. Group 0 is reserved.
func (s *Store) Group(id uint64) *Group {
	if id == formatGroup {
		panic("BUG: raftlog: group 0 is reserved")
	}
	s.groupsMu.RLock()
	g := s.groups[id]
	s.groupsMu.RUnlock()
	if g != nil {
		return g
	}
	s.groupsMu.Lock()
	defer s.groupsMu.Unlock()
	if g = s.groups[id]; g == nil {
		g = &Group{s: s, id: id}
		s.groups[id] = g
	}
	return g
}

// Groups returns the ids of the groups found at Open or named since, in
// increasing order.
func (s *Store) Groups() []uint64 {
	s.groupsMu.RLock()
	defer s.groupsMu.RUnlock()
	return slices.Sorted(maps.Keys(s.groups))
}
