package allocator

import (
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"sync"
)

// The durability seam.
//
// Every state change leaves the engine as one Change, handed to
// Journal.Commit before anyone is told it happened. The engine follows
// DESIGN invariant 3 around that call:
//
//	hold:    claim bits (CAS) → Commit → publish booking → acknowledge
//	release: status CAS (lock) → Commit → free bits → unlock → acknowledge
//	abort:   Commit failed → give the bits back / restore the status,
//	         mark the engine degraded, return the error
//
// So a seat freed by cancel or expiry is never claimable before the release
// is durable (the bits are still 0 while Commit runs), and a claim that fails
// to persist never becomes visible (the booking is published after Commit).
//
// A Change carries the full new state of every booking it touches, not a
// delta: recovery loads the latest record per booking and needs nothing
// else. Records are immutable once handed to Commit; the journal may keep
// references to them.

// ID is a booking id: 128 random bits, written as 22 URL-safe characters.
type ID [16]byte

// String returns the URL-safe form.
func (id ID) String() string { return base64.RawURLEncoding.EncodeToString(id[:]) }

// ParseID reads the URL-safe form.
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != 22 {
		return id, fmt.Errorf("%w: booking id %q is not 22 URL-safe characters", ErrValidation, s)
	}
	n, err := base64.RawURLEncoding.Decode(id[:], []byte(s))
	if err != nil || n != 16 {
		return id, fmt.Errorf("%w: booking id %q is not 22 URL-safe characters", ErrValidation, s)
	}
	return id, nil
}

// Transition is one entry of a booking's history.
type Transition struct {
	AtUnixNano int64
	Actor      string // API key name, "system", or the applicant's portal
	Reason     string
	Status     Status
	// Penalty marks a transition that counts towards the applicant's cancel
	// penalty (an applicant's cancel of a confirmed booking, a no-show).
	// Recovery rebuilds blocks from these marks.
	Penalty bool
}

// BookingRecord is the durable state of one booking. Start and end times are
// derived from Date, Step and the office layout; they are not stored. The
// engine keeps one per booking: its fields are ordered to fit 112 bytes.
type BookingRecord struct {
	ID        ID
	Office    string
	Service   string
	Applicant string
	Date      Date
	Step      uint16 // the start's step of Date: its place among the date's seats in order of time (dayclock.go)
	Slots     uint16 // run length in steps
	Window    uint16 // 0-based desk index
	Status    Status
	// Reschedules counts reschedules done.
	Reschedules uint8
	Seq         uint32 // per (office, date) serial, tail of the human number
	// HoldExpiresUnixNano is when a held booking expires; 0 otherwise.
	HoldExpiresUnixNano int64
	// RemindedUnixNano is the start time whose reminder.due was emitted; 0 if none.
	RemindedUnixNano int64
	History          History
}

// Check asserts the record's own consistency. The journal calls it right
// before writing and right after reading a record.
func (r *BookingRecord) Check() error {
	switch {
	case !r.Status.Valid():
		return fmt.Errorf("booking %s: invalid status %d", r.ID, r.Status)
	case r.Office == "" || r.Service == "" || r.Applicant == "":
		return fmt.Errorf("booking %s: office, service and applicant are required", r.ID)
	case r.Slots == 0:
		return fmt.Errorf("booking %s: zero-length run", r.ID)
	case r.History == "":
		return fmt.Errorf("booking %s: empty history", r.ID)
	}
	last, err := r.History.checkLast()
	switch {
	case err != nil:
		return fmt.Errorf("booking %s: %w", r.ID, err)
	case last != r.Status:
		return fmt.Errorf("booking %s: status %s differs from last history entry %s", r.ID, r.Status, last)
	case r.Status == StatusHeld && r.HoldExpiresUnixNano == 0:
		return fmt.Errorf("booking %s: held without expiry", r.ID)
	}
	return nil
}

