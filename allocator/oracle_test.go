package allocator

import (
	"cmp"
	"errors"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"slotd/internal/slotdtest/testtime"
)

// Oracle tests, in the spirit of raft's quick.CheckEqual: the lock-free
// engine and a plain model — maps and slices, one goroutine, no bitmaps, no
// CAS, no timer wheel, no shared code with the engine beyond the public
// types — run the same long random operation sequences and must agree on
// every result (success or which sentinel error; for a success the seat,
// status and booking serial; every watch.matched the operation caused) and
// on the state at checkpoints and at the end (every booking, every
// applicant's active count and block, the active watches, free starts per
// day and per step, counters against bitmaps).
//
// The model states the semantics of DESIGN §1 directly: a seat is an
// instant at a window — an instant whose wall clock shows a grid label of
// its date, unless the seat before it still runs (found by reading the
// clock minute by minute, so the hour the clocks skip has no seats and the
// hour they repeat has both); a seat is free when it is in opening hours,
// its date is not closed, and no active booking owns it; a k-step run is k
// seats a grid step apart; an exact start takes the lowest free window;
// earliest_after takes the earliest start, then the lowest window; holds
// expire and no-shows fire on Tick by time alone, in the order they fell
// due; the daily release happens when the clock first reads the release
// minute. A confirm of a service that requires approval waits for an
// operator, and a request nobody approved expires at start + grace.
// Watches form one waitlist, oldest first: a seat freed goes to the first
// watch that matches it (office or region, service, dates, bookable),
// handed over as a hold with auto_hold, told of without; an applicant who
// already has an active booking of the service is served only by an
// earlier seat, and with auto_hold its booking is moved there under the
// reschedule rules, freeing its old seat for the next watch; a newly
// released date goes to the watches before anyone. Offices in Moscow and
// Berlin, runs starting before the nights the Berlin clocks change.
//
// A failure prints the seed and the operations that led to it. Scale a run
// with -oracle.ops and -oracle.seeds (for example -oracle.ops=200000).

var (
	oracleOpsFlag   = flag.Int("oracle.ops", 2000, "operations per seed in the oracle tests")
	oracleSeedsFlag = flag.Int("oracle.seeds", 4, "seeds per oracle test")
)

// ---------------------------------------------------------------------------
// The model.

type oracleSeat struct {
	office string
	window int
	unix   int64 // the seat's instant
}

type modelService struct {
	id            string
	slots         int
	weekdays      []time.Weekday // nil: every day the office is open
	reschedulable bool
	approval      bool // requires_approval
}

type modelPolicy struct {
	horizonDays                                              int
	releaseMinute                                            int
	holdTTL, cancelCutoff, lateCancelFloor, rescheduleCutoff time.Duration
	noShowGrace                                              time.Duration
	// minNotice: a start must come later than now + minNotice.
	minNotice                 time.Duration
	maxReschedules, maxActive int
	// cancelWorkingDays, rescheduleWorkingDays: the working-day cutoffs,
	// 0 off.
	cancelWorkingDays, rescheduleWorkingDays int
}

// The cancel penalty is the same at every office of the oracle: Tick visits
// offices in no fixed order, and penalties of one instant under different
// policies would then depend on that order.
const (
	modelPenaltyCount  = 3
	modelPenaltyWindow = 720 * time.Hour
	modelPenaltyBlock  = 72 * time.Hour
)

type modelOffice struct {
	id, region  string
	zone        string
	loc         *time.Location
	stepMinutes int
	windows     int
	hours       map[time.Weekday][][2]int // [from, to) in minutes of the day
	services    []modelService
	policy      modelPolicy
	closed      map[Date]bool
	released    Date
	seq         map[Date]uint32
	seatsOf     map[Date][]time.Time // cache of seats
	seatSet     map[int64]Date       // cache of isSeat: instant → date, for every cached date
	releaseOf   map[Date]time.Time   // cache of releaseAt
}

type modelBooking struct {
	office, service, applicant string
	date                       Date
	start                      time.Time
	window, slots              int
	status                     Status
	holdExpiresUnixNano        int64
	reschedules                int
	seq                        uint32
}

type modelApplicant struct {
	active int
	// services counts active bookings by service id, whatever the office:
	// a service is its id at every office.
	services             map[string]int
	penaltiesUnixNano    []int64
	blockedUntilUnixNano int64
}

// modelWatch is a watch; the model's watches are created at strictly
// increasing instants (the generator moves the clock for each), so their
// creation index is their place in the waitlist.
type modelWatch struct {
	applicant, service string
	office, region     string // exactly one
	from, to           Date
	autoHold           bool
	active             bool
}

// oracleMatch is one watch.matched: the watch and the start offered, by
// creation index, and the booking held or moved for it (-1: told only).
type oracleMatch struct {
	Watch   int
	Start   int64 // unix seconds
	Booking int
	Moved   bool // Booking was moved there, not held
}

type oracleModel struct {
	offices  map[string]*modelOffice
	order    []string
	bookings []*modelBooking
	owner    map[oracleSeat]int
	apps     map[string]*modelApplicant
	watches  []*modelWatch
	// matches collects the current operation's watch.matched, in order.
	matches []oracleMatch
	// busy are the bookings an operation is moving: a watch of their
	// applicant skips a seat freed meanwhile, as the engine's booking
	// lock makes it (W5).
	busy map[int]bool
}

var modelDayNames = [7]string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}

func modelCivil(d Date) (int, time.Month, int) { return time.Unix(int64(d)*86400, 0).UTC().Date() }

func modelWeekday(d Date) time.Weekday { return time.Unix(int64(d)*86400, 0).UTC().Weekday() }

// today is the office-local date of t.
func (mo *modelOffice) today(t time.Time) Date {
	y, m, dd := t.In(mo.loc).Date()
	return Date(time.Date(y, m, dd, 0, 0, 0, 0, time.UTC).Unix() / 86400)
}

// minuteOf is the minute of the day t's wall clock shows.
func (mo *modelOffice) minuteOf(t time.Time) int {
	lt := t.In(mo.loc)
	return lt.Hour()*60 + lt.Minute()
}

// seats lists the seats of date in order: every minute whose clock shows
// a grid label of the date, unless the seat before it still runs then.
func (mo *modelOffice) seats(date Date) []time.Time {
	if got, ok := mo.seatsOf[date]; ok {
		return got
	}
	var out []time.Time
	step := time.Duration(mo.stepMinutes) * time.Minute
	y, m, dd := modelCivil(date)
	for t := time.Date(y, m, dd, 0, 0, 0, 0, time.UTC).Add(-16 * time.Hour); t.Before(time.Date(y, m, dd, 40, 0, 0, 0, time.UTC)); t = t.Add(time.Minute) {
		if mo.today(t) != date || mo.minuteOf(t)%mo.stepMinutes != 0 || t.In(mo.loc).Second() != 0 {
			continue
		}
		if n := len(out); n > 0 && t.Before(out[n-1].Add(step)) {
			continue
		}
		out = append(out, t.In(mo.loc))
	}
	mo.seatsOf[date] = out
	for _, t := range out {
		mo.seatSet[t.Unix()] = date
	}
	return out
}

// isSeat reports whether t is a seat of date.
func (mo *modelOffice) isSeat(date Date, t time.Time) bool {
	mo.seats(date)
	d, ok := mo.seatSet[t.Unix()]
	return ok && d == date && t.Nanosecond() == 0
}

// releaseAt is when date's daily release happens: the first minute the
// clock reads the release minute or later on that date.
func (mo *modelOffice) releaseAt(date Date) time.Time {
	if got, ok := mo.releaseOf[date]; ok {
		return got
	}
	y, m, dd := modelCivil(date)
	t := time.Date(y, m, dd, 0, 0, 0, 0, time.UTC).Add(-16 * time.Hour)
	for mo.today(t) != date || mo.minuteOf(t) < mo.policy.releaseMinute {
		t = t.Add(time.Minute)
	}
	mo.releaseOf[date] = t
	return t
}

func (mo *modelOffice) service(id string) *modelService {
	for i := range mo.services {
		if mo.services[i].id == id {
			return &mo.services[i]
		}
	}
	return nil
}

// open reports whether seat t of date is within the weekday's hours.
func (mo *modelOffice) open(date Date, t time.Time) bool {
	minute := mo.minuteOf(t)
	for _, iv := range mo.hours[modelWeekday(date)] {
		if iv[0] <= minute && minute < iv[1] {
			return true
		}
	}
	return false
}

func (mo *modelOffice) config() OfficeConfig {
	clock := func(m int) string { return fmt.Sprintf("%02d:%02d", m/60, m%60) }
	hours := map[string][]string{}
	for wd, ivs := range mo.hours {
		for _, iv := range ivs {
			hours[modelDayNames[wd]] = append(hours[modelDayNames[wd]], clock(iv[0])+"-"+clock(iv[1]))
		}
	}
	var svcs []ServiceConfig
	for _, s := range mo.services {
		sc := ServiceConfig{ID: s.id, Name: strings.ToUpper(s.id), Slots: s.slots, Reschedulable: s.reschedulable, RequiresApproval: s.approval}
		for _, wd := range s.weekdays {
			sc.Weekdays = append(sc.Weekdays, modelDayNames[wd])
		}
		svcs = append(svcs, sc)
	}
	p := mo.policy
	return OfficeConfig{
		ID: mo.id, Name: "Office " + mo.id, Region: mo.region, City: "Москва", Timezone: mo.zone,
		SlotMinutes: mo.stepMinutes, Windows: mo.windows, Hours: hours, Services: svcs,
		Policy: PolicyConfig{
			HorizonDays: p.horizonDays, ReleaseTime: clock(p.releaseMinute), HoldTTL: Duration(p.holdTTL),
			CancelCutoff: Duration(p.cancelCutoff), LateCancelFloor: Duration(p.lateCancelFloor),
			RescheduleCutoff: Duration(p.rescheduleCutoff), MaxReschedules: p.maxReschedules,
			MaxActivePerApplicant: p.maxActive, NoShowGrace: Duration(p.noShowGrace), MinNotice: Duration(p.minNotice),
			CancelCutoffWorkingDays: p.cancelWorkingDays, RescheduleCutoffWorkingDays: p.rescheduleWorkingDays,
			ReminderBefore: Duration(24 * time.Hour),
			CancelPenalty:  PenaltyConfig{Count: modelPenaltyCount, Window: Duration(modelPenaltyWindow), Block: Duration(modelPenaltyBlock)},
		},
	}
}

