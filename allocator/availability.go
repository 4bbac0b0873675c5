package allocator

import (
	"fmt"
	"math/bits"
	"slices"
	"time"
)

// Availability reads. Their cost depends on offices, days, windows and grid
// steps, never on the number of bookings: free counts come from the per-day
// counters and bitmaps.

// rangeDaysMax bounds a Days query.
const rangeDaysMax = 400

// DayFree is one released date and its free starts for a service.
type DayFree struct {
	Date Date
	Free int
}

// SlotFree is one start of a date and the number of windows free for it.
type SlotFree struct {
	Start time.Time
	Free  int
}

// Opening is a free start at an office (search results, alternatives).
type Opening struct {
	Office string
	Start  time.Time
	Free   int
}

// officeService resolves an office and one of its services.
func (e *Engine) officeService(officeID, serviceID string) (*office, *layout, *service, error) {
	o, err := e.office(officeID)
	if err != nil {
		return nil, nil, nil, err
	}
	l := o.lay.Load()
	svc := l.services[serviceID]
	if svc == nil {
		return nil, nil, nil, fmt.Errorf("%w: office %s has no service %q", ErrServiceNotFound, o.id, serviceID)
	}
	return o, l, svc, nil
}

// noticeEnd is the instant a start must come after to be booked at now:
// now plus the policy's min_notice. The reads of free starts use it as
// the holds do, so that no start they offer is refused for its notice.
func (l *layout) noticeEnd(now time.Time) time.Time {
	return now.Add(l.policy.minNotice)
}

// eachCandidateDay calls f, in date order, for every bookable date of svc
// from from's date through released_through whose day has room for a run,
// with the first step to consider; f returns false to stop.
func (o *office) eachCandidateDay(l *layout, svc *service, from, now time.Time, f func(d *day, first int) bool) {
	notice := l.noticeEnd(now)
	if from.Before(notice) {
		from = notice
	}
	last := Date(o.releasedThrough.Load())
	for date := DateOf(from.In(l.loc)); date <= last; date++ {
		if o.refuseDate(l, svc, date, now) != dateBookable {
			continue
		}
		d := o.day(l, date)
		if d.freeSeats() < int64(svc.slots) {
			continue
		}
		if !f(d, d.clock.firstFrom(from, notice)) {
			return
		}
	}
}

// freeStarts counts the free starts of svc on d at or after step first.
func (l *layout) freeStarts(d *day, svc *service, first int) int {
	if svc.slots == 1 && first == 0 {
		return int(max(d.freeSeats(), 0)) // the counter: O(1)
	}
	var starts [8]uint64
	n := 0
	for w := 0; w < l.windows; w++ {
		d.startsOf(w, svc.slots, starts[:l.words])
		n += popcountFrom(starts[:l.words], first)
	}
	return n
}

func popcountFrom(words []uint64, from int) int {
	n := 0
	for i := from / 64; i < len(words); i++ {
		w := words[i]
		if i == from/64 {
			w &= ^uint64(0) << (from % 64)
		}
		n += bits.OnesCount64(w)
	}
	return n
}

// Days lists the bookable dates in [from, to] with their free starts for
// service (dates with no start for the service are left out).
func (e *Engine) Days(now time.Time, officeID, serviceID string, from, to Date) ([]DayFree, error) {
	o, l, svc, err := e.officeService(officeID, serviceID)
	if err != nil {
		return nil, err
	}
	if to < from {
		return nil, fmt.Errorf("%w: to %s is before from %s", ErrValidation, to, from)
	}
	if to-from > rangeDaysMax {
		return nil, fmt.Errorf("%w: at most %d days per query", ErrValidation, rangeDaysMax)
	}
	from = max(from, l.today(now))
	to = min(to, Date(o.releasedThrough.Load()))
	out := []DayFree{}
	for date := from; date <= to; date++ {
		if o.refuseDate(l, svc, date, now) != dateBookable {
			continue
		}
		d := o.day(l, date)
		out = append(out, DayFree{Date: date, Free: l.freeStarts(d, svc, d.clock.firstFrom(now, l.noticeEnd(now)))})
	}
	return out, nil
}

