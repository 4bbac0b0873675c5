package allocator

// Where a date's steps lie in time.
//
// A seat is an instant, not a wall-clock label. The office's grid is drawn
// on its wall clock (hours "09:00-18:00", slot_minutes 15), but what a
// desk serves is a span of time, so the steps of a date are the instants
// at which the office's clock shows a grid label of that date, in order
// of time:
//
//   - on most days each label occurs once, and step s starts at local
//     midnight + s × slot_minutes (a uniform day: no table is kept);
//   - in the hour the clocks skip, the labels occur never: no steps;
//   - in the hour the clocks repeat, they occur twice: two steps each,
//     the earlier offset first.
//
// So step i of a date is its i-th seat in time, and the day's bitmaps
// (calendar.go) hold the steps in that order: consecutive bits are
// consecutive spans of time, and a run of k bits is k grid steps of one
// desk without a break. Two more rules keep that true when slot_minutes
// does not divide the size of the clock change (a 2-hour grid, a one-hour
// change):
//
//   - a label instant that falls inside the seat before it (02:00+01:00,
//     while the seat of 02:00+02:00 runs until 03:00+01:00) is no seat;
//   - where a seat ends before the next one starts (the seat of
//     00:00+01:00 ends at 03:00+02:00, the next starts at 04:00+02:00) a
//     dead step, never open, stands for the gap, so no run crosses it.
//
// Rejected design: steps as wall-clock labels (step = minutes / slot
// minutes), mapped to instants by time.Date. That gave the skipped hour
// seats that are the instants of the hour after it (one desk sold twice),
// and the repeated hour one seat for two instants (a hold for 02:30+02:00
// booked at 02:30+01:00). Also rejected: steps as fixed spans from local
// midnight; after a clock change they leave the office's grid (on a 2-hour
// grid the seats after a spring change would start at odd hours).
//
// The table of a transition day is built once, when the day is created
// (newDay), so the claim path pays an array read for it, and a uniform
// day, every other day of the year, pays an addition.

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// Limits of a day's steps.
const (
	// dayMinutesMax is the longest office-local day in use: 26 hours, the
	// day the clocks of Antarctica/Troll go back two hours. A day of a
	// zone with a longer one loses its steps past the limit.
	dayMinutesMax = 26 * 60
	// deadStepsMax bounds the dead steps of a day: one per clock change,
	// and no zone changes its clocks more than twice in a day.
	deadStepsMax = 2
	// zoneOffsetMax bounds the UTC offsets of every zone, local mean
	// times of the 19th century included (Asia/Manila's was −15:56).
	zoneOffsetMax = 16 * 3600
	// zonePeriodsMax bounds the spans of constant offset read around one
	// date (a handful at most).
	zonePeriodsMax = 16
	// deadStep is the label of a dead step.
	deadStep = -1
)

// dayClock places the steps of one office-local date in time. A value:
// immutable once built, read by any goroutine without locks.
type dayClock struct {
	loc *time.Location
	// firstUnix is the start of step 0 in unix seconds.
	firstUnix   int64
	stepSeconds int32
	// n is the number of steps of the date, dead ones included.
	n int32
	// table is nil on a uniform day, where step s starts at firstUnix +
	// s × stepSeconds and its label is s.
	table *stepTable
}

// stepTable lists the steps of a transition day: their starts in unix
// seconds, strictly increasing, and their labels (minutes of the day /
// slot minutes), deadStep for a dead step.
type stepTable struct {
	starts []int64
	labels []int16
}

// startUnix returns the start of step s in unix seconds.
func (c *dayClock) startUnix(s int) int64 {
	if c.table != nil {
		return c.table.starts[s]
	}
	return c.firstUnix + int64(s)*int64(c.stepSeconds)
}

// at returns the start of step s in the office's zone.
func (c *dayClock) at(s int) time.Time { return time.Unix(c.startUnix(s), 0).In(c.loc) }

// end returns the end of the run [s, s+slots): its last step's end.
func (c *dayClock) end(s, slots int) time.Time {
	return time.Unix(c.startUnix(s+slots-1)+int64(c.stepSeconds), 0).In(c.loc)
}

