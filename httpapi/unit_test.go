package httpapi

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"slotd/allocator"
	"slotd/api"
	"slotd/internal/slotdtest"
	"slotd/internal/slotdtest/testtime"
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
		if info.Status < 400 || info.Title == "" {
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
	holdExpires := time.Date(2026, 12, 1, 8, 10, 0, 0, loc)
	ref := api.Booking{ID: id.String(), Number: "O-1", Office: "o", Service: "s", Applicant: "a\"1", Namespace: "portal-a", Window: 3,
		Start: v.Start, End: v.End, Status: api.StatusHeld, HoldExpiresAt: &holdExpires, Reschedules: 1,
		History: []api.HistoryEntry{{At: time.Unix(0, 1e18).In(loc), Status: api.StatusHeld, Actor: "p", Reason: "r<"}}}
	want, _ := json.Marshal(ref)
	if got := appendBooking(nil, &v); string(got) != string(want) {
		t.Fatalf("appendBooking:\n got %s\nwant %s", got, want)
	}
}

// TestAppendersMatchAPITypes: a problem with alternatives, a day list and
// an office summary render as encoding/json renders package api's types,
// the wire contract clients decode into.
func TestAppendersMatchAPITypes(t *testing.T) {
	f := func(what string, got []byte, ref any) {
		t.Helper()
		want, err := json.Marshal(ref)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Fatalf("%s:\n got %s\nwant %s", what, got, want)
		}
	}
	loc := time.FixedZone("MSK", 3*3600)
	start := time.Date(2026, 12, 1, 9, 15, 0, 0, loc)
	opening := allocator.Opening{Office: "o", Start: start, Free: 2}
	info := api.Codes[api.CodeSlotTaken]
	f("slot_taken", appendProblem(nil, &problem{code: api.CodeSlotTaken, detail: "d", alternatives: []allocator.Opening{opening}}),
		api.Problem{Type: api.ProblemTypePrefix + api.CodeSlotTaken, Title: info.Title, Status: info.Status, Detail: "d",
			Code: api.CodeSlotTaken, Alternatives: []api.Opening{{Office: "o", Start: start, Free: 2}}})
	info = api.Codes[api.CodeNotFound]
	f("not_found", appendProblem(nil, &problem{code: api.CodeNotFound, detail: "d"}),
		api.Problem{Type: api.ProblemTypePrefix + api.CodeNotFound, Title: info.Title, Status: info.Status, Detail: "d", Code: api.CodeNotFound})
	info = api.Codes[api.CodeApplicantBlocked]
	f("applicant_blocked", appendProblem(nil, &problem{code: api.CodeApplicantBlocked, detail: "d", blockedUntil: start}),
		api.Problem{Type: api.ProblemTypePrefix + api.CodeApplicantBlocked, Title: info.Title, Status: info.Status, Detail: "d",
			Code: api.CodeApplicantBlocked, BlockedUntil: "2026-12-01T09:15:00+03:00"})

	d, _ := allocator.ParseDate("2026-12-01")
	f("days", appendDays(nil, []allocator.DayFree{{Date: d, Free: 3}, {Date: d + 1}}),
		api.Days{Days: []api.Day{{Date: "2026-12-01", Free: 3}, {Date: "2026-12-02"}}})

	cfg := slotdtest.Office("o", 2)
	cfg.Closures = []string{"2027-01-01"}
	for i := range cfg.Services {
		cfg.Services[i].Weekdays = []string{"mon"}
	}
	summary := allocator.OfficeSummary{Config: cfg, ReleasedThrough: d, FreeSeats: 7, NextFree: &opening, Load: allocator.LoadBusy}
	office := api.Office{OfficeConfig: cfg, ReleasedThrough: "2026-12-01"}
	f("office summary", appendOfficeSummary(nil, &summary),
		api.OfficeSummary{Office: office, FreeSeats: 7, NextFree: &api.Opening{Office: "o", Start: start, Free: 2}, Load: api.LoadBusy})
	summary.NextFree = nil
	f("office summary without a free start", appendOfficeSummary(nil, &summary),
		api.OfficeSummary{Office: office, FreeSeats: 7, Load: api.LoadBusy})
	f("office", appendOfficeRecord(nil, &cfg, d), office)
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
	loc := testtime.Berlin
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
		var ref api.Slots
		for _, s := range list {
			ref.Slots = append(ref.Slots, api.Slot{Start: s.Start, Free: s.Free})
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
