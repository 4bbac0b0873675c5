package allocator

import (
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"strings"
)

// History is a booking's transitions, oldest first, kept encoded: a record
// holds one string instead of a slice of Transition (48 bytes each, two
// string headers among them), and the journal writes and reads the same
// bytes as they are. Like the record that holds it, a History never
// changes; Append returns a new one. The zero value has no transitions.
//
// Encoding (the journal's on-disk format depends on it; see package wal):
//
//	count                  uvarint (≥ 1)
//	per transition:
//	  at                   varint: unix ns for the first, then the
//	                       difference from the previous transition
//	  status | flags       1 byte: low 6 bits status, bit 7 = penalty,
//	                       bit 6 = same actor as the previous transition
//	  actor                uvarint length, bytes (absent with bit 6)
//	  reason               uvarint length, bytes
//
// Most transitions after the first are made by the actor of the one before
// (a portal holds, then confirms): bit 6 spares repeating its name.
type History string

// historyStackBytes is the stack buffer a History is encoded in before it
// becomes a string; longer ones move to the heap.
const historyStackBytes = 256

// Limits on what a booking's history holds. They are policy, and the
// journal's contract: a Journal must accept every record within them
// (package wal holds its format's larger limits to these at compile time).
// The engine refuses a change beyond them up front, for that request
// alone, because a journal that refused it at commit would leave the disk
// state unknown and stop the writes of every office (ErrDegraded).
//
// Only two transitions can repeat on one booking: an applicant's late
// cancel (confirmed → cancel_requested), which an operator's reject undoes
// (→ confirmed), and a reschedule (confirmed → confirmed, also bounded by
// the office's max_reschedules). Every other transition moves a booking
// along a path of at most five entries (held, awaiting_approval,
// confirmed, checked_in, completed); a reminder adds none. So a booking takes a repeatable
// transition only while its history keeps room for it and the longest
// ending after it (checkRepeat), and then no other transition can take it
// past HistoryEntriesMax: whatever was let into a round can finish.
const (
	// HistoryEntriesMax bounds a booking's transitions: room for the
	// office's max_reschedules (at most 100) and dozens of late-cancel
	// rounds besides; an eighth of the 1,024 entries the on-disk format
	// holds.
	HistoryEntriesMax = 128
	// ActorBytesMax bounds Meta.Actor (an API key's name, ActorSystem),
	// which every transition records.
	ActorBytesMax = 64
	// ReasonBytesMax bounds Meta.Reason, which transitions and events
	// record.
	ReasonBytesMax = 512
)

// historyTailEntries is the most transitions a booking can still make
// without a repeatable one: from cancel_requested, the operator's reject,
// the check-in and the completion.
const historyTailEntries = 3

// checkRepeat refuses a repeatable transition (see HistoryEntriesMax),
// named by action, on a booking of history h when its entry and the
// longest ending after it would not fit in HistoryEntriesMax.
func (h History) checkRepeat(action string) error {
	if n := h.Len(); n+1+historyTailEntries > HistoryEntriesMax {
		return fmt.Errorf("%w: the booking has %d history entries, and %s would leave too little room to end it within %d; an operator can still approve, force-cancel, check in or complete it",
			ErrHistoryLimit, n, action, HistoryEntriesMax)
	}
	return nil
}

// checkGrowth refuses next, the record after a transition of cur, when the
// transition adds an entry beyond HistoryEntriesMax. Under checkRepeat no
// history written by this engine gets there; one restored from a version
// without the limit may be longer already, and then takes no more entries.
func checkGrowth(cur, next *BookingRecord) error {
	if n := next.History.Len(); n > HistoryEntriesMax && n > cur.History.Len() {
		return fmt.Errorf("%w: booking %s already has %d history entries, more than %d", ErrHistoryLimit, cur.ID, cur.History.Len(), HistoryEntriesMax)
	}
	return nil
}

// check refuses a Meta whose texts exceed ActorBytesMax or ReasonBytesMax.
func (m *Meta) check() error {
	switch {
	case len(m.Actor) > ActorBytesMax:
		return fmt.Errorf("%w: actor is %d bytes, at most %d", ErrValidation, len(m.Actor), ActorBytesMax)
	case len(m.Reason) > ReasonBytesMax:
		return fmt.Errorf("%w: reason is %d bytes, at most %d", ErrValidation, len(m.Reason), ReasonBytesMax)
	}
	return nil
}