// oracleOffices are the offices of every oracle run:
//   - a:  15-minute grid, 2 windows, weekdays with a lunch break, the
//     default policy;
//   - a2: the same services at 1 window, a 48h cancel cutoff, one
//     reschedule, two active bookings, a 09:00 release, a 3h minimum
//     notice, cancels 2 and reschedules 3 working days ahead; its rvp
//     requires approval;
//   - f:  5-minute grid around the clock (288 steps, runs crossing the
//     63/64, 127/128 … word boundaries), 1- to 3-step services, a 20m
//     minimum notice; its two requires approval;
//   - b:  Berlin, 15-minute grid, 2 windows, open 00:00–06:00 and
//     09:00–12:00 every day, across the hour the clocks change; a 02:30
//     release, in that hour;
//   - h:  Berlin, 2-hour grid around the clock: on the nights the clocks
//     change a label inside the seat before it is no seat, and a gap
//     stops a 2-step run; a 02:00 release.
//
// a, a2 and f are in Moscow, which has not changed its clocks since 2014.
// a, a2 and b share their service ids, as f and h do: a booking of one is
// a duplicate of the same service at the others.
func oracleOffices() []*modelOffice {
	def := modelPolicy{horizonDays: 30, holdTTL: 10 * time.Minute, cancelCutoff: 24 * time.Hour,
		lateCancelFloor: 12 * time.Hour, rescheduleCutoff: 24 * time.Hour, noShowGrace: 15 * time.Minute,
		maxReschedules: 2, maxActive: 3}
	weekdays := map[time.Weekday][][2]int{}
	for wd := time.Monday; wd <= time.Friday; wd++ {
		weekdays[wd] = [][2]int{{9 * 60, 13 * 60}, {14 * 60, 18 * 60}}
	}
	allDay := map[time.Weekday][][2]int{}
	for wd := time.Sunday; wd <= time.Saturday; wd++ {
		allDay[wd] = [][2]int{{0, 1440}}
	}
	a := &modelOffice{id: "a", region: "moscow", stepMinutes: 15, windows: 2, hours: weekdays, policy: def,
		services: []modelService{{id: "patent", slots: 1, reschedulable: true}, {id: "rvp", slots: 2, weekdays: []time.Weekday{time.Monday, time.Wednesday}}}}
	p2 := def
	p2.cancelCutoff, p2.maxReschedules, p2.maxActive, p2.releaseMinute, p2.minNotice = 48*time.Hour, 1, 2, 9*60, 3*time.Hour
	p2.cancelWorkingDays, p2.rescheduleWorkingDays = 2, 3
	a2 := &modelOffice{id: "a2", region: "moscow", stepMinutes: 15, windows: 1, hours: weekdays, policy: p2,
		services: []modelService{{id: "patent", slots: 1, reschedulable: true}, {id: "rvp", slots: 2, reschedulable: true, approval: true}}}
	p3 := def
	p3.holdTTL, p3.noShowGrace, p3.minNotice = 3*time.Minute, 0, 20*time.Minute
	f := &modelOffice{id: "f", region: "spb", stepMinutes: 5, windows: 2, hours: allDay, policy: p3,
		services: []modelService{{id: "one", slots: 1, reschedulable: true}, {id: "two", slots: 2, reschedulable: true, approval: true},
			{id: "three", slots: 3, weekdays: []time.Weekday{time.Monday, time.Wednesday, time.Friday, time.Saturday}}}}
	night := map[time.Weekday][][2]int{}
	for wd := time.Sunday; wd <= time.Saturday; wd++ {
		night[wd] = [][2]int{{0, 6 * 60}, {9 * 60, 12 * 60}}
	}
	p4 := def
	p4.releaseMinute = 2*60 + 30
	b := &modelOffice{id: "b", region: "berlin", zone: "Europe/Berlin", stepMinutes: 15, windows: 2, hours: night, policy: p4,
		services: []modelService{{id: "patent", slots: 1, reschedulable: true}, {id: "rvp", slots: 2, reschedulable: true}}}
	p5 := def
	p5.releaseMinute = 2 * 60
	h := &modelOffice{id: "h", region: "berlin", zone: "Europe/Berlin", stepMinutes: 120, windows: 1, hours: allDay, policy: p5,
		services: []modelService{{id: "one", slots: 1, reschedulable: true}, {id: "two", slots: 2, reschedulable: true}}}
	for _, mo := range []*modelOffice{a, a2, f} {
		mo.zone = "Europe/Moscow"
	}
	return []*modelOffice{a, a2, f, b, h}
}

// hotSteps are the places among a date's seats the generator aims at, so
// that requests collide: word boundaries, lunch, the hour the clocks
// change.
func (mo *modelOffice) hotSteps() []int {
	switch {
	case mo.stepMinutes == 5:
		return []int{62, 63, 64, 127, 128, 287}
	case mo.stepMinutes == 120:
		return []int{0, 1, 2}
	case mo.zone == "Europe/Berlin":
		return []int{6, 7, 8, 9, 10, 11, 12, 13}
	}
	return []int{36, 37, 52, 56, 71}
}

func newOracleModel(now time.Time) *oracleModel {
	m := &oracleModel{offices: map[string]*modelOffice{}, owner: map[oracleSeat]int{}, apps: map[string]*modelApplicant{}, busy: map[int]bool{}}
	for _, mo := range oracleOffices() {
		mo.closed, mo.seq = map[Date]bool{}, map[Date]uint32{}
		mo.loc, mo.seatsOf, mo.seatSet, mo.releaseOf = testtime.MustLoc(mo.zone), map[Date][]time.Time{}, map[int64]Date{}, map[Date]time.Time{}
		mo.released = m.autoReleased(mo, now)
		m.offices[mo.id] = mo
		m.order = append(m.order, mo.id)
	}
	return m
}

func (m *oracleModel) autoReleased(mo *modelOffice, now time.Time) Date {
	today := mo.today(now)
	through := today + Date(mo.policy.horizonDays)
	if now.Before(mo.releaseAt(today)) {
		through--
	}
	return through
}

func (m *oracleModel) app(id string) *modelApplicant {
	a := m.apps[id]
	if a == nil {
		a = &modelApplicant{services: map[string]int{}}
		m.apps[id] = a
	}
	return a
}

func (m *oracleModel) seatFree(mo *modelOffice, date Date, w int, t time.Time) bool {
	if mo.closed[date] || !mo.isSeat(date, t) || !mo.open(date, t) {
		return false
	}
	_, taken := m.owner[oracleSeat{mo.id, w, t.Unix()}]
	return !taken
}

// runSeats returns the seats of a run of slots from t: a grid step apart,
// each a seat of date.
func (mo *modelOffice) runSeats(date Date, t time.Time, slots int) ([]time.Time, bool) {
	var out []time.Time
	for i := range slots {
		st := t.Add(time.Duration(i*mo.stepMinutes) * time.Minute)
		if !mo.isSeat(date, st) {
			return nil, false
		}
		out = append(out, st)
	}
	return out, true
}

func (m *oracleModel) runFree(mo *modelOffice, date Date, w int, t time.Time, slots int) bool {
	run, ok := mo.runSeats(date, t, slots)
	if !ok {
		return false
	}
	for _, st := range run {
		if !m.seatFree(mo, date, w, st) {
			return false
		}
	}
	return true
}

func (m *oracleModel) bookableDate(mo *modelOffice, svc *modelService, date Date, now time.Time) error {
	offered := svc.weekdays == nil || slices.Contains(svc.weekdays, modelWeekday(date))
	if date < mo.today(now) || date > mo.released || mo.closed[date] || !offered || len(mo.hours[modelWeekday(date)]) == 0 {
		return ErrNotReleased
	}
	return nil
}

// runOpen reports whether a run of slots from t is a run of seats of date
// within opening hours.
func (mo *modelOffice) runOpen(date Date, t time.Time, slots int) bool {
	run, ok := mo.runSeats(date, t, slots)
	if !ok {
		return false
	}
	for _, st := range run {
		if !mo.open(date, st) {
			return false
		}
	}
	return true
}

func (m *oracleModel) bookable(mo *modelOffice, svc *modelService, date Date, t time.Time, now time.Time) error {
	if err := m.bookableDate(mo, svc, date, now); err != nil {
		return err
	}
	if !mo.runOpen(date, t, svc.slots) || !t.After(mo.noticeEnd(now)) {
		return ErrNotReleased
	}
	return nil
}

// gridDate refuses a start off the grid (a wall-clock label, whole
// minutes) and returns its office-local date.
func (m *oracleModel) gridDate(mo *modelOffice, t time.Time) (Date, error) {
	lt := t.In(mo.loc)
	if lt.Second() != 0 || lt.Nanosecond() != 0 || mo.minuteOf(t)%mo.stepMinutes != 0 {
		return 0, ErrValidation
	}
	return mo.today(t), nil
}

// workingDaysAhead reports whether n days on which mo is open (by its
// hours) and not closed lie from now's date up to the day before start's.
func (mo *modelOffice) workingDaysAhead(now, start time.Time, n int) bool {
	count := 0
	for d := mo.today(now); d < mo.today(start); d++ {
		if len(mo.hours[modelWeekday(d)]) > 0 && !mo.closed[d] {
			count++
		}
	}
	return count >= n
}

// noticeEnd is the instant a start booked at now must come after.
func (mo *modelOffice) noticeEnd(now time.Time) time.Time { return now.Add(mo.policy.minNotice) }

func (m *oracleModel) reserve(app string, mo *modelOffice, svc string, now time.Time) error {
	a := m.app(app)
	key := svc
	switch {
	case a.blockedUntilUnixNano > now.UnixNano():
		return ErrApplicantBlocked
	case a.services[key] > 0:
		return ErrDuplicateBooking
	case a.active >= mo.policy.maxActive:
		return ErrLimitReached
	}
	a.active++
	a.services[key]++
	return nil
}

func (m *oracleModel) unreserve(app, svc string) {
	a := m.app(app)
	key := svc
	a.active--
	if a.services[key]--; a.services[key] == 0 {
		delete(a.services, key)
	}
}