// OfficeRecord is the durable state of one office.
type OfficeRecord struct {
	Config          OfficeConfig
	ReleasedThrough Date
}

// Event is one entry of the outbox. Cursor is assigned by the journal in
// commit order.
type Event struct {
	Cursor     uint64
	Type       string
	AtUnixNano int64
	Office     string
	Booking    *BookingRecord // booking.*, reminder.due, watch.matched
	Through    Date           // slots.released
	Reason     string
	// Watch and StartUnixNano describe a watch.matched: the watch that was
	// served and the start it was offered (Booking is set when it was
	// held for the applicant).
	Watch         *WatchRecord
	StartUnixNano int64
}

// IdempotencyRecord is the first response to a request that carried an
// Idempotency-Key. The edge builds it; the journal stores it in the same
// atomic write as the change it describes.
type IdempotencyRecord struct {
	Key         string // namespaced by the caller (API key name + header value)
	Fingerprint [32]byte
	Status      int
	Body        []byte
	AtUnixNano  int64
	// Office, if set, is the office the request was about, as the edge
	// read it from the request: a response stored without a change (a
	// refusal) is then listed with the office, and a move of the office
	// between a cluster's groups takes it along. A response stored with
	// a change is the change's office's whatever this says. Not part of
	// the stored answer: a record read back has none.
	Office string
}

// WatchRecord is the durable state of one watch ("notify me when a seat
// frees"). Exactly one of Office and Region is set.
type WatchRecord struct {
	ID              ID
	Applicant       string
	Service         string
	Office          string
	Region          string
	From, To        Date
	AutoHold        bool
	CreatedUnixNano int64
	// Active is false once the watch matched or was deleted; the journal
	// then removes it.
	Active bool
}

// SeqMark records that booking number Seq was issued for (Office, Date).
// A reschedule writes one for the date it leaves, because the booking's
// record then carries its new number and recovery would otherwise restart
// that date's counter below a number already given out.
type SeqMark struct {
	Office string
	Date   Date
	Seq    uint32
}

// Change is one atomic, durable state change.
type Change struct {
	SeqMarks    []SeqMark
	Watches     []*WatchRecord
	Bookings    []*BookingRecord
	Office      *OfficeRecord
	Events      []Event
	Idempotency *IdempotencyRecord
}

// bookingChange is a Change of one booking with room for two events, in
// one allocation: every hold and every transition makes one. They are
// pooled: a journal keeps nothing of a Change after Commit returns.
type bookingChange struct {
	Change
	bookings [1]*BookingRecord
	events   [2]Event
}

var bookingChangePool = sync.Pool{New: func() any { return new(bookingChange) }}

// newBookingChange returns a Change of rec with no events yet; appending
// up to two stays in the same allocation. Give it back with release once
// the commit returned.
func newBookingChange(rec *BookingRecord) *bookingChange {
	bc := bookingChangePool.Get().(*bookingChange)
	bc.bookings[0] = rec
	bc.Bookings = bc.bookings[:]
	bc.Events = bc.events[:0]
	return bc
}

// release clears bc (it must not keep records alive) and pools it.
func (bc *bookingChange) release() {
	*bc = bookingChange{}
	bookingChangePool.Put(bc)
}

// Empty reports whether c carries nothing to persist.
func (c *Change) Empty() bool {
	return c == nil || (len(c.Watches) == 0 && len(c.SeqMarks) == 0 && len(c.Bookings) == 0 &&
		c.Office == nil && len(c.Events) == 0 && c.Idempotency == nil)
}

// Journal persists changes. Commit must not return nil before the change is
// on stable storage; it is called concurrently from many goroutines and
// should let them share syncs (group commit). Implementations must be safe
// for concurrent use. Commit may set the events' cursors, but must not
// keep c, its slices or its events once it returns: the engine reuses
// them. The records c points to are immutable and may be kept.
type Journal interface {
	Commit(c *Change) error
}

