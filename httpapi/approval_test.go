package httpapi

import (
	"encoding/json"
	"strings"
	"testing"

	"slotd/allocator"
	"slotd/api"
)

// approvalEnv is newEnv with office-a's patent requiring approval, put
// over HTTP as an administrator would.
func approvalEnv(t *testing.T) *env {
	t.Helper()
	e := newEnv(t, nil)
	cfg := testOffice("office-a")
	cfg.Services[0].RequiresApproval = true
	body, _ := json.Marshal(cfg)
	want(t, e.call("PUT", "/v1/offices/office-a", keyAdmin, string(body)), 200, "")
	return e
}

// TestApprovalRoutes: a confirm of a service that requires approval
// answers awaiting_approval; only an operator of the booking's office
// approves (confirmed) or rejects it (rejected, a reason required), with
// its key's name in the history; anything else is refused with a stable
// code.
func TestApprovalRoutes(t *testing.T) {
	e := approvalEnv(t)
	if r := e.get("/v1/offices/office-a", keyPortal); !strings.Contains(string(r.body), `"requires_approval":true`) {
		t.Fatalf("office JSON without requires_approval: %s", r.body)
	}
	a := e.mustHold("office-a", "patent", "a-1", at(1, 10, 0), true)
	r := e.get("/v1/bookings/"+a+"?applicant=a-1", keyPortal)
	want(t, r, 200, "")
	if got := r.str(t, "status"); got != api.StatusAwaitingApproval {
		t.Fatalf("status %q after the confirm, want %s", got, api.StatusAwaitingApproval)
	}
	b := e.mustHold("office-a", "patent", "a-2", at(1, 10, 0), false)
	r = e.post("/v1/bookings/"+b+"/confirm", keyPortal, `{"applicant":"a-2"}`)
	want(t, r, 200, "")
	if got := r.str(t, "status"); got != api.StatusAwaitingApproval {
		t.Fatalf("confirm answered %q, want %s", got, api.StatusAwaitingApproval)
	}
	other := e.mustHold("office-b", "patent", "a-3", at(1, 10, 0), true)
	rvp := e.mustHold("office-a", "rvp", "a-4", at(1, 11, 0), true)

	// Refusals: the wrong key, the wrong office, the wrong status, no reason.
	want(t, e.post("/v1/bookings/"+a+"/approve", keyPortal, `{}`), 403, api.CodeForbidden)
	want(t, e.post("/v1/bookings/"+other+"/approve", keyOperator, `{}`), 403, api.CodeForbidden)
	want(t, e.post("/v1/bookings/"+other+"/reject", keyOperator, `{"reason":"no"}`), 403, api.CodeForbidden)
	want(t, e.post("/v1/bookings/"+rvp+"/approve", keyOperator, `{}`), 409, api.CodeInvalidTransition)
	want(t, e.post("/v1/bookings/"+rvp+"/reject", keyOperator, `{"reason":"no"}`), 409, api.CodeInvalidTransition)
	want(t, e.post("/v1/bookings/"+a+"/reject", keyOperator, `{}`), 400, api.CodeValidationFailed)
	want(t, e.post("/v1/bookings/"+a+"/approve", keyOperator, `{"reason":"ok","extra":1}`), 400, api.CodeValidationFailed)
	want(t, e.post("/v1/bookings/AAAAAAAAAAAAAAAAAAAAAA/approve", keyOperator, `{}`), 404, api.CodeNotFound)
	if got, _ := e.eng.Get(mustID(t, a), ""); got.Status != allocator.StatusAwaitingApproval {
		t.Fatalf("a refused request changed the booking to %s", got.Status)
	}

	r = e.post("/v1/bookings/"+a+"/approve", keyOperator, `{"reason":"documents checked"}`)
	want(t, r, 200, "")
	var v api.Booking
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatal(err)
	}
	if last := v.History[len(v.History)-1]; v.Status != api.StatusConfirmed || last.Actor != "operator-a" || last.Reason != "documents checked" {
		t.Fatalf("approved: %s, last history entry %+v", v.Status, last)
	}
	want(t, e.post("/v1/bookings/"+a+"/approve", keyOperator, `{}`), 409, api.CodeInvalidTransition)

	r = e.post("/v1/bookings/"+b+"/reject", keyOperator, `{"reason":"the permit has expired"}`)
	want(t, r, 200, "")
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatal(err)
	}
	if last := v.History[len(v.History)-1]; v.Status != api.StatusRejected || last.Actor != "operator-a" || last.Reason != "the permit has expired" {
		t.Fatalf("rejected: %s, last history entry %+v", v.Status, last)
	}
	if api.StatusActive(v.Status) {
		t.Fatal("a rejected booking counts as active")
	}
	// The seat is free again.
	e.mustHold("office-a", "patent", "a-5", at(1, 10, 0), false)

	// The events name each step.
	r = e.get("/v1/events?after=0&limit=100", keyPortal)
	want(t, r, 200, "")
	for _, typ := range []string{allocator.EventAwaitingApproval, allocator.EventRejected} {
		if !strings.Contains(string(r.body), `"type":"`+typ+`"`) {
			t.Fatalf("no %s event: %s", typ, r.body)
		}
	}
}