// Slots lists the starts of service on date with the number of windows
// free for each; starts already past are left out.
func (e *Engine) Slots(now time.Time, officeID string, date Date, serviceID string) ([]SlotFree, error) {
	steps, grid, err := e.AppendSlotSteps(nil, now, officeID, date, serviceID)
	if err != nil {
		return nil, err
	}
	out := make([]SlotFree, len(steps))
	for i, s := range steps {
		out[i] = SlotFree{Start: grid.Start(int(s.Step)), Free: int(s.Free)}
	}
	return out, nil
}

// StepFree is Slots' answer in compact form: a start as its step of the
// date (DayGrid turns it into a time), and its free windows.
type StepFree struct {
	Step, Free uint16
}

// AppendSlotSteps is Slots in compact form, appended to dst so that a
// caller answering many reads reuses one slice and makes no time.Time per
// start. With an error it returns dst unchanged.
func (e *Engine) AppendSlotSteps(dst []StepFree, now time.Time, officeID string, date Date, serviceID string) ([]StepFree, DayGrid, error) {
	o, l, svc, err := e.officeService(officeID, serviceID)
	if err != nil {
		return dst, DayGrid{}, err
	}
	if err := o.bookableDate(l, svc, date, now); err != nil {
		return dst, DayGrid{}, err
	}
	d := o.day(l, date)
	first := d.clock.firstFrom(now, l.noticeEnd(now))
	// Possible starts: the run fits inside opening hours.
	var open, starts [8]uint64
	copy(open[:], d.open)
	shiftAnd(open[:l.words], svc.slots)
	var counts startCounts
	for w := 0; w < l.windows; w++ {
		d.startsOf(w, svc.slots, starts[:l.words])
		counts.add(starts[:l.words])
	}
	planes := bits.Len(uint(l.windows))
	out := slices.Grow(dst, d.openSteps)
	n := int(d.clock.n)
	if planes > eightMax {
		for s := first; s < n; s++ {
			if open[s/64]&(1<<(s%64)) != 0 {
				out = append(out, StepFree{Step: uint16(s), Free: uint16(counts.at(s, planes))})
			}
		}
		return out, DayGrid{d.clock}, nil
	}
	group, eight := -1, uint64(0) // eight: the counts of group's 8 steps, a byte each
	for s := first; s < n; s++ {
		if open[s/64]&(1<<(s%64)) == 0 {
			continue
		}
		if s/8 != group {
			group = s / 8
			eight = counts.eight(group, planes)
		}
		out = append(out, StepFree{Step: uint16(s), Free: uint16(eight >> (8 * (s % 8)) & 0xff)})
	}
	return out, DayGrid{d.clock}, nil
}

// startCounts counts, for every grid step of a day, the windows whose
// bitmap has the step set: a bit-sliced counter. Plane k holds bit k of
// every step's count, so adding a window's bitmap costs a few word
// operations (a ripple carry that stops as soon as it is zero) instead of
// one increment per set bit, which took three times as long for a day of
// 96 free starts on 64 windows (BenchmarkSlots64). Nine planes count up
// to windowsMax. A value owned by one AppendSlotSteps call.
type startCounts [9][8]uint64

// Nine planes count to 511: windowsMax must stay below (a compile error
// otherwise).
const _ = uint(1<<len(startCounts{}) - 1 - windowsMax)

// add counts one window's bitmap.
func (c *startCounts) add(words []uint64) {
	for i, carry := range words {
		for k := 0; carry != 0; k++ {
			p := c[k][i]
			c[k][i] = p ^ carry
			carry &= p
		}
	}
}

// at returns the count of step s, whose bits are in the low planes.
func (c *startCounts) at(s, planes int) int {
	n := 0
	for k := range planes {
		n |= int(c[k][s/64]>>(s%64)&1) << k
	}
	return n
}

// eightMax is the most planes eight reads: a count of 255, one byte.
const eightMax = 8

