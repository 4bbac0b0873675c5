package loadtest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// TestE2EResultsFile: a short rush against a real slotd leaves
// results.bin beside its reports; vegeta's own decoder reads back as many
// results as the run reported, and ReportResults gives the same figures
// as the run, for all steps and for each, answer classes included.
func TestE2EResultsFile(t *testing.T) {
	s := startSlotd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out := t.TempDir()
	rep, err := Run(ctx, Config{URL: s.url, Key: s.portal, AdminKey: s.admin, Scenario: ScenarioRush,
		Applicants: 120, Lead: 300 * time.Millisecond, Spread: 500 * time.Millisecond, Seed: 7,
		DrainTimeout: 15 * time.Second, NoCheck: true, OutDir: out})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(out, ResultsFile)
	listed := false
	for _, f := range rep.Files {
		listed = listed || f == path
	}
	if !listed {
		t.Errorf("%s not among the files written: %v", ResultsFile, rep.Files)
	}

	// vegeta's gob decoder, the one `vegeta report` uses on such a file.
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := vegeta.NewDecoder(f)
	n := 0
	for {
		var r vegeta.Result
		if err := dec.Decode(&r); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("result %d: %v", n+1, err)
		}
		if r.Code >= 200 && r.Code < 300 && len(r.Body) > 0 {
			t.Fatalf("result %d keeps the body of a %d answer", n+1, r.Code)
		}
		n++
	}
	if n == 0 || uint64(n) != rep.All.Requests {
		t.Fatalf("%s holds %d results, the run reported %d requests", ResultsFile, n, rep.All.Requests)
	}

	dec2, closer, err := OpenResults(path)
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	again, err := ReportResults(dec2)
	if err != nil {
		t.Fatal(err)
	}
	if again.Untagged != 0 {
		t.Errorf("%d results without a step", again.Untagged)
	}
	sameMetrics(t, "all", rep.All, again.All)
	if len(again.Steps) != len(rep.Steps) {
		t.Fatalf("re-report has %d steps, the run %d", len(again.Steps), len(rep.Steps))
	}
	for i, s := range rep.Steps {
		a := again.Steps[i]
		if a.Step != s.Step {
			t.Fatalf("step %d: %s, the run's %s", i, a.Step, s.Step)
		}
		sameMetrics(t, s.Step, s.Metrics, a.Metrics)
		for _, c := range classes {
			if a.Classes[c] != s.Classes[c] {
				t.Errorf("step %s class %s: %d re-reported, %d in the run", s.Step, c, a.Classes[c], s.Classes[c])
			}
		}
	}

	// The re-report's files are the run's, byte for byte.
	files, err := again.WriteFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range files {
		want, err := os.ReadFile(filepath.Join(out, filepath.Base(g)))
		if err != nil {
			t.Fatal(err)
		}
		got, _ := os.ReadFile(g)
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from the run's:\n%s\nrun's:\n%s", filepath.Base(g), got, want)
		}
	}
}

// sameMetrics fails unless vegeta's text and JSON reports of a and b are
// the same.
func sameMetrics(t *testing.T, name string, want, got *vegeta.Metrics) {
	t.Helper()
	for _, rep := range []func(*vegeta.Metrics) vegeta.Reporter{
		func(m *vegeta.Metrics) vegeta.Reporter { return vegeta.NewTextReporter(m) },
		func(m *vegeta.Metrics) vegeta.Reporter { return vegeta.NewJSONReporter(m) },
	} {
		var a, b bytes.Buffer
		if err := rep(want).Report(&a); err != nil {
			t.Fatal(err)
		}
		if err := rep(got).Report(&b); err != nil {
			t.Fatal(err)
		}
		if a.String() != b.String() {
			t.Errorf("%s: re-reported\n%s\nthe run's\n%s", name, b.String(), a.String())
		}
	}
}

// results makes n results of step st, one every gap from at, each with
// its own latency.
func someResults(st step, at time.Time, gap time.Duration, n int) []vegeta.Result {
	rs := make([]vegeta.Result, n)
	for i := range rs {
		rs[i] = vegeta.Result{Attack: "arrivals", Seq: uint64(i), Code: 200, Method: "GET",
			Timestamp: at.Add(time.Duration(i) * gap), Latency: time.Duration(i+1) * time.Millisecond,
			URL: "http://127.0.0.1:1/v1/x#" + st.String() + "." + string(rune('0'+i%10))}
	}
	return rs
}

