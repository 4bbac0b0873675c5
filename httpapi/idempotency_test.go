package httpapi

import (
	"bytes"
	"testing"
	"time"

	"slotd/allocator"
	"slotd/api"
)

// Invariant 5: a repeated request with the same Idempotency-Key returns the
// first response and has no second effect.

func TestIdempotencyReplay(t *testing.T) {
	e := newEnv(t, nil)
	body := holdJSON("office-a", "patent", "a-1", at(1, 9, 0))
	first := e.post("/v1/bookings", keyPortal, body, "Idempotency-Key", "k-1")
	want(t, first, 201, "")
	changes := len(e.j.Changes())
	if rec, ok, _ := e.store.LookupIdempotency("portal-a:k-1"); !ok || rec.Status != 201 || !bytes.Equal(rec.Body, first.body) {
		t.Fatal("the first response was not stored with its change")
	}
	if e.store.putCount() != 0 {
		t.Fatalf("a response with a change was stored separately (%d puts)", e.store.putCount())
	}

	again := e.post("/v1/bookings", keyPortal, body, "Idempotency-Key", "k-1")
	if again.status != 201 || !bytes.Equal(again.body, first.body) || again.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replay: %d %s", again.status, again.body)
	}
	if n := len(e.j.Changes()); n != changes {
		t.Fatalf("replay committed %d more changes", n-changes)
	}

	// A different body, path or query with the same key: 422.
	want(t, e.post("/v1/bookings", keyPortal, holdJSON("office-a", "patent", "a-1", at(1, 9, 15)), "Idempotency-Key", "k-1"), 422, api.CodeIdempotencyMismatch)
	want(t, e.post("/v1/bookings?applicant=a-1", keyPortal, body, "Idempotency-Key", "k-1"), 422, api.CodeIdempotencyMismatch)

	// Keys are namespaced by API key: another portal's k-1 is a new request.
	if other := e.call("POST", "/v1/bookings", keyPortalB, body, "Idempotency-Key", "k-1"); other.status != 201 || other.str(t, "id") == first.str(t, "id") {
		t.Fatalf("another portal's k-1: %d %s", other.status, other.body)
	}

	// Refusals are stored too, and replayed even after the state changed.
	id := first.str(t, "id")
	cancel := `{"applicant":"a-1"}`
	puts := e.store.putCount()
	refused := e.post("/v1/bookings/"+id+"/complete", keyOperator, ``, "Idempotency-Key", "k-2")
	want(t, refused, 409, api.CodeInvalidTransition)
	if n := e.store.putCount() - puts; n != 1 {
		t.Fatalf("refusal stored %d times", n)
	}
	want(t, e.post("/v1/bookings/"+id+"/confirm", keyPortal, cancel), 200, "")
	replayed := e.post("/v1/bookings/"+id+"/complete", keyOperator, ``, "Idempotency-Key", "k-2")
	if replayed.status != 409 || !bytes.Equal(replayed.body, refused.body) || replayed.header.Get("Content-Type") != contentProblem {
		t.Fatalf("refusal replay: %d %s", replayed.status, replayed.body)
	}

	// Transitions attach their response as well.
	c1 := e.post("/v1/bookings/"+id+"/cancel", keyPortal, cancel, "Idempotency-Key", "k-3")
	want(t, c1, 200, "")
	c2 := e.post("/v1/bookings/"+id+"/cancel", keyPortal, cancel, "Idempotency-Key", "k-3")
	if c2.status != 200 || !bytes.Equal(c1.body, c2.body) {
		t.Fatalf("cancel replay: %d %s", c2.status, c2.body)
	}

	// After the TTL the key is forgotten.
	e.clock.Add(DefaultIdempotencyTTL + time.Minute)
	want(t, e.post("/v1/bookings/"+id+"/cancel", keyPortal, cancel, "Idempotency-Key", "k-3"), 409, api.CodeInvalidTransition)

	// Malformed keys.
	want(t, e.post("/v1/bookings", keyPortal, body, "Idempotency-Key", string(bytes.Repeat([]byte("k"), 300))), 400, api.CodeValidationFailed)
}