// penalise: the count of penalised events within the window reaching the
// limit blocks the applicant for the block time and starts the count over.
func (m *oracleModel) penalise(app string, now time.Time) {
	a := m.app(app)
	var keep []int64
	for _, x := range a.penaltiesUnixNano {
		if x > now.UnixNano()-int64(modelPenaltyWindow) {
			keep = append(keep, x)
		}
	}
	a.penaltiesUnixNano = append(keep, now.UnixNano())
	if len(a.penaltiesUnixNano) >= modelPenaltyCount {
		a.blockedUntilUnixNano = max(a.blockedUntilUnixNano, now.UnixNano()+int64(modelPenaltyBlock))
		a.penaltiesUnixNano = nil
	}
}

func (m *oracleModel) take(k int, b *modelBooking) {
	mo := m.offices[b.office]
	run, _ := mo.runSeats(b.date, b.start, b.slots)
	for _, st := range run {
		m.owner[oracleSeat{b.office, b.window, st.Unix()}] = k
	}
}

func (m *oracleModel) free(b *modelBooking) {
	mo := m.offices[b.office]
	run, _ := mo.runSeats(b.date, b.start, b.slots)
	for _, st := range run {
		delete(m.owner, oracleSeat{b.office, b.window, st.Unix()})
	}
}

// leave ends an active booking: its seat is offered to the watches, then
// the applicant's count goes back.
func (m *oracleModel) leave(now time.Time, b *modelBooking, to Status) {
	b.status = to
	b.holdExpiresUnixNano = 0
	m.free(b)
	m.offer(now, m.offices[b.office], b.date, b.window, b.start, b.slots)
	m.unreserve(b.applicant, b.service)
}

// confirmedStatus is the status a confirm of svc enters.
func (svc *modelService) confirmedStatus() Status {
	if svc.approval {
		return StatusAwaitingApproval
	}
	return StatusConfirmed
}

// ---------------------------------------------------------------------------
// The waitlist.

// watchMatches reports whether watch k wants a run of svc at mo from t on
// date, slots seats long being on offer.
func (m *oracleModel) watchMatches(now time.Time, k int, mo *modelOffice, date Date, t time.Time, slots int) bool {
	wt := m.watches[k]
	if !wt.active || (wt.office != mo.id && (wt.office != "" || wt.region != mo.region)) || date < wt.from || date > wt.to {
		return false
	}
	svc := mo.service(wt.service)
	return svc != nil && svc.slots <= slots && m.bookable(mo, svc, date, t, now) == nil
}

// activeOf is the applicant's active booking of service, -1 if none.
func (m *oracleModel) activeOf(applicant, service string) int {
	for k := len(m.bookings) - 1; k >= 0; k-- {
		if b := m.bookings[k]; b.applicant == applicant && b.service == service && b.status.Active() {
			return k
		}
	}
	return -1
}

// offer gives the run of slots seats from t at (mo, date, window), which
// no booking owns any more, to the oldest watch it serves: a hold for it,
// a move of its applicant's booking to an earlier seat, or a notice.
// Watches refused (limits, a move the rules refuse, a later seat) stay
// active and the next is tried, the run kept as long as the refused
// watch's service needed. On a closed date the seat goes to no one.
func (m *oracleModel) offer(now time.Time, mo *modelOffice, date Date, window int, t time.Time, slots int) {
	if mo.closed[date] {
		return
	}
	skip := map[int]bool{}
	for {
		k := -1
		for i := range m.watches {
			if !skip[i] && m.watchMatches(now, i, mo, date, t, slots) {
				k = i
				break
			}
		}
		if k < 0 {
			return
		}
		wt := m.watches[k]
		svc := mo.service(wt.service)
		if held := m.activeOf(wt.applicant, wt.service); held >= 0 {
			if m.offerMove(now, mo, svc, k, held, date, window, t, slots) {
				return
			}
			skip[k] = true
			continue
		}
		if !wt.autoHold {
			m.notify(k, t, -1)
			return
		}
		slots = svc.slots
		if m.handOver(now, mo, svc, k, date, window, t) {
			return
		}
		skip[k] = true
	}
}

func (m *oracleModel) notify(k int, t time.Time, booking int) {
	m.watches[k].active = false
	m.matches = append(m.matches, oracleMatch{Watch: k, Start: t.Unix(), Booking: booking})
}

func (m *oracleModel) notifyMoved(k int, t time.Time, booking int) {
	m.notify(k, t, booking)
	m.matches[len(m.matches)-1].Moved = true
}

// handOver holds the run for watch k's applicant, unless its limits
// refuse.
func (m *oracleModel) handOver(now time.Time, mo *modelOffice, svc *modelService, k int, date Date, window int, t time.Time) bool {
	wt := m.watches[k]
	if m.reserve(wt.applicant, mo, svc.id, now) != nil {
		return false
	}
	mo.seq[date]++
	b := &modelBooking{office: mo.id, service: svc.id, applicant: wt.applicant, date: date, window: window, start: t,
		slots: svc.slots, status: StatusHeld, holdExpiresUnixNano: now.Add(mo.policy.holdTTL).UnixNano(), seq: mo.seq[date]}
	m.bookings = append(m.bookings, b)
	m.take(len(m.bookings)-1, b)
	m.notify(k, t, len(m.bookings)-1)
	return true
}

// offerMove serves watch k, whose applicant holds booking held of its
// service, with the run if it starts earlier than the booking: told of
// it, or with auto_hold moved there under the reschedule rules (the old
// seat then offered on). It reports whether the watch was served.
func (m *oracleModel) offerMove(now time.Time, mo *modelOffice, svc *modelService, k, held int, date Date, window int, t time.Time, slots int) bool {
	wt, b := m.watches[k], m.bookings[held]
	if m.busy[held] || !t.Before(b.start) {
		return false
	}
	if !wt.autoHold {
		m.notify(k, t, -1)
		return true
	}
	oo := m.offices[b.office]
	if b.status != StatusConfirmed || !oo.service(b.service).reschedulable || b.reschedules >= oo.policy.maxReschedules ||
		b.start.Sub(now) < oo.policy.rescheduleCutoff || !oo.workingDaysAhead(now, b.start, oo.policy.rescheduleWorkingDays) {
		return false
	}
	old := *b
	m.free(b)
	mo.seq[date]++
	b.office, b.date, b.start, b.slots, b.window, b.seq = mo.id, date, t, svc.slots, window, mo.seq[date]
	b.reschedules++
	m.take(held, b)
	m.notifyMoved(k, t, held)
	m.busy[held] = true
	m.offer(now, oo, old.date, old.window, old.start, old.slots)
	delete(m.busy, held)
	return true
}

// offerReleased offers the newly released dates [from, through] of mo to
// the watches, oldest first: each watch its first free start there.
func (m *oracleModel) offerReleased(now time.Time, mo *modelOffice, from, through Date) {
	n := len(m.watches)
	for k := 0; k < n; k++ {
		wt := m.watches[k]
		svc := mo.service(wt.service)
		lo, hi := max(from, wt.from), min(through, wt.to)
		if !wt.active || svc == nil || lo > hi || (wt.office != mo.id && (wt.office != "" || wt.region != mo.region)) {
			continue
		}
		y, mm, dd := modelCivil(lo)
		date, t, window := m.earliest(mo, svc, time.Date(y, mm, dd, 0, 0, 0, 0, mo.loc), now)
		if window < 0 || date > hi {
			continue
		}
		held := m.activeOf(wt.applicant, wt.service)
		switch {
		case held >= 0:
			m.offerMove(now, mo, svc, k, held, date, window, t, svc.slots)
		case !wt.autoHold:
			m.notify(k, t, -1)
		default:
			m.handOver(now, mo, svc, k, date, window, t)
		}
	}
}

// release moves mo's released date to through and offers the new dates.
func (m *oracleModel) release(now time.Time, mo *modelOffice, through Date) {
	if through <= mo.released {
		return
	}
	from := mo.released + 1
	mo.released = through
	m.offerReleased(now, mo, from, through)
}

func (m *oracleModel) watch(now time.Time, op oracleOp) oracleResult {
	switch {
	case op.through < op.date:
		return errResult(ErrValidation)
	case op.through-op.date > watchRangeDaysMax:
		return errResult(ErrValidation)
	}
	offered := false
	for _, id := range slices.Sorted(maps.Keys(m.offices)) {
		mo := m.offices[id]
		if (op.office == id || (op.office == "" && mo.region == op.region)) && mo.service(op.service) != nil {
			offered = true
			if op.through < mo.today(now) {
				return errResult(ErrValidation)
			}
		}
	}
	if op.office != "" && m.offices[op.office] == nil {
		return errResult(ErrOfficeNotFound)
	}
	if !offered {
		return errResult(ErrServiceNotFound)
	}
	n := 0
	for _, wt := range m.watches {
		if wt.active && wt.applicant == op.applicant {
			n++
		}
	}
	if n >= watchesPerApplicantMax {
		return errResult(ErrLimitReached)
	}
	m.watches = append(m.watches, &modelWatch{applicant: op.applicant, service: op.service, office: op.office, region: op.region,
		from: op.date, to: op.through, autoHold: op.confirm, active: true})
	return oracleResult{Watch: len(m.watches)}
}

func (m *oracleModel) unwatch(op oracleOp) oracleResult {
	if op.k < 0 || op.k >= len(m.watches) || !m.watches[op.k].active || m.watches[op.k].applicant != op.applicant {
		return errResult(ErrWatchNotFound)
	}
	m.watches[op.k].active = false
	return oracleResult{Watch: op.k + 1}
}

