package loadtest

import (
	"net/http"
	"testing"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

func TestClassify(t *testing.T) {
	f := func(code uint16, body string, want Class) {
		t.Helper()
		got, _ := Classify(&vegeta.Result{Code: code, Body: []byte(body)})
		if got != want {
			t.Errorf("Classify(%d, %s) = %s, want %s", code, body, got, want)
		}
	}
	f(0, "", ClassError) // transport error or timeout
	f(200, `{"slots":[]}`, ClassOK)
	f(201, `{"id":"b1","status":"held"}`, ClassOK)
	f(409, `{"status":409,"code":"slot_taken","alternatives":[{"office":"o","start":"s","free":1}]}`, ClassSlotTaken)
	f(409, `{"code":"duplicate_booking"}`, ClassDuplicate)
	f(409, `{"code":"invalid_transition"}`, ClassRefused)
	f(409, `{"code":"idempotency_in_flight"}`, ClassRefused)
	f(422, `{"code":"not_released"}`, ClassNotReleased)
	f(422, `{"code":"limit_reached"}`, ClassRefused)
	f(404, `{"code":"not_found"}`, ClassRefused)
	f(429, `{"code":"rate_limited"}`, ClassRateLimited)
	f(429, ``, ClassRateLimited) // a proxy's 429 without a body
	f(503, `{"code":"overloaded"}`, ClassShed)
	f(503, `{"code":"not_ready"}`, ClassShed)
	f(503, `{"code":"degraded"}`, ClassShed)
	f(503, `<html>busy</html>`, ClassShed)
	f(500, `{"code":"internal"}`, ClassError)
	f(400, `not json`, ClassError) // a 4xx without a code is a client bug
	f(502, ``, ClassError)

	_, p := Classify(&vegeta.Result{Code: 409, Body: []byte(`{"code":"slot_taken","alternatives":[{"office":"o2","start":"2026-12-01T09:15:00+03:00","free":3}]}`)})
	if p.Alternatives == nil || len(*p.Alternatives) != 1 || (*p.Alternatives)[0].Office != "o2" || (*p.Alternatives)[0].Free != 3 {
		t.Errorf("alternatives not decoded: %+v", p)
	}
}

func TestOutcomeOf(t *testing.T) {
	for _, c := range classes {
		if c == ClassOK {
			continue
		}
		if o := outcomeOf(c); o == "" {
			t.Errorf("outcomeOf(%s) is empty", c)
		}
	}
	if outcomeOf(ClassShed) != OutcomeShed || outcomeOf(ClassRateLimited) != OutcomeRateLimited || outcomeOf(ClassError) != OutcomeError {
		t.Error("shed, rate-limited and errors must map to their own outcomes")
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	f := func(value string, want time.Duration) {
		t.Helper()
		h := http.Header{}
		if value != "" {
			h.Set("Retry-After", value)
		}
		if got := retryAfter(h, now, 100*time.Millisecond, 2*time.Second); got != want {
			t.Errorf("Retry-After %q: %v, want %v", value, got, want)
		}
	}
	f("", 100*time.Millisecond)                                  // none: the fallback
	f("1", time.Second)                                          // seconds
	f("0", 0)                                                    // retry at once
	f("3600", 2*time.Second)                                     // capped
	f("soon", 100*time.Millisecond)                              // unreadable: the fallback
	f(now.Add(time.Second).Format(http.TimeFormat), time.Second) // an HTTP date
	f(now.Add(-time.Hour).Format(http.TimeFormat), 0)            // a date in the past
}

func TestParseTag(t *testing.T) {
	e := &engine{cfg: Config{URL: "http://127.0.0.1:8080"}, header: http.Header{}}
	var tgt vegeta.Target
	e.target(request{app: 42, step: stepConfirm, method: "POST", path: "/v1/bookings/x/confirm", body: []byte("{}"), idemKey: "k"}, &tgt)
	s, app, ok := parseTag(tgt.URL)
	if !ok || s != stepConfirm || app != 42 {
		t.Fatalf("parseTag(%q) = %v %d %v", tgt.URL, s, app, ok)
	}
	if tgt.Header.Get("Idempotency-Key") != "k" || e.header.Get("Idempotency-Key") != "" {
		t.Fatal("the Idempotency-Key must be on the write and not leak into the shared header")
	}
	req, err := tgt.Request()
	if err != nil || req.URL.RequestURI() != "/v1/bookings/x/confirm" {
		t.Fatalf("the tag must not reach the wire: %v %q", err, req.URL.RequestURI())
	}
	for _, bad := range []string{"http://h/x", "http://h/x#", "http://h/x#hold", "http://h/x#nope.1", "http://h/x#hold.-1", "http://h/x#hold.z"} {
		if _, _, ok := parseTag(bad); ok {
			t.Errorf("parseTag(%q) accepted", bad)
		}
	}
}
