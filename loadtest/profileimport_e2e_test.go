package loadtest

import (
	"bytes"
	"math"
	"net/http"
	"testing"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"slotd/internal/slotdtest"
	"slotd/internal/slotdtest/testtime"
)

// TestE2EAccessLogProfile: a real slotd answers a known number of
// requests, faster than its logger writes every line; the profile of its
// access log, with slotd's sampling undone, counts them within the
// sampler's uncertainty, and counts only the route asked for.
func TestE2EAccessLogProfile(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: starts slotd")
	}
	srv := slotdtest.Start(t, slotdtest.Build(t), t.TempDir())
	base := "http://" + srv.Addr
	header := http.Header{"Authorization": {"Bearer " + srv.Keys["demo-portal"]}}
	const (
		rate     = 1500
		duration = time.Second
	)
	targeter := vegeta.NewStaticTargeter(vegeta.Target{Method: http.MethodGet, URL: base + "/v1/offices", Header: header})
	attacker := vegeta.NewAttacker(vegeta.Timeout(10*time.Second), vegeta.MaxWorkers(256))
	sent := 0
	for r := range attacker.Attack(targeter, vegeta.ConstantPacer{Freq: rate, Per: time.Second}, duration, "offices") {
		if r.Code == 0 {
			t.Fatalf("no answer: %s", r.Error)
		}
		sent++
	}
	// Once a sampler window has passed, the next request line is written
	// whatever came before: send markers until one shows, so that every
	// line of the attack is in the log.
	markers := 0
	client := &http.Client{Timeout: 10 * time.Second}
	testtime.EventuallyTrue(t, 30*time.Second, "a marker request in the access log", func() bool {
		req, _ := http.NewRequest(http.MethodGet, base+"/v1/offices/marker-office", nil)
		req.Header = header
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		markers++
		for _, l := range srv.Logged("request") {
			if l["route"] == "/v1/offices/{office}" {
				return true
			}
		}
		return false
	})
	log := bytes.Join(srv.LogLines(), []byte("\n"))

	count := func(l *AccessLog) float64 {
		t.Helper()
		if err := l.Read(bytes.NewReader(log)); err != nil {
			t.Fatal(err)
		}
		p, err := l.Profile(ProfileImport{})
		if err != nil {
			t.Fatal(err)
		}
		n := 0.0
		for _, pt := range p.Points {
			n += pt.RatePerSecond * 60
		}
		return n
	}
	all := &AccessLog{Sampling: SlotdLogSampling}
	got, want := count(all), float64(sent+markers)
	// Each window that sampled is off by at most half a step, plus a
	// step where lines written concurrently cross a window's edge.
	tolerance := float64(all.Windows) * 1.5 * float64(SlotdLogSampling.Thereafter)
	t.Logf("%d requests and %d markers answered, %d lines, %d sampled windows: estimated %.0f", sent, markers, all.Requests, all.Windows, got)
	if all.Windows == 0 || all.Requests > sent/2 {
		t.Fatalf("%d lines for %d requests: the log was not sampled", all.Requests, sent)
	}
	if math.Abs(got-want) > tolerance {
		t.Errorf("estimated %.0f requests, %v were answered (tolerance %.0f)", got, want, tolerance)
	}
	plain := count(&AccessLog{})
	if plain > want/2 {
		t.Errorf("plain line count %v of %v requests", plain, want)
	}
	offices := count(&AccessLog{Sampling: SlotdLogSampling, Route: "/v1/offices", Method: "GET"})
	if math.Abs(offices-float64(sent)) > tolerance {
		t.Errorf("route /v1/offices: estimated %.0f, sent %d", offices, sent)
	}
	if markerOnly := count(&AccessLog{Sampling: SlotdLogSampling, Route: "/v1/offices/{office}"}); markerOnly > float64(markers)+1.5*float64(SlotdLogSampling.Thereafter) {
		t.Errorf("route of the markers: estimated %.0f, sent %d", markerOnly, markers)
	}
}
