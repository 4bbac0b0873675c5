package httpapi

import (
	"encoding/json"
	"fmt"
	"hash/maphash"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"slotd/allocator"
	"slotd/api"
	"slotd/internal/slotdtest/testtime"
)

// Invariant 6: overload sheds with 429/503 and Retry-After, never queues.

func TestRateLimit(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.RatePerSecond = 1; c.RateBurst = 2 })
	want(t, e.get("/v1/offices", keyPortal), 200, "")
	want(t, e.get("/v1/offices", keyPortal), 200, "")
	r := e.get("/v1/offices", keyPortal)
	want(t, r, 429, api.CodeRateLimited)
	if r.header.Get("Retry-After") != "1" {
		t.Fatalf("Retry-After %q", r.header.Get("Retry-After"))
	}
	// Per key: another key still has its tokens.
	want(t, e.get("/v1/offices", keyPortalB), 200, "")
	// The clock refills the bucket.
	e.clock.Add(time.Second)
	want(t, e.get("/v1/offices", keyPortal), 200, "")
}

// The per-applicant rate of holds (DESIGN "Fairness in the rush"): an
// applicant's repeats beyond its burst are refused with 429 before they
// reach the key's bucket, so they leave the key's budget to the others.
func TestApplicantRate(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.RatePerSecond, c.RateBurst = 1, 4 // the clock stands still: 4 requests in all for the key
		c.RatePerApplicant, c.RateApplicantBurst = 1, 2
	})
	hold := func(applicant string, minute int) resp {
		return e.post("/v1/bookings", keyPortal, holdJSON("office-a", "patent", applicant, at(1, 9, minute)))
	}
	// A bot fires five times: two get through (the second a duplicate),
	// three are refused by its own bucket.
	want(t, hold("bot", 0), 201, "")
	want(t, hold("bot", 15), 409, api.CodeDuplicateBooking)
	for i := 0; i < 3; i++ {
		r := hold("bot", 30)
		want(t, r, 429, api.CodeRateLimited)
		if r.header.Get("Retry-After") == "" {
			t.Fatal("no Retry-After")
		}
	}
	// The key spent two of its four tokens: two people still get through.
	want(t, hold("person-1", 45), 201, "")
	want(t, hold("person-2", 60), 201, "")
	// Now the key's own bucket is empty, for everyone.
	want(t, hold("person-3", 75), 429, api.CodeRateLimited)
	// The applicant's bucket refills with the clock.
	e.clock.Add(5 * time.Second)
	want(t, hold("bot", 90), 409, api.CodeDuplicateBooking)
	// SREs see which limit refused.
	if a, k := testutil.ToFloat64(e.srv.m.limitedApplicant), testutil.ToFloat64(e.srv.m.limitedKey); a != 3 || k != 1 {
		t.Fatalf("%s: applicant %g, key %g; want 3 and 1", metricRateLimited, a, k)
	}
}

// Other routes and another key's applicant of the same name are not
// limited by an applicant's hold bucket.
func TestApplicantRateScope(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.RatePerApplicant, c.RateApplicantBurst = 1, 1 })
	want(t, e.post("/v1/bookings", keyPortal, holdJSON("office-a", "patent", "x", at(1, 9, 0))), 201, "")
	want(t, e.post("/v1/bookings", keyPortal, holdJSON("office-a", "patent", "x", at(1, 9, 15))), 429, api.CodeRateLimited)
	want(t, e.post("/v1/bookings", keyPortalB, holdJSON("office-b", "patent", "x", at(1, 9, 30))), 201, "")
	want(t, e.get("/v1/bookings?applicant=x", keyPortal), 200, "")
}

// An applicant named in ?applicant= instead of the body spends the same
// bucket: otherwise a bot could repeat its holds past its own bucket.
func TestApplicantRateQueryApplicant(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.RatePerApplicant, c.RateApplicantBurst = 1, 1 })
	hold := func(minute int) resp {
		return e.post("/v1/bookings?applicant=q", keyPortal, holdJSON("office-a", "patent", "", at(1, 9, minute)))
	}
	want(t, hold(0), 201, "")
	want(t, hold(15), 429, api.CodeRateLimited)
	want(t, e.post("/v1/bookings", keyPortal, holdJSON("office-a", "patent", "q", at(1, 9, 30))), 429, api.CodeRateLimited)
}

