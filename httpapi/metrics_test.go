package httpapi

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"slotd/api"
)

func scrape(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	b, _ := io.ReadAll(rec.Body)
	return rec.Code, string(b)
}

func TestMetricsLint(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.JournalStats = func() JournalStats {
			return JournalStats{
				Commits: 10, Groups: 5, Syncs: 4, BatchBytes: 4096, Events: 12, IdempotencyRecords: 2,
				CommitLatency: LatencyHistogram{
					Bounds: []time.Duration{time.Millisecond, 10 * time.Millisecond},
					Counts: []uint64{6, 3, 1}, Sum: 40 * time.Millisecond, Count: 10,
				},
				SyncLatency: LatencyHistogram{
					Bounds: []time.Duration{time.Millisecond, 10 * time.Millisecond},
					Counts: []uint64{3, 0, 1}, Sum: 80 * time.Millisecond, Count: 4,
				},
				RecoveryDuration: 1500 * time.Millisecond, RecoveryBookings: 7,
			}
		}
	})
	e.mustHold("office-a", "patent", "secret-applicant-42", at(1, 9, 0), true)
	want(t, e.get("/v1/nothing", keyPortal), 404, api.CodeNotFound)
	admin := e.srv.AdminHandler()
	code, body := scrape(t, admin, "/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	problems, err := promlint.New(strings.NewReader(body)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	for _, line := range []string{
		`slotd_http_requests_total{code="201",method="POST",route="/v1/bookings"} 1`,
		`slotd_http_requests_total{code="404",method="other",route="unmatched"} 1`,
		`slotd_http_request_duration_seconds_count{method="POST",route="/v1/bookings"} 1`,
		`slotd_engine_holds_total 1`,
		`slotd_engine_transitions_total{status="confirmed"} 1`,
		`slotd_engine_degraded 0`,
		`slotd_office_free_seats{office="office-b"}`,
		`slotd_ready 1`,
		`slotd_journal_commit_duration_seconds_bucket{le="0.01"} 9`,
		`slotd_journal_fsync_duration_seconds_bucket{le="0.001"} 3`,
		`slotd_journal_fsync_duration_seconds_count 4`,
		`slotd_journal_syncs_total 4`,
		`slotd_journal_groups_total 5`,
		`slotd_journal_recovery_duration_seconds 1.5`,
		`go_goroutines`,
		`process_cpu_seconds_total`,
	} {
		if !strings.Contains(body, line) {
			t.Errorf("/metrics lacks %q", line)
		}
	}

	if code, _ := scrape(t, admin, "/healthz"); code != 200 {
		t.Fatalf("/healthz: %d", code)
	}
	if code, _ := scrape(t, admin, "/readyz"); code != 200 {
		t.Fatalf("/readyz: %d", code)
	}
	e.srv.SetReady(false)
	if code, _ := scrape(t, admin, "/readyz"); code != 503 {
		t.Fatalf("/readyz not ready: %d", code)
	}
	if code, _ := scrape(t, admin, "/debug/pprof/"); code != 200 {
		t.Fatalf("/debug/pprof/: %d", code)
	}

	// The access log names the route pattern, never the applicant.
	var buf bytes.Buffer
	found := false
	for _, entry := range e.logs.All() {
		for _, f := range entry.Context {
			buf.WriteString(f.Key + "=" + f.String + " ")
			if f.Key == "route" && f.String == RouteBookings {
				found = true
			}
		}
		buf.WriteString(entry.Message + "\n")
	}
	if !found {
		t.Fatalf("no access log line with route %s:\n%s", RouteBookings, buf.String())
	}
	if strings.Contains(buf.String(), "secret-applicant-42") {
		t.Fatal("the access log contains an applicant id")
	}
}
