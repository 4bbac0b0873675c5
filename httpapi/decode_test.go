package httpapi

import (
	"strings"
	"testing"

	"slotd/api"
)

// TestDefectInvalidUTF8ApplicantsCollide: applicant ids are compared byte
// for byte, and encoding/json turns each invalid UTF-8 byte and each lone
// UTF-16 surrogate escape into U+FFFD, so "a\xff" and "a\xfe" would be one
// applicant, who could confirm, cancel and read the other's bookings.
// Such bodies and query values are refused with 400 validation_failed;
// valid text, U+FFFD itself and surrogate pairs are not.
func TestDefectInvalidUTF8ApplicantsCollide(t *testing.T) {
	e := newEnv(t, nil)
	hold := func(applicant string, minute int) resp {
		return e.post("/v1/bookings", keyPortal, `{"office":"office-a","service":"patent","applicant":"`+applicant+`","start":"`+ts(at(1, 9, minute))+`"}`)
	}
	refused := func(what string, r resp) {
		t.Helper()
		if r.status != 400 {
			t.Errorf("%s: %d %s, want 400 %s", what, r.status, r.body, api.CodeValidationFailed)
			return
		}
		want(t, r, 400, api.CodeValidationFailed)
		if d := r.str(t, "detail"); !strings.Contains(d, "UTF-8") {
			t.Errorf("%s: refused for another reason: %s", what, d)
		}
	}
	refused("raw byte 0xff in the body", hold("a\xff", 0))
	refused("raw byte 0xfe in the body", hold("a\xfe", 0))
	refused("a truncated sequence in the body", hold("a\xc3", 0))
	refused("a lone high surrogate escape", hold(`a\ud800`, 0))
	refused("a lone low surrogate escape", hold(`a\udc00`, 0))
	refused("a high surrogate escape without its low half", hold(`a\ud83dx`, 0))
	refused("an invalid byte in the query", e.get("/v1/bookings?applicant=a%FF", keyPortal))
	refused("an invalid byte in another query parameter", e.get("/v1/offices?region=%FE", keyPortal))
	refused("an invalid byte in a watch", e.post("/v1/watches", keyPortal, `{"applicant":"a`+"\xff"+`","service":"patent","office":"office-a","from":"2026-12-01","to":"2026-12-02"}`))
	refused("an invalid byte in the query of a watch's removal", e.call("DELETE", "/v1/watches/AAAAAAAAAAAAAAAAAAAAAA?applicant=a%FF", keyPortal, ``))
	refused("an invalid byte in the query of an action", e.post("/v1/bookings/AAAAAAAAAAAAAAAAAAAAAA/cancel?applicant=a%FF", keyPortal, ``))
	refused("an invalid byte in a reason", e.post("/v1/bookings/AAAAAAAAAAAAAAAAAAAAAA/cancel", keyPortal, `{"applicant":"a","reason":"`+"\xff"+`"}`))

	// Valid text keeps working, in the body and the query alike.
	want(t, hold("é-1", 15), 201, "")
	want(t, hold(`\u00e9-2`, 30), 201, "")
	want(t, hold(`\ud83d\ude00`, 45), 201, "") // a surrogate pair: 😀
	want(t, hold(`\ufffd`, 60), 201, "")       // U+FFFD sent as such is valid text
	want(t, e.get("/v1/bookings?applicant=%C3%A9-2", keyPortal), 200, "")
}
