package httpapi

import (
	"strconv"
	"strings"

	"slotd/allocator"
	"slotd/api"
)

// The office's side of the API: the day's agenda, the lookup by booking
// number, and the office check of walk-in and phone bookings that an
// operator key makes for an applicant (namespace.go, "Walk-ins").

// Limits of the agenda.
const (
	agendaPageDefault = 50
	agendaPageMax     = 200
	// agendaCursorBytesMax bounds ?cursor=: "window.step.seq" of uint16,
	// uint16 and uint32 is at most 22 bytes.
	agendaCursorBytesMax = 32
	// numberBytesMax bounds ?number=: an office id, a date, a sequence.
	numberBytesMax = idBytesMax + 1 + 8 + 1 + 10
)

// atOffice reports whether the key may act at office; otherwise it
// answers 403 and returns false. what says what the key tried.
func (r *request) atOffice(office, what string) bool {
	if r.key.office(office) {
		return true
	}
	r.fail(problem{code: api.CodeForbidden, detail: "key " + strconv.Quote(r.key.name) + " may not " + what + " at office " + strconv.Quote(office)})
	return false
}

// actsAtOffices reports whether the key's applicant actions are limited
// to its offices: a key without the portal scope books for walk-in and
// phone applicants as an operator of its offices.
func (p *principal) actsAtOffices() bool { return !p.portal }

// walkInBooking checks that an operator key acting for applicant (an
// engine id) reaches the booking id at one of its offices; a portal key
// passes. A booking of another applicant or namespace answers 404 as for
// a portal key, one at another office 403.
func (s *Server) walkInBooking(r *request, id allocator.ID, applicant string) bool {
	if !r.key.actsAtOffices() {
		return true
	}
	v, err := s.engine.Get(id, applicant)
	if err != nil {
		r.failErr(err)
		return false
	}
	return r.atOffice(v.Office, "act for applicants")
}

// statusNames lists every status's name, for the refusal of an unknown one.
var statusNames = func() string {
	var names []string
	for s := allocator.StatusHeld; s.Valid(); s++ {
		names = append(names, s.String())
	}
	return strings.Join(names, ", ")
}()

// status parses ?status=; "" is every status.
func (r *request) status(name string) (allocator.Status, bool) {
	if name == "" {
		return 0, true
	}
	st, ok := allocator.ParseStatus(name)
	if !ok {
		r.invalid("status %q is not one of %s", name, statusNames)
	}
	return st, ok
}

// agenda: GET /v1/offices/{office}/days/{date}/bookings — the bookings of
// a day at an office, archive included, by window then start.
func (s *Server) agenda(r *request) {
	q := newQuery(r, "status", "service", "cursor", "limit")
	statusName := q.str("status", 32)
	service := q.str("service", idBytesMax)
	cursor := q.str("cursor", agendaCursorBytesMax)
	limit := q.int("limit", agendaPageDefault, 1, agendaPageMax)
	if !q.ok() {
		return
	}
	office := r.param(0)
	if !r.atOffice(office, "read the agenda") {
		return
	}
	date, err := parseDate("date", r.param(1))
	if err != nil {
		r.invalid("%v", err)
		return
	}
	st, ok := r.status(statusName)
	if !ok {
		return
	}
	after, err := allocator.ParseAgendaKey(cursor)
	if err != nil {
		r.failErr(err)
		return
	}
	list, more, err := s.engine.Agenda(office, date, allocator.AgendaFilter{Status: st, Service: service}, after, limit)
	if err != nil {
		r.failErr(err)
		return
	}
	next := ""
	if more {
		next = allocator.AgendaKeyOf(&list[len(list)-1].BookingRecord).String()
	}
	r.reply(200, appendBookingList(nil, list, next))
}

// bookingByNumber: GET /v1/bookings?number= — the booking with that
// number, as a list of one or none, like "my bookings" filtered by it. An
// operator key reads any namespace's booking at its offices (403 for a
// number of another office, known from the number alone, whether or not
// it exists); a portal key names its applicant and finds only that
// applicant's booking in its namespace: another's answers an empty list,
// exactly as a number no booking has.
func (s *Server) bookingByNumber(r *request) {
	q := newQuery(r, "number", "applicant")
	number := q.str("number", numberBytesMax)
	applicant := q.str("applicant", applicantBytesMax)
	if !q.ok() {
		return
	}
	office, date, seq, err := allocator.ParseNumber(number)
	if err != nil {
		r.failErr(err)
		return
	}
	if applicant == "" && !r.key.operator {
		r.invalid("applicant is required (?applicant=) to look up a number with a portal key")
		return
	}
	if (applicant == "" || !r.key.portal) && !r.atOffice(office, "read bookings") {
		return
	}
	if applicant != "" {
		var ok bool
		if applicant, ok = r.engineApplicant(applicant); !ok {
			return
		}
	}
	list := s.engine.Numbered(office, date, seq)
	if applicant != "" {
		mine := list[:0]
		for _, b := range list {
			if b.Applicant == applicant {
				mine = append(mine, b)
			}
		}
		list = mine
	}
	r.reply(200, appendBookingList(nil, list, ""))
}

// appendBookingList renders {"bookings":[…],"next_cursor":next}.
func appendBookingList(b []byte, list []allocator.Booking, next string) []byte {
	b = append(b, `{"bookings":[`...)
	for i := range list {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendBooking(b, &list[i])
	}
	b = append(b, `],"next_cursor":`...)
	b = appendString(b, next)
	return append(b, '}')
}
