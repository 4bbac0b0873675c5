package httpapi

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

// TestStoreAndBuildMetrics: the storage engine's figures and the build's
// names are exported as polled, lint clean; a file system that cannot
// tell its size exports no size, and a closed store nothing.
func TestStoreAndBuildMetrics(t *testing.T) {
	st := StoreStats{
		DiskBytes: 5 << 20, WALBytes: 1 << 20, WALWrittenBytes: 7 << 20, MemTableBytes: 256 << 10,
		CompactionDebtBytes: 3 << 20, Compactions: 4, CompactionsRunning: 1, Flushes: 6,
		ReadAmplification: 3, L0Tables: 2,
		FilesystemKnown: true, FilesystemBytes: 10 << 30, FilesystemAvailBytes: 4 << 30,
	}
	open := true
	e := newEnv(t, func(c *Config) {
		c.StoreStats = func() (StoreStats, bool) { return st, open }
		c.Build = BuildInfo{Version: "v1.2.3", Commit: "0123abc", GoVersion: "go1.99"}
	})
	admin := e.srv.AdminHandler()
	_, body := scrape(t, admin, "/metrics")
	problems, err := promlint.New(strings.NewReader(body)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	for _, line := range []string{
		`slotd_build_info{commit="0123abc",goversion="go1.99",version="v1.2.3"} 1`,
		"slotd_store_disk_usage_bytes 5.24288e+06",
		"slotd_store_wal_bytes 1.048576e+06",
		"slotd_store_wal_written_bytes_total 7.340032e+06",
		"slotd_store_memtable_bytes 262144",
		"slotd_store_compaction_debt_bytes 3.145728e+06",
		"slotd_store_compactions_total 4",
		"slotd_store_compactions_running 1",
		"slotd_store_flushes_total 6",
		"slotd_store_read_amplification 3",
		"slotd_store_l0_tables 2",
		"slotd_store_filesystem_size_bytes 1.073741824e+10",
		"slotd_store_filesystem_avail_bytes 4.294967296e+09",
	} {
		if !strings.Contains(body, line+"\n") {
			t.Errorf("/metrics lacks %q", line)
		}
	}

	st.FilesystemKnown = false
	if _, body := scrape(t, admin, "/metrics"); strings.Contains(body, "slotd_store_filesystem_") ||
		!strings.Contains(body, "slotd_store_disk_usage_bytes") {
		t.Errorf("file system of unknown size: want the store's metrics without the file system's:\n%s", grepLines(body, "slotd_store_"))
	}
	open = false
	if _, body := scrape(t, admin, "/metrics"); strings.Contains(body, "\nslotd_store_") {
		t.Errorf("closed store: want no store metrics:\n%s", grepLines(body, "slotd_store_"))
	}
}

// TestNoBuildInfoUnlessGiven: a server not told its build exports no
// slotd_build_info with empty labels.
func TestNoBuildInfoUnlessGiven(t *testing.T) {
	e := newEnv(t, nil)
	if _, body := scrape(t, e.srv.AdminHandler(), "/metrics"); strings.Contains(body, "slotd_build_info") {
		t.Errorf("slotd_build_info without Config.Build:\n%s", grepLines(body, "slotd_build_info"))
	}
}

// TestDrain: after Drain, /readyz answers 503 "draining" while the API
// goes on serving holds; Shutdown then makes it "not ready".
func TestDrain(t *testing.T) {
	e := newEnv(t, nil)
	admin := e.srv.AdminHandler()
	if code, body := scrape(t, admin, "/readyz"); code != 200 {
		t.Fatalf("/readyz before Drain: %d %q", code, body)
	}
	e.srv.Drain()
	if code, body := scrape(t, admin, "/readyz"); code != 503 || body != "draining\n" {
		t.Fatalf("/readyz after Drain: %d %q, want 503 draining", code, body)
	}
	e.mustHold("office-a", "patent", "drain-1", at(1, 9, 0), true)
	if _, body := scrape(t, admin, "/metrics"); !strings.Contains(body, "slotd_ready 1\n") {
		t.Errorf("slotd_ready while draining: want 1 (the API still answers):\n%s", grepLines(body, "slotd_ready"))
	}
	e.srv.SetReady(false)
	if code, body := scrape(t, admin, "/readyz"); code != 503 || body != "not ready\n" {
		t.Fatalf("/readyz after SetReady(false): %d %q, want 503 not ready", code, body)
	}
}
