// Package wal makes slotd's state durable on Pebble.
//
// The allocator hands every state change to DB.Commit (it is the
// allocator.Journal). Each change becomes a set of Pebble writes — booking
// records, events and the idempotency record — encoded by the caller.
// Committer goroutines then write every change that queued up meanwhile
// as one batch, without waiting for the disk, and one syncer goroutine
// makes every batch written since its last fsync durable with the next
// (group commit): while one fsync runs, the next group is written.
// Stats.Commits / Stats.Groups is the mean group size, Stats.Commits /
// Stats.WALSyncs the number of changes one fsync made durable.
//
// At start, Open checks that Pebble's replay of its log kept everything
// that was synced (W9; see Recovery below), and Recover reads the latest
// record of every office and booking and feeds them to the engine; the
// event feed continues from the last cursor.
//
// # Invariants
//
// Tests refer to them as "wal invariant WN".
//
//	W1. Commit returns nil only after its batch is synced: a change is
//	    acknowledged only once it survives a crash (DESIGN invariant 2).
//	W2. After a failed write or sync the DB is degraded: Commit, Sweep,
//	    PutIdempotency, LookupIdempotency and LoadBooking refuse with
//	    ErrDegraded until the DB is reopened.
//	    Pebble applies a batch to its memtable before the fsync result is
//	    known, so after a failure the in-memory view may hold writes that
//	    are not on disk; the only safe course is to stop writing and let
//	    the next Open read what the disk really holds. Pebble itself
//	    treats a failed commit as fatal (Logger.Fatalf) and would report
//	    success if Fatalf returned; the package's logger panics there and
//	    the commit path turns that panic into the error (pebbleCall).
//	    Two failures end the process instead, as Pebble decides: a failed
//	    sync while Pebble switches to a new log file (Pebble panics in
//	    rotateWAL), and any failure in Pebble's background work. After a
//	    failed write, Pebble's commit pipeline may not finish another
//	    commit; a change already waiting for the syncer's fsync then waits
//	    until the process ends. A failed write of the sync mark (W9)
//	    degrades the DB too.
//	W3. Every record is checked before it is written (BookingRecord.Check
//	    and the format limits) and after it is read. A change that fails
//	    the check is refused before any event cursor is taken, so a refused
//	    change consumes no cursor. A booking beyond the format's limits
//	    is not refused but a bug (a panic): the engine keeps smaller
//	    limits (allocator.HistoryEntriesMax and its text limits, held to
//	    the format's at compile time) and refuses more for the request
//	    alone, where a refused commit would degrade it. A stored value
//	    that fails the check stops Recover (and any read) with ErrCorrupt
//	    naming the key; it is never skipped.
//	W4. Events are published through a watermark. Cursors are taken
//	    atomically before the batch is committed, so concurrent batches can
//	    finish out of cursor order. A batch's cursors are marked done only
//	    after the fsync that covers it succeeded (step 5 below); the
//	    watermark is the highest cursor
//	    below which every cursor is done; readers read only up to it. So a
//	    reader that has read through cursor c never later finds an event
//	    ≤ c appear: no event is skipped. The cursors of a batch whose
//	    commit failed are never marked done, so the watermark stops below
//	    them for the rest of the process: that batch may sit in Pebble's
//	    memtable without being durable (W2), and publishing past it could
//	    show readers an event that vanishes at restart, or let them pass
//	    a cursor whose event does exist at restart. The next Open decides
//	    from the disk.
//	W5. Cursors only grow across restarts: Open continues from the highest
//	    stored event, or from the sweep's deletion mark
//	    (meta/events-deleted-through) when retention deleted every event.
//	    A cursor whose batch failed before a crash may be reused after it;
//	    no reader can have seen it (W4).
//	W6. Recover restores every office, then every booking in its latest
//	    committed record, then calls RestoreDone. The engine never commits
//	    two changes of one booking concurrently, so the latest record in
//	    Pebble's order is the latest acknowledged one.
//	W7. Sweep deletes only records past their retention, at most
//	    Options.SweepBatchMax of each kind per call, and only events at or
//	    below the watermark, oldest cursor first. An event that shares the
//	    booking of an event the call deletes (form 2 below, the same
//	    change's) goes with it, beyond the bound and the retention: no
//	    event outlives the one that holds its booking.
//	W8. Open upgrades a store of an older format before it writes
//	    anything else, and a crash at any point of the upgrade leaves
//	    every booking under exactly one key, in a store that an older
//	    version refuses; the next Open finishes the upgrade (DB.upgrade).
//	W9. Open refuses a store whose log lost a synced round. Each of the
//	    syncer's rounds is numbered and its synced record stores the
//	    number (meta/synced-round); the file SYNCMARK holds a round only
//	    once that round's fsync succeeded. The round Pebble recovers must
//	    be at least the mark's, or Open fails with ErrLogDamaged before
//	    anything is written to the store. A torn final write holds only
//	    records after the last synced round, and passes.
//	W10. The sweep's deletion mark (meta/events-deleted-through, and
//	    DB.EventsDeletedThrough in memory) covers every deleted event: the
//	    in-memory mark moves before the batch that deletes the events
//	    commits, and Open loads the stored one, which that batch writes. A
//	    reader that reads after cursor c and then loads a mark at or below
//	    c missed no event to retention; one that loads a mark above c may
//	    have, and is told so instead of being given a page with a hole.
//	W11. A replicated store (package replica) holds exactly the entries
//	    through its meta/applied, written in the batch of their records
//	    (replica.go).
//	W12. A replicated store is swept by entries of its group's log
//	    (ApplySweep), never by Sweep. The entry carries the sweep's plan
//	    (SweepPlan: the cutoffs the group's leader stamped and the bound
//	    of one batch); applying it reads no clock and no option of the
//	    store, and writes its deletions, the deletion mark (W10) and the
//	    applied index (W11) in one batch. Replicas that applied the same
//	    entries hold the same records and the same mark, so a cursor
//	    below the mark is refused alike on every node.
//	W13. A recovery (RecoverContext) whose context ends stops between
//	    two batches of bookings or two kinds of records and returns the
//	    context's error, without RestoreDone: its Restorer is half
//	    restored and is dropped. A node that loses a group's leadership
//	    while it rebuilds the group's engine stops rebuilding, and the
//	    relaxed GC target of the rebuild ends with it.
//
// # Commit pipeline
//
//	Commit(c), on the caller's goroutine:
//	  1. check every record (W3)                        — may refuse, no cursor taken
//	  2. encode bookings, office, idempotency into batch b;
//	     encode event values into scratch; queue (b, c); wait
//
//	committer goroutine (two of them), for each group taken off the queue:
//	  3. if degraded, refuse the whole group (W2)
//	     first..last = cursors.Add(events of the group); append every other
//	     change's batch to the first's in arrival order; key the events
//	  4. commit the group batch with pebble.NoSync       — log write and memtable
//	     insert, no fsync; hand the group to the syncer
//
//	syncer goroutine (one), for all groups written since its last round:
//	  5. write the round's record (meta/synced-round = n) with pebble.Sync
//	                                                    — one fsync for them all
//	       a group's write failed, or this sync failed, or degraded →
//	       mark their cursors failed, degrade (W2), every change gets the error
//	     mark each group's first..last done; advance the watermark over
//	     contiguous done ranges; wake long-pollers (W4); acknowledge every
//	     change; wake the marker, which writes n to SYNCMARK (W9)
//
// Step 5 relies on the order of Pebble's log: a record is synced together
// with every record written before it, and Pebble syncs a log file before
// it starts the next (DB.rotateWAL). A group is handed to the syncer only
// after its commit returned, so its records precede the synced record of
// the round that takes it. Pebble makes a batch readable once it is in the
// memtable, before any fsync, with or without pebble.Sync. The feed's
// readers see only up to the watermark (W4). LoadBooking and
// LookupIdempotency read a key as Pebble holds it: their callers read a
// key only once the change that wrote it was answered (httpapi keeps an
// Idempotency-Key in flight until then), and a degraded DB, whose
// memtable may hold a change that failed, refuses them (W2).
//
// Tried against this: one Pebble batch per change, grouped only by
// Pebble's commit pipeline. It spends a pipeline pass, a memtable insert
// setup and a wake-up of Pebble's sync queue per change; on two cores the
// queue above gives 20–40% more durable bookings per second
// (BenchmarkEngineDurableHold). The hand-offs it adds (to a committer, to
// the syncer, back to the caller) cost microseconds per change, next to
// an fsync's fraction of a millisecond or more.
//
// Before the syncer, each committer committed its group with pebble.Sync
// and waited for that fsync itself. A change that arrived while both
// committers waited for the disk then waited for a committer, and its
// group's fsync queued behind the other's: a commit took about three
// fsyncs. With the syncer the next group is written while the fsync runs,
// and a commit in the peers' HTTP rush takes about a quarter less time
// (bench/peers, -conns 64 -engine none); the rush's bookings per second
// move less than their run-to-run spread. Pebble's ApplyNoSyncWait splits
// the commit the same way and gained nothing at hundreds of callers or in
// the rush; it is also marked experimental and for Pebble's own project's
// use. The syncer uses only pebble.NoSync and pebble.Sync.
// Sorting a group's entries by key before the batch is written halved the
// memtable's skiplist search in the profile but gained no throughput, so
// a group keeps its arrival order.
//
// Rejected design: treating a failed batch's cursors as done-and-absent,
// so the feed moves on past them. With Pebble the failed batch may be
// readable from the memtable, and whether it survives is known only at the
// next Open (W4).
//
// # Recovery
//
// Pebble replays its log at Open and stops at the first chunk of the
// last log that is not whole, taking it for the end of the log. After a
// crash that is what the end holds: records the process wrote but had not
// synced, cut short (a torn final write), none of them acknowledged. But a
// flipped byte in records that were synced long before looks the same.
// Pebble tells the two apart only where a later chunk says it was written
// after a sync that covered the bad one (its sync chunks carry the offset
// synced so far), and it looks for one only from the next 32 KiB block
// on. Damage in the last block of the last log, and in the last synced
// records wherever they are (no chunk after them vouches for them until
// the next commit), reads as a torn end: Pebble logs one info line
// ("stopped reading at offset") and opens without every change from
// there on, acknowledged ones included.
//
// The log cannot tell a tear from damage by itself; what tells them apart
// is whether the lost records had been synced, and that must be known
// from outside the log. So the syncer numbers its rounds, and each
// round's synced record is meta/synced-round = n, after every group it
// acknowledges. After the round's fsync succeeded, a marker goroutine
// writes n to the file SYNCMARK in the data directory, with an fsync of
// its own. At Open (W9):
//
//	recovered round ≥ mark   a crash can tear only what was written
//	                         after the last synced round; the round
//	                         records up to the mark are whole. Open goes
//	                         on; the torn records were never acknowledged.
//	recovered round < mark   Pebble stopped at or before the record of a
//	                         round that was synced: the log is damaged
//	                         before the end of what was synced. Open
//	                         fails with ErrLogDamaged, naming SYNCMARK.
//
// The mark costs no fsync on the commit path: it is written after the
// acknowledgement, coalesced, at most once every syncMarkIntervalMin
// (100 ms). After a crash the mark may therefore trail the last synced
// round by that much and one fsync, and damage in that trailing window
// still reads as a tear; everything before it is checked. Close writes
// the mark exact, so after a clean stop every synced record is checked.
// SYNCMARK has two slots written in turn, each with a checksum, so that
// a crash in the middle of a mark write leaves the previous mark.
//
// Damage that Pebble itself proves (a bad chunk vouched for by a later
// sync chunk, an unclean end of a log that is not the last, a damaged
// table) fails pebble.Open; Open returns it as ErrCorrupt.
//
// A full disk fails Open with an error that wraps the system's, never a
// panic or a wait without end: Pebble ends a failed write while it
// creates a store in Logger.Fatalf, which Open turns into the error, and
// it retries a failed flush of the replayed log for as long as it fails,
// which Open stops waiting for at the first background error
// (openPebble).
//
// Rejected designs:
//   - Pebble's sync chunks alone: no chunk follows the last round's
//     records until the next commit, and the read-ahead skips the rest of
//     the damaged block. Every flip in the last block of the last log
//     opened without a word, and in that test so did one two blocks
//     before the end (TestDefectWALDamageBeforeSyncedEndLosesAcknowledgedChange,
//     before this check).
//   - The mark written before the acknowledgement: a second fsync on the
//     path of every round, twice the commit latency.
//   - The mark kept in the log itself (each round's record naming the
//     last one synced): damage before it hides the very record that would
//     tell, which is again indistinguishable from a tear.
//   - A read-only Open first, so that a refused store stays exactly as it
//     was: a second replay of the log at every start, for records after
//     the damage that slotd could not replay anyway. Opened
//     read-write, Pebble has flushed what it could read when Open
//     refuses; the refusal holds at every start, the mark staying ahead,
//     until the operator restores the directory or deletes SYNCMARK to
//     accept the loss.
//
// # Backup
//
// DB.Backup copies the running store with Pebble's checkpoint into a
// directory that opens as a store of its own, with a SYNCMARK of its own:
// the round synced before the checkpoint began, never the live mark, which
// names rounds the copy may not hold (backup.go says why). OpenReadOnly
// opens a stopped store or a backup with Open's checks (W9, the format)
// and writes nothing; every write answers ErrReadOnly.
//
// # On-disk format
//
// Changing anything below breaks existing data: a new layout needs a new
// version byte and a decoder that still reads the old one. The store is
// stamped with the format version at creation; Open refuses another.
// Format 2 changed the booking value to version 2. Format 3 keys a
// booking by its creation time before its id, so that new bookings are
// written at the end of the booking range instead of at random places in
// Pebble's memtable. Format 4 adds the event value of version 2, whose
// events of one change share one copy of their booking. Format 5 adds the
// office value of version 2, which spells out the config's fields instead
// of storing its JSON. Format 6 adds the office value of version 3 (a
// service's online_cancel, the policy's min_notice and working-day
// cutoffs), format 7 that of version 4 (a service's documents and
// names), and format 8 that of version 5 (a service's requires_approval)
// and the booking statuses awaiting_approval and rejected (9 and 10),
// which an older version would take for damage, so that a version that
// cannot read them refuses the store at Open. Open stamps a store of
// format 3 to 7 as 8 and reads its events and offices of older versions
// as they are.
// Open upgrades a store of format 1 or 2 before it writes anything else
// (W8): it stamps the store 0x88 (upgrading; the 0x83 to 0x87 of
// format-3 to format-7 versions are finished the same way), which every
// version refuses but this one, moves every booking to its format-3 key,
// which later formats keep, keeping the value as it is, and stamps the
// store 8 last.
//
// Keys (the first byte is the prefix; BE = big-endian):
//
//	prefix  rest                                   value
//	'm'     name                                   meta: "format" → 1 byte (8);
//	                                               "events-deleted-through" → 8 bytes BE cursor;
//	                                               "synced-round" → 8 bytes BE round (W9)
//	'o'     office id (bytes)                      office value
//	'b'     created (8 bytes BE, unix ns of the    booking value
//	        first history entry, sign bit flipped),
//	        booking id (16 bytes)                  (formats 1 and 2: the id alone)
//	'a'     reserved; not written (format 1's applicant index, deleted
//	        when Open upgrades such a store; see below)
//	'e'     cursor (8 bytes BE)                    event value
//	'i'     idempotency key (bytes)                idempotency value
//	't'     time (8 bytes BE, unix ns, sign bit    the office the record
//	        flipped), idempotency key              belongs to, or empty (expiry
//	                                               index of idempotency records)
//	'j'     office (uvarint length, bytes), time   empty (the idempotency
//	        and key as in 't'                      records of an office, for a
//	                                               move: move.go)
//	'n'     office id, 0x00, date (4 bytes BE,     empty (a booking-number mark:
//	        sign bit flipped), seq (4 bytes BE)    recovery raises that date's
//	                                               counter to the highest seq)
//	'w'     watch id (16 bytes)                    watch value (active watches
//	                                               only; ending one deletes it)
//	'l'     applicant (uvarint length, bytes),     ledger token of a replicated
//	        booking id (16 bytes)                  store (ledger.go): version 1
//	                                               byte, service string,
//	                                               created varint (unix ns)
//	'v'     booking id (16 bytes)                  empty (a void mark of a
//	                                               replicated store, ledger.go)
//	'r'     owned by package raftlog (the cluster's Raft log, drawn in
//	        its package doc); wal never reads or writes it (DB.RaftRegion)
//
// Varints are encoding/binary's: uvarint for unsigned, zig-zag varint for
// signed. A string is a uvarint length then its bytes (at most 4096).
//
// Booking value, version 2 (version 1, still read, never has bit 6 set in
// a history entry's status byte: it had no same-actor mark):
//
//	field                  size
//	version                1 byte = 2
//	id                     16 bytes (must equal the key's id; the
//	                       first history entry's time must equal the
//	                       key's creation time)
//	status                 1 byte (allocator.Status: 1 held, 2 confirmed,
//	                       3 cancel_requested, 4 checked_in, 5 completed,
//	                       6 cancelled, 7 expired, 8 no_show,
//	                       9 awaiting_approval, 10 rejected; format 8)
//	office                 string
//	service                string
//	applicant              string
//	date                   varint (days since 1970-01-01)
//	step                   uvarint (≤ 65535): the seat's place among
//	                       its date's steps in order of time
//	                       (allocator/dayclock.go); on a day the clocks
//	                       change not minutes / slot_minutes
//	slots                  uvarint (≤ 65535)
//	window                 uvarint (≤ 65535)
//	seq                    uvarint (≤ 2³²−1)
//	reschedules            1 byte
//	hold_expires_unix_ns   varint (0: none)
//	reminded_unix_ns       varint (0: none)
//	history                allocator.History's encoding, as the engine
//	                       keeps it in memory; written and read as is:
//	history count          uvarint (1..1024; the engine writes at most
//	                       allocator.HistoryEntriesMax)
//	per history entry:
//	  at                   varint: unix ns for the first entry, then the
//	                       difference from the previous entry
//	  status | flags       1 byte: low 6 bits status, bit 7 = penalty,
//	                       bit 6 = same actor as the previous entry
//	  actor                string (absent when bit 6 is set)
//	  reason               string
//
// A booking with two history entries encodes to about 100 bytes; with its
// event (which embeds it), a booking takes about 230 bytes on disk at
// 100,000 bookings after a full compaction (BenchmarkRecover).
//
// The applicant of a booking or watch value is the engine's opaque
// applicant id, stored as is. The HTTP edge keeps the portal's namespace
// in it (namespace, 0x00, the portal's applicant id; without a 0x00, the
// legacy namespace of records stored before namespaces), so the namespace
// is as durable as the record and needs no field or version of its own.
//
// There is no applicant index on disk. An applicant's bookings, archive
// included, are listed from the engine's memory, which Recover rebuilds
// from the booking records (each names its applicant); an index entry per
// change would be a third memtable insert per booking with no reader. The
// prefix 'a' stays reserved so that a store never reuses it.
//
// Event value, version 2 (the cursor is in the key; version 1, which
// format 3 wrote and this version still reads, had in place of the
// booking form the booking's length as a uvarint, 0 for none):
//
//	field                  size
//	version                1 byte = 2
//	type code              1 byte: 1..14 the allocator's event types in
//	                       the order of eventTypeCodes; 0 = a string follows
//	type                   string (only when the code is 0)
//	at_unix_ns             varint
//	office                 string
//	through                varint (date; slots.released)
//	reason                 string
//	start_unix_ns          varint (watch.matched: the start offered; else 0)
//	watch flag             1 byte: 0 none, 1 a watch value follows
//	watch                  watch value as below (watch.matched)
//	booking form           1 byte: 0 none; 1 the booking value follows
//	                       (rest of the value); 2 the booking is the one
//	                       of an earlier event of the same change
//	booking                form 1: booking value as above
//	back                   form 2: uvarint 1..1024, the distance in cursors
//	                       to the event of the same change that embeds it
//
// A change's events take consecutive cursors, so form 2 points into the
// same change: a hold confirmed at once writes its booking, the held event
// embedding it, and the confirmed event pointing one back. Sweep deletes
// such an event together with the one it points to (W7).
//
// Office value, version 5 (every field of allocator.OfficeConfig in this
// order, so that the PUT body's JSON tags can change without changing
// what is stored; a list is a uvarint of its length plus one, 0 for an
// omitted list, then its entries). Version 4, still read, is the same
// without a service's requires_approval, which it reads false; version
// 3, still read, is version 4 without a service's documents and names,
// which it reads omitted; version 2, still read, is version 3 without
// online_cancel, min_notice and the working-day cutoffs, which it reads
// at their defaults (omitted, 0); the office's next write stores version
// 5:
//
//	field                  size
//	version                1 byte = 5
//	released_through       varint (date)
//	id, name, region,      string each (the id must equal the key's)
//	city, address,
//	timezone
//	slot_minutes, windows  uvarint each
//	hours                  list of (weekday string, list of interval
//	                       strings), in weekday-name order
//	closures               list of date strings
//	services               list of: id string, name string, slots uvarint,
//	                       weekdays list of strings, reschedulable 1 byte,
//	                       online_cancel 1 byte (0 omitted, 1 false,
//	                       2 true; version 3), documents list of strings
//	                       (version 4), names list of (language string,
//	                       name string) in language order (version 4),
//	                       requires_approval 1 byte (version 5)
//	policy                 horizon_days varint, release_time string,
//	                       then varints: hold_ttl, cancel_cutoff,
//	                       late_cancel_floor, reschedule_cutoff (ns),
//	                       max_reschedules, max_active_per_applicant,
//	                       cancel_penalty count, window, block (ns),
//	                       no_show_grace, release_lottery,
//	                       reminder_before (ns); version 3: min_notice
//	                       (ns), cancel_cutoff_working_days,
//	                       reschedule_cutoff_working_days
//
// Office value, version 1 (formats 4 and older; still read, replaced by
// version 5 at the office's next write):
//
//	field                  size
//	version                1 byte = 1
//	released_through       varint (date)
//	config                 JSON of allocator.OfficeConfig (rest of the
//	                       value; its id must equal the key's)
//
// Watch value, version 1:
//
//	field                  size
//	version                1 byte = 1
//	id                     16 bytes (must equal the key's id)
//	applicant              string
//	service                string
//	office                 string (empty when region is set)
//	region                 string (empty when office is set)
//	from, to               varint each (dates)
//	auto_hold              1 byte: 0 or 1
//	created_unix_ns        varint
//
// Idempotency value, version 1 (the key is in the key):
//
//	field                  size
//	version                1 byte = 1
//	fingerprint            32 bytes
//	status                 uvarint (HTTP status, 100..599)
//	at_unix_ns             varint
//	body                   uvarint length (≤ 64 KiB), bytes
//
// No value may have trailing bytes.
//
// The file SYNCMARK, beside Pebble's files (W9), is two slots of 16
// bytes, written in turn; a slot of zeroes was never written:
//
//	field                  size
//	round                  8 bytes BE
//	crc                    4 bytes BE: CRC-32C of round and magic
//	magic                  4 bytes "slsm"
//
// # State snapshots
//
// A replicated store can be copied to another node as one instant of its
// records (SnapshotState, streamed) and installed there in one step
// (StageSnapshot, then InstallSnapshot: Pebble's ingest with excise), for
// a replica behind its group's compacted Raft log. Invariant S6 (of the
// snapshots' list, S1–S5 in package cluster) and the stream's format are
// in snapshot.go. The directory snapshot.staging beside Pebble's files
// holds a state being received; Open removes it.
//
// # Time
//
// The package never reads the clock to decide anything: Sweep and Recover
// take now. It measures elapsed time only for the statistics it reports:
// the latency of each commit and of each fsync of the log.
package wal
