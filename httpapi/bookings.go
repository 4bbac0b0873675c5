package httpapi

import (
	"strconv"
	"time"

	"slotd/allocator"
	"slotd/api"
)

// Booking endpoints. Portal routes act for the applicant named in the body
// or ?applicant=, in the key's namespace (namespace.go); a booking of
// another applicant or namespace answers 404, as if it did not exist.
// Operator routes act at the key's offices only, in every namespace.

// Limits of "my bookings".
const (
	bookingsPageDefault = 50
	bookingsPageMax     = 200
)

type holdBody struct {
	Office        string `json:"office"`
	Service       string `json:"service"`
	Applicant     string `json:"applicant"`
	Start         string `json:"start"`
	EarliestAfter string `json:"earliest_after"`
	Confirm       bool   `json:"confirm"`
}

// renderBooking is the Attach renderer of a change that carries the
// booking as its first record.
func (s *Server) renderBooking(status int) func(c *allocator.Change) (int, []byte) {
	return func(c *allocator.Change) (int, []byte) {
		if len(c.Bookings) == 0 {
			panic("BUG: httpapi: a booking change without a booking")
		}
		v, _ := s.engine.View(c.Bookings[0])
		return status, appendBooking(nil, &v)
	}
}

func bookingReply(status int, v *allocator.Booking) func() (int, []byte) {
	return func() (int, []byte) { return status, appendBooking(nil, v) }
}

// hold: POST /v1/bookings.
func (s *Server) hold(r *request) {
	if !newQuery(r, "applicant").ok() {
		return
	}
	if r.holdErr != nil {
		r.invalid("%v", r.holdErr)
		return
	}
	body := r.hold
	applicant, ok := r.applicant(body.Applicant, true)
	if !ok {
		return
	}
	if applicant, ok = r.engineApplicant(applicant); !ok {
		return
	}
	req := allocator.HoldRequest{Office: body.Office, Service: body.Service, Applicant: applicant, Confirm: body.Confirm}
	switch {
	case body.Office == "":
		r.invalid("office is required")
		return
	case body.Service == "":
		r.invalid("service is required")
		return
	case (body.Start == "") == (body.EarliestAfter == ""):
		r.invalid("give exactly one of start (an exact start) and earliest_after (the first free start from then on)")
		return
	case len(body.Office) > idBytesMax || len(body.Service) > idBytesMax:
		r.invalid("office and service ids are at most %d bytes", idBytesMax)
		return
	case r.key.actsAtOffices() && !r.atOffice(body.Office, "book for applicants"):
		return
	}
	r.aboutOffice(body.Office)
	var err error
	var wanted time.Time
	if body.Start != "" {
		if req.Start, err = parseTime("start", body.Start); err != nil {
			r.invalid("%v", err)
			return
		}
		wanted = req.Start
	} else {
		if req.EarliestAfter, err = parseTime("earliest_after", body.EarliestAfter); err != nil {
			r.invalid("%v", err)
			return
		}
		wanted = req.EarliestAfter
	}
	r.alternatives = func() []allocator.Opening {
		return s.engine.Alternatives(r.now, req.Office, req.Service, wanted, s.cfg.AlternativesMax)
	}
	meta := r.meta("", s.renderBooking(201))
	meta.Waiting = r.freeSlot // waiting for a lottery draw is not work in the engine
	v, err := s.engine.Hold(r.now, req, meta)
	r.answer(err, bookingReply(201, &v))
}

type applicantBody struct {
	Applicant string `json:"applicant"`
	Reason    string `json:"reason"`
}

// applicantAction runs an applicant's transition (confirm, cancel).
func (s *Server) applicantAction(r *request, act func(e *allocator.Engine, now time.Time, id allocator.ID, applicant string, meta allocator.Meta) (allocator.Booking, error)) {
	id, ok := r.bookingID()
	if !ok {
		return
	}
	var body applicantBody
	if !r.decode(&body) {
		return
	}
	applicant, ok := r.applicant(body.Applicant, true)
	if !ok {
		return
	}
	if applicant, ok = r.engineApplicant(applicant); !ok {
		return
	}
	if !r.reasonOK(body.Reason) {
		return
	}
	if !s.walkInBooking(r, id, applicant) {
		return
	}
	v, err := act(s.engine, r.now, id, applicant, r.meta(body.Reason, s.renderBooking(200)))
	r.answer(err, bookingReply(200, &v))
}

