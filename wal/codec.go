package wal

// Keys and values. The layout is drawn in the package doc; this file is the
// only place that reads or writes it. Changing anything here breaks data
// already on disk: add a new version byte and keep decoding the old one.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"

	"slotd/allocator"
)

// Key prefixes (the first byte of every key).
const (
	prefixMeta        = 'm'
	prefixOffice      = 'o'
	prefixBooking     = 'b'
	prefixEvent       = 'e'
	prefixIdempotency = 'i'
	prefixIdemByTime  = 't'
	prefixIdemOffice  = 'j'
	prefixWatch       = 'w'
	prefixSeqMark     = 'n'

	// prefixRaft holds the cluster's Raft log. wal never reads or writes
	// it; package raftlog owns its keys through DB.RaftRegion.
	prefixRaft = 'r'

	// prefixReservedApplicant held format 1's applicant index; format 2
	// deletes it on upgrade and never writes it.
	prefixReservedApplicant = 'a'
)

// Meta keys (after prefixMeta).
const (
	metaFormat               = "format"
	metaEventsDeletedThrough = "events-deleted-through"
	metaSyncedRound          = "synced-round"
)

// Value versions: the first byte of every value that has one.
const (
	formatVersion      byte = 8 // value of the meta "format" key (formatUpgrading while Open upgrades)
	bookingVersion     byte = 2
	bookingVersion1    byte = 1 // still read: see decodeBookingInto
	eventVersion       byte = 2
	eventVersion1      byte = 1 // still read: see decodeEventValue
	officeVersion      byte = 5
	officeVersion4     byte = 4 // still read: see decodeOffice
	officeVersion3     byte = 3 // still read: see decodeOffice
	officeVersion2     byte = 2 // still read: see decodeOffice
	officeVersion1     byte = 1 // still read: see decodeOffice
	idempotencyVersion byte = 1
)

// Limits on what a record may hold. The encoder refuses more with
// ErrRecordTooLarge (a booking beyond them is a bug: assertBookingLimits);
// the decoder calls more corruption.
const (
	// textBytesMax bounds every string inside a record (ids, actor, reason,
	// event type).
	textBytesMax = 4096
	// historyEntriesMax bounds a booking's history.
	historyEntriesMax = 1024
	// IdempotencyBodyBytesMax bounds the stored response body of one
	// idempotency record.
	IdempotencyBodyBytesMax = 64 << 10
	// idempotencyKeyBytesMax bounds an idempotency key (namespace + header).
	idempotencyKeyBytesMax = 512
	// officeValueBytesMax bounds an office value.
	officeValueBytesMax = 1 << 20
)

// The engine bounds what a booking record holds (allocator.HistoryEntriesMax,
// ActorBytesMax, ReasonBytesMax; applicant and office ids by its own
// validation) and refuses more up front, for the request alone. A record
// it let through must never be refused here: a refused commit degrades the
// engine for every office. So the format's limits hold the engine's with
// margin, checked when this compiles (a negative constant does not
// convert to uint), and a booking beyond them is a bug (assertBookingLimits).
const (
	_ = uint(historyEntriesMax - 4*allocator.HistoryEntriesMax)
	_ = uint(textBytesMax - 4*allocator.ReasonBytesMax)
	_ = uint(textBytesMax - 4*allocator.ActorBytesMax)
)

// errShort and friends describe corruption; callers wrap them with the key.
var (
	errTruncated   = errors.New("value truncated")
	errTrailing    = errors.New("trailing bytes after value")
	errVersion     = errors.New("unknown value version")
	errFieldRange  = errors.New("field out of range")
	errKeyMismatch = errors.New("value does not belong to its key")
)