func (m *oracleModel) hold(now time.Time, op oracleOp) oracleResult {
	mo := m.offices[op.office]
	if mo == nil {
		return errResult(ErrOfficeNotFound)
	}
	svc := mo.service(op.service)
	if svc == nil {
		return errResult(ErrServiceNotFound)
	}
	var date Date
	start := op.start
	if !op.start.IsZero() {
		var err error
		if date, err = m.gridDate(mo, op.start); err != nil {
			return errResult(err)
		}
		if err := m.bookable(mo, svc, date, start, now); err != nil {
			return errResult(err)
		}
	}
	if err := m.reserve(op.applicant, mo, svc.id, now); err != nil {
		return errResult(err)
	}
	w := -1
	if !op.start.IsZero() {
		for x := 0; x < mo.windows && w < 0; x++ {
			if m.runFree(mo, date, x, start, svc.slots) {
				w = x
			}
		}
	} else {
		date, start, w = m.earliest(mo, svc, op.after, now)
	}
	if w < 0 {
		m.unreserve(op.applicant, svc.id)
		return errResult(ErrSlotTaken)
	}
	mo.seq[date]++
	b := &modelBooking{office: mo.id, service: svc.id, applicant: op.applicant, date: date, window: w, start: start,
		slots: svc.slots, status: StatusHeld, holdExpiresUnixNano: now.Add(mo.policy.holdTTL).UnixNano(), seq: mo.seq[date]}
	if op.confirm {
		b.status, b.holdExpiresUnixNano = svc.confirmedStatus(), 0
	}
	m.bookings = append(m.bookings, b)
	m.take(len(m.bookings)-1, b)
	return m.bookingResultOf(b)
}

// earliest is the first (date, start) at or after from and after now with
// a free run, at its lowest free window.
func (m *oracleModel) earliest(mo *modelOffice, svc *modelService, from, now time.Time) (Date, time.Time, int) {
	notice := mo.noticeEnd(now)
	if from.Before(notice) {
		from = notice
	}
	for date := mo.today(from); date <= mo.released; date++ {
		if m.bookableDate(mo, svc, date, now) != nil {
			continue
		}
		for _, st := range mo.seats(date) {
			if st.Before(from) || !st.After(notice) {
				continue
			}
			for w := 0; w < mo.windows; w++ {
				if m.runFree(mo, date, w, st, svc.slots) {
					return date, st, w
				}
			}
		}
	}
	return 0, time.Time{}, -1
}

func (m *oracleModel) booking(k int, applicant string) (*modelBooking, error) {
	if k < 0 || k >= len(m.bookings) || (applicant != "" && m.bookings[k].applicant != applicant) {
		return nil, ErrBookingNotFound
	}
	return m.bookings[k], nil
}

func (m *oracleModel) transition(now time.Time, op oracleOp) oracleResult {
	b, err := m.booking(op.k, op.applicant)
	if err != nil {
		return errResult(err)
	}
	mo := m.offices[b.office]
	start := b.start
	switch op.kind {
	case opConfirm:
		if b.status != StatusHeld || now.UnixNano() >= b.holdExpiresUnixNano {
			return errResult(ErrInvalidTransition)
		}
		b.status, b.holdExpiresUnixNano = mo.service(b.service).confirmedStatus(), 0
	case opApproveBooking:
		if b.status != StatusAwaitingApproval || !now.Before(start.Add(mo.policy.noShowGrace)) {
			return errResult(ErrInvalidTransition)
		}
		b.status = StatusConfirmed
	case opRejectBooking:
		if b.status != StatusAwaitingApproval {
			return errResult(ErrInvalidTransition)
		}
		m.leave(now, b, StatusRejected)
	case opCancel:
		switch b.status {
		case StatusHeld, StatusAwaitingApproval:
			m.leave(now, b, StatusCancelled)
		case StatusConfirmed:
			switch left := start.Sub(now); {
			case left >= mo.policy.cancelCutoff && mo.workingDaysAhead(now, start, mo.policy.cancelWorkingDays):
				m.leave(now, b, StatusCancelled)
				m.penalise(b.applicant, now)
			case left >= mo.policy.lateCancelFloor:
				b.status = StatusCancelRequested
			default:
				return errResult(ErrTooLateToCancel)
			}
		default:
			return errResult(ErrInvalidTransition)
		}
	case opApprove:
		if b.status != StatusCancelRequested {
			return errResult(ErrInvalidTransition)
		}
		m.leave(now, b, StatusCancelled)
		m.penalise(b.applicant, now)
	case opReject:
		if b.status != StatusCancelRequested {
			return errResult(ErrInvalidTransition)
		}
		b.status = StatusConfirmed
	case opForceCancel:
		if !b.status.Active() || b.status == StatusCheckedIn {
			return errResult(ErrInvalidTransition)
		}
		m.leave(now, b, StatusCancelled)
	case opCheckIn:
		if b.status != StatusConfirmed || mo.today(now) != b.date {
			return errResult(ErrInvalidTransition)
		}
		b.status = StatusCheckedIn
	case opComplete:
		if b.status != StatusCheckedIn {
			return errResult(ErrInvalidTransition)
		}
		m.leave(now, b, StatusCompleted)
	case opNoShow:
		if b.status != StatusConfirmed || now.Before(start) {
			return errResult(ErrInvalidTransition)
		}
		m.leave(now, b, StatusNoShow)
		m.penalise(b.applicant, now)
	}
	return m.bookingResultOf(b)
}

func (m *oracleModel) reschedule(now time.Time, op oracleOp) oracleResult {
	b, err := m.booking(op.k, op.applicant)
	if err != nil {
		return errResult(err)
	}
	oo := m.offices[b.office]
	no := oo
	if op.office != "" && op.office != b.office {
		if no = m.offices[op.office]; no == nil {
			return errResult(ErrOfficeNotFound)
		}
	}
	switch {
	case b.status != StatusConfirmed:
		return errResult(ErrInvalidTransition)
	case !oo.service(b.service).reschedulable:
		return errResult(ErrNotReschedulable)
	case b.reschedules >= oo.policy.maxReschedules:
		return errResult(ErrRescheduleLimit)
	case b.start.Sub(now) < oo.policy.rescheduleCutoff || !oo.workingDaysAhead(now, b.start, oo.policy.rescheduleWorkingDays):
		return errResult(ErrTooLateToReschedule)
	}
	svc := no.service(b.service)
	if svc == nil {
		return errResult(ErrServiceNotFound)
	}
	date, err := m.gridDate(no, op.start)
	if err != nil {
		return errResult(err)
	}
	if no == oo && op.start.Equal(b.start) {
		return errResult(ErrInvalidTransition)
	}
	if err := m.bookable(no, svc, date, op.start, now); err != nil {
		return errResult(err)
	}
	w := -1
	for x := 0; x < no.windows && w < 0; x++ {
		if m.runFree(no, date, x, op.start, svc.slots) { // the booking's own seat counts as taken
			w = x
		}
	}
	if w < 0 {
		return errResult(ErrSlotTaken)
	}
	old := *b
	m.free(b) // the applicant's counts stay: the same service, wherever
	no.seq[date]++
	b.office, b.date, b.start, b.slots, b.window, b.seq = no.id, date, op.start, svc.slots, w, no.seq[date]
	b.reschedules++
	m.take(op.k, b)
	m.busy[op.k] = true
	m.offer(now, oo, old.date, old.window, old.start, old.slots)
	delete(m.busy, op.k)
	return m.bookingResultOf(b)
}

// tick releases the offices' dates due, by office id, then ends every
// booking whose time came in the order it came (bookings of one instant
// by number): expired holds, no-shows, requests nobody approved.
func (m *oracleModel) tick(now time.Time) oracleResult {
	for _, id := range slices.Sorted(maps.Keys(m.offices)) {
		mo := m.offices[id]
		m.release(now, mo, m.autoReleased(mo, now))
	}
	type due struct {
		at int64
		k  int
	}
	var dues []due
	for k, b := range m.bookings {
		grace := b.start.Add(m.offices[b.office].policy.noShowGrace)
		switch {
		case b.status == StatusHeld && b.holdExpiresUnixNano <= now.UnixNano():
			dues = append(dues, due{b.holdExpiresUnixNano, k})
		case (b.status == StatusConfirmed || b.status == StatusAwaitingApproval) && !now.Before(grace):
			dues = append(dues, due{grace.UnixNano(), k})
		}
	}
	slices.SortFunc(dues, func(x, y due) int {
		a, b := m.bookings[x.k], m.bookings[y.k]
		return cmp.Or(cmp.Compare(x.at, y.at), strings.Compare(a.office, b.office), cmp.Compare(a.date, b.date), cmp.Compare(a.seq, b.seq))
	})
	for _, d := range dues {
		switch b := m.bookings[d.k]; b.status {
		case StatusHeld:
			m.leave(now, b, StatusExpired)
		case StatusAwaitingApproval:
			m.leave(now, b, StatusExpired)
		case StatusConfirmed:
			m.leave(now, b, StatusNoShow)
			m.penalise(b.applicant, now)
		}
	}
	return oracleResult{}
}

func (m *oracleModel) closeDate(now time.Time, op oracleOp) oracleResult {
	mo := m.offices[op.office]
	if mo.closed[op.date] {
		return oracleResult{Affected: []int{}}
	}
	res := oracleResult{Affected: []int{}}
	for k, b := range m.bookings {
		if b.office == mo.id && b.date == op.date && b.status.Active() && b.status != StatusCheckedIn {
			// The closed date's seats go to no one: no watch is offered them.
			b.status, b.holdExpiresUnixNano = StatusCancelled, 0
			m.free(b)
			m.unreserve(b.applicant, b.service)
			res.Affected = append(res.Affected, k)
		}
	}
	mo.closed[op.date] = true
	return res
}

func (m *oracleModel) days(now time.Time, op oracleOp) oracleResult {
	mo := m.offices[op.office]
	svc := mo.service(op.service)
	if svc == nil {
		return errResult(ErrServiceNotFound)
	}
	res := oracleResult{Days: []DayFree{}}
	for date := max(op.date, mo.today(now)); date <= min(op.through, mo.released); date++ {
		if m.bookableDate(mo, svc, date, now) != nil {
			continue
		}
		n := 0
		for _, st := range mo.seats(date) {
			if !st.After(mo.noticeEnd(now)) {
				continue
			}
			for w := 0; w < mo.windows; w++ {
				if m.runFree(mo, date, w, st, svc.slots) {
					n++
				}
			}
		}
		res.Days = append(res.Days, DayFree{Date: date, Free: n})
	}
	return res
}

