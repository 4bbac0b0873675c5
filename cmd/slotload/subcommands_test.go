package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

const importData = "../../loadtest/testdata/import/"

// runCmd runs slotload with args and returns its exit status and outputs.
func runCmd(args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	code := run(args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestProfileCommand(t *testing.T) {
	code, out, errOut := runCmd("profile", "-from", "prometheus", "-tz", "Europe/Moscow", importData+"prometheus-range.json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !strings.HasPrefix(out, "# slotload profile from Prometheus range query") ||
		!strings.HasSuffix(out, "time,rate\n23:59,20\n24:00,120\n24:01,0\n24:02,5.5\n") {
		t.Errorf("profile:\n%s", out)
	}
	// What it writes is what -profile reads.
	csv := filepath.Join(t.TempDir(), "day.csv")
	if code, _, errOut := runCmd("profile", "-from", "access-log", "-route", "/v1/offices/{office}/days", "-out", csv,
		importData+"access.log", importData+"access.log"); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	cfg, _, err := parseFlags([]string{"-scenario", "peakday", "-key", "k", "-profile", csv}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Profile == nil || len(cfg.Profile.Points) != 3 || cfg.Profile.Points[2].RatePerSecond != 0.067 {
		t.Errorf("profile read back: %+v", cfg.Profile)
	}

	// Malformed input: one line that names the file and the problem.
	bad := filepath.Join(t.TempDir(), "broken.log")
	if err := os.WriteFile(bad, []byte("{\"msg\":\"request\",\"ts\":\"2026-03-01T00:00:00Z\"}\n{\"msg\":\"request\",\"ts\":\"noon\"}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f := func(wantErr string, args ...string) {
		t.Helper()
		code, _, errOut := runCmd(append([]string{"profile"}, args...)...)
		if code != 2 || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, wantErr) {
			t.Errorf("profile %v: exit %d, stderr %q; want one line containing %q", args, code, errOut, wantErr)
		}
	}
	f(bad+`: line 2: ts "noon": want an RFC 3339 time`, "-from", "access-log", bad)
	f(bad+": not a Prometheus query answer", "-from", "prometheus", bad)
	f(`-from "csv": want prometheus or access-log`, "-from", "csv", bad)
	f(`-tz "Mars/Olympus": want an IANA time zone`, "-from", "prometheus", "-tz", "Mars/Olympus", bad)
	f(`-sampling "100": want first,thereafter`, "-from", "access-log", "-sampling", "100", bad)
	f("no such file", "-from", "access-log", bad+".missing")
}

func TestReportAndMergeCommands(t *testing.T) {
	dir := t.TempDir()
	write := func(name, step string, at time.Time, n int) string {
		t.Helper()
		path := filepath.Join(dir, name)
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		enc := vegeta.NewEncoder(f)
		for i := range n {
			r := vegeta.Result{Code: 201, Method: "POST", Timestamp: at.Add(time.Duration(i) * time.Millisecond),
				Latency: time.Millisecond, URL: "http://127.0.0.1:8080/v1/bookings#" + step + "." + strconv.Itoa(i)}
			if err := enc.Encode(&r); err != nil {
				t.Fatal(err)
			}
		}
		return path
	}
	at := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	a, b := write("a.bin", "hold", at, 30), write("b.bin", "confirm", at, 20)
	all := filepath.Join(dir, "all.bin")
	code, out, errOut := runCmd("merge", "-out", all, a, b)
	if code != 0 || !strings.Contains(out, "50 results from 2 files") {
		t.Fatalf("merge: exit %d %s %s", code, out, errOut)
	}
	for _, args := range [][]string{{all}, {a, b}} {
		code, out, errOut = runCmd(append([]string{"report", "-out", filepath.Join(dir, "rep")}, args...)...)
		if code != 0 {
			t.Fatalf("report %v: exit %d: %s", args, code, errOut)
		}
		flat := strings.Join(strings.Fields(out), " ")
		for _, want := range []string{"hold 30", "confirm 20", "Requests [total, rate, throughput] 50,", "confirm.txt"} {
			if !strings.Contains(flat, want) {
				t.Errorf("report %v lacks %q:\n%s", args, want, out)
			}
		}
	}
	if code, _, errOut := runCmd("merge", "-out", a, a, b); code != 2 || !strings.Contains(errOut, "both an input and the output") {
		t.Errorf("merge onto an input: exit %d %s", code, errOut)
	}
	notResults := filepath.Join(dir, "notes.txt")
	os.WriteFile(notResults, []byte("hello\n"), 0o644)
	if code, _, errOut := runCmd("report", notResults); code != 2 || !strings.Contains(errOut, "notes.txt: no vegeta results") {
		t.Errorf("report of a text file: exit %d %q", code, errOut)
	}
}
