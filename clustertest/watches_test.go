package clustertest

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"slotd/internal/slotdtest"
	"slotd/internal/slotdtest/testtime"
)

// A region watch with more than one group: the front makes it of parts,
// one in each group with an office of the region offering the service,
// under one id whose first byte is 0 (cmd/slotd/cluster_watches.go). With
// -groups 2 the demo region moscow has offices in both groups. The watch
// is created through one node and retried under its Idempotency-Key
// through another (same id); a seat freed in one group serves it
// (auto_hold: the seat becomes the watcher's hold there) and ends its part
// in the other group, so that a seat freed there afterwards does not go
// to the watcher. A watch deleted through another node loses its parts in
// every group; one refused by a group leaves no part in the others. A
// client's own X-Slotd-Watch-Id is ignored. Whether a part lives is read
// from the applicant's limit of 10 watches a group.
func TestRegionWatchAcrossGroups(t *testing.T) {
	c := startCluster(t, slotdtest.Build(t), 3, 2)
	c.leader(1)
	c.leader(2)
	a, b, d := c.nodes[0], c.nodes[1], c.nodes[2]
	date := nextWeekday(3)
	watch := fmt.Sprintf(`{"applicant":"watcher","service":"patent","region":"moscow","from":%q,"to":%q,"auto_hold":true}`, date, date)
	status, w, err := a.call("POST", "/v1/watches", watch, "watch-1")
	if err != nil || status != 201 {
		t.Fatalf("region watch: %d %v %v, want 201", status, w, err)
	}
	id := str(w["id"])
	if raw, err := base64.RawURLEncoding.DecodeString(id); err != nil || len(raw) != 16 || raw[0] != 0 {
		t.Fatalf("watch id %q: a watch of parts has first byte 0 (%v)", id, err)
	}
	if w["region"] != "moscow" || w["auto_hold"] != true {
		t.Fatalf("watch %v", w)
	}
	if status, w2, err := b.call("POST", "/v1/watches", watch, "watch-1"); err != nil || status != 201 || str(w2["id"]) != id {
		t.Fatalf("the retry through another node: %d %v %v, want 201 with id %s", status, w2, err, id)
	}

	// A client naming a watch's id is ignored: the header is the front's.
	forged := base64.RawURLEncoding.EncodeToString([]byte("forged watch id!"))
	office := fmt.Sprintf(`{"applicant":"forger","service":"patent","office":"msk-mfc-mitino","from":%q,"to":%q}`, date, date)
	req, _ := http.NewRequest("POST", "http://"+d.addr+"/v1/watches", strings.NewReader(office))
	req.Header.Set("Authorization", "Bearer "+portalKey)
	req.Header.Set("X-Slotd-Watch-Id", forged)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var fw map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&fw)
	resp.Body.Close()
	if resp.StatusCode != 201 || str(fw["id"]) == forged {
		t.Fatalf("a watch with a forged id header: %d %v, want 201 with an id of the engine's", resp.StatusCode, fw)
	}

	hold := func(n *node, office, applicant string) string {
		t.Helper()
		body := fmt.Sprintf(`{"office":%q,"service":"patent","applicant":%q,"earliest_after":"%sT09:00:00+03:00"}`, office, applicant, date)
		status, out, err := n.call("POST", "/v1/bookings", body, "")
		if err != nil || status != 201 {
			t.Fatalf("hold at %s: %d %v %v", office, status, out, err)
		}
		return str(out["id"])
	}
	cancel := func(n *node, id, applicant string) {
		t.Helper()
		status, out, err := n.call("POST", "/v1/bookings/"+id+"/cancel", fmt.Sprintf(`{"applicant":%q}`, applicant), "")
		if err != nil || status != 200 {
			t.Fatalf("cancel %s: %d %v %v", id, status, out, err)
		}
	}
	watcherBookings := func() []string {
		t.Helper()
		status, out, err := d.call("GET", "/v1/bookings?applicant=watcher", "", "")
		if err != nil || status != 200 {
			t.Fatalf("the watcher's bookings: %d %v %v", status, out, err)
		}
		var offices []string
		for _, x := range out["bookings"].([]any) {
			bk := x.(map[string]any)
			offices = append(offices, str(bk["office"])+" "+str(bk["status"]))
		}
		return offices
	}

	officeWatch := func(n *node, applicant, office string) (int, map[string]any) {
		t.Helper()
		body := fmt.Sprintf(`{"applicant":%q,"service":"patent","office":%q,"from":%q,"to":%q}`, applicant, office, date, date)
		status, out, err := n.call("POST", "/v1/watches", body, "")
		if err != nil {
			t.Fatal(err)
		}
		return status, out
	}
	// fill gives applicant's office watches at office up to the limit of
	// 10 a group, with have already there.
	fill := func(applicant, office string, have int) {
		t.Helper()
		for i := have; i < 10; i++ {
			if status, out := officeWatch(c.nodes[i%3], applicant, office); status != 201 {
				t.Fatalf("%s's office watch %d at %s: %d %v", applicant, i, office, status, out)
			}
		}
		if status, out := officeWatch(a, applicant, office); status != 422 {
			t.Fatalf("%s's office watch past the limit at %s: %d %v, want 422", applicant, office, status, out)
		}
	}

	// The watcher's part in group 2 and nine office watches there make its
	// limit: one more fits only once the part is gone.
	fill("watcher", "msk-sakharovo", 1)
	// msk-mfc-mitino is in group 1 and msk-sakharovo in group 2.
	cancel(b, hold(a, "msk-mfc-mitino", "other-1"), "other-1")
	if got := watcherBookings(); len(got) != 1 || got[0] != "msk-mfc-mitino held" {
		t.Fatalf("after a seat freed in group 1 the watcher holds %v, want the seat at msk-mfc-mitino", got)
	}
	// The part served in group 1 ends the part in group 2.
	testtime.Eventually(t, waitFor, "the part in group 2 ends", func() error {
		if status, out := officeWatch(d, "watcher", "msk-sakharovo"); status != 201 {
			return fmt.Errorf("another office watch there: %d %v", status, out)
		}
		return nil
	})
	cancel(a, hold(b, "msk-sakharovo", "other-2"), "other-2")
	if got := watcherBookings(); len(got) != 1 {
		t.Fatalf("a seat freed in group 2 after the watch was served went to the watcher: %v", got)
	}
	if status, _, _ := b.call("DELETE", "/v1/watches/"+id+"?applicant=watcher", "", ""); status != 404 {
		t.Fatalf("a served watch deleted: %d, want 404", status)
	}

	// Deleted through another node than the one that made it, a watch
	// loses its parts in both groups: the applicant's ten watches fit in
	// each afterwards.
	w4 := fmt.Sprintf(`{"applicant":"w4","service":"patent","region":"moscow","from":%q,"to":%q}`, date, date)
	status, w, err = a.call("POST", "/v1/watches", w4, "")
	if err != nil || status != 201 {
		t.Fatalf("w4's watch: %d %v %v", status, w, err)
	}
	if status, out, err := d.call("DELETE", "/v1/watches/"+str(w["id"])+"?applicant=w4", "", ""); err != nil || status != 204 {
		t.Fatalf("delete w4's watch: %d %v %v, want 204", status, out, err)
	}
	if status, _, _ := b.call("DELETE", "/v1/watches/"+str(w["id"])+"?applicant=w4", "", ""); status != 404 {
		t.Fatalf("a deleted watch deleted again: %d, want 404", status)
	}
	fill("w4", "msk-mfc-mitino", 0)
	fill("w4", "msk-sakharovo", 0)

	// A region whose offices are all in one group (spb: group 1) has one
	// part; a service no office of the region offers is 404 as with one
	// group.
	spb := fmt.Sprintf(`{"applicant":"w2","service":"patent","region":"spb","from":%q,"to":%q}`, date, date)
	status, w, err = b.call("POST", "/v1/watches", spb, "")
	if err != nil || status != 201 {
		t.Fatalf("spb watch: %d %v %v", status, w, err)
	}
	if status, _, _ := a.call("DELETE", "/v1/watches/"+str(w["id"])+"?applicant=w2", "", ""); status != 204 {
		t.Fatalf("delete the spb watch: %d, want 204", status)
	}
	// A refusal in one group undoes the parts made in the others: with its
	// 10 watches at msk-sakharovo (group 2) the applicant is at its limit
	// there, so the watch answers 422 limit_reached, and the part made in
	// group 1 is deleted again — its ten watches fit there afterwards.
	fill("full", "msk-sakharovo", 0)
	full := fmt.Sprintf(`{"applicant":"full","service":"patent","region":"moscow","from":%q,"to":%q}`, date, date)
	if status, out, _ := b.call("POST", "/v1/watches", full, ""); status != 422 || out["code"] != "limit_reached" {
		t.Fatalf("a region watch over the limit in group 2: %d %v, want 422 limit_reached", status, out)
	}
	fill("full", "msk-mfc-mitino", 0) // no part left behind in group 1

	if status, out, _ := a.call("DELETE", "/v1/watches", "", ""); status != 405 {
		t.Fatalf("DELETE /v1/watches: %d %v, want 405 as from one slotd", status, out)
	}
	none := fmt.Sprintf(`{"applicant":"w3","service":"no-such-service","region":"moscow","from":%q,"to":%q}`, date, date)
	if status, out, _ := a.call("POST", "/v1/watches", none, ""); status != 404 || out["code"] != "not_found" {
		t.Fatalf("a service the region lacks: %d %v, want 404 not_found", status, out)
	}
}
