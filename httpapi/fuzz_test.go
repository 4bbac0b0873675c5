package httpapi

import (
	"bytes"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"slotd/internal/flatjson"
)

// Fuzz targets. The property of both: never a panic, never a 5xx, for any
// input; every error is a problem+json with a known code. The seeds run in
// plain go test; go test -fuzz=FuzzRequest explores further.

// keyFuzz has the portal and operator scopes: every booking route. Admin
// routes are left out: an office with a release lottery would park holds
// until a Tick the fuzz loop never runs.
const keyFuzz = "fuzz-key-0123456789"

func newFuzzEnv(t testing.TB) *env {
	return newEnv(t, func(c *Config) {
		c.Keys = append(c.Keys, Key{Key: keyFuzz, Name: "fuzz", Scopes: []string{ScopePortal, ScopeOperator}, Offices: []string{"*"}})
		c.EventsWaitMax = time.Nanosecond // wait= may only be 0: no input blocks
		c.RatePerSecond = 1e9
	})
}

var fuzzAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4242}

// serveDirect runs one request through the server's handler, without a
// connection.
func serveDirect(s *Server, method, uri, body string, hdr ...string) *fasthttp.RequestCtx {
	var req fasthttp.Request
	req.Header.SetMethod(method)
	req.SetRequestURI(uri)
	req.Header.Set("Authorization", "Bearer "+keyFuzz)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	req.SetBodyString(body)
	ctx := new(fasthttp.RequestCtx)
	ctx.Init(&req, fuzzAddr, nil)
	s.serveHTTP(ctx)
	return ctx
}

func checkAnswer(t *testing.T, ctx *fasthttp.RequestCtx) {
	t.Helper()
	status := ctx.Response.StatusCode()
	if status >= 500 {
		t.Fatalf("%s %s → %d: %s", ctx.Method(), ctx.RequestURI(), status, ctx.Response.Body())
	}
	if status >= 400 {
		var p struct {
			Code   string `json:"code"`
			Status int    `json:"status"`
			Detail string `json:"detail"`
		}
		if err := json.Unmarshal(ctx.Response.Body(), &p); err != nil {
			t.Fatalf("problem is not JSON: %v: %q", err, ctx.Response.Body())
		}
		if _, ok := codes[p.Code]; !ok || p.Status != status || p.Detail == "" {
			t.Fatalf("bad problem for %d: %s", status, ctx.Response.Body())
		}
	}
}

