package loadtest

import (
	"bufio"
	"container/heap"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// Raw results. A run with an OutDir also writes every answer it got, in
// the order it handled them, to ResultsFile: vegeta's own results
// encoding (gob, what `vegeta attack` writes), so `vegeta report`,
// `vegeta encode`, `vegeta plot` and `vegeta report a.bin b.bin` read it
// as they read vegeta's. Every result keeps its URL with the fragment
// naming the step and the applicant (engine.go), so ReportResults can
// rebuild the per-step reports and the answer classes.
//
// What is left out: the bodies of 2xx answers (bookings, which name
// applicants, and availability lists, which are most of the bytes); the
// problem bodies of other answers stay, since their code is what
// Classify reads. A timestamp loses its monotonic clock reading in the
// file. vegeta stamps a result as its attack's start plus the time since,
// and the run's two attacks started at different instants, whose wall and
// monotonic readings were taken nanoseconds apart: a duration between
// results of the two attacks differs by those nanoseconds between the
// clocks. So the run computes its own figures from the wall clock too
// (stats.add), and a re-report gives them exactly (TestE2EResultsFile).
//
// Merging: results of several generator machines are merged by
// timestamp into one file (MergeResults), whose report is the report of
// the whole load. Their clocks must agree (NTP) for the rates and the
// plot to make sense; the latencies do not depend on it.

// ResultsFile is the name of the raw results in a run's OutDir.
const ResultsFile = "results.bin"

// resultsBufferBytes is the write buffer of the results file: results
// are written by the result handler, which must not wait on the disk for
// each one.
const resultsBufferBytes = 256 << 10

// resultsWriter encodes results to a file as they are handled. Handler
// goroutine only. After the first write error it drops the rest and
// reports that error from close.
type resultsWriter struct {
	path string
	f    *os.File
	w    *bufio.Writer
	enc  vegeta.Encoder
	n    int
	err  error
	done bool // closed
}

// createResults creates dir and the results file in it.
func createResults(dir string) (*resultsWriter, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("cannot create report directory: %w", err)
	}
	path := filepath.Join(dir, ResultsFile)
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cannot write results: %w", err)
	}
	w := bufio.NewWriterSize(f, resultsBufferBytes)
	return &resultsWriter{path: path, f: f, w: w, enc: vegeta.NewEncoder(w)}, nil
}

// add encodes r without the body of a 2xx answer.
func (rw *resultsWriter) add(r *vegeta.Result) {
	if rw.err != nil {
		return
	}
	if r.Code >= 200 && r.Code < 300 && r.Body != nil {
		c := *r
		c.Body = nil
		r = &c
	}
	if err := rw.enc.Encode(r); err != nil {
		rw.err = err
		return
	}
	rw.n++
}

// close flushes and closes the file and returns the first error; once
// closed, it does nothing.
func (rw *resultsWriter) close() error {
	if rw.done {
		return nil
	}
	rw.done = true
	err := rw.err
	if ferr := rw.w.Flush(); err == nil {
		err = ferr
	}
	if cerr := rw.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("cannot write %s after %d results: %w", rw.path, rw.n, err)
	}
	return nil
}

// Results files are bounded: a decoder that never ends (a corrupt or
// endless stream) stops here with an error rather than fill memory or run
// forever. A day-long peak replay at 2,000 requests a second on each of
// several machines stays well below.
const resultsMax = 1 << 30

// OpenResults opens a results file in any encoding vegeta writes (gob,
// JSON lines, CSV; detected from its first result). The caller closes
// the returned file.
func OpenResults(path string) (vegeta.Decoder, io.Closer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	dec := vegeta.DecoderFor(bufio.NewReader(f))
	if dec == nil {
		f.Close()
		return nil, nil, fmt.Errorf("%s: no vegeta results (empty, or not gob, JSON or CSV results)", path)
	}
	return dec, f, nil
}

// ResultsReport is the report of raw results read back: per step and for
// all, vegeta's metrics and the classes of the answers, as a run reports
// them.
type ResultsReport struct {
	// Steps holds the steps that have results, in flow order; All sums
	// them and the untagged results.
	Steps []StepReport
	All   *vegeta.Metrics
	// Untagged counts results whose URL names no slotload step (results
	// of a plain vegeta attack): they are in All only.
	Untagged int
}