func TestShedding(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.InFlightMax = 2 })
	entered := make(chan struct{}, 2)
	release := make(chan struct{})
	e.blockCommits(func(c *allocator.Change) {
		if len(c.Bookings) > 0 {
			entered <- struct{}{}
			<-release
		}
	})
	var wg sync.WaitGroup
	results := make([]resp, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = e.post("/v1/bookings", keyPortal, holdJSON("office-a", "patent", fmt.Sprintf("a-%d", i), at(1, 9, 0)))
		}()
	}
	<-entered
	<-entered
	r := e.get("/v1/offices", keyPortal)
	want(t, r, 503, api.CodeOverloaded)
	want(t, e.post("/v1/bookings", keyPortal, holdJSON("office-a", "patent", "a-9", at(1, 10, 0))), 503, api.CodeOverloaded)
	close(release)
	wg.Wait()
	for _, r := range results {
		want(t, r, 201, "")
	}
	want(t, e.get("/v1/offices", keyPortal), 200, "")
}

// TestRaceForSeats: many clients race over HTTP for few seats; exactly one
// winner per seat, and every loser gets slot_taken with alternatives.
func TestRaceForSeats(t *testing.T) {
	e := newEnv(t, nil)
	starts := []time.Time{at(1, 9, 0), at(1, 9, 15), at(1, 9, 30)}
	const clientsPerStart = 24
	type outcome struct {
		start time.Time
		r     resp
	}
	out := make(chan outcome, len(starts)*clientsPerStart)
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for si, st := range starts {
		for c := range clientsPerStart {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-gate
				out <- outcome{st, e.post("/v1/bookings", keyPortal, holdJSON("office-a", "patent", fmt.Sprintf("a-%d-%d", si, c), st))}
			}()
		}
	}
	close(gate)
	wg.Wait()
	close(out)
	winners := map[string]int{}
	seats := map[string]bool{}
	for o := range out {
		switch o.r.status {
		case 201:
			var b struct {
				Start  string `json:"start"`
				Window int    `json:"window"`
			}
			if err := json.Unmarshal(o.r.body, &b); err != nil {
				t.Fatal(err)
			}
			seat := fmt.Sprintf("%s/%d", b.Start, b.Window)
			if seats[seat] {
				t.Fatalf("seat %s sold twice", seat)
			}
			seats[seat] = true
			winners[ts(o.start)]++
		case 409:
			want(t, o.r, 409, api.CodeSlotTaken)
			var p struct {
				Alternatives []struct{ Office, Start string } `json:"alternatives"`
			}
			if err := json.Unmarshal(o.r.body, &p); err != nil || len(p.Alternatives) == 0 {
				t.Fatalf("slot_taken without alternatives: %s", o.r.body)
			}
		default:
			t.Fatalf("unexpected answer %d: %s", o.r.status, o.r.body)
		}
	}
	for _, st := range starts {
		if winners[ts(st)] != 2 { // two windows
			t.Fatalf("start %s: %d winners, want 2", ts(st), winners[ts(st)])
		}
	}
	r := e.get("/v1/offices/office-a/days/2026-12-01/slots?service=patent", keyPortal)
	slots := decodeSlots(t, r)
	for i := range starts {
		if slots[i].Free != 0 {
			t.Fatalf("slot %s still has %d free", slots[i].Start, slots[i].Free)
		}
	}
	if err := e.eng.Verify(); err != nil {
		t.Fatal(err)
	}
}

