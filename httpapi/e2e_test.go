package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"slotd/allocator"
	"slotd/api"
	"slotd/internal/slotdtest/testtime"
)

// End-to-end tests over a real listener: every endpoint and every error
// code of DESIGN §3 (watches in watches_test.go).

func TestAvailability(t *testing.T) {
	e := newEnv(t, nil)

	r := e.get("/v1/offices", keyPortal)
	want(t, r, 200, "")
	var offices struct {
		Offices []struct {
			ID              string                          `json:"id"`
			Timezone        string                          `json:"timezone"`
			FreeSeats       int                             `json:"free_seats"`
			NextFree        *struct{ Office, Start string } `json:"next_free"`
			Load            string                          `json:"load"`
			ReleasedThrough string                          `json:"released_through"`
			Services        []allocator.ServiceConfig       `json:"services"`
		} `json:"offices"`
	}
	if err := json.Unmarshal(r.body, &offices); err != nil {
		t.Fatal(err)
	}
	if len(offices.Offices) != 2 || offices.Offices[0].ID != "office-a" || offices.Offices[0].FreeSeats == 0 ||
		offices.Offices[0].Load != allocator.LoadFree || offices.Offices[0].ReleasedThrough != "2026-12-30" ||
		offices.Offices[0].NextFree == nil || offices.Offices[0].NextFree.Start != "2026-11-30T09:00:00+03:00" {
		t.Fatalf("offices: %s", r.body)
	}
	want(t, e.get("/v1/offices?region=nowhere", keyPortal), 200, "")
	if got := e.get("/v1/offices?region=nowhere", keyPortal); string(got.body) != `{"offices":[]}` {
		t.Fatalf("filtered offices: %s", got.body)
	}
	want(t, e.get("/v1/offices?service=patent&has_free=true&city=%D0%9C%D0%BE%D1%81%D0%BA%D0%B2%D0%B0", keyOperator), 200, "")
	want(t, e.get("/v1/offices?has_free=yes", keyPortal), 400, api.CodeValidationFailed)
	want(t, e.get("/v1/offices?colour=red", keyPortal), 400, api.CodeValidationFailed)

	r = e.get("/v1/offices/office-a/days?service=patent&from=2026-11-30&to=2026-12-06", keyPortal)
	want(t, r, 200, "")
	var days struct {
		Days []struct {
			Date string `json:"date"`
			Free int    `json:"free"`
		} `json:"days"`
	}
	if err := json.Unmarshal(r.body, &days); err != nil {
		t.Fatal(err)
	}
	// Mon–Fri open: 30 Nov to 4 Dec; 8h a day × 4 steps × 2 windows.
	if len(days.Days) != 5 || days.Days[0].Date != "2026-11-30" || days.Days[1].Free != 64 {
		t.Fatalf("days: %s", r.body)
	}
	want(t, e.get("/v1/offices/office-a/days?service=patent", keyPortal), 200, "")
	want(t, e.get("/v1/offices/office-a/days", keyPortal), 400, api.CodeValidationFailed)
	want(t, e.get("/v1/offices/office-a/days?service=patent&from=30.11.2026", keyPortal), 400, api.CodeValidationFailed)
	want(t, e.get("/v1/offices/office-a/days?service=patent&from=2026-12-06&to=2026-12-01", keyPortal), 400, api.CodeValidationFailed)
	want(t, e.get("/v1/offices/nowhere/days?service=patent", keyPortal), 404, api.CodeNotFound)
	want(t, e.get("/v1/offices/office-a/days?service=nothing", keyPortal), 404, api.CodeNotFound)

	r = e.get("/v1/offices/office-a/days/2026-12-01/slots?service=patent", keyPortal)
	want(t, r, 200, "")
	slots := decodeSlots(t, r)
	if len(slots) != 32 || slots[0].Start != "2026-12-01T09:00:00+03:00" || slots[0].Free != 2 {
		t.Fatalf("slots: %s", r.body)
	}
	want(t, e.get("/v1/offices/office-a/days/2026-13-01/slots?service=patent", keyPortal), 400, api.CodeValidationFailed)
	want(t, e.get("/v1/offices/office-a/days/2027-03-01/slots?service=patent", keyPortal), 422, api.CodeNotReleased)
	want(t, e.get("/v1/offices/office-a/days/2026-12-05/slots?service=patent", keyPortal), 422, api.CodeNotReleased) // Saturday
	want(t, e.get("/v1/offices/office-a/days/2026-11-29/slots?service=patent", keyPortal), 422, api.CodeNotReleased) // past
	want(t, e.get("/v1/offices/office-x/days/2026-12-01/slots?service=patent", keyPortal), 404, api.CodeNotFound)
	want(t, e.get("/v1/offices/office-a/days/2026-12-01/slots", keyPortal), 400, api.CodeValidationFailed)

	r = e.get("/v1/search?service=patent&region=moscow&limit=3&after="+url.QueryEscape(ts(at(1, 10, 0))), keyPortal)
	want(t, r, 200, "")
	var results struct {
		Results []struct {
			Office, Start string
			Free          int
		} `json:"results"`
	}
	if err := json.Unmarshal(r.body, &results); err != nil {
		t.Fatal(err)
	}
	if len(results.Results) != 3 || results.Results[0].Start != "2026-12-01T10:00:00+03:00" {
		t.Fatalf("search: %s", r.body)
	}
	want(t, e.get("/v1/search?service=patent", keyPortal), 200, "")
	want(t, e.get("/v1/search", keyPortal), 400, api.CodeValidationFailed)
	want(t, e.get("/v1/search?service=patent&limit=0", keyPortal), 400, api.CodeValidationFailed)
	want(t, e.get("/v1/search?service=patent&after=tomorrow", keyPortal), 400, api.CodeValidationFailed)
}

