package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"slotd/allocator"
	"slotd/internal/slotdtest"
	"slotd/internal/slotdtest/testtime"
	"slotd/wal"
)

// Test fixtures: a real Engine on a MemJournal, the in-memory store, and a
// fasthttp listener on 127.0.0.1:0 reached through net/http.

// Short names for testtime's T0 and At, which the package's tests use at
// a hundred call sites: t0 is Monday 08:00 in Moscow, an hour before the
// test office opens.
var t0, at = testtime.T0, testtime.At

func ts(t time.Time) string { return t.Format(time.RFC3339) }

// waitMax bounds the tests' waits for what the server does on its own
// goroutines (testtime.Eventually); a bound, not an assertion.
const waitMax = 10 * time.Second

// Keys of the tests.
const (
	keyPortal      = "portal-key-0123456789"
	keyPortalB     = "portal-key-b-0123456789"
	keyOperator    = "operator-key-0123456789" // office-a only
	keyOperatorAll = "operator-all-0123456789"
	keyAdmin       = "admin-key-0123456789"
	keyAdminB      = "admin-b-key-0123456789" // office-b only
)

func testKeys() []Key {
	return []Key{
		{Key: keyPortal, Name: "portal-a", Scopes: []string{ScopePortal}, Offices: []string{"*"}},
		{Key: keyPortalB, Name: "portal-b", Scopes: []string{ScopePortal}, Offices: []string{"*"}},
		{Key: keyOperator, Name: "operator-a", Scopes: []string{ScopeOperator}, Offices: []string{"office-a"}},
		{Key: keyOperatorAll, Name: "operator-all", Scopes: []string{ScopeOperator}, Offices: []string{"*"}},
		{Key: keyAdmin, Name: "admin", Scopes: []string{ScopeAdmin, ScopePortal, ScopeOperator}, Offices: []string{"*"}},
		{Key: keyAdminB, Name: "admin-b", Scopes: []string{ScopeAdmin}, Offices: []string{"office-b"}},
	}
}

// testOffice: 2 windows (slotdtest.Office).
func testOffice(id string) allocator.OfficeConfig { return slotdtest.Office(id, 2) }

// slotJSON is one start of a slots answer.
type slotJSON struct {
	Start string `json:"start"`
	Free  int    `json:"free"`
}

// decodeSlots reads a {"slots":[…]} answer.
func decodeSlots(t testing.TB, r resp) []slotJSON {
	t.Helper()
	var v struct {
		Slots []slotJSON `json:"slots"`
	}
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("slots answer %s: %v", r.body, err)
	}
	return v.Slots
}

// fakeClock is a settable wall clock and its steady clock (clock.go):
// Add lets time pass on both, Set sets the wall clock alone, as an
// operator or NTP would. Safe for concurrent use.
type fakeClock struct{ nanos, steadyNanos atomic.Int64 }

func (c *fakeClock) Now() time.Time      { return time.Unix(0, c.nanos.Load()).In(testtime.MSK) }
func (c *fakeClock) Steady() time.Time   { return time.Unix(0, c.steadyNanos.Load()) }
func (c *fakeClock) Set(t time.Time)     { c.nanos.Store(t.UnixNano()) }
func (c *fakeClock) Add(d time.Duration) { c.nanos.Add(int64(d)); c.steadyNanos.Add(int64(d)) }
func newClock(t time.Time) *fakeClock {
	c := &fakeClock{}
	c.Set(t)
	c.steadyNanos.Store(t.UnixNano())
	return c
}
func (e *env) setNow(t time.Time)                     { e.clock.Set(t) }
func (e *env) blockCommits(f func(*allocator.Change)) { e.hook.Store(&f) }

// env is one server under test.
type env struct {
	t      testing.TB
	eng    *allocator.Engine
	j      *allocator.MemJournal
	store  *memStore
	srv    *Server
	clock  *fakeClock
	reg    *prometheus.Registry
	logs   *observer.ObservedLogs
	url    string
	client *http.Client
	hook   atomic.Pointer[func(*allocator.Change)]
	served chan error
	db     *wal.DB // walEnv's journal; nil for newEnv's
}

