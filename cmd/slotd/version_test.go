package main

import (
	"bytes"
	"io"
	"net/http"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"testing"

	"slotd/internal/slotdtest"
)

// TestBuildInfoOf: the linker's names win; without them the build stamp's
// module version and revision are used, a modified tree marked dirty;
// without either, placeholders, never empty labels.
func TestBuildInfoOf(t *testing.T) {
	stamp := &debug.BuildInfo{
		Main: debug.Module{Path: "slotd", Version: "v0.0.0-20260101000000-0123456789ab+dirty"},
		Settings: []debug.BuildSetting{
			{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: "0123456789abcdef"}, {Key: "vcs.modified", Value: "true"},
		},
	}
	f := func(version, commit string, bi *debug.BuildInfo, wantVersion, wantCommit string) {
		t.Helper()
		b := buildInfoOf(version, commit, bi)
		if b.Version != wantVersion || b.Commit != wantCommit || b.GoVersion != runtime.Version() {
			t.Errorf("buildInfoOf(%q, %q): %+v, want version %q commit %q go %s", version, commit, b, wantVersion, wantCommit, runtime.Version())
		}
	}
	f("v1.2.3", "feedface", stamp, "v1.2.3", "feedface")
	f("", "", stamp, "v0.0.0-20260101000000-0123456789ab+dirty", "0123456789abcdef-dirty")
	f("", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, versionUnknown, commitUnknown)
	f("", "", nil, versionUnknown, commitUnknown)
}

// TestVersionFlag: -version prints the version and exits 0 without
// starting anything (no keys, no data directory needed), and only the
// command line asks for it, not SLOTD_VERSION.
func TestVersionFlag(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"-version"}, func(string) string { return "" }, &out, &errOut); code != 0 {
		t.Fatalf("-version: exit %d, %s", code, errOut.String())
	}
	if line := out.String(); !strings.HasPrefix(line, "slotd ") || !strings.Contains(line, runtime.Version()) || strings.Count(line, "\n") != 1 {
		t.Errorf("-version printed %q: want one line naming slotd and %s", line, runtime.Version())
	}
	o, err := parseOptions(nil, func(k string) string {
		if k == "SLOTD_VERSION" {
			return "2.0"
		}
		return ""
	}, io.Discard)
	if err != nil || o.version {
		t.Errorf("SLOTD_VERSION=2.0 in the environment: version %v, error %v; want neither", o.version, err)
	}
}

// TestVersionFromLinker: a binary built as the Makefile builds it
// (-ldflags -X) prints the given version and commit, and exports them as
// slotd_build_info.
func TestVersionFromLinker(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs slotd")
	}
	const ver, rev = "v9.8.7-test", "feedfacecafe"
	bin := slotdtest.BuildFlags(t, "-ldflags", "-X main.version="+ver+" -X main.commit="+rev)
	out, err := exec.Command(bin, "-version").CombinedOutput()
	if err != nil {
		t.Fatalf("slotd -version: %v\n%s", err, out)
	}
	if want := "slotd " + ver + " commit " + rev + " " + runtime.Version() + " "; !strings.HasPrefix(string(out), want) {
		t.Errorf("slotd -version: %q, want it to start %q", out, want)
	}

	s := slotdtest.Start(t, bin, t.TempDir())
	defer s.Stop(t, syscall.SIGTERM)
	resp, err := http.Get("http://" + s.AdminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	want := `slotd_build_info{commit="` + rev + `",goversion="` + runtime.Version() + `",version="` + ver + `"} 1`
	if !strings.Contains(string(body), want+"\n") {
		t.Errorf("/metrics lacks %s", want)
	}
	for _, name := range []string{"slotd_store_disk_usage_bytes", "slotd_store_filesystem_avail_bytes", "slotd_store_compaction_debt_bytes"} {
		if !strings.Contains(string(body), "\n"+name+" ") {
			t.Errorf("/metrics lacks %s", name)
		}
	}
}
