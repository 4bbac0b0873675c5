package httpapi

import (
	"encoding/json"
	"strings"
	"testing"

	"slotd/allocator"
	"slotd/api"
	"slotd/internal/slotdtest/testtime"
)

// Portal namespaces over HTTP: a portal key reaches only the applicants
// of its namespace; the event feed shows a key only its offices and, for
// portal keys, its namespace.

// Keys the namespace tests add to testKeys.
const (
	keyPortalA2     = "portal-a2-key-0123456789"     // a second key of portal-a (rotation)
	keyPortalOA     = "portal-office-a-0123456789"   // a portal key limited to office-a
	keyPortalLegacy = "portal-legacy-key-0123456789" // the namespace of bookings made before namespaces
)

// namespaceKeys is the keys file of the namespace tests: testKeys and the
// keys above, read through LoadKeys as slotd reads its keys file.
func namespaceKeys(t testing.TB) func(*Config) {
	return func(c *Config) {
		extra, err := LoadKeys([]byte(`[
			{"key":"` + keyPortalA2 + `","name":"portal-a-2027","namespace":"portal-a","scopes":["portal"],"offices":["*"]},
			{"key":"` + keyPortalOA + `","name":"portal-oa","scopes":["portal"],"offices":["office-a"]},
			{"key":"` + keyPortalLegacy + `","name":"portal-legacy","namespace":"","scopes":["portal"],"offices":["*"]}]`))
		if err != nil {
			t.Fatalf("keys file with namespaces: %v", err)
		}
		c.Keys = append(c.Keys, extra...)
	}
}

// eventJSON is one event of a GET /v1/events answer.
type eventJSON struct {
	Cursor  string `json:"cursor"`
	Type    string `json:"type"`
	Office  string `json:"office"`
	Booking *struct {
		ID        string `json:"id"`
		Applicant string `json:"applicant"`
	} `json:"booking"`
	Watch string `json:"watch"`
}

// events reads the feed from after with key.
func (e *env) events(key, query string) (events []eventJSON, next string) {
	e.t.Helper()
	r := e.get("/v1/events?"+query, key)
	want(e.t, r, 200, "")
	var page struct {
		Events     []eventJSON `json:"events"`
		NextCursor string      `json:"next_cursor"`
	}
	if err := json.Unmarshal(r.body, &page); err != nil {
		e.t.Fatalf("events: %v: %s", err, r.body)
	}
	return page.Events, page.NextCursor
}

// bookingsOf returns the ids of "my bookings" of applicant through key.
func (e *env) bookingsOf(key, applicant string) []string {
	e.t.Helper()
	r := e.get("/v1/bookings?applicant="+applicant, key)
	want(e.t, r, 200, "")
	var page struct {
		Bookings []struct{ ID string } `json:"bookings"`
	}
	if err := json.Unmarshal(r.body, &page); err != nil {
		e.t.Fatal(err)
	}
	var ids []string
	for _, b := range page.Bookings {
		ids = append(ids, b.ID)
	}
	return ids
}