// Event type codes. 0 means the type string follows literally, so a type
// added to the allocator later is still stored, only less compactly. The
// codes are part of the on-disk format: append, never renumber.
var eventTypeCodes = [...]string{
	1:  allocator.EventHeld,
	2:  allocator.EventConfirmed,
	3:  allocator.EventCancelRequested,
	4:  allocator.EventCancelled,
	5:  allocator.EventExpired,
	6:  allocator.EventRescheduled,
	7:  allocator.EventCheckedIn,
	8:  allocator.EventCompleted,
	9:  allocator.EventNoShow,
	10: allocator.EventReminderDue,
	11: allocator.EventSlotsReleased,
	12: allocator.EventWatchMatched,
	13: allocator.EventAwaitingApproval,
	14: allocator.EventRejected,
}

func eventTypeCode(typ string) byte {
	for i := 1; i < len(eventTypeCodes); i++ {
		if eventTypeCodes[i] == typ {
			return byte(i)
		}
	}
	return 0
}

// ---- keys ----

func metaKey(name string) []byte { return append([]byte{prefixMeta}, name...) }

func officeKey(dst []byte, id string) []byte {
	return append(append(dst, prefixOffice), id...)
}

// bookingKey orders bookings by creation time (the time of the first
// history entry, which never changes), then id. New bookings are written
// at the end of the booking range: Pebble's memtable still searches its
// skiplist from the head for each, but along nodes written moments ago,
// in cache. Keyed by the random id alone (format 2), every new booking's
// search ended at a random place and missed the cache all the way down,
// a fifth of a durable booking's CPU in its profile
// (BenchmarkEngineDurableHold). The sign bit is flipped so that negative
// times sort first.
func bookingKey(dst []byte, createdUnixNano int64, id allocator.ID) []byte {
	dst = append(dst, prefixBooking)
	dst = binary.BigEndian.AppendUint64(dst, uint64(createdUnixNano)^(1<<63))
	return append(dst, id[:]...)
}

// bookingKeyOf is r's booking key.
func bookingKeyOf(dst []byte, r *allocator.BookingRecord) []byte {
	return bookingKey(dst, r.History.First().AtUnixNano, r.ID)
}

// Lengths of a booking key: format 3's, and formats 1 and 2's (the
// prefix and the id), which Open rewrites (DB.upgrade).
const (
	bookingKeyBytes   = 1 + 8 + 16
	bookingKeyBytesV2 = 1 + 16
)

// parseBookingKey returns the creation time and id of a booking key.
func parseBookingKey(k []byte) (createdUnixNano int64, id allocator.ID, ok bool) {
	if len(k) != bookingKeyBytes || k[0] != prefixBooking {
		return 0, id, false
	}
	return int64(binary.BigEndian.Uint64(k[1:9]) ^ (1 << 63)), allocator.ID(k[9:]), true
}

func eventKey(dst []byte, cursor uint64) []byte {
	return binary.BigEndian.AppendUint64(append(dst, prefixEvent), cursor)
}

func idempotencyKey(dst []byte, key string) []byte {
	return append(append(dst, prefixIdempotency), key...)
}

// idemByTimeKey orders idempotency records by creation time for the
// sweep. The sign bit is flipped so that negative times sort first.
func idemByTimeKey(dst []byte, atUnixNano int64, key string) []byte {
	dst = append(dst, prefixIdemByTime)
	dst = binary.BigEndian.AppendUint64(dst, uint64(atUnixNano)^(1<<63))
	return append(dst, key...)
}

// idemOfficeKey indexes an idempotency record by the office its change
// wrote (idemOfficePrefix, then the time and key of its idemByTimeKey),
// so that a move finds the records of an office without a scan.
func idemOfficeKey(dst []byte, office string, atUnixNano int64, key string) []byte {
	dst = idemOfficePrefix(dst, office)
	dst = binary.BigEndian.AppendUint64(dst, uint64(atUnixNano)^(1<<63))
	return append(dst, key...)
}

// idemOfficePrefix is the prefix of office's idemOfficeKeys.
func idemOfficePrefix(dst []byte, office string) []byte {
	return appendString(append(dst, prefixIdemOffice), office)
}

