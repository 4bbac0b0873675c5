package wal

import (
	"errors"
	"strings"
	"testing"

	"slotd/allocator"
)

// A reservation's verdict reads only the store: a token past the limit
// or of a service held is refused, a retry of a held token is reserved
// again, a release frees the place, and an index at or below the applied
// one changes nothing (W11).
func TestLedgerReserveVerdicts(t *testing.T) {
	db, _ := openTest(t, Options{})
	index := uint64(0)
	reserve := func(applicant string, id byte, service string, limit int, want LedgerVerdict) {
		t.Helper()
		index++
		got, err := db.ApplyLedgerReserve(index, LedgerToken{Applicant: applicant, Booking: allocator.ID{2, id}, Service: service, CreatedUnixNano: 1}, limit)
		if err != nil || got != want {
			t.Fatalf("reserve %s/%d %s limit %d: %v, %v; want %v", applicant, id, service, limit, got, err, want)
		}
	}
	reserve("a", 1, "s1", 2, LedgerReserved)
	reserve("a", 1, "s1", 2, LedgerReserved) // a retry
	reserve("a", 2, "s1", 2, LedgerDuplicate)
	reserve("a", 2, "s2", 2, LedgerReserved)
	reserve("a", 3, "s3", 2, LedgerLimit)
	reserve("ab", 1, "s1", 1, LedgerReserved) // an id that extends a's is another applicant
	reserve("a", 3, "s3", 3, LedgerReserved)  // the limit is the entry's
	index++
	if err := db.ApplyLedgerRelease(index, "a", allocator.ID{2, 1}); err != nil {
		t.Fatal(err)
	}
	reserve("a", 4, "s1", 3, LedgerReserved)
	tokens, err := db.LedgerTokens("a")
	if err != nil || len(tokens) != 3 {
		t.Fatalf("tokens of a: %+v, %v; want 3", tokens, err)
	}
	if v, err := db.ApplyLedgerReserve(index, LedgerToken{Applicant: "a", Booking: allocator.ID{2, 9}, Service: "s9", CreatedUnixNano: 1}, 1); err != nil || v != LedgerReserved {
		t.Fatalf("an applied index again: %v, %v", v, err)
	}
	if tokens, _ := db.LedgerTokens("a"); len(tokens) != 3 {
		t.Fatalf("an index applied again wrote a token: %+v", tokens)
	}
	n := 0
	if err := db.EachLedgerToken(func(LedgerToken) bool { n++; return true }); err != nil || n != 4 {
		t.Fatalf("EachLedgerToken: %d, %v; want 4", n, err)
	}
	if k := KeyString(ledgerKey(nil, "a", allocator.ID{2, 1})); !strings.HasPrefix(k, `ledger/"a"/`) {
		t.Fatalf("KeyString of a ledger key: %s", k)
	}
}

// A void is recorded only for a booking the store does not hold, and a
// staged change that writes a voided booking is refused with ErrVoided,
// writing nothing.
func TestLedgerVoid(t *testing.T) {
	db, dir := openWithOffice(t)
	held := holdChange(1)
	b := held.Bookings[0]
	staged, err := Stage(held)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.ApplyStaged(1, staged); err != nil {
		t.Fatal(err)
	}
	created := b.History.First().AtUnixNano
	if exists, err := db.ApplyVoid(2, b.ID, created); err != nil || !exists {
		t.Fatalf("void of a booking held: exists %v, %v", exists, err)
	}
	late := holdChange(2)
	late.Bookings[0].ID = allocator.ID{1, 0xbb}
	late.Events[0].Booking = late.Bookings[0]
	if exists, err := db.ApplyVoid(3, late.Bookings[0].ID, late.Bookings[0].History.First().AtUnixNano); err != nil || exists {
		t.Fatalf("void of a booking not held: exists %v, %v", exists, err)
	}
	if v, err := db.Voided(late.Bookings[0].ID); err != nil || !v {
		t.Fatalf("Voided: %v, %v", v, err)
	}
	staged, err = Stage(late)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.ApplyStaged(4, staged); !errors.Is(err, ErrVoided) {
		t.Fatalf("a change writing a voided booking: %v, want ErrVoided", err)
	}
	if _, found, err := db.LoadBooking(late.Bookings[0].ID, late.Bookings[0].History.First().AtUnixNano); err != nil || found {
		t.Fatalf("the voided booking was written: %v", err)
	}
	if applied, _, _ := db.Applied(); applied != 3 {
		t.Fatalf("applied %d after the refused change, want 3", applied)
	}
	// After a restart the store finds its void marks again.
	db = reopen(t, db, dir)
	if _, err := db.ApplyStaged(4, staged); !errors.Is(err, ErrVoided) {
		t.Fatalf("after a restart, a change writing a voided booking: %v, want ErrVoided", err)
	}
}