func TestAuth(t *testing.T) {
	e := newEnv(t, nil)
	r := e.get("/v1/offices", "")
	want(t, r, 401, api.CodeUnauthorized)
	if r.header.Get("WWW-Authenticate") == "" {
		t.Fatal("401 without WWW-Authenticate")
	}
	want(t, e.get("/v1/offices", "not-a-key-0123456789"), 401, api.CodeUnauthorized)
	want(t, e.call("GET", "/v1/offices", "", "", "Authorization", "Basic "+keyPortal), 401, api.CodeUnauthorized)
	want(t, e.call("GET", "/v1/offices", "", "", "Authorization", "bearer "+keyPortal), 200, "")
	// Scopes.
	want(t, e.post("/v1/bookings", keyAdminB, holdJSON("office-b", "patent", "a-1", at(1, 9, 0))), 403, api.CodeForbidden)
	want(t, e.call("PUT", "/v1/offices/office-a", keyPortal, "{}"), 403, api.CodeForbidden)
	want(t, e.get("/v1/events", keyOperator), 403, api.CodeForbidden)
	// Unknown route and method.
	want(t, e.get("/v1/nothing", keyPortal), 404, api.CodeNotFound)
	r = e.call("DELETE", "/v1/bookings", keyPortal, "")
	want(t, r, 405, api.CodeMethodNotAllowed)
	if r.header.Get("Allow") != "POST, GET" {
		t.Fatalf("Allow %q", r.header.Get("Allow"))
	}
	// Request ids are echoed, or made.
	r = e.call("GET", "/v1/offices", keyPortal, "", "X-Request-Id", "abc-123")
	if r.header.Get("X-Request-Id") != "abc-123" {
		t.Fatalf("X-Request-Id %q", r.header.Get("X-Request-Id"))
	}
	if r = e.get("/v1/offices", keyPortal); r.header.Get("X-Request-Id") == "" {
		t.Fatal("no X-Request-Id made")
	}
}

