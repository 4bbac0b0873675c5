package allocator

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// An office's agenda: its bookings by date, for the operators' day list
// (Engine.Agenda) and the lookup by booking number (Engine.Numbered).
//
// Each office keeps, per date, the bookings ever placed on that date:
// a new booking is added once committed (and a restored one once
// restored), a rescheduled one is added to its new date. Nothing is
// removed: a booking moved away stays in its old date's list, and a
// reader keeps only the entries whose current record is still at that
// office and date (a moved-back booking is in the list twice; readers
// drop the second). So a list holds at most 1 + max_reschedules entries
// per booking, one pointer each. The entry is added after the commit and
// before the transition's lock bit is cleared: a read racing a new
// booking or a reschedule may miss it, as if it had come just before.
//
// Why not scan the id index for the date: it holds every booking of
// every office, and a day's list would cost all of them. Why not keep the
// list in the day: a day is rebuilt when a layout change or a reopening
// replaces it, and its archived bookings must stay listed.
//
// Cost of a read: the date's entries n (at most the bookings ever placed
// on that date at the office, times 1 + max_reschedules), one record load
// each, and a sort of those that match: O(n log n) per page, with no lock
// held while sorting. Writers take the date's mutex for one append.

// agenda is an office's bookings by date. Safe for concurrent use.
type agenda struct {
	mu   sync.RWMutex
	days map[Date]*agendaDay // guarded by mu; entries are never removed
}

// agendaDay is one date's bookings. Safe for concurrent use.
type agendaDay struct {
	mu   sync.Mutex
	list []*booking // guarded by mu; append-only
}

// add lists b under date. Lock order: a leaf, after every other lock.
func (a *agenda) add(date Date, b *booking) {
	a.mu.RLock()
	d := a.days[date]
	a.mu.RUnlock()
	if d == nil {
		a.mu.Lock()
		if d = a.days[date]; d == nil {
			if a.days == nil {
				a.days = map[Date]*agendaDay{}
			}
			d = &agendaDay{}
			a.days[date] = d
		}
		a.mu.Unlock()
	}
	d.mu.Lock()
	d.list = append(d.list, b)
	d.mu.Unlock()
}