func TestIdempotencyInFlight(t *testing.T) {
	e := newEnv(t, nil)
	entered := make(chan struct{})
	release := make(chan struct{})
	e.blockCommits(func(c *allocator.Change) {
		if c.Idempotency != nil {
			close(entered)
			<-release
		}
	})
	body := holdJSON("office-a", "patent", "a-1", at(1, 9, 0))
	done := make(chan resp, 1)
	go func() { done <- e.post("/v1/bookings", keyPortal, body, "Idempotency-Key", "k-1") }()
	<-entered
	want(t, e.post("/v1/bookings", keyPortal, body, "Idempotency-Key", "k-1"), 409, api.CodeIdempotencyInFlight)
	close(release)
	first := <-done
	want(t, first, 201, "")
	again := e.post("/v1/bookings", keyPortal, body, "Idempotency-Key", "k-1")
	if again.status != 201 || !bytes.Equal(again.body, first.body) {
		t.Fatalf("replay after in-flight: %d %s", again.status, again.body)
	}
}

// TestIdempotencyNotStoredOnFailedCommit: a commit that fails leaves the
// outcome unknown; nothing is stored, and the answer is 503.
func TestIdempotencyNotStoredOnFailedCommit(t *testing.T) {
	e := newEnv(t, nil)
	e.j.Fail = func(*allocator.Change) error { return errBlocked }
	want(t, e.post("/v1/bookings", keyPortal, holdJSON("office-a", "patent", "a-1", at(1, 9, 0)), "Idempotency-Key", "k-1"), 503, api.CodeDegraded)
	if _, ok, _ := e.store.LookupIdempotency("portal-a:k-1"); ok || e.store.putCount() != 0 {
		t.Fatal("a response of a failed commit was stored")
	}
}

// TestDefectWallClockJumpExpiresIdempotency: a record's age is measured
// on a clock that does not step. On the wall clock, a clock set forward by
// a day forgot every stored response at once, and a retry of a request
// that had succeeded ran again instead of getting its first answer.
func TestDefectWallClockJumpExpiresIdempotency(t *testing.T) {
	clock := newSteppedClock()
	e := newEnv(t, func(c *Config) { c.Now = clock.Now })
	body := holdJSON("office-a", "patent", "a-1", at(1, 9, 0))
	first := e.post("/v1/bookings", keyPortal, body, "Idempotency-Key", "k-1")
	want(t, first, 201, "")
	clock.step.Store(int64(DefaultIdempotencyTTL + time.Hour))
	again := e.post("/v1/bookings", keyPortal, body, "Idempotency-Key", "k-1")
	if again.status != 201 || !bytes.Equal(again.body, first.body) || again.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("retry after the clock jumped a day forward: %d %s, want the first answer replayed", again.status, again.body)
	}
}

// A refusal stored for an Idempotency-Key names the office the request
// was about, where the handler knows it (a hold's body), so that a move
// of the office between a cluster's groups takes the refusal along
// (replica O2); one about a booking by its id names none.
func TestIdempotencyRefusalNamesItsOffice(t *testing.T) {
	e := newEnv(t, nil)
	body := holdJSON("office-a", "patent", "a-1", at(1, 9, 0))
	first := e.post("/v1/bookings", keyPortal, body, "Idempotency-Key", "k-1")
	want(t, first, 201, "")
	// The applicant holds the service already: a refusal, no change.
	want(t, e.post("/v1/bookings", keyPortal, holdJSON("office-a", "patent", "a-1", at(1, 9, 15)), "Idempotency-Key", "k-2"), 409, api.CodeDuplicateBooking)
	if rec, ok, _ := e.store.LookupIdempotency("portal-a:k-2"); !ok || rec.Office != "office-a" {
		t.Fatalf("the stored refusal of a hold: %+v %v, want it to name office-a", rec, ok)
	}
	refused := e.post("/v1/bookings/"+first.str(t, "id")+"/complete", keyOperator, ``, "Idempotency-Key", "k-3")
	want(t, refused, 409, api.CodeInvalidTransition)
	if rec, ok, _ := e.store.LookupIdempotency("operator-a:k-3"); !ok || rec.Office != "" {
		t.Fatalf("the stored refusal of a transition: %+v %v, want no office", rec, ok)
	}
}