func TestBookingLifecycle(t *testing.T) {
	e := newEnv(t, nil)
	start := at(0, 15, 0) // today, 7h ahead

	r := e.post("/v1/bookings", keyPortal, holdJSON("office-a", "patent", "a-1", start))
	want(t, r, 201, "")
	b := r.obj(t)
	id := b["id"].(string)
	if b["status"] != "held" || b["hold_expires_at"] != "2026-11-30T08:10:00+03:00" || b["window"] != 1.0 ||
		b["start"] != "2026-11-30T15:00:00+03:00" || b["end"] != "2026-11-30T15:15:00+03:00" ||
		b["number"] != "OFFICE-A-20261130-0001" || b["applicant"] != "a-1" || b["reschedules"] != 0.0 {
		t.Fatalf("hold: %s", r.body)
	}
	if r.header.Get("Content-Type") != contentJSON {
		t.Fatalf("Content-Type %q", r.header.Get("Content-Type"))
	}

	r = e.post("/v1/bookings/"+id+"/confirm", keyPortal, `{"applicant":"a-1"}`)
	want(t, r, 200, "")
	if b = r.obj(t); b["status"] != "confirmed" || b["hold_expires_at"] != nil {
		t.Fatalf("confirm: %s", r.body)
	}
	want(t, e.post("/v1/bookings/"+id+"/confirm", keyPortal, `{"applicant":"a-1"}`), 409, api.CodeInvalidTransition)

	// View with history; the applicant in the query.
	r = e.get("/v1/bookings/"+id+"?applicant=a-1", keyPortal)
	want(t, r, 200, "")
	var view struct {
		History []struct{ At, Status, Actor, Reason string } `json:"history"`
	}
	if err := json.Unmarshal(r.body, &view); err != nil {
		t.Fatal(err)
	}
	if len(view.History) != 2 || view.History[1].Status != "confirmed" || view.History[1].Actor != "portal-a" ||
		view.History[0].At != "2026-11-30T08:00:00+03:00" {
		t.Fatalf("history: %s", r.body)
	}
	// Another applicant, or no applicant with a portal key.
	want(t, e.get("/v1/bookings/"+id+"?applicant=a-2", keyPortal), 404, api.CodeNotFound)
	want(t, e.post("/v1/bookings/"+id+"/cancel", keyPortal, `{"applicant":"a-2"}`), 404, api.CodeNotFound)
	want(t, e.get("/v1/bookings/"+id, keyPortal), 400, api.CodeValidationFailed)
	want(t, e.get("/v1/bookings/AAAAAAAAAAAAAAAAAAAAAA?applicant=a-1", keyPortal), 404, api.CodeNotFound)
	want(t, e.get("/v1/bookings/short?applicant=a-1", keyPortal), 404, api.CodeNotFound)
	// Operators read without an applicant, at their offices only.
	want(t, e.get("/v1/bookings/"+id, keyOperator), 200, "")

	// Ticket, QR image, calendar.
	r = e.get("/v1/bookings/"+id+"/ticket?applicant=a-1", keyPortal)
	want(t, r, 200, "")
	tk := r.obj(t)
	if tk["number"] != "OFFICE-A-20261130-0001" || tk["office"] != "office-a" || tk["start"] != "2026-11-30T15:00:00+03:00" || tk["qr"] == "" {
		t.Fatalf("ticket: %s", r.body)
	}
	qr := tk["qr"].(string)
	r = e.get("/v1/bookings/"+id+"/ticket.png?applicant=a-1", keyPortal)
	want(t, r, 200, "")
	if r.header.Get("Content-Type") != "image/png" || !bytes.HasPrefix(r.body, []byte("\x89PNG\r\n\x1a\n")) {
		t.Fatalf("ticket.png: %q", r.header.Get("Content-Type"))
	}
	r = e.get("/v1/bookings/"+id+"/calendar.ics?applicant=a-1", keyPortal)
	want(t, r, 200, "")
	ics := string(r.body)
	for _, line := range []string{"BEGIN:VCALENDAR\r\n", "BEGIN:VEVENT\r\n", "UID:" + id + "@slotd\r\n",
		"DTSTART:20261130T120000Z\r\n", "DTEND:20261130T121500Z\r\n", "LOCATION:Office office-a\\, ул. Тестовая\\, 1\r\n", "END:VCALENDAR\r\n"} {
		if !strings.Contains(ics, line) {
			t.Fatalf("calendar.ics lacks %q:\n%s", line, ics)
		}
	}
	if strings.Contains(strings.ReplaceAll(ics, "\r\n", ""), "\n") {
		t.Fatal("calendar.ics has bare LF line ends")
	}

	// Check-in: the ticket is verified.
	other := e.mustHold("office-a", "rvp", "a-1", at(0, 16, 0), true)
	otherTicket := e.get("/v1/bookings/"+other+"/ticket?applicant=a-1", keyPortal).str(t, "qr")
	want(t, e.post("/v1/bookings/"+id+"/check-in", keyOperator, `{"ticket":"`+otherTicket+`"}`), 422, api.CodeTicketInvalid)
	forged := []byte(qr)
	forged[len(forged)-3] ^= 1
	want(t, e.post("/v1/bookings/"+id+"/check-in", keyOperator, `{"ticket":"`+string(forged)+`"}`), 422, api.CodeTicketInvalid)
	want(t, e.post("/v1/bookings/"+id+"/check-in", keyOperator, `{"ticket":"garbage!"}`), 422, api.CodeTicketInvalid)
	want(t, e.post("/v1/bookings/"+id+"/check-in", keyOperator, `{}`), 400, api.CodeValidationFailed)
	want(t, e.post("/v1/bookings/"+id+"/check-in", keyPortal, `{"ticket":"`+qr+`"}`), 403, api.CodeForbidden)
	r = e.post("/v1/bookings/"+id+"/check-in", keyOperator, `{"ticket":"`+qr+`"}`)
	want(t, r, 200, "")
	if r.obj(t)["status"] != "checked_in" {
		t.Fatalf("check-in: %s", r.body)
	}
	r = e.post("/v1/bookings/"+id+"/complete", keyOperator, `{"reason":"served"}`)
	want(t, r, 200, "")
	if r.obj(t)["status"] != "completed" {
		t.Fatalf("complete: %s", r.body)
	}
	want(t, e.post("/v1/bookings/"+id+"/complete", keyOperator, ``), 409, api.CodeInvalidTransition)
	want(t, e.get("/v1/bookings/"+id+"/ticket?applicant=a-1", keyPortal), 409, api.CodeInvalidTransition)
	want(t, e.get("/v1/bookings/"+id+"/calendar.ics?applicant=a-1", keyPortal), 200, "")

	// No-show after the start.
	e.setNow(at(0, 16, 5))
	r = e.post("/v1/bookings/"+other+"/no-show", keyOperator, ``)
	want(t, r, 200, "")
	if r.obj(t)["status"] != "no_show" {
		t.Fatalf("no-show: %s", r.body)
	}
}

