package peers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"slotd/api"
	"slotd/client"
	"slotd/internal/flatjson"
)

// testLayout is a small office: 4 windows × 12 starts = 48 seats a date.
func testLayout(dates int) Layout {
	l := DefaultLayout(time.Now(), dates)
	l.Windows, l.OpenMinute, l.CloseMinute = 4, 8*60, 9*60
	return l
}

func openTestSlotd(t *testing.T, lay Layout) Backend {
	t.Helper()
	b, err := OpenSlotd(t.TempDir(), lay)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// serveEdge serves b on a real loopback listener and returns its address.
func serveEdge(t *testing.T, b Backend, lay Layout) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: NewEdge(b, lay), MaxRequestBodySize: requestBodyBytesMax}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return ln.Addr().String()
}

// rushTest runs a small contended rush through the edge and checks the
// outcome and the stored state (Verify).
func rushTest(t *testing.T, b Backend, lay Layout) {
	t.Helper()
	r := Rush{
		Layout: lay, Workers: 8, ApplicantsPerDate: lay.Seats() * 3 / 2, CancelEvery: 5, ReadAvailability: true,
		DurationMax: time.Minute, Addr: serveEdge(t, b, lay), RequestTimeout: 10 * time.Second,
	}
	out, err := GenerateHTTP(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	res := out.Result
	if res.Errors != 0 || res.Cut {
		t.Fatalf("%d errors (first: %s), cut %v", res.Errors, res.FirstError, res.Cut)
	}
	// More applicants than seats: every seat is sold at least once, and
	// an applicant is turned away only once all seats were taken.
	seats := lay.Seats() * len(lay.Dates)
	if res.Bookings < seats || res.Bookings-res.Cancels > seats || res.SoldOut == 0 || res.Cancels == 0 {
		t.Fatalf("result %+v: want every one of %d seats sold, some cancels, some turned away", res, seats)
	}
	if res.Bookings+res.SoldOut != r.ApplicantsPerDate*len(lay.Dates) {
		t.Fatalf("%d booked + %d turned away, want %d applicants", res.Bookings, res.SoldOut, r.ApplicantsPerDate*len(lay.Dates))
	}
	if err := Verify(context.Background(), b, &lay, out.Acked, false); err != nil {
		t.Fatal(err)
	}
}

// TestSlotdRushOverHTTP runs the generator against the edge on the real
// slotd path (engine on a wal in a temporary directory).
func TestSlotdRushOverHTTP(t *testing.T) {
	lay := testLayout(2)
	rushTest(t, openTestSlotd(t, lay), lay)
}

// TestRushSpreadOverAddrs: with Rush.Addrs the workers go round the
// addresses, every request carries Rush.Authorization, and the rush
// still books every seat once.
func TestRushSpreadOverAddrs(t *testing.T) {
	lay := testLayout(1)
	b := openTestSlotd(t, lay)
	edge := NewEdge(b, lay)
	const auth = "Bearer test-key"
	var addrs []string
	served := make([]atomic.Int64, 3)
	for i := range served {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
			if string(ctx.Request.Header.Peek("Authorization")) != auth {
				ctx.Error("no key", fasthttp.StatusUnauthorized)
				return
			}
			served[i].Add(1)
			edge(ctx)
		}}
		go func() { _ = srv.Serve(ln) }()
		t.Cleanup(func() { _ = srv.Shutdown() })
		addrs = append(addrs, ln.Addr().String())
	}
	r := Rush{
		Layout: lay, Workers: 6, ApplicantsPerDate: lay.Seats() + 6, ReadAvailability: true,
		DurationMax: time.Minute, Addrs: addrs, Authorization: auth, RequestTimeout: 10 * time.Second,
	}
	out, err := GenerateHTTP(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	if res := out.Result; res.Errors != 0 || res.Bookings != lay.Seats() {
		t.Fatalf("result %+v: want %d bookings, no errors", res, lay.Seats())
	}
	for i := range served {
		if served[i].Load() == 0 {
			t.Fatalf("address %d of %d served nothing", i+1, len(addrs))
		}
	}
	if err := Verify(context.Background(), b, &lay, out.Acked, false); err != nil {
		t.Fatal(err)
	}
}

