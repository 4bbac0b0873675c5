// Package raftlog keeps the Raft log and state of every Raft group a slotd
// node hosts, in the node's wal store (Pebble), for the cluster's groups
// driven by go.etcd.io/raft/v3. Raft leaves its user the transport, the
// log storage, snapshots and the apply loop; this package is the log
// storage and nothing else: Group implements raft.Storage for one group,
// and Store.Append writes what the Ready loop hands over for all groups.
//
// # One sync per Ready batch, across all groups
//
// A node hosts several groups (offices are sharded over them), and each
// group's Ready must be on disk before its messages go out. An fsync
// costs 0.3 ms to several ms and dominates everything else the loop does,
// so the node's Ready loop takes the Ready of every group that has one,
// stores them with one Append — one Pebble batch, committed with
// pebble.Sync, one fsync — then sends every group's messages, applies and
// advances every group. The fsyncs per second stay the same whether one
// group or fifty have work, and a busier node fills bigger batches: the
// group commit of wal's journal, one level up. The log shares Pebble's
// log with wal's own records, so an Append and concurrent bookings share
// fsyncs through Pebble's commit pipeline too.
//
// Rejected: a separate Pebble instance for the log, as some Raft
// databases keep. It would let the log's write-once, delete-soon keys be
// tuned apart from the bookings and keep the log's range deletions out of
// their reads, but it adds a second log and a second fsync per Ready on
// the same disk, and the apply loop's writes (to wal) and the log's could
// no longer share one. wal reserves the prefix 'r' for this package and
// hands it over as a wal.Region (DB.RaftRegion); wal neither imports raft
// nor reads the region.
//
// # Compaction and snapshots
//
// Raft needs an entry in the log until every replica has it, or can be
// given a snapshot instead, and until this node's state machine has
// applied it durably. Compact(group, i) drops the entries through i (one
// range deletion) and keeps i's term, so Term(i) still answers for the
// log-matching check; CreateSnapshot records the state machine at an
// index for followers that lag behind the compacted index. Both follow
// raft's MemoryStorage.
//
// The cluster (package cluster) compacts a group's log through its state
// machine's durable applied index, less a margin for followers that lag
// a little (catching up by entries is cheaper than by snapshot): cluster
// invariants S1 and S2. It does not call CreateSnapshot: raft asks the
// node for a snapshot when it decides to send one, and the node answers
// one made then, whose data is only a descriptor naming a state it
// streams beside the message; a follower stores the snapshot it receives
// (data: the descriptor) through Append, as form 1 below. So a snapshot's
// data stays small, and the Store never holds a group's state. The data
// form byte of the metadata value remains the hook for data produced on
// demand, should a later release keep a group's state elsewhere.
//
// # Invariants
//
// Tests refer to them as "raftlog invariant RN".
//
//	R1. Append returns nil only once its batch is on stable storage: the
//	    snapshots, entries and hard states of every group of the batch,
//	    one Pebble batch and one fsync. After a crash the batch is wholly
//	    there or wholly absent. Compact and CreateSnapshot are not synced:
//	    lost in a crash they leave the log as it was before them (whose
//	    entries are still all there), and Pebble's log keeps the order of
//	    batches, so the next synced Append makes them durable first.
//	R2. A group's entries on disk are exactly trunc+1 .. last, each under
//	    its own index: entries appended at index i delete every stored
//	    entry after their end (raft's rule that new entries at i replace
//	    i and everything after), Compact deletes through its index, a
//	    snapshot deletes them all — each in the batch that moves the
//	    truncated state or the last index. Open checks the ends, and under
//	    invariants every entry.
//	R3. Memory follows the disk: a group's state in memory (hard state,
//	    truncated state, last index, snapshot metadata, tail cache) changes
//	    only after its batch committed, under the group's lock, which the
//	    writer holds from before the commit, so no reader sees Pebble
//	    ahead of memory. A failed commit leaves memory as it was and wal
//	    degraded (wal invariant W2): every later write and every read of
//	    Pebble is refused.
//	R4. The tail cache holds, per group, a contiguous run of the newest
//	    entries, the same ones as on disk; after each write the cache of
//	    all groups together holds at most Options.CacheBytes.
//	R5. Every read answers as raft's MemoryStorage would after the same
//	    operations: entries (with maxSize measured as raft does), terms,
//	    indexes, states, snapshots, and raft's own sentinel errors,
//	    unwrapped, as raft compares them with ==.
//	R6. Every stored value is checked when it is read: an entry must be
//	    the one its key names, a value's version and form must be known,
//	    lengths must match. A value that fails is ErrCorrupt naming its
//	    key, never skipped. A region with keys but no format stamp is
//	    refused.
//	R7. InitialState returns the group's current ConfState: that of the
//	    membership record an Update last stored (the node's, after it
//	    applied a conf change), unless the latest snapshot is at a higher
//	    index, then the snapshot's. Snapshot returns the latest snapshot
//	    with that same ConfState, so that a member added after the
//	    snapshot was taken finds itself in it (raft refuses a snapshot
//	    that does not name the receiver).
//
// # Append, as the Ready loop calls it
//
//	Append(updates), under the writers' lock:
//	  1. lock every group of the batch (readers of those groups wait)
//	  2. per update, in order: snapshot (delete all entries, truncated
//	     state, metadata, data), entries (delete the replaced tail, set
//	     each), hard state — into one batch; refuse the whole batch
//	     before anything is written if an update is refused
//	  3. commit with pebble.Sync                         — one fsync (R1)
//	  4. apply each group's new state to memory, cache the entries (R3)
//	  5. unlock; let the cache's oldest entries go, from the group that
//	     holds the most, until it is within its bound (R4)
//
// # On-disk format
//
// Changing anything below breaks existing data: a new layout needs a new
// version byte and a decoder that still reads the old one. The region is
// stamped with the format version (1) when it is first opened; Open
// refuses another.
//
// Keys (all under wal's prefix 'r'; BE = big-endian):
//
//	prefix  group      kind  rest              value
//	'r'     8 bytes BE 'e'   index (8 BE)      entry: raftpb.Entry, protobuf
//	'r'     8 bytes BE 'h'   —                 hard state: raftpb.HardState, protobuf
//	'r'     8 bytes BE 't'   —                 truncated state (below)
//	'r'     8 bytes BE 's'   —                 snapshot metadata (below)
//	'r'     8 bytes BE 'd'   —                 snapshot data: its bytes (form 1)
//	'r'     8 bytes BE 'c'   —                 membership (below)
//	'r'     0          'f'   —                 format: 1 byte (1)
//
// Group 0 is the store's own (raft calls 0 "none"); groups are numbered
// from 1. A group's entries are contiguous in key order, so a range
// deletion removes any run of them. A group's keys exist once it has
// been written; it has no truncated state key until it is compacted or
// receives a snapshot (zero: nothing truncated).
//
// Entries and hard states are raftpb's protobuf encoding as it is (raftpb
// is generated by protoc-gen-go; protobuf keeps old encodings readable),
// with no version byte: an entry's encoded size is also the size raft
// measures it by (proto.Size), so the cache knows it without asking. An
// entry's Index must equal its key's and its Term be at least 1.
//
// Truncated state, version 1 (the last entry compacted away):
//
//	field                  size
//	version                1 byte = 1
//	index                  uvarint
//	term                   uvarint
//
// Snapshot metadata, version 1:
//
//	field                  size
//	version                1 byte = 1
//	data form              1 byte: 1 = the data is the value of the
//	                       group's 'd' key
//	data length            uvarint (must equal the 'd' value's length)
//	metadata               raftpb.SnapshotMetadata, protobuf (index, term,
//	                       ConfState; rest of the value)
//
// Membership, version 1 (the last conf change applied, R7):
//
//	field                  size
//	version                1 byte = 1
//	index                  uvarint: the conf change's entry
//	ConfState length       uvarint
//	ConfState              raftpb.ConfState, protobuf
//	context                rest of the value: the node's own record
//
// Varints are encoding/binary's. No value of a version this package
// defines may have trailing bytes.
//
// # Limits
//
// Options.CacheBytes bounds the tail cache and Options.SnapshotBytesMax a
// snapshot's data (ErrSnapshotTooLarge). An Append's size is bounded by
// raft's Config (MaxSizePerMsg, MaxCommittedSizePerReady,
// MaxUncommittedEntriesSize), which the node sets: raft cannot be refused
// a Ready.
package raftlog