func TestOperatorOffices(t *testing.T) {
	e := newEnv(t, nil)
	id := e.mustHold("office-b", "patent", "a-1", at(2, 10, 0), true)
	want(t, e.get("/v1/bookings/"+id, keyOperator), 403, api.CodeForbidden)
	want(t, e.post("/v1/bookings/"+id+"/force-cancel", keyOperator, `{}`), 403, api.CodeForbidden)
	want(t, e.post("/v1/bookings/AAAAAAAAAAAAAAAAAAAAAA/force-cancel", keyOperator, `{}`), 404, api.CodeNotFound)
	r := e.post("/v1/bookings/"+id+"/force-cancel", keyOperatorAll, `{"reason":"office request"}`)
	want(t, r, 200, "")
	if b := r.obj(t); b["status"] != "cancelled" {
		t.Fatalf("force-cancel: %s", r.body)
	}
}

func TestCancelRules(t *testing.T) {
	e := newEnv(t, nil)
	// A hold is cancelled at once.
	id := e.mustHold("office-a", "patent", "a-1", at(2, 10, 0), false)
	r := e.post("/v1/bookings/"+id+"/cancel", keyPortal, `{"applicant":"a-1","reason":"changed my mind"}`)
	want(t, r, 200, "")
	if b := r.obj(t); b["status"] != "cancelled" {
		t.Fatalf("cancel hold: %s", r.body)
	}
	// Between the floor and the cutoff: cancel_requested, then approve / reject.
	e.setNow(at(0, 17, 0))
	late := e.mustHold("office-a", "patent", "a-2", at(1, 9, 0), true) // 16h ahead
	r = e.post("/v1/bookings/"+late+"/cancel?applicant=a-2", keyPortal, ``)
	want(t, r, 200, "")
	if b := r.obj(t); b["status"] != "cancel_requested" {
		t.Fatalf("late cancel: %s", r.body)
	}
	r = e.post("/v1/bookings/"+late+"/reject-cancel", keyOperator, `{"reason":"no"}`)
	want(t, r, 200, "")
	if b := r.obj(t); b["status"] != "confirmed" {
		t.Fatalf("reject-cancel: %s", r.body)
	}
	want(t, e.post("/v1/bookings/"+late+"/approve-cancel", keyOperator, ``), 409, api.CodeInvalidTransition)
	want(t, e.post("/v1/bookings/"+late+"/cancel", keyPortal, `{"applicant":"a-2"}`), 200, "")
	r = e.post("/v1/bookings/"+late+"/approve-cancel", keyOperator, ``)
	want(t, r, 200, "")
	if b := r.obj(t); b["status"] != "cancelled" {
		t.Fatalf("approve-cancel: %s", r.body)
	}
	// Under the floor: refused.
	soon := e.mustHold("office-a", "patent", "a-3", at(0, 17, 30), true)
	want(t, e.post("/v1/bookings/"+soon+"/cancel", keyPortal, `{"applicant":"a-3"}`), 422, api.CodeTooLateToCancel)
	// A mismatch of body and query applicant.
	want(t, e.post("/v1/bookings/"+soon+"/cancel?applicant=a-4", keyPortal, `{"applicant":"a-3"}`), 400, api.CodeValidationFailed)
	want(t, e.post("/v1/bookings/"+soon+"/cancel", keyPortal, `{}`), 400, api.CodeValidationFailed)
}

