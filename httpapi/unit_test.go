package httpapi

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"slotd/allocator"
	"slotd/internal/slotdtest"
)

func TestLoadKeys(t *testing.T) {
	ok := `[{"key":"k-0123456789abcdef","name":"portal-a","scopes":["portal"],"offices":["*"]},
	        {"key":"k-0123456789abcdeg","name":"op","scopes":["operator","admin"],"offices":["office-a"]}]`
	keys, err := LoadKeys([]byte(ok))
	if err != nil || len(keys) != 2 {
		t.Fatalf("LoadKeys: %v", err)
	}
	bad := func(data, wantText string) {
		t.Helper()
		_, err := LoadKeys([]byte(data))
		if err == nil || !strings.Contains(err.Error(), wantText) {
			t.Fatalf("LoadKeys(%s): %v, want an error with %q", data, err, wantText)
		}
	}
	bad(`{}`, "JSON array")
	bad(`[]`, "at least one key")
	bad(`[{"key":"k-0123456789abcdef","name":"a","scopes":["portal"],"offices":["*"],"x":1}]`, "unknown field")
	bad(`[{"key":"short","name":"a","scopes":["portal"],"offices":["*"]}]`, "key must be")
	bad(`[{"key":"k-0123456789abcdef","name":"a b","scopes":["portal"],"offices":["*"]}]`, "name")
	bad(`[{"key":"k-0123456789abcdef","name":"a","scopes":["root"],"offices":["*"]}]`, "unknown scope")
	bad(`[{"key":"k-0123456789abcdef","name":"a","scopes":[],"offices":["*"]}]`, "scope")
	bad(`[{"key":"k-0123456789abcdef","name":"a","scopes":["portal"]}]`, "offices")
	bad(`[{"key":"k-0123456789abcdef","name":"a","namespace":"a\u0000b","scopes":["portal"],"offices":["*"]}]`, "namespace")
	bad(`[{"key":"k-0123456789abcdef","name":"a","namespace":7,"scopes":["portal"],"offices":["*"]}]`, "namespace")
	bad(`[{"key":"k-0123456789abcdef","name":"a","scopes":["portal"],"offices":["*"]},
	      {"key":"k-0123456789abcdeg","name":"a","scopes":["portal"],"offices":["*"]}]`, "used twice")
	bad(`[{"key":"k-0123456789abcdef","name":"a","scopes":["portal"],"offices":["*"]},
	      {"key":"k-0123456789abcdef","name":"b","scopes":["portal"],"offices":["*"]}]`, "listed twice")
}

func TestConfigValidate(t *testing.T) {
	_, err := New(Config{})
	for _, want := range []string{"Engine", "Idempotency", "Events", "Keys", "Secret"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("New(Config{}): %v, want a mention of %s", err, want)
		}
	}
}

// TestCodesComplete: every code has a status and title, and every status
// the table gives is an error status.
func TestCodesComplete(t *testing.T) {
	for code, info := range codes {
		if info.status < 400 || info.title == "" {
			t.Fatalf("code %s: %+v", code, info)
		}
	}
	for _, sc := range sentinelCodes {
		if _, ok := codes[sc.code]; !ok {
			t.Fatalf("sentinel %v maps to unknown code %s", sc.err, sc.code)
		}
	}
}

// TestAppendersMatchEncodingJSON: the hand-written appenders produce what
// encoding/json produces.
func TestAppendersMatchEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "plain", `q"uote\back`, "ctl\x00\x01\x1f\n\r\t", "<a&b>", "юникод ✓",
		"bad\xffutf8\xc3", "\u2028\u2029", strings.Repeat("x", 300)} {
		want, _ := json.Marshal(s)
		if got := appendString(nil, s); string(got) != string(want) {
			t.Fatalf("appendString(%q) = %s, want %s", s, got, want)
		}
	}
	loc := time.FixedZone("MSK", 3*3600)
	var id allocator.ID
	id[0] = 7
	v := allocator.Booking{
		BookingRecord: allocator.BookingRecord{ID: id, Office: "o", Service: "s", Applicant: "portal-a\x00a\"1", Window: 2,
			Status: allocator.StatusHeld, Reschedules: 1,
			History: allocator.HistoryOf(allocator.Transition{AtUnixNano: 1e18, Status: allocator.StatusHeld, Actor: "p", Reason: "r<"})},
		Number: "O-1", Start: time.Date(2026, 12, 1, 9, 0, 0, 0, loc), End: time.Date(2026, 12, 1, 9, 15, 0, 0, loc),
		HoldExpiresAt: time.Date(2026, 12, 1, 8, 10, 0, 0, loc),
	}
	type hist struct {
		At     string `json:"at"`
		Status string `json:"status"`
		Actor  string `json:"actor"`
		Reason string `json:"reason"`
	}
	ref := struct {
		ID            string `json:"id"`
		Number        string `json:"number"`
		Office        string `json:"office"`
		Service       string `json:"service"`
		Applicant     string `json:"applicant"`
		Namespace     string `json:"namespace"`
		Window        int    `json:"window"`
		Start         string `json:"start"`
		End           string `json:"end"`
		Status        string `json:"status"`
		HoldExpiresAt string `json:"hold_expires_at,omitempty"`
		Reschedules   int    `json:"reschedules"`
		History       []hist `json:"history"`
	}{id.String(), "O-1", "o", "s", "a\"1", "portal-a", 3, "2026-12-01T09:00:00+03:00", "2026-12-01T09:15:00+03:00", "held",
		"2026-12-01T08:10:00+03:00", 1, []hist{{time.Unix(0, 1e18).In(loc).Format(time.RFC3339), "held", "p", "r<"}}}
	want, _ := json.Marshal(ref)
	if got := appendBooking(nil, &v); string(got) != string(want) {
		t.Fatalf("appendBooking:\n got %s\nwant %s", got, want)
	}
}