func (m *oracleModel) slots(now time.Time, op oracleOp) oracleResult {
	mo := m.offices[op.office]
	svc := mo.service(op.service)
	if svc == nil {
		return errResult(ErrServiceNotFound)
	}
	if err := m.bookableDate(mo, svc, op.date, now); err != nil {
		return errResult(err)
	}
	res := oracleResult{Slots: [][2]int64{}}
	for _, st := range mo.seats(op.date) {
		if !st.After(mo.noticeEnd(now)) || !mo.runOpen(op.date, st, svc.slots) {
			continue
		}
		n := 0
		for w := 0; w < mo.windows; w++ {
			if m.runFree(mo, op.date, w, st, svc.slots) {
				n++
			}
		}
		res.Slots = append(res.Slots, [2]int64{st.Unix(), int64(n)})
	}
	return res
}

func (m *oracleModel) apply(now time.Time, op oracleOp) oracleResult {
	m.matches = nil
	res := m.applyOp(now, op)
	res.Matches = m.matches
	return res
}

func (m *oracleModel) applyOp(now time.Time, op oracleOp) oracleResult {
	switch op.kind {
	case opHold:
		return m.hold(now, op)
	case opReschedule:
		return m.reschedule(now, op)
	case opTick:
		return m.tick(now)
	case opRelease:
		mo := m.offices[op.office]
		if op.through > mo.today(now)+horizonDaysMax {
			return errResult(ErrValidation)
		}
		m.release(now, mo, op.through)
		return oracleResult{Date: mo.released}
	case opClose:
		return m.closeDate(now, op)
	case opDays:
		return m.days(now, op)
	case opSlots:
		return m.slots(now, op)
	case opWatch:
		return m.watch(now, op)
	case opUnwatch:
		return m.unwatch(op)
	}
	return m.transition(now, op)
}

// ---------------------------------------------------------------------------
// Operations, results and the engine side.

type oracleOpKind int

const (
	opHold oracleOpKind = iota
	opConfirm
	opCancel
	opApprove
	opReject
	opForceCancel
	opCheckIn
	opComplete
	opNoShow
	opReschedule
	opTick
	opRelease
	opClose
	opDays
	opSlots
	opApproveBooking
	opRejectBooking
	opWatch
	opUnwatch
)

var oracleOpNames = [...]string{"hold", "confirm", "cancel", "approve-cancel", "reject-cancel", "force-cancel",
	"check-in", "complete", "no-show", "reschedule", "tick", "release", "close", "days", "slots",
	"approve", "reject", "watch", "unwatch"}

type oracleOp struct {
	kind            oracleOpKind
	k               int // booking (watch for unwatch), by creation index; -1: an unknown id
	applicant       string
	office, service string
	region          string // a watch's
	start, after    time.Time
	confirm         bool // a hold's confirm, a watch's auto_hold
	date, through   Date // a watch's from and to too
}

func (op oracleOp) String() string {
	s := oracleOpNames[op.kind]
	switch {
	case op.kind == opUnwatch:
		s += fmt.Sprintf(" watch #%d", op.k)
	case op.kind != opHold && op.kind != opWatch && (op.kind <= opReschedule || op.kind == opApproveBooking || op.kind == opRejectBooking):
		s += fmt.Sprintf(" #%d", op.k)
	}
	if op.region != "" {
		s += " in " + op.region
	}
	if op.applicant != "" {
		s += " by " + op.applicant
	}
	if op.office != "" {
		s += " at " + op.office
	}
	if op.service != "" {
		s += " " + op.service
	}
	if !op.start.IsZero() {
		s += " start " + op.start.Format(time.RFC3339)
	}
	if !op.after.IsZero() {
		s += " after " + op.after.Format(time.RFC3339)
	}
	if op.confirm {
		s += " +confirm"
	}
	if op.date != 0 {
		s += " date " + op.date.String()
	}
	if op.through != 0 {
		s += " through " + op.through.String()
	}
	return s
}

// oracleBooking is what both sides report about a booking: the seat as
// its instants, start and end, not as a step.
type oracleBooking struct {
	Status        Status
	Office        string
	Date          Date
	Window, Slots int
	Start, End    int64 // unix seconds
	Seq           uint32
	Reschedules   int
}

type oracleResult struct {
	Err      string // the sentinel's text; "" on success
	Booking  oracleBooking
	Date     Date
	Affected []int
	Days     []DayFree
	Slots    [][2]int64 // (unix start, free windows)
	Watch    int        // a watch created or deleted: its creation index + 1
	// Matches are the operation's watch.matched, in commit order; nil if
	// none.
	Matches []oracleMatch
}

func errResult(err error) oracleResult { return oracleResult{Err: err.Error()} }

func (m *oracleModel) bookingResultOf(b *modelBooking) oracleResult {
	end := b.start.Add(time.Duration(b.slots*m.offices[b.office].stepMinutes) * time.Minute)
	return oracleResult{Booking: oracleBooking{Status: b.status, Office: b.office, Date: b.date, Window: b.window,
		Start: b.start.Unix(), End: end.Unix(), Slots: b.slots, Seq: b.seq, Reschedules: b.reschedules}}
}

func bookingView(v *Booking) oracleBooking {
	return oracleBooking{Status: v.Status, Office: v.Office, Date: v.Date, Window: int(v.Window), Start: v.Start.Unix(),
		End: v.End.Unix(), Slots: int(v.Slots), Seq: v.Seq, Reschedules: int(v.Reschedules)}
}

var oracleSentinels = []error{ErrValidation, ErrOfficeNotFound, ErrServiceNotFound, ErrBookingNotFound, ErrWatchNotFound,
	ErrSlotTaken, ErrInvalidTransition, ErrDuplicateBooking, ErrNotReleased, ErrTooLateToCancel,
	ErrTooLateToReschedule, ErrNotReschedulable, ErrRescheduleLimit, ErrLimitReached, ErrApplicantBlocked,
	ErrLayoutInUse, ErrOverloaded, ErrDegraded}

// sentinelOf names the sentinel err wraps.
func sentinelOf(err error) string {
	if err == nil {
		return ""
	}
	for _, s := range oracleSentinels {
		if errors.Is(err, s) {
			return s.Error()
		}
	}
	return "no sentinel: " + err.Error()
}

// oracleEngine drives an Engine with oracle operations.
type oracleEngine struct {
	e    *Engine
	j    *MemJournal
	ids  []ID // bookings by creation index
	byID map[ID]int
	// watchIDs are the watches by creation index.
	watchIDs  []ID
	watchByID map[ID]int
	// seen is how many of j's changes scan has read.
	seen int
}

func newOracleEngine(t testing.TB, m *oracleModel, now time.Time) *oracleEngine {
	t.Helper()
	x := &oracleEngine{j: &MemJournal{}, byID: map[ID]int{}, watchByID: map[ID]int{}}
	var err error
	if x.e, err = New(Config{Journal: x.j}); err != nil {
		t.Fatal(err)
	}
	for _, id := range m.order {
		if _, err := x.e.PutOffice(now, m.offices[id].config(), Meta{Actor: "admin"}); err != nil {
			t.Fatalf("PutOffice %s: %v", id, err)
		}
	}
	return x
}

func (x *oracleEngine) id(k int) ID {
	if k < 0 || k >= len(x.ids) {
		return ID{}
	}
	return x.ids[k]
}

// scan reads the changes committed since the last scan: every booking not
// seen before gets the next creation index (a hold's, or one a watch
// held), and every watch.matched becomes a match, in commit order.
func (x *oracleEngine) scan() []oracleMatch {
	x.j.mu.Lock()
	changes := x.j.changes[x.seen:]
	x.seen = len(x.j.changes)
	x.j.mu.Unlock()
	var out []oracleMatch
	for _, c := range changes {
		for _, b := range c.Bookings {
			if _, ok := x.byID[b.ID]; !ok {
				x.byID[b.ID] = len(x.ids)
				x.ids = append(x.ids, b.ID)
			}
		}
		for _, ev := range c.Events {
			if ev.Type != EventWatchMatched {
				continue
			}
			m := oracleMatch{Watch: -1, Start: ev.StartUnixNano / int64(time.Second), Booking: -1}
			if k, ok := x.watchByID[ev.Watch.ID]; ok {
				m.Watch = k
			}
			if ev.Booking != nil {
				m.Booking, m.Moved = x.byID[ev.Booking.ID], ev.Booking.Status != StatusHeld
			}
			out = append(out, m)
		}
	}
	return out
}

func (x *oracleEngine) booked(b Booking, err error) oracleResult {
	if err != nil {
		return oracleResult{Err: sentinelOf(err)}
	}
	return oracleResult{Booking: bookingView(&b)}
}

func (x *oracleEngine) apply(now time.Time, op oracleOp) oracleResult {
	res := x.applyOp(now, op)
	res.Matches = x.scan()
	return res
}

