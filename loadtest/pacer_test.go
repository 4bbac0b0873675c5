package loadtest

import (
	"math"
	"testing"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// Pacers are tested by their function values, never by sleeping.

func mustPacer(t *testing.T, p Profile, hitsMax uint64) *ProfilePacer {
	t.Helper()
	pp, err := NewProfilePacer(p, hitsMax)
	if err != nil {
		t.Fatal(err)
	}
	return pp
}

func near(a, b, tol float64) bool { return math.Abs(a-b) <= tol }

func TestProfilePacerMatchesConstantPacer(t *testing.T) {
	pp := mustPacer(t, flatProfile(100, time.Minute), 0)
	cp := vegeta.ConstantPacer{Freq: 100, Per: time.Second}
	f := func(elapsed time.Duration, hits uint64) {
		t.Helper()
		gotWait, gotStop := pp.Pace(elapsed, hits)
		wantWait, wantStop := cp.Pace(elapsed, hits)
		gotWait, wantWait = max(gotWait, 0), max(wantWait, 0) // both mean "now"
		if d := gotWait - wantWait; gotStop != wantStop || d < -time.Microsecond || d > time.Microsecond {
			t.Errorf("Pace(%v, %d) = %v %v, ConstantPacer says %v %v", elapsed, hits, gotWait, gotStop, wantWait, wantStop)
		}
		if pp.Rate(elapsed) != cp.Rate(elapsed) {
			t.Errorf("Rate(%v) = %v, want %v", elapsed, pp.Rate(elapsed), cp.Rate(elapsed))
		}
	}
	f(0, 0)                        // the first hit is due after one interval
	f(5*time.Millisecond, 0)       // half way to it
	f(10*time.Millisecond, 1)      // on time
	f(time.Second, 50)             // far behind: hit now
	f(time.Second, 100)            // exactly on schedule
	f(1500*time.Millisecond, 100)  // behind by 50
	f(1500*time.Millisecond, 1000) // far ahead
	// The profile ends after a minute: 6000 hits, then stop.
	if _, stop := pp.Pace(time.Minute, 5999); stop {
		t.Error("stopped before the 6000th hit")
	}
	if _, stop := pp.Pace(time.Minute, 6000); !stop {
		t.Error("did not stop after the profile's 6000 hits")
	}
	if pp.Rate(time.Minute) != 0 || pp.Rate(-time.Second) != 0 {
		t.Error("rate outside the profile is not zero")
	}
}

func TestProfilePacerLinearRamp(t *testing.T) {
	// 0 → 100/s over 10s: H(t) = 5·t², 500 hits in all.
	pp := mustPacer(t, Profile{Points: []ProfilePoint{{0, 0}, {10 * time.Second, 100}}}, 0)
	for _, sec := range []float64{0, 1, 2.5, 7, 10, 11} {
		d := time.Duration(sec * float64(time.Second))
		wantHits := 5 * min(sec, 10) * min(sec, 10)
		if got := pp.Hits(d); !near(got, wantHits, 1e-6) {
			t.Errorf("Hits(%v) = %v, want %v", d, got, wantHits)
		}
		wantRate := 10 * sec
		if sec >= 10 {
			wantRate = 0
		}
		if got := pp.Rate(d); !near(got, wantRate, 1e-9) {
			t.Errorf("Rate(%v) = %v, want %v", d, got, wantRate)
		}
	}
	// Hit n is due at √(n/5) s.
	f := func(elapsed time.Duration, hits uint64, wantWait time.Duration, wantStop bool) {
		t.Helper()
		wait, stop := pp.Pace(elapsed, hits)
		if stop != wantStop || (wait-wantWait).Abs() > time.Microsecond {
			t.Errorf("Pace(%v, %d) = %v %v, want %v %v", elapsed, hits, wait, stop, wantWait, wantStop)
		}
	}
	f(0, 0, time.Duration(math.Sqrt(1.0/5)*1e9), false)
	f(time.Second, 4, 0, false) // H(1s) = 5: the 5th hit is due now
	f(time.Second, 19, 2*time.Second-time.Second, false)
	f(3*time.Second, 499, time.Duration(math.Sqrt(500.0/5)*1e9)-3*time.Second, false)
	f(10*time.Second, 500, 0, true)
}

func TestProfilePacerDecreasingAndSteps(t *testing.T) {
	// A falling ramp 100 → 0 over 2s (100 hits), solved with a
	// negative quadratic term.
	pp := mustPacer(t, Profile{Points: []ProfilePoint{{0, 100}, {2 * time.Second, 0}}}, 0)
	if !near(pp.Total(), 100, 1e-9) {
		t.Fatalf("Total = %v, want 100", pp.Total())
	}
	for _, n := range []float64{1, 25, 50, 75, 99.5, 100} {
		due := pp.due(n)
		if got := pp.Hits(due); !near(got, n, 1e-6) {
			t.Errorf("H(due(%v) = %v) = %v", n, due, got)
		}
	}
	// Steps: 10/s for a minute, nothing for a minute, 20/s for a minute.
	steps := Profile{Step: true, StepLength: time.Minute, Points: []ProfilePoint{
		{0, 10}, {time.Minute, 0}, {2 * time.Minute, 20}}}
	sp := mustPacer(t, steps, 0)
	if !near(sp.Total(), 1800, 1e-9) || sp.Rate(90*time.Second) != 0 || sp.Rate(150*time.Second) != 20 {
		t.Fatalf("Total %v, Rate(90s) %v, Rate(150s) %v", sp.Total(), sp.Rate(90*time.Second), sp.Rate(150*time.Second))
	}
	// After hit 600 at 60s the next one waits out the silent minute.
	if wait, stop := sp.Pace(61*time.Second, 600); stop || (wait-(2*time.Minute+50*time.Millisecond-61*time.Second)).Abs() > time.Microsecond {
		t.Errorf("Pace over the gap = %v %v", wait, stop)
	}
	// Compressed 60×: a minute per second, same rates.
	cp := mustPacer(t, steps.Compress(60), 0)
	if !near(cp.Total(), 30, 1e-9) || cp.Rate(2500*time.Millisecond) != 20 {
		t.Errorf("compressed: Total %v Rate %v", cp.Total(), cp.Rate(2500*time.Millisecond))
	}
	if got := steps.Scale(0.5).PeakRate(); got != 10 {
		t.Errorf("scaled peak %v, want 10", got)
	}
}

func TestSpikeProfileAndCap(t *testing.T) {
	for _, c := range []struct {
		n            int
		lead, spread time.Duration
	}{{1000, time.Second, 2 * time.Second}, {7, 0, time.Second}, {300, 3 * time.Second, 0}} {
		pp := mustPacer(t, spikeProfile(c.n, c.lead, c.spread), uint64(c.n))
		if !near(pp.Total(), float64(c.n), 1e-6) {
			t.Errorf("spike %v: Total %v, want %d", c, pp.Total(), c.n)
		}
		peak := 2 * float64(c.n) / (c.lead + c.spread).Seconds()
		if !near(pp.Rate(c.lead), peak, 1e-6) && c.spread > 0 {
			t.Errorf("spike %v: rate at the release %v, want the peak %v", c, pp.Rate(c.lead), peak)
		}
		if _, stop := pp.Pace(0, uint64(c.n)); !stop {
			t.Errorf("spike %v: no stop at the cap", c)
		}
	}
	// The cap stops a long profile early.
	pp := mustPacer(t, flatProfile(1000, time.Hour), 5)
	if _, stop := pp.Pace(0, 4); stop {
		t.Error("stopped before the cap")
	}
	if _, stop := pp.Pace(0, 5); !stop {
		t.Error("no stop at the cap")
	}
}

func TestNewProfilePacerRejects(t *testing.T) {
	bad := func(p Profile) {
		t.Helper()
		if _, err := NewProfilePacer(p, 0); err == nil {
			t.Errorf("NewProfilePacer(%v) accepted", p)
		}
	}
	bad(Profile{})
	bad(Profile{Points: []ProfilePoint{{0, -1}}})
	bad(Profile{Points: []ProfilePoint{{0, math.NaN()}}})
	bad(Profile{Points: []ProfilePoint{{time.Second, 1}, {time.Second, 1}}})
	bad(Profile{Points: []ProfilePoint{{-time.Second, 1}}})
	bad(Profile{Step: true, Points: []ProfilePoint{{0, 1}}})
}
