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
// # Applicants across groups
//
// An engine enforces max_active_per_applicant and the duplicate rule
// (one active booking per service) over its own offices; an applicant
// booking at offices of several groups meets several engines. With more
// than one group (and Config.LedgerRemote set), each applicant has a
// home group, a hash of the engine's applicant id (namespace included)
// over the groups (HomeGroup), whose store keeps a ledger: a token per
// active booking of the applicant, in whichever group (wal's ledger
// records). The engines call it through allocator.ApplicantLedger (G1–G3
// in package allocator): a token is reserved before a seat is claimed,
// and released after the booking ends. A node that does not lead the
// home group hands the entry to the node that does (LedgerRemote; slotd
// posts it to that node's API listener with the cluster's forward
// token). With one group there is no ledger: the engine is the whole
// rule, as on a single node.
//
//	L1. Tokens are written only by entries of the home group's log
//	    (reserve, release) and applied like every entry, with the
//	    applied index in the same batch (wal W11): replicas that applied
//	    the same index hold the same tokens.
//	L2. Applying a reserve refuses, the same on every replica, a token
//	    past the limit the entry names (the office's) or of a service the
//	    applicant holds a token of; a token already held (a retry) is
//	    reserved again. The proposer learns the verdict from the apply.
//	L3. Every active booking made while the ledger is on holds a token:
//	    its engine reserved it before the booking's commit (G1), and a
//	    token is released only after its booking's end is committed
//	    (G3), or by the reconciler once its booking ended or can never be
//	    written (L5, L6). With L2
//	    the applicant's active bookings, across groups, never exceed the
//	    limit nor hold a service twice.
//	L4. A void of booking id, an entry of the booking's own group
//	    (kind 5), records the id as void unless the group's store holds
//	    the booking; a change that writes a voided booking is applied as
//	    nothing on every replica (as a change of an ended epoch, P1), and
//	    its engine, refused, is replaced (P4). In the group's log order
//	    either the booking came first (the void answers so) or it never
//	    comes.
//	L5. A token can outlive its booking: a release lost with its node,
//	    a reservation whose proposer gave up but whose entry committed,
//	    a commit that failed after its reservation (G2 keeps that token:
//	    the change may still commit). The home group's leader checks
//	    each token it has seen for Config.LedgerReconcileAfter against
//	    its booking in this node's replica of the booking's group (every
//	    node holds every group): a booking that ended releases the token
//	    (an end is final, so a lagging replica cannot mislead); a
//	    booking that is there and active keeps it.
//	L6. A booking the replica does not hold is never released on a
//	    timer alone (a slow engine could still commit it): the leader
//	    proposes its void (L4) into its group, and releases the token
//	    once the void is applied, or finds it already void; if the
//	    booking exists after all, the token stays.
//	L7. Every ledger entry is idempotent (a reserve of a held token, a
//	    release of none, a void twice), so a caller retries it on
//	    whichever node leads, until its bound: a reservation waits up to
//	    2 s (then the hold is refused, 503 no_leader with Retry-After at
//	    the edge), a release 500 ms (then it is the reconciler's, L5).
//
// What an applicant sees: the same refusals as on one node (limit_reached,
// duplicate_booking), counting every group; a lost release delays the
// applicant's next booking by up to LedgerReconcileAfter (and its check
// interval), never lets one through past the limit. Bookings made before
// the ledger was on hold no token: the limit counts them only in their
// own group.
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
// # Moving an office between groups
//
// An office moves from group S to group D online, the way a range moves
// between Raft groups in CockroachDB, in three entries (MoveOffice runs
// them, each proposed by its group's leader; wal's move.go writes them):
// a freeze in S (kind 7) marks the office moving and names D for the
// office and for each of its bookings' ids; an import in D (kind 8)
// writes the office's records as every replica of S holds them frozen
// (config, bookings, number marks, watches of the office, and the
// idempotency records of its changes), read by D's leader from its own
// replica of S; a move-out in S (kind 9) deletes them there and keeps
// the marks, now "moved". Booking ids keep their
// first byte, S: a front that finds a mark for an id in S sends it to D
// (and the ledger's reconciler looks for the booking there, L5).
//
//	O1. At any point of the logs, at most one group's engine writes an
//	    office: a freeze begins a new epoch of S (P1), so no change of
//	    an engine built before it is applied after it, and no engine
//	    built after it loads the office (wal O5); the engine running at
//	    the freeze is broken at once (P4). D's engine learns the office
//	    from its store: an import that writes begins a new epoch of D
//	    too, and D's next engine is built with it.
//	O2. The import carries the records as the freeze left them, and they
//	    do not change after it (O1): every acknowledged booking of the
//	    office is in D, each seat once. An import applies only where D
//	    holds no record of the office (wal O6): a move run again never
//	    overwrites what D wrote since.
//	O3. A move that stops part way (its coordinator died) leaves the
//	    office frozen in S, and perhaps imported in D: fronts answer 503
//	    office_moving for it and its bookings until the move-out, since
//	    they send requests to D only once S marks the office moved (a
//	    front whose replica of D applied the import could otherwise
//	    reach D's leader before it did). Each step is idempotent, so the
//	    move run again finishes it. A move-out deletes only a frozen
//	    office (wal O7), and is proposed only after D's leader applied
//	    the import, whose apply broke the engine it ran before writing
//	    (a front answers 503 for a group whose engine here is broken,
//	    or dropped while its Server still stands).
//	O4. Every booking of the office at the freeze has a mark in S naming
//	    D; no booking of it is made in S after the freeze (O1), so the
//	    marks are all there is to follow.
//
// An office whose records do not fit in one entry (Config.MovePartBytes,
// 1 MiB) is imported in parts, kind 10, proposed one after the other by
// D's leader from its replica of S:
//
//	O8. D's store and engine learn an office imported in parts only
//	    from its last part: the parts before it are kept apart in D's
//	    store, where no engine and no front looks (wal O8), and the last
//	    writes them all, with itself, in one batch and a new epoch of D,
//	    as an import in one entry does (O1). No engine ever serves part
//	    of an office. The office is frozen in S meanwhile (O3).
//
// Each part is idempotent (kept again, over what was kept), and a
// leader of D proposes only the parts its replica does not keep with the
// same bytes yet (the records are frozen, but for the idempotency
// records S's sweep still deletes), but always the last: a move stopped between two parts,
// run again, goes on from where it stopped (O3). An office whose records
// exceed MoveBytesMax (64 MiB, about 300,000 bookings) is refused before
// its freeze: the last part's batch is written by every replica of D at
// once, and the office answers office_moving while the parts commit.
//
// A request answered before the move with an
// Idempotency-Key and retried after it is answered by D from the record
// its change stored (httpapi I1): the record travels with the office
// (wal's move.go says which records belong to an office) and leaves S,
// and D's retention sweep ages it; so does a refusal stored without a
// change when the request named the office (a hold, a watch of an
// office, an office's release or closure). Not moved: refusals about a
// booking by its id (a retry after the move is served anew by D, which
// may answer otherwise), responses of region watches, records written
// before this release, and the office's events (they stay in S's feed,
// which the merged feed keeps reading).
//
// # Entry data
//
// The data of an entry this package proposes (inside cluster's entry
// framing), a layout that lives in Raft logs: a new one needs a new kind
// or version byte and a reader of the old. A string is a uvarint length
// and its bytes; an id is 16 bytes.
//
//	kind 1, epoch:   1 byte = 1
//	kind 2, change:  1 byte = 2, epoch uvarint, wal.Stage's bytes
//	kind 3, reserve: 1 byte = 3, limit uvarint, applicant string,
//	                 booking id, service string, created varint (unix ns)
//	kind 4, release: 1 byte = 4, applicant string, booking id
//	kind 5, void:    1 byte = 5, booking id, created varint (unix ns)
//	kind 6, sweep:   1 byte = 6, wal.EncodeSweepPlan's bytes
//	kind 7, freeze:  1 byte = 7, destination group uvarint, office string
//	kind 8, import:  1 byte = 8, office string, wal.DB.ExportOffice's bytes
//	kind 9, move-out: 1 byte = 9, office string
//	kind 10, import part: 1 byte = 10, office string, part uvarint
//	                 (0-based), parts uvarint (2 to 65536), the part's
//	                 wal.DB.ExportOffice bytes
//
// A sweep entry (Replica.Sweep) is the retention sweep of a group's store:
// the leader stamps the plan, every replica deletes by it (wal W12).
//
// The kinds and their layouts are part of the cluster format
// (cluster.FormatMax): a kind this release does not know is a newer
// release's, and stops the node by name (cluster format invariant V4).
package replica