const (
	historyPenaltyBit   = 0x80
	historySameActorBit = 0x40
	historyStatusMask   = 0x3f
)

// HistoryOf encodes ts.
func HistoryOf(ts ...Transition) History {
	if len(ts) == 0 {
		return ""
	}
	var buf [historyStackBytes]byte // encoded on the stack: one allocation, the string
	b := binary.AppendUvarint(buf[:0], uint64(len(ts)))
	for i, t := range ts {
		var prev *Transition
		if i > 0 {
			prev = &ts[i-1]
		}
		b = appendTransition(b, t, prev)
	}
	return History(b)
}

// appendTransition encodes t after prev (nil for the first transition).
func appendTransition(b []byte, t Transition, prev *Transition) []byte {
	var prevAt int64
	if prev != nil {
		prevAt = prev.AtUnixNano
	}
	b = binary.AppendVarint(b, t.AtUnixNano-prevAt)
	flags := byte(t.Status)
	if t.Penalty {
		flags |= historyPenaltyBit
	}
	same := prev != nil && prev.Actor == t.Actor
	if same {
		flags |= historySameActorBit
	}
	b = append(b, flags)
	if !same {
		b = binary.AppendUvarint(b, uint64(len(t.Actor)))
		b = append(b, t.Actor...)
	}
	b = binary.AppendUvarint(b, uint64(len(t.Reason)))
	return append(b, t.Reason...)
}

// Append returns h with t added last.
func (h History) Append(t Transition) History {
	n, body := h.count()
	var prev *Transition
	if n > 0 {
		last := h.Last()
		prev = &last
	}
	var buf [historyStackBytes]byte
	b := binary.AppendUvarint(buf[:0], uint64(n+1))
	b = append(b, body...)
	return History(appendTransition(b, t, prev))
}

// String lists the transitions for people (test failures, logs).
func (h History) String() string {
	var b strings.Builder
	b.WriteByte('[')
	for i, t := range h.All() {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s at %d by %q", t.Status, t.AtUnixNano, t.Actor)
		if t.Reason != "" {
			fmt.Fprintf(&b, " (%q)", t.Reason)
		}
		if t.Penalty {
			b.WriteString(" penalty")
		}
	}
	b.WriteByte(']')
	return b.String()
}

// Len returns the number of transitions.
func (h History) Len() int {
	n, _ := h.count()
	return n
}

// count splits h into its transition count and the encoded transitions.
func (h History) count() (int, string) {
	if h == "" {
		return 0, ""
	}
	n, w := uvarint(string(h))
	return int(n), string(h[w:])
}

// All yields the transitions in order with their index.
func (h History) All() iter.Seq2[int, Transition] {
	return func(yield func(int, Transition) bool) {
		n, body := h.count()
		var t Transition
		for i := range n {
			body, t = nextTransition(body, t)
			if !yield(i, t) {
				return
			}
		}
	}
}

// Transitions returns the transitions decoded, oldest first.
func (h History) Transitions() []Transition {
	out := make([]Transition, 0, h.Len())
	for _, t := range h.All() {
		out = append(out, t)
	}
	return out
}

// First returns the first transition; the zero Transition if there is none.
func (h History) First() Transition {
	n, body := h.count()
	if n == 0 {
		return Transition{}
	}
	_, t := nextTransition(body, Transition{})
	return t
}

// Last returns the last transition; the zero Transition if there is none.
func (h History) Last() Transition {
	var last Transition
	for _, t := range h.All() {
		last = t
	}
	return last
}

// withLastPenalty returns h with the penalty mark set on its last
// transition. Penalties are rare (no-shows, late cancels): it encodes
// again rather than patch a byte.
func (h History) withLastPenalty() History {
	ts := h.Transitions()
	if len(ts) == 0 {
		return h
	}
	ts[len(ts)-1].Penalty = true
	return HistoryOf(ts...)
}

