// Package peers runs one contended booking rush against slotd and against
// two peer implementations of the same API subset — one on PostgreSQL, one
// on Redis — and reports them side by side (DESIGN §6 Targets).
//
// # What is compared
//
// Three Backends implement the same subset of DESIGN §3: availability of a
// date, hold+confirm in one step (a booking with confirm:true) and cancel.
// Each one makes the same durable work per booking before it answers:
//
//	               claim                        durable record                    sync
//	slotd     bitmap CAS in memory            booking, booking.held +          Pebble batch, pebble.Sync,
//	                                          .confirmed events                group commit
//	postgres  UPDATE seats … FOR UPDATE       bookings row (+ applicant and    synchronous_commit=on,
//	          SKIP LOCKED (one statement)     active indexes), two events      fsync=on
//	redis     Lua: BITPOS/SETBIT on a         booking hash, applicant set,     appendonly yes,
//	          per-(office,date) bitmap        active key, two stream entries   appendfsync always
//
// All three enforce the duplicate rule (one active booking per applicant,
// office and service) and hand a seat out at most once. The per-applicant
// limit and the cancel penalty are slotd rules the rush never reaches (every
// applicant books once and cancels at most once), so the peers leave them out.
// Each keeps what it needs to list an applicant's bookings ("my bookings"):
// the peers an applicant index or set, slotd its memory, rebuilt at start
// from the booking records, so it writes no index.
//
// One fasthttp edge (NewEdge) serves every Backend with the same routes and
// JSON, so the HTTP table differs only in the allocator and its durability.
// The engine table drives the Backends directly (no HTTP): slotd's Go API,
// a pgbench-style loop of the claim statement over database/sql, and a
// redis-benchmark-style loop of EVALSHA.
//
// # The rush
//
// Every date of the Layout is released at once and applicants arrive in
// order, date after date, more applicants than seats. N closed-loop workers
// (one connection each) take the next applicant: read the date's slots, try
// the first start with a free seat, and on slot_taken the next one, until
// booked or sold out. The workers run in a child process by default and
// speak HTTP through httpload.Conn: raw requests, answers read by status and
// length, an availability answer compared with the layout's starts known
// beforehand (freeParser), so that the generator takes as little as it can
// of the cores it shares with the edge and the backends. The bodies it
// sends are the API's request types of package client (generated from
// docs/openapi.yaml) marshalled, and it reads bookings and problems into
// the client's types (a plain booking by flatjson.Decode, anything else by
// encoding/json). Every CancelEvery-th booked applicant
// cancels right away, freeing its seat for a later applicant. Afterwards the
// run checks the backend's stored state against the acknowledged answers:
// every acknowledged booking that was not cancelled owns its seat, no seat
// has two owners, and nothing unacknowledged owns one (Verify).
//
// Every backend starts each run on a fresh store and a quiet disk
// (settle). Even so the disk is not steady from run to run: an fsync's
// time varies several-fold from one stretch to the next, and a slow
// stretch that falls on one backend's run moves a ratio by a fifth or
// more. So the HTTP table can run in rounds (Config.Rounds; make
// bench-peers runs three), the backends taking turns within each round;
// a row is its backend's median round, and slotd's ratio to a peer is the
// median of the ratios within each round, with every round's ratio and
// the number below the target printed beside it. Nothing is left out:
// a round below the target shows. Every row also says how busy the
// machine's cores were during its run and that busy time per booking
// (from /proc/stat, everything on the machine): it tells a run bound by
// the cores from one bound by a wait, and shows when the machine was
// slower for a run than for the one beside it.
//
// # Rows served by processes of their own
//
// Config.Processes adds rows to the HTTP table that are not a Backend
// behind the edge but processes serving slotd's own API: package
// clusterbench's three slotd processes as a cluster on loopback
// (make bench-peers passes bench/cmd/peers -cluster bin/slotd). Such a
// row starts afresh on the same disk, settles like the others and takes
// its turn in every round after the peers, rushed by the same generator
// at its own addresses with a key; it is verified by reading every
// booking back through the API (Verify) and whatever more it owes (a
// cluster's replicas agreeing), and the table divides its bookings/s by
// each peer's round by round, in a column of its own beside slotd's. It
// runs behind slotd's edge, with keys, idempotency and metrics, where
// the peers run behind this package's bare one: a ratio that favours the
// peers. The engine table leaves such rows out.
//
// The package owns no globals: everything a run needs is in Config.
package peers