func TestReschedule(t *testing.T) {
	e := newEnv(t, nil)
	id := e.mustHold("office-a", "patent", "a-1", at(2, 10, 0), true)
	r := e.post("/v1/bookings/"+id+"/reschedule", keyPortal, `{"applicant":"a-1","start":"`+ts(at(3, 11, 0))+`"}`)
	want(t, r, 200, "")
	if b := r.obj(t); b["id"] != id || b["start"] != "2026-12-03T11:00:00+03:00" || b["reschedules"] != 1.0 {
		t.Fatalf("reschedule: %s", r.body)
	}
	// Another office.
	r = e.post("/v1/bookings/"+id+"/reschedule", keyPortal, `{"applicant":"a-1","office":"office-b","start":"`+ts(at(3, 12, 0))+`"}`)
	want(t, r, 200, "")
	if b := r.obj(t); b["office"] != "office-b" || b["reschedules"] != 2.0 {
		t.Fatalf("reschedule to office-b: %s", r.body)
	}
	want(t, e.post("/v1/bookings/"+id+"/reschedule", keyPortal, `{"applicant":"a-1","start":"`+ts(at(4, 12, 0))+`"}`), 422, api.CodeRescheduleLimit)
	// Not reschedulable service; too late; off the grid; taken.
	rvp := e.mustHold("office-a", "rvp", "a-1", at(2, 10, 0), true)
	want(t, e.post("/v1/bookings/"+rvp+"/reschedule", keyPortal, `{"applicant":"a-1","start":"`+ts(at(3, 11, 0))+`"}`), 422, api.CodeNotReschedulable)
	soon := e.mustHold("office-a", "patent", "a-2", at(0, 15, 0), true)
	want(t, e.post("/v1/bookings/"+soon+"/reschedule", keyPortal, `{"applicant":"a-2","start":"`+ts(at(3, 11, 0))+`"}`), 422, api.CodeTooLateToReschedule)
	fresh := e.mustHold("office-a", "patent", "a-3", at(2, 11, 0), true)
	want(t, e.post("/v1/bookings/"+fresh+"/reschedule", keyPortal, `{"applicant":"a-3","start":"`+ts(at(3, 11, 7))+`"}`), 400, api.CodeValidationFailed)
	want(t, e.post("/v1/bookings/"+fresh+"/reschedule", keyPortal, `{"applicant":"a-3"}`), 400, api.CodeValidationFailed)
	want(t, e.post("/v1/bookings/"+fresh+"/reschedule", keyPortal, `{"applicant":"a-3","start":"`+ts(at(3, 11, 0))+`","office":"nowhere"}`), 404, api.CodeNotFound)
	e.mustHold("office-a", "patent", "a-4", at(3, 9, 0), true)
	e.mustHold("office-a", "patent", "a-5", at(3, 9, 0), true)
	r = e.post("/v1/bookings/"+fresh+"/reschedule", keyPortal, `{"applicant":"a-3","start":"`+ts(at(3, 9, 0))+`"}`)
	want(t, r, 409, api.CodeSlotTaken)
	if alts, _ := r.obj(t)["alternatives"].([]any); len(alts) == 0 {
		t.Fatalf("slot_taken without alternatives: %s", r.body)
	}
}

func TestHoldErrors(t *testing.T) {
	e := newEnv(t, nil)
	f := func(body string, status int, code string) {
		t.Helper()
		want(t, e.post("/v1/bookings", keyPortal, body), status, code)
	}
	start := ts(at(1, 9, 0))
	f(`{"office":"office-a","service":"patent","applicant":"a-1","start":"`+start+`","colour":"red"}`, 400, api.CodeValidationFailed) // unknown field
	f(`{"office":"office-a","service":"patent","applicant":1,"start":"`+start+`"}`, 400, api.CodeValidationFailed)                    // wrong type
	f(`{"office":"office-a","service":"patent","applicant":"a-1","start":"`+start+`"} {}`, 400, api.CodeValidationFailed)             // trailing data
	f(`{"office":"office-a","service":"patent","applicant":"a-1","start":"`+start+`"`, 400, api.CodeValidationFailed)                 // truncated
	f(`[1,2]`, 400, api.CodeValidationFailed)                                                                                         // not an object
	f(`{"office":"office-a","service":"patent","applicant":"a-1","start":"tomorrow 9am"}`, 400, api.CodeValidationFailed)             // bad time
	f(`{"office":"office-a","service":"patent","applicant":"a-1","start":"2026-12-01T09:05:00+03:00"}`, 400, api.CodeValidationFailed)
	f(`{"office":"office-a","service":"patent","applicant":"a-1"}`, 400, api.CodeValidationFailed) // neither start nor earliest_after
	f(`{"office":"office-a","service":"patent","applicant":"a-1","start":"`+start+`","earliest_after":"`+start+`"}`, 400, api.CodeValidationFailed)
	f(`{"service":"patent","applicant":"a-1","start":"`+start+`"}`, 400, api.CodeValidationFailed)
	f(`{"office":"office-a","service":"patent","start":"`+start+`"}`, 400, api.CodeValidationFailed)
	f(`{"office":"nowhere","service":"patent","applicant":"a-1","start":"`+start+`"}`, 404, api.CodeNotFound)
	f(`{"office":"office-a","service":"nothing","applicant":"a-1","start":"`+start+`"}`, 404, api.CodeNotFound)
	f(`{"office":"office-a","service":"patent","applicant":"a-1","start":"2027-06-01T09:00:00+03:00"}`, 422, api.CodeNotReleased)
	f(`{"office":"office-a","service":"patent","applicant":"a-1","start":"2026-12-01T07:00:00+03:00"}`, 422, api.CodeNotReleased)
	f(`{"office":"office-a","service":"patent","applicant":"a-1","start":"2026-12-05T10:00:00+03:00"}`, 422, api.CodeNotReleased)
	// The same instant in UTC is the same seat.
	r := e.post("/v1/bookings", keyPortal, `{"office":"office-a","service":"patent","applicant":"a-1","start":"2026-12-01T06:00:00Z"}`)
	want(t, r, 201, "")
	if r.obj(t)["start"] != "2026-12-01T09:00:00+03:00" {
		t.Fatalf("UTC start: %s", r.body)
	}
	f(holdJSON("office-a", "patent", "a-1", at(1, 10, 0)), 409, api.CodeDuplicateBooking)
	// earliest_after takes the first free start from then on.
	r = e.post("/v1/bookings", keyPortal, `{"office":"office-a","service":"rvp","applicant":"a-1","earliest_after":"`+ts(at(1, 12, 50))+`","confirm":true}`)
	want(t, r, 201, "")
	if b := r.obj(t); b["start"] != "2026-12-01T14:00:00+03:00" || b["status"] != "confirmed" {
		t.Fatalf("earliest_after: %s", r.body)
	}
	// The same service at another office is a duplicate too.
	f(holdJSON("office-b", "patent", "a-1", at(1, 9, 0)), 409, api.CodeDuplicateBooking)
	// Limit: three active bookings.
	e.addServices("office-b", "inn", "snils")
	e.mustHold("office-b", "inn", "a-1", at(1, 9, 0), false)
	f(holdJSON("office-b", "snils", "a-1", at(1, 9, 0)), 422, api.CodeLimitReached)
	// Body too large.
	big := `{"office":"` + strings.Repeat("x", DefaultBodyBytesMax) + `"}`
	want(t, e.post("/v1/bookings", keyPortal, big), 413, api.CodeBodyTooLarge)
	// Headers too large.
	want(t, e.call("GET", "/v1/offices", keyPortal, "", "X-Filler", strings.Repeat("y", DefaultHeaderBytesMax)), 431, api.CodeHeadersTooLarge)
}

