package clustertest

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"slotd/internal/slotdtest"
	"slotd/internal/slotdtest/testtime"
)

// ledgerOffices are demo offices in three groups (with -groups 3) and
// their services: five services in all, the limit of each office the
// default 3 active bookings per applicant.
var ledgerOffices = []struct {
	id       string
	services []string
}{
	{"spb-mmc", []string{"patent", "rvp"}},                               // group 1
	{"msk-mfc-tverskoy", []string{"patent", "passport", "registration"}}, // group 2
	{"msk-sakharovo", []string{"patent", "rvp", "fingerprint"}},          // group 3
}

const ledgerLimitDemo = 3

// One applicant hammers holds and cancels at offices of three groups
// through every node, and group 1's leader is killed with SIGKILL midway:
// the applicant never ends up with more active bookings than the limit,
// nor with a service twice, across the groups (replica L1–L3), and the
// portal sees only the codes of one node.
func TestApplicantLimitAcrossGroupsUnderKill(t *testing.T) {
	c := startCluster(t, slotdtest.Build(t), 3, 3)
	for g := uint64(1); g <= 3; g++ {
		c.leader(g)
	}
	// The nodes' ledger route is theirs: a portal, even one that spoofs
	// the forwarding header, finds no such route.
	for _, spoof := range []string{"", "guess"} {
		req, err := http.NewRequest("POST", "http://"+c.nodes[0].addr+"/internal/ledger?group=1", strings.NewReader("\x04"))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+portalKey)
		if spoof != "" {
			req.Header.Set("X-Slotd-Forwarded", spoof)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 404 {
			t.Fatalf("a portal's POST /internal/ledger (forwarded header %q): %d, want 404", spoof, resp.StatusCode)
		}
	}
	date := nextWeekday(3)
	const applicant = "ledger-hammer"
	var (
		held     atomic.Int64
		codes    sync.Map // code → count
		stop     = make(chan struct{})
		wg       sync.WaitGroup
		failures atomic.Int64
	)
	for i := range 6 {
		wg.Go(func() {
			rnd := rand.New(rand.NewPCG(uint64(i), 2))
			for {
				select {
				case <-stop:
					return
				default:
				}
				n := c.randomUp()
				if rnd.IntN(4) == 0 {
					// An active booking as listed, not one of the acknowledged:
					// a hold answered 503 may still have committed, and left
					// alone it would keep the applicant at the limit.
					if active, err := listActive(n, applicant); err == nil && len(active) > 0 {
						cancel := active[rnd.IntN(len(active))].id
						_, _, _ = n.call("POST", "/v1/bookings/"+cancel+"/cancel", fmt.Sprintf(`{"applicant":%q}`, applicant), "")
					}
					continue
				}
				o := ledgerOffices[rnd.IntN(len(ledgerOffices))]
				body := fmt.Sprintf(`{"office":%q,"service":%q,"applicant":%q,"earliest_after":"%sT09:00:00+03:00"}`,
					o.id, o.services[rnd.IntN(len(o.services))], applicant, date)
				status, out, err := n.call("POST", "/v1/bookings", body, "")
				switch {
				case err != nil:
					failures.Add(1)
				case status == 201 || status == 200:
					held.Add(1)
				default:
					code := fmt.Sprintf("%d %s", status, str(out["code"]))
					v, _ := codes.LoadOrStore(code, new(atomic.Int64))
					v.(*atomic.Int64).Add(1)
				}
				if status == 503 || err != nil {
					time.Sleep(5 * time.Millisecond)
				}
			}
		})
	}
	testtime.EventuallyTrue(t, waitFor, "15 holds acknowledged", func() bool { return held.Load() >= 15 })
	victim := c.leader(1)
	victim.kill()
	t.Logf("group 1's leader, node %d, killed after %d holds", victim.id, held.Load())
	testtime.EventuallyTrue(t, 2*waitFor, "40 holds acknowledged", func() bool { return held.Load() >= 40 })
	close(stop)
	wg.Wait()
	codes.Range(func(k, v any) bool {
		t.Logf("answered %s: %d times", k, v.(*atomic.Int64).Load())
		switch k {
		case "409 duplicate_booking", "422 limit_reached", "409 slot_taken", "503 no_leader", "409 invalid_transition", "404 not_found":
		default:
			t.Errorf("unexpected answer %s", k)
		}
		return true
	})
	for g := uint64(1); g <= 3; g++ {
		c.converged(g)
	}
	active := activeBookings(t, c.leader(1), applicant)
	t.Logf("%d holds acknowledged, %d connection failures; %d active at the end: %v", held.Load(), failures.Load(), len(active), active)
	if len(active) > ledgerLimitDemo {
		t.Fatalf("%d active bookings across groups, the limit is %d: %v", len(active), ledgerLimitDemo, active)
	}
	var services []string
	for _, s := range active {
		if slices.Contains(services, s) {
			t.Fatalf("service %s held twice across groups: %v", s, active)
		}
		services = append(services, s)
	}
}

// activeBooking is one of an applicant's active bookings as listed.
type activeBooking struct{ id, service string }

// listActive returns applicant's active bookings, every group's, listed
// through n.
func listActive(n *node, applicant string) ([]activeBooking, error) {
	var out []activeBooking
	cursor := ""
	for {
		status, page, err := n.call("GET", "/v1/bookings?limit=200&applicant="+url.QueryEscape(applicant)+"&cursor="+url.QueryEscape(cursor), "", "")
		if err != nil || status != 200 {
			return nil, fmt.Errorf("list: %d %v %v", status, page, err)
		}
		list, _ := page["bookings"].([]any)
		for _, b := range list {
			m, _ := b.(map[string]any)
			switch str(m["status"]) {
			case "held", "confirmed", "cancel_requested", "checked_in", "awaiting_approval":
				out = append(out, activeBooking{str(m["id"]), str(m["service"])})
			}
		}
		if cursor = str(page["next_cursor"]); cursor == "" {
			return out, nil
		}
	}
}

// activeBookings returns the services of applicant's active bookings,
// every group's, listed through n.
func activeBookings(t *testing.T, n *node, applicant string) []string {
	t.Helper()
	active, err := listActive(n, applicant)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, b := range active {
		out = append(out, b.service)
	}
	return out
}
