package loadtest

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
	"github.com/tsenart/vegeta/v12/lib/plot"
)

// stats aggregates the results of a run. Handler goroutine only.
type stats struct {
	began       time.Time
	steps       [stepsCount]*vegeta.Metrics
	classes     [stepsCount]map[Class]int
	all         *vegeta.Metrics
	outcomes    map[Outcome]int
	botOutcomes map[Outcome]int
	plot        *plot.Plot
	chart       chartSeries
	results     *resultsWriter // nil: no results file
}

// plotPointsMax bounds the points per plotted series (LTTB downsampling).
const plotPointsMax = 4000

func newStats() *stats {
	s := &stats{
		began:       time.Now(),
		all:         &vegeta.Metrics{},
		outcomes:    map[Outcome]int{},
		botOutcomes: map[Outcome]int{},
	}
	for i := range s.steps {
		s.steps[i] = &vegeta.Metrics{}
		s.classes[i] = map[Class]int{}
	}
	s.plot = plot.New(plot.Title("slotload"), plot.Downsample(plotPointsMax), plot.Label(plot.ErrorLabeler))
	return s
}

func (s *stats) elapsed() time.Duration { return time.Since(s.began).Round(time.Millisecond) }

// add records the answer r of class c to a request of step st, sent by a
// bot or a person.
func (s *stats) add(st step, res *vegeta.Result, c Class, bot bool) {
	// The figures come from the wall clock alone, as results.bin keeps
	// it, so that a re-report matches them to the nanosecond (results.go).
	r := new(vegeta.Result)
	*r = *res
	r.Timestamp = r.Timestamp.Round(0)
	if s.results != nil {
		s.results.add(r)
	}
	s.steps[st].Add(r)
	s.all.Add(r)
	s.classes[st][c]++
	// One plotted series per step: the plot keys series by attack name.
	pr := *r
	pr.Attack = st.String()
	pr.Body = nil
	_ = s.plot.Add(&pr) // only fails on out-of-order results, which it buffers
	s.chart.add(r.Timestamp.Sub(s.began), r.Latency, c, bot)
}

// StepReport is the vegeta metrics and answer classes of one step.
type StepReport struct {
	Step    string
	Metrics *vegeta.Metrics
	Classes map[Class]int
}

// Report is the outcome of a Run.
type Report struct {
	Scenario string
	Started  time.Time
	Elapsed  time.Duration
	// Applicants that arrived, and how each visit ended.
	Applicants int
	Outcomes   map[Outcome]int
	// Steps holds the steps that sent requests, in flow order; All sums them.
	Steps []StepReport
	All   *vegeta.Metrics
	// Bookings is how many bookings got a 2xx.
	Bookings int
	// Release is what the rush released ("" when it released nothing).
	Release string
	// Fairness is botrush's verdict; nil for other scenarios.
	Fairness *Fairness
	// Check is the invariant check; nil when skipped.
	Check *CheckReport
	// Files lists the reports written to OutDir.
	Files []string
}

// OK reports whether the run's checks passed.
func (r *Report) OK() bool {
	return (r.Check == nil || r.Check.OK()) && (r.Fairness == nil || r.Fairness.OK)
}

// Requests counts the answers of class c over all steps.
func (r *Report) Requests(c Class) int {
	n := 0
	for _, s := range r.Steps {
		n += s.Classes[c]
	}
	return n
}

func (s *stats) report(scenario string) Report {
	s.all.Close()
	rep := Report{Scenario: scenario, Started: s.began, Elapsed: s.elapsed(), All: s.all, Outcomes: s.outcomes}
	for i, m := range s.steps {
		if m.Requests == 0 {
			continue
		}
		m.Close()
		rep.Steps = append(rep.Steps, StepReport{Step: step(i).String(), Metrics: m, Classes: s.classes[i]})
	}
	for _, n := range s.outcomes {
		rep.Applicants += n
	}
	return rep
}