// The applicant table stays bounded: a full shard drops the buckets that
// filled up again, at most once per idle period, and lets a new applicant
// through untracked while it is full of active ones.
func TestApplicantLimiterBounded(t *testing.T) {
	l := newKeyedLimiter[applicantKey](1, 2) // a bucket is idle after 2 s
	now := time.Unix(1_000_000, 0)
	k := applicantKey{"k", "new"}
	sh := &l.shards[maphash.Comparable(limiterSeed, k)%limiterShards]
	fill := func(at time.Time) {
		clear(sh.m)
		for i := 0; len(sh.m) < limiterBucketsPerShardMax; i++ {
			b := newTokenBucket(l.tokensPerSecond, l.burst)
			b.AllowN(at, l.burst) // spent at at
			sh.m[applicantKey{"k", fmt.Sprintf("filler-%d", i)}] = b
		}
	}
	// Full of active buckets: the newcomer passes, untracked.
	fill(now)
	for i := 0; i < 5; i++ {
		if ok, _ := l.take(k, now); !ok {
			t.Fatal("a newcomer to a full table of active applicants was refused")
		}
	}
	if _, tracked := sh.m[k]; tracked || len(sh.m) != limiterBucketsPerShardMax {
		t.Fatalf("tracked %v, %d entries", tracked, len(sh.m))
	}
	// Full of idle buckets: they are swept and the newcomer is tracked.
	fill(now.Add(-3 * time.Second))
	sh.sweptUnixNano = 0
	if ok, _ := l.take(k, now); !ok {
		t.Fatal("refused after the sweep")
	}
	if _, tracked := sh.m[k]; !tracked || len(sh.m) != 1 {
		t.Fatalf("after the sweep: tracked %v, %d entries", tracked, len(sh.m))
	}
	// A sweep that just ran is not repeated within the idle period.
	fill(now.Add(-3 * time.Second))
	sh.sweptUnixNano = now.UnixNano()
	other := "other"
	for i := 0; &l.shards[maphash.Comparable(limiterSeed, applicantKey{"k", other})%limiterShards] != sh; i++ {
		other = fmt.Sprintf("other-%d", i) // a newcomer of the same shard
	}
	l.take(applicantKey{"k", other}, now.Add(time.Second))
	if len(sh.m) != limiterBucketsPerShardMax {
		t.Fatalf("swept again within the idle period: %d entries", len(sh.m))
	}
}

// TestDefectFailedAuthNotRateLimited: wrong keys were answered 401 without
// limit, however fast a source sent them. A source's failed
// authentications now spend a token bucket; beyond it they answer 429
// rate_limited with Retry-After. A valid key from the same source is not
// refused for them, nor is another source.
func TestDefectFailedAuthNotRateLimited(t *testing.T) {
	e := newEnv(t, nil) // the default bucket; the clock stands still
	for i := 0; i < DefaultAuthFailBurst; i++ {
		want(t, e.get("/v1/offices", "wrong-key-0123456789"), 401, api.CodeUnauthorized)
	}
	r := e.get("/v1/offices", "wrong-key-0123456789")
	want(t, r, 429, api.CodeRateLimited)
	if r.header.Get("Retry-After") != "1" {
		t.Fatalf("Retry-After %q, want 1 (one failure a second)", r.header.Get("Retry-After"))
	}
	want(t, e.get("/v1/offices", ""), 429, api.CodeRateLimited)
	want(t, e.get("/v1/offices", keyPortal), 200, "")
	// The bucket refills with the clock.
	e.clock.Add(time.Second)
	want(t, e.get("/v1/offices", "wrong-key-0123456789"), 401, api.CodeUnauthorized)
	want(t, e.get("/v1/offices", "wrong-key-0123456789"), 429, api.CodeRateLimited)
	if got := testutil.ToFloat64(e.srv.m.limitedAuth); got != 3 {
		t.Fatalf("%s{limit=\"auth\"} = %g, want 3", metricRateLimited, got)
	}
}

// Failed authentications count per address, an IPv6 client's /64 as one.
func TestAuthSource(t *testing.T) {
	f := func(in, want string) {
		t.Helper()
		if got := authSource(net.ParseIP(in)).String(); got != want {
			t.Fatalf("authSource(%s) = %s, want %s", in, got, want)
		}
	}
	f("192.0.2.7", "192.0.2.7")
	f("::ffff:192.0.2.7", "192.0.2.7")
	f("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::")
	f("2001:db8:1:2:ffff::1", "2001:db8:1:2::")
}

// steppedClock is a wall clock that runs from t0 with real time and can
// be set, as NTP or an operator sets a machine's clock: Now is t0 plus
// the real time since start plus the step. Safe for concurrent use.
type steppedClock struct {
	start time.Time
	step  atomic.Int64 // nanoseconds the clock was set forward (negative: back)
}

func newSteppedClock() *steppedClock { return &steppedClock{start: time.Now()} }

func (c *steppedClock) Now() time.Time {
	return t0.Add(time.Since(c.start) + time.Duration(c.step.Load()))
}

