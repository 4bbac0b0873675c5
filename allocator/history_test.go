package allocator

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"unsafe"
)

var testTransitions = []Transition{
	{AtUnixNano: 1_790_000_000_000_000_000, Status: StatusHeld, Actor: "portal-a"},
	{AtUnixNano: 1_790_000_003_000_000_000, Status: StatusConfirmed, Actor: "portal-a", Reason: "sms code"},
	{AtUnixNano: 1_789_999_999_000_000_000, Status: StatusCancelled, Actor: "портал", Reason: strings.Repeat("r", 300), Penalty: true},
}

// TestHistoryRoundTrip: what HistoryOf encodes reads back the same, one
// transition at a time or all at once, and Append builds the same bytes as
// encoding the longer list (times may go backwards: negative deltas).
func TestHistoryRoundTrip(t *testing.T) {
	var h History
	if h.Len() != 0 || h.Last() != (Transition{}) || h.First() != (Transition{}) || len(h.Transitions()) != 0 {
		t.Fatal("the zero History is not empty")
	}
	for n := 1; n <= len(testTransitions); n++ {
		want := testTransitions[:n]
		full := HistoryOf(want...)
		h = h.Append(want[n-1])
		if h != full {
			t.Fatalf("%d: Append %q differs from HistoryOf %q", n, h, full)
		}
		if got := h.Transitions(); !reflect.DeepEqual(got, want) {
			t.Fatalf("%d: decoded %+v, want %+v", n, got, want)
		}
		if h.Len() != n || h.First() != want[0] || h.Last() != want[n-1] {
			t.Fatalf("%d: Len %d First %+v Last %+v", n, h.Len(), h.First(), h.Last())
		}
		if err := h.Check(); err != nil {
			t.Fatalf("%d: Check: %v", n, err)
		}
		p, used, err := ParseHistory(append([]byte(h), 0xff)) // a byte after it is not its own
		if err != nil || p != h || used != len(h) {
			t.Fatalf("%d: ParseHistory: %q %d %v", n, p, used, err)
		}
	}
}

// TestHistorySameActor: a transition by the actor of the one before does
// not repeat the name, and reads back with it; a first transition cannot
// refer to a previous actor.
func TestHistorySameActor(t *testing.T) {
	held := Transition{AtUnixNano: 1e18, Status: StatusHeld, Actor: "portal-a"}
	same := Transition{AtUnixNano: 1e18 + 5, Status: StatusConfirmed, Actor: "portal-a"}
	other := Transition{AtUnixNano: 1e18 + 5, Status: StatusConfirmed, Actor: "portal-b"}
	hs, ho := HistoryOf(held, same), HistoryOf(held, other)
	if len(hs) != len(ho)-len(other.Actor)-1 {
		t.Fatalf("same actor: %d bytes, another: %d; want the name and its length spared", len(hs), len(ho))
	}
	if got := hs.Transitions(); !reflect.DeepEqual(got, []Transition{held, same}) {
		t.Fatalf("same actor decodes to %+v", got)
	}
	if got := ho.Transitions(); !reflect.DeepEqual(got, []Transition{held, other}) {
		t.Fatalf("another actor decodes to %+v", got)
	}
	if _, _, err := ParseHistory([]byte{1, 0, byte(StatusHeld) | historySameActorBit, 0}); !errors.Is(err, ErrHistoryMalformed) {
		t.Fatalf("first transition with the same-actor bit: %v", err)
	}
}

// TestHistoryPenaltyMark: withLastPenalty marks the last transition only
// and leaves the History it came from unchanged.
func TestHistoryPenaltyMark(t *testing.T) {
	h := HistoryOf(testTransitions[:2]...)
	m := h.withLastPenalty()
	want := append([]Transition(nil), testTransitions[:2]...)
	want[1].Penalty = true
	if got := m.Transitions(); !reflect.DeepEqual(got, want) {
		t.Fatalf("marked: %+v, want %+v", got, want)
	}
	if h.Last().Penalty {
		t.Fatal("marking changed the original")
	}
}