// WriteSummary writes the human summary: outcomes, answers per step with
// latency quantiles, fairness and the invariant check.
func (r *Report) WriteSummary(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "scenario %s: %d applicants, %d requests in %s (%.0f req/s)", r.Scenario, r.Applicants,
		r.All.Requests, r.Elapsed, r.All.Rate)
	if r.Release != "" {
		fmt.Fprintf(tw, "; %s", r.Release)
	}
	fmt.Fprintln(tw)
	fmt.Fprintf(tw, "outcomes:\tbooked %d\tslot_taken %d\trate-limited %d\tshed %d\terrors %d\n",
		r.Outcomes[OutcomeBooked], r.Outcomes[OutcomeSlotTaken], r.Outcomes[OutcomeRateLimited],
		r.Outcomes[OutcomeShed], r.Outcomes[OutcomeError])
	var other []string
	for _, o := range outcomes {
		switch o {
		case OutcomeBooked, OutcomeSlotTaken, OutcomeRateLimited, OutcomeShed, OutcomeError:
			continue
		}
		if n := r.Outcomes[o]; n > 0 {
			other = append(other, fmt.Sprintf("%s %d", o, n))
		}
	}
	if len(other) > 0 {
		fmt.Fprintf(tw, "\t%s\n", strings.Join(other, "\t"))
	}
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
	fmt.Fprintf(tw, "bookings created: %d\n", r.Bookings)
	if err := tw.Flush(); err != nil {
		return err
	}
	if f := r.Fairness; f != nil {
		fmt.Fprintln(w, f.String())
	}
	if c := r.Check; c != nil {
		verdict := "OK"
		if !c.OK() {
			verdict = fmt.Sprintf("FAILED (%d violations)", c.ViolationsTotal)
		}
		fmt.Fprintf(w, "invariant check: %s — %d bookings read back, %d active, %d dates' counters compared\n",
			verdict, c.Bookings, c.ActiveBookings, c.Days)
		for _, v := range c.Violations {
			fmt.Fprintf(w, "  %s\n", v)
		}
	} else {
		fmt.Fprintln(w, "invariant check: skipped")
	}
	_, err := fmt.Fprintf(w, "")
	return err
}

// writeFiles writes into dir the metrics per step (writeMetrics), plus
// plot.html, plot.png and summary.txt / summary.json.
func (r *Report) writeFiles(dir string, p *plot.Plot, c *chartSeries) error {
	if err := r.writeMetrics(dir); err != nil {
		return err
	}
	write := func(name string, f func(io.Writer) error) error { return r.writeFile(dir, name, f) }
	p.Close()
	if err := write("plot.html", func(w io.Writer) error { _, err := p.WriteTo(w); return err }); err != nil {
		return err
	}
	title := fmt.Sprintf("slotload %s: %d requests in %s, %d bookings", r.Scenario, r.All.Requests, r.Elapsed, r.Bookings)
	if f := r.Fairness; f != nil && f.BotSeats+f.HumanSeats > 0 {
		title += fmt.Sprintf("\nbots are %.1f%% of the applicants and won %.1f%% of the seats (%d of %d; limit %.1f%%)",
			100*f.BotApplicantShare, 100*f.BotSeatShare, f.BotSeats, f.BotSeats+f.HumanSeats, 100*f.BotSeatShareMax)
	}
	if err := write("plot.png", func(w io.Writer) error { return c.writePNG(w, title) }); err != nil {
		return err
	}
	if err := write("summary.txt", r.WriteSummary); err != nil {
		return err
	}
	return write("summary.json", func(w io.Writer) error {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	})
}

// writeMetrics writes into dir, per step and for all steps together:
// <step>.txt (vegeta text report), <step>.json (vegeta JSON report) and
// <step>.hdr (vegeta HDR histogram plot data).
func (r *Report) writeMetrics(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("cannot create report directory: %w", err)
	}
	sets := append([]StepReport{{Step: "all", Metrics: r.All}}, r.Steps...)
	for _, s := range sets {
		reporters := map[string]vegeta.Reporter{
			".txt":  vegeta.NewTextReporter(s.Metrics),
			".json": vegeta.NewJSONReporter(s.Metrics),
			".hdr":  vegeta.NewHDRHistogramPlotReporter(s.Metrics),
		}
		for _, ext := range []string{".txt", ".json", ".hdr"} {
			if err := r.writeFile(dir, s.Step+ext, reporters[ext].Report); err != nil {
				return err
			}
		}
	}
	return nil
}

// writeFile writes dir/name with f and adds it to r.Files.
func (r *Report) writeFile(dir, name string, f func(io.Writer) error) error {
	path := filepath.Join(dir, name)
	out, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("cannot write report: %w", err)
	}
	if err := f(out); err != nil {
		out.Close()
		return fmt.Errorf("cannot write %s: %w", name, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("cannot write %s: %w", name, err)
	}
	r.Files = append(r.Files, path)
	return nil
}