// TestDefectPortalReachesOtherPortalsBookings: applicant ids were shared by
// every portal key, so portal-b read, listed, printed and changed the
// bookings portal-a made for its applicant alice. Every route now answers
// portal-b as if the booking did not exist, and nothing changes.
func TestDefectPortalReachesOtherPortalsBookings(t *testing.T) {
	e := newEnv(t, nil)
	confirmed := e.mustHold("office-a", "patent", "alice", at(1, 10, 0), true)
	held := e.mustHold("office-b", "rvp", "alice", at(1, 11, 0), false)
	r := e.post("/v1/watches", keyPortal, `{"applicant":"alice","service":"rvp","office":"office-a","from":"2026-12-01","to":"2026-12-05"}`)
	want(t, r, 201, "")
	watch := r.str(t, "id")

	// The answer portal-a gets for an applicant it does not have: "no
	// such booking". portal-b gets exactly that for alice's.
	notFound := e.get("/v1/bookings/"+confirmed+"?applicant=nobody", keyPortal)
	want(t, notFound, 404, api.CodeNotFound)
	for _, p := range []string{"", "/ticket", "/ticket.png", "/ticket.pdf", "/receipt.pdf", "/calendar.ics"} {
		r := e.get("/v1/bookings/"+confirmed+p+"?applicant=alice", keyPortalB)
		want(t, r, 404, api.CodeNotFound)
		if p == "" && string(r.body) != string(notFound.body) {
			t.Fatalf("another portal's booking answers %s, an absent one %s", r.body, notFound.body)
		}
	}
	if ids := e.bookingsOf(keyPortalB, "alice"); len(ids) != 0 {
		t.Fatalf("portal-b lists portal-a's bookings of alice: %v", ids)
	}
	want(t, e.post("/v1/bookings/"+held+"/confirm", keyPortalB, `{"applicant":"alice"}`), 404, api.CodeNotFound)
	want(t, e.post("/v1/bookings/"+held+"/cancel", keyPortalB, `{"applicant":"alice"}`), 404, api.CodeNotFound)
	want(t, e.post("/v1/bookings/"+confirmed+"/cancel", keyPortalB, `{"applicant":"alice"}`), 404, api.CodeNotFound)
	want(t, e.post("/v1/bookings/"+confirmed+"/reschedule", keyPortalB, `{"applicant":"alice","start":"`+ts(at(2, 10, 0))+`"}`), 404, api.CodeNotFound)
	want(t, e.call("DELETE", "/v1/watches/"+watch+"?applicant=alice", keyPortalB, ""), 404, api.CodeNotFound)

	// Nothing changed: portal-a still has both bookings and the watch,
	// and sees alice as the applicant it named.
	if ids := e.bookingsOf(keyPortal, "alice"); len(ids) != 2 {
		t.Fatalf("portal-a's bookings of alice: %v", ids)
	}
	for id, status := range map[string]string{confirmed: "confirmed", held: "held"} {
		r := e.get("/v1/bookings/"+id+"?applicant=alice", keyPortal)
		want(t, r, 200, "")
		if b := r.obj(t); b["status"] != status || b["applicant"] != "alice" || b["start"] == nil {
			t.Fatalf("portal-a's booking after portal-b's attempts: %s", r.body)
		}
	}
	want(t, e.get("/v1/bookings/"+confirmed+"/ticket?applicant=alice", keyPortal), 200, "")
	if r := e.call("DELETE", "/v1/watches/"+watch+"?applicant=alice", keyPortal, ""); r.status != 204 {
		t.Fatalf("portal-a deletes its watch: %d %s", r.status, r.body)
	}

	// Operators act on bookings of any namespace at their offices.
	want(t, e.get("/v1/bookings/"+confirmed, keyOperator), 200, "")
	r = e.post("/v1/bookings/"+held+"/force-cancel", keyOperatorAll, `{"reason":"office request"}`)
	want(t, r, 200, "")
	if r.obj(t)["status"] != "cancelled" {
		t.Fatalf("force-cancel: %s", r.body)
	}
}

// TestDefectEventsIgnoreKeyOffices: the feed ignored a key's office list;
// a key limited to one office read every office's events.
func TestDefectEventsIgnoreKeyOffices(t *testing.T) {
	e := newEnv(t, namespaceKeys(t))
	e.mustHold("office-a", "patent", "alice", at(1, 10, 0), true)
	e.mustHold("office-b", "rvp", "alice", at(1, 10, 0), true)
	want(t, e.post("/v1/offices/office-a/release", keyAdmin, `{"through":"2027-01-10"}`), 200, "")
	want(t, e.post("/v1/offices/office-b/release", keyAdmin, `{"through":"2027-01-10"}`), 200, "")

	offices := func(key string) map[string]int {
		t.Helper()
		events, _ := e.events(key, "limit=1000")
		n := map[string]int{}
		for _, ev := range events {
			n[ev.Office]++
		}
		return n
	}
	// admin-b: admin at office-b only.
	if n := offices(keyAdminB); n["office-a"] != 0 || n["office-b"] != 3 {
		t.Fatalf("admin-b (office-b only) sees events per office %v, want office-b's 3 only", n)
	}
	// A portal key limited to office-a: office-a's release only (its
	// namespace has no bookings).
	if n := offices(keyPortalOA); n["office-b"] != 0 || n["office-a"] != 1 {
		t.Fatalf("portal-oa (office-a only) sees events per office %v, want office-a's release only", n)
	}
	if n := offices(keyAdmin); n["office-a"] != 3 || n["office-b"] != 3 {
		t.Fatalf("admin (every office) sees events per office %v, want 3 and 3", n)
	}
}