// TestApprovalAgendaAndTicket: the agenda shows a booking awaiting
// approval and filters by the status; its ticket says it awaits the
// office, and so do the printed ticket and the calendar entry.
func TestApprovalAgendaAndTicket(t *testing.T) {
	e := approvalEnv(t)
	a := e.mustHold("office-a", "patent", "a-1", at(1, 10, 0), true)
	c := e.mustHold("office-a", "rvp", "a-2", at(1, 11, 0), true)
	const day = "/v1/offices/office-a/days/2026-12-01/bookings"
	wantIDs(t, pageIDs(decodeList(t, e.get(day+"?status=awaiting_approval", keyOperator))), a)
	wantIDs(t, pageIDs(decodeList(t, e.get(day+"?status=confirmed", keyOperator))), c)
	r := e.get(day+"?status=approved", keyOperator)
	want(t, r, 400, api.CodeValidationFailed)
	if !strings.Contains(string(r.body), "awaiting_approval") {
		t.Fatalf("the refusal does not list the statuses: %s", r.body)
	}

	r = e.get("/v1/bookings/"+a+"/ticket?applicant=a-1", keyPortal)
	want(t, r, 200, "")
	if got := r.str(t, "status"); got != api.StatusAwaitingApproval {
		t.Fatalf("ticket status %q, want %s: %s", got, api.StatusAwaitingApproval, r.body)
	}
	if got := e.get("/v1/bookings/"+c+"/ticket?applicant=a-2", keyPortal).str(t, "status"); got != api.StatusConfirmed {
		t.Fatalf("confirmed ticket status %q", got)
	}
	want(t, e.get("/v1/bookings/"+a+"/ticket.pdf?applicant=a-1", keyPortal), 200, "")
	ics := e.get("/v1/bookings/"+a+"/calendar.ics?applicant=a-1", keyPortal)
	want(t, ics, 200, "")
	if !strings.Contains(string(ics.body), "STATUS:TENTATIVE") {
		t.Fatalf("calendar entry of a booking awaiting approval:\n%s", ics.body)
	}

	bv, _ := e.eng.Get(mustID(t, a), "")
	office, _ := e.eng.Office("office-a")
	rows := ticketRows(&bv, &office.Config, nil)
	if !hasRow(rows, "Статус", ticketAwaitingText) {
		t.Fatalf("printed ticket rows %v lack the awaiting status", rows)
	}
	cv, _ := e.eng.Get(mustID(t, c), "")
	if rows := ticketRows(&cv, &office.Config, nil); hasRow(rows, "Статус", ticketAwaitingText) {
		t.Fatalf("a confirmed ticket says it awaits approval: %v", rows)
	}
}

func hasRow(rows [][2]string, label, value string) bool {
	for _, r := range rows {
		if r[0] == label && r[1] == value {
			return true
		}
	}
	return false
}
