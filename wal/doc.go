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
// At start, Recover reads the latest record of every office and booking and
// feeds them to the engine; the event feed continues from the last cursor.
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
//	    the commit path turns that panic into the error (pebbleCommit).
//	    Two failures end the process instead, as Pebble decides: a failed
//	    sync while Pebble switches to a new log file (Pebble panics in
//	    rotateWAL), and any failure in Pebble's background work. After a
//	    failed write, Pebble's commit pipeline may not finish another
//	    commit; a change already waiting for the syncer's fsync then waits
//	    until the process ends.
//	W3. Every record is checked before it is written (BookingRecord.Check
//	    and the format limits) and after it is read. A change that fails
//	    the check is refused before any event cursor is taken, so a refused
//	    change consumes no cursor. A stored value that fails the check
//	    stops Recover (and any read) with ErrCorrupt naming the key; it is
//	    never skipped.
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
//	  5. write an empty log record with pebble.Sync     — one fsync for them all
//	       a group's write failed, or this sync failed, or degraded →
//	       mark their cursors failed, degrade (W2), every change gets the error
//	     mark each group's first..last done; advance the watermark over
//	     contiguous done ranges; wake long-pollers (W4); acknowledge every change
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
// Tried and measured against this: one Pebble batch per change, grouped
// only by Pebble's commit pipeline. It spends a pipeline pass, a memtable
// insert setup and a wake-up of Pebble's sync queue per change; on two
// cores the queue above gives 20–40% more durable bookings per second at
// 16 to 1,024 callers (BenchmarkEngineDurableHold, both versions run
// alternately on one machine). The hand-offs it adds (to a committer, to
// the syncer, back to the caller) cost a few microseconds per change, next
// to an fsync of 0.3 ms or more.
//
// Before the syncer, each committer committed its group with pebble.Sync
// and waited for that fsync itself. A change that arrived while both
// committers waited for the disk then waited for a committer, and its
// group's fsync queued behind the other's: in the HTTP rush of the peer
// comparison a commit took about three fsyncs (3.4–4.7 ms against 1.2–1.5
// ms). With the syncer it takes 2.8–3.4 ms. The rush's bookings/s gained
// less than its run-to-run spread: at 64 connections 6,896–8,083/s
// against 6,034–8,000/s, but 7 of 8 alternating pairs in the syncer's
// favour and about 6% on their mean (peers -conns 64 -engine none).
// The same split measured no gain at all earlier, in 4 alternating runs
// each, while the edge and generator of the rush still took more of the
// two cores; so did Pebble's ApplyNoSyncWait, which splits the same way
// (30–50% more at 16 callers then, nothing at 256 and 1,024 callers,
// nothing in the rush). BenchmarkEngineDurableHold did not move beyond its
// run-to-run spread this time. ApplyNoSyncWait is marked experimental and
// for Pebble's own project's use; the syncer uses only pebble.NoSync and
// pebble.Sync.
// Sorting a group's entries by key before the batch is written halved the
// memtable's skiplist search in the profile, with no measurable gain in
// throughput either.
//
// Rejected design: treating a failed batch's cursors as done-and-absent,
// so the feed moves on past them. With Pebble the failed batch may be
// readable from the memtable, and whether it survives is known only at the
// next Open (W4).
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
// events of one change share one copy of their booking; Open stamps a
// store of format 3 as 4 and reads its events of version 1 as they are.
// Open upgrades a store of format 1 or 2 before it writes anything else
// (W8): it stamps the store 0x84 (upgrading; a format-3 version's 0x83 is
// finished the same way), which every version refuses but this one,
// moves every booking to its format-3 key, which format 4 keeps, keeping
// the value as it is, and stamps the store 4 last.
//
// Keys (the first byte is the prefix; BE = big-endian):
//
//	prefix  rest                                   value
//	'm'     name                                   meta: "format" → 1 byte (4);
//	                                               "events-deleted-through" → 8 bytes BE cursor
//	'o'     office id (bytes)                      office value
//	'b'     created (8 bytes BE, unix ns of the    booking value
//	        first history entry, sign bit flipped),
//	        booking id (16 bytes)                  (formats 1 and 2: the id alone)
//	'a'     reserved; not written (format 1's applicant index, deleted
//	        when Open upgrades such a store; see below)
//	'e'     cursor (8 bytes BE)                    event value
//	'i'     idempotency key (bytes)                idempotency value
//	't'     time (8 bytes BE, unix ns, sign bit    empty (expiry index of
//	        flipped), idempotency key              idempotency records)
//	'n'     office id, 0x00, date (4 bytes BE,     empty (a booking-number mark:
//	        sign bit flipped), seq (4 bytes BE)    recovery raises that date's
//	                                               counter to the highest seq)
//	'w'     watch id (16 bytes)                    watch value (active watches
//	                                               only; ending one deletes it)
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
//	status                 1 byte (allocator.Status)
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
//	history count          uvarint (1..1024)
//	per history entry:
//	  at                   varint: unix ns for the first entry, then the
//	                       difference from the previous entry
//	  status | flags       1 byte: low 6 bits status, bit 7 = penalty,
//	                       bit 6 = same actor as the previous entry
//	  actor                string (absent when bit 6 is set)
//	  reason               string
//
// A booking with two history entries encodes to about 100 bytes; with its
// event (which embeds it), BenchmarkRecover measured 228 bytes on disk per
// booking at 100,000 bookings and 329 at 1M, after a full compaction
// (format 2's shorter keys: 232 and 305).
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
//	type code              1 byte: 1..12 the allocator's event types in
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
// Office value, version 1:
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
// # Time
//
// The package never reads the clock to decide anything: Sweep and Recover
// take now. It measures elapsed time only for the statistics it reports:
// the latency of each commit and of each fsync of the log.
package wal
