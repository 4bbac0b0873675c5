package wal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"slotd/allocator"
)

// O5–O7 on one pair of stores: a frozen office is skipped by Recover
// with its bookings, its export imports into an empty store and not into
// one that holds the office, a move-out deletes only a frozen office's
// records, and the marks name the destination for the office and its
// bookings.
func TestMoveOfficeRecords(t *testing.T) {
	src, _ := openWithOffice(t) // msk-sakharovo
	other := allocator.OfficeRecord{Config: testOffice("msk-other")}
	mustCommit(t, src, &allocator.Change{Office: &other})
	for n := uint64(1); n <= 5; n++ {
		mustCommit(t, src, holdChange(n))
	}
	dst, _ := openTest(t, Options{})

	if _, _, err := src.ExportOffice("msk-sakharovo", ExportOptions{}); err == nil {
		t.Fatal("an office not frozen was exported")
	}
	if done, err := src.ApplyMoveOut(1, "msk-sakharovo"); err != nil || done {
		t.Fatalf("move-out of an office not frozen: %v %v, want nothing done (O7)", done, err)
	}
	if has, _ := src.HasOffice("msk-sakharovo"); !has {
		t.Fatal("a move-out of an office not frozen deleted it")
	}
	if a, err := src.ApplyMoveFreeze(2, "no-such-office", 2); err != nil || a != FreezeMissing {
		t.Fatalf("freeze of an unknown office: %d %v", a, err)
	}
	if a, err := src.ApplyMoveFreeze(3, "msk-sakharovo", 2); err != nil || a != FreezeDone {
		t.Fatalf("freeze: %d %v", a, err)
	}
	if _, epoch, _ := src.Applied(); epoch != 3 {
		t.Fatalf("the freeze's epoch: %d, want 3", epoch)
	}
	if a, err := src.ApplyMoveFreeze(4, "msk-sakharovo", 3); err != nil || a != FreezeOther {
		t.Fatalf("freeze for another group: %d %v, want FreezeOther", a, err)
	}
	var got collector
	if _, err := Recover(src, &got, t0); err != nil {
		t.Fatal(err)
	}
	if len(got.offices) != 1 || got.offices[0].Config.ID != "msk-other" || len(got.bookings) != 0 {
		t.Fatalf("Recover of the frozen store: %d offices (%v), %d bookings; want only msk-other (O5)", len(got.offices), got.offices, len(got.bookings))
	}
	for n := uint64(1); n <= 5; n++ {
		if to, office, err := src.BookingMovedTo(testID(n)); err != nil || to != 2 || office != "msk-sakharovo" {
			t.Fatalf("mark of booking %d: %d %q %v", n, to, office, err)
		}
	}

	data, bookings, err := src.ExportOffice("msk-sakharovo", ExportOptions{})
	if err != nil || bookings != 5 {
		t.Fatalf("export: %d bookings, %v", bookings, err)
	}
	if ok, err := dst.ApplyMoveImport(1, "msk-sakharovo", data[0]); err != nil || !ok {
		t.Fatalf("import: %v %v", ok, err)
	}
	got = collector{}
	if _, err := Recover(dst, &got, t0); err != nil {
		t.Fatal(err)
	}
	if len(got.offices) != 1 || len(got.bookings) != 5 {
		t.Fatalf("the destination restores %d offices, %d bookings; want 1, 5", len(got.offices), len(got.bookings))
	}
	// The destination writes on; an import again must not undo it (O6).
	mustCommit(t, dst, &allocator.Change{Bookings: []*allocator.BookingRecord{advanced(heldBooking(1), allocator.StatusCancelled, t0.UnixNano()+100, "")}})
	if ok, err := dst.ApplyMoveImport(2, "msk-sakharovo", data[0]); err != nil || ok {
		t.Fatalf("import into a store that holds the office: %v %v, want refused", ok, err)
	}
	if r, _, _ := dst.LoadBooking(testID(1), heldBooking(1).History.First().AtUnixNano); r == nil || r.Status != allocator.StatusCancelled {
		t.Fatalf("a second import overwrote the destination's booking: %+v", r)
	}

	if done, err := src.ApplyMoveOut(5, "msk-sakharovo"); err != nil || !done {
		t.Fatalf("move-out: %v %v", done, err)
	}
	if has, _ := src.HasOffice("msk-sakharovo"); has {
		t.Fatal("the source holds the office after its move-out")
	}
	if r, found, _ := loadHeld(src, 1); found {
		t.Fatalf("the source holds booking %s after the move-out", r.ID)
	}
	if st, to, _ := src.OfficeMove("msk-sakharovo"); st != MoveMoved || to != 2 {
		t.Fatalf("the source's mark after the move-out: %d %d", st, to)
	}
	if to, _, _ := src.BookingMovedTo(testID(1)); to != 2 {
		t.Fatal("the booking marks went with the move-out")
	}
	if has, _ := src.HasOffice("msk-other"); !has {
		t.Fatal("the move-out deleted another office")
	}
	if a, err := src.ApplyMoveFreeze(6, "msk-sakharovo", 2); err != nil || a != FreezeMoved {
		t.Fatalf("a freeze after the move: %d %v, want FreezeMoved", a, err)
	}

	// An import carries only an office's records.
	bad := new(pebbleBatchForTest)
	if _, err := dst.ApplyMoveImport(3, "x", bad.staged(metaKey("applied"))); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("an import that writes a meta key: %v, want ErrCorrupt", err)
	}
}