// parseIdemOfficeKey returns the office, time and idempotency key of an
// office index key.
func parseIdemOfficeKey(k []byte) (office string, atUnixNano int64, key []byte, ok bool) {
	if len(k) < 2 || k[0] != prefixIdemOffice {
		return "", 0, nil, false
	}
	n, w := binary.Uvarint(k[1:])
	if w <= 0 || n > textBytesMax || w != len(binary.AppendUvarint(nil, n)) || uint64(len(k)-1-w) < n+8 {
		return "", 0, nil, false
	}
	rest := k[1+w:]
	return string(rest[:n]), int64(binary.BigEndian.Uint64(rest[n:n+8]) ^ (1 << 63)), rest[n+8:], true
}

// prefixEnd returns the smallest key greater than every key with prefix p.
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil // p is all 0xff: no upper bound
}

// parseEventKey returns the cursor of an event key.
func parseEventKey(k []byte) (uint64, bool) {
	if len(k) != 9 || k[0] != prefixEvent {
		return 0, false
	}
	return binary.BigEndian.Uint64(k[1:]), true
}

// parseIdemByTimeKey returns the time and idempotency key of a sweep index key.
func parseIdemByTimeKey(k []byte) (atUnixNano int64, key []byte, ok bool) {
	if len(k) < 9 || k[0] != prefixIdemByTime {
		return 0, nil, false
	}
	return int64(binary.BigEndian.Uint64(k[1:9]) ^ (1 << 63)), k[9:], true
}

// KeyString names a key for people: "booking/<id>", "event/42",
// "office/msk-1". Errors that concern a stored value name its key this way.
func KeyString(k []byte) string {
	if len(k) == 0 {
		return "<empty key>"
	}
	switch k[0] {
	case prefixBooking:
		if created, id, ok := parseBookingKey(k); ok {
			return "booking/" + id.String() + "/" + strconv.FormatInt(created, 10)
		}
		if len(k) == bookingKeyBytesV2 {
			return "booking/" + allocator.ID(k[1:]).String()
		}
	case prefixEvent:
		if c, ok := parseEventKey(k); ok {
			return "event/" + strconv.FormatUint(c, 10)
		}
	case prefixOffice:
		return "office/" + strconv.Quote(string(k[1:]))
	case prefixIdempotency:
		return "idempotency/" + strconv.Quote(string(k[1:]))
	case prefixMeta:
		return "meta/" + strconv.Quote(string(k[1:]))
	case prefixSeqMark:
		if m, ok := parseSeqMarkKey(k); ok {
			return fmt.Sprintf("number-mark/%s/%s/%d", m.Office, m.Date, m.Seq)
		}
	case prefixWatch:
		if len(k) == 17 {
			return "watch/" + allocator.ID(k[1:]).String()
		}
	case prefixVoid:
		if len(k) == 17 {
			return "void/" + allocator.ID(k[1:]).String()
		}
	case prefixLedger:
		if t, err := decodeLedger(k, []byte{ledgerVersion, 0, 0}); err == nil {
			return "ledger/" + strconv.Quote(t.Applicant) + "/" + t.Booking.String()
		}
	case prefixMove:
		if len(k) > 2 && k[1] == 'o' {
			return "move/office/" + strconv.Quote(string(k[2:]))
		}
		if len(k) == 18 && k[1] == 'b' {
			return "move/booking/" + allocator.ID(k[2:]).String()
		}
		if len(k) > 2 && k[1] == 'p' {
			if n, w := binary.Uvarint(k[2:]); w > 0 && n <= textBytesMax && uint64(len(k)-2-w) == n+8 {
				rest := k[2+w:]
				return fmt.Sprintf("move/import-part/%s/%d-of-%d", strconv.Quote(string(rest[:n])), binary.BigEndian.Uint32(rest[n+4:]), binary.BigEndian.Uint32(rest[n:n+4]))
			}
		}
	case prefixIdemByTime:
		if at, key, ok := parseIdemByTimeKey(k); ok {
			return "idempotency-by-time/" + strconv.FormatInt(at, 10) + "/" + strconv.Quote(string(key))
		}
	case prefixIdemOffice:
		if office, at, key, ok := parseIdemOfficeKey(k); ok {
			return "idempotency-by-office/" + strconv.Quote(office) + "/" + strconv.FormatInt(at, 10) + "/" + strconv.Quote(string(key))
		}
	}
	return fmt.Sprintf("%x", k)
}

