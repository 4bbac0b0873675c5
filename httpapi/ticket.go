package httpapi

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"strconv"
	"strings"
	"time"

	qrcode "github.com/skip2/go-qrcode"

	"slotd/allocator"
	"slotd/api"
	"slotd/internal/jsontime"
)

// Tickets.
//
// A ticket's qr token is base64url (no padding) of
//
//	booking id (16 bytes) ‖ start, Unix seconds (8 bytes, big endian) ‖
//	HMAC-SHA256(secret, ticketDomain ‖ id ‖ start) (32 bytes)
//
// 56 bytes, 75 characters. Check-in recomputes the MAC (constant-time
// compare) and requires the id to be the booking's and the start to be its
// current start, so a forged, altered or copied ticket, a ticket of another
// booking, or one printed before a reschedule is refused with
// ticket_invalid. Changing Config.Secret invalidates every ticket.

const (
	ticketDomain   = "slotd ticket v1\x00"
	ticketRawBytes = 16 + 8 + sha256.Size
	qrImagePixels  = 320
)

func ticketMAC(secret []byte, payload []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ticketDomain))
	m.Write(payload)
	return m.Sum(nil)
}

// signTicket returns the qr token of a booking at its current start.
func signTicket(secret []byte, v *allocator.Booking) string {
	raw := make([]byte, 0, ticketRawBytes)
	raw = append(raw, v.ID[:]...)
	raw = binary.BigEndian.AppendUint64(raw, uint64(v.Start.Unix()))
	raw = append(raw, ticketMAC(secret, raw)...)
	return base64.RawURLEncoding.EncodeToString(raw)
}

// verifyTicket checks token against the booking v. Its errors are the
// detail of ticket_invalid.
func verifyTicket(secret []byte, token string, v *allocator.Booking) error {
	if len(token) > ticketBytesMax {
		return errors.New("the ticket is not a slotd ticket token (too long)")
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimSpace(token))
	if err != nil || len(raw) != ticketRawBytes {
		return errors.New("the ticket is not a slotd ticket token: scan the QR code of the ticket again")
	}
	payload, mac := raw[:16+8], raw[16+8:]
	if !hmac.Equal(mac, ticketMAC(secret, payload)) {
		return errors.New("the ticket's signature does not verify: it was altered or not issued by this service")
	}
	var id allocator.ID
	copy(id[:], payload[:16])
	if id != v.ID {
		return errors.New("the ticket belongs to another booking")
	}
	if start := time.Unix(int64(binary.BigEndian.Uint64(payload[16:])), 0); !start.Equal(v.Start) {
		return errors.New("the ticket was issued for " + start.In(v.Start.Location()).Format(time.RFC3339) +
			"; the booking was rescheduled to " + v.Start.Format(time.RFC3339) + " — get the new ticket")
	}
	return nil
}

// ticketable answers 409 unless the booking has a ticket: confirmed,
// checked in, or awaiting approval (a ticket that says so: its qr is
// refused at check-in until an operator approves the booking, and is the
// booking's ticket from then on).
func ticketable(r *request, v *allocator.Booking) bool {
	switch v.Status {
	case allocator.StatusConfirmed, allocator.StatusCheckedIn, allocator.StatusAwaitingApproval:
		return true
	}
	r.fail(problem{code: api.CodeInvalidTransition, detail: "a ticket exists for confirmed bookings and those awaiting approval only; this one is " + v.Status.String()})
	return false
}

// ticket: GET /v1/bookings/{id}/ticket → {number, office, service,
// service_name, documents, start, status, qr}: service_name follows the
// request's Accept-Language (serviceName), documents are the service's
// (empty when it names none or the office no longer offers it), status
// the booking's (awaiting_approval until the office approves it).
func (s *Server) ticket(r *request) {
	v, ok := s.readableBooking(r)
	if !ok || !ticketable(r, &v) {
		return
	}
	office, err := s.engine.Office(v.Office)
	if err != nil {
		r.failErr(err)
		return
	}
	b := append(make([]byte, 0, 256), `{"number":`...)
	b = appendString(b, v.Number)
	b = append(b, `,"office":`...)
	b = appendString(b, v.Office)
	b = append(b, `,"service":`...)
	b = appendString(b, v.Service)
	b = append(b, `,"service_name":`...)
	b = appendString(b, serviceName(&office.Config, v.Service, r.languages()))
	b = append(b, `,"documents":[`...)
	if sc := serviceConfig(&office.Config, v.Service); sc != nil {
		for i, d := range sc.Documents {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, d)
		}
	}
	b = append(b, ']')
	b = append(b, `,"start":`...)
	b = jsontime.Append(b, v.Start)
	b = append(b, `,"status":`...)
	b = appendString(b, v.Status.String())
	b = append(b, `,"qr":`...)
	b = appendString(b, signTicket(s.cfg.Secret, &v))
	r.reply(200, append(b, '}'))
}

