// Package replica makes the allocator the state machine of a slotd
// cluster's Raft groups (package cluster): offices are sharded over the
// groups, every node holds a replica of each group's store (a wal.DB), and
// the node that leads a group runs the group's allocator.Engine.
//
// # Leader evaluates, replicas apply the effects
//
// The engine decides: it claims seats in memory (CAS), picks booking ids
// and numbers, stamps the time, draws the lotteries and expires holds,
// exactly as on a single node. What it decided leaves it as an
// allocator.Change through its Journal, as always; here the journal
// stages the change (wal.Stage: the change's records, encoded) and
// proposes it to the group. Every replica, the leader too, applies a
// committed entry by writing its staged records to its own store
// (wal.DB.ApplyStaged). Applying reads no clock, draws no number and
// walks no map: replicas that applied the same index hold the same bytes
// (wal.DB.StateDigest). This is the design of Raft databases that
// evaluate a command on the leader and replicate its writes; rejected:
// replicating the commands and running the engine on every replica, which
// would need the engine itself to be deterministic (its lock-free claims
// and its wheel of timers are not) and would run every booking three
// times.
//
// Followers keep no engine: they only write. A node that becomes leader
// of a group builds the group's engine from its store (wal.Recover) once
// it has applied everything committed before its leadership, and drops
// it when it loses the leadership. So reads of a group (availability,
// bookings) are answered by its leader, which holds everything committed.
//
// # Epochs
//
// An engine's memory runs ahead of the log: a claim is in memory before
// its entry is committed. If that entry never commits (the leader lost
// its leadership, or a proposal failed), the memory is wrong, and an
// engine built later must not see the entry applied after it was built
// from a store that lacked it. Epochs keep the two apart:
//
//	P1. A group's log holds epoch entries; the index of the last one
//	    applied is the group's epoch. A change entry names the epoch of
//	    the engine that made it, and is applied only if that is the
//	    group's epoch at its index; otherwise it is applied as nothing,
//	    on every replica alike (its proposer learns it was refused).
//	P2. A node builds a group's engine only after its own epoch entry at
//	    index e, proposed as leader in term t, is applied and the entry's
//	    term is t; the engine's changes name epoch e. Everything committed
//	    before e is applied and in the store the engine is built from, and
//	    every change of an older engine after e is refused (P1).
//	P3. A change is acknowledged (the engine's Commit returns nil) only
//	    after its entry is committed and applied on the leader (cluster
//	    invariant N1) and was not refused (P1).
//	P4. An engine whose commit failed, for any reason, is never used
//	    again: its memory may hold what the log does not. The node drops
//	    it and builds a new one under a new epoch. Losing the leadership
//	    drops it too.
//	P5. Each replica writes the applied index (and the epoch) in the
//	    batch of the entry's records (wal invariant W11), and applies an
//	    entry at or below it as nothing: after a restart the store holds
//	    exactly the entries through its applied index, and raft hands the
//	    rest over again.
//
// # Compaction and snapshots
//
// The Replica is a cluster.Snapshotter: the node compacts a group's log
// through the store's durable applied index (wal's SyncApplied), and a
// replica behind the compacted log receives the group's store as a
// snapshot (wal's SnapshotState, StageSnapshot, InstallSnapshot; cluster
// invariants S1–S5, wal S6). On install, the group's epoch and the
// applied index P5 skips through are the installed store's, and an
// engine the node still runs for the group is broken first (P4): it was
// built from the state being replaced, and a node that receives a
// snapshot no longer leads.
//
// # Entry data
//
// The data of an entry this package proposes (inside cluster's entry
// framing), a layout that lives in Raft logs: a new one needs a new kind
// or version byte and a reader of the old.
//
//	kind 1, epoch:   1 byte = 1
//	kind 2, change:  1 byte = 2, epoch uvarint, wal.Stage's bytes
package replica