func (x *oracleEngine) applyOp(now time.Time, op oracleOp) oracleResult {
	meta := Meta{Actor: "oracle"}
	id := x.id(op.k)
	switch op.kind {
	case opHold:
		b, err := x.e.Hold(now, HoldRequest{Office: op.office, Service: op.service, Applicant: op.applicant,
			Start: op.start, EarliestAfter: op.after, Confirm: op.confirm}, meta)
		return x.booked(b, err)
	case opApproveBooking:
		return x.booked(x.e.Approve(now, id, meta))
	case opRejectBooking:
		return x.booked(x.e.Reject(now, id, Meta{Actor: "oracle", Reason: "not eligible"}))
	case opWatch:
		w, err := x.e.Watch(now, WatchRequest{Applicant: op.applicant, Service: op.service, Office: op.office, Region: op.region,
			From: op.date, To: op.through, AutoHold: op.confirm}, meta)
		if err != nil {
			return oracleResult{Err: sentinelOf(err)}
		}
		x.watchByID[w.ID] = len(x.watchIDs)
		x.watchIDs = append(x.watchIDs, w.ID)
		return oracleResult{Watch: len(x.watchIDs)}
	case opUnwatch:
		var wid ID
		if op.k >= 0 && op.k < len(x.watchIDs) {
			wid = x.watchIDs[op.k]
		}
		if err := x.e.Unwatch(now, wid, op.applicant, meta); err != nil {
			return oracleResult{Err: sentinelOf(err)}
		}
		return oracleResult{Watch: op.k + 1}
	case opConfirm:
		return x.booked(x.e.Confirm(now, id, op.applicant, meta))
	case opCancel:
		return x.booked(x.e.Cancel(now, id, op.applicant, meta))
	case opApprove:
		return x.booked(x.e.ApproveCancel(now, id, meta))
	case opReject:
		return x.booked(x.e.RejectCancel(now, id, meta))
	case opForceCancel:
		return x.booked(x.e.ForceCancel(now, id, meta))
	case opCheckIn:
		return x.booked(x.e.CheckIn(now, id, meta))
	case opComplete:
		return x.booked(x.e.Complete(now, id, meta))
	case opNoShow:
		return x.booked(x.e.NoShow(now, id, meta))
	case opReschedule:
		return x.booked(x.e.Reschedule(now, id, RescheduleRequest{Applicant: op.applicant, Office: op.office, Start: op.start}, meta))
	case opTick:
		return oracleResult{Err: sentinelOf(x.e.Tick(now))}
	case opRelease:
		through, err := x.e.Release(now, op.office, op.through, meta)
		if err != nil {
			return oracleResult{Err: sentinelOf(err)}
		}
		return oracleResult{Date: through}
	case opClose:
		bs, err := x.e.CloseDate(now, op.office, op.date, meta)
		if err != nil {
			return oracleResult{Err: sentinelOf(err)}
		}
		res := oracleResult{Affected: []int{}}
		for _, b := range bs {
			res.Affected = append(res.Affected, x.byID[b.ID])
		}
		slices.Sort(res.Affected)
		return res
	case opDays:
		days, err := x.e.Days(now, op.office, op.service, op.date, op.through)
		if err != nil {
			return oracleResult{Err: sentinelOf(err)}
		}
		return oracleResult{Days: days}
	case opSlots:
		slots, err := x.e.Slots(now, op.office, op.date, op.service)
		if err != nil {
			return oracleResult{Err: sentinelOf(err)}
		}
		res := oracleResult{Slots: [][2]int64{}}
		for _, s := range slots {
			res.Slots = append(res.Slots, [2]int64{s.Start.Unix(), int64(s.Free)})
		}
		return res
	}
	panic("BUG: unknown oracle op")
}

// ---------------------------------------------------------------------------
// The generator: random operations aimed where they collide.

type oracleGen struct {
	r          *rand.Rand
	m          *oracleModel
	applicants []string
	// focus is the night the Berlin clocks change in this run, 0 if
	// none: half the starts asked of a Berlin office are on it.
	focus Date
}

func (g *oracleGen) pick(filter func(*modelBooking) bool) int {
	if len(g.m.bookings) == 0 || g.r.IntN(40) == 0 {
		return -1
	}
	if g.r.IntN(8) != 0 {
		var match []int
		for k, b := range g.m.bookings {
			if filter(b) {
				match = append(match, k)
			}
		}
		if len(match) > 0 {
			return match[g.r.IntN(len(match))]
		}
	}
	return g.r.IntN(len(g.m.bookings))
}

// applicantOf returns the booking's applicant, now and then another one.
func (g *oracleGen) applicantOf(k int) string {
	if k < 0 || g.r.IntN(25) == 0 {
		return g.applicants[g.r.IntN(len(g.applicants))]
	}
	return g.m.bookings[k].applicant
}

func (g *oracleGen) office() *modelOffice {
	return g.m.offices[g.m.order[g.r.IntN(len(g.m.order))]]
}

func (g *oracleGen) service(mo *modelOffice) string {
	if g.r.IntN(60) == 0 {
		return "nope"
	}
	return mo.services[g.r.IntN(len(mo.services))].id
}

// start is a start near now at a hot step, sometimes anywhere, in the
// past, beyond the release or off the grid.
//
// Now and then it writes a grid label as a client might: through
// time.Date in the office's zone (a label the clocks skip lands an hour
// later, one they repeat on either occurrence), or with the offset the
// zone has at noon (on a night the clocks change, an hour away from the
// label's other occurrence). Either is an instant, perhaps a seat.
func (g *oracleGen) start(mo *modelOffice, now time.Time) time.Time {
	date := mo.today(now) + Date(g.r.IntN(6))
	if g.focus != 0 && mo.zone == "Europe/Berlin" && g.r.IntN(2) == 0 {
		date = g.focus
	}
	switch g.r.IntN(30) {
	case 0:
		date = mo.today(now) - 1
	case 1:
		date = mo.released + Date(g.r.IntN(3))
	}
	seats := mo.seats(date)
	hot := mo.hotSteps()
	i := hot[g.r.IntN(len(hot))]
	if g.r.IntN(4) == 0 {
		i = g.r.IntN(len(seats))
	}
	t := seats[min(i, len(seats)-1)]
	if n := g.r.IntN(8); n < 2 {
		y, m, dd := modelCivil(date)
		label := mo.minuteOf(t)
		if n == 0 {
			t = time.Date(y, m, dd, 0, label, 0, 0, mo.loc)
		} else {
			_, off := time.Date(y, m, dd, 12, 0, 0, 0, mo.loc).Zone()
			t = time.Date(y, m, dd, 0, label, 0, 0, time.FixedZone("", off))
		}
	}
	if g.r.IntN(50) == 0 {
		t = t.Add(time.Minute)
	}
	return t
}

func (g *oracleGen) next(now time.Time) (op oracleOp, advance time.Duration) {
	r := g.r
	isStatus := func(s ...Status) func(*modelBooking) bool {
		return func(b *modelBooking) bool { return slices.Contains(s, b.status) }
	}
	switch n := r.IntN(100); {
	case n < 27:
		mo := g.office()
		op = oracleOp{kind: opHold, office: mo.id, service: g.service(mo), applicant: g.applicants[r.IntN(len(g.applicants))], confirm: r.IntN(3) == 0}
		if r.IntN(200) == 0 {
			op.office = "zz"
		}
		if r.IntN(3) == 0 {
			op.after = now.Add(time.Duration(r.IntN(5*24*60)) * time.Minute).Add(time.Duration(r.IntN(60)) * time.Second)
			if g.focus != 0 && mo.zone == "Europe/Berlin" && r.IntN(2) == 0 { // from before the change
				y, m, dd := modelCivil(g.focus)
				op.after = time.Date(y, m, dd, 0, r.IntN(4*60), r.IntN(2)*30, 0, mo.loc)
			}
		} else {
			op.start = g.start(mo, now)
		}
	case n < 38:
		op = oracleOp{kind: opConfirm, k: g.pick(isStatus(StatusHeld))}
		op.applicant = g.applicantOf(op.k)
	case n < 44:
		op = oracleOp{kind: opCancel, k: g.pick(isStatus(StatusHeld, StatusConfirmed, StatusAwaitingApproval))}
		op.applicant = g.applicantOf(op.k)
	case n < 46:
		op = oracleOp{kind: opApprove, k: g.pick(isStatus(StatusCancelRequested))}
	case n < 48:
		op = oracleOp{kind: opReject, k: g.pick(isStatus(StatusCancelRequested))}
	case n < 50:
		op = oracleOp{kind: opForceCancel, k: g.pick(func(b *modelBooking) bool { return b.status.Active() })}
	case n < 54:
		op = oracleOp{kind: opCheckIn, k: g.pick(func(b *modelBooking) bool {
			return b.status == StatusConfirmed && b.date == g.m.offices[b.office].today(now)
		})}
	case n < 57:
		op = oracleOp{kind: opComplete, k: g.pick(isStatus(StatusCheckedIn))}
	case n < 59:
		op = oracleOp{kind: opNoShow, k: g.pick(func(b *modelBooking) bool {
			return b.status == StatusConfirmed && !now.Before(b.start)
		})}
	case n < 61:
		op = oracleOp{kind: opApproveBooking, k: g.pick(isStatus(StatusAwaitingApproval))}
		if r.IntN(2) == 0 { // one whose deadline passed, if the Tick that expires it has not come yet
			op.k = g.pick(func(b *modelBooking) bool {
				return b.status == StatusAwaitingApproval && !now.Before(b.start.Add(g.m.offices[b.office].policy.noShowGrace))
			})
		}
	case n < 62:
		op = oracleOp{kind: opRejectBooking, k: g.pick(isStatus(StatusAwaitingApproval))}
	case n < 66:
		op, advance = g.watch(now), time.Second // watches are created at distinct instants
	case n < 67:
		op = oracleOp{kind: opUnwatch, k: -1}
		if len(g.m.watches) > 0 && r.IntN(20) != 0 {
			op.k = r.IntN(len(g.m.watches))
			for i := range 3 { // mostly an active one
				if k := r.IntN(len(g.m.watches)); g.m.watches[k].active || i == 2 {
					op.k = k
					break
				}
			}
			op.applicant = g.m.watches[op.k].applicant
		}
		if op.applicant == "" || r.IntN(25) == 0 {
			op.applicant = g.applicants[r.IntN(len(g.applicants))]
		}
	case n < 74:
		op = oracleOp{kind: opReschedule, k: g.pick(isStatus(StatusConfirmed))}
		op.applicant = g.applicantOf(op.k)
		mo := g.office()
		if op.k >= 0 && r.IntN(4) != 0 {
			mo = g.m.offices[g.m.bookings[op.k].office]
		} else {
			op.office = mo.id
		}
		op.start = g.start(mo, now)
	case n < 80:
		op = oracleOp{kind: opTick}
	case n < 81:
		mo := g.office()
		op = oracleOp{kind: opRelease, office: mo.id, through: mo.released + Date(r.IntN(5)) - 1}
		if r.IntN(10) == 0 {
			op.through = mo.today(now) + horizonDaysMax + 1
		}
	case n < 82:
		if r.IntN(3) == 0 {
			mo := g.office()
			op = oracleOp{kind: opClose, office: mo.id, date: mo.today(now) + Date(r.IntN(8))}
			break
		}
		op = oracleOp{kind: opTick}
	case n < 85:
		mo := g.office()
		op = oracleOp{kind: opDays, office: mo.id, service: g.service(mo), date: mo.today(now) - 1, through: mo.today(now) + 35}
	case n < 87:
		mo := g.office()
		op = oracleOp{kind: opSlots, office: mo.id, service: g.service(mo), date: mo.today(now) + Date(r.IntN(8))}
	default:
		// The clock moves on; no Tick, so stale holds and missed
		// no-shows linger until the next one.
		switch r.IntN(20) {
		case 0, 1:
			advance = time.Duration(r.IntN(12*60)) * time.Minute
		case 2, 3, 4, 5, 6, 7:
			advance = time.Duration(r.IntN(2*3600)) * time.Second
		default:
			advance = time.Duration(r.IntN(600)) * time.Second
		}
		op = oracleOp{kind: opTick}
		switch r.IntN(4) {
		case 0, 1:
			op.kind = opDays
			mo := g.office()
			op.office, op.service, op.date, op.through = mo.id, mo.services[0].id, mo.today(now), mo.today(now)+3
		case 2: // an approval that comes too late, before the Tick that would expire the booking
			late := func(b *modelBooking) bool {
				return b.status == StatusAwaitingApproval && !now.Add(advance).Before(b.start.Add(g.m.offices[b.office].policy.noShowGrace))
			}
			if k := g.pick(late); k >= 0 && late(g.m.bookings[k]) {
				op = oracleOp{kind: opApproveBooking, k: k}
			}
		}
	}
	return op, advance
}