// TestDefectEventsShowOtherNamespaces: the feed showed a portal key the
// events of every portal's applicants, applicant ids included. A portal
// key now sees its namespace's events and those without an applicant; a
// long-poll is not woken by another namespace's event.
func TestDefectEventsShowOtherNamespaces(t *testing.T) {
	e := newEnv(t, namespaceKeys(t))
	alice := e.mustHold("office-a", "patent", "alice", at(1, 10, 0), true)
	want(t, e.post("/v1/watches", keyPortal, `{"applicant":"alice","service":"patent","office":"office-a","from":"2026-12-01","to":"2026-12-05"}`), 201, "")
	want(t, e.post("/v1/bookings/"+alice+"/cancel", keyPortal, `{"applicant":"alice"}`), 200, "") // watch.matched
	want(t, e.post("/v1/offices/office-a/release", keyAdmin, `{"through":"2027-01-10"}`), 200, "")

	types := func(key string) []string {
		t.Helper()
		events, _ := e.events(key, "limit=1000")
		var out []string
		for _, ev := range events {
			if ev.Booking != nil && ev.Booking.Applicant != "alice" {
				t.Fatalf("event of applicant %q", ev.Booking.Applicant)
			}
			out = append(out, ev.Type)
		}
		return out
	}
	wantA := "booking.held booking.confirmed booking.cancelled watch.matched slots.released"
	if got := strings.Join(types(keyPortal), " "); got != wantA {
		t.Fatalf("portal-a's events: %s, want %s", got, wantA)
	}
	if got := strings.Join(types(keyPortalA2), " "); got != wantA {
		t.Fatalf("portal-a's second key's events: %s, want %s", got, wantA)
	}
	if got := strings.Join(types(keyPortalB), " "); got != "slots.released" {
		t.Fatalf("portal-b's events: %s, want slots.released only", got)
	}
	if got := strings.Join(types(keyAdmin), " "); got != wantA {
		t.Fatalf("admin's events: %s, want every namespace's: %s", got, wantA)
	}

	// A long-poll of portal-b waits through portal-a's events and returns
	// with its own.
	_, next := e.events(keyPortalB, "limit=1000")
	done := make(chan resp, 1)
	go func() { done <- e.get("/v1/events?wait=5&after="+next, keyPortalB) }()
	testtime.EventuallyTrue(t, waitMax, "the long-poll to wait", func() bool { return e.srv.pollerSlots.len() == 1 })
	e.mustHold("office-a", "patent", "alice", at(2, 10, 0), false)
	want(t, e.post("/v1/bookings", keyPortalB, holdJSON("office-a", "patent", "bob", at(2, 11, 0))), 201, "")
	r := <-done
	want(t, r, 200, "")
	if strings.Contains(string(r.body), `"alice"`) || !strings.Contains(string(r.body), `"applicant":"bob"`) {
		t.Fatalf("portal-b's long-poll: %s", r.body)
	}
}

