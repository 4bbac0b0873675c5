package httpapi

import (
	"bytes"
	"time"

	"slotd/allocator"
	"slotd/api"
)

// receiptPDF: GET /v1/bookings/{id}/receipt.pdf → a printable A5 record
// of a cancelled booking: the office, the service, the number, the start
// it had, and when, by whom and why it was cancelled (the history's cancel
// entry). An applicant keeps it as proof the appointment was given up, and
// an office hands it over at the desk. Only a cancelled booking has one:
// an expired hold was never an appointment, and a no-show was not given up.
// Its access is the ticket's (readableBooking).
func (s *Server) receiptPDF(r *request) {
	v, ok := s.readableBooking(r)
	if !ok {
		return
	}
	if v.Status != allocator.StatusCancelled {
		r.fail(problem{code: api.CodeInvalidTransition, detail: "a receipt exists for cancelled bookings only; this one is " + v.Status.String()})
		return
	}
	office, err := s.engine.Office(v.Office)
	if err != nil {
		r.failErr(err)
		return
	}
	pdf, err := renderReceiptPDF(&v, &office.Config, r.languages(), r.now)
	if err != nil {
		panic("BUG: httpapi: cannot render a receipt PDF: " + err.Error())
	}
	r.ctx.SetStatusCode(200)
	r.ctx.SetContentType("application/pdf")
	r.ctx.Response.Header.Set("Content-Disposition", `inline; filename="`+v.Number+`-cancelled.pdf"`)
	r.ctx.Response.Header.Set("Cache-Control", "private, no-store")
	r.ctx.SetBody(pdf)
}

// actorNames are how the receipt names the actors that are not a key.
var actorNames = map[string]string{
	"system": "система",
}

// renderReceiptPDF lays the receipt out, the service named for a reader
// of langs; v must be cancelled. now stamps
// the document, as for the ticket.
func renderReceiptPDF(v *allocator.Booking, office *allocator.OfficeConfig, langs []string, now time.Time) ([]byte, error) {
	var cancel allocator.Transition
	for _, t := range v.History.All() {
		if t.Status == allocator.StatusCancelled {
			cancel = t // the last one: a booking is cancelled once
		}
	}
	if cancel.Status != allocator.StatusCancelled {
		panic("BUG: httpapi: a cancelled booking " + v.ID.String() + " has no cancel in its history")
	}
	loc := v.Start.Location()
	start := v.Date.String() // an archived booking whose grid changed keeps no times
	if !v.Start.IsZero() {
		start = ticketWhen(v.Start)
	}
	by := cancel.Actor
	if name, ok := actorNames[by]; ok {
		by = name
	}
	reason := cancel.Reason
	if reason == "" {
		reason = "не указана"
	}

	p, row := newOfficePDF(office, "Отмена записи "+v.Number, "Отмена записи на приём", now)
	width, _ := p.GetPageSize()
	row("Услуга", serviceName(office, v.Service, langs))
	row("Номер", v.Number)
	row("Была назначена", start)
	row("Отменена", ticketWhen(time.Unix(0, cancel.AtUnixNano).In(loc)))
	row("Кем", by)
	row("Причина", reason)
	p.Ln(4)
	p.SetFont("go", "", 9)
	p.MultiCell(width-2*pdfMarginMM, 4.5, "Запись отменена; время приёма освобождено. Для приёма запишитесь заново.", "", "C", false)
	var buf bytes.Buffer
	if err := p.Output(&buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
