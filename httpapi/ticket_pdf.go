package httpapi

import (
	"bytes"
	"fmt"
	"time"

	"github.com/go-pdf/fpdf"
	"github.com/skip2/go-qrcode"
	"golang.org/x/image/font/gofont/gobold"
	"golang.org/x/image/font/gofont/goregular"

	"slotd/allocator"
)

// ticketPDF: GET /v1/bookings/{id}/ticket.pdf → a printable A5 ticket: the
// office's name and address, the service, the booking number, the local
// date and time, the desk and the QR code verified at check-in. Text is set
// in the Go fonts, embedded, which cover Cyrillic.
func (s *Server) ticketPDF(r *request) {
	v, ok := s.readableBooking(r)
	if !ok || !ticketable(r, &v) {
		return
	}
	office, err := s.engine.Office(v.Office)
	if err != nil {
		r.failErr(err)
		return
	}
	pdf, err := renderTicketPDF(&v, &office.Config, r.languages(), signTicket(s.cfg.Secret, &v), r.now)
	if err != nil {
		panic("BUG: httpapi: cannot render a ticket PDF: " + err.Error())
	}
	r.ctx.SetStatusCode(200)
	r.ctx.SetContentType("application/pdf")
	r.ctx.Response.Header.Set("Content-Disposition", `inline; filename="`+v.Number+`.pdf"`)
	r.ctx.Response.Header.Set("Cache-Control", "private, no-store")
	r.ctx.SetBody(pdf)
}

var monthsGenitive = [12]string{"января", "февраля", "марта", "апреля", "мая", "июня",
	"июля", "августа", "сентября", "октября", "ноября", "декабря"}

// ticketWhen formats a start as people read it on a ticket: "2 декабря 2026, 09:15".
// A start in the hour the clocks show twice, the night they go back, also
// names its UTC offset ("31 октября 2027, 02:30 (UTC+02:00)"): two people
// with a ticket for 02:30 at one desk hold two different seats.
func ticketWhen(t time.Time) string {
	s := fmt.Sprintf("%d %s %d, %02d:%02d", t.Day(), monthsGenitive[t.Month()-1], t.Year(), t.Hour(), t.Minute())
	if wallRepeated(t) {
		s += t.Format(" (UTC-07:00)")
	}
	return s
}

// wallRepeated reports whether the wall clock of t, in t's zone, shows
// the same time at another instant too: t lies within the stretch the
// clocks were set back by, just before the change or just after it.
func wallRepeated(t time.Time) bool {
	_, offset := t.Zone()
	start, end := t.ZoneBounds()
	if !start.IsZero() {
		if _, before := start.Add(-time.Second).Zone(); before > offset && t.Sub(start) < time.Duration(before-offset)*time.Second {
			return true
		}
	}
	if !end.IsZero() {
		if _, after := end.Zone(); after < offset && end.Sub(t) <= time.Duration(offset-after)*time.Second {
			return true
		}
	}
	return false
}

// pdfMarginMM is the margin of every printed page, in millimetres.
const pdfMarginMM = 12

// newOfficePDF starts an A5 page headed by kind and the office's name and
// address, set in the embedded Go fonts, and returns it with row, which
// sets a "label: value" line. Tickets and receipts share it, so every
// document the office prints reads alike. now stamps the document, so the
// same booking renders to the same bytes at the same instant.
func newOfficePDF(office *allocator.OfficeConfig, title, kind string, now time.Time) (*fpdf.Fpdf, func(label, value string)) {
	p := fpdf.New("P", "mm", "A5", "")
	p.SetCreationDate(now)
	p.SetModificationDate(now)
	p.SetTitle(title, true)
	p.AddUTF8FontFromBytes("go", "", goregular.TTF)
	p.AddUTF8FontFromBytes("go", "B", gobold.TTF)
	p.SetMargins(pdfMarginMM, pdfMarginMM, pdfMarginMM)
	p.SetAutoPageBreak(false, 0)
	p.AddPage()
	width, _ := p.GetPageSize()
	text := width - 2*pdfMarginMM

	p.SetFont("go", "", 11)
	p.CellFormat(text, 6, kind, "", 1, "L", false, 0, "")
	p.SetFont("go", "B", 15)
	p.MultiCell(text, 7, office.Name, "", "L", false)
	p.SetFont("go", "", 10)
	p.MultiCell(text, 5, office.Address, "", "L", false)
	p.Ln(4)
	const labelMM = 34
	row := func(label, value string) {
		p.SetFont("go", "", 10)
		p.CellFormat(labelMM, 7, label, "", 0, "L", false, 0, "")
		p.SetFont("go", "B", 12)
		p.MultiCell(text-labelMM, 7, value, "", "L", false)
	}
	return p, row
}

// ticketAwaitingText is the printed ticket's status line of a booking
// awaiting the office's approval.
const ticketAwaitingText = "ожидает подтверждения офисом; талон действителен после подтверждения"

// ticketRows are the "label: value" lines of a printed ticket: the
// service named for a reader of langs, the number, the time, the desk,
// and for a booking awaiting approval a status line saying so.
func ticketRows(v *allocator.Booking, office *allocator.OfficeConfig, langs []string) [][2]string {
	rows := [][2]string{
		{"Услуга", serviceName(office, v.Service, langs)},
		{"Номер", v.Number},
		{"Дата и время", ticketWhen(v.Start)},
		{"Окно", fmt.Sprintf("%d", v.Window+1)},
	}
	if v.Status == allocator.StatusAwaitingApproval {
		rows = append(rows, [2]string{"Статус", ticketAwaitingText})
	}
	return rows
}

// renderTicketPDF lays the ticket out, the service named for a reader of
// langs and the documents to bring listed under the QR code (flowing onto
// a second page when they do not fit). now stamps the document, so the
// same booking renders to the same bytes at the same instant.
func renderTicketPDF(v *allocator.Booking, office *allocator.OfficeConfig, langs []string, token string, now time.Time) ([]byte, error) {
	qr, err := qrcode.Encode(token, qrcode.Medium, qrImagePixels)
	if err != nil {
		return nil, err
	}
	p, row := newOfficePDF(office, "Талон "+v.Number, "Талон на приём", now)
	width, _ := p.GetPageSize()
	text := width - 2*pdfMarginMM
	for _, r := range ticketRows(v, office, langs) {
		row(r[0], r[1])
	}
	p.Ln(4)
	p.RegisterImageOptionsReader("qr", fpdf.ImageOptions{ImageType: "PNG"}, bytes.NewReader(qr))
	const qrMM = 70
	p.ImageOptions("qr", (width-qrMM)/2, p.GetY(), qrMM, qrMM, false, fpdf.ImageOptions{ImageType: "PNG"}, 0, "")
	p.SetY(p.GetY() + qrMM + 3)
	p.SetFont("go", "", 9)
	p.MultiCell(text, 4.5, "Покажите этот код у входа. Талон действителен только для указанного времени; "+
		"если вы не можете прийти, отмените запись заранее.", "", "C", false)
	if sc := serviceConfig(office, v.Service); sc != nil && len(sc.Documents) > 0 {
		p.SetAutoPageBreak(true, pdfMarginMM)
		p.Ln(3)
		p.SetFont("go", "B", 10)
		p.CellFormat(text, 5, "Документы", "", 1, "L", false, 0, "")
		p.SetFont("go", "", 10)
		for _, d := range sc.Documents {
			p.MultiCell(text, 5, "• "+d, "", "L", false)
		}
	}
	var buf bytes.Buffer
	if err := p.Output(&buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
