package loadtest

import (
	"fmt"
	"math"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// ProfilePacer is a vegeta.Pacer whose rate follows a Profile. It is an
// open-model pacer: the time of the n-th hit depends only on the profile,
// never on how fast the server answered. Immutable; safe for concurrent use.
//
// With H(t) the expected number of hits by t (the integral of the rate),
// hit number n+1 is due at the t where H(t) = n+1, the same convention as
// vegeta's ConstantPacer (its first hit is due after one interval).
type ProfilePacer struct {
	profile Profile
	cum     []float64 // cum[i] = H(profile.Points[i].At)
	total   float64   // H at the end of the profile
	hitsMax uint64    // 0: no cap
}

var _ vegeta.Pacer = (*ProfilePacer)(nil)

// NewProfilePacer returns a pacer for p that stops after hitsMax hits
// (0: when the profile ends).
func NewProfilePacer(p Profile, hitsMax uint64) (*ProfilePacer, error) {
	if len(p.Points) == 0 {
		return nil, fmt.Errorf("pacer: empty profile")
	}
	if p.Step && p.StepLength <= 0 {
		return nil, fmt.Errorf("pacer: step profile needs a step length > 0")
	}
	pp := &ProfilePacer{profile: p, cum: make([]float64, len(p.Points)), hitsMax: hitsMax}
	for i, pt := range p.Points {
		if pt.RatePerSecond < 0 || math.IsNaN(pt.RatePerSecond) || math.IsInf(pt.RatePerSecond, 0) {
			return nil, fmt.Errorf("pacer: point %d: rate %v must be finite and ≥ 0", i, pt.RatePerSecond)
		}
		if i == 0 {
			if pt.At < 0 {
				return nil, fmt.Errorf("pacer: point 0 at %v < 0", pt.At)
			}
			continue
		}
		prev := p.Points[i-1]
		if pt.At <= prev.At {
			return nil, fmt.Errorf("pacer: point %d at %v is not after point %d at %v", i, pt.At, i-1, prev.At)
		}
		pp.cum[i] = pp.cum[i-1] + pp.segmentHits(i-1, pt.At-prev.At)
	}
	last := len(p.Points) - 1
	pp.total = pp.cum[last]
	if p.Step {
		pp.total += p.Points[last].RatePerSecond * p.StepLength.Seconds()
	}
	return pp, nil
}

// segmentHits is the number of hits between point i and i's offset + d
// (d within the segment that starts at point i).
func (pp *ProfilePacer) segmentHits(i int, d time.Duration) float64 {
	r0, x := pp.profile.Points[i].RatePerSecond, d.Seconds()
	if pp.profile.Step || i+1 == len(pp.profile.Points) {
		return r0 * x
	}
	r1 := pp.profile.Points[i+1].RatePerSecond
	span := (pp.profile.Points[i+1].At - pp.profile.Points[i].At).Seconds()
	return r0*x + (r1-r0)*x*x/(2*span)
}

// segment is the index of the point whose segment contains t, or -1
// before the first point.
func (pp *ProfilePacer) segment(t time.Duration) int {
	pts := pp.profile.Points
	lo, hi := 0, len(pts) // find the last i with pts[i].At <= t
	for lo < hi {
		mid := (lo + hi) / 2
		if pts[mid].At <= t {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo - 1
}

// Hits is H(t): the expected number of hits by elapsed time t.
func (pp *ProfilePacer) Hits(t time.Duration) float64 {
	i := pp.segment(t)
	if i < 0 {
		return 0
	}
	if t >= pp.profile.Length() {
		return pp.total
	}
	return pp.cum[i] + pp.segmentHits(i, t-pp.profile.Points[i].At)
}

// Total is the number of hits the whole profile sends (before the cap).
func (pp *ProfilePacer) Total() float64 { return pp.total }

// Rate implements vegeta.Pacer: the profile's rate at elapsed, per second.
func (pp *ProfilePacer) Rate(elapsed time.Duration) float64 {
	i := pp.segment(elapsed)
	if i < 0 || elapsed >= pp.profile.Length() {
		return 0
	}
	pts := pp.profile.Points
	if pp.profile.Step || i+1 == len(pts) {
		return pts[i].RatePerSecond
	}
	f := float64(elapsed-pts[i].At) / float64(pts[i+1].At-pts[i].At)
	return pts[i].RatePerSecond + f*(pts[i+1].RatePerSecond-pts[i].RatePerSecond)
}

// Pace implements vegeta.Pacer.
func (pp *ProfilePacer) Pace(elapsed time.Duration, hits uint64) (time.Duration, bool) {
	if pp.hitsMax > 0 && hits >= pp.hitsMax {
		return 0, true
	}
	want := float64(hits + 1)
	if want > pp.total {
		return 0, true
	}
	if pp.Hits(elapsed) >= want {
		return 0, false // behind schedule: hit now
	}
	return pp.due(want) - elapsed, false
}

// due is the offset at which H reaches n (0 < n ≤ total).
func (pp *ProfilePacer) due(n float64) time.Duration {
	// The last point with cum ≤ n starts the segment that reaches n.
	lo, hi := 0, len(pp.cum)
	for lo < hi {
		mid := (lo + hi) / 2
		if pp.cum[mid] < n {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	i := max(lo-1, 0)
	pts := pp.profile.Points
	need := n - pp.cum[i]
	r0 := pts[i].RatePerSecond
	var x float64 // seconds into segment i
	if pp.profile.Step || i+1 == len(pts) {
		x = need / r0
	} else {
		span := (pts[i+1].At - pts[i].At).Seconds()
		a := (pts[i+1].RatePerSecond - r0) / (2 * span)
		// Solve a·x² + r0·x = need in the form that stays stable when a
		// is tiny or negative: x = 2·need / (r0 + √(r0² + 4a·need)).
		x = 2 * need / (r0 + math.Sqrt(max(r0*r0+4*a*need, 0)))
	}
	return pts[i].At + time.Duration(x*float64(time.Second))
}

// String describes the pacer for logs.
func (pp *ProfilePacer) String() string {
	return fmt.Sprintf("Profile{%d points, %.0f hits over %s, peak %.1f/s}",
		len(pp.profile.Points), pp.total, pp.profile.Length(), pp.profile.PeakRate())
}

// spikeProfile is the rush: arrivals ramp linearly from zero to a peak at
// lead (the release instant) and fall back to zero over spread, with the
// peak chosen so that the whole spike sends n arrivals.
func spikeProfile(n int, lead, spread time.Duration) Profile {
	peak := 2 * float64(n) / (lead + spread).Seconds()
	pts := []ProfilePoint{{At: 0, RatePerSecond: 0}, {At: lead, RatePerSecond: peak}, {At: lead + spread, RatePerSecond: 0}}
	switch {
	case lead == 0:
		pts = pts[1:]
	case spread == 0:
		pts = pts[:2]
	}
	return Profile{Points: pts}
}

// flatProfile is a constant rate for d.
func flatProfile(ratePerSecond float64, d time.Duration) Profile {
	return Profile{Points: []ProfilePoint{{At: 0, RatePerSecond: ratePerSecond}}, Step: true, StepLength: d}
}