// pebbleBatchForTest builds staged bytes that set arbitrary keys.
type pebbleBatchForTest struct{}

func (pebbleBatchForTest) staged(keys ...[]byte) []byte {
	b := new(pebble.Batch)
	for _, k := range keys {
		set(b, k, []byte{1})
	}
	repr := b.Repr()
	out := []byte{stagedVersion}
	out = binary.AppendUvarint(out, uint64(len(repr)))
	out = append(out, repr...)
	return binary.AppendUvarint(out, 0)
}

// countKeys returns how many keys of the store start with prefix.
func countKeys(t *testing.T, db *DB, prefix byte) int {
	t.Helper()
	n := 0
	db.closeMu.RLock()
	defer db.closeMu.RUnlock()
	if err := db.scanRange([]byte{prefix}, []byte{prefix + 1}, func(_, _ []byte) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

// The idempotency records of an office's changes move with it (O5–O7):
// the export carries them with their time and office index keys, the
// import writes them where the destination holds none under the key, the
// move-out deletes them from the source, and the destination's sweep ages
// them, index included. A record of another office, and one stored alone
// (no change) that names no office, stay.
func TestMoveOfficeIdempotency(t *testing.T) {
	src, _ := openWithOffice(t) // msk-sakharovo
	other := allocator.OfficeRecord{Config: testOffice("msk-other")}
	mustCommit(t, src, &allocator.Change{Office: &other})
	idem := func(key string, at int64) *allocator.IdempotencyRecord {
		return &allocator.IdempotencyRecord{Key: key, Status: 201, Body: []byte(`{"id":"` + key + `"}`), AtUnixNano: at}
	}
	for n := uint64(1); n <= 3; n++ {
		c := holdChange(n)
		c.Idempotency = idem(fmt.Sprintf("portal:k%d", n), t0.UnixNano()+int64(n))
		mustCommit(t, src, c)
	}
	elsewhere := holdChange(4)
	elsewhere.Bookings[0].Office = "msk-other"
	elsewhere.Events[0].Office = "msk-other"
	elsewhere.Idempotency = idem("portal:other", t0.UnixNano())
	mustCommit(t, src, elsewhere)
	if err := src.PutIdempotency(idem("portal:alone", t0.UnixNano())); err != nil {
		t.Fatal(err)
	}
	// A refusal stored alone that names the office (the edge read it
	// from the request) is the office's.
	refusal := idem("portal:refused", t0.UnixNano())
	refusal.Status, refusal.Office = 409, "msk-sakharovo"
	if err := src.PutIdempotency(refusal); err != nil {
		t.Fatal(err)
	}
	// A key used at the office and, past its retention, used again
	// elsewhere: the index entry of the first is the office's, the record
	// is no longer.
	reused := holdChange(5)
	reused.Idempotency = idem("portal:reused", t0.UnixNano())
	mustCommit(t, src, reused)
	again := holdChange(6)
	again.Bookings[0].Office = "msk-other"
	again.Events[0].Office = "msk-other"
	again.Idempotency = idem("portal:reused", t0.UnixNano()+int64(25*time.Hour))
	mustCommit(t, src, again)

	dst, _ := openTest(t, Options{})
	// The destination holds a record under one of the keys already.
	mustCommit(t, dst, &allocator.Change{Office: &other})
	own := dst.PutIdempotency(&allocator.IdempotencyRecord{Key: "portal:k3", Status: 409, Body: []byte(`{}`), AtUnixNano: t0.UnixNano()})
	if own != nil {
		t.Fatal(own)
	}

	if a, err := src.ApplyMoveFreeze(1, "msk-sakharovo", 2); err != nil || a != FreezeDone {
		t.Fatalf("freeze: %d %v", a, err)
	}
	data, _, err := src.ExportOffice("msk-sakharovo", ExportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := dst.ApplyMoveImport(1, "msk-sakharovo", data[0]); err != nil || !ok {
		t.Fatalf("import: %v %v", ok, err)
	}
	if r, found, _ := dst.LookupIdempotency("portal:refused"); !found || r.Status != 409 {
		t.Fatalf("the refusal that names the office was not imported: %+v", r)
	}
	for n := 1; n <= 2; n++ {
		key := fmt.Sprintf("portal:k%d", n)
		r, found, err := dst.LookupIdempotency(key)
		if err != nil || !found || string(r.Body) != `{"id":"`+key+`"}` {
			t.Fatalf("the destination's record %s after the import: %+v %v %v", key, r, found, err)
		}
	}
	if r, _, _ := dst.LookupIdempotency("portal:k3"); r == nil || r.Status != 409 {
		t.Fatalf("the import overwrote the destination's own record under its key: %+v", r)
	}
	for _, key := range []string{"portal:other", "portal:alone", "portal:reused"} {
		if _, found, _ := dst.LookupIdempotency(key); found {
			t.Fatalf("record %s, not the office's, was imported", key)
		}
	}

	if done, err := src.ApplyMoveOut(2, "msk-sakharovo"); err != nil || !done {
		t.Fatalf("move-out: %v %v", done, err)
	}
	for _, key := range []string{"portal:k1", "portal:k2", "portal:k3", "portal:refused"} {
		if _, found, _ := src.LookupIdempotency(key); found {
			t.Fatalf("the source holds record %s after the move-out", key)
		}
	}
	for _, key := range []string{"portal:other", "portal:alone", "portal:reused"} {
		if _, found, _ := src.LookupIdempotency(key); !found {
			t.Fatalf("the move-out deleted record %s, not the office's", key)
		}
	}
	if n := countKeys(t, src, prefixIdemOffice); n != 2 {
		t.Fatalf("the source keeps %d office index keys, want msk-other's 2", n)
	}

	// The destination's sweep ages the imported records and their index.
	if _, err := dst.Sweep(t0.Add(DefaultIdempotencyTTL + time.Hour)); err != nil {
		t.Fatal(err)
	}
	for _, p := range []byte{prefixIdempotency, prefixIdemByTime, prefixIdemOffice} {
		if n := countKeys(t, dst, p); n != 0 {
			t.Fatalf("the destination keeps %d keys %q after the sweep", n, p)
		}
	}
}

// O8: an office exported in parts is imported by its last part only,
// with every part, in one batch: before, the destination neither holds
// the office nor recovers any of it; a last part that finds a part
// missing imports nothing; after, the destination holds what one import
// of the whole would have written, keeps no part, and a part applied
// again writes nothing (O6).
func TestMoveOfficeInParts(t *testing.T) {
	src, _ := openWithOffice(t) // msk-sakharovo
	for n := uint64(1); n <= 40; n++ {
		c := holdChange(n)
		c.Idempotency = &allocator.IdempotencyRecord{Key: fmt.Sprintf("portal:k%d", n), Status: 201, Body: bytes.Repeat([]byte{'b'}, 200), AtUnixNano: t0.UnixNano()}
		mustCommit(t, src, c)
	}
	if a, err := src.ApplyMoveFreeze(1, "msk-sakharovo", 2); err != nil || a != FreezeDone {
		t.Fatalf("freeze: %d %v", a, err)
	}
	whole, _, err := src.ExportOffice("msk-sakharovo", ExportOptions{})
	if err != nil || len(whole) != 1 {
		t.Fatalf("export in one part: %d parts, %v", len(whole), err)
	}
	parts, bookings, err := src.ExportOffice("msk-sakharovo", ExportOptions{PartBytes: 2 << 10})
	if err != nil || bookings != 40 || len(parts) < 4 {
		t.Fatalf("export in parts: %d parts, %d bookings, %v", len(parts), bookings, err)
	}
	again, _, _ := src.ExportOffice("msk-sakharovo", ExportOptions{PartBytes: 2 << 10})
	for i := range parts {
		if len(parts[i]) > 3<<10 {
			t.Fatalf("part %d is %d bytes, past its bound and one record", i, len(parts[i]))
		}
		if !bytes.Equal(parts[i], again[i]) {
			t.Fatalf("part %d differs between two exports of the frozen office", i)
		}
	}

	oneShot, _ := openTest(t, Options{})
	if ok, err := oneShot.ApplyMoveImport(1, "msk-sakharovo", whole[0]); err != nil || !ok {
		t.Fatalf("import in one part: %v %v", ok, err)
	}
	dst, _ := openTest(t, Options{})
	n := len(parts)
	index := uint64(0)
	apply := func(part int, want byte) {
		t.Helper()
		index++
		if a, err := dst.ApplyMoveImportPart(index, "msk-sakharovo", part, n, parts[part]); err != nil || a != want {
			t.Fatalf("part %d of %d: answer %d %v, want %d", part, n, a, err, want)
		}
	}
	partial := func(what string) {
		t.Helper()
		if has, _ := dst.HasOffice("msk-sakharovo"); has {
			t.Fatalf("%s: the destination holds the office before its last part", what)
		}
		var got collector
		if _, err := Recover(dst, &got, t0); err != nil {
			t.Fatal(err)
		}
		if len(got.offices) != 0 || len(got.bookings) != 0 {
			t.Fatalf("%s: the destination recovers %d offices, %d bookings before the last part (O8)", what, len(got.offices), len(got.bookings))
		}
	}
	apply(0, ImportStaged)
	apply(n-1, ImportMissing) // parts 1… are not here
	partial("a last part too early")
	for i := 1; i < n-1; i++ {
		apply(i, ImportStaged)
		apply(i, ImportStaged) // a move run again
	}
	partial("every part but the last")
	if kept, err := dst.ImportPartKept("msk-sakharovo", 1, n, parts[1]); err != nil || !kept {
		t.Fatalf("part 1 is not kept: %v %v", kept, err)
	}
	apply(n-1, ImportDone)
	if _, epoch, _ := dst.Applied(); epoch != index {
		t.Fatalf("the import's epoch: %d, want %d", epoch, index)
	}
	if got, want := digestOf(t, dst), digestOf(t, oneShot); got != want {
		t.Fatal("the import in parts wrote other records than the import in one part")
	}
	apply(0, ImportHeld)
	apply(n-1, ImportHeld)
	if got, want := digestOf(t, dst), digestOf(t, oneShot); got != want {
		t.Fatal("a part applied after the import wrote something")
	}
	if bad, err := dst.ApplyMoveImportPart(index+1, "x", 2, 2, parts[0]); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("part 2 of 2: %d %v, want ErrCorrupt", bad, err)
	}
}

func digestOf(t *testing.T, db *DB) [32]byte {
	t.Helper()
	d, _, err := db.StateDigest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}