func (s *Server) confirm(r *request) { s.applicantAction(r, (*allocator.Engine).Confirm) }
func (s *Server) cancel(r *request)  { s.applicantAction(r, (*allocator.Engine).Cancel) }

type rescheduleBody struct {
	Applicant string `json:"applicant"`
	Start     string `json:"start"`
	Office    string `json:"office"`
	Reason    string `json:"reason"`
}

// reschedule: POST /v1/bookings/{id}/reschedule.
func (s *Server) reschedule(r *request) {
	id, ok := r.bookingID()
	if !ok {
		return
	}
	var body rescheduleBody
	if !r.decode(&body) {
		return
	}
	applicant, ok := r.applicant(body.Applicant, true)
	if !ok {
		return
	}
	if applicant, ok = r.engineApplicant(applicant); !ok {
		return
	}
	start, ok := r.requiredTime("start", body.Start)
	if !ok {
		return
	}
	if !r.reasonOK(body.Reason) {
		return
	}
	if len(body.Office) > idBytesMax {
		r.invalid("office is at most %d bytes", idBytesMax)
		return
	}
	if !s.walkInBooking(r, id, applicant) {
		return
	}
	if body.Office != "" && r.key.actsAtOffices() && !r.atOffice(body.Office, "book for applicants") {
		return
	}
	r.alternatives = func() []allocator.Opening {
		cur, err := s.engine.Get(id, applicant)
		if err != nil {
			return nil
		}
		office := body.Office
		if office == "" {
			office = cur.Office
		}
		return s.engine.Alternatives(r.now, office, cur.Service, start, s.cfg.AlternativesMax)
	}
	req := allocator.RescheduleRequest{Applicant: applicant, Office: body.Office, Start: start}
	v, err := s.engine.Reschedule(r.now, id, req, r.meta(body.Reason, s.renderBooking(200)))
	r.answer(err, bookingReply(200, &v))
}

type operatorBody struct {
	Reason string `json:"reason"`
}

type checkInBody struct {
	Ticket string `json:"ticket"`
	Reason string `json:"reason"`
}

// operatorBooking loads a booking for an operator action and checks the
// key's office list. The booking may move to another office between the
// check and the action only by a reschedule, which the applicant asks for
// at least reschedule_cutoff ahead; operator actions happen on the day.
func (s *Server) operatorBooking(r *request) (allocator.ID, allocator.Booking, bool) {
	id, ok := r.bookingID()
	if !ok {
		return id, allocator.Booking{}, false
	}
	v, err := s.engine.Get(id, "")
	if err != nil {
		r.failErr(err)
		return id, v, false
	}
	if !r.atOffice(v.Office, "act") {
		return id, v, false
	}
	return id, v, true
}

// operatorAction builds the handler of an operator transition.
func operatorAction(act func(e *allocator.Engine, now time.Time, id allocator.ID, meta allocator.Meta) (allocator.Booking, error)) func(*Server, *request) {
	return func(s *Server, r *request) { s.operatorTransition(r, false, act) }
}

// reject: POST /v1/bookings/{id}/reject {"reason"}: the office refuses a
// booking awaiting approval and says why, so the reason is required.
func (s *Server) reject(r *request) { s.operatorTransition(r, true, (*allocator.Engine).Reject) }

// operatorTransition runs an operator's transition of the booking of the
// path at one of the key's offices; needReason refuses a body without a
// reason.
func (s *Server) operatorTransition(r *request, needReason bool,
	act func(e *allocator.Engine, now time.Time, id allocator.ID, meta allocator.Meta) (allocator.Booking, error)) {
	if !newQuery(r).ok() {
		return
	}
	var body operatorBody
	if !r.decode(&body) {
		return
	}
	if !r.reasonOK(body.Reason) {
		return
	}
	if needReason && body.Reason == "" {
		r.invalid("reason is required: the applicant is told why")
		return
	}
	id, _, ok := s.operatorBooking(r)
	if !ok {
		return
	}
	v, err := act(s.engine, r.now, id, r.meta(body.Reason, s.renderBooking(200)))
	r.answer(err, bookingReply(200, &v))
}