func FuzzRequest(f *testing.F) {
	future := "2026-12-01T09:00:00+03:00"
	add := func(method, uri, body string) { f.Add(method, uri, body) }
	add("GET", "/v1/offices?region=moscow&has_free=true", "")                                                                           // availability with filters
	add("GET", "/v1/offices/office-a/days?service=patent&from=2026-11-30&to=2026-12-31", "")                                            // days range
	add("GET", "/v1/offices/office-a/days/2026-12-01/slots?service=patent", "")                                                         // slots of a day
	add("GET", "/v1/offices/office-a/days/2026-02-30/slots?service=patent", "")                                                         // impossible date
	add("GET", "/v1/search?service=rvp&after=2026-12-01T09:00:00%2B03:00&limit=100", "")                                                // search
	add("POST", "/v1/bookings", `{"office":"office-a","service":"patent","applicant":"a-1","start":"`+future+`"}`)                      // a hold
	add("POST", "/v1/bookings", `{"office":"office-a","service":"rvp","applicant":"a-2","earliest_after":"`+future+`","confirm":true}`) // earliest_after + confirm
	add("POST", "/v1/bookings", `{"office":"office-a","service":"patent","applicant":"a-1","start":"`+future+`","x":1}`)                // unknown field
	add("POST", "/v1/bookings", `{"office":["office-a"]}`)                                                                              // wrong type
	add("POST", "/v1/bookings", `{"office":"office-a"}{}`)                                                                              // trailing data
	add("POST", "/v1/bookings", `{"applicant":"\u0000\ud800"}`)                                                                         // odd unicode
	add("POST", "/v1/bookings", `{"office":"office-a","service":"patent","applicant":"a","start":"9999-12-31T23:59:59+14:00"}`)         // far future
	add("POST", "/v1/bookings", `{"office":"office-a","service":"patent","applicant":"a","start":"0001-01-01T00:00:00Z"}`)              // far past
	add("POST", "/v1/bookings/AAAAAAAAAAAAAAAAAAAAAA/confirm", `{"applicant":"a-1"}`)                                                   // unknown booking
	add("POST", "/v1/bookings/%2F%2F/cancel?applicant=a", ``)                                                                           // escaped slashes in the id
	add("POST", "/v1/bookings/AAAAAAAAAAAAAAAAAAAAAA/reschedule", `{"applicant":"a","start":"`+future+`","office":"office-b"}`)         // reschedule
	add("POST", "/v1/bookings/AAAAAAAAAAAAAAAAAAAAAA/check-in", `{"ticket":"AAAA"}`)                                                    // short ticket
	add("GET", "/v1/bookings?applicant=a-1&status=held&from=2026-01-01&to=2027-01-01&cursor=999999999&limit=200", "")                   // my bookings
	add("GET", "/v1/offices/office-a/days/2026-12-01/bookings?status=held&service=patent&cursor=0.4.1&limit=200", "")                   // a day's agenda
	add("GET", "/v1/offices/office-a/days/2026-12-01/bookings?cursor=65536.0.1", "")                                                    // a cursor out of range
	add("GET", "/v1/bookings?number=OFFICE-A-20261201-0001&applicant=a-1", "")                                                          // lookup by number
	add("GET", "/v1/bookings?number=OFFICE-A-20260230-99999999999", "")                                                                 // impossible date, seq out of range
	add("GET", "/v1/bookings/AAAAAAAAAAAAAAAAAAAAAA/calendar.ics", "")                                                                  // calendar of nothing
	add("GET", "/v1/events?after=18446744073709551615&limit=1000", "")                                                                  // last cursor
	add("GET", "/v1/events?after=1e3", "")                                                                                              // not an integer
	add("PATCH", "/v1/bookings", "")                                                                                                    // wrong method
	add("GET", "//v1//offices/../offices", "")                                                                                          // path normalisation
	add("GET", "/v1/offices/"+strings.Repeat("a", 2000), "")                                                                            // long segment
	add("GET", "*", "")                                                                                                                 // asterisk form
	add("POST", "/v1/bookings", `{"office":"office-a","service":"patent","applicant":"a`+"\xff"+`","start":"`+future+`"}`)              // invalid UTF-8 in an id: 400, never U+FFFD
	add("POST", "/v1/bookings", `{"office":"office-a","service":"patent","applicant":"a\udc00","start":"`+future+`"}`)                  // a lone surrogate escape in an id
	add("POST", "/v1/bookings", `{"office":"office-a","service":"patent","applicant":"\ud83d\ude00","start":"`+future+`"}`)             // a surrogate pair: valid text
	add("GET", "/v1/bookings?applicant=a%FF", "")                                                                                       // invalid UTF-8 in a query id
	add("DELETE", "/v1/watches/AAAAAAAAAAAAAAAAAAAAAA?applicant=%C3", "")                                                               // a truncated sequence in a query id
	e := newFuzzEnv(f)
	f.Fuzz(func(t *testing.T, method, uri, body string) {
		checkAnswer(t, serveDirect(e.srv, method, uri, body))
	})
}

// FuzzBookingBody fuzzes the bodies of the booking actions against a
// booking that exists, so decoding reaches the engine.
func FuzzBookingBody(f *testing.F) {
	f.Add("confirm", `{"applicant":"a-1"}`)                                          // the happy confirm
	f.Add("cancel", `{"applicant":"a-1","reason":"`+strings.Repeat("r", 600)+`"}`)   // over-long reason
	f.Add("reschedule", `{"applicant":"a-1","start":"2026-12-02T10:00:00+03:00"}`)   // a move
	f.Add("reschedule", `{"applicant":"a-1","start":"2026-12-02T10:00:00.5+03:00"}`) // fractional seconds
	f.Add("check-in", `{"ticket":"`+strings.Repeat("A", 75)+`"}`)                    // a ticket of the right length
	f.Add("no-show", `{"reason":null}`)                                              // null for a string
	f.Add("force-cancel", `   `)                                                     // whitespace body
	f.Add("approve-cancel", `{"reason":1e400}`)                                      // number out of range
	f.Add("confirm", `{"applicant":"a-1`+"\xfe"+`"}`)                                // invalid UTF-8 in the applicant
	f.Add("cancel", `{"applicant":"a-1\ud800"}`)                                     // a lone surrogate escape in the applicant
	e := newFuzzEnv(f)
	id := e.mustHold("office-a", "patent", "a-1", at(1, 9, 0), false)
	f.Fuzz(func(t *testing.T, action, body string) {
		checkAnswer(t, serveDirect(e.srv, "POST", "/v1/bookings/"+id+"/"+action, body, "Idempotency-Key", body[:min(len(body), 8)]+"k"))
	})
}

