package httpapi

import (
	"encoding/json"
	"testing"
	"time"

	"slotd/allocator"
	"slotd/api"
)

// End-to-end tests of the booking rules of DESIGN §1 that span offices
// or read the policy's newer fields.

// putOffice replaces or creates cfg's office over HTTP, as an admin does.
func (e *env) putOffice(cfg allocator.OfficeConfig, status int) {
	e.t.Helper()
	body, err := json.Marshal(&cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	want(e.t, e.call("PUT", "/v1/offices/"+cfg.ID, keyAdmin, string(body)), status, "")
}

// addServices gives office (office-a or office-b) one-step services ids
// besides patent and rvp, for tests that need more services than an
// applicant may book (a service is booked once across offices).
func (e *env) addServices(office string, ids ...string) {
	e.t.Helper()
	cfg := testOffice(office)
	for _, id := range ids {
		cfg.Services = append(cfg.Services, allocator.ServiceConfig{ID: id, Name: id, Slots: 1})
	}
	if _, err := e.eng.PutOffice(e.clock.Now(), cfg, allocator.Meta{Actor: "setup"}); err != nil {
		e.t.Fatal(err)
	}
}

// TestDuplicateServiceAcrossOfficesE2E: one active booking per applicant
// per service across all offices: patent at office-a makes patent at
// office-b a duplicate (409), while another service there is booked.
func TestDuplicateServiceAcrossOfficesE2E(t *testing.T) {
	e := newEnv(t, nil)
	e.mustHold("office-a", "patent", "a-1", at(1, 9, 0), true)
	want(t, e.post("/v1/bookings", keyPortal, holdJSON("office-b", "patent", "a-1", at(2, 9, 0))), 409, api.CodeDuplicateBooking)
	e.mustHold("office-b", "rvp", "a-1", at(2, 9, 0), false)
	// Another applicant books the same service at office-b.
	e.mustHold("office-b", "patent", "a-2", at(2, 9, 0), false)
}

// TestMinNoticeE2E: with min_notice 2h, at 08:00 a start at 10:00 is
// refused with 422 not_released, 10:15 is booked, and the day's slots
// begin at 10:15.
func TestMinNoticeE2E(t *testing.T) {
	e := newEnv(t, nil)
	cfg := testOffice("office-a")
	cfg.Policy.MinNotice = allocator.Duration(2 * time.Hour)
	e.putOffice(cfg, 200)
	if got := e.get("/v1/offices/office-a", keyPortal); got.obj(t)["policy"].(map[string]any)["min_notice"] != "2h0m0s" {
		t.Fatalf("office: %s", got.body)
	}
	want(t, e.post("/v1/bookings", keyPortal, holdJSON("office-a", "patent", "a-1", at(0, 10, 0))), 422, api.CodeNotReleased)
	slots := decodeSlots(t, e.get("/v1/offices/office-a/days/2026-11-30/slots?service=patent", keyPortal))
	if len(slots) == 0 || slots[0].Start != "2026-11-30T10:15:00+03:00" {
		t.Fatalf("first slot %v, want 10:15", slots)
	}
	e.mustHold("office-a", "patent", "a-1", at(0, 10, 15), false)
	// A negative notice is a validation failure, not a rule.
	cfg.Policy.MinNotice = allocator.Duration(-time.Minute)
	body, _ := json.Marshal(&cfg)
	want(t, e.call("PUT", "/v1/offices/office-a", keyAdmin, string(body)), 400, api.CodeValidationFailed)
}

// TestBlockedUntilE2E: applicant_blocked carries blocked_until, the end
// of the block (the third penalised cancel + 168h) in the office's offset.
func TestBlockedUntilE2E(t *testing.T) {
	e := newEnv(t, nil)
	for i := range 3 {
		id := e.mustHold("office-a", "patent", "a-1", at(2+i, 10, 0), true)
		want(t, e.post("/v1/bookings/"+id+"/cancel", keyPortal, `{"applicant":"a-1"}`), 200, "")
	}
	e.setNow(t0.Add(time.Hour))
	r := e.post("/v1/bookings", keyPortal, holdJSON("office-b", "rvp", "a-1", at(2, 11, 0)))
	want(t, r, 422, api.CodeApplicantBlocked)
	var p api.Problem
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatal(err)
	}
	if p.BlockedUntil != "2026-12-07T08:00:00+03:00" {
		t.Fatalf("blocked_until %q, want 2026-12-07T08:00:00+03:00: %s", p.BlockedUntil, r.body)
	}
	// Other refusals carry no blocked_until.
	r = e.post("/v1/bookings", keyPortal, holdJSON("office-a", "patent", "a-2", at(2, 10, 0)))
	want(t, r, 201, "")
	r = e.post("/v1/bookings", keyPortal, holdJSON("office-a", "patent", "a-2", at(2, 10, 15)))
	want(t, r, 409, api.CodeDuplicateBooking)
	if _, ok := r.obj(t)["blocked_until"]; ok {
		t.Fatalf("blocked_until on another code: %s", r.body)
	}
}