// TestDefectNamespaceSharedByKeysOfOnePortal: two keys of one portal (a
// rotation) name the same namespace and see the same bookings; each key
// keeps its own Idempotency-Keys. A key naming the namespace "" reaches
// the bookings stored before namespaces, whose applicant is stored bare.
func TestDefectNamespaceSharedByKeysOfOnePortal(t *testing.T) {
	e := newEnv(t, namespaceKeys(t))
	id := e.mustHold("office-a", "patent", "alice", at(1, 10, 0), false)
	want(t, e.get("/v1/bookings/"+id+"?applicant=alice", keyPortalA2), 200, "")
	if ids := e.bookingsOf(keyPortalA2, "alice"); len(ids) != 1 || ids[0] != id {
		t.Fatalf("portal-a's second key lists %v, want [%s]", ids, id)
	}
	r := e.post("/v1/bookings/"+id+"/confirm", keyPortalA2, `{"applicant":"alice"}`)
	want(t, r, 200, "")
	if b := r.obj(t); b["applicant"] != "alice" {
		t.Fatalf("confirm by the second key: %s", r.body)
	}
	want(t, e.get("/v1/bookings/"+id+"/ticket?applicant=alice", keyPortalA2), 200, "")

	// Idempotency-Keys stay per API key: the same key from the two keys
	// of one portal are two requests.
	hk := []string{"Idempotency-Key", "same-key-1"}
	first := e.post("/v1/bookings", keyPortal, holdJSON("office-b", "patent", "carol", at(1, 9, 0)), hk...)
	want(t, first, 201, "")
	second := e.post("/v1/bookings", keyPortalA2, holdJSON("office-b", "patent", "dave", at(1, 9, 0)), hk...)
	want(t, second, 201, "")
	if first.str(t, "id") == second.str(t, "id") {
		t.Fatal("the second key's request was answered with the first key's response")
	}

	// The legacy namespace: what a key naming "" books is stored as
	// bookings were before namespaces, applicant bare, and only such keys
	// reach it.
	legacy := e.post("/v1/bookings", keyPortalLegacy, holdJSON("office-a", "patent", "alice", at(1, 12, 0)))
	want(t, legacy, 201, "")
	lid, _ := allocator.ParseID(legacy.str(t, "id"))
	if v, err := e.eng.Get(lid, ""); err != nil || v.Applicant != "alice" {
		t.Fatalf("a legacy-namespace booking is stored with applicant %q (%v), want it bare", v.Applicant, err)
	}
	if v, _ := e.eng.Get(mustID(t, id), ""); v.Applicant == "alice" {
		t.Fatal("portal-a's booking is stored in the legacy namespace")
	}
	want(t, e.get("/v1/bookings/"+legacy.str(t, "id")+"?applicant=alice", keyPortal), 404, api.CodeNotFound)
	want(t, e.get("/v1/bookings/"+id+"?applicant=alice", keyPortalLegacy), 404, api.CodeNotFound)
}

