package deploy

import (
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"slotd/internal/slotdtest"
	"slotd/internal/slotdtest/testtime"
)

const (
	// waitMax bounds every wait on the server; the tests poll, they never
	// assert how long anything took.
	waitMax = 60 * time.Second
	// slotOffice is a demo office with few windows, so a start fills up
	// after a handful of bookings.
	slotOffice  = "msk-mfc-mitino"
	slotService = "patent"
)

// server is a slotd process started by startSlotd.
type server struct {
	*slotdtest.Server
	portalKey string
}

// startSlotd builds cmd/slotd and starts it with demo offices on ephemeral
// loopback ports and a scratch data directory; at the end of the test it
// is stopped with SIGTERM and must drain cleanly.
func startSlotd(t *testing.T) *server {
	t.Helper()
	srv := slotdtest.Start(t, slotdtest.Build(t), t.TempDir())
	t.Cleanup(func() {
		if !srv.Stop(t, syscall.SIGTERM) {
			t.Errorf("slotd did not exit cleanly on SIGTERM")
		}
	})
	s := &server{Server: srv, portalKey: srv.Keys["demo-portal"]}
	if s.portalKey == "" {
		t.Fatal("no portal key among the development keys")
	}
	return s
}

var client = &http.Client{Timeout: waitMax}

func (s *server) must(t *testing.T, want int, method, path, body string) map[string]any {
	t.Helper()
	code, out := s.Call(t, s.portalKey, method, path, body)
	if code != want {
		t.Fatalf("%s %s: %d %v, want %d", method, path, code, out, want)
	}
	return out
}

// list returns the objects of the collection named name in a response.
func list(t *testing.T, out map[string]any, name string) []map[string]any {
	t.Helper()
	raw, _ := out[name].([]any)
	var xs []map[string]any
	for _, r := range raw {
		if m, ok := r.(map[string]any); ok {
			xs = append(xs, m)
		}
	}
	return xs
}

// driveTraffic makes the requests a portal makes in a small rush: reads,
// bookings by earliest_after with confirm, one start booked until it is
// full and then once more (409 slot_taken), and one unknown key (401).
func driveTraffic(t *testing.T, s *server) {
	t.Helper()
	s.must(t, 200, "GET", "/v1/offices?service="+slotService, "")
	days := list(t, s.must(t, 200, "GET", "/v1/offices/"+slotOffice+"/days?service="+slotService, ""), "days")
	// Two days ahead at least, so the start cannot pass while the test
	// books it.
	minDate := time.Now().AddDate(0, 0, 2).Format("2006-01-02")
	var start string
	var free int
	for _, d := range days {
		date, _ := d["date"].(string)
		if n, _ := d["free"].(float64); n > 0 && start == "" && date >= minDate {
			slots := list(t, s.must(t, 200, "GET", "/v1/offices/"+slotOffice+"/days/"+date+"/slots?service="+slotService, ""), "slots")
			for _, sl := range slots {
				if n, _ := sl["free"].(float64); n > 0 {
					start, _ = sl["start"].(string)
					free = int(n)
					break
				}
			}
		}
	}
	if start == "" {
		t.Fatalf("no free %s start at %s in %v", slotService, slotOffice, days)
	}

	after := time.Now().AddDate(0, 0, 2).Format("2006-01-02") + "T00:00:00+03:00"
	for i := range 3 {
		body := fmt.Sprintf(`{"office":"msk-mfc-tverskoy","service":%q,"applicant":"metrics-early-%d","earliest_after":%q,"confirm":true}`,
			slotService, i, after)
		if b := s.must(t, 201, "POST", "/v1/bookings", body); b["status"] != "confirmed" {
			t.Fatalf("booking with confirm: status %v", b["status"])
		}
	}
	for i := range free {
		body := fmt.Sprintf(`{"office":%q,"service":%q,"applicant":"metrics-fill-%d","start":%q}`, slotOffice, slotService, i, start)
		s.must(t, 201, "POST", "/v1/bookings", body)
	}
	body := fmt.Sprintf(`{"office":%q,"service":%q,"applicant":"metrics-late","start":%q}`, slotOffice, slotService, start)
	if out := s.must(t, 409, "POST", "/v1/bookings", body); out["code"] != "slot_taken" {
		t.Fatalf("booking a full start: code %v, want slot_taken", out["code"])
	}
	if code, out := s.Call(t, "not-a-key", "GET", "/v1/offices", ""); code != 401 {
		t.Fatalf("unknown key: %d %v, want 401", code, out)
	}
}