// ---- encoding ----

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func checkText(what, s string) error {
	if len(s) > textBytesMax {
		return fmt.Errorf("%w: %s is %d bytes, at most %d", ErrRecordTooLarge, what, len(s), textBytesMax)
	}
	return nil
}

// appendBooking appends the version-2 encoding of r. It calls r.Check
// first: a record that fails its own check is never written.
func appendBooking(dst []byte, r *allocator.BookingRecord) ([]byte, error) {
	if err := r.Check(); err != nil {
		return dst, fmt.Errorf("%w: %w", ErrInvalidRecord, err)
	}
	assertBookingLimits(r)
	dst = append(dst, bookingVersion)
	dst = append(dst, r.ID[:]...)
	dst = append(dst, byte(r.Status))
	dst = appendString(dst, r.Office)
	dst = appendString(dst, r.Service)
	dst = appendString(dst, r.Applicant)
	dst = binary.AppendVarint(dst, int64(r.Date))
	dst = binary.AppendUvarint(dst, uint64(r.Step))
	dst = binary.AppendUvarint(dst, uint64(r.Slots))
	dst = binary.AppendUvarint(dst, uint64(r.Window))
	dst = binary.AppendUvarint(dst, uint64(r.Seq))
	dst = append(dst, r.Reschedules)
	dst = binary.AppendVarint(dst, r.HoldExpiresUnixNano)
	dst = binary.AppendVarint(dst, r.RemindedUnixNano)
	// The engine keeps a history in this encoding (allocator.History).
	return append(dst, r.History...), nil
}

// assertBookingLimits panics unless r is within the format's limits. The
// engine refuses every booking beyond its own, smaller limits before it
// commits (see the compile-time check above), so one here is a bug of the
// engine, not a request to refuse: refusing it would stop every write.
func assertBookingLimits(r *allocator.BookingRecord) {
	err := checkHistoryLimits(r.History) // well formed: r.Check
	for _, f := range [...]struct{ what, s string }{{"office", r.Office}, {"service", r.Service}, {"applicant", r.Applicant}} {
		if err == nil {
			err = checkText(f.what, f.s)
		}
	}
	if err != nil {
		panic(fmt.Sprintf("BUG: wal: booking %s beyond the limits the engine keeps: %v", r.ID, err))
	}
}

// checkHistoryLimits checks the count and the texts of a well-formed
// history against the format's limits.
func checkHistoryLimits(h allocator.History) error {
	if n := h.Len(); n > historyEntriesMax {
		return fmt.Errorf("%w: %d history entries, at most %d", ErrRecordTooLarge, n, historyEntriesMax)
	}
	if len(h) <= textBytesMax {
		return nil // no text inside is longer than the whole
	}
	for _, t := range h.All() {
		if err := checkText("history actor", t.Actor); err != nil {
			return err
		}
		if err := checkText("history reason", t.Reason); err != nil {
			return err
		}
	}
	return nil
}

