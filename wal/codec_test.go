package wal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"strings"
	"testing"

	"slotd/allocator"
)

func encodeBooking(t testing.TB, r *allocator.BookingRecord) []byte {
	t.Helper()
	v, err := appendBooking(nil, r)
	if err != nil {
		t.Fatalf("appendBooking(%s): %v", r.ID, err)
	}
	return v
}

func TestBookingRoundTrip(t *testing.T) {
	f := func(name string, r *allocator.BookingRecord) {
		t.Helper()
		v := encodeBooking(t, r)
		for _, in := range []interner{nil, make(interner)} {
			got, err := decodeBooking(v, in)
			if err != nil {
				t.Fatalf("%s: decode: %v", name, err)
			}
			if !reflect.DeepEqual(got, r) {
				t.Fatalf("%s: round trip changed the record:\nwant %+v\ngot  %+v", name, r, got)
			}
		}
	}
	held := heldBooking(1)
	f("held, one history entry", held)
	confirmed := advanced(held, allocator.StatusConfirmed, held.History.First().AtUnixNano+int64(3e9), "")
	confirmed.RemindedUnixNano = t0.UnixNano() + 86400e9
	f("confirmed with reminder", confirmed)
	cancelled := advanced(confirmed, allocator.StatusCancelled, confirmed.History.Last().AtUnixNano+1, "changed plans")
	cancelled.History = withPenalty(cancelled.History, 2)
	f("penalised cancel keeps the penalty flag", cancelled)
	back := advanced(confirmed, allocator.StatusCancelled, confirmed.History.First().AtUnixNano-5e9, "")
	f("history time going backwards (negative delta)", back)
	wide := heldBooking(2)
	wide.Step, wide.Slots, wide.Window, wide.Seq, wide.Reschedules = 0xffff, 0xffff, 0xffff, 0xffffffff, 255
	wide.Date = -1 << 31
	f("every field at its range limit", wide)
	uni := heldBooking(3)
	uni.Applicant = "заявитель-№1\x00tail"
	uni.History = allocator.HistoryOf(allocator.Transition{AtUnixNano: uni.History.First().AtUnixNano, Status: allocator.StatusHeld,
		Actor: "портал", Reason: strings.Repeat("x", textBytesMax)})
	f("unicode, NUL and a maximal string", uni)
}

func TestBookingEncodeRefuses(t *testing.T) {
	f := func(name string, mutate func(r *allocator.BookingRecord), want error) {
		t.Helper()
		r := heldBooking(7)
		mutate(r)
		if _, err := appendBooking(nil, r); !errors.Is(err, want) {
			t.Fatalf("%s: got %v, want %v", name, err, want)
		}
	}
	f("invalid status", func(r *allocator.BookingRecord) { r.Status = 0 }, ErrInvalidRecord)
	f("no office", func(r *allocator.BookingRecord) { r.Office = "" }, ErrInvalidRecord)
	f("held without expiry", func(r *allocator.BookingRecord) { r.HoldExpiresUnixNano = 0 }, ErrInvalidRecord)
	f("status differs from history", func(r *allocator.BookingRecord) { r.Status = allocator.StatusConfirmed }, ErrInvalidRecord)
	f("invalid status inside history", func(r *allocator.BookingRecord) {
		r.History = allocator.History("\x02\x00\x3f\x00\x00") + r.History[1:] // a first entry of status 63
	}, ErrInvalidRecord)
}