// Meta says who asks for a change and why, and lets the edge attach its
// idempotent response to the change before it is committed.
type Meta struct {
	Actor  string
	Reason string
	// Attach, if set, is called once with the change right before Commit
	// (and only when there is a change to commit).
	Attach func(c *Change)
	// Waiting, if set, is called at most once when the operation is about
	// to wait rather than work: a hold queued for a release lottery's draw.
	// The edge frees its in-flight slot then; the lottery bounds its own
	// waiters (lottery invariant F4), so they need not count against the
	// requests in the engine, and a crowd larger than the edge's bound
	// still all gets into the draw.
	Waiting func()
}

// MemJournal keeps committed changes in memory. For tests and for running
// the engine without durability. Safe for concurrent use.
type MemJournal struct {
	mu      sync.Mutex
	cursor  uint64
	changes []*Change
	// Fail, if set, is called before each commit; a non-nil result fails it.
	Fail func(c *Change) error
	// Hook, if set, runs inside Commit after the change is stored; tests use
	// it to block a commit in flight.
	Hook func(c *Change)
}

// ErrJournalClosed is returned by journals that no longer accept commits.
var ErrJournalClosed = errors.New("allocator: journal closed")

// Commit stores c and numbers its events.
func (j *MemJournal) Commit(c *Change) error {
	if j.Fail != nil {
		if err := j.Fail(c); err != nil {
			return err
		}
	}
	j.mu.Lock()
	for i := range c.Events {
		j.cursor++
		c.Events[i].Cursor = j.cursor
	}
	kept := *c // the engine reuses c: keep a copy
	kept.SeqMarks, kept.Watches = slices.Clone(c.SeqMarks), slices.Clone(c.Watches)
	kept.Bookings, kept.Events = slices.Clone(c.Bookings), slices.Clone(c.Events)
	j.changes = append(j.changes, &kept)
	j.mu.Unlock()
	if j.Hook != nil {
		j.Hook(&kept)
	}
	return nil
}

// Changes returns the committed changes in commit order.
func (j *MemJournal) Changes() []*Change {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]*Change(nil), j.changes...)
}

// Latest returns the last committed record of every booking and office,
// as a recovery would read them.
func (j *MemJournal) Latest() (offices []OfficeRecord, bookings []*BookingRecord) {
	j.mu.Lock()
	defer j.mu.Unlock()
	om := map[string]int{}
	bm := map[ID]int{}
	for _, c := range j.changes {
		if c.Office != nil {
			if i, ok := om[c.Office.Config.ID]; ok {
				offices[i] = *c.Office
			} else {
				om[c.Office.Config.ID] = len(offices)
				offices = append(offices, *c.Office)
			}
		}
		for _, b := range c.Bookings {
			if i, ok := bm[b.ID]; ok {
				bookings[i] = b
			} else {
				bm[b.ID] = len(bookings)
				bookings = append(bookings, b)
			}
		}
	}
	return offices, bookings
}

// SeqMarks returns every number mark committed so far.
func (j *MemJournal) SeqMarks() []SeqMark {
	j.mu.Lock()
	defer j.mu.Unlock()
	var out []SeqMark
	for _, c := range j.changes {
		out = append(out, c.SeqMarks...)
	}
	return out
}

// ActiveWatches returns the watches active after the last commit, as a
// recovery would read them.
func (j *MemJournal) ActiveWatches() []*WatchRecord {
	j.mu.Lock()
	defer j.mu.Unlock()
	m := map[ID]*WatchRecord{}
	var order []ID
	for _, c := range j.changes {
		for _, w := range c.Watches {
			if _, seen := m[w.ID]; !seen {
				order = append(order, w.ID)
			}
			m[w.ID] = w
		}
	}
	var out []*WatchRecord
	for _, id := range order {
		if m[id].Active {
			out = append(out, m[id])
		}
	}
	return out
}