// records returns the current records of the bookings at office on date,
// each once, sorted by window, then start step, then sequence number.
func (a *agenda) records(office string, date Date, keep func(*BookingRecord) bool) []*BookingRecord {
	a.mu.RLock()
	d := a.days[date]
	a.mu.RUnlock()
	if d == nil {
		return nil
	}
	d.mu.Lock()
	list := d.list[:len(d.list):len(d.list)] // append-only: the prefix never changes
	d.mu.Unlock()
	out := make([]*BookingRecord, 0, len(list))
	for _, b := range list {
		if r := b.rec.Load(); r.Office == office && r.Date == date && keep(r) {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(x, y *BookingRecord) int { return AgendaKeyOf(x).compare(AgendaKeyOf(y)) })
	// A booking moved away and back is listed twice: its copies are
	// adjacent with one id.
	return slices.CompactFunc(out, func(x, y *BookingRecord) bool { return x.ID == y.ID })
}

// AgendaKey is a booking's place in its day's agenda: window, then start
// step, then sequence number (unique per office and date). It is the
// agenda's cursor: a page continues after the key of its last booking,
// so bookings that change status or move between pages are neither
// skipped nor repeated by the others.
type AgendaKey struct {
	Window, Step uint16
	Seq          uint32
}

// AgendaKeyOf returns rec's place in its day's agenda.
func AgendaKeyOf(rec *BookingRecord) AgendaKey {
	return AgendaKey{Window: rec.Window, Step: rec.Step, Seq: rec.Seq}
}

func (k AgendaKey) compare(o AgendaKey) int {
	if c := cmp.Compare(k.Window, o.Window); c != 0 {
		return c
	}
	if c := cmp.Compare(k.Step, o.Step); c != 0 {
		return c
	}
	return cmp.Compare(k.Seq, o.Seq)
}

// String renders k as the opaque cursor "window.step.seq".
func (k AgendaKey) String() string {
	return strconv.Itoa(int(k.Window)) + "." + strconv.Itoa(int(k.Step)) + "." + strconv.FormatUint(uint64(k.Seq), 10)
}

// ParseAgendaKey parses a cursor of AgendaKey.String; "" is the start of
// the day (no booking has sequence number 0).
func ParseAgendaKey(s string) (AgendaKey, error) {
	if s == "" {
		return AgendaKey{}, nil
	}
	parts := strings.Split(s, ".")
	if len(parts) == 3 {
		w, err1 := strconv.ParseUint(parts[0], 10, 16)
		st, err2 := strconv.ParseUint(parts[1], 10, 16)
		seq, err3 := strconv.ParseUint(parts[2], 10, 32)
		if err1 == nil && err2 == nil && err3 == nil {
			return AgendaKey{Window: uint16(w), Step: uint16(st), Seq: uint32(seq)}, nil
		}
	}
	return AgendaKey{}, fmt.Errorf("%w: cursor %q is not one this list gave", ErrValidation, s)
}

// AgendaFilter selects bookings of a day. Zero fields select all.
type AgendaFilter struct {
	Status  Status
	Service string
}

// Agenda returns up to limit bookings at office on date matching f, in
// agenda order (AgendaKey), starting after the key after. more reports
// whether bookings follow the last one returned. Archived bookings are
// included. The cost is the section's "cost of a read".
func (e *Engine) Agenda(office string, date Date, f AgendaFilter, after AgendaKey, limit int) (out []Booking, more bool, err error) {
	if limit <= 0 {
		panic("BUG: allocator: Agenda with a limit of " + strconv.Itoa(limit))
	}
	o, err := e.office(office)
	if err != nil {
		return nil, false, err
	}
	recs := o.agenda.records(office, date, func(r *BookingRecord) bool {
		return (f.Status == 0 || r.Status == f.Status) && (f.Service == "" || r.Service == f.Service) &&
			AgendaKeyOf(r).compare(after) > 0
	})
	if len(recs) > limit {
		recs, more = recs[:limit], true
	}
	c := o.clock(o.lay.Load(), date)
	out = make([]Booking, len(recs))
	for i, r := range recs {
		out[i] = viewOf(&c, r)
	}
	return out, more, nil
}

// ParseNumber splits a booking number OFFICE-YYYYMMDD-NNNN (bookingNumber)
// into its office id, date and sequence number. It checks the shape only;
// the office may not exist.
func ParseNumber(number string) (office string, date Date, seq uint32, err error) {
	bad := func() (string, Date, uint32, error) {
		return "", 0, 0, fmt.Errorf("%w: number %q is not OFFICE-YYYYMMDD-NNNN", ErrValidation, number)
	}
	rest, seqText, ok := cutLast(number, '-')
	if !ok || len(seqText) < 4 || (len(seqText) > 4 && seqText[0] == '0') {
		return bad()
	}
	officeText, dateText, ok := cutLast(rest, '-')
	if !ok || len(dateText) != 8 || officeText == "" {
		return bad()
	}
	n, err := strconv.ParseUint(seqText, 10, 32)
	if err != nil || n == 0 {
		return bad()
	}
	date, err = ParseDate(dateText[:4] + "-" + dateText[4:6] + "-" + dateText[6:])
	if err != nil {
		return bad()
	}
	// Office ids are lower case (idPattern); numbers show them in upper.
	office = strings.ToLower(officeText)
	if !idPattern.MatchString(office) || strings.ToUpper(office) != officeText {
		return bad()
	}
	return office, date, uint32(n), nil
}

func cutLast(s string, sep byte) (before, after string, ok bool) {
	i := strings.LastIndexByte(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+1:], true
}

// Numbered returns the bookings whose number is (office, date, seq): one,
// or none. The cost is the agenda's of that date.
func (e *Engine) Numbered(office string, date Date, seq uint32) []Booking {
	o, err := e.office(office)
	if err != nil {
		return nil
	}
	recs := o.agenda.records(office, date, func(r *BookingRecord) bool { return r.Seq == seq })
	if len(recs) == 0 {
		return nil
	}
	c := o.clock(o.lay.Load(), date)
	out := make([]Booking, len(recs))
	for i, r := range recs {
		out[i] = viewOf(&c, r)
	}
	return out
}