// FuzzRouter: a matched route's pattern, filled with the parameters,
// gives back the path; nothing panics.
func FuzzRouter(f *testing.F) {
	f.Add("/v1/offices")                         // a literal route
	f.Add("/v1/offices/x/days/2026-01-01/slots") // two parameters
	f.Add("/v1/bookings/abc/ticket.png")         // a dotted literal
	f.Add("/v1/bookings//confirm")               // an empty parameter
	f.Add("/v1/offices/x/")                      // a trailing slash
	f.Add("v1/offices")                          // no leading slash
	f.Add("")                                    // empty
	rt := newRouter((&Server{}).routes())
	f.Fuzz(func(t *testing.T, path string) {
		for _, method := range []string{"GET", "POST", "PUT"} {
			var params [paramsMax]string
			r, _ := rt.match(method, path, &params)
			if r == nil {
				continue
			}
			got := r.pattern
			for i, name := range r.params {
				if params[i] == "" {
					t.Fatalf("%s matched %s with empty {%s}", path, r.pattern, name)
				}
				got = strings.Replace(got, "{"+name+"}", params[i], 1)
			}
			if got != path {
				t.Fatalf("%s matched %s, which fills to %s", path, r.pattern, got)
			}
		}
	})
}

// FuzzDecodeBody: for any body, decodeBody (flatjson first) gives what
// encoding/json alone gives, for each body type that takes flatjson's way:
// the same error, word for word, or the same values.
func FuzzDecodeBody(f *testing.F) {
	for _, s := range []string{
		`{"office":"msk-mfc-tverskoy","service":"patent","applicant":"a-123","earliest_after":"2026-12-01T10:00:00+03:00"}`,
		`{"office":"o","service":"s","applicant":"a","start":"2026-12-01T10:00:00+03:00","confirm":true}`,
		` {"applicant" : "a-1", "reason":"plans changed"} `, `{"applicant":"a-1","start":"x","office":"o"}`,
		``, `   `, `{}`, `{"applicant":"a\u0041"}`, `{"Applicant":"a"}`, `{"applicant":"a"} {}`, `{"confirm":"yes"}`,
		`{"applicant":null}`, `{"bogus":1}`, `{"applicant":"é"}`, `{"applicant":"a",}`, `[]`,
		// Invalid UTF-8 and lone surrogates are refused, never read as
		// U+FFFD; pairs and U+FFFD itself are text.
		"{\"applicant\":\"a\xff\"}", "{\"applicant\":\"\xc3\"}", "{\"reason\":\"\xed\xa0\x80\"}",
		`{"applicant":"\ud800"}`, `{"applicant":"\udc00\ud800"}`, `{"applicant":"\ud800\u12"}`, `{"applicant":"\\ud800"}`,
		`{"applicant":"\ud83d\ude00"}`, `{"applicant":"\uFFFD"}`, "{\"applicant\":\"\xef\xbf\xbd\"}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		sameDecodeBody(t, body, new(holdBody), new(holdBody))
		sameDecodeBody(t, body, new(applicantBody), new(applicantBody))
		sameDecodeBody(t, body, new(rescheduleBody), new(rescheduleBody))
		// Nothing is replaced: a U+FFFD read was sent as one.
		var h holdBody
		if decodeBody(body, &h) == nil && strings.Contains(h.Applicant, "\uFFFD") &&
			!bytes.Contains(body, []byte("\uFFFD")) && !bytes.Contains(bytes.ToLower(body), []byte(`\ufffd`)) {
			t.Fatalf("%q: the applicant %q holds a U+FFFD the body did not send", body, h.Applicant)
		}
	})
}

func sameDecodeBody[T comparable](t *testing.T, body []byte, got, want *T) {
	t.Helper()
	errGot, errWant := decodeBody(body, got), decodeBodyJSON(body, want)
	if (errGot == nil) != (errWant == nil) || errGot != nil && errGot.Error() != errWant.Error() {
		t.Fatalf("%q into %T: decodeBody says %v, encoding/json says %v", body, got, errGot, errWant)
	}
	if errGot == nil && *got != *want {
		t.Fatalf("%q into %T: read as %+v, encoding/json reads %+v", body, got, *got, *want)
	}
}

// The portal's plain bodies take flatjson's way.
func TestDecodeBodyPlainIsFlat(t *testing.T) {
	var h holdBody
	if !flatjson.Decode([]byte(`{"office":"o","service":"s","applicant":"a","start":"2026-12-01T10:00:00+03:00","confirm":true}`), &h) || !h.Confirm || h.Start == "" {
		t.Fatalf("hold body: %+v", h)
	}
	var a applicantBody
	if !flatjson.Decode([]byte(`{"applicant":"a-1","reason":"x"}`), &a) || a.Reason != "x" {
		t.Fatalf("applicant body: %+v", a)
	}
}
