package httpapi

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"slotd/allocator"
	"slotd/api"
	"slotd/wal"
)

// One booking's long history must not stop the writes of the whole server,
// over HTTP with the real journal, before and after a restart.

// walEnv is a server on a Pebble journal in dir, with the keys and offices
// of newEnv and its clock at now.
func walEnv(t *testing.T, dir string, now time.Time, create bool) (e *env, stop func()) {
	t.Helper()
	db, err := wal.Open(dir, wal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	eng, err := allocator.New(allocator.Config{Journal: db})
	if err != nil {
		t.Fatal(err)
	}
	if create {
		for _, id := range []string{"office-a", "office-b"} {
			if _, err := eng.PutOffice(now, testOffice(id), allocator.Meta{Actor: "setup"}); err != nil {
				t.Fatal(err)
			}
		}
	} else if _, err := wal.Recover(db, eng, now); err != nil {
		t.Fatal(err)
	}
	e = &env{t: t, eng: eng, clock: newClock(now), db: db}
	srv, err := New(Config{Engine: eng, Idempotency: db, Events: db, Keys: testKeys(),
		Secret: []byte("test-secret-test-secret-test-secret!"), Now: e.clock.Now,
		RatePerSecond: 1e6, RatePerApplicant: -1})
	if err != nil {
		t.Fatal(err)
	}
	srv.SetReady(true)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	e.srv, e.url = srv, "http://"+ln.Addr().String()
	e.client = &http.Client{Transport: newSpecTransport(t, &http.Transport{}), Timeout: 30 * time.Second}
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
		e.client.CloseIdleConnections()
		if err := db.Close(); err != nil {
			t.Errorf("close the journal: %v", err)
		}
	}
	t.Cleanup(stop)
	return e, stop
}

// lateCancelRounds runs up to rounds of the applicant's late cancel and
// the operator's reject of booking id over HTTP. It returns the answer
// that refused a round, or a zero resp when every round went through.
func lateCancelRounds(e *env, id, applicant string, rounds int) (int, resp) {
	e.t.Helper()
	for i := range rounds {
		r := e.post("/v1/bookings/"+id+"/cancel", keyPortal, `{"applicant":"`+applicant+`","reason":"changed plans"}`)
		if r.status != 200 {
			return i, r
		}
		if st := r.str(e.t, "status"); st != "cancel_requested" {
			e.t.Fatalf("round %d: cancel gave %s, want cancel_requested", i, st)
		}
		if r = e.post("/v1/bookings/"+id+"/reject-cancel", keyOperator, `{"reason":"the office needs the visit"}`); r.status != 200 {
			return i, r
		}
	}
	return rounds, resp{}
}

// checkServerWrites fails unless another applicant can still book at
// another office.
func checkServerWrites(e *env, applicant string, start time.Time) {
	e.t.Helper()
	if e.eng.Degraded() {
		e.t.Fatal("one booking's history degraded the whole engine")
	}
	r := e.post("/v1/bookings", keyPortal, holdJSON("office-b", "patent", applicant, start))
	want(e.t, r, 201, "")
}

// TestDefectHistoryLimitOverHTTP: rounds of late cancel (portal) and
// reject (operator) used to take a booking to the 1,024 history entries
// the journal holds; the next cancel answered 503 degraded, and so did
// every write at every office from then on, across a restart too. The
// refusal must be a 422 history_limit for that booking alone.
func TestDefectHistoryLimitOverHTTP(t *testing.T) {
	now := at(0, 15, 0)  // 18 hours before the start: a cancel is a request
	start := at(1, 9, 0) // Tuesday 09:00
	dir := t.TempDir()
	e, stop := walEnv(t, dir, now, true)
	id := e.mustHold("office-a", "patent", "cycler", start, true)

	// 511 rounds reach the on-disk format's 1,024 entries; the 512th cancel
	// used to be the one the journal refused.
	done, r := lateCancelRounds(e, id, "cycler", 512)
	if r.status == 0 {
		t.Fatalf("%d rounds of late cancel and reject all went through", done)
	}
	want(t, r, 422, api.CodeHistoryLimit)
	checkServerWrites(e, "bystander-1", start)
	got := e.get("/v1/bookings/"+id+"?applicant=cycler", keyPortal)
	want(t, got, 200, "")
	if st := got.str(t, "status"); st != "confirmed" {
		t.Fatalf("the refused booking is %s, want it confirmed as before the refusal", st)
	}
	if n := len(got.obj(t)["history"].([]any)); n > allocator.HistoryEntriesMax {
		t.Fatalf("history of %d entries, beyond the limit of %d", n, allocator.HistoryEntriesMax)
	}

	stop()
	e, _ = walEnv(t, dir, now, false)
	_, r = lateCancelRounds(e, id, "cycler", 1)
	want(t, r, 422, api.CodeHistoryLimit)
	checkServerWrites(e, "bystander-2", start)
}

// TestHistoryTextLimitsAtTheEdge: a reason beyond what the engine keeps is
// a 400 at the edge, before the engine sees it.
func TestHistoryTextLimitsAtTheEdge(t *testing.T) {
	e := newEnv(t, nil)
	e.setNow(at(0, 15, 0))
	id := e.mustHold("office-a", "patent", "a-1", at(1, 9, 0), true)
	long := strings.Repeat("r", allocator.ReasonBytesMax+1)
	want(t, e.post("/v1/bookings/"+id+"/cancel", keyPortal, `{"applicant":"a-1","reason":"`+long+`"}`), 400, api.CodeValidationFailed)
	want(t, e.post("/v1/bookings/"+id+"/cancel", keyPortal, `{"applicant":"a-1","reason":"`+long[1:]+`"}`), 200, "")
}