// watch is a new watch: of an applicant, often one with an active
// booking (who then waits for an earlier seat), for a service of an
// office or of its region, over a few days near now or around the last
// released date (served by the next release); now and then one the
// engine refuses.
func (g *oracleGen) watch(now time.Time) oracleOp {
	r := g.r
	mo := g.office()
	op := oracleOp{kind: opWatch, applicant: g.applicants[r.IntN(len(g.applicants))], service: g.service(mo),
		confirm: r.IntN(3) != 0, date: mo.today(now) + Date(r.IntN(3))}
	if r.IntN(4) == 0 {
		op.date = mo.released - 1 + Date(r.IntN(3))
	} else if r.IntN(2) == 0 {
		if k := g.pick(func(b *modelBooking) bool { return b.status.Active() }); k >= 0 {
			b := g.m.bookings[k]
			mo = g.m.offices[b.office]
			op.applicant, op.service = b.applicant, b.service
			op.date = min(op.date, b.date)
		}
	}
	op.through = op.date + Date(r.IntN(7))
	if r.IntN(2) == 0 {
		op.office = mo.id
	} else {
		op.region = mo.region
	}
	switch r.IntN(40) {
	case 0:
		op.through = op.date - 1
	case 1:
		op.date, op.through = mo.today(now)-5, mo.today(now)-1
	case 2:
		op.office, op.region = "zz", ""
	}
	return op
}

// ---------------------------------------------------------------------------
// Running and comparing.

// oracleRun holds one seeded run: the model and one or more engines that
// must all agree with it.
type oracleRun struct {
	t       *testing.T
	seed    uint64
	now     time.Time
	gen     *oracleGen
	m       *oracleModel
	engines []*oracleEngine
	log     []string // the last operations, for the failure message
	counts  map[string]int
}

// oracleStart is where the run of seed starts, and the night the Berlin
// clocks change that it aims at: a Moscow Monday morning (none), or two
// days before a night they change, so that the run's requests, Ticks and
// releases cross it.
func oracleStart(seed uint64) (time.Time, Date) {
	switch seed % 3 {
	case 1:
		return time.Date(2027, 3, 26, 8, 0, 0, 0, berlin), springForward
	case 2:
		return time.Date(2027, 10, 29, 8, 0, 0, 0, berlin), fallBack
	}
	return t0, 0
}

func newOracleRun(t *testing.T, seed uint64) *oracleRun {
	start, focus := oracleStart(seed)
	m := newOracleModel(start)
	run := &oracleRun{t: t, seed: seed, now: start, m: m, counts: map[string]int{}}
	run.gen = &oracleGen{r: rand.New(rand.NewPCG(seed, seed^0x5eed)), m: m, focus: focus}
	for i := range 12 {
		run.gen.applicants = append(run.gen.applicants, fmt.Sprintf("p%02d", i))
	}
	run.engines = []*oracleEngine{newOracleEngine(t, m, start)}
	return run
}

func (run *oracleRun) fail(format string, args ...any) {
	run.t.Helper()
	run.t.Fatalf("seed %d at %s: %s\nlast operations:\n  %s", run.seed, run.now.Format(time.RFC3339),
		fmt.Sprintf(format, args...), strings.Join(run.log, "\n  "))
}

func (run *oracleRun) steps(n int) {
	run.t.Helper()
	for i := range n {
		op, advance := run.gen.next(run.now)
		run.now = run.now.Add(advance)
		want := run.m.apply(run.now, op)
		run.log = append(run.log, fmt.Sprintf("%s: %s → %s", run.now.Format("01-02 15:04:05"), op, describeResult(want)))
		if len(run.log) > 40 {
			run.log = run.log[1:]
		}
		key := oracleOpNames[op.kind] + " " + want.Err
		run.counts[key]++
		for _, mt := range want.Matches {
			switch {
			case mt.Booking < 0:
				run.counts["watch.matched told"]++
			case mt.Moved:
				run.counts["watch.matched moved"]++
			default:
				run.counts["watch.matched held"]++
			}
		}
		for ei, x := range run.engines {
			got := x.apply(run.now, op)
			if !reflect.DeepEqual(got, want) {
				run.fail("engine %d: %s\n  engine: %s\n  model:  %s", ei, op, describeResult(got), describeResult(want))
			}
		}
		if i%1000 == 999 {
			run.compareState()
		}
	}
	run.compareState()
}

func describeResult(r oracleResult) string {
	s := describeOutcome(r)
	for _, m := range r.Matches {
		s += fmt.Sprintf("; watch #%d matched %s booking #%d", m.Watch, time.Unix(m.Start, 0).UTC().Format("01-02 15:04Z"), m.Booking)
	}
	return s
}

func describeOutcome(r oracleResult) string {
	switch {
	case r.Err != "":
		return "error " + r.Err
	case r.Days != nil:
		return fmt.Sprintf("days %v", r.Days)
	case r.Slots != nil:
		return fmt.Sprintf("%d slots %v", len(r.Slots), r.Slots)
	case r.Affected != nil:
		return fmt.Sprintf("cancelled %v", r.Affected)
	case r.Date != 0:
		return "released through " + r.Date.String()
	case r.Watch != 0:
		return fmt.Sprintf("watch #%d", r.Watch-1)
	case r.Booking.Status != 0:
		b := r.Booking
		return fmt.Sprintf("%s %s %s window %d %s–%s (%d) seq %d resched %d", b.Status, b.Office, b.Date, b.Window,
			time.Unix(b.Start, 0).UTC().Format("15:04Z"), time.Unix(b.End, 0).UTC().Format("15:04Z"), b.Slots, b.Seq, b.Reschedules)
	}
	return "ok"
}

// compareState compares everything the model knows with every engine:
// each booking, each applicant, the waitlist, free starts per day and per
// step, and the engine's own invariants (DESIGN invariant 1, claim
// invariant C3).
func (run *oracleRun) compareState() {
	run.t.Helper()
	m := run.m
	today := m.offices["a"].today(run.now)
	for ei, x := range run.engines {
		if len(x.ids) != len(m.bookings) {
			run.fail("engine %d has %d bookings, model %d", ei, len(x.ids), len(m.bookings))
		}
		for k, mb := range m.bookings {
			b := x.e.index.get(x.ids[k])
			if b == nil {
				run.fail("engine %d lost booking #%d", ei, k)
			}
			v, _ := x.e.View(b.rec.Load())
			got, want := bookingView(&v), m.bookingResultOf(mb).Booking
			if got != want {
				run.fail("engine %d booking #%d (%s):\n  engine: %+v\n  model:  %+v", ei, k, mb.applicant, got, want)
			}
			if s := Status(b.state.Load()); s != mb.status {
				run.fail("engine %d booking #%d: state word %v, status %s", ei, k, s, mb.status)
			}
		}
		var gotWatches, wantWatches []int
		x.e.watches.mu.Lock()
		for _, w := range x.e.watches.list {
			k, ok := x.watchByID[w.ID]
			if !ok {
				k = -1
			}
			gotWatches = append(gotWatches, k)
		}
		x.e.watches.mu.Unlock()
		for k, wt := range m.watches {
			if wt.active {
				wantWatches = append(wantWatches, k)
			}
		}
		if !slices.Equal(gotWatches, wantWatches) {
			run.fail("engine %d active watches %v, model %v", ei, gotWatches, wantWatches)
		}
		for _, id := range run.gen.applicants {
			a := m.app(id)
			active, blocked := x.e.apps.snapshot(id)
			if active != a.active || blocked != a.blockedUntilUnixNano {
				run.fail("engine %d applicant %s: active %d blocked until %s; model %d, %s", ei, id,
					active, time.Unix(0, blocked), a.active, time.Unix(0, a.blockedUntilUnixNano))
			}
		}
		for _, oid := range m.order {
			mo := m.offices[oid]
			if rec, _ := x.e.Office(oid); rec.ReleasedThrough != mo.released {
				run.fail("engine %d office %s released through %s, model %s", ei, oid, rec.ReleasedThrough, mo.released)
			}
			for _, svc := range mo.services {
				op := oracleOp{kind: opDays, office: oid, service: svc.id, date: today - 2, through: today + 40}
				if got, want := x.apply(run.now, op), m.apply(run.now, op); !reflect.DeepEqual(got, want) {
					run.fail("engine %d %s:\n  engine: %s\n  model:  %s", ei, op, describeResult(got), describeResult(want))
				}
				for date := today; date <= today+5; date++ {
					op := oracleOp{kind: opSlots, office: oid, service: svc.id, date: date}
					if got, want := x.apply(run.now, op), m.apply(run.now, op); !reflect.DeepEqual(got, want) {
						run.fail("engine %d %s:\n  engine: %s\n  model:  %s", ei, op, describeResult(got), describeResult(want))
					}
				}
			}
		}
		numbers := map[string]int{}
		for k := range m.bookings {
			r := x.e.index.get(x.ids[k]).rec.Load()
			n := bookingNumber(r.Office, r.Date, r.Seq)
			if other, dup := numbers[n]; dup {
				run.fail("engine %d: bookings #%d and #%d both carry number %s", ei, other, k, n)
			}
			numbers[n] = k
		}
		checkCounters(run.t, x.e)
		if err := x.e.Verify(); err != nil {
			run.fail("engine %d: %v", ei, err)
		}
	}
}