// TestOnlineCancelOffE2E: a confirmed booking of a service with
// online_cancel false is refused to the portal (422 cancel_not_online,
// the booking stays confirmed) and cancelled by an operator's
// force-cancel.
func TestOnlineCancelOffE2E(t *testing.T) {
	e := newEnv(t, nil)
	cfg := testOffice("office-a")
	off := false
	cfg.Services[0].OnlineCancel = &off
	e.putOffice(cfg, 200)
	id := e.mustHold("office-a", "patent", "a-1", at(3, 10, 0), true)
	want(t, e.post("/v1/bookings/"+id+"/cancel", keyPortal, `{"applicant":"a-1"}`), 422, api.CodeCancelNotOnline)
	if got := e.get("/v1/bookings/"+id+"?applicant=a-1", keyPortal); got.str(t, "status") != "confirmed" {
		t.Fatalf("after a refused cancel: %s", got.body)
	}
	r := e.post("/v1/bookings/"+id+"/force-cancel", keyOperatorAll, `{"reason":"applicant called the office"}`)
	want(t, r, 200, "")
	if r.str(t, "status") != "cancelled" {
		t.Fatalf("force-cancel: %s", r.body)
	}
	// The other service keeps the default: cancelled online.
	id = e.mustHold("office-a", "rvp", "a-1", at(3, 10, 0), true)
	want(t, e.post("/v1/bookings/"+id+"/cancel", keyPortal, `{"applicant":"a-1"}`), 200, "")
}

// TestDaysHasFree: has_free=true leaves out a day whose starts are all
// taken; without it the day is listed with free 0.
func TestDaysHasFree(t *testing.T) {
	e := newEnv(t, nil)
	cfg := testOffice("tiny")
	cfg.Windows = 1
	cfg.Hours = map[string][]string{"tue": {"09:00-09:30"}, "wed": {"09:00-09:30"}}
	e.putOffice(cfg, 201)
	e.mustHold("tiny", "patent", "a-1", at(1, 9, 0), false)
	e.mustHold("tiny", "patent", "a-2", at(1, 9, 15), false)
	days := func(query string) string {
		t.Helper()
		r := e.get("/v1/offices/tiny/days?service=patent&from=2026-12-01&to=2026-12-02"+query, keyPortal)
		want(t, r, 200, "")
		return string(r.body)
	}
	if got := days(""); got != `{"days":[{"date":"2026-12-01","free":0},{"date":"2026-12-02","free":2}]}` {
		t.Fatalf("days: %s", got)
	}
	if got := days("&has_free=true"); got != `{"days":[{"date":"2026-12-02","free":2}]}` {
		t.Fatalf("days?has_free=true: %s", got)
	}
	if got := days("&has_free=false"); got != days("") {
		t.Fatalf("days?has_free=false: %s", got)
	}
	want(t, e.get("/v1/offices/tiny/days?service=patent&has_free=yes", keyPortal), 400, api.CodeValidationFailed)
}

// TestWorkingDayCutoffsE2E: with reschedule_cutoff_working_days 3 a
// reschedule must come on or before the third working day before the
// start's date, counted in the office's working days: across a weekend
// (a Monday start: Wednesday is the last day, Thursday is late though the
// start is four days away) and around a closure (a Friday start with
// Wednesday closed: Monday is the last day, Tuesday is late). With
// cancel_cutoff_working_days 2 a cancel after its last day is a late
// cancel (cancel_requested), as inside cancel_cutoff.
func TestWorkingDayCutoffsE2E(t *testing.T) {
	e := newEnv(t, nil)
	cfg := testOffice("office-a")
	cfg.Policy.RescheduleCutoffWorkingDays = 3
	cfg.Policy.CancelCutoffWorkingDays = 2
	cfg.Services[1].Reschedulable = true
	e.putOffice(cfg, 200)
	reschedule := func(id string, now, start time.Time, status int, code string) {
		t.Helper()
		e.setNow(now)
		want(t, e.post("/v1/bookings/"+id+"/reschedule", keyPortal, `{"applicant":"a-1","start":"`+ts(start)+`"}`), status, code)
	}
	// Weekend: Monday 7 December; its working days before are Fri 4,
	// Thu 3, Wed 2.
	monday := e.mustHold("office-a", "patent", "a-1", at(7, 10, 0), true)
	reschedule(monday, at(3, 9, 0), at(7, 11, 0), 422, api.CodeTooLateToReschedule)
	reschedule(monday, at(2, 18, 0), at(7, 11, 0), 200, "")

	// Closure: Friday 11 December with Wednesday 9 closed; its working
	// days before are Thu 10, Tue 8, Mon 7.
	want(t, e.post("/v1/offices/office-a/closures", keyAdmin, `{"date":"2026-12-09","reason":"inventory"}`), 200, "")
	e.setNow(t0)
	friday := e.mustHold("office-a", "rvp", "a-1", at(11, 10, 0), true)
	reschedule(friday, at(8, 9, 0), at(11, 14, 0), 422, api.CodeTooLateToReschedule)
	reschedule(friday, at(7, 18, 0), at(11, 14, 0), 200, "")

	// Cancel: Monday 14 December; its two working days before are Fri 11
	// and Thu 10.
	e.setNow(t0)
	late := e.mustHold("office-a", "patent", "a-2", at(14, 10, 0), true)
	early := e.mustHold("office-a", "rvp", "a-2", at(14, 10, 0), true)
	e.setNow(at(11, 9, 0)) // 73h before, beyond the 24h cutoff: late by working days
	r := e.post("/v1/bookings/"+late+"/cancel", keyPortal, `{"applicant":"a-2"}`)
	want(t, r, 200, "")
	if r.str(t, "status") != "cancel_requested" {
		t.Fatalf("cancel a working day before: %s", r.body)
	}
	e.setNow(at(10, 9, 0))
	r = e.post("/v1/bookings/"+early+"/cancel", keyPortal, `{"applicant":"a-2"}`)
	want(t, r, 200, "")
	if r.str(t, "status") != "cancelled" {
		t.Fatalf("cancel two working days before: %s", r.body)
	}
}