// ReportResults reads every result dec yields, in order, into a report.
func ReportResults(dec vegeta.Decoder) (ResultsReport, error) {
	var (
		steps   [stepsCount]*vegeta.Metrics
		classes [stepsCount]map[Class]int
		rep     = ResultsReport{All: &vegeta.Metrics{}}
	)
	for i := 0; ; i++ {
		if i == resultsMax {
			return ResultsReport{}, fmt.Errorf("more than %d results", resultsMax)
		}
		var r vegeta.Result
		if err := dec.Decode(&r); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return ResultsReport{}, fmt.Errorf("result %d: %w", i+1, err)
		}
		rep.All.Add(&r)
		s, _, ok := parseTag(r.URL)
		if !ok {
			rep.Untagged++
			continue
		}
		if steps[s] == nil {
			steps[s], classes[s] = &vegeta.Metrics{}, map[Class]int{}
		}
		steps[s].Add(&r)
		c, _ := Classify(&r)
		classes[s][c]++
	}
	rep.All.Close()
	for s, m := range steps {
		if m == nil {
			continue
		}
		m.Close()
		rep.Steps = append(rep.Steps, StepReport{Step: step(s).String(), Metrics: m, Classes: classes[s]})
	}
	return rep, nil
}

// WriteSummary writes the answers per step with their latency quantiles
// and classes, then vegeta's text report of all results.
func (r *ResultsReport) WriteSummary(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "step\trequests\tp50\tp99\tmax")
	for _, c := range classes {
		fmt.Fprintf(tw, "\t%s", c)
	}
	fmt.Fprintln(tw)
	for _, s := range r.Steps {
		m := s.Metrics
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s", s.Step, m.Requests, m.Latencies.P50.Round(time.Microsecond),
			m.Latencies.P99.Round(time.Microsecond), m.Latencies.Max.Round(time.Microsecond))
		for _, c := range classes {
			fmt.Fprintf(tw, "\t%d", s.Classes[c])
		}
		fmt.Fprintln(tw)
	}
	if r.Untagged > 0 {
		fmt.Fprintf(tw, "(not slotload's)\t%d\n", r.Untagged)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	return vegeta.NewTextReporter(r.All).Report(w)
}

// WriteFiles writes into dir what a run writes per step and for all:
// <step>.txt, <step>.json and <step>.hdr (vegeta's text, JSON and HDR
// histogram reports). It returns the paths written.
func (r *ResultsReport) WriteFiles(dir string) ([]string, error) {
	rep := Report{All: r.All, Steps: r.Steps}
	if err := rep.writeMetrics(dir); err != nil {
		return rep.Files, err
	}
	return rep.Files, nil
}

// MergeResults writes the results of every decoder to enc, merged by
// timestamp: each input is read in its own order and the earliest of
// their next results goes first, so inputs that are in time order (a
// run's results file nearly is: results are written as they arrive)
// give an output in time order, in bounded memory. names label the
// inputs in errors. It returns how many results it wrote.
func MergeResults(enc vegeta.Encoder, names []string, decs ...vegeta.Decoder) (int, error) {
	if len(names) != len(decs) {
		panic("BUG: MergeResults: one name per decoder")
	}
	h := &resultsHeap{}
	read := func(i int, seq int) error {
		var r vegeta.Result
		err := decs[i].Decode(&r)
		switch {
		case errors.Is(err, io.EOF):
			return nil
		case err != nil:
			return fmt.Errorf("%s: result %d: %w", names[i], seq, err)
		}
		heap.Push(h, resultsHead{r: r, input: i, seq: seq})
		return nil
	}
	for i := range decs {
		if err := read(i, 1); err != nil {
			return 0, err
		}
	}
	n := 0
	for h.Len() > 0 {
		if n == resultsMax {
			return n, fmt.Errorf("more than %d results", resultsMax)
		}
		head := heap.Pop(h).(resultsHead)
		if err := enc.Encode(&head.r); err != nil {
			return n, fmt.Errorf("cannot write merged results: %w", err)
		}
		n++
		if err := read(head.input, head.seq+1); err != nil {
			return n, err
		}
	}
	return n, nil
}

// resultsHead is the next result of one input of MergeResults.
type resultsHead struct {
	r     vegeta.Result
	input int // index of the input
	seq   int // 1-based position in its input
}

// resultsHeap orders heads by timestamp, then by input, so that equal
// timestamps merge in a stable order.
type resultsHeap []resultsHead

func (h resultsHeap) Len() int { return len(h) }
func (h resultsHeap) Less(i, j int) bool {
	if !h[i].r.Timestamp.Equal(h[j].r.Timestamp) {
		return h[i].r.Timestamp.Before(h[j].r.Timestamp)
	}
	return h[i].input < h[j].input
}
func (h resultsHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *resultsHeap) Push(x any)   { *h = append(*h, x.(resultsHead)) }
func (h *resultsHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