// newEnv starts a server with offices office-a and office-b; mutate, if
// set, adjusts the Config first.
func newEnv(t testing.TB, mutate func(*Config)) *env {
	t.Helper()
	e := &env{t: t, store: newMemStore(), clock: newClock(t0), reg: prometheus.NewRegistry()}
	e.j = &allocator.MemJournal{Hook: func(c *allocator.Change) {
		e.store.apply(c)
		if f := e.hook.Load(); f != nil {
			(*f)(c)
		}
	}}
	eng, err := allocator.New(allocator.Config{Journal: e.j})
	if err != nil {
		t.Fatal(err)
	}
	e.eng = eng
	for _, id := range []string{"office-a", "office-b"} {
		if _, err := eng.PutOffice(t0, testOffice(id), allocator.Meta{Actor: "setup"}); err != nil {
			t.Fatal(err)
		}
	}
	core, logs := observer.New(zap.InfoLevel)
	e.logs = logs
	cfg := Config{
		Engine: eng, Idempotency: e.store, Events: e.store, Keys: testKeys(),
		Secret: []byte("test-secret-test-secret-test-secret!"), Logger: zap.New(core),
		Registry: e.reg, RatePerSecond: 1e6, EventsWaitMax: 5 * time.Second,
		RatePerApplicant: -1, // the clock stands still: buckets never refill; see TestApplicantRate
	}
	if mutate != nil {
		mutate(&cfg)
	}
	if cfg.Now == nil {
		// The fake clock; a test that brings its own wall clock gets the
		// real steady clock unless it brings that too.
		cfg.Now, cfg.Steady = e.clock.Now, e.clock.Steady
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = srv
	srv.SetReady(true)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.url = "http://" + ln.Addr().String()
	e.served = make(chan error, 1)
	go func() { e.served <- srv.Serve(ln) }()
	// Every exchange is held to docs/openapi.yaml (spec_test.go).
	e.client = &http.Client{Transport: newSpecTransport(t, &http.Transport{MaxIdleConnsPerHost: 256}), Timeout: 30 * time.Second}
	t.Cleanup(func() {
		e.hook.Store(nil)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-e.served; err != nil {
			t.Errorf("Serve: %v", err)
		}
		e.client.CloseIdleConnections()
	})
	return e
}

// resp is one HTTP answer.
type resp struct {
	status int
	header http.Header
	body   []byte
}

// obj decodes the body as a JSON object.
func (r resp) obj(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body is not a JSON object: %v: %s", err, r.body)
	}
	return m
}

func (r resp) str(t testing.TB, field string) string {
	t.Helper()
	v, _ := r.obj(t)[field].(string)
	return v
}

// call sends a request. hdr holds extra header pairs.
func (e *env) call(method, path, key, body string, hdr ...string) resp {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.url+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp{status: res.StatusCode, header: res.Header, body: b}
}

func (e *env) get(path, key string) resp { e.t.Helper(); return e.call("GET", path, key, "") }
func (e *env) post(path, key, body string, hdr ...string) resp {
	e.t.Helper()
	return e.call("POST", path, key, body, hdr...)
}

// want asserts the status, and for errors the problem+json shape and code.
func want(t testing.TB, r resp, status int, code string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d (code %s); body: %s", r.status, status, code, r.body)
	}
	ct := r.header.Get("Content-Type")
	if status >= 400 {
		if ct != contentProblem {
			t.Fatalf("Content-Type %q, want %s", ct, contentProblem)
		}
		m := r.obj(t)
		for _, f := range []string{"type", "title", "detail", "code"} {
			if s, _ := m[f].(string); s == "" {
				t.Fatalf("problem without %q: %s", f, r.body)
			}
		}
		if st, _ := m["status"].(float64); int(st) != status {
			t.Fatalf("problem status %v, want %d", m["status"], status)
		}
		if m["code"] != code {
			t.Fatalf("code %v, want %s; body: %s", m["code"], code, r.body)
		}
		if status == 429 || status == 503 {
			if r.header.Get("Retry-After") == "" {
				t.Fatalf("%d without Retry-After", status)
			}
		}
	}
}

// holdBody renders a hold request.
func holdJSON(office, service, applicant string, start time.Time) string {
	return `{"office":"` + office + `","service":"` + service + `","applicant":"` + applicant + `","start":"` + ts(start) + `"}`
}

// mustHold holds (and optionally confirms) over HTTP and returns the id.
func (e *env) mustHold(office, service, applicant string, start time.Time, confirm bool) string {
	e.t.Helper()
	body := holdJSON(office, service, applicant, start)
	if confirm {
		body = body[:len(body)-1] + `,"confirm":true}`
	}
	r := e.post("/v1/bookings", keyPortal, body)
	want(e.t, r, 201, "")
	return r.str(e.t, "id")
}

var errBlocked = errors.New("blocked")

// jsonEq reports whether two JSON documents are equal as values.
func jsonEq(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return bytes.Equal(xa, ya)
}

func contextWithTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}
