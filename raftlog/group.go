package raftlog

// The read path: raft.Storage of one group, served from memory (the state
// and the tail cache) and, for entries the cache does not hold, from Pebble.

import (
	"fmt"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// Group is the Raft log and state of one group: it implements
// raft.Storage with the semantics of raft's MemoryStorage (invariant R5).
// Safe for concurrent use; its reads wait while a writer of the group
// commits (R3).
type Group struct {
	s  *Store
	id uint64

	mu sync.RWMutex
	st groupState // guarded by mu; written only by a writer holding s.writeMu too

	// planned is the number of the last Append that has an update of
	// this group (Store.appendSeq): two in one Append are refused.
	// Guarded by s.writeMu.
	planned uint64
}

var _ raft.Storage = (*Group)(nil)

// groupState is a group's state in memory: what its keys on disk say, and
// the newest entries.
type groupState struct {
	hard  *pb.HardState        // nil: none stored
	trunc truncated            // the log holds trunc.index+1 .. last
	last  uint64               // index of the last entry (trunc.index if none)
	snap  *pb.SnapshotMetadata // the latest snapshot's; nil: none
	// members is the membership record (R7); nil: none stored.
	members *Membership
	// snapDataBytes is the length of the latest snapshot's data, which
	// only Pebble holds.
	snapDataBytes uint64

	// tail holds the entries last-len(tail)+1 .. last (R4): the ones
	// Append wrote, as raft handed them, until the cache lets them go.
	tail []cached
	// tailBytes is what tail counts against Options.CacheBytes. Written
	// with s.writeMu held too, so the eviction, which holds s.writeMu,
	// compares groups' tailBytes without taking each group's mu.
	tailBytes int64
}

// cached is one entry of the tail cache.
type cached struct {
	e *pb.Entry
	// size is the entry's encoded size, raft's measure for Entries'
	// maxSize (proto.Size), known from encoding it.
	size uint64
}

// entryOverheadBytes approximates the memory of a cached entry beyond its
// encoded size: the Entry struct, its three pointed-to fields and the
// cache's slot.
const entryOverheadBytes = 128

func (c cached) bytes() int64 { return int64(c.size) + entryOverheadBytes }

// tailFirst is the index of the first cached entry (last+1 if none).
// Caller holds the group's mu.
func (st *groupState) tailFirst() uint64 { return st.last + 1 - uint64(len(st.tail)) }

// ID returns the group's id.
func (g *Group) ID() uint64 { return g.id }

// InitialState implements raft.Storage: the stored hard state (nil if
// none) and the group's current ConfState (R7): the membership record's,
// unless the latest snapshot is newer, then the snapshot's (empty if
// neither).
func (g *Group) InitialState() (*pb.HardState, *pb.ConfState, error) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	var hs *pb.HardState
	if g.st.hard != nil {
		hs = proto.Clone(g.st.hard).(*pb.HardState)
	}
	var cs *pb.ConfState
	if c := g.st.confState(); c != nil {
		cs = proto.Clone(c).(*pb.ConfState)
	}
	return hs, pb.EnsureConfState(cs), nil
}

// confState is the group's current ConfState, nil if none (R7). Caller
// holds g.mu.
func (st *groupState) confState() *pb.ConfState {
	if m := st.members; m != nil && (st.snap == nil || m.Index >= st.snap.GetIndex()) {
		return m.ConfState
	}
	if st.snap != nil {
		return st.snap.GetConfState()
	}
	return nil
}

// Membership returns a copy of the group's membership record, nil if
// none is stored.
func (g *Group) Membership() *Membership {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.st.members.clone()
}

// FirstIndex implements raft.Storage.
func (g *Group) FirstIndex() (uint64, error) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.st.trunc.index + 1, nil
}

// LastIndex implements raft.Storage.
func (g *Group) LastIndex() (uint64, error) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.st.last, nil
}

// Term implements raft.Storage: the term of entry i, for i in
// FirstIndex()-1 .. LastIndex().
func (g *Group) Term(i uint64) (uint64, error) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.termLocked(i)
}