func mustID(t testing.TB, s string) allocator.ID {
	t.Helper()
	id, err := allocator.ParseID(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestDefectNamespaceLimitsPerNamespace: the same applicant id in two
// portals is two people, so the active limit, the duplicate check and the
// cancel penalty count per namespace — within a namespace across its keys.
func TestDefectNamespaceLimitsPerNamespace(t *testing.T) {
	e := newEnv(t, namespaceKeys(t))
	// Duplicate: portal-a's alice has patent at office-a; portal-b's
	// alice is someone else, portal-a's second key is the same portal.
	e.mustHold("office-a", "patent", "alice", at(1, 9, 0), false)
	want(t, e.post("/v1/bookings", keyPortalB, holdJSON("office-a", "patent", "alice", at(1, 9, 15))), 201, "")
	want(t, e.post("/v1/bookings", keyPortalA2, holdJSON("office-a", "patent", "alice", at(1, 9, 30))), 409, api.CodeDuplicateBooking)
	// Active limit (3): portal-a's alice reaches it, portal-b's does not.
	e.addServices("office-b", "inn", "snils")
	e.mustHold("office-b", "inn", "alice", at(1, 9, 0), false)
	e.mustHold("office-a", "rvp", "alice", at(1, 10, 0), false)
	want(t, e.post("/v1/bookings", keyPortalA2, holdJSON("office-b", "snils", "alice", at(1, 10, 0))), 422, api.CodeLimitReached)
	want(t, e.post("/v1/bookings", keyPortalB, holdJSON("office-b", "snils", "alice", at(1, 10, 0))), 201, "")
	// Penalty (3 cancels of confirmed bookings): portal-b's erin is
	// blocked, portal-a's erin is not.
	for i := range 3 {
		r := e.post("/v1/bookings", keyPortalB, `{"office":"office-a","service":"patent","applicant":"erin","start":"`+ts(at(2+i, 10, 0))+`","confirm":true}`)
		want(t, r, 201, "")
		want(t, e.post("/v1/bookings/"+r.str(t, "id")+"/cancel", keyPortalB, `{"applicant":"erin"}`), 200, "")
	}
	want(t, e.post("/v1/bookings", keyPortalB, holdJSON("office-a", "patent", "erin", at(2, 11, 0))), 422, api.CodeApplicantBlocked)
	want(t, e.post("/v1/bookings", keyPortal, holdJSON("office-a", "patent", "erin", at(2, 11, 0))), 201, "")
}

// The engine's applicant id splits back into what composed it (N3, N4).
func TestEngineApplicantSplits(t *testing.T) {
	f := func(namespace, applicant, wantID string) {
		t.Helper()
		id := engineApplicantOf(namespace, applicant)
		if id != wantID {
			t.Fatalf("engineApplicantOf(%q, %q) = %q, want %q", namespace, applicant, id, wantID)
		}
		if ns, a := SplitApplicant(id); ns != namespace || a != applicant {
			t.Fatalf("SplitApplicant(%q) = %q, %q", id, ns, a)
		}
	}
	f("portal-a", "alice", "portal-a\x00alice")
	f("portal-a", "a/b:c", "portal-a\x00a/b:c")
	f("", "alice", "alice") // the legacy namespace: as stored before namespaces
	f("p", "", "p\x00")
}

// An applicant id with the separator is refused wherever one is given.
func TestApplicantWithNULRefused(t *testing.T) {
	e := newEnv(t, nil)
	want(t, e.post("/v1/bookings", keyPortal, `{"office":"office-a","service":"patent","applicant":"portal-b\u0000alice","start":"`+ts(at(1, 9, 0))+`"}`), 400, api.CodeValidationFailed)
	want(t, e.get("/v1/bookings?applicant=x%00y", keyPortal), 400, api.CodeValidationFailed)
	want(t, e.get("/v1/bookings/AAAAAAAAAAAAAAAAAAAAAA?applicant=x%00y", keyPortal), 400, api.CodeValidationFailed)
	want(t, e.post("/v1/watches", keyPortal, `{"applicant":"a\u0000b","service":"patent","office":"office-a","from":"2026-12-01","to":"2026-12-05"}`), 400, api.CodeValidationFailed)
}

// Active bookings of the legacy namespace need a portal key that reaches
// them; operator and admin keys do not count, nor do archived bookings.
func TestCheckLegacyBookings(t *testing.T) {
	keys := func(data string) []Key {
		t.Helper()
		k, err := LoadKeys([]byte(data))
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	portalA := `{"key":"k-0123456789abcdef","name":"portal-a","scopes":["portal"],"offices":["*"]}`
	legacyOp := `{"key":"k-0123456789abcdeg","name":"op","namespace":"","scopes":["operator"],"offices":["*"]}`
	legacyPortal := `{"key":"k-0123456789abcdeh","name":"old","namespace":"","scopes":["portal"],"offices":["*"]}`
	if err := CheckLegacyBookings(keys(`[`+portalA+`]`), 0); err != nil {
		t.Fatalf("no legacy bookings: %v", err)
	}
	if err := CheckLegacyBookings(keys(`[`+portalA+`,`+legacyOp+`]`), 2); err == nil || !strings.Contains(err.Error(), `"namespace": ""`) {
		t.Fatalf("no portal key in the legacy namespace: %v", err)
	}
	if err := CheckLegacyBookings(keys(`[`+portalA+`,`+legacyPortal+`]`), 2); err != nil {
		t.Fatalf("a portal key in the legacy namespace: %v", err)
	}
	if err := CheckLegacyBookings(keys(`[`+legacyOp+`]`), 2); err != nil {
		t.Fatalf("no portal keys at all: %v", err)
	}
}
