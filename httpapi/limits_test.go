package httpapi

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"slotd/allocator"
)

// Invariant 6: overload sheds with 429/503 and Retry-After, never queues.

func TestRateLimit(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.RatePerSecond = 1; c.RateBurst = 2 })
	want(t, e.get("/v1/offices", keyPortal), 200, "")
	want(t, e.get("/v1/offices", keyPortal), 200, "")
	r := e.get("/v1/offices", keyPortal)
	want(t, r, 429, CodeRateLimited)
	if r.header.Get("Retry-After") != "1" {
		t.Fatalf("Retry-After %q", r.header.Get("Retry-After"))
	}
	// Per key: another key still has its tokens.
	want(t, e.get("/v1/offices", keyPortalB), 200, "")
	// The clock refills the bucket.
	e.clock.Add(time.Second)
	want(t, e.get("/v1/offices", keyPortal), 200, "")
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
	want(t, r, 503, CodeOverloaded)
	want(t, e.post("/v1/bookings", keyPortal, holdJSON("office-a", "patent", "a-9", at(1, 10, 0))), 503, CodeOverloaded)
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
			want(t, o.r, 409, CodeSlotTaken)
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
	var slots struct {
		Slots []struct {
			Start string `json:"start"`
			Free  int    `json:"free"`
		} `json:"slots"`
	}
	if err := json.Unmarshal(r.body, &slots); err != nil {
		t.Fatal(err)
	}
	for i := range starts {
		if slots.Slots[i].Free != 0 {
			t.Fatalf("slot %s still has %d free", slots.Slots[i].Start, slots.Slots[i].Free)
		}
	}
	if err := e.eng.Verify(); err != nil {
		t.Fatal(err)
	}
}