// ticketPNG: GET /v1/bookings/{id}/ticket.png → the qr token as a QR code.
func (s *Server) ticketPNG(r *request) {
	v, ok := s.readableBooking(r)
	if !ok || !ticketable(r, &v) {
		return
	}
	png, err := qrcode.Encode(signTicket(s.cfg.Secret, &v), qrcode.Medium, qrImagePixels)
	if err != nil {
		panic("BUG: httpapi: cannot encode a ticket QR code: " + err.Error())
	}
	r.ctx.SetStatusCode(200)
	r.ctx.SetContentType("image/png")
	r.ctx.Response.Header.Set("Cache-Control", "private, no-store")
	r.ctx.SetBody(png)
}

// calendar: GET /v1/bookings/{id}/calendar.ics → one VEVENT (RFC 5545).
func (s *Server) calendar(r *request) {
	v, ok := s.readableBooking(r)
	if !ok {
		return
	}
	office, err := s.engine.Office(v.Office)
	if err != nil {
		r.failErr(err)
		return
	}
	r.ctx.SetStatusCode(200)
	r.ctx.SetContentType("text/calendar; charset=utf-8")
	r.ctx.Response.Header.Set("Content-Disposition", `attachment; filename="`+v.Number+`.ics"`)
	r.ctx.SetBody(appendICS(nil, &v, &office.Config, r.now))
}

// appendICS renders a VCALENDAR with one VEVENT: UTC times, escaped text,
// CRLF line ends, lines folded at 75 octets.
func appendICS(b []byte, v *allocator.Booking, office *allocator.OfficeConfig, now time.Time) []byte {
	const utc = "20060102T150405Z"
	serviceName := serviceName(office, v.Service, nil)
	status := "CONFIRMED"
	switch {
	case v.Status == allocator.StatusAwaitingApproval:
		status = "TENTATIVE" // the office has not accepted it yet
	case !v.Status.Active():
		status = "CANCELLED"
	}
	location := office.Name
	if office.Address != "" {
		location += ", " + office.Address
	}
	lines := []string{
		"BEGIN:VCALENDAR",
		"VERSION:2.0",
		"PRODID:-//slotd//appointments//EN",
		"CALSCALE:GREGORIAN",
		"METHOD:PUBLISH",
		"BEGIN:VEVENT",
		"UID:" + v.ID.String() + "@slotd",
		"DTSTAMP:" + now.UTC().Format(utc),
		"DTSTART:" + v.Start.UTC().Format(utc),
		"DTEND:" + v.End.UTC().Format(utc),
		"SUMMARY:" + icsEscape(serviceName+" — "+v.Number),
		"LOCATION:" + icsEscape(location),
		"DESCRIPTION:" + icsEscape("Booking "+v.Number+", window "+strconv.Itoa(int(v.Window)+1)+". Bring the ticket's QR code."),
		"STATUS:" + status,
		"END:VEVENT",
		"END:VCALENDAR",
	}
	for _, l := range lines {
		b = appendFolded(b, l)
	}
	return b
}

// icsEscape escapes TEXT values (RFC 5545 §3.3.11).
func icsEscape(s string) string {
	r := strings.NewReplacer(`\`, `\\`, ";", `\;`, ",", `\,`, "\r\n", `\n`, "\n", `\n`, "\r", `\n`)
	return r.Replace(s)
}

// appendFolded appends a content line folded at 75 octets without
// splitting a UTF-8 sequence, ending in CRLF.
func appendFolded(b []byte, line string) []byte {
	const width = 75
	n := 0
	for i := 0; i < len(line); {
		size := 1
		for i+size < len(line) && line[i+size]&0xC0 == 0x80 {
			size++
		}
		if n+size > width {
			b = append(b, "\r\n "...)
			n = 1
		}
		b = append(b, line[i:i+size]...)
		n += size
		i += size
	}
	return append(b, "\r\n"...)
}