// TestBookingEncodeAssertsLimits: the engine never commits a booking beyond
// the format's limits (it keeps smaller ones and refuses more up front), so
// the encoder treats one as a bug and panics instead of refusing the
// change, which would degrade the engine for every office.
func TestBookingEncodeAssertsLimits(t *testing.T) {
	f := func(name string, mutate func(r *allocator.BookingRecord)) {
		t.Helper()
		r := heldBooking(7)
		mutate(r)
		defer func() {
			t.Helper()
			if p := recover(); p == nil {
				t.Fatalf("%s: encoded without a panic", name)
			} else if msg, _ := p.(string); !strings.HasPrefix(msg, "BUG: ") {
				t.Fatalf("%s: panic %v, want a BUG: assertion", name, p)
			}
		}()
		appendBooking(nil, r)
	}
	f("applicant too long", func(r *allocator.BookingRecord) { r.Applicant = strings.Repeat("a", textBytesMax+1) })
	f("history too long", func(r *allocator.BookingRecord) {
		h := make([]allocator.Transition, historyEntriesMax+1)
		for i := range h {
			h[i] = r.History.First()
		}
		r.History = allocator.HistoryOf(h...)
	})
	f("history reason too long", func(r *allocator.BookingRecord) {
		r.History = allocator.HistoryOf(allocator.Transition{AtUnixNano: r.History.First().AtUnixNano, Status: allocator.StatusHeld,
			Actor: "portal-a", Reason: strings.Repeat("r", textBytesMax+1)})
	})
}

func TestBookingDecodeRejects(t *testing.T) {
	v := encodeBooking(t, advanced(heldBooking(9), allocator.StatusConfirmed, t0.UnixNano()+1e9, "ok"))
	f := func(name string, b []byte) {
		t.Helper()
		if r, err := decodeBooking(b, nil); err == nil {
			t.Fatalf("%s: decoded %+v, want an error", name, r)
		}
	}
	for n := 0; n < len(v); n++ {
		f("truncated", v[:n])
	}
	f("trailing byte", append(append([]byte(nil), v...), 0))
	f("unknown version", append([]byte{3}, v[1:]...))
	bad := append([]byte(nil), v...)
	bad[17] = 0 // status byte: 0 is no status
	f("invalid status", bad)
}

func TestEventRoundTrip(t *testing.T) {
	f := func(name string, e allocator.Event) {
		t.Helper()
		v, err := appendEventValue(nil, &e, nil, 0)
		if err != nil {
			t.Fatalf("%s: encode: %v", name, err)
		}
		got, back, err := decodeEventValue(v, nil)
		if err != nil || back != 0 {
			t.Fatalf("%s: decode: %v (back %d)", name, err, back)
		}
		e.Cursor = 0 // lives in the key
		if !reflect.DeepEqual(got, e) {
			t.Fatalf("%s: round trip changed the event:\nwant %+v\ngot  %+v", name, e, got)
		}
		// The commit path hands over the booking's value it already
		// encoded: the event must come out byte for byte the same.
		if e.Booking != nil {
			bv := encodeBooking(t, e.Booking)
			if w, err := appendEventValue(nil, &e, bv, 0); err != nil || !bytes.Equal(w, v) {
				t.Fatalf("%s: with the booking's value given: %x (%v), want %x", name, w, err, v)
			}
		}
		// Version 1, which stores of format 3 hold: the booking's length
		// before it, in place of the booking form. Still read as it was.
		got1, back1, err := decodeEventValue(eventValueV1(t, v, e.Booking), nil)
		if err != nil || back1 != 0 || !reflect.DeepEqual(got1, e) {
			t.Fatalf("%s: version 1: %+v (back %d, %v), want %+v", name, got1, back1, err, e)
		}
	}
	b := heldBooking(11)
	f("booking.held with its booking", allocator.Event{Cursor: 5, Type: allocator.EventHeld, AtUnixNano: 42, Office: b.Office, Booking: b})
	f("slots.released without booking", allocator.Event{Type: allocator.EventSlotsReleased, AtUnixNano: -1, Office: "o", Through: date0 + 30})
	f("type unknown to the code table", allocator.Event{Type: "booking.teleported", Reason: "why"})
	big := heldBooking(12)
	big.History = allocator.HistoryOf(allocator.Transition{AtUnixNano: 1, Status: allocator.StatusHeld,
		Reason: strings.Repeat("r", 300)}) // version 1's length prefix of 2 bytes
	f("embedded booking longer than 127 bytes", allocator.Event{Type: allocator.EventHeld, Booking: big})
	huge := heldBooking(13)
	for i := 0; i < 5; i++ {
		huge = advanced(huge, allocator.StatusHeld, int64(i), strings.Repeat("q", textBytesMax))
	}
	f("embedded booking longer than 16 KiB (version 1: 3-byte length)", allocator.Event{Type: allocator.EventHeld, Booking: huge})
	for i := 1; i < len(eventTypeCodes); i++ {
		f("type code "+eventTypeCodes[i], allocator.Event{Type: eventTypeCodes[i]})
	}

	// An event sharing the booking of one before it keeps only the
	// distance: a few bytes where the booking took about a hundred.
	e := allocator.Event{Type: allocator.EventConfirmed, AtUnixNano: 42, Office: b.Office, Booking: b}
	embedded, _ := appendEventValue(nil, &e, nil, 0)
	v, err := appendEventValue(nil, &e, nil, 1)
	if err != nil {
		t.Fatal(err)
	}
	got, back, err := decodeEventValue(v, nil)
	if err != nil || back != 1 || got.Booking != nil {
		t.Fatalf("one back: %+v, back %d, %v", got, back, err)
	}
	if len(v) > len(embedded)-len(encodeBooking(t, b))+1 {
		t.Fatalf("one back takes %d bytes, embedded %d", len(v), len(embedded))
	}
}

