package httpapi

import (
	"encoding/json"
	"net/url"
	"slices"
	"testing"

	"slotd/allocator"
	"slotd/api"
)

// End-to-end tests of the office's side: the day's agenda, walk-in and
// phone bookings by an operator key, and the lookup by booking number.

func decodeList(t testing.TB, r resp) api.BookingPage {
	t.Helper()
	want(t, r, 200, "")
	var l api.BookingPage
	if err := json.Unmarshal(r.body, &l); err != nil {
		t.Fatalf("%v: %s", err, r.body)
	}
	return l
}

// pageIDs lists the ids of a page.
func pageIDs(l api.BookingPage) []string {
	var out []string
	for _, b := range l.Bookings {
		out = append(out, b.ID)
	}
	return out
}

func wantIDs(t testing.TB, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

// TestAgenda: an operator reads a day of its office by window, then
// start, filtered and in pages; other offices' operators and portal keys
// are refused.
func TestAgenda(t *testing.T) {
	e := newEnv(t, nil)
	a1 := e.mustHold("office-a", "patent", "a-1", at(1, 10, 0), true)  // window 1
	a2 := e.mustHold("office-a", "patent", "a-2", at(1, 10, 0), false) // window 2
	a3 := e.mustHold("office-a", "rvp", "a-3", at(1, 9, 0), true)      // window 1
	a4 := e.mustHold("office-a", "patent", "a-4", at(1, 11, 0), false) // window 1
	e.mustHold("office-a", "patent", "a-5", at(2, 11, 0), false)       // another day
	e.mustHold("office-b", "patent", "a-6", at(1, 11, 0), false)       // another office
	const day = "/v1/offices/office-a/days/2026-12-01/bookings"

	l := decodeList(t, e.get(day, keyOperator))
	wantIDs(t, pageIDs(l), a3, a1, a4, a2)
	if l.NextCursor != "" || l.Bookings[0].Namespace != "portal-a" || l.Bookings[0].Window != 1 || l.Bookings[3].Window != 2 {
		t.Fatalf("agenda: %+v", l)
	}
	wantIDs(t, pageIDs(decodeList(t, e.get(day+"?status=confirmed", keyOperator))), a3, a1)
	wantIDs(t, pageIDs(decodeList(t, e.get(day+"?service=patent&status=held", keyOperator))), a4, a2)
	wantIDs(t, pageIDs(decodeList(t, e.get(day+"?service=nothing", keyOperator))))

	// Pages continue after the last booking of the one before.
	l = decodeList(t, e.get(day+"?limit=3", keyOperator))
	wantIDs(t, pageIDs(l), a3, a1, a4)
	if l.NextCursor == "" {
		t.Fatal("no next_cursor after a full page")
	}
	l = decodeList(t, e.get(day+"?limit=3&cursor="+url.QueryEscape(l.NextCursor), keyOperator))
	wantIDs(t, pageIDs(l), a2)
	if l.NextCursor != "" {
		t.Fatalf("next_cursor %q on the last page", l.NextCursor)
	}

	// Admin keys read the agenda of their offices too.
	want(t, e.get("/v1/offices/office-b/days/2026-12-01/bookings", keyAdminB), 200, "")

	// Refusals.
	want(t, e.get("/v1/offices/office-b/days/2026-12-01/bookings", keyOperator), 403, api.CodeForbidden)
	want(t, e.get(day, keyAdminB), 403, api.CodeForbidden)
	want(t, e.get(day, keyPortal), 403, api.CodeForbidden)
	want(t, e.get("/v1/offices/nowhere/days/2026-12-01/bookings", keyOperatorAll), 404, api.CodeNotFound)
	want(t, e.get("/v1/offices/office-a/days/2026-13-01/bookings", keyOperator), 400, api.CodeValidationFailed)
	want(t, e.get(day+"?status=gone", keyOperator), 400, api.CodeValidationFailed)
	want(t, e.get(day+"?cursor=abc", keyOperator), 400, api.CodeValidationFailed)
	want(t, e.get(day+"?limit=0", keyOperator), 400, api.CodeValidationFailed)
	want(t, e.get(day+"?limit=201", keyOperator), 400, api.CodeValidationFailed)
	want(t, e.get(day+"?applicant=a-1", keyOperator), 400, api.CodeValidationFailed)
}

// TestWalkInBooking: an operator key books, confirms and reschedules for
// an applicant of its own namespace at its offices, under the same
// rules, and the booking shows in the agenda with the key as actor.
func TestWalkInBooking(t *testing.T) {
	// operator-a2 serves office-a in the namespace of operator-all.
	const keyOperatorA2 = "operator-a2-0123456789"
	shared := "operator-all"
	e := newEnv(t, func(c *Config) {
		c.Keys = append(c.Keys, Key{Key: keyOperatorA2, Name: "operator-a2", Namespace: &shared,
			Scopes: []string{ScopeOperator}, Offices: []string{"office-a"}})
	})
	r := e.post("/v1/bookings", keyOperator, holdJSON("office-a", "patent", "walk-1", at(1, 9, 0)), "Idempotency-Key", "walk-in-1")
	want(t, r, 201, "")
	id := r.str(t, "id")
	if ns := r.str(t, "namespace"); ns != "operator-a" {
		t.Fatalf("namespace %q, want the operator key's", ns)
	}
	// Idempotency applies as for a portal.
	again := e.post("/v1/bookings", keyOperator, holdJSON("office-a", "patent", "walk-1", at(1, 9, 0)), "Idempotency-Key", "walk-in-1")
	want(t, again, 201, "")
	if !jsonEq(r.body, again.body) {
		t.Fatalf("replay differs:\n%s\n%s", r.body, again.body)
	}
	want(t, e.post("/v1/bookings/"+id+"/confirm", keyOperator, `{"applicant":"walk-1"}`), 200, "")
	// Another applicant of the namespace, or the same id under a portal,
	// is another person.
	want(t, e.post("/v1/bookings/"+id+"/confirm", keyOperator, `{"applicant":"walk-2"}`), 404, api.CodeNotFound)
	want(t, e.get("/v1/bookings/"+id+"?applicant=walk-1", keyPortal), 404, api.CodeNotFound)

	l := decodeList(t, e.get("/v1/offices/office-a/days/2026-12-01/bookings", keyOperator))
	wantIDs(t, pageIDs(l), id)
	b := l.Bookings[0]
	if b.Applicant != "walk-1" || b.Status != "confirmed" || len(b.History) != 2 ||
		b.History[0].Actor != "operator-a" || b.History[1].Actor != "operator-a" {
		t.Fatalf("walk-in booking: %+v", b)
	}

	// Only at the key's offices.
	want(t, e.post("/v1/bookings", keyOperator, holdJSON("office-b", "patent", "walk-1", at(1, 9, 0))), 403, api.CodeForbidden)
	want(t, e.post("/v1/bookings/"+id+"/reschedule", keyOperator,
		`{"applicant":"walk-1","office":"office-b","start":"`+ts(at(2, 9, 0))+`"}`), 403, api.CodeForbidden)
	r = e.post("/v1/bookings/"+id+"/reschedule", keyOperator, `{"applicant":"walk-1","start":"`+ts(at(2, 9, 0))+`"}`)
	want(t, r, 200, "")
	if r.str(t, "start") != ts(at(2, 9, 0)) {
		t.Fatalf("rescheduled: %s", r.body)
	}
	// A booking of the namespace at an office the key does not serve
	// answers 403 to its applicant actions.
	other := e.post("/v1/bookings", keyOperatorAll, holdJSON("office-b", "patent", "walk-9", at(1, 9, 0)))
	want(t, other, 201, "")
	want(t, e.post("/v1/bookings/"+other.str(t, "id")+"/cancel", keyOperatorA2, `{"applicant":"walk-9"}`), 403, api.CodeForbidden)

	// A walk-in applicant's limits apply: the duplicate check and the
	// active limit (3) count its bookings as a portal's.
	want(t, e.post("/v1/bookings", keyOperator, holdJSON("office-a", "patent", "walk-1", at(3, 9, 0))), 409, api.CodeDuplicateBooking)
	cfg := testOffice("office-c")
	cfg.Services = append(cfg.Services, allocator.ServiceConfig{ID: "s3", Name: "S3", Slots: 1}, allocator.ServiceConfig{ID: "s4", Name: "S4", Slots: 1})
	if _, err := e.eng.PutOffice(t0, cfg, allocator.Meta{Actor: "admin"}); err != nil {
		t.Fatal(err)
	}
	for _, svc := range []string{"rvp", "s3"} {
		want(t, e.post("/v1/bookings", keyOperatorAll, holdJSON("office-c", svc, "walk-3", at(1, 9, 0))), 201, "")
	}
	want(t, e.post("/v1/bookings", keyOperatorAll, holdJSON("office-c", "s4", "walk-3", at(1, 10, 0))), 201, "")
	want(t, e.post("/v1/bookings", keyOperatorAll, holdJSON("office-c", "patent", "walk-3", at(1, 11, 0))), 422, api.CodeLimitReached)

	// The walk-in's cancel, by the operator, under the cancel rules.
	r = e.post("/v1/bookings/"+id+"/cancel", keyOperator, `{"applicant":"walk-1","reason":"called to cancel"}`)
	want(t, r, 200, "")
	var cancelled api.Booking
	if err := json.Unmarshal(r.body, &cancelled); err != nil {
		t.Fatal(err)
	}
	if last := cancelled.History[len(cancelled.History)-1]; cancelled.Status != api.StatusCancelled || last.Actor != "operator-a" {
		t.Fatalf("cancelled: %s", r.body)
	}
}

// TestLookupByNumber: an operator finds any namespace's booking of its
// offices by the ticket's number; a portal finds only its applicant's,
// and another's answers exactly as a number no booking has.
func TestLookupByNumber(t *testing.T) {
	e := newEnv(t, nil)
	id := e.mustHold("office-a", "patent", "a-1", at(1, 9, 0), true)
	number := decodeList(t, e.get("/v1/bookings?applicant=a-1", keyPortal)).Bookings[0].Number
	byNumber := "/v1/bookings?number=" + number

	wantIDs(t, pageIDs(decodeList(t, e.get(byNumber, keyOperator))), id)
	wantIDs(t, pageIDs(decodeList(t, e.get(byNumber+"&applicant=a-1", keyPortal))), id)

	none := e.get(byNumber+"&applicant=a-2", keyPortal)
	wantIDs(t, pageIDs(decodeList(t, none)))
	for _, r := range []resp{
		e.get(byNumber+"&applicant=a-1", keyPortalB),                                 // another namespace
		e.get("/v1/bookings?number=OFFICE-A-20261201-0077&applicant=a-1", keyPortal), // no such booking
	} {
		want(t, r, 200, "")
		if string(r.body) != string(none.body) {
			t.Fatalf("got %s, want %s", r.body, none.body)
		}
	}

	// A walk-in booking is found by number by any operator of the office.
	walkIn := e.post("/v1/bookings", keyOperatorAll, holdJSON("office-a", "patent", "phone-1", at(1, 10, 0)))
	want(t, walkIn, 201, "")
	wantIDs(t, pageIDs(decodeList(t, e.get("/v1/bookings?number="+walkIn.str(t, "number"), keyOperator))), walkIn.str(t, "id"))

	// Refusals: another office's number (whether or not it exists), no
	// applicant with a portal key, malformed numbers, other parameters.
	want(t, e.get("/v1/bookings?number=OFFICE-B-20261201-0001", keyOperator), 403, api.CodeForbidden)
	want(t, e.get(byNumber, keyAdminB), 403, api.CodeForbidden)
	want(t, e.get(byNumber, keyPortal), 400, api.CodeValidationFailed)
	want(t, e.get("/v1/bookings?number=office-a-20261201-0001", keyOperator), 400, api.CodeValidationFailed)
	want(t, e.get("/v1/bookings?number=", keyOperator), 400, api.CodeValidationFailed)
	want(t, e.get(byNumber+"&status=held", keyOperator), 400, api.CodeValidationFailed)
	// Without a number, an operator key does not list by applicant.
	want(t, e.get("/v1/bookings?applicant=a-1", keyOperator), 403, api.CodeForbidden)
}
