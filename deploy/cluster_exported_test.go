package deploy

import (
	"fmt"
	"io"
	"os/exec"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"slotd/internal/slotdtest"
	"slotd/internal/slotdtest/testtime"
)

// clusterPrefix starts the names only a cluster node exports.
const clusterPrefix = "slotd_cluster_"

// TestClusterExportedMetrics runs slotd as a cluster of one node and
// checks that it exports every cluster metric the rules and the
// dashboard use, and that its /metrics passes promlint.
func TestClusterExportedMetrics(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs slotd")
	}
	addrs := slotdtest.FreeAddrs(t, 3)
	raft, api, admin := addrs[0], addrs[1], addrs[2]
	cmd := exec.Command(slotdtest.Build(t), "-demo", "-data", t.TempDir(), "-addr", api, "-admin-addr", admin,
		"-node-id", "1", "-peers", "1="+raft, "-edges", "1="+api, "-groups", "2")
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	var body string
	testtime.Eventually(t, waitMax, "a cluster node leading both its groups", func() error {
		resp, err := client.Get("http://" + admin + "/metrics")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		body = string(b)
		for _, want := range []string{`slotd_cluster_group_leader{group="1"} 1`, `slotd_cluster_group_leader{group="2"} 1`} {
			if !strings.Contains(body, want) {
				return fmt.Errorf("no %s yet", want)
			}
		}
		return nil
	})
	problems, err := promlint.New(strings.NewReader(body)).Lint()
	if err != nil {
		t.Fatalf("promlint: %v", err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	types := exportedTypes(body)
	rules, _ := referencedNames(rulesText(t))
	dash, _ := referencedNames(dashboardExprText(t))
	n := 0
	for _, name := range append(rules, dash...) {
		if strings.HasPrefix(name, clusterPrefix) {
			n++
			if !isExported(types, name) {
				t.Errorf("the rules or the dashboard use %s, which a cluster node does not export", name)
			}
		}
	}
	if n == 0 {
		t.Fatal("the rules use no cluster metric: the check checks nothing")
	}
}
