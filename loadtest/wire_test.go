package loadtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"slotd/client"
)

// The load's requests and answers in the API's shapes: bodies are the
// generated client's request types marshalled, answers decode into its
// answer types.

func wireEngine() (*engine, *applicant) {
	e := newEngine(Config{URL: "http://127.0.0.1:1", Key: "k", Office: "msk", Service: "patent"}, nil, 1)
	return e, e.newApplicant()
}

var msk = time.FixedZone("", 3*3600)

// TestRequestBodies: every body the load sends is byte for byte what it
// sent when the bodies were maps (members in key order, times in the
// office's offset, absent members left out), and decodes into the
// client's request type with no member the spec lacks.
func TestRequestBodies(t *testing.T) {
	e, a := wireEngine()
	start := time.Date(2026, 12, 1, 9, 15, 0, 0, msk)
	midnight := time.Date(2026, 12, 1, 0, 0, 0, 0, msk)
	f := func(r request, want string, into any) {
		t.Helper()
		want = strings.ReplaceAll(want, "APPLICANT", a.id)
		if string(r.body) != want {
			t.Errorf("%s body\n%s, want\n%s", r.step, r.body, want)
		}
		dec := json.NewDecoder(bytes.NewReader(r.body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(into); err != nil {
			t.Errorf("%s body %s: %v", r.step, r.body, err)
		}
	}
	f(e.holdRequest(a, "msk", start, time.Time{}),
		`{"applicant":"APPLICANT","office":"msk","service":"patent","start":"2026-12-01T09:15:00+03:00"}`,
		new(client.HoldJSONRequestBody))
	f(e.holdRequest(a, "msk-2", time.Time{}, midnight),
		`{"applicant":"APPLICANT","earliest_after":"2026-12-01T00:00:00+03:00","office":"msk-2","service":"patent"}`,
		new(client.HoldJSONRequestBody))
	f(e.confirmRequest(a, "b/1"), `{"applicant":"APPLICANT"}`, new(client.ConfirmJSONRequestBody))
	f(e.cancelRequest(a, "b1", "plans changed"), `{"applicant":"APPLICANT","reason":"plans changed"}`, new(client.CancelJSONRequestBody))
	f(e.rescheduleRequest(a, "b1", start.Add(15*time.Minute)),
		`{"applicant":"APPLICANT","start":"2026-12-01T09:30:00+03:00"}`, new(client.RescheduleJSONRequestBody))

	if r := e.confirmRequest(a, "b/1"); r.path != "/v1/bookings/b%2F1/confirm" || r.method != "POST" || r.idemKey == "" {
		t.Errorf("confirm %s %s key %q", r.method, r.path, r.idemKey)
	}
	// Each write has its own Idempotency-Key.
	if k1, k2 := e.holdRequest(a, "msk", start, time.Time{}).idemKey, e.holdRequest(a, "msk", start, time.Time{}).idemKey; k1 == k2 {
		t.Errorf("two holds share the key %q", k1)
	}
}

// TestReadAnswers: the handler reads a booking, the starts of a day and
// a refusal from the answers slotd writes.
func TestReadAnswers(t *testing.T) {
	e, a := wireEngine()
	b := e.recordAnswer(a, &vegeta.Result{Code: 201, Body: bookingAnswer()}, client.Held)
	if b.Id != "p0yJmZ3ZQk2m0kT8vYQb1w" || b.Status != client.Confirmed || a.bookingID != b.Id ||
		len(e.created) != 1 || e.created[0].Status != client.Confirmed || e.created[0].Office != "msk" {
		t.Fatalf("booking %+v, created %+v", b, e.created)
	}
	if !e.days[CheckDay{Office: "msk", Service: "patent", Date: "2026-12-09"}] {
		t.Errorf("the booking's date is not checked: %v", e.days)
	}
	// An answer without a booking (a confirm's empty 200) keeps the
	// booking and takes the step's status.
	if b := e.recordAnswer(a, &vegeta.Result{Code: 200, Body: []byte(`{}`)}, client.Cancelled); b.Id != a.bookingID ||
		e.created[0].Status != client.Cancelled {
		t.Fatalf("empty answer: %+v, created %+v", b, e.created)
	}

	free, err := freeStarts(slotsAnswer(96), nil)
	if err != nil || len(free) != 64 || !free[0].Equal(time.Date(2026, 12, 9, 9, 0, 0, 0, msk)) || free[0].Format(time.RFC3339) != "2026-12-09T09:00:00+03:00" {
		t.Fatalf("free starts %d %v: %v", len(free), free[:min(len(free), 2)], err)
	}

	c, p := Classify(&vegeta.Result{Code: 409, Body: slotTakenAnswer()})
	if c != ClassSlotTaken || p.Code != client.ProblemCodeSlotTaken || p.Alternatives == nil || len(*p.Alternatives) != 3 ||
		(*p.Alternatives)[1].Office != "msk-2" {
		t.Fatalf("slot_taken read as %s %+v", c, p)
	}
	// Alternatives that do not parse leave the code readable.
	c, p = Classify(&vegeta.Result{Code: 409, Body: []byte(`{"alternatives":[{"start":"soon"}],"code":"slot_taken","detail":"d"}`)})
	if c != ClassSlotTaken || p.Detail != "d" {
		t.Fatalf("slot_taken with bad alternatives read as %s %+v", c, p)
	}
}

// bookingAnswer is a confirmed booking as slotd answers a hold with
// confirm:true.
func bookingAnswer() []byte {
	return []byte(`{"id":"p0yJmZ3ZQk2m0kT8vYQb1w","number":"MSK-20261209-0042","office":"msk","service":"patent",` +
		`"applicant":"gu-00010000001","namespace":"portal-a","window":17,"start":"2026-12-09T09:05:00+03:00",` +
		`"end":"2026-12-09T09:20:00+03:00","status":"confirmed","reschedules":0,"history":[` +
		`{"at":"2026-12-01T00:00:01+03:00","status":"held","actor":"portal-a","reason":""},` +
		`{"at":"2026-12-01T00:00:01+03:00","status":"confirmed","actor":"portal-a","reason":""}]}`)
}

// slotsAnswer is one day's availability of n starts every 5 minutes from
// 09:00, two in three with a free seat.
func slotsAnswer(n int) []byte {
	var b strings.Builder
	b.WriteString(`{"slots":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		at := time.Date(2026, 12, 9, 9, 0, 0, 0, msk).Add(time.Duration(i) * 5 * time.Minute)
		fmt.Fprintf(&b, `{"start":%q,"free":%d}`, at.Format(time.RFC3339), (i+1)%3)
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}

// slotTakenAnswer is a refused hold with the nearest free starts.
func slotTakenAnswer() []byte {
	return []byte(`{"type":"urn:slotd:problem:slot_taken","title":"The slot is taken","status":409,` +
		`"detail":"no free window at this start","alternatives":[` +
		`{"office":"msk","start":"2026-12-09T09:20:00+03:00","free":2},` +
		`{"office":"msk-2","start":"2026-12-09T09:05:00+03:00","free":1},` +
		`{"office":"msk","start":"2026-12-09T09:35:00+03:00","free":4}],"code":"slot_taken"}`)
}

// The handler's and the Targeters' share of the work per request: the
// generator runs on the cores of the server under test.

func BenchmarkHoldRequest(b *testing.B) {
	e, a := wireEngine()
	start := time.Date(2026, 12, 9, 9, 5, 0, 0, msk)
	b.ReportAllocs()
	for b.Loop() {
		_ = e.holdRequest(a, "msk", start, time.Time{})
	}
}

func BenchmarkConfirmRequest(b *testing.B) {
	e, a := wireEngine()
	b.ReportAllocs()
	for b.Loop() {
		_ = e.confirmRequest(a, "p0yJmZ3ZQk2m0kT8vYQb1w")
	}
}

func BenchmarkRecordAnswer(b *testing.B) {
	e, a := wireEngine()
	r := &vegeta.Result{Code: 201, Body: bookingAnswer()}
	b.ReportAllocs()
	for b.Loop() {
		_ = e.recordAnswer(a, r, client.Held)
	}
}

func BenchmarkClassifySlotTaken(b *testing.B) {
	r := &vegeta.Result{Code: 409, Body: slotTakenAnswer()}
	b.ReportAllocs()
	for b.Loop() {
		if c, _ := Classify(r); c != ClassSlotTaken {
			b.Fatal(c)
		}
	}
}

func BenchmarkFreeStarts96(b *testing.B) {
	body := slotsAnswer(96)
	var dst []time.Time
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if dst, err = freeStarts(body, dst[:0]); err != nil {
			b.Fatal(err)
		}
	}
}