func encodeResults(t *testing.T, enc func(io.Writer) vegeta.Encoder, rs []vegeta.Result) *bytes.Buffer {
	t.Helper()
	var b bytes.Buffer
	e := enc(&b)
	for i := range rs {
		if err := e.Encode(&rs[i]); err != nil {
			t.Fatal(err)
		}
	}
	return &b
}

// TestMergeResults: results of two generators, one in gob and one in
// vegeta's JSON encoding, interleaved in time, merge into one gob stream
// in time order that holds all of them, and its report counts each step.
func TestMergeResults(t *testing.T) {
	at := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	a := someResults(stepHold, at, 10*time.Millisecond, 50)
	b := someResults(stepDays, at.Add(5*time.Millisecond), 10*time.Millisecond, 30)
	decA := vegeta.DecoderFor(encodeResults(t, vegeta.NewEncoder, a))
	decB := vegeta.DecoderFor(encodeResults(t, vegeta.NewJSONEncoder, b))
	if decA == nil || decB == nil {
		t.Fatal("encoding not detected")
	}
	var merged bytes.Buffer
	n, err := MergeResults(vegeta.NewEncoder(&merged), []string{"a", "b"}, decA, decB)
	if err != nil || n != 80 {
		t.Fatalf("merged %d results, %v; want 80", n, err)
	}
	dec := vegeta.NewDecoder(bytes.NewReader(merged.Bytes()))
	var prev time.Time
	for i := 0; i < n; i++ {
		var r vegeta.Result
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("merged result %d: %v", i+1, err)
		}
		if r.Timestamp.Before(prev) {
			t.Fatalf("merged result %d at %v before the previous at %v", i+1, r.Timestamp, prev)
		}
		prev = r.Timestamp
	}
	rep, err := ReportResults(vegeta.NewDecoder(bytes.NewReader(merged.Bytes())))
	if err != nil {
		t.Fatal(err)
	}
	if rep.All.Requests != 80 || len(rep.Steps) != 2 || rep.Steps[0].Step != "days" || rep.Steps[0].Metrics.Requests != 30 ||
		rep.Steps[1].Step != "hold" || rep.Steps[1].Metrics.Requests != 50 {
		t.Fatalf("report of the merge: %d requests, steps %+v", rep.All.Requests, rep.Steps)
	}
	if rep.Steps[0].Classes[ClassOK] != 30 {
		t.Errorf("days classes %v, want 30 ok", rep.Steps[0].Classes)
	}
}

// TestOpenResultsRejects: a file that holds no vegeta results is refused
// with its name; a truncated stream fails at the result it cut.
func TestOpenResultsRejects(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(bad, []byte("these are not results\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := OpenResults(bad); err == nil || !strings.Contains(err.Error(), "notes.txt") {
		t.Errorf("OpenResults of a text file: %v, want an error naming it", err)
	}
	empty := filepath.Join(dir, "empty.bin")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := OpenResults(empty); err == nil {
		t.Error("OpenResults of an empty file: no error")
	}
	full := encodeResults(t, vegeta.NewEncoder, someResults(stepHold, time.Now(), time.Millisecond, 20)).Bytes()
	cut := filepath.Join(dir, "cut.bin")
	if err := os.WriteFile(cut, full[:len(full)-7], 0o644); err != nil {
		t.Fatal(err)
	}
	dec, c, err := OpenResults(cut)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := ReportResults(dec); err == nil || !strings.Contains(err.Error(), "result 20") {
		t.Errorf("report of a cut file: %v, want an error at result 20", err)
	}
}

// BenchmarkResultsWrite is the result handler's cost of writing one
// result to results.bin: a 409 with its problem body and headers.
func BenchmarkResultsWrite(b *testing.B) {
	rw, err := createResults(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	r := someResults(stepHold, time.Now(), time.Millisecond, 1)[0]
	r.Code = 409
	r.Body = []byte(`{"type":"https://slotd.example/problems/slot_taken","title":"Slot taken","status":409,"detail":"the seat was taken","code":"slot_taken","alternatives":[{"office":"msk-sakharovo","start":"2026-12-01T09:30:00+03:00","free":3}]}`)
	r.Headers = map[string][]string{"Content-Type": {"application/problem+json"}, "X-Request-Id": {"r-1x2y3z"}, "Date": {"Sun, 01 Mar 2026 00:00:00 GMT"}}
	b.ReportAllocs()
	for b.Loop() {
		rw.add(&r)
	}
	if err := rw.close(); err != nil {
		b.Fatal(err)
	}
}