func oracleSeeds(t *testing.T) []uint64 {
	seeds := make([]uint64, *oracleSeedsFlag)
	for i := range seeds {
		seeds[i] = uint64(i + 1)
	}
	return seeds
}

// TestOracleEngineMatchesModel: every result and the final state of the
// engine equal the model's on long random sequences of holds (exact and
// earliest_after, with and without confirm), confirms, cancels, operator
// transitions (approvals of services that require them among them),
// reschedules, watches (held for, told, and moving a booking earlier),
// Ticks, releases and closures.
func TestOracleEngineMatchesModel(t *testing.T) {
	outcomes := map[string]int{}
	for _, seed := range oracleSeeds(t) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			run := newOracleRun(t, seed)
			run.steps(*oracleOpsFlag)
			for k, n := range run.counts {
				outcomes[k] += n
			}
		})
	}
	checkCoverage(t, outcomes)
}

// checkCoverage keeps the test honest: a generator that stopped producing
// successes or collisions would make the comparison vacuous.
func checkCoverage(t *testing.T, outcomes map[string]int) {
	t.Helper()
	if *oracleOpsFlag**oracleSeedsFlag < 8000 || t.Failed() {
		return
	}
	for _, key := range []string{"hold ", "hold " + ErrSlotTaken.Error(), "hold " + ErrDuplicateBooking.Error(),
		"hold " + ErrLimitReached.Error(), "hold " + ErrApplicantBlocked.Error(), "confirm ", "cancel ",
		"cancel " + ErrTooLateToCancel.Error(), "approve-cancel ", "reject-cancel ", "force-cancel ",
		"reschedule ", "reschedule " + ErrSlotTaken.Error(), "reschedule " + ErrRescheduleLimit.Error(),
		"check-in ", "complete ", "no-show ", "close ", "release ",
		"approve ", "approve " + ErrInvalidTransition.Error(), "reject ", "watch ", "unwatch ",
		"watch.matched held", "watch.matched moved", "watch.matched told"} {
		if outcomes[key] == 0 {
			t.Errorf("no %q outcome in %d operations; outcomes: %v", key, *oracleOpsFlag**oracleSeedsFlag, outcomes)
		}
	}
	t.Logf("outcomes: %v", outcomes)
}

// TestOracleRecoveryEquality: after a random run, an engine rebuilt from
// the journal (MemJournal.Latest → RestoreOffice, RestoreBooking,
// RestoreSeqMark, RestoreWatch, RestoreDone) has the same bookings,
// bitmaps, free counters, released dates, applicant counts and blocks and
// waitlist as the engine that wrote it (DESIGN invariant 4); then both,
// and the model, go on with the same operations and must keep agreeing.
func TestOracleRecoveryEquality(t *testing.T) {
	for _, seed := range oracleSeeds(t) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			run := newOracleRun(t, 100+seed)
			run.steps(*oracleOpsFlag / 2)
			x := run.engines[0]
			r := restoreOracleEngine(t, x, run.now)
			compareEngines(t, seed, x, r)
			run.engines = append(run.engines, r)
			run.steps(*oracleOpsFlag / 2)
			compareEngines(t, seed, x, r)
		})
	}
}

// restoreOracleEngine builds a fresh engine from x's journal, as a restart
// would.
func restoreOracleEngine(t *testing.T, x *oracleEngine, now time.Time) *oracleEngine {
	t.Helper()
	r := &oracleEngine{ids: slices.Clone(x.ids), byID: maps.Clone(x.byID),
		watchIDs: slices.Clone(x.watchIDs), watchByID: maps.Clone(x.watchByID)}
	r.e, r.j = restored(t, x.j, now)
	return r
}

// compareEngines requires identical state of an engine a and the engine b
// restored from it, bookings paired by creation index (bookings made after
// the restore have different ids): every booking record, every office's
// released date and every day's bitmap words and free counter (which must
// equal its popcount), every applicant's active count, block and booking
// list, and the active watches.
func compareEngines(t *testing.T, seed uint64, a, b *oracleEngine) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("seed %d: restored engine differs: %s", seed, fmt.Sprintf(format, args...))
	}
	if len(a.ids) != len(b.ids) || a.e.Stats().Bookings != b.e.Stats().Bookings {
		fail("%d/%d bookings, want %d/%d", len(b.ids), b.e.Stats().Bookings, len(a.ids), a.e.Stats().Bookings)
	}
	applicants := map[string]bool{}
	for k := range a.ids {
		ba, bb := a.e.index.get(a.ids[k]), b.e.index.get(b.ids[k])
		if ba == nil || bb == nil {
			fail("booking #%d missing", k)
		}
		ra, rb := *ba.rec.Load(), *bb.rec.Load()
		applicants[ra.Applicant] = true
		rb.ID = ra.ID
		if !reflect.DeepEqual(ra, rb) {
			fail("booking #%d:\n  before: %+v\n  after:  %+v", k, ra, rb)
		}
		if ba.state.Load() != bb.state.Load() {
			fail("booking #%d: state %d/%d", k, ba.state.Load(), bb.state.Load())
		}
	}
	for app := range applicants {
		act1, blk1 := a.e.apps.snapshot(app)
		act2, blk2 := b.e.apps.snapshot(app)
		if act1 != act2 || blk1 != blk2 {
			fail("applicant %s: active %d/%d, blocked until %d/%d", app, act1, act2, blk1, blk2)
		}
		var l1, l2 []int
		for _, x := range a.e.apps.list(app) {
			l1 = append(l1, a.byID[x.rec.Load().ID])
		}
		for _, x := range b.e.apps.list(app) {
			l2 = append(l2, b.byID[x.rec.Load().ID])
		}
		if !slices.Equal(l1, l2) {
			fail("applicant %s: bookings listed as %v, want %v", app, l2, l1)
		}
	}
	activeWatches := func(x *oracleEngine) []int {
		var out []int
		for _, w := range x.e.watches.list {
			out = append(out, x.watchByID[w.ID])
		}
		return out
	}
	if wa, wb := activeWatches(a), activeWatches(b); !slices.Equal(wa, wb) {
		fail("active watches %v, want %v", wb, wa)
	}
	if !slices.Equal(a.e.OfficeIDs(), b.e.OfficeIDs()) {
		fail("offices %v, want %v", b.e.OfficeIDs(), a.e.OfficeIDs())
	}
	for _, id := range a.e.OfficeIDs() {
		oa, _ := a.e.office(id)
		ob, _ := b.e.office(id)
		if oa.releasedThrough.Load() != ob.releasedThrough.Load() {
			fail("office %s released through %s, want %s", id, Date(ob.releasedThrough.Load()), Date(oa.releasedThrough.Load()))
		}
		dates := map[Date]bool{}
		for date := range *oa.days.Load() {
			dates[date] = true
		}
		for date := range *ob.days.Load() {
			dates[date] = true
		}
		for date := range dates {
			da, db := oa.day(oa.lay.Load(), date), ob.day(ob.lay.Load(), date)
			for i := range da.bits {
				if wa, wb := da.bits[i].Load(), db.bits[i].Load(); wa != wb {
					fail("office %s %s word %d: %#x, want %#x", id, date, i, wb, wa)
				}
			}
			if da.freeSeats() != db.freeSeats() || int(db.freeSeats()) != db.popcount() || da.closed.Load() != db.closed.Load() {
				fail("office %s %s: free %d/%d, popcount %d, closed %v/%v", id, date, da.freeSeats(), db.freeSeats(), db.popcount(), da.closed.Load(), db.closed.Load())
			}
		}
	}
}

// TestRecoveryKeepsCheckedInSeatOnClosedDay: a closure leaves a checked_in
// booking checked_in (only held, confirmed and cancel_requested ones are
// cancelled) while the day's bits all go to 0; recovery must accept that
// booking on the closed day instead of failing to claim its seat.
func TestRecoveryKeepsCheckedInSeatOnClosedDay(t *testing.T) {
	e, j := newTestEngine(t, testOffice("a"))
	b := mustHold(t, e, t0, HoldRequest{Office: "a", Service: "patent", Applicant: "x", Start: at(0, 11, 0), Confirm: true})
	if _, err := e.CheckIn(at(0, 10, 50), b.ID, Meta{Actor: "op"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.CloseDate(at(0, 10, 55), "a", d(0), Meta{Actor: "admin"}); err != nil {
		t.Fatal(err)
	}
	x := &oracleEngine{e: e, j: j, ids: []ID{b.ID}, byID: map[ID]int{b.ID: 0}}
	r := restoreOracleEngine(t, x, at(0, 10, 56))
	compareEngines(t, 0, x, r)
	if _, err := r.e.Complete(at(0, 11, 10), b.ID, Meta{Actor: "op"}); err != nil {
		t.Fatal(err)
	}
	checkCounters(t, r.e)
}

// TestRejectedLateCancelStillBecomesNoShow: the no-show timer of a booking
// fires while it waits as cancel_requested and is dropped; when the
// operator then rejects the cancel, the booking is confirmed again and must
// still become a no-show (and leave the applicant's active count), as it
// would after a restart, which schedules timers from the status alone.
func TestRejectedLateCancelStillBecomesNoShow(t *testing.T) {
	e, _ := newTestEngine(t, testOffice("a"))
	b := mustHold(t, e, t0, HoldRequest{Office: "a", Service: "patent", Applicant: "x", Start: at(1, 9, 0), Confirm: true})
	if got, err := e.Cancel(at(0, 15, 0), b.ID, "x", portal()); err != nil || got.Status != StatusCancelRequested {
		t.Fatalf("cancel: %v %v", got.Status, err)
	}
	if err := e.Tick(at(1, 9, 30)); err != nil { // start + grace passes while cancel_requested
		t.Fatal(err)
	}
	if _, err := e.RejectCancel(at(1, 10, 0), b.ID, Meta{Actor: "op"}); err != nil {
		t.Fatal(err)
	}
	if err := e.Tick(at(1, 10, 1)); err != nil {
		t.Fatal(err)
	}
	got, _ := e.Get(b.ID, "")
	if got.Status != StatusNoShow {
		t.Fatalf("status %s after the rejected cancel and the grace, want no_show", got.Status)
	}
	if active, _ := e.apps.snapshot("x"); active != 0 {
		t.Fatalf("applicant still has %d active bookings", active)
	}
}