func TestTicketToken(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	var id allocator.ID
	id[3] = 9
	v := allocator.Booking{BookingRecord: allocator.BookingRecord{ID: id}, Start: at(1, 9, 0)}
	tok := signTicket(secret, &v)
	if len(tok) != 75 {
		t.Fatalf("token length %d", len(tok))
	}
	if err := verifyTicket(secret, tok, &v); err != nil {
		t.Fatal(err)
	}
	if err := verifyTicket([]byte("another-secret-another-secret-xx"), tok, &v); err == nil {
		t.Fatal("a token of another secret verified")
	}
	moved := v
	moved.Start = at(2, 9, 0)
	if err := verifyTicket(secret, tok, &moved); err == nil || !strings.Contains(err.Error(), "rescheduled") {
		t.Fatalf("a token of an old start: %v", err)
	}
}

func TestICSFolding(t *testing.T) {
	line := "DESCRIPTION:" + strings.Repeat("ж", 60)
	out := string(appendFolded(nil, line))
	for _, l := range strings.Split(strings.TrimSuffix(out, "\r\n"), "\r\n") {
		if len(l) > 75 {
			t.Fatalf("folded line of %d octets", len(l))
		}
	}
	if strings.ReplaceAll(strings.TrimSuffix(out, "\r\n"), "\r\n ", "") != line {
		t.Fatal("unfolding does not restore the line")
	}
	if got := icsEscape("a,b;c\\d\ne"); got != `a\,b\;c\\d\ne` {
		t.Fatalf("icsEscape: %s", got)
	}
}

// TestPanicIsInternal: a panicking handler answers 500 internal and is
// logged as a bug; the server keeps serving.
func TestPanicIsInternal(t *testing.T) {
	e := newFuzzEnv(t)
	for _, rt := range e.srv.router.routes {
		if rt.pattern == RouteSearch {
			rt.handle = func(*Server, *request) { panic("boom") }
		}
	}
	ctx := serveDirect(e.srv, "GET", "/v1/search?service=patent", "")
	if ctx.Response.StatusCode() != 500 || !strings.Contains(string(ctx.Response.Body()), `"code":"internal"`) {
		t.Fatalf("panic answered %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	if e.logs.FilterMessage("BUG: panic in handler").Len() != 1 {
		t.Fatal("the panic was not logged")
	}
	if ctx := serveDirect(e.srv, "GET", "/v1/offices", ""); ctx.Response.StatusCode() != 200 {
		t.Fatalf("after the panic: %d", ctx.Response.StatusCode())
	}
}

// appendSlots, fed the compact starts, writes what encoding/json writes
// for Slots' answer: on an ordinary day and on the days the clocks change,
// where the starts no longer sit a fixed step apart.
func TestAppendSlotsMatchesEncodingJSON(t *testing.T) {
	cfg := slotdtest.BenchOffice(0)
	cfg.Timezone = "Europe/Berlin"
	cfg.SlotMinutes = 20
	loc := mustLoc("Europe/Berlin")
	for _, date := range []string{"2026-03-29", "2026-10-25", "2026-07-01"} {
		d, err := allocator.ParseDate(date)
		if err != nil {
			t.Fatal(err)
		}
		now := (d - 5).At(12*60, loc)
		e, _ := allocator.New(allocator.Config{Journal: &allocator.MemJournal{}})
		if _, err := e.PutOffice(now, cfg, allocator.Meta{Actor: "t"}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.Hold(now, allocator.HoldRequest{Office: cfg.ID, Service: "s", Applicant: "x", Start: d.At(60, loc)}, allocator.Meta{Actor: "t"}); err != nil {
			t.Fatal(err)
		}
		list, err := e.Slots(now, cfg.ID, d, "s")
		if err != nil {
			t.Fatal(err)
		}
		type slot struct {
			Start string `json:"start"`
			Free  int    `json:"free"`
		}
		ref := struct {
			Slots []slot `json:"slots"`
		}{}
		for _, s := range list {
			ref.Slots = append(ref.Slots, slot{s.Start.Format(time.RFC3339), s.Free})
		}
		want, _ := json.Marshal(ref)
		steps, grid, err := e.AppendSlotSteps(nil, now, cfg.ID, d, "s")
		if err != nil {
			t.Fatal(err)
		}
		if _, _, uniform := grid.Uniform(); uniform != (date == "2026-07-01") {
			t.Fatalf("%s: uniform %v", date, uniform)
		}
		if got := appendSlots(nil, &grid, steps); string(got) != string(want) {
			t.Fatalf("%s:\n got %s\nwant %s", date, got, want)
		}
	}
}