func TestApplicantBlocked(t *testing.T) {
	e := newEnv(t, nil)
	for i := range 3 {
		id := e.mustHold("office-a", "patent", "a-1", at(2+i, 10, 0), true)
		want(t, e.post("/v1/bookings/"+id+"/cancel", keyPortal, `{"applicant":"a-1"}`), 200, "")
	}
	want(t, e.post("/v1/bookings", keyPortal, holdJSON("office-a", "patent", "a-1", at(2, 11, 0))), 422, api.CodeApplicantBlocked)
}

func TestSlotTakenAlternatives(t *testing.T) {
	e := newEnv(t, nil)
	e.mustHold("office-a", "patent", "a-1", at(1, 9, 0), false)
	e.mustHold("office-a", "patent", "a-2", at(1, 9, 0), false)
	r := e.post("/v1/bookings", keyPortal, holdJSON("office-a", "patent", "a-3", at(1, 9, 0)))
	want(t, r, 409, api.CodeSlotTaken)
	var p struct {
		Alternatives []struct {
			Office string `json:"office"`
			Start  string `json:"start"`
			Free   int    `json:"free"`
		} `json:"alternatives"`
	}
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatal(err)
	}
	if len(p.Alternatives) != DefaultAlternativesMax || p.Alternatives[0].Office != "office-a" ||
		p.Alternatives[0].Start != "2026-12-01T09:15:00+03:00" || p.Alternatives[0].Free != 2 {
		t.Fatalf("alternatives: %s", r.body)
	}
}

