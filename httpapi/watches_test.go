package httpapi

import (
	"encoding/json"
	"strings"
	"testing"

	"slotd/api"
)

// Watches over HTTP: a freed seat is held for the oldest auto-hold watch
// and shows up in its applicant's bookings and in the event feed.
func TestWatches(t *testing.T) {
	e := newEnv(t, nil)
	start := "2026-12-02T10:00:00+03:00"
	var ids []string
	for _, a := range []string{"x", "y"} { // office-a has two windows: the start is full
		r := e.post("/v1/bookings", keyPortal, `{"office":"office-a","service":"patent","applicant":"`+a+`","start":"`+start+`","confirm":true}`)
		want(t, r, 201, "")
		var b struct{ ID string }
		json.Unmarshal(r.body, &b)
		ids = append(ids, b.ID)
	}
	want(t, e.post("/v1/watches", keyPortal, `{"applicant":"w","office":"office-a","from":"2026-12-01","to":"2026-12-05"}`), 400, api.CodeValidationFailed) // no service
	want(t, e.post("/v1/watches", keyPortal, `{"applicant":"w","service":"patent","from":"2026-12-01","to":"2026-12-05"}`), 400, api.CodeValidationFailed)  // neither office nor region
	want(t, e.post("/v1/watches", keyPortal, `{"applicant":"w","service":"nope","office":"office-a","from":"2026-12-01","to":"2026-12-05"}`), 404, api.CodeNotFound)
	want(t, e.post("/v1/watches", keyPortal, `{"applicant":"w","service":"patent","office":"office-a","from":"2026-12-01","to":"2026-12-05","colour":1}`), 400, api.CodeValidationFailed)
	r := e.post("/v1/watches", keyPortal, `{"applicant":"w","service":"patent","office":"office-a","from":"2026-12-01","to":"2026-12-05","auto_hold":true}`)
	want(t, r, 201, "")
	var w struct {
		ID       string `json:"id"`
		AutoHold bool   `json:"auto_hold"`
	}
	if err := json.Unmarshal(r.body, &w); err != nil || len(w.ID) != 22 || !w.AutoHold {
		t.Fatalf("watch: %s", r.body)
	}
	// A second watch to delete.
	r = e.post("/v1/watches", keyPortal, `{"applicant":"v","service":"patent","region":"moscow","from":"2026-12-01","to":"2026-12-05"}`)
	want(t, r, 201, "")
	var v struct{ ID string }
	json.Unmarshal(r.body, &v)
	want(t, e.call("DELETE", "/v1/watches/"+v.ID+"?applicant=w", keyPortal, ""), 404, api.CodeNotFound) // another applicant's
	if r := e.call("DELETE", "/v1/watches/"+v.ID+"?applicant=v", keyPortal, ""); r.status != 204 {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	want(t, e.call("DELETE", "/v1/watches/"+v.ID+"?applicant=v", keyPortal, ""), 404, api.CodeNotFound)
	want(t, e.call("DELETE", "/v1/watches/short?applicant=v", keyPortal, ""), 404, api.CodeNotFound)

	// x cancels: the seat goes to w's watch, never to the fastest caller.
	want(t, e.post("/v1/bookings/"+ids[0]+"/cancel", keyPortal, `{"applicant":"x"}`), 200, "")
	want(t, e.post("/v1/bookings", keyPortal, `{"office":"office-a","service":"patent","applicant":"bot","start":"`+start+`"}`), 409, api.CodeSlotTaken)
	r = e.get("/v1/bookings?applicant=w", keyPortal)
	want(t, r, 200, "")
	if !strings.Contains(string(r.body), `"status":"held"`) || !strings.Contains(string(r.body), start) {
		t.Fatalf("watcher's bookings: %s", r.body)
	}
	r = e.get("/v1/events?after=0&limit=100", keyPortal)
	if !strings.Contains(string(r.body), `"type":"watch.matched"`) {
		t.Fatalf("no watch.matched event: %s", r.body)
	}
}

// An applicant who holds a booking of the service and watches with
// auto_hold is moved to an earlier freed seat: the same booking, a
// booking.rescheduled event, and the seat it left is free again.
func TestWatchMovesBookingEarlier(t *testing.T) {
	e := newEnv(t, nil)
	early, late := "2026-12-02T10:00:00+03:00", "2026-12-04T10:00:00+03:00"
	book := func(applicant, start string) string {
		t.Helper()
		r := e.post("/v1/bookings", keyPortal, `{"office":"office-a","service":"patent","applicant":"`+applicant+`","start":"`+start+`","confirm":true}`)
		want(t, r, 201, "")
		var b struct{ ID string }
		json.Unmarshal(r.body, &b)
		return b.ID
	}
	x := book("x", early) // office-a has two windows: both starts are full
	book("y", early)
	mine := book("m", late)
	book("z", late)
	want(t, e.post("/v1/watches", keyPortal, `{"applicant":"m","service":"patent","office":"office-a","from":"2026-12-01","to":"2026-12-05","auto_hold":true}`), 201, "")

	want(t, e.post("/v1/bookings/"+x+"/cancel", keyPortal, `{"applicant":"x"}`), 200, "")
	r := e.get("/v1/bookings/"+mine+"?applicant=m", keyPortal)
	want(t, r, 200, "")
	var b struct {
		Start       string `json:"start"`
		Status      string `json:"status"`
		Reschedules int    `json:"reschedules"`
	}
	if err := json.Unmarshal(r.body, &b); err != nil || b.Start != early || b.Status != "confirmed" || b.Reschedules != 1 {
		t.Fatalf("booking after the move: %s", r.body)
	}
	r = e.get("/v1/events?after=0&limit=100", keyPortal)
	if !strings.Contains(string(r.body), `"type":"booking.rescheduled"`) || !strings.Contains(string(r.body), `"type":"watch.matched"`) {
		t.Fatalf("events: %s", r.body)
	}
	// The seat m left is free for anyone.
	want(t, e.post("/v1/bookings", keyPortal, `{"office":"office-a","service":"patent","applicant":"bot","start":"`+late+`"}`), 201, "")
}