// eventValueV1 rewrites v, the version-2 value of an event embedding
// booking (or none, if nil), as version 1 wrote it: the booking's length
// in place of the booking form.
func eventValueV1(t *testing.T, v []byte, booking *allocator.BookingRecord) []byte {
	t.Helper()
	v1 := []byte{eventVersion1}
	if booking == nil {
		return append(v1, v[1:]...) // a form of 0 reads as a length of 0
	}
	bv := encodeBooking(t, booking)
	head := v[1 : len(v)-len(bv)-1]
	return append(binary.AppendUvarint(append(v1, head...), uint64(len(bv))), bv...)
}

func TestEventEncodeRefuses(t *testing.T) {
	f := func(name string, e allocator.Event, want error) {
		t.Helper()
		if _, err := appendEventValue(nil, &e, nil, 0); !errors.Is(err, want) {
			t.Fatalf("%s: got %v, want %v", name, err, want)
		}
	}
	f("no type", allocator.Event{Office: "o"}, ErrInvalidRecord)
	bad := heldBooking(1)
	bad.Slots = 0
	f("embedded booking fails its check", allocator.Event{Type: allocator.EventHeld, Booking: bad}, ErrInvalidRecord)
	f("reason too long", allocator.Event{Type: allocator.EventHeld, Reason: strings.Repeat("r", textBytesMax+1)}, ErrRecordTooLarge)
}

func TestOfficeRoundTrip(t *testing.T) {
	f := func(name string, r allocator.OfficeRecord) {
		t.Helper()
		v, err := appendOffice(nil, &r)
		if err != nil {
			t.Fatalf("%s: encode: %v", name, err)
		}
		got, err := decodeOffice(v, r.Config.ID)
		if err != nil {
			t.Fatalf("%s: decode: %v", name, err)
		}
		if !reflect.DeepEqual(got, r) {
			t.Fatalf("%s: round trip changed the office:\nwant %+v\ngot  %+v", name, r, got)
		}
		if _, err := decodeOffice(v, r.Config.ID+"x"); !errors.Is(err, errKeyMismatch) {
			t.Fatalf("%s: decoding under another id: got %v, want errKeyMismatch", name, err)
		}
	}
	f("full config", allocator.OfficeRecord{Config: testOffice("msk-1"), ReleasedThrough: date0 + 30})
	cfg := testOffice("spb-2")
	cfg.Closures = []string{"2027-01-01"}
	cfg.Policy.CancelPenalty.Count = 0
	f("closures and a disabled penalty", allocator.OfficeRecord{Config: cfg})
}