// TestSlotdClaimLoop runs the engine table's claim loop (no HTTP, no
// availability reads) and verifies it.
func TestSlotdClaimLoop(t *testing.T) {
	lay := testLayout(1)
	b := openTestSlotd(t, lay)
	r := Rush{Layout: lay, Workers: 8, ApplicantsPerDate: lay.Seats() + 10, DurationMax: time.Minute}
	out := rush(context.Background(), r, func(int) rushClient { return &directClient{b: b, lay: &lay} })
	if out.Result.Bookings != lay.Seats() || out.Result.SoldOut != 10 || out.Result.Errors != 0 {
		t.Fatalf("result %+v, want %d bookings and 10 turned away", out.Result, lay.Seats())
	}
	if err := Verify(context.Background(), b, &lay, out.Acked, false); err != nil {
		t.Fatal(err)
	}
}

// TestVerifyCatchesLoss: a booking acknowledged but not stored, or stored
// twice on one seat, fails verify.
func TestVerifyCatchesLoss(t *testing.T) {
	lay := testLayout(1)
	b := openTestSlotd(t, lay)
	bk, err := b.Hold(context.Background(), HoldRequest{Office: lay.Office, Service: lay.Service, Applicant: "a", Start: lay.Start(lay.Dates[0], 0)})
	if err != nil {
		t.Fatal(err)
	}
	ghost := Acked{ID: "ghost", Date: lay.Dates[0], Start: bk.Start, Window: 2}
	if err := Verify(context.Background(), b, &lay, []Acked{{ID: bk.ID, Date: bk.Start.Format(time.DateOnly), Start: bk.Start, Window: bk.Window}, ghost}, false); err == nil || !strings.Contains(err.Error(), "ghost") {
		t.Fatalf("verify with a lost booking: %v", err)
	}
	if err := Verify(context.Background(), b, &lay, nil, false); err == nil || !strings.Contains(err.Error(), "never acknowledged") {
		t.Fatalf("verify with an unacknowledged owner: %v", err)
	}
	// A booking whose cancel failed may have been cancelled or not: both
	// the stored one and one that is gone pass.
	held := Acked{ID: bk.ID, Date: bk.Start.Format(time.DateOnly), Start: bk.Start, Window: bk.Window, CancelFailed: true}
	gone := Acked{ID: "gone", Date: lay.Dates[0], Start: bk.Start, Window: 2, CancelFailed: true}
	if err := Verify(context.Background(), b, &lay, []Acked{held, gone}, true); err != nil {
		t.Fatalf("verify with failed cancels: %v", err)
	}
}