// checkIn: POST /v1/bookings/{id}/check-in {"ticket"}: the ticket's
// signature, booking and start are verified before the transition.
func (s *Server) checkIn(r *request) {
	if !newQuery(r).ok() {
		return
	}
	var body checkInBody
	if !r.decode(&body) {
		return
	}
	if body.Ticket == "" {
		r.invalid("ticket is required: the qr token of GET /v1/bookings/{id}/ticket")
		return
	}
	if !r.reasonOK(body.Reason) {
		return
	}
	id, cur, ok := s.operatorBooking(r)
	if !ok {
		return
	}
	if err := verifyTicket(s.cfg.Secret, body.Ticket, &cur); err != nil {
		r.fail(problem{code: api.CodeTicketInvalid, detail: err.Error()})
		return
	}
	v, err := s.engine.CheckIn(r.now, id, r.meta(body.Reason, s.renderBooking(200)))
	r.answer(err, bookingReply(200, &v))
}

// readableBooking loads a booking for a read: a portal key acting for the
// applicant of its namespace, or an operator key, without an applicant, at
// the booking's office. An applicant given names one of the key's
// namespace, also for an operator key.
func (s *Server) readableBooking(r *request) (allocator.Booking, bool) {
	id, ok := r.bookingID()
	if !ok {
		return allocator.Booking{}, false
	}
	q := newQuery(r, "applicant")
	applicant := q.str("applicant", applicantBytesMax)
	if !q.ok() {
		return allocator.Booking{}, false
	}
	if applicant == "" && !r.key.operator {
		r.invalid("applicant is required (?applicant=)")
		return allocator.Booking{}, false
	}
	if applicant != "" {
		if applicant, ok = r.engineApplicant(applicant); !ok {
			return allocator.Booking{}, false
		}
	}
	v, err := s.engine.Get(id, applicant)
	if err != nil {
		r.failErr(err)
		return v, false
	}
	if (applicant == "" || !r.key.portal) && !r.atOffice(v.Office, "read bookings") {
		return v, false
	}
	return v, true
}

// getBooking: GET /v1/bookings/{id}.
func (s *Server) getBooking(r *request) {
	v, ok := s.readableBooking(r)
	if !ok {
		return
	}
	r.reply(200, appendBooking(nil, &v))
}

// listBookings: GET /v1/bookings — "my bookings", archive included, in
// creation order. next_cursor is "" on the last page.
func (s *Server) listBookings(r *request) {
	if r.ctx.QueryArgs().Has("number") {
		s.bookingByNumber(r)
		return
	}
	if !r.key.portal {
		r.fail(problem{code: api.CodeForbidden, detail: "key " + strconv.Quote(r.key.name) + " lists bookings by number (?number=) or by office and day (" + RouteAgenda + "), not by applicant"})
		return
	}
	q := newQuery(r, "applicant", "status", "office", "from", "to", "cursor", "limit")
	applicant := q.str("applicant", applicantBytesMax)
	statusName := q.str("status", 32)
	office := q.str("office", idBytesMax)
	from, _ := q.date("from")
	to, _ := q.date("to")
	cursor := q.int("cursor", 0, 0, 1<<30)
	limit := q.int("limit", bookingsPageDefault, 1, bookingsPageMax)
	if !q.ok() {
		return
	}
	if applicant == "" {
		r.invalid("applicant is required (?applicant=)")
		return
	}
	applicant, ok := r.engineApplicant(applicant)
	if !ok {
		return
	}
	st, ok := r.status(statusName)
	if !ok {
		return
	}
	f := allocator.ListFilter{Status: st, Office: office, From: from, To: to}
	if to != 0 && from != 0 && to < from {
		r.invalid("to %s is before from %s", to, from)
		return
	}
	list, next := s.engine.List(applicant, f, cursor, limit)
	nextCursor := ""
	if next >= 0 {
		nextCursor = strconv.Itoa(next)
	}
	r.reply(200, appendBookingList(make([]byte, 0, 512*len(list)+64), list, nextCursor))
}

// decode decodes the body strictly and rejects query parameters other
// than applicant; on failure it answers 400 and returns false.
func (r *request) decode(v any) bool {
	if !newQuery(r, "applicant").ok() {
		return false
	}
	if err := decodeBody(r.ctx.PostBody(), v); err != nil {
		r.invalid("%v", err)
		return false
	}
	return true
}