func TestIdempotencyRoundTrip(t *testing.T) {
	f := func(name string, r allocator.IdempotencyRecord) {
		t.Helper()
		v, err := appendIdempotency(nil, &r)
		if err != nil {
			t.Fatalf("%s: encode: %v", name, err)
		}
		got, err := decodeIdempotency(v, r.Key)
		if err != nil {
			t.Fatalf("%s: decode: %v", name, err)
		}
		if len(r.Body) == 0 {
			r.Body = nil
		}
		if !reflect.DeepEqual(*got, r) {
			t.Fatalf("%s: round trip changed the record:\nwant %+v\ngot  %+v", name, r, *got)
		}
	}
	f("201 with a body", allocator.IdempotencyRecord{Key: "portal-a/k1", Fingerprint: [32]byte{1, 2, 3}, Status: 201, Body: []byte(`{"id":"x"}`), AtUnixNano: t0.UnixNano()})
	f("409 with an empty body", allocator.IdempotencyRecord{Key: "k", Status: 409, Body: []byte{}})
	f("maximal body", allocator.IdempotencyRecord{Key: "k", Status: 200, Body: bytes.Repeat([]byte{'b'}, IdempotencyBodyBytesMax)})
}

func TestKeyString(t *testing.T) {
	f := func(k []byte, want string) {
		t.Helper()
		if got := KeyString(k); got != want {
			t.Fatalf("KeyString(%x) = %q, want %q", k, got, want)
		}
	}
	id := testID(1)
	f(bookingKey(nil, -1, id), "booking/"+id.String()+"/-1")
	f(append([]byte{prefixBooking}, id[:]...), "booking/"+id.String()) // format 2's
	f(eventKey(nil, 42), "event/42")
	f(officeKey(nil, "msk-1"), `office/"msk-1"`)
	f(idempotencyKey(nil, "a/b"), `idempotency/"a/b"`)
	f(idemByTimeKey(nil, -5, "k"), `idempotency-by-time/-5/"k"`)
	f(idemOfficeKey(nil, "msk-1", 7, "p:k"), `idempotency-by-office/"msk-1"/7/"p:k"`)
	f(importPartKey("msk-1", 8, 3), `move/import-part/"msk-1"/3-of-8`)
	f(metaKey(metaFormat), `meta/"format"`)
	f([]byte{'b', 1, 2}, "620102")
	f(nil, "<empty key>")
}

func TestPrefixEnd(t *testing.T) {
	f := func(p, want []byte) {
		t.Helper()
		if got := prefixEnd(p); !bytes.Equal(got, want) {
			t.Fatalf("prefixEnd(%x) = %x, want %x", p, got, want)
		}
	}
	f([]byte{'a'}, []byte{'b'})
	f([]byte{'a', 0xff}, []byte{'b'})
	f([]byte{0xff, 0xff}, nil)
}

// ---- fuzz targets ----
//
// Every decoder must return an error or a record, never panic; a record it
// returns must pass its check and survive encode → decode unchanged.

func FuzzDecodeBooking(f *testing.F) {
	held := heldBooking(1)
	confirmed := advanced(held, allocator.StatusConfirmed, held.History.First().AtUnixNano+1e9, "")
	confirmed.History = withPenalty(confirmed.History, 1)
	valid := encodeBooking(f, confirmed)
	// A valid two-entry booking with a penalty flag: the happy path.
	f.Add(valid)
	// The same value cut in the middle of the history: truncation handling.
	f.Add(valid[:len(valid)-3])
	// A valid value followed by a stray byte: trailing-bytes check.
	f.Add(append(append([]byte(nil), valid...), 0x7f))
	// Version byte 2: unknown versions are refused, not guessed at.
	f.Add(append([]byte{2}, valid[1:]...))
	// A history count of 2^63 with nothing behind it: the allocation bound.
	f.Add(append(append([]byte(nil), valid[:len(valid)-len(valid)/2]...), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f))
	// The empty value.
	f.Add([]byte{})
	// A single version byte.
	f.Add([]byte{bookingVersion})
	f.Fuzz(func(t *testing.T, v []byte) {
		r, err := decodeBooking(v, nil)
		if err != nil {
			return
		}
		if err := r.Check(); err != nil {
			t.Fatalf("decoded a record that fails its check: %v", err)
		}
		again, err := appendBooking(nil, r)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		r2, err := decodeBooking(again, make(interner))
		if err != nil {
			t.Fatalf("decode of re-encoded: %v", err)
		}
		if !reflect.DeepEqual(r, r2) {
			t.Fatalf("not stable:\n%+v\n%+v", r, r2)
		}
	})
}

