package httpapi

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"slotd/api"
	"slotd/internal/slotdtest/testtime"
)

// The printable ticket: a PDF whose text, extracted again, reads in
// Cyrillic as written; a cancelled booking gets none.
func TestTicketPDF(t *testing.T) {
	e := newEnv(t, nil)
	r := e.post("/v1/bookings", keyPortal, `{"office":"office-a","service":"patent","applicant":"a-1","start":"2026-12-01T10:00:00+03:00","confirm":true}`)
	want(t, r, 201, "")
	id := r.obj(t)["id"].(string)
	r = e.get("/v1/bookings/"+id+"/ticket.pdf?applicant=a-1", keyPortal)
	want(t, r, 200, "")
	if r.header.Get("Content-Type") != "application/pdf" || !bytes.HasPrefix(r.body, []byte("%PDF-")) ||
		!bytes.Contains(r.body, []byte("/FontFile2")) || !bytes.Contains(r.body, []byte("/ToUnicode")) {
		t.Fatalf("ticket.pdf: %q, %d bytes, embedded font and text map expected", r.header.Get("Content-Type"), len(r.body))
	}
	want(t, e.get("/v1/bookings/"+id+"/ticket.pdf?applicant=someone-else", keyPortal), 404, api.CodeNotFound)
	if pdftotext, err := exec.LookPath("pdftotext"); err != nil {
		t.Log("pdftotext (Debian package poppler-utils) not found: the text of the PDF is not read back")
	} else {
		path := filepath.Join(t.TempDir(), "ticket.pdf")
		os.WriteFile(path, r.body, 0o600)
		out, err := exec.Command(pdftotext, path, "-").Output()
		if err != nil {
			t.Fatal(err)
		}
		text := string(out)
		for _, s := range []string{"Талон на приём", "Office office-a", "ул. Тестовая, 1", "Патент", "OFFICE-A-20261201-0001", "1 декабря 2026, 10:00"} {
			if !strings.Contains(text, s) {
				t.Fatalf("ticket text lacks %q:\n%s", s, text)
			}
		}
	}
	want(t, e.post("/v1/bookings/"+id+"/cancel", keyPortal, `{"applicant":"a-1"}`), 200, "")
	want(t, e.get("/v1/bookings/"+id+"/ticket.pdf?applicant=a-1", keyPortal), 409, api.CodeInvalidTransition)
}

// On the night the clocks go back the ticket names the offset of a start
// in the repeated hour, which the clock shows twice; any other start reads
// as before.
func TestTicketWhenNamesTheRepeatedHour(t *testing.T) {
	f := func(t0 time.Time, want string) { // t0 in Berlin, as the office shows it
		t.Helper()
		if got := ticketWhen(t0.In(testtime.Berlin)); got != want {
			t.Fatalf("ticketWhen(%s) = %q, want %q", t0.Format(time.RFC3339), got, want)
		}
	}
	f(time.Date(2027, 10, 31, 1, 59, 0, 0, time.FixedZone("", 2*3600)), "31 октября 2027, 01:59")
	f(time.Date(2027, 10, 31, 2, 0, 0, 0, time.FixedZone("", 2*3600)), "31 октября 2027, 02:00 (UTC+02:00)")
	f(time.Date(2027, 10, 31, 2, 30, 0, 0, time.FixedZone("", 2*3600)), "31 октября 2027, 02:30 (UTC+02:00)")
	f(time.Date(2027, 10, 31, 2, 30, 0, 0, time.FixedZone("", 3600)), "31 октября 2027, 02:30 (UTC+01:00)")
	f(time.Date(2027, 10, 31, 3, 0, 0, 0, time.FixedZone("", 3600)), "31 октября 2027, 03:00")
	f(time.Date(2027, 3, 28, 3, 0, 0, 0, testtime.Berlin), "28 марта 2027, 03:00") // the night they go forward
	f(time.Date(2026, 12, 1, 10, 0, 0, 0, testtime.Berlin), "1 декабря 2026, 10:00")
	if got := ticketWhen(time.Date(2026, 12, 1, 10, 0, 0, 0, testtime.MSK)); got != "1 декабря 2026, 10:00" {
		t.Fatalf("Moscow: %q", got)
	}
}