func TestMyBookings(t *testing.T) {
	e := newEnv(t, nil)
	var ids []string
	for i := range 3 {
		ids = append(ids, e.mustHold("office-a", "patent", "a-1", at(1+i, 9, 0), true))
		want(t, e.post("/v1/bookings/"+ids[i]+"/cancel", keyPortal, `{"applicant":"a-1"}`), 200, "")
		e.clock.Add(time.Second)
	}
	e.clock.Set(at(0, 8, 0))
	// The penalty blocks now; list the archive.
	type page struct {
		Bookings []struct {
			ID     string `json:"id"`
			Status string `json:"status"`
		} `json:"bookings"`
		NextCursor string `json:"next_cursor"`
	}
	get := func(q string) page {
		t.Helper()
		r := e.get("/v1/bookings?"+q, keyPortal)
		want(t, r, 200, "")
		var p page
		if err := json.Unmarshal(r.body, &p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	p := get("applicant=a-1&limit=2")
	if len(p.Bookings) != 2 || p.Bookings[0].ID != ids[0] || p.NextCursor == "" {
		t.Fatalf("page 1: %+v", p)
	}
	p = get("applicant=a-1&limit=2&cursor=" + p.NextCursor)
	if len(p.Bookings) != 1 || p.Bookings[0].ID != ids[2] || p.NextCursor != "" {
		t.Fatalf("page 2: %+v", p)
	}
	if p = get("applicant=a-1&status=cancelled&office=office-a&from=2026-12-02&to=2026-12-02"); len(p.Bookings) != 1 || p.Bookings[0].ID != ids[1] {
		t.Fatalf("filtered: %+v", p)
	}
	if p = get("applicant=a-2"); len(p.Bookings) != 0 {
		t.Fatalf("other applicant: %+v", p)
	}
	want(t, e.get("/v1/bookings", keyPortal), 400, api.CodeValidationFailed)
	want(t, e.get("/v1/bookings?applicant=a-1&status=lost", keyPortal), 400, api.CodeValidationFailed)
	want(t, e.get("/v1/bookings?applicant=a-1&cursor=x", keyPortal), 400, api.CodeValidationFailed)
	want(t, e.get("/v1/bookings?applicant=a-1&from=2026-12-05&to=2026-12-01", keyPortal), 400, api.CodeValidationFailed)
	want(t, e.get("/v1/bookings?applicant=a-1&applicant=a-2", keyPortal), 400, api.CodeValidationFailed)
}

func TestOfficesAdmin(t *testing.T) {
	e := newEnv(t, nil)
	cfg := testOffice("office-c")
	body, _ := json.Marshal(cfg)
	want(t, e.call("PUT", "/v1/offices/office-c", keyAdminB, string(body)), 403, api.CodeForbidden)
	r := e.call("PUT", "/v1/offices/office-c", keyAdmin, string(body))
	want(t, r, 201, "")
	if b := r.obj(t); b["id"] != "office-c" || b["released_through"] != "2026-12-30" || b["windows"] != 2.0 {
		t.Fatalf("put office: %s", r.body)
	}
	r = e.get("/v1/offices/office-c", keyPortal)
	want(t, r, 200, "")
	if b := r.obj(t); b["name"] != "Office office-c" {
		t.Fatalf("get office: %s", r.body)
	}
	want(t, e.get("/v1/offices/office-x", keyPortal), 404, api.CodeNotFound)
	// Replace: rename is fine; the id must match; unknown fields and bad values refused.
	cfg.Name = "Renamed"
	body, _ = json.Marshal(cfg)
	r = e.call("PUT", "/v1/offices/office-c", keyAdmin, string(body))
	want(t, r, 200, "")
	if r.obj(t)["name"] != "Renamed" {
		t.Fatalf("replace: %s", r.body)
	}
	want(t, e.call("PUT", "/v1/offices/office-d", keyAdmin, string(body)), 400, api.CodeValidationFailed)
	want(t, e.call("PUT", "/v1/offices/office-c", keyAdmin, `{"name":"x","colour":"red"}`), 400, api.CodeValidationFailed)
	want(t, e.call("PUT", "/v1/offices/office-c", keyAdmin, `{"name":"x","windows":"two"}`), 400, api.CodeValidationFailed)
	want(t, e.call("PUT", "/v1/offices/office-e", keyAdmin, `{"name":"x","region":"r","timezone":"Mars/Olympus"}`), 400, api.CodeValidationFailed)
	// Layout in use.
	e.mustHold("office-c", "patent", "a-1", at(1, 9, 0), true)
	cfg.Windows = 3
	body, _ = json.Marshal(cfg)
	want(t, e.call("PUT", "/v1/offices/office-c", keyAdmin, string(body)), 409, api.CodeLayoutInUse)

	// Release beyond the horizon, idempotently.
	r = e.post("/v1/offices/office-c/release", keyAdmin, `{"through":"2027-01-15"}`)
	want(t, r, 200, "")
	if string(r.body) != `{"office":"office-c","released_through":"2027-01-15"}` {
		t.Fatalf("release: %s", r.body)
	}
	r = e.post("/v1/offices/office-c/release", keyAdmin, `{"through":"2027-01-01"}`)
	if string(r.body) != `{"office":"office-c","released_through":"2027-01-15"}` {
		t.Fatalf("release earlier: %s", r.body)
	}
	want(t, e.post("/v1/offices/office-c/release", keyAdmin, `{"through":"2030-01-01"}`), 400, api.CodeValidationFailed)
	want(t, e.post("/v1/offices/office-c/release", keyAdmin, `{}`), 400, api.CodeValidationFailed)
	want(t, e.post("/v1/offices/office-c/release", keyAdminB, `{"through":"2027-01-16"}`), 403, api.CodeForbidden)
	want(t, e.post("/v1/offices/nowhere/release", keyAdmin, `{"through":"2027-01-16"}`), 404, api.CodeNotFound)
	want(t, e.post("/v1/offices/office-c/release", keyPortal, `{"through":"2027-01-16"}`), 403, api.CodeForbidden)
	want(t, e.get("/v1/offices/office-c/days/2027-01-14/slots?service=patent", keyPortal), 200, "")

	// A closure cancels the day's bookings.
	r = e.post("/v1/offices/office-c/closures", keyAdmin, `{"date":"2026-12-01","reason":"flood"}`)
	want(t, r, 200, "")
	if string(r.body) != `{"office":"office-c","date":"2026-12-01","cancelled":1}` {
		t.Fatalf("closure: %s", r.body)
	}
	want(t, e.get("/v1/offices/office-c/days/2026-12-01/slots?service=patent", keyPortal), 422, api.CodeNotReleased)
	want(t, e.post("/v1/offices/office-c/closures", keyAdmin, `{"date":"01.12.2026"}`), 400, api.CodeValidationFailed)
}

func TestEvents(t *testing.T) {
	e := newEnv(t, nil)
	id := e.mustHold("office-a", "patent", "a-1", at(1, 9, 0), true)
	r := e.get("/v1/events", keyPortal)
	want(t, r, 200, "")
	var page struct {
		Events []struct {
			Cursor  string         `json:"cursor"`
			Type    string         `json:"type"`
			At      string         `json:"at"`
			Office  string         `json:"office"`
			Booking map[string]any `json:"booking"`
			Reason  *string        `json:"reason"`
		} `json:"events"`
		NextCursor string `json:"next_cursor"`
	}
	if err := json.Unmarshal(r.body, &page); err != nil {
		t.Fatal(err)
	}
	if len(page.Events) != 2 || page.Events[0].Type != allocator.EventHeld || page.Events[1].Type != allocator.EventConfirmed ||
		page.Events[0].Booking["id"] != id || page.Events[0].At != "2026-11-30T08:00:00+03:00" || page.Events[0].Reason == nil ||
		page.NextCursor != page.Events[1].Cursor {
		t.Fatalf("events: %s", r.body)
	}
	cursor := page.NextCursor
	// Long-poll: the request waits for the next event.
	done := make(chan resp, 1)
	go func() { done <- e.get("/v1/events?wait=5&after="+cursor, keyPortal) }()
	testtime.EventuallyTrue(t, waitMax, "the long-poll to wait", func() bool { return e.srv.pollerSlots.len() == 1 })
	want(t, e.post("/v1/bookings/"+id+"/cancel", keyPortal, `{"applicant":"a-1","reason":"ill"}`), 200, "")
	r = <-done
	want(t, r, 200, "")
	if !strings.Contains(string(r.body), `"type":"booking.cancelled"`) || !strings.Contains(string(r.body), `"reason":"ill"`) {
		t.Fatalf("long-poll: %s", r.body)
	}
	// A release event carries through.
	want(t, e.post("/v1/offices/office-a/release", keyAdmin, `{"through":"2027-01-10"}`), 200, "")
	r = e.get("/v1/events?after=3&limit=10", keyPortal)
	if !strings.Contains(string(r.body), `"type":"slots.released"`) || !strings.Contains(string(r.body), `"through":"2027-01-10"`) {
		t.Fatalf("release event: %s", r.body)
	}
	// Nothing new: next_cursor stays.
	r = e.get("/v1/events?after=100&wait=0", keyPortal)
	if string(r.body) != `{"events":[],"next_cursor":"100"}` {
		t.Fatalf("empty page: %s", r.body)
	}
	want(t, e.get("/v1/events?after=-1", keyPortal), 400, api.CodeValidationFailed)
	want(t, e.get("/v1/events?wait=3600", keyPortal), 400, api.CodeValidationFailed)
	want(t, e.get("/v1/events?limit=100000", keyPortal), 400, api.CodeValidationFailed)
}

// TestShutdownWakesLongPoll: Shutdown returns promptly with a long-poll
// in flight, and the poll is answered.
func TestShutdownWakesLongPoll(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.EventsWaitMax = 10 * time.Minute })
	done := make(chan resp, 1)
	go func() { done <- e.get("/v1/events?wait=600", keyPortal) }()
	testtime.EventuallyTrue(t, waitMax, "the long-poll to wait", func() bool { return e.srv.pollerSlots.len() == 1 })
	ctx, cancel := contextWithTimeout(10 * time.Second)
	defer cancel()
	if err := e.srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	r := <-done
	want(t, r, 200, "")
}

func TestNotReadyAndDegraded(t *testing.T) {
	e := newEnv(t, nil)
	e.srv.SetReady(false)
	want(t, e.get("/v1/offices", keyPortal), 503, api.CodeNotReady)
	e.srv.SetReady(true)

	e.j.Fail = func(*allocator.Change) error { return fmt.Errorf("disk on fire") }
	want(t, e.post("/v1/bookings", keyPortal, holdJSON("office-a", "patent", "a-1", at(1, 9, 0))), 503, api.CodeDegraded)
	want(t, e.post("/v1/bookings", keyPortal, holdJSON("office-a", "patent", "a-1", at(1, 9, 0))), 503, api.CodeDegraded)
	// Reads still work.
	want(t, e.get("/v1/offices/office-a/days/2026-12-01/slots?service=patent", keyPortal), 200, "")
}
