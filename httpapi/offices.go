package httpapi

import (
	"strconv"

	"slotd/allocator"
	"slotd/api"
)

// Office administration: admin scope, at the key's offices.

// officeAllowed answers 403 unless the key may administer office.
func (r *request) officeAllowed(office string) bool {
	if !r.key.office(office) {
		r.fail(problem{code: api.CodeForbidden, detail: "key " + strconv.Quote(r.key.name) + " may not administer office " + strconv.Quote(office)})
		return false
	}
	return true
}

// getOffice: GET /v1/offices/{office} → the config and released_through.
func (s *Server) getOffice(r *request) {
	if !newQuery(r).ok() {
		return
	}
	rec, err := s.engine.Office(r.param(0))
	if err != nil {
		r.failErr(err)
		return
	}
	r.reply(200, appendOfficeRecord(nil, &rec.Config, rec.ReleasedThrough))
}

// putOffice: PUT /v1/offices/{office} creates (201) or replaces (200) an
// office config. The body's id, when given, must be the path's. PUT is
// idempotent by itself; it takes no Idempotency-Key.
func (s *Server) putOffice(r *request) {
	if !newQuery(r).ok() {
		return
	}
	id := r.param(0)
	if !r.officeAllowed(id) {
		return
	}
	cfg, err := allocator.DecodeOfficeConfig(r.ctx.PostBody())
	if err != nil {
		r.failErr(err)
		return
	}
	switch {
	case cfg.ID == "":
		cfg.ID = id
	case cfg.ID != id:
		r.invalid("the body's id %q differs from the path's %q", cfg.ID, id)
		return
	}
	created, err := s.engine.PutOffice(r.now, cfg, r.meta("", nil))
	if err != nil {
		r.failErr(err)
		return
	}
	rec, err := s.engine.Office(id)
	if err != nil {
		r.failErr(err)
		return
	}
	status := 200
	if created {
		status = 201
	}
	r.reply(status, appendOfficeRecord(nil, &rec.Config, rec.ReleasedThrough))
}

type releaseBody struct {
	Through string `json:"through"`
	Reason  string `json:"reason"`
}

func appendRelease(office string, through allocator.Date) []byte {
	b := append(make([]byte, 0, 64), `{"office":`...)
	b = appendString(b, office)
	b = append(b, `,"released_through":"`...)
	b = append(b, through.String()...)
	return append(b, `"}`...)
}

// release: POST /v1/offices/{office}/release {"through"} moves
// released_through forward (a special release). An earlier date changes
// nothing and answers the current released_through.
func (s *Server) release(r *request) {
	var body releaseBody
	if !r.decodeAdmin(&body) {
		return
	}
	office, through, ok := r.officeDate("through", body.Through, body.Reason)
	if !ok {
		return
	}
	r.aboutOffice(office)
	render := func(c *allocator.Change) (int, []byte) {
		return 200, appendRelease(office, c.Office.ReleasedThrough)
	}
	got, err := s.engine.Release(r.now, office, through, r.meta(body.Reason, render))
	r.answer(err, func() (int, []byte) { return 200, appendRelease(office, got) })
}

type closureBody struct {
	Date   string `json:"date"`
	Reason string `json:"reason"`
}

func appendClosure(office string, date allocator.Date, cancelled int) []byte {
	b := append(make([]byte, 0, 80), `{"office":`...)
	b = appendString(b, office)
	b = append(b, `,"date":"`...)
	b = append(b, date.String()...)
	b = append(b, `","cancelled":`...)
	b = strconv.AppendInt(b, int64(cancelled), 10)
	return append(b, '}')
}

// closure: POST /v1/offices/{office}/closures {"date","reason"} closes a
// date: its active bookings are cancelled (each with a booking.cancelled
// event) and the answer counts them. Closing a closed date changes nothing.
func (s *Server) closure(r *request) {
	var body closureBody
	if !r.decodeAdmin(&body) {
		return
	}
	office, date, ok := r.officeDate("date", body.Date, body.Reason)
	if !ok {
		return
	}
	r.aboutOffice(office)
	render := func(c *allocator.Change) (int, []byte) {
		return 200, appendClosure(office, date, len(c.Bookings))
	}
	cancelled, err := s.engine.CloseDate(r.now, office, date, r.meta(body.Reason, render))
	r.answer(err, func() (int, []byte) { return 200, appendClosure(office, date, len(cancelled)) })
}

// decodeAdmin decodes an admin body strictly; no query parameters.
func (r *request) decodeAdmin(v any) bool {
	if !newQuery(r).ok() {
		return false
	}
	if err := decodeBody(r.ctx.PostBody(), v); err != nil {
		r.invalid("%v", err)
		return false
	}
	return true
}

// officeDate checks the parts an administrative action on one date of the
// path's office shares: the required date field, the reason, and that the
// key may act on the office. It answers the refusal itself.
func (r *request) officeDate(field, value, reason string) (string, allocator.Date, bool) {
	d, ok := r.requiredDate(field, value)
	if !ok || !r.reasonOK(reason) {
		return "", 0, false
	}
	office := r.param(0)
	if !r.officeAllowed(office) {
		return "", 0, false
	}
	return office, d, true
}