// label returns the grid label of step s, deadStep for a dead step.
func (c *dayClock) label(s int) int {
	if c.table != nil {
		return int(c.table.labels[s])
	}
	return s
}

// stepAt returns the step that starts exactly at t, or false when none
// does.
func (c *dayClock) stepAt(t time.Time) (int, bool) {
	if t.Nanosecond() != 0 {
		return 0, false
	}
	u := t.Unix()
	if c.table == nil {
		off := u - c.firstUnix
		s := off / int64(c.stepSeconds)
		if off < 0 || off%int64(c.stepSeconds) != 0 || s >= int64(c.n) {
			return 0, false
		}
		return int(s), true
	}
	s, found := slices.BinarySearch(c.table.starts, u)
	if !found || c.table.labels[s] == deadStep {
		return 0, false
	}
	return s, true
}

// firstFrom returns the first step that starts at or after from and
// strictly after now (the step under way at now has started); n when
// there is none.
func (c *dayClock) firstFrom(from, now time.Time) int {
	x := from.Unix()
	if from.Nanosecond() != 0 {
		x++ // starts are whole seconds
	}
	x = max(x, now.Unix()+1)
	if c.table != nil {
		s, _ := slices.BinarySearch(c.table.starts, x)
		return s
	}
	if x <= c.firstUnix {
		return 0
	}
	step := int64(c.stepSeconds)
	return int(min((x-c.firstUnix+step-1)/step, int64(c.n)))
}

// check asserts claim invariant C5 on c: every step starts where the
// one before it ends, except after a dead step, which stands for a gap:
// the next step starts later, and is a seat.
func (c *dayClock) check() error {
	for s := 1; s < int(c.n); s++ {
		prev, cur := c.startUnix(s-1), c.startUnix(s)
		if c.label(s-1) == deadStep {
			if cur <= prev || c.label(s) == deadStep {
				return fmt.Errorf("claim invariant C5: step %d at %s does not follow the gap at %s", s, c.at(s).Format(time.RFC3339), c.at(s-1).Format(time.RFC3339))
			}
			continue
		}
		if cur != prev+int64(c.stepSeconds) {
			return fmt.Errorf("claim invariant C5: step %d starts at %s, not where step %d from %s ends", s, c.at(s).Format(time.RFC3339), s-1, c.at(s-1).Format(time.RFC3339))
		}
	}
	return nil
}

// labelSpan is one stretch of a date's label instants within one span of
// constant UTC offset: count instants from firstUnix, one step apart,
// with labels from label.
type labelSpan struct {
	firstUnix    int64
	label, count int
}

// clockOf places the steps of date in time (see the essay above). It
// allocates only on a day the clocks change.
func (l *layout) clockOf(date Date) dayClock {
	step := int64(l.stepMinutes) * 60
	c := dayClock{loc: l.loc, stepSeconds: int32(step)}
	var spans [zonePeriodsMax]labelSpan
	n := 0
	wall0 := int64(date) * 86400 // the date's 00:00 as if the zone were UTC
	wall1 := wall0 + 86400
	eachZonePeriod(l.loc, wall0-zoneOffsetMax, wall1+zoneOffsetMax, func(start, end, offset int64) {
		// In this span the clock shows the date from wall0−offset to
		// wall1−offset.
		lo, hi := max(wall0-offset, start), min(wall1-offset, end)
		if lo >= hi || n == len(spans) {
			return
		}
		k := (lo - (wall0 - offset) + step - 1) / step // first label at or after lo
		u := wall0 - offset + k*step
		if u < hi {
			spans[n] = labelSpan{firstUnix: u, label: int(k), count: int((hi - u + step - 1) / step)}
			n++
		}
	})
	if n > 0 && spans[0].label == 0 {
		uniform, next := true, spans[0]
		total := 0
		for _, sp := range spans[:n] {
			uniform = uniform && sp.firstUnix == next.firstUnix && sp.label == next.label
			next = labelSpan{firstUnix: sp.firstUnix + int64(sp.count)*step, label: sp.label + sp.count}
			total += sp.count
		}
		if uniform && total == l.steps {
			c.firstUnix, c.n = spans[0].firstUnix, int32(l.steps)
			return c
		}
	}
	t := &stepTable{}
	prevEnd := int64(math.MinInt64)
	for _, sp := range spans[:n] {
		for j := range sp.count {
			u := sp.firstUnix + int64(j)*step
			if u < prevEnd {
				continue // inside the seat before it: no seat
			}
			if len(t.starts) > 0 && u > prevEnd { // a gap: a dead step
				t.starts = append(t.starts, prevEnd)
				t.labels = append(t.labels, deadStep)
			}
			t.starts = append(t.starts, u)
			t.labels = append(t.labels, int16(sp.label+j))
			prevEnd = u + step
		}
	}
	if len(t.starts) > l.stepsMax {
		t.starts, t.labels = t.starts[:l.stepsMax], t.labels[:l.stepsMax]
	}
	c.table, c.n = t, int32(len(t.starts))
	if len(t.starts) > 0 {
		c.firstUnix = t.starts[0]
	}
	return c
}