// scrapeUntil polls /metrics until it contains every one of lines, and
// returns the last scrape. A request's metrics may be recorded just
// after its answer is sent, hence the poll.
func scrapeUntil(t *testing.T, s *server, lines ...string) string {
	t.Helper()
	var body []byte
	testtime.Eventually(t, waitMax, "/metrics to hold every expected line", func() error {
		resp, err := client.Get("http://" + s.AdminAddr + "/metrics")
		if err != nil {
			t.Fatalf("GET /metrics: %v", err)
		}
		body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET /metrics: %d %v", resp.StatusCode, err)
		}
		var missing []string
		for _, l := range lines {
			if !strings.Contains(string(body), l) {
				missing = append(missing, l)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("it lacks %q", missing)
		}
		return nil
	})
	return string(body)
}

// exportedTypes reads "# TYPE name type" lines of the text exposition.
func exportedTypes(exposition string) map[string]string {
	types := map[string]string{}
	for _, line := range strings.Split(exposition, "\n") {
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			if name, typ, ok := strings.Cut(rest, " "); ok {
				types[name] = typ
			}
		}
	}
	return types
}

// isExported reports whether name is a family in types or a series of
// one: histograms export name_bucket, name_sum and name_count, summaries
// name_sum and name_count.
func isExported(types map[string]string, name string) bool {
	if _, ok := types[name]; ok {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suffix)
		if !ok {
			continue
		}
		switch types[base] {
		case "histogram":
			return true
		case "summary":
			return suffix != "_bucket"
		}
	}
	return false
}

// TestExportedMetrics runs the real server: after a little traffic its
// /metrics passes promlint (and promtool check metrics when promtool is
// installed), carries the series the SLO rules select on, and exports
// every metric name the rules and the dashboard use.
func TestExportedMetrics(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs slotd")
	}
	s := startSlotd(t)
	driveTraffic(t, s)
	body := scrapeUntil(t, s,
		`slotd_http_requests_total{code="201",method="POST",route="/v1/bookings"}`,
		`slotd_http_requests_total{code="409",method="POST",route="/v1/bookings"}`,
		`slotd_http_requests_total{code="401",method="GET",route="/v1/offices"}`,
		`slotd_engine_slot_conflicts_total 1`,
	)

	problems, err := promlint.New(strings.NewReader(body)).Lint()
	if err != nil {
		t.Fatalf("promlint: %v", err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	if tool, err := exec.LookPath("promtool"); err == nil {
		cmd := exec.Command(tool, "check", "metrics")
		cmd.Stdin = strings.NewReader(body)
		if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
			t.Errorf("promtool check metrics: %v\n%s", err, out)
		}
	}

	// The SLO rules select these series by exact label values and bucket
	// bounds: the booking routes, POST, le="0.05" (50 ms latency SLO) and
	// the journal's le="0.025" (commit alert threshold).
	for _, series := range []string{
		`slotd_http_request_duration_seconds_bucket{method="POST",route="/v1/bookings",le="0.05"}`,
		`slotd_http_request_duration_seconds_bucket{method="POST",route="/v1/bookings/{id}/confirm",le="0.05"}`,
		`slotd_http_request_duration_seconds_bucket{method="POST",route="/v1/bookings/{id}/cancel",le="0.05"}`,
		`slotd_http_request_duration_seconds_bucket{method="POST",route="/v1/bookings/{id}/reschedule",le="0.05"}`,
		`slotd_journal_commit_duration_seconds_bucket{le="0.025"}`,
		`slotd_engine_transitions_total{status="held"}`,
		`slotd_engine_transitions_total{status="confirmed"}`,
		`slotd_engine_transitions_total{status="expired"}`,
		`slotd_engine_transitions_total{status="cancelled"}`,
		`slotd_office_free_seats{office="` + slotOffice + `"}`,
		`slotd_ready 1`,
		`slotd_engine_degraded 0`,
	} {
		if !strings.Contains(body, series) {
			t.Errorf("/metrics lacks %s, which the rules or the dashboard select on", series)
		}
	}

	types := exportedTypes(body)
	check := func(where string, names []string) {
		for _, name := range names {
			if strings.HasPrefix(name, clusterPrefix) {
				continue // a cluster node's: TestClusterExportedMetrics
			}
			if !isExported(types, name) {
				t.Errorf("%s uses %s, which slotd does not export", where, name)
			}
		}
	}
	rules, _ := referencedNames(rulesText(t))
	dash, _ := referencedNames(dashboardExprText(t))
	check("the rules", rules)
	check(dashboardFile, dash)
	t.Logf("%d exported families; the rules use %d names, the dashboard %d", len(types), len(rules), len(dash))
}
