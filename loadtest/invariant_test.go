package loadtest

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"slotd/client"
)

// cannedServer serves fixed JSON per request URI, its query in key order
// (a client may send the parameters in any order): a fake that tests the
// checker's logic, not slotd (the end-to-end test and make loadtest run
// against the real server).
type cannedServer struct {
	mu       sync.Mutex
	answers  map[string][]string // request URI → answers, the last repeats
	served   map[string]int
	authSeen string
}

func newCanned(t *testing.T) (*cannedServer, *apiClient) {
	cs := &cannedServer{answers: map[string][]string{}, served: map[string]int{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cs.mu.Lock()
		defer cs.mu.Unlock()
		cs.authSeen = r.Header.Get("Authorization")
		uri := r.URL.EscapedPath()
		if q := r.URL.Query(); len(q) > 0 {
			uri += "?" + q.Encode()
		}
		list, ok := cs.answers[uri]
		if !ok {
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"status":404,"code":"not_found","detail":"no such thing"}`))
			return
		}
		n := cs.served[uri]
		cs.served[uri]++
		body := list[min(n, len(list)-1)]
		if strings.HasPrefix(body, "429 ") {
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusTooManyRequests)
			body = body[4:]
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	return cs, &apiClient{base: srv.URL, key: "k", http: srv.Client(), attemptsMax: 3, retryAfterMax: time.Millisecond}
}

func (cs *cannedServer) on(uri string, bodies ...string) { cs.answers[uri] = bodies }

func bookingJSON(id, applicant, status, start, end string, window int) string {
	return `{"id":"` + id + `","office":"o","service":"s","applicant":"` + applicant + `","window":` +
		itoa(window) + `,"start":"` + start + `","end":"` + end + `","status":"` + status + `"}`
}

func itoa(n int) string { return strconv.Itoa(n) }

const (
	t0915 = "2026-12-01T09:15:00+03:00"
	t0930 = "2026-12-01T09:30:00+03:00"
	t0945 = "2026-12-01T09:45:00+03:00"
	t1000 = "2026-12-01T10:00:00+03:00"
)

func check(t *testing.T, c *apiClient, in CheckInput) CheckReport {
	t.Helper()
	rep, err := CheckInvariants(context.Background(), c, in)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func wantViolations(t *testing.T, rep CheckReport, want ...string) {
	t.Helper()
	if rep.ViolationsTotal != len(want) {
		t.Fatalf("%d violations %q, want %d like %q", rep.ViolationsTotal, rep.Violations, len(want), want)
	}
	for _, w := range want {
		found := false
		for _, v := range rep.Violations {
			found = found || strings.Contains(v, w)
		}
		if !found {
			t.Errorf("no violation mentions %q: %q", w, rep.Violations)
		}
	}
}

func TestCheckAllGood(t *testing.T) {
	cs, c := newCanned(t)
	cs.on("/v1/bookings/b1?applicant=a1", bookingJSON("b1", "a1", "confirmed", t0915, t0930, 1))
	cs.on("/v1/bookings/b2?applicant=a2", bookingJSON("b2", "a2", "confirmed", t0915, t0930, 2)) // other window
	cs.on("/v1/bookings/b3?applicant=a3", bookingJSON("b3", "a3", "held", t0930, t0945, 1))      // next step
	cs.on("/v1/bookings/b4?applicant=a4", bookingJSON("b4", "a4", "cancelled", t0915, t0930, 1)) // terminal: no seat
	cs.on("/v1/bookings/b5?applicant=a5", bookingJSON("b5", "a5", "expired", t0915, t0930, 1))   // a hold left alone
	cs.on("/v1/bookings/b6?applicant=a6", bookingJSON("b6", "a6", "confirmed", t0945, t1000, 1)) // unanswered confirm
	cs.on("/v1/offices/o/days?from=2026-12-01&service=s&to=2026-12-01", `{"days":[{"date":"2026-12-01","free":5}]}`)
	cs.on("/v1/offices/o/days/2026-12-01/slots?service=s", `{"slots":[{"start":"`+t0915+`","free":0},{"start":"`+t0930+`","free":2},{"start":"`+t0945+`","free":3}]}`)
	rep := check(t, c, CheckInput{
		Bookings: []CreatedBooking{
			{ID: "b1", Applicant: "a1", Status: "confirmed"},
			{ID: "b2", Applicant: "a2", Status: "confirmed"},
			{ID: "b3", Applicant: "a3", Status: "held"},
			{ID: "b4", Applicant: "a4", Status: "cancelled"},
			{ID: "b5", Applicant: "a5", Status: "held"},
			{ID: "b6", Applicant: "a6", Status: "held", Pending: "confirmed"},
		},
		Days: []CheckDay{{Office: "o", Service: "s", Date: "2026-12-01"}},
	})
	wantViolations(t, rep)
	if rep.Bookings != 6 || rep.ActiveBookings != 4 || rep.Days != 1 || !rep.OK() {
		t.Fatalf("report %+v", rep)
	}
	if cs.authSeen != "Bearer k" {
		t.Fatalf("Authorization %q", cs.authSeen)
	}
}

func TestCheckFindsDoubleOwnedSeat(t *testing.T) {
	cs, c := newCanned(t)
	cs.on("/v1/bookings/b1?applicant=a1", bookingJSON("b1", "a1", "confirmed", t0915, t0930, 3))
	cs.on("/v1/bookings/b2?applicant=a2", bookingJSON("b2", "a2", "held", t0915, t0930, 3))
	// A two-step booking at 09:30-10:00 overlaps one at 09:45.
	cs.on("/v1/bookings/b3?applicant=a3", bookingJSON("b3", "a3", "confirmed", t0930, t1000, 4))
	cs.on("/v1/bookings/b4?applicant=a4", bookingJSON("b4", "a4", "cancel_requested", t0945, t1000, 4))
	rep := check(t, c, CheckInput{Bookings: []CreatedBooking{
		{ID: "b1", Applicant: "a1", Status: "confirmed"},
		{ID: "b2", Applicant: "a2", Status: "held"},
		{ID: "b3", Applicant: "a3", Status: "confirmed"},
		{ID: "b4", Applicant: "a4", Status: "cancel_requested"},
	}})
	wantViolations(t, rep, "window 3: b1", "window 4: b3")
}

func TestCheckFindsStatusAndPresence(t *testing.T) {
	cs, c := newCanned(t)
	cs.on("/v1/bookings/b1?applicant=a1", bookingJSON("b1", "a1", "held", t0915, t0930, 1))           // confirmed lost
	cs.on("/v1/bookings/b2?applicant=a2", bookingJSON("b2", "a2", "expired", t0930, t0945, 1))        // a confirmed booking cannot expire
	cs.on("/v1/bookings/b4?applicant=a4", "429 {}", bookingJSON("b4", "a4", "held", t0945, t1000, 1)) // rate limited once
	rep := check(t, c, CheckInput{Bookings: []CreatedBooking{
		{ID: "b1", Applicant: "a1", Status: "confirmed"},
		{ID: "b2", Applicant: "a2", Status: "confirmed"},
		{ID: "b3", Applicant: "a3", Status: "held"}, // gone
		{ID: "b4", Applicant: "a4", Status: "held"},
	}})
	wantViolations(t, rep, `b1 (a1): status "held"`, `b2 (a2): status "expired"`, "b3 (a3): cannot read it back")
}

func TestCheckCounters(t *testing.T) {
	cs, c := newCanned(t)
	days := "/v1/offices/o/days?from=2026-12-01&service=s&to=2026-12-01"
	slots := "/v1/offices/o/days/2026-12-01/slots?service=s"
	// Moving counters: the first pair of /days reads disagrees, then all agree.
	cs.on(days, `{"days":[{"date":"2026-12-01","free":9}]}`, `{"days":[{"date":"2026-12-01","free":8}]}`)
	cs.on(slots, `{"slots":[{"start":"`+t0915+`","free":4},{"start":"`+t0930+`","free":4}]}`)
	// A broken day: stable, and the slots say 3 where /days says 4.
	days2 := "/v1/offices/o/days?from=2026-12-02&service=s&to=2026-12-02"
	cs.on(days2, `{"days":[{"date":"2026-12-02","free":4}]}`)
	cs.on("/v1/offices/o/days/2026-12-02/slots?service=s", `{"slots":[{"start":"2026-12-02T09:00:00+03:00","free":3}]}`)
	// A day that is not listed has no free seats; its slots must agree.
	days3 := "/v1/offices/o/days?from=2026-12-03&service=s&to=2026-12-03"
	cs.on(days3, `{"days":[]}`)
	cs.on("/v1/offices/o/days/2026-12-03/slots?service=s", `{"slots":[{"start":"2026-12-03T09:00:00+03:00","free":0}]}`)
	rep := check(t, c, CheckInput{Days: []CheckDay{
		{Office: "o", Service: "s", Date: "2026-12-01"},
		{Office: "o", Service: "s", Date: "2026-12-02"},
		{Office: "o", Service: "s", Date: "2026-12-03"},
	}})
	wantViolations(t, rep, "2026-12-02: /days says 4 free, the slots of that date sum to 3")
	if rep.Days != 3 {
		t.Fatalf("report %+v", rep)
	}
}

func TestCheckSeatsUnit(t *testing.T) {
	// Nested runs: a long booking covering two later short ones at one
	// window is caught for both, even though the short ones do not overlap
	// each other.
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	ck := &checker{}
	checkSeats(ck, []client.Booking{
		{Id: "long", Office: "o", Window: 1, Start: at(t0915), End: at(t1000), Status: "confirmed"},
		{Id: "s1", Office: "o", Window: 1, Start: at(t0930), End: at(t0945), Status: "held"},
		{Id: "s2", Office: "o", Window: 1, Start: at(t0945), End: at(t1000), Status: "held"},
		{Id: "bad", Office: "o", Window: 1, Status: "held"}, // no start
	})
	wantViolations(t, ck.rep, "s1", "s2", "bad")
}