// nextTransition decodes the transition at the front of body, which
// follows prev (the zero Transition for the first). body must be well
// formed (ParseHistory).
func nextTransition(body string, prev Transition) (string, Transition) {
	var t Transition
	d, w := varintString(body)
	t.AtUnixNano = prev.AtUnixNano + d
	body = body[w:]
	flags := body[0]
	t.Status = Status(flags & historyStatusMask)
	t.Penalty = flags&historyPenaltyBit != 0
	body = body[1:]
	if flags&historySameActorBit != 0 {
		t.Actor = prev.Actor
	} else {
		n, w := uvarint(body)
		t.Actor, body = body[w:w+int(n)], body[w+int(n):]
	}
	n, w := uvarint(body)
	t.Reason, body = body[w:w+int(n)], body[w+int(n):]
	return body, t
}

// ErrHistoryMalformed is returned by ParseHistory for bytes that are not a
// well-formed History.
var ErrHistoryMalformed = errors.New("allocator: malformed history")

// ParseHistory reads the History at the front of b: a count of at least
// one, then that many transitions whose statuses are valid. It returns the
// History (a copy) and the number of bytes it took.
func ParseHistory(b []byte) (History, int, error) {
	n, _, err := historyLen(b)
	if err != nil {
		return "", 0, err
	}
	return History(b[:n]), n, nil
}

// Check reports whether h is well formed, as ParseHistory would read it,
// with nothing after it.
func (h History) Check() error {
	_, err := h.checkLast()
	return err
}

// checkLast is Check that also returns the status of the last transition,
// read on the way.
func (h History) checkLast() (Status, error) {
	n, last, err := historyLen(h)
	if err == nil && n != len(h) {
		err = fmt.Errorf("%w: %d bytes after the last transition", ErrHistoryMalformed, len(h)-n)
	}
	return last, err
}

// historyLen returns the length of the well-formed History at the front of
// b and the status of its last transition, or why there is none.
func historyLen[T ~string | ~[]byte](b T) (int, Status, error) {
	n, off := uvarint(b)
	if off <= 0 || n == 0 || n > uint64(len(b)/3) { // a transition takes at least 3 bytes
		return 0, 0, fmt.Errorf("%w: bad transition count", ErrHistoryMalformed)
	}
	var last Status
	for i := range n {
		_, w := uvarint(b[off:]) // the time, zig-zag: its length is all that matters here
		if w <= 0 {
			return 0, 0, fmt.Errorf("%w: transition %d: bad time", ErrHistoryMalformed, i)
		}
		off += w
		if off >= len(b) || !Status(b[off]&historyStatusMask).Valid() {
			return 0, 0, fmt.Errorf("%w: transition %d: bad status", ErrHistoryMalformed, i)
		}
		last = Status(b[off] & historyStatusMask)
		texts := 2 // actor, reason
		if b[off]&historySameActorBit != 0 {
			if i == 0 {
				return 0, 0, fmt.Errorf("%w: the first transition has no previous actor", ErrHistoryMalformed)
			}
			texts = 1
		}
		off++
		for range texts {
			l, w := uvarint(b[off:])
			if w <= 0 || l > uint64(len(b)-off-w) {
				return 0, 0, fmt.Errorf("%w: transition %d: bad text length", ErrHistoryMalformed, i)
			}
			off += w + int(l)
		}
	}
	return off, last, nil
}

// uvarint is binary.Uvarint for strings and byte slices alike, but strict:
// the value and its length, or 0 and a length ≤ 0 when b holds no valid
// uvarint in its shortest form. Every encoder of a History writes the
// shortest form; a longer one in stored bytes is corruption, not a
// second spelling of the same value.
func uvarint[T ~string | ~[]byte](b T) (uint64, int) {
	var x uint64
	var shift uint
	for i := 0; i < len(b) && i < binary.MaxVarintLen64; i++ {
		c := b[i]
		if c < 0x80 {
			if i == binary.MaxVarintLen64-1 && c > 1 {
				return 0, -(i + 1) // overflow
			}
			if c == 0 && i > 0 {
				return 0, -(i + 1) // a longer form than needed
			}
			return x | uint64(c)<<shift, i + 1
		}
		x |= uint64(c&0x7f) << shift
		shift += 7
	}
	return 0, 0
}

// varintString is binary.Varint on a string of a well-formed History.
func varintString(s string) (int64, int) {
	ux, n := uvarint(s)
	x := int64(ux >> 1)
	if ux&1 != 0 {
		x = ^x
	}
	return x, n
}
