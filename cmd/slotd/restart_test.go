package main

// Restart over HTTP: the real slotd binary on loopback, bookings made,
// stopped with SIGTERM (clean drain) and with SIGKILL, restarted on the
// same data directory; everything acknowledged is there (DESIGN
// invariants 2 and 4 end to end).

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"slotd/internal/slotdtest"
)

type slotdProc struct {
	*slotdtest.Server
	portalKey string
}

func startSlotd(t *testing.T, bin, data string) *slotdProc {
	t.Helper()
	srv := slotdtest.Start(t, bin, data)
	return &slotdProc{Server: srv, portalKey: srv.Keys["demo-portal"]}
}

// book holds and (optionally) confirms a booking of applicant with key,
// at the first free start dayOffset days ahead at the demo migration
// centre, and returns its id.
func book(t *testing.T, s *slotdtest.Server, key, applicant string, dayOffset int, confirm bool) string {
	t.Helper()
	from := time.Now().AddDate(0, 0, dayOffset).Format("2006-01-02")
	body := fmt.Sprintf(`{"office":"msk-mfc-tverskoy","service":"patent","applicant":%q,"earliest_after":"%sT00:00:00+03:00","confirm":%v}`, applicant, from, confirm)
	code, b := s.Call(t, key, "POST", "/v1/bookings", body)
	if code != 201 {
		t.Fatalf("hold of %s with key %q: %d %v", applicant, key, code, b)
	}
	return b["id"].(string)
}

func (p *slotdProc) status(t *testing.T, id, applicant string) string {
	t.Helper()
	code, b := p.Call(t, p.portalKey, "GET", "/v1/bookings/"+id+"?applicant="+applicant, "")
	if code != 200 {
		t.Fatalf("get %s: %d %v", id, code, b)
	}
	return b["status"].(string)
}

func TestRestartKeepsAcknowledgedBookings(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the server")
	}
	bin := slotdtest.Build(t)
	data := t.TempDir()
	p := startSlotd(t, bin, data)
	want := map[string]string{}
	for i := 0; i < 5; i++ {
		app := fmt.Sprintf("term-%d", i)
		want[app+"/"+book(t, p.Server, p.portalKey, app, 3, i%2 == 0)] = map[bool]string{true: "confirmed", false: "held"}[i%2 == 0]
	}
	// SIGTERM: drains, exits 0.
	if !p.Stop(t, syscall.SIGTERM) {
		t.Fatal("slotd did not exit cleanly on SIGTERM")
	}
	p = startSlotd(t, bin, data)
	check := func() {
		for k, st := range want {
			app, id, _ := strings.Cut(k, "/")
			if got := p.status(t, id, app); got != st {
				t.Fatalf("booking %s of %s is %s after restart, want %s", id, app, got, st)
			}
		}
	}
	check()
	for i := 0; i < 5; i++ {
		app := fmt.Sprintf("kill-%d", i)
		want[app+"/"+book(t, p.Server, p.portalKey, app, 4, true)] = "confirmed"
	}
	// SIGKILL: no drain at all.
	p.Stop(t, syscall.SIGKILL)
	p = startSlotd(t, bin, data)
	check()
	p.Stop(t, syscall.SIGTERM)
}