// TestEdgeRoutes checks each route's codes and shapes on slotd, with the
// generator's bodies and the API's types (package client).
func TestEdgeRoutes(t *testing.T) {
	lay := testLayout(1)
	lay.Windows = 1
	addr := serveEdge(t, openTestSlotd(t, lay), lay)
	do := func(method, path, body string, wantStatus int, wantCode client.ProblemCode) []byte {
		t.Helper()
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.Header.SetMethod(method)
		req.SetRequestURI("http://" + addr + path)
		req.SetBodyString(body)
		if err := fasthttp.DoTimeout(req, resp, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		var p client.Problem
		_ = json.Unmarshal(resp.Body(), &p)
		if resp.StatusCode() != wantStatus || p.Code != wantCode {
			t.Fatalf("%s %s: %d %q, want %d %q: %s", method, path, resp.StatusCode(), p.Code, wantStatus, wantCode, resp.Body())
		}
		return append([]byte(nil), resp.Body()...)
	}
	date := lay.Dates[0]
	var slots client.ListSlots200JSONResponseBody
	if err := json.Unmarshal(do("GET", "/v1/offices/bench/days/"+date+"/slots?service=patent", "", 200, ""), &slots); err != nil {
		t.Fatal(err)
	}
	if len(slots.Slots) != lay.Steps() || slots.Slots[0].Free != 1 || !slots.Slots[0].Start.Equal(lay.Start(date, 0)) {
		t.Fatalf("slots %+v", slots)
	}
	start := lay.Start(date, 0)
	bodies := newBodyWriter(&lay)
	hold := func(applicant string, start time.Time) string { return string(bodies.hold(applicant, start)) }
	cancel := func(applicant string) string { return string(bodies.cancel(applicant)) }
	var bk client.Booking
	if err := json.Unmarshal(do("POST", "/v1/bookings", hold("a-1", start), 201, ""), &bk); err != nil {
		t.Fatal(err)
	}
	if string(bk.Status) != statusConfirmed || bk.Window != 1 || bk.Start.Format(time.RFC3339) != start.Format(time.RFC3339) ||
		bk.Id == "" || bk.Number == "" {
		t.Fatalf("booking %+v", bk)
	}
	do("POST", "/v1/bookings", hold("a-2", start), 409, api.CodeSlotTaken)
	do("POST", "/v1/bookings", hold("a-1", lay.Start(date, 1)), 409, api.CodeDuplicateBooking)
	do("POST", "/v1/bookings/"+bk.Id+"/cancel", cancel("a-2"), 404, api.CodeNotFound)
	do("POST", "/v1/bookings/"+bk.Id+"/cancel", cancel("a-1"), 200, "")
	do("POST", "/v1/bookings/"+bk.Id+"/cancel", cancel("a-1"), 409, api.CodeInvalidTransition)
	do("POST", "/v1/bookings", hold("a-2", start), 201, "")
	do("POST", "/v1/bookings", `{"office":"bench","bogus":1}`, 400, api.CodeValidationFailed)
	do("POST", "/v1/bookings", hold("a-3", time.Date(2001, 1, 1, 9, 0, 0, 0, time.UTC)), 422, api.CodeNotReleased)
	do("GET", "/v1/offices/nowhere/days/"+date+"/slots?service=patent", "", 404, api.CodeNotFound)
	do("DELETE", "/v1/bookings", "", 404, api.CodeNotFound)
}

// TestJSONByHand: the hand-written encoders write what encoding/json
// would, and the generator reads the slots back.
func TestJSONByHand(t *testing.T) {
	lay := testLayout(1)
	lay.OpenMinute, lay.CloseMinute = 0, 1440 // every clock of the day, to midnight
	date := lay.Dates[0]
	free := make([]int, lay.Steps())
	for s := range free {
		free[s] = s % 13
	}
	js := make([]api.Slot, len(free))
	for s, n := range free {
		js[s] = api.Slot{Start: lay.Start(date, s), Free: n}
	}
	want, _ := json.Marshal(api.Slots{Slots: js})
	got := appendSlotsJSON(nil, newSlotsTemplate(&lay, date), free)
	if !bytes.Equal(got, want) {
		t.Fatalf("slots:\n%s\nwant\n%s", got, want)
	}
	p := freeParser{lay: &lay}
	back, err := p.parse(got, date, nil)
	if err != nil || !slices.Equal(back, free) {
		t.Fatalf("parse: %v %v, want %v", err, back, free)
	}
	// The parser is told the date: the same answer for another date, a
	// start missing or moved, a count cut or too long, more after the
	// end: all refused.
	if _, err := p.parse(got, lay.Start(date, 0).AddDate(0, 0, 1).Format(time.DateOnly), nil); err == nil {
		t.Error("an answer read as another date's")
	}
	first := lay.Start(date, 0).Format("15:04:05")
	second := lay.Start(date, 1).Format("15:04:05")
	for _, bad := range []string{``, slotsHead, slotsHead + slotsTail,
		strings.Replace(string(got), first, second, 1),
		strings.Replace(string(got), `"free":1}`, `"free":}`, 1),
		strings.Replace(string(got), `"free":1}`, `"free":1234567890}`, 1),
		strings.Replace(string(got), `"free":1}`, `"free":-1}`, 1),
		strings.Replace(string(got), `"free":1}`, `"free":01}`, 1),
		string(got) + " ", string(got[:len(got)-len(slotsTail)]) + `,{"start":"x","free":1}` + slotsTail,
	} {
		if _, err := p.parse([]byte(bad), date, nil); err == nil {
			t.Errorf("parse(%.80q) accepted", bad)
		}
	}
	bk := Booking{ID: "id", Number: "N-1", Office: "o", Service: "s", Applicant: `a"<é>\`, Window: 3,
		Start: lay.Start(lay.Dates[0], 1), End: lay.Start(lay.Dates[0], 2), Status: statusConfirmed}
	// The booking is a part of the API's booking JSON: every member it
	// writes is one of the spec's booking's (client.Booking) and reads
	// back as the generator reads it.
	got = appendBookingJSON(nil, &bk)
	dec := json.NewDecoder(bytes.NewReader(got))
	dec.DisallowUnknownFields()
	var read client.Booking
	if err := dec.Decode(&read); err != nil {
		t.Fatalf("booking %s: %v", got, err)
	}
	if b := BookingOf(&read); b != bk {
		t.Fatalf("booking %s read back as %+v, want %+v", got, b, bk)
	}
}

// TestRunSlotdOnly runs Run end to end with the peers unset, the HTTP
// table in two rounds: both tables have one verified slotd row, the HTTP
// row with both rounds' rates, and the peers are listed as skipped.
func TestRunSlotdOnly(t *testing.T) {
	lay := testLayout(1)
	rep, err := Run(context.Background(), Config{Connections: []int{4}, Rounds: 2, Layout: &lay, DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.HTTP) != 1 || len(rep.Engine) != 1 || !rep.HTTP[0].Verified || !rep.Engine[0].Verified {
		t.Fatalf("report %+v", rep)
	}
	if len(rep.HTTP[0].RoundRates) != 2 || len(rep.Engine[0].RoundRates) != 1 {
		t.Fatalf("rounds: HTTP %v, engine %v; want 2 and 1", rep.HTTP[0].RoundRates, rep.Engine[0].RoundRates)
	}
	var out bytes.Buffer
	rep.WriteTables(&out)
	if !strings.Contains(out.String(), "Skipped (not configured): postgres, redis") || strings.Count(out.String(), "\nslotd ") != 2 {
		t.Fatalf("tables:\n%s", out.String())
	}
}

// peerEnv returns the peer's address from the environment the script
// sets, or skips.
func peerEnv(t *testing.T, name string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		t.Skipf("%s is not set: run under bench/peers/scripts/peers.sh (make bench-peers-test) to test against a live server", name)
	}
	return v
}

func TestPostgresRushOverHTTP(t *testing.T) {
	dsn := peerEnv(t, "SLOTD_PEERS_PG")
	lay := testLayout(2)
	b, err := OpenPostgres(context.Background(), dsn, lay, 8)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	rushTest(t, b, lay)
	checkRefusals(t, b, lay)
}

func TestRedisRushOverHTTP(t *testing.T) {
	url := peerEnv(t, "SLOTD_PEERS_REDIS")
	lay := testLayout(2)
	b, err := OpenRedis(context.Background(), url, lay, 8)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	rushTest(t, b, lay)
	checkRefusals(t, b, lay)
}

// checkRefusals checks the refusals a peer shares with slotd directly
// on the Backend: duplicate, wrong applicant, double cancel.
func checkRefusals(t *testing.T, b Backend, lay Layout) {
	ctx := context.Background()
	last := lay.Start(lay.Dates[0], lay.Steps()-1)
	bk, err := b.Hold(ctx, HoldRequest{Office: lay.Office, Service: lay.Service, Applicant: "solo", Start: last})
	if err != nil {
		// The rush sold out this date; cancel one booking to make room.
		active, err2 := b.Active(ctx, lay.Office, lay.Dates[0])
		if err2 != nil || len(active) == 0 {
			t.Fatal(err, err2)
		}
		if err := b.Cancel(ctx, active[0].ID, active[0].Applicant); err != nil {
			t.Fatal(err)
		}
		if bk, err = b.Hold(ctx, HoldRequest{Office: lay.Office, Service: lay.Service, Applicant: "solo", Start: active[0].Start}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.Hold(ctx, HoldRequest{Office: lay.Office, Service: lay.Service, Applicant: "solo", Start: last}); err == nil {
		t.Fatal("second active booking of one applicant accepted")
	}
	if err := b.Cancel(ctx, bk.ID, "other"); err == nil {
		t.Fatal("cancel by another applicant accepted")
	}
	if err := b.Cancel(ctx, bk.ID, "solo"); err != nil {
		t.Fatal(err)
	}
	if err := b.Cancel(ctx, bk.ID, "solo"); err == nil {
		t.Fatal("second cancel accepted")
	}
}

// The rush's plain bodies take flatjson's way, not encoding/json's.
func TestDecodeFlatTakesPlainBodies(t *testing.T) {
	var h holdJSON
	if !flatjson.Decode(aHold(), &h) || h.Applicant != "a-1042" || !h.Confirm || h.Start.Minute() != 5 {
		t.Fatalf("hold body: %+v", h)
	}
	var c cancelJSON
	if !flatjson.Decode(newBodyWriter(&Layout{}).cancel("a-7"), &c) || c != (cancelJSON{Applicant: "a-7", Reason: "bench"}) {
		t.Fatalf("cancel body: %+v", c)
	}
}

// TestRoundsKeepMedianAndEveryRatio: with several rounds, a table row is
// its backend's median round, slotd's ratio is the median of the ratios
// taken round by round, and a round below the target is counted, not
// hidden behind the median.
func TestRoundsKeepMedianAndEveryRatio(t *testing.T) {
	row := func(backend string, round, bookings int) Result {
		return Result{Backend: backend, Mode: "http", Connections: 64, Round: round, Bookings: bookings, Elapsed: time.Second, Verified: true}
	}
	var all []Result
	for round, rates := range [][2]int{{9000, 3000}, {8000, 3200}, {7000, 3700}} {
		all = append(all, row("slotd", round, rates[0]), row("redis", round, rates[1]))
	}
	rows := medianRounds(all)
	if len(rows) != 2 || rows[0].Backend != "slotd" || rows[1].Backend != "redis" {
		t.Fatalf("rows %+v", rows)
	}
	if rows[0].Bookings != 8000 || rows[0].Round != 1 || rows[1].Bookings != 3200 || rows[1].Round != 1 {
		t.Fatalf("median rounds %+v", rows)
	}
	if want := []float64{9000, 8000, 7000}; !slices.Equal(rows[0].RoundRates, want) {
		t.Fatalf("slotd's rounds %v, want %v in round order", rows[0].RoundRates, want)
	}
	var out bytes.Buffer
	writeTable(&out, rows, true, []subject{slotdSubject})
	// Ratios by round: 3.0, 2.5, 1.9; the median 2.5 meets 2×, and the
	// round at 1.9× is counted.
	for _, want := range []string{"2.5× (≥2× met)", "slotd × in each round: 3.0×, 2.5×, 1.9× (1 of 3 below 2×)", "rounds: 9000, 8000, 7000 bookings/s"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("table lacks %q:\n%s", want, out.String())
		}
	}
}

// TestBodies: the generator's bodies are the client's request types as
// json.Marshal writes them, whatever body came before.
func TestBodies(t *testing.T) {
	lay := testLayout(1)
	w := newBodyWriter(&lay)
	s1, s2 := lay.Start(lay.Dates[0], 1), lay.Start(lay.Dates[0], 2)
	_ = w.hold("a-1-long-applicant-id", s1)
	got := string(w.hold("a-2", s2))
	want, _ := json.Marshal(client.HoldJSONRequestBody{Office: lay.Office, Service: lay.Service,
		Applicant: new("a-2"), Start: &s2, Confirm: new(true)})
	if got != string(want) {
		t.Fatalf("hold %s, want %s", got, want)
	}
	got = string(w.cancel("a-3"))
	want, _ = json.Marshal(client.CancelJSONRequestBody{Applicant: new("a-3"), Reason: new("bench")})
	if got != string(want) {
		t.Fatalf("cancel %s, want %s", got, want)
	}
}

// TestTableShowsProcessRowRatios: with a process backend in the table,
// every peer row has a second ratio column, the process row's bookings/s
// divided by the peer's round by round against its own target (none for
// a peer it sets none for), and slotd's column is as before.
func TestTableShowsProcessRowRatios(t *testing.T) {
	row := func(backend string, round, bookings int) Result {
		return Result{Backend: backend, Mode: "http", Connections: 64, Round: round, Bookings: bookings, Elapsed: time.Second, Verified: true}
	}
	var all []Result
	for round, rates := range [][4]int{{9000, 600, 3000, 3000}, {8000, 500, 3200, 2000}, {7000, 400, 3700, 2400}} {
		all = append(all, row("slotd", round, rates[0]), row("postgres", round, rates[1]), row("redis", round, rates[2]),
			row("cluster/spread", round, rates[3]))
	}
	cluster := subject{name: "cluster/spread", targets: map[string]float64{"postgres": 5}}
	var out bytes.Buffer
	writeTable(&out, medianRounds(all), true, []subject{slotdSubject, cluster})
	// cluster ÷ PostgreSQL by round: 5.0, 4.0, 6.0; ÷ Redis: 1.0, 0.6, 0.6.
	for _, want := range []string{"cluster/spread ×", "5.0× (≥5× met)",
		"cluster/spread × in each round: 5.0×, 4.0×, 6.0× (1 of 3 below 5×)",
		"cluster/spread × in each round: 1.0×, 0.6×, 0.6×\n",
		"slotd × in each round: 15.0×, 16.0×, 17.5× (0 of 3 below 10×)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
	for _, line := range strings.Split(out.String(), "\n") {
		if strings.HasPrefix(line, "cluster/spread ") && strings.Contains(line, "×") {
			t.Errorf("the process row has a ratio to itself or to slotd: %q", line)
		}
	}
}

// A process backend may not take a name the table already has.
func TestProcessBackendNamesDiffer(t *testing.T) {
	cfg := Config{Processes: []ProcessBackend{namedProcesses("postgres")}}
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err == nil || !strings.Contains(err.Error(), `"postgres"`) {
		t.Fatalf("validate: %v", err)
	}
}

// namedProcesses is a ProcessBackend that is only a name.
type namedProcesses string

func (n namedProcesses) Name() string                 { return string(n) }
func (namedProcesses) TimesPeerTarget(string) float64 { return 0 }
func (namedProcesses) Start(context.Context, string, *Layout) (Processes, error) {
	return nil, errors.New("not started")
}