// spreadBits maps a byte to eight bytes holding its bits, bit j of the
// byte in the low bit of byte j.
var spreadBits = func() (t [256]uint64) {
	for x := range t {
		for j := range 8 {
			t[x] |= uint64(x>>j&1) << (8 * j)
		}
	}
	return t
}()

// eight returns the counts of steps 8g..8g+7, the count of 8g+j in byte
// j, for planes ≤ eightMax: a table look-up per plane for eight steps,
// where at shifts each plane once per step (a third of a day's read).
func (c *startCounts) eight(g, planes int) uint64 {
	i, shift := g/8, 8*(g%8)
	var n uint64
	for k := range planes {
		n |= spreadBits[c[k][i]>>shift&0xff] << k
	}
	return n
}

// shiftAnd keeps the bits at which a run of n set bits starts.
func shiftAnd(words []uint64, n int) {
	for k := 1; k < n; k++ {
		for i := range words {
			v := words[i] >> 1
			if i+1 < len(words) {
				v |= words[i+1] << 63
			}
			words[i] &= v
		}
	}
}

// firstFree returns the first free start of svc at o at or after from,
// scanning at most the released dates.
func (o *office) firstFree(l *layout, svc *service, from, now time.Time, limit int, out []Opening) []Opening {
	if limit <= 0 {
		return out
	}
	var starts [8]uint64
	var counts [StepsMax]uint16
	o.eachCandidateDay(l, svc, from, now, func(d *day, first int) bool {
		clear(counts[:])
		for w := 0; w < l.windows; w++ {
			d.startsOf(w, svc.slots, starts[:l.words])
			for i := 0; i < l.words; i++ {
				for x := starts[i]; x != 0; x &= x - 1 {
					if s := i*64 + bits.TrailingZeros64(x); s >= first {
						counts[s]++
					}
				}
			}
		}
		for s := first; s < int(d.clock.n) && limit > 0; s++ {
			if counts[s] > 0 {
				out = append(out, Opening{Office: o.id, Start: d.clock.at(s), Free: int(counts[s])})
				limit--
			}
		}
		return limit > 0
	})
	return out
}

// FirstFree returns up to limit free starts of service at an office, at or
// after from, earliest first.
func (e *Engine) FirstFree(now time.Time, officeID, serviceID string, from time.Time, limit int) ([]Opening, error) {
	o, l, svc, err := e.officeService(officeID, serviceID)
	if err != nil {
		return nil, err
	}
	return o.firstFree(l, svc, from, now, limit, nil), nil
}

// searchLimitMax bounds results of Search and Alternatives.
const searchLimitMax = 100

// Search returns the nearest free starts of service across the offices of
// region (all regions when empty), earliest first, at most limit.
//
// Each office's earliest starts are merged into the best limit so far, so
// a search costs offices × limit, not a sort of every office's openings
// (it also answers every slot_taken, through Alternatives). Among equal
// starts the office listed first comes first.
func (e *Engine) Search(now time.Time, region, serviceID string, after time.Time, limit int) []Opening {
	limit = min(max(limit, 1), searchLimitMax)
	var out, spare, office []Opening
	for _, id := range e.OfficeIDs() {
		o, _ := e.office(id)
		l := o.lay.Load()
		svc := l.services[serviceID]
		if svc == nil || (region != "" && l.cfg.Region != region) {
			continue
		}
		office = o.firstFree(l, svc, after, now, limit, office[:0])
		if !slices.IsSortedFunc(office, byStart) {
			// A day's steps are in order of time (claim invariant C5) and
			// so are the dates; only a zone whose clocks went back across
			// midnight could interleave two dates. None in use does.
			slices.SortStableFunc(office, byStart)
		}
		out, spare = mergeEarliest(spare[:0], out, office, limit), out
	}
	return out
}

func byStart(a, b Opening) int { return a.Start.Compare(b.Start) }