// appendEventValue appends the version-2 encoding of e (the cursor lives in
// the key). back > 0 says that the event back cursors before this one, of
// the same change, embeds e.Booking already: the value then names that
// distance instead of embedding the booking again. Otherwise an embedded
// booking is checked and encoded like any other, unless booking holds its
// value already (appendBooking's output for e.Booking), which is then
// copied as is.
func appendEventValue(dst []byte, e *allocator.Event, booking []byte, back uint64) ([]byte, error) {
	if e.Type == "" {
		return dst, fmt.Errorf("%w: event without type", ErrInvalidRecord)
	}
	for _, f := range [...]struct{ what, s string }{{"event type", e.Type}, {"event office", e.Office}, {"event reason", e.Reason}} {
		if err := checkText(f.what, f.s); err != nil {
			return dst, err
		}
	}
	dst = append(dst, eventVersion)
	code := eventTypeCode(e.Type)
	dst = append(dst, code)
	if code == 0 {
		dst = appendString(dst, e.Type)
	}
	dst = binary.AppendVarint(dst, e.AtUnixNano)
	dst = appendString(dst, e.Office)
	dst = binary.AppendVarint(dst, int64(e.Through))
	dst = appendString(dst, e.Reason)
	dst = binary.AppendVarint(dst, e.StartUnixNano)
	if e.Watch == nil {
		dst = append(dst, 0)
	} else {
		dst = append(dst, 1)
		var err error
		if dst, err = appendWatch(dst, e.Watch); err != nil {
			return dst, err
		}
	}
	switch {
	case back > 0:
		return binary.AppendUvarint(append(dst, eventBookingBack), back), nil
	case e.Booking == nil:
		return append(dst, eventBookingNone), nil
	case booking != nil:
		return append(append(dst, eventBookingEmbedded), booking...), nil
	}
	return appendBooking(append(dst, eventBookingEmbedded), e.Booking)
}

// The booking form of an event value of version 2.
const (
	eventBookingNone     byte = 0 // no booking
	eventBookingEmbedded byte = 1 // the booking value follows (rest of the value)
	eventBookingBack     byte = 2 // uvarint n ≥ 1: the event n cursors before embeds it
)

// eventBackMax bounds an event's distance back to the event that embeds
// its booking: the events of one change, of which the engine writes a
// handful at most. The decoder calls more corruption.
const eventBackMax = 1024

// checkIdempotency asserts what the decoder will demand of the record.
func checkIdempotency(r *allocator.IdempotencyRecord) error {
	switch {
	case r.Key == "":
		return fmt.Errorf("%w: idempotency record without key", ErrInvalidRecord)
	case len(r.Key) > idempotencyKeyBytesMax:
		return fmt.Errorf("%w: idempotency key is %d bytes, at most %d", ErrRecordTooLarge, len(r.Key), idempotencyKeyBytesMax)
	case r.Status < 100 || r.Status > 599:
		return fmt.Errorf("%w: idempotency record %q: HTTP status %d", ErrInvalidRecord, r.Key, r.Status)
	case len(r.Body) > IdempotencyBodyBytesMax:
		return fmt.Errorf("%w: idempotency record %q: body is %d bytes, at most %d", ErrRecordTooLarge, r.Key, len(r.Body), IdempotencyBodyBytesMax)
	}
	return nil
}

// appendIdempotency appends the version-1 encoding of r (the key lives in
// the key).
func appendIdempotency(dst []byte, r *allocator.IdempotencyRecord) ([]byte, error) {
	if err := checkIdempotency(r); err != nil {
		return dst, err
	}
	dst = append(dst, idempotencyVersion)
	dst = append(dst, r.Fingerprint[:]...)
	dst = binary.AppendUvarint(dst, uint64(r.Status))
	dst = binary.AppendVarint(dst, r.AtUnixNano)
	dst = binary.AppendUvarint(dst, uint64(len(r.Body)))
	return append(dst, r.Body...), nil
}

// ---- decoding ----

// interner shares the strings that repeat across records (office, service,
// actor, reason) so that a million recovered bookings do not hold a million
// copies of "msk-sakharovo". Not safe for concurrent use; nil interns nothing.
type interner map[string]string

// internMax bounds the interner; strings beyond it are copied.
const internMax = 1 << 16

