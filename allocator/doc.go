// Package allocator is slotd's in-memory engine: office calendars as
// bitmaps, seat claims by compare-and-swap, the booking lifecycle and the
// office policy of DESIGN §1. It does no I/O, reads no clock (every call
// takes now), and knows nothing of HTTP; durability plugs in through the
// Journal seam (journal.go).
//
// # Shape
//
// An Engine holds offices; each office is a shard with its own days, timer
// wheel and gate, so no lock spans offices. A day holds one bitmap per
// window (calendar.go), a bit per grid step. A step is a span of time,
// not a wall-clock label: the steps of a date are the instants its grid
// labels occur, in order of time, so the hour the clocks skip has none
// and the hour they repeat has both of its own (dayclock.go). Bookings
// live in a sharded index; applicants' limits, duplicates and penalties
// in a sharded table (applicant.go).
//
// Per active booking the engine keeps its BookingRecord (112 bytes, the
// history encoded as the journal stores it: history.go), the booking (16
// bytes: its seat's day is found from the record, not kept), one 16-byte
// timer entry (wheel.go), a slot of the id index (index.go), a pointer in
// its office's list of the date (agenda.go, 8 bytes and the list's spare
// capacity; one more per reschedule) and a share of its applicant's
// state (64 bytes, the active count summed from the services, not kept).
// BenchmarkMemoryPerBooking measures the whole (DESIGN §6: at most 256
// bytes per active booking); TestPerBookingSizes holds the parts to
// their sizes.
//
// # Invariants
//
// The numbered invariants of DESIGN §2 and how the engine keeps them:
//
//  1. A seat is owned by at most one non-terminal booking: seats change
//     hands only through the CAS claim (claim invariants C1–C2 in
//     calendar.go) and are freed only by the lock holder of the owning
//     booking (lifecycle invariant L3 in engine.go). A seat is an instant
//     at a window, and a day's bits are distinct instants (claim
//     invariant C5), so one bit per seat holds on the days the clocks
//     change too. Everything derived from a seat's time (end, cutoffs,
//     reminder, no-show, tickets) counts from that instant; its booking
//     number and day keep the office-local date.
//  2. No acknowledgement before the record is synced: every operation
//     returns success only after Journal.Commit returned nil.
//  3. Claim → commit → publish; status CAS → commit → free → acknowledge:
//     see the seam in journal.go. A failed commit rolls the claim back and
//     degrades the engine (ErrDegraded).
//  4. Recovery (restore.go) rebuilds the bitmaps by claiming every active
//     booking's seat again; a seat found taken stops recovery.
//
// Invariant 5 (idempotency) and 6 (shedding) belong to the edge.
//
// # Concurrency
//
// Engine is safe for concurrent use. Restore* methods are for start-up and
// must not run concurrently with anything else. Lock order, outermost
// first: office.cfgMu → office.gate (by office id) → booking lock bit →
// applicant shard → index shard; an office's agenda (agenda.go) is a
// leaf, taken after every other lock.
//
// # Policy notes
//
// Applicant limits (max active, duplicates, cancel penalty) are kept per
// applicant across all offices; the limit applied is the one of the office
// being booked. A duplicate is a second active booking of the same service
// at any office: a service is its id, the same at every office. The penalty counts an applicant's cancel of a
// confirmed booking (directly or through an approved late cancel) and
// no-shows; cancelling a hold, operator force-cancels and office closures
// do not count.
//
// A service may require an operator's approval: a confirm of it enters
// StatusAwaitingApproval, which owns the seat and counts for the
// applicant's limit and duplicates, until Approve (confirmed), Reject
// (rejected, the seat freed, a reason required), the applicant's cancel,
// or start + no_show_grace unapproved (expired, by Tick); none of these
// counts towards the penalty.
//
// A booking's history holds at most HistoryEntriesMax transitions, with
// actors and reasons of at most ActorBytesMax and ReasonBytesMax bytes
// (history.go): the journal accepts every record within these limits, so
// a change beyond them is refused up front (ErrHistoryLimit,
// ErrValidation) for that request alone, never by a failed commit that
// would degrade the engine for every office. Only a late cancel request
// and a reschedule can repeat on one booking; they are refused once the
// history keeps no room for the longest ending after them.
//
// An office config replacement may rename, re-describe, change policy, add
// services and close dates that have no active bookings; changing the seat
// layout (timezone, grid, windows, hours), removing a service or changing a
// service's length is refused with ErrLayoutInUse while active bookings
// depend on it.
package allocator