// mergeEarliest appends to dst the first limit openings of a and b, both
// sorted by start; a's come first among equal starts.
func mergeEarliest(dst, a, b []Opening, limit int) []Opening {
	i, j := 0, 0
	for len(dst) < limit && (i < len(a) || j < len(b)) {
		if j == len(b) || (i < len(a) && !b[j].Start.Before(a[i].Start)) {
			dst = append(dst, a[i])
			i++
		} else {
			dst = append(dst, b[j])
			j++
		}
	}
	return dst
}

// Alternatives returns free starts near a wanted one: the same office
// first (earliest from the wanted start on), then other offices of its
// region. Used to answer slot_taken.
func (e *Engine) Alternatives(now time.Time, officeID, serviceID string, wanted time.Time, limit int) []Opening {
	limit = min(max(limit, 1), searchLimitMax)
	o, err := e.office(officeID)
	if err != nil {
		return nil
	}
	l := o.lay.Load()
	out := []Opening{}
	if svc := l.services[serviceID]; svc != nil {
		out = o.firstFree(l, svc, wanted, now, limit, out)
	}
	if len(out) < limit {
		for _, alt := range e.Search(now, l.cfg.Region, serviceID, wanted, limit) {
			if alt.Office != officeID && len(out) < limit {
				out = append(out, alt)
			}
		}
	}
	return out
}

// Load levels of an office, part of the API.
const (
	LoadFree = "free"
	LoadBusy = "busy"
	LoadFull = "full"
)

// busyFraction: under this share of capacity left, an office is busy.
const busyFraction = 0.2

// OfficeSummary is an office with its availability.
type OfficeSummary struct {
	Config          OfficeConfig
	ReleasedThrough Date
	FreeSeats       int
	NextFree        *Opening
	Load            string
}

// OfficeFilter selects offices. Zero fields select all.
type OfficeFilter struct {
	Region, City, Service string
	HasFree               bool
}

// Offices lists offices with their free seats over the released dates
// (for a service when the filter names one), next free start and load.
func (e *Engine) Offices(now time.Time, f OfficeFilter) []OfficeSummary {
	out := []OfficeSummary{}
	for _, id := range e.OfficeIDs() {
		o, _ := e.office(id)
		l := o.lay.Load()
		if (f.Region != "" && l.cfg.Region != f.Region) || (f.City != "" && l.cfg.City != f.City) {
			continue
		}
		var svcs []*service
		if f.Service != "" {
			svc := l.services[f.Service]
			if svc == nil {
				continue
			}
			svcs = []*service{svc}
		} else {
			for _, sc := range l.cfg.Services {
				svcs = append(svcs, l.services[sc.ID])
			}
		}
		s := OfficeSummary{Config: l.cfg, ReleasedThrough: Date(o.releasedThrough.Load())}
		capacity := 0
		today := l.today(now)
		seat := &service{slots: 1} // free seats, whatever service uses them
		for date := today; date <= s.ReleasedThrough; date++ {
			// a seat counts once even if several services could use it
			var open bool
			for _, svc := range svcs {
				if o.refuseDate(l, svc, date, now) == dateBookable {
					open = true
					break
				}
			}
			if !open {
				continue
			}
			d := o.day(l, date)
			capacity += d.openSteps * l.windows
			first := d.clock.firstFrom(now, l.noticeEnd(now))
			if f.Service != "" {
				s.FreeSeats += l.freeStarts(d, svcs[0], first)
			} else {
				s.FreeSeats += l.freeStarts(d, seat, first)
			}
		}
		var next *Opening
		for _, svc := range svcs {
			if got := o.firstFree(l, svc, now, now, 1, nil); len(got) > 0 && (next == nil || got[0].Start.Before(next.Start)) {
				next = &got[0]
			}
		}
		s.NextFree = next
		switch {
		case s.FreeSeats == 0:
			s.Load = LoadFull
		case float64(s.FreeSeats) < busyFraction*float64(capacity):
			s.Load = LoadBusy
		default:
			s.Load = LoadFree
		}
		if f.HasFree && s.FreeSeats == 0 {
			continue
		}
		out = append(out, s)
	}
	return out
}