func FuzzDecodeEvent(f *testing.F) {
	b := heldBooking(3)
	held := allocator.Event{Type: allocator.EventHeld, AtUnixNano: 7, Office: b.Office, Booking: b}
	withBooking, _ := appendEventValue(nil, &held, nil, 0)
	back, _ := appendEventValue(nil, &held, nil, 1)
	literal, _ := appendEventValue(nil, &allocator.Event{Type: "x.y", Reason: "r", Through: -3}, nil, 0)
	// A booking.held event embedding its booking: the common value.
	f.Add(withBooking)
	// An event sharing the booking of the event before it (a hold's confirm).
	f.Add(back)
	// The same, 0 events back: out of range.
	f.Add(append(back[:len(back)-1:len(back)-1], 0))
	// An event whose type is stored as a literal string (code 0).
	f.Add(literal)
	// The embedded booking cut one byte short.
	f.Add(withBooking[:len(withBooking)-1])
	// The smallest valid event: known type, no office, no booking.
	smallest, _ := appendEventValue(nil, &allocator.Event{Type: allocator.EventHeld}, nil, 0)
	f.Add(smallest)
	last := len(smallest) - 1 // the booking form (version 1: the booking's length)
	with := func(i int, c byte) []byte { v := append([]byte(nil), smallest...); v[i] = c; return v }
	// A booking form beyond the three there are.
	f.Add(with(last, 3))
	// Version 1 with a booking length one byte more than is left.
	v1 := with(0, eventVersion1)
	v1[last] = 1
	f.Add(v1)
	// Type code 13, beyond the table.
	f.Add(with(1, 13))
	// Code 0 with an empty literal type.
	f.Add(append([]byte{eventVersion, 0, 0}, smallest[2:]...))
	f.Fuzz(func(t *testing.T, v []byte) {
		e, back, err := decodeEventValue(v, nil)
		if err != nil {
			return
		}
		again, err := appendEventValue(nil, &e, nil, back)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		e2, back2, err := decodeEventValue(again, nil)
		if err != nil {
			t.Fatalf("decode of re-encoded: %v", err)
		}
		if !reflect.DeepEqual(e, e2) || back != back2 {
			t.Fatalf("not stable:\n%+v (back %d)\n%+v (back %d)", e, back, e2, back2)
		}
	})
}

func FuzzDecodeOffice(f *testing.F) {
	valid, _ := appendOffice(nil, &allocator.OfficeRecord{Config: testOffice("msk-1"), ReleasedThrough: 20000})
	// A full office stored under its own id.
	f.Add(valid, "msk-1")
	// The same value under another id: the key check.
	f.Add(valid, "msk-2")
	// Version 1, the config as JSON, as stores of format 4 and older hold it.
	f.Add(append([]byte{officeVersion1, 0}, `{"id":"msk-1","windows":2}`...), "msk-1")
	// Version 1 with JSON that is not an object.
	f.Add([]byte{officeVersion1, 0, '[', ']'}, "")
	// A released_through beyond the int32 range of a Date.
	f.Add([]byte{officeVersion, 0xff, 0xff, 0xff, 0xff, 0x7f}, "")
	// Only the version byte.
	f.Add([]byte{officeVersion}, "x")
	// The valid value cut short in its policy.
	f.Add(valid[:len(valid)-3], "msk-1")
	// A list count far beyond officeListMax right after the strings.
	f.Add(append(valid[:2:2], 0x01, 'x', 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0x03), "x")
	// An unknown version.
	f.Add([]byte{officeVersion + 1, 0}, "")
	f.Fuzz(func(t *testing.T, v []byte, id string) {
		r, err := decodeOffice(v, id)
		if err != nil {
			return
		}
		if r.Config.ID != id {
			t.Fatalf("office %q decoded under %q", r.Config.ID, id)
		}
		if r.Config.ID == "" {
			return // the encoder refuses an office without id
		}
		again, err := appendOffice(nil, &r)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		r2, err := decodeOffice(again, id)
		if err != nil {
			t.Fatalf("decode of re-encoded: %v", err)
		}
		if !reflect.DeepEqual(r, r2) {
			t.Fatalf("not stable:\n%+v\n%+v", r, r2)
		}
	})
}