// TestParseHistoryRejects: malformed bytes are refused with
// ErrHistoryMalformed, never read past their end.
func TestParseHistoryRejects(t *testing.T) {
	valid := []byte(HistoryOf(testTransitions...))
	f := func(name string, b []byte) {
		t.Helper()
		if h, _, err := ParseHistory(b); !errors.Is(err, ErrHistoryMalformed) {
			t.Fatalf("%s: got %q, %v; want ErrHistoryMalformed", name, h, err)
		}
	}
	for n := 0; n < len(valid); n++ {
		f("truncated", valid[:n])
	}
	f("zero transitions", []byte{0})
	f("status 0", []byte{1, 0, 0, 0, 0})
	f("status 99", []byte{1, 0, 99, 0, 0})
	f("count beyond the bytes", []byte{100, 0, 1, 0, 0})
	f("overlong varint time", []byte{1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x02, 1, 0, 0})
	f("count not in its shortest form", []byte{0x81, 0x00, 0, 1, 0, 0})
	f("text length not in its shortest form", []byte{1, 0, 1, 0x80, 0x00, 0})
	if err := History(append(valid[:len(valid):len(valid)], 0)).Check(); !errors.Is(err, ErrHistoryMalformed) {
		t.Fatalf("Check with a trailing byte: %v", err)
	}
}

// FuzzParseHistory: any bytes give an error or a History whose
// transitions decode without panicking and encode back to transitions
// that read the same.
func FuzzParseHistory(f *testing.F) {
	// Three transitions: a negative time delta, a penalty, a same-actor
	// mark and a 300-byte reason (two-byte length).
	f.Add([]byte(HistoryOf(testTransitions...)))
	// The smallest well-formed History: one held transition, no texts.
	f.Add([]byte{1, 0, 1, 0, 0})
	// Two transitions: a penalised held one by "a", then one by "" (the
	// actor written out, not marked same).
	f.Add([]byte{2, 0, 0x81, 1, 'a', 0, 1, 2, 0, 0})
	// A second transition marked same-actor: it reads the first's actor.
	f.Add([]byte{2, 0, 1, 1, 'a', 0, 2, 2 | historySameActorBit, 0})
	// The same-actor mark on the first transition: malformed.
	f.Add([]byte{1, 0, 1 | historySameActorBit, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, n, err := ParseHistory(b)
		if err != nil {
			return
		}
		if n > len(b) || string(h) != string(b[:n]) || h.Check() != nil {
			t.Fatalf("ParseHistory took %d of %d bytes: %q", n, len(b), h)
		}
		ts := h.Transitions()
		if len(ts) != h.Len() || len(ts) == 0 {
			t.Fatalf("%d transitions, Len %d", len(ts), h.Len())
		}
		if again := HistoryOf(ts...).Transitions(); !reflect.DeepEqual(again, ts) {
			t.Fatalf("re-encoded %+v, want %+v", again, ts)
		}
	})
}

// TestPerBookingStructSizes: per active booking the engine keeps a
// BookingRecord, a booking and a timer entry; their sizes are part of the
// budget of DESIGN §6 (≤ 256 B per active booking, measured in full by
// BenchmarkMemoryPerBooking). A field added or reordered carelessly moves
// the record into the next allocation size class.
func TestPerBookingStructSizes(t *testing.T) {
	f := func(what string, got, want uintptr) {
		t.Helper()
		if got > want {
			t.Fatalf("%s is %d bytes, budget %d", what, got, want)
		}
	}
	f("BookingRecord", unsafe.Sizeof(BookingRecord{}), 112)
	f("booking", unsafe.Sizeof(booking{}), 24)
	f("timerEntry", unsafe.Sizeof(timerEntry{}), 16)
}