func (in interner) str(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if in == nil {
		return string(b)
	}
	if s, ok := in[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(in) < internMax {
		in[s] = s
	}
	return s
}

// decoder reads a value front to back. The first failure sticks in err and
// every later read returns zero, so callers check err once at the end.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(err error) {
	if d.err == nil {
		d.err = err
	}
	d.b = nil
}

func (d *decoder) byte() byte {
	if len(d.b) < 1 {
		d.fail(errTruncated)
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) bytes(n int) []byte {
	if n < 0 || len(d.b) < n {
		d.fail(errTruncated)
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail(errTruncated)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail(errTruncated)
		return 0
	}
	d.b = d.b[n:]
	return v
}

// uvarintMax reads a uvarint and fails unless it is ≤ max.
func (d *decoder) uvarintMax(max uint64, what string) uint64 {
	v := d.uvarint()
	if v > max {
		d.fail(fmt.Errorf("%w: %s %d exceeds %d", errFieldRange, what, v, max))
		return 0
	}
	return v
}

// text reads a length-prefixed byte string of at most textBytesMax bytes.
func (d *decoder) text(what string) []byte {
	n := d.uvarintMax(textBytesMax, what+" length")
	return d.bytes(int(n))
}

func (d *decoder) end() error {
	if d.err == nil && len(d.b) != 0 {
		d.err = errTrailing
	}
	return d.err
}

// decodeBooking decodes a booking value and checks it (BookingRecord.Check).
func decodeBooking(v []byte, in interner) (*allocator.BookingRecord, error) {
	d := decoder{b: v}
	r := &allocator.BookingRecord{}
	if err := d.decodeBookingInto(r, in); err != nil {
		return nil, err
	}
	if err := d.end(); err != nil {
		return nil, err
	}
	if err := r.Check(); err != nil {
		return nil, err
	}
	return r, nil
}

func (d *decoder) decodeBookingInto(r *allocator.BookingRecord, in interner) error {
	// Version 1 differs only in the history: no transition has the
	// same-actor bit, which is what a version-2 reader reads it as.
	if v := d.byte(); d.err == nil && v != bookingVersion && v != bookingVersion1 {
		return fmt.Errorf("%w: booking version %d", errVersion, v)
	}
	copy(r.ID[:], d.bytes(16))
	r.Status = allocator.Status(d.byte())
	r.Office = in.str(d.text("office"))
	r.Service = in.str(d.text("service"))
	r.Applicant = string(d.text("applicant"))
	date := d.varint()
	if date < -1<<31 || date > 1<<31-1 {
		d.fail(fmt.Errorf("%w: date %d", errFieldRange, date))
	}
	r.Date = allocator.Date(date)
	r.Step = uint16(d.uvarintMax(0xffff, "step"))
	r.Slots = uint16(d.uvarintMax(0xffff, "slots"))
	r.Window = uint16(d.uvarintMax(0xffff, "window"))
	r.Seq = uint32(d.uvarintMax(0xffffffff, "seq"))
	r.Reschedules = d.byte()
	r.HoldExpiresUnixNano = d.varint()
	r.RemindedUnixNano = d.varint()
	if d.err != nil {
		return d.err
	}
	h, n, err := allocator.ParseHistory(d.b)
	if err != nil {
		d.fail(fmt.Errorf("%w: %w", errFieldRange, err))
		return d.err
	}
	if err := checkHistoryLimits(h); err != nil {
		d.fail(err)
		return d.err
	}
	r.History = h
	d.b = d.b[n:]
	return d.err
}

// decodeEventValue decodes an event value; the caller sets Cursor from the
// key. back > 0 says that the event's booking is the one embedded by the
// event back cursors before it, which the caller resolves (bookingBack);
// e.Booking is then nil.
func decodeEventValue(v []byte, in interner) (allocator.Event, uint64, error) {
	e, back, booking, err := decodeEventFields(v, in)
	if err != nil || booking == nil {
		return e, back, err
	}
	if e.Booking, err = decodeBooking(booking, in); err != nil {
		return allocator.Event{}, 0, fmt.Errorf("embedded booking: %w", err)
	}
	return e, back, nil
}

// decodeEventFields decodes an event value but for its embedded booking,
// whose bytes it returns (nil if it embeds none): what the sweep needs.
func decodeEventFields(v []byte, in interner) (e allocator.Event, back uint64, booking []byte, err error) {
	d := decoder{b: v}
	ver := d.byte()
	if d.err == nil && ver != eventVersion && ver != eventVersion1 {
		return e, 0, nil, fmt.Errorf("%w: event version %d", errVersion, ver)
	}
	code := d.byte()
	switch {
	case d.err != nil:
	case code == 0:
		e.Type = in.str(d.text("event type"))
		if d.err == nil && e.Type == "" {
			d.fail(fmt.Errorf("%w: empty event type", errFieldRange))
		}
	case int(code) < len(eventTypeCodes):
		e.Type = eventTypeCodes[code]
	default:
		d.fail(fmt.Errorf("%w: event type code %d", errFieldRange, code))
	}
	e.AtUnixNano = d.varint()
	e.Office = in.str(d.text("event office"))
	through := d.varint()
	if through < -1<<31 || through > 1<<31-1 {
		d.fail(fmt.Errorf("%w: date %d", errFieldRange, through))
	}
	e.Through = allocator.Date(through)
	e.Reason = in.str(d.text("event reason"))
	e.StartUnixNano = d.varint()
	switch d.byte() {
	case 0:
	case 1:
		e.Watch = &allocator.WatchRecord{}
		d.decodeWatchInto(e.Watch, in)
		e.Watch.Active = false // an event carries the watch as it ended
	default:
		d.fail(fmt.Errorf("%w: event watch flag", errFieldRange))
	}
	form := eventBookingNone
	if ver == eventVersion1 {
		// Version 1: the booking's length (0: none), then the booking.
		if n := d.uvarint(); d.err == nil && n > 0 {
			if n != uint64(len(d.b)) {
				return allocator.Event{}, 0, nil, fmt.Errorf("%w: embedded booking length %d, %d bytes left", errTruncated, n, len(d.b))
			}
			form = eventBookingEmbedded
		}
	} else {
		form = d.byte()
	}
	if d.err != nil {
		return allocator.Event{}, 0, nil, d.err
	}
	switch form {
	case eventBookingNone:
	case eventBookingEmbedded:
		booking = v[len(v)-len(d.b):] // the rest of the value, never nil
		d.b = nil
	case eventBookingBack:
		if back = d.uvarint(); d.err == nil && (back < 1 || back > eventBackMax) {
			d.fail(fmt.Errorf("%w: event booking %d events back", errFieldRange, back))
		}
	default:
		d.fail(fmt.Errorf("%w: event booking form %d", errFieldRange, form))
	}
	if err := d.end(); err != nil {
		return allocator.Event{}, 0, nil, err
	}
	return e, back, booking, nil
}

// decodeIdempotency decodes an idempotency value stored under key.
func decodeIdempotency(v []byte, key string) (*allocator.IdempotencyRecord, error) {
	d := decoder{b: v}
	if ver := d.byte(); d.err == nil && ver != idempotencyVersion {
		return nil, fmt.Errorf("%w: idempotency version %d", errVersion, ver)
	}
	r := &allocator.IdempotencyRecord{Key: key}
	copy(r.Fingerprint[:], d.bytes(32))
	r.Status = int(d.uvarintMax(599, "status"))
	r.AtUnixNano = d.varint()
	n := d.uvarintMax(IdempotencyBodyBytesMax, "body length")
	if body := d.bytes(int(n)); len(body) > 0 {
		r.Body = append([]byte(nil), body...)
	}
	if err := d.end(); err != nil {
		return nil, err
	}
	if err := checkIdempotency(r); err != nil {
		return nil, err
	}
	return r, nil
}