// TestDefectWallClockStepFreezesRateLimits: token buckets measure the
// time between requests on a clock that does not step. On the wall clock,
// a clock set back by an hour froze every bucket for that hour: each key
// and each applicant that had spent its burst got 429 until the clock
// caught up.
func TestDefectWallClockStepFreezesRateLimits(t *testing.T) {
	clock := newSteppedClock()
	e := newEnv(t, func(c *Config) {
		c.Now = clock.Now
		// A token every 2 s: the second request, right after the first,
		// finds the bucket empty; the eventually below waits up to 10 s.
		c.RatePerSecond, c.RateBurst = 0.5, 1
		c.RatePerApplicant, c.RateApplicantBurst = 0.5, 1
	})
	// The key's bucket.
	want(t, e.get("/v1/offices", keyPortal), 200, "")
	want(t, e.get("/v1/offices", keyPortal), 429, api.CodeRateLimited)
	clock.step.Store(int64(-time.Hour))
	testtime.Eventually(t, waitMax, "the key's bucket to refill after the clock was set back", func() error {
		if s := e.get("/v1/offices", keyPortal).status; s != 200 {
			return fmt.Errorf("answered %d", s)
		}
		return nil
	})
	// An applicant's hold bucket (another key, whose own bucket is full).
	hold := func() resp {
		return e.post("/v1/bookings", keyPortalB, holdJSON("office-a", "patent", "a-1", at(1, 9, 0)))
	}
	want(t, hold(), 201, "")
	want(t, hold(), 429, api.CodeRateLimited)
	clock.step.Store(int64(-2 * time.Hour))
	testtime.Eventually(t, waitMax, "the applicant's bucket to refill after the clock was set back", func() error {
		// The bucket lets it through; the engine refuses the duplicate.
		if s := hold().status; s == 429 || s == 201 {
			return fmt.Errorf("answered %d", s)
		}
		return nil
	})
}

// Servers given one SharedLimits hold one bucket per key name, one
// per-applicant limiter and one failed-authentication limiter, also for a
// key that a reload adds: a key's rate is not multiplied by the Servers.
func TestSharedLimitsAcrossServers(t *testing.T) {
	sh := NewSharedLimits()
	keys := []Key{{Key: "shared-portal-key-0123456789", Name: "portal", Scopes: []string{ScopePortal}, Offices: []string{"*"}}}
	added := append(keys, Key{Key: "shared-portal-key-added-0123", Name: "added", Scopes: []string{ScopePortal}, Offices: []string{"*"}})
	var current []Key = keys
	newServer := func() *Server {
		e, err := allocator.New(allocator.Config{Journal: &allocator.MemJournal{}})
		if err != nil {
			t.Fatal(err)
		}
		srv, err := New(Config{Engine: e, Idempotency: newMemStore(), Events: newMemStore(), Registry: prometheus.NewRegistry(),
			Keys: keys, KeysSource: func() ([]Key, error) { return current, nil }, Limits: sh,
			Secret: []byte("shared-secret-shared-secret-shared-secret"), RatePerSecond: 5, RatePerApplicant: 1, AuthFailRatePerSecond: 1})
		if err != nil {
			t.Fatal(err)
		}
		srv.SetReady(true)
		return srv
	}
	a, b := newServer(), newServer()
	if a.keys.Load().principal("portal").limiter.Limiter != b.keys.Load().principal("portal").limiter.Limiter {
		t.Fatal("two Servers sharing limits hold two buckets for one key")
	}
	if a.applicants != b.applicants || a.authFails != b.authFails {
		t.Fatal("two Servers sharing limits hold their own applicant or failed-authentication limiters")
	}
	current = added
	for _, s := range []*Server{a, b} {
		if err := s.ReloadKeys(); err != nil {
			t.Fatal(err)
		}
	}
	if a.keys.Load().principal("added").limiter.Limiter != b.keys.Load().principal("added").limiter.Limiter {
		t.Fatal("a key added by a reload has a bucket per Server")
	}
	if a.keys.Load().principal("portal").limiter.Limiter != b.keys.Load().principal("portal").limiter.Limiter {
		t.Fatal("a reload split a key's shared bucket")
	}
	// Without shared limits, each Server counts on its own.
	sh = nil
	c, d := newServer(), newServer()
	if c.keys.Load().principal("portal").limiter.Limiter == d.keys.Load().principal("portal").limiter.Limiter {
		t.Fatal("Servers without shared limits share a bucket")
	}
}