// termLocked is Term with g.mu held (for reading or writing).
func (g *Group) termLocked(i uint64) (uint64, error) {
	st := &g.st
	switch {
	case i < st.trunc.index:
		return 0, raft.ErrCompacted
	case i == st.trunc.index:
		return st.trunc.term, nil
	case i > st.last:
		return 0, raft.ErrUnavailable
	case i >= st.tailFirst():
		return st.tail[i-st.tailFirst()].e.GetTerm(), nil
	}
	s := g.s
	k := entryKey(nil, s.prefix, g.id, i)
	var term uint64
	found, err := s.region.Get(k, func(v []byte) error {
		var err error
		if term, err = entryTerm(v, i); err != nil {
			return fmt.Errorf("%w: key %s: %w", ErrCorrupt, keyString(s.prefix, k), err)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("raftlog: group %d: term of %d: %w", g.id, i, err)
	}
	if !found {
		return 0, fmt.Errorf("%w: key %s is missing from the log %d..%d", ErrCorrupt, keyString(s.prefix, k), st.trunc.index+1, st.last)
	}
	return term, nil
}

// Entries implements raft.Storage: the entries lo .. hi-1, as many as fit
// in maxSize bytes (proto.Size) but at least one. The caller owns the
// returned slice; the entries in it are shared and must not be changed.
func (g *Group) Entries(lo, hi, maxSize uint64) ([]*pb.Entry, error) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	st := &g.st
	if lo <= st.trunc.index {
		return nil, raft.ErrCompacted
	}
	if hi > st.last+1 || lo > hi {
		panic(fmt.Sprintf("BUG: raftlog: group %d: entries [%d, %d) out of the log %d..%d", g.id, lo, hi, st.trunc.index+1, st.last))
	}
	if st.last == st.trunc.index {
		return nil, raft.ErrUnavailable
	}
	out := make([]*pb.Entry, 0, min(hi-lo, 64))
	var size uint64
	taken := 0
	// fits adds an entry of n bytes to size and reports whether it is
	// returned: the first always is (raft's limitSize).
	fits := func(n uint64) bool {
		if taken > 0 && size+n > maxSize {
			return false
		}
		size += n
		taken++
		return true
	}
	if first := st.tailFirst(); lo < first {
		end := min(hi, first)
		var full bool
		var err error
		if out, full, err = g.readStored(out, lo, end, fits); err != nil || full {
			return out, err
		}
		lo = end
	}
	first := st.tailFirst()
	n := len(out)
	for i := lo; i < hi; i++ {
		c := st.tail[i-first]
		if !fits(c.size) {
			break
		}
		out = append(out, c.e)
	}
	g.s.stats.cachedReads.Add(uint64(len(out) - n))
	return out, nil
}

// readStored appends the stored entries lo .. hi-1 to out while fits says
// they fit; full reports that one did not. Caller holds g.mu.
func (g *Group) readStored(out []*pb.Entry, lo, hi uint64, fits func(uint64) bool) (_ []*pb.Entry, full bool, _ error) {
	s := g.s
	n := len(out)
	next := lo
	err := s.region.Scan(entryKey(nil, s.prefix, g.id, lo), entryKey(nil, s.prefix, g.id, hi), func(it *pebble.Iterator) error {
		for ok := it.First(); ok; ok = it.Next() {
			_, _, i, _ := parseKey(s.prefix, it.Key())
			if i != next {
				return fmt.Errorf("%w: key %s where entry %d belongs", ErrCorrupt, keyString(s.prefix, it.Key()), next)
			}
			v, err := it.ValueAndErr()
			if err != nil {
				return err
			}
			e, err := decodeEntry(v, i)
			if err != nil {
				return fmt.Errorf("%w: key %s: %w", ErrCorrupt, keyString(s.prefix, it.Key()), err)
			}
			if !fits(uint64(len(v))) {
				full = true
				return nil
			}
			out = append(out, e)
			next++
		}
		return it.Error()
	})
	s.stats.storedReads.Add(uint64(len(out) - n))
	if err != nil {
		return out, false, fmt.Errorf("raftlog: group %d: entries [%d, %d): %w", g.id, lo, hi, err)
	}
	if !full && next != hi {
		return out, false, fmt.Errorf("%w: group %d: entry %d is missing from the log %d..%d", ErrCorrupt, g.id, next, g.st.trunc.index+1, g.st.last)
	}
	return out, full, nil
}

// Snapshot implements raft.Storage: the group's latest snapshot, its data
// read from Pebble for this call (the Store keeps only its metadata in
// memory), or an empty snapshot if there is none.
//
// The error ErrSnapshotTemporarilyUnavailable is not returned today: the
// data is stored with the metadata. It is the answer a later data form
// gives while it builds the data on demand (see the package doc).
func (g *Group) Snapshot() (*pb.Snapshot, error) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	if g.st.snap == nil {
		return pb.EnsureSnapshot(nil), nil
	}
	data, err := g.snapshotData(g.st.snapDataBytes)
	if err != nil {
		return nil, err
	}
	meta := proto.Clone(g.st.snap).(*pb.SnapshotMetadata)
	// A snapshot sent to a member raft added after it was taken must name
	// that member, or raft there refuses it (R7).
	meta.ConfState = proto.Clone(pb.EnsureConfState(g.st.confState())).(*pb.ConfState)
	return &pb.Snapshot{Metadata: meta, Data: data}, nil
}

// snapshotData reads the data of the group's latest snapshot, of n bytes.
// Caller holds g.mu.
func (g *Group) snapshotData(n uint64) ([]byte, error) {
	s := g.s
	k := groupKey(nil, s.prefix, g.id, kindSnapshotData)
	var data []byte
	found, err := s.region.Get(k, func(v []byte) error {
		if uint64(len(v)) != n {
			return fmt.Errorf("%w: key %s: %d bytes, the snapshot's metadata says %d", ErrCorrupt, keyString(s.prefix, k), len(v), n)
		}
		if n > 0 {
			data = append([]byte(nil), v...)
		}
		return nil
	})
	if err == nil && !found {
		err = fmt.Errorf("%w: key %s is missing", ErrCorrupt, keyString(s.prefix, k))
	}
	if err != nil {
		return nil, fmt.Errorf("raftlog: group %d: snapshot data: %w", g.id, err)
	}
	return data, nil
}
