package httpapi

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"slotd/api"
)

// The cancellation receipt: only a cancelled booking has one; its text,
// read back, names the booking, the start it had and the cancel's time,
// actor and reason; it is refused like the ticket to another applicant,
// another namespace and an operator of another office.
func TestReceiptPDF(t *testing.T) {
	e := newEnv(t, nil)
	id := e.mustHold("office-a", "patent", "a-1", at(1, 10, 0), true)
	want(t, e.get("/v1/bookings/"+id+"/receipt.pdf?applicant=a-1", keyPortal), 409, api.CodeInvalidTransition)
	other := e.mustHold("office-b", "rvp", "a-1", at(1, 11, 0), true)
	want(t, e.post("/v1/bookings/"+other+"/cancel", keyPortal, `{"applicant":"a-1"}`), 200, "")
	want(t, e.get("/v1/bookings/"+other+"/receipt.pdf", keyOperator), 403, api.CodeForbidden)

	want(t, e.post("/v1/bookings/"+id+"/force-cancel", keyOperatorAll, `{"reason":"office closed for repairs"}`), 200, "")
	want(t, e.get("/v1/bookings/"+id+"/receipt.pdf?applicant=someone-else", keyPortal), 404, api.CodeNotFound)
	want(t, e.get("/v1/bookings/"+id+"/receipt.pdf?applicant=a-1", keyPortalB), 404, api.CodeNotFound)
	want(t, e.get("/v1/bookings/"+id+"/receipt.pdf", keyOperator), 200, "")
	r := e.get("/v1/bookings/"+id+"/receipt.pdf?applicant=a-1", keyPortal)
	want(t, r, 200, "")
	if r.header.Get("Content-Type") != "application/pdf" || !bytes.HasPrefix(r.body, []byte("%PDF-")) ||
		!bytes.Contains(r.body, []byte("/FontFile2")) || !bytes.Contains(r.body, []byte("/ToUnicode")) {
		t.Fatalf("receipt.pdf: %q, %d bytes, embedded font and text map expected", r.header.Get("Content-Type"), len(r.body))
	}
	pdftotext, err := exec.LookPath("pdftotext")
	if err != nil {
		t.Log("pdftotext (Debian package poppler-utils) not found: the text of the PDF is not read back")
		return
	}
	path := filepath.Join(t.TempDir(), "receipt.pdf")
	if err := os.WriteFile(path, r.body, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(pdftotext, path, "-").Output()
	if err != nil {
		t.Fatal(err)
	}
	text := string(out)
	for _, s := range []string{"Отмена записи на приём", "Office office-a", "Патент", "OFFICE-A-20261201-0001",
		"1 декабря 2026, 10:00", "operator-all", "office closed for repairs"} {
		if !strings.Contains(text, s) {
			t.Fatalf("receipt text lacks %q:\n%s", s, text)
		}
	}
}