func FuzzDecodeIdempotency(f *testing.F) {
	valid, _ := appendIdempotency(nil, &allocator.IdempotencyRecord{Key: "k", Status: 201, Body: []byte("{}"), AtUnixNano: 9})
	// A 201 with a small body.
	f.Add(valid, "k")
	// The same value under an empty key: refused, a record needs a key.
	f.Add(valid, "")
	// Status 600, out of the HTTP range.
	f.Add(append(append([]byte{idempotencyVersion}, make([]byte, 32)...), 0xd8, 0x04, 0, 0), "k")
	// A body length beyond the limit.
	f.Add(append(append([]byte{idempotencyVersion}, make([]byte, 32)...), 0xc8, 0x01, 0, 0xff, 0xff, 0x7f), "k")
	// Truncated inside the fingerprint.
	f.Add(valid[:10], "k")
	f.Fuzz(func(t *testing.T, v []byte, key string) {
		r, err := decodeIdempotency(v, key)
		if err != nil {
			return
		}
		again, err := appendIdempotency(nil, r)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		r2, err := decodeIdempotency(again, key)
		if err != nil {
			t.Fatalf("decode of re-encoded: %v", err)
		}
		if !reflect.DeepEqual(r, r2) {
			t.Fatalf("not stable:\n%+v\n%+v", r, r2)
		}
	})
}

func FuzzKeys(f *testing.F) {
	// A booking key.
	f.Add(bookingKey(nil, t0.UnixNano(), testID(1)))
	// A booking key of format 2 (the id alone).
	f.Add(append([]byte{prefixBooking}, make([]byte, 16)...))
	// An event key.
	f.Add(eventKey(nil, 1<<40))
	// A key with an unknown prefix and a length-like byte.
	f.Add([]byte{'a', 0x7f, 'a'})
	// An idempotency time key with a negative time.
	f.Add(idemByTimeKey(nil, -1, "k"))
	// An idempotency office key.
	f.Add(idemOfficeKey(nil, "msk-1", 5, "k"))
	// An office index key whose office length runs past the key.
	f.Add([]byte{prefixIdemOffice, 0x7f, 'o'})
	// A kept part of an import.
	f.Add(importPartKey("msk-1", 4, 2))
	// A lone prefix byte.
	f.Add([]byte{prefixEvent})
	f.Fuzz(func(t *testing.T, k []byte) {
		if KeyString(k) == "" {
			t.Fatal("empty key name")
		}
		if c, ok := parseEventKey(k); ok && !bytes.Equal(eventKey(nil, c), k) {
			t.Fatalf("event key %x parses to %d", k, c)
		}
		if at, key, ok := parseIdemByTimeKey(k); ok && !bytes.Equal(idemByTimeKey(nil, at, string(key)), k) {
			t.Fatalf("time key %x parses to %d %q", k, at, key)
		}
		if office, at, key, ok := parseIdemOfficeKey(k); ok && !bytes.Equal(idemOfficeKey(nil, office, at, string(key)), k) {
			t.Fatalf("office key %x parses to %q %d %q", k, office, at, key)
		}
		if created, id, ok := parseBookingKey(k); ok && !bytes.Equal(bookingKey(nil, created, id), k) {
			t.Fatalf("booking key %x parses to %d %s", k, created, id)
		}
	})
}