// eachZonePeriod calls f, in order of time, for every span of constant
// UTC offset of loc that overlaps [from, to) (unix seconds), with its
// bounds (math.MinInt64 and math.MaxInt64 where it has none) and offset
// in seconds.
func eachZonePeriod(loc *time.Location, from, to int64, f func(start, end, offset int64)) {
	at := from
	for range zonePeriodsMax {
		t := time.Unix(at, 0).In(loc)
		_, offset := t.Zone()
		s, e := t.ZoneBounds()
		start, end := int64(math.MinInt64), int64(math.MaxInt64)
		if !s.IsZero() {
			start = s.Unix()
		}
		if !e.IsZero() {
			end = e.Unix()
		}
		f(start, end, int64(offset))
		if end >= to || end <= at {
			return
		}
		at = end
	}
}

// wallInstant returns the first instant at which the office's clock
// reads minute (of the day) or later on date: the moment a daily event
// set for that minute happens. On the night the clocks skip it, a minute
// in the skipped hour happens when the clock jumps past it; on the night
// they repeat it, the first time. A date the clocks skip entirely gives
// the first instant after it.
func (l *layout) wallInstant(date Date, minute int) time.Time {
	for range 3 {
		wall0 := int64(date) * 86400
		target, wall1 := wall0+int64(minute)*60, wall0+86400
		best := int64(math.MaxInt64)
		eachZonePeriod(l.loc, target-zoneOffsetMax, wall1+zoneOffsetMax, func(start, end, offset int64) {
			if lo, hi := max(target-offset, start), min(wall1-offset, end); lo < hi {
				best = min(best, lo)
			}
		})
		if best != math.MaxInt64 {
			return time.Unix(best, 0).In(l.loc)
		}
		date, minute = date+1, 0
	}
	return date.At(minute, l.loc)
}

// DayGrid turns the grid steps of one date at one office into times. A
// value; the zero DayGrid (from a failed AppendSlotSteps) has no steps.
type DayGrid struct{ c dayClock }

// Start returns the start of step; the zero time for the zero DayGrid.
func (g *DayGrid) Start(step int) time.Time {
	if g.c.loc == nil {
		return time.Time{}
	}
	return g.c.at(step)
}

// Uniform reports whether every step of the date starts at midnight plus
// step × length — true on any day without a clock change — with the
// midnight and the length.
func (g *DayGrid) Uniform() (midnight time.Time, length time.Duration, ok bool) {
	if g.c.loc == nil || g.c.table != nil {
		return time.Time{}, 0, false
	}
	return time.Unix(g.c.firstUnix, 0).In(g.c.loc), time.Duration(g.c.stepSeconds) * time.Second, true
}

// clock returns the clock of date at o: the day's own when the day
// exists, else one built for the call (cold paths: archive views).
func (o *office) clock(l *layout, date Date) dayClock {
	if d := (*o.days.Load())[date]; d != nil {
		return d.clock
	}
	return l.clockOf(date)
}
