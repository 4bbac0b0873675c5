package allocator

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// Daylight-saving days. A seat is an instant: the hour the clocks skip has
// no seats, the hour they repeat has both of its seats, and a start is
// booked exactly as asked or refused.

// The transition days of 2027 in Berlin, both Sundays: on 28 March the
// clocks skip 02:00–03:00 (+01:00 → +02:00), on 31 October they show it
// twice (+02:00 → +01:00).
var (
	springForward = DateOf(time.Date(2027, 3, 28, 12, 0, 0, 0, time.UTC))
	fallBack      = DateOf(time.Date(2027, 10, 31, 12, 0, 0, 0, time.UTC))
)

// offset is a zone of a fixed UTC offset, the way a client writes a time.
func offset(hours int) *time.Location { return time.FixedZone("", hours*3600) }

// dstOffice: Europe/Berlin, one window, open on Sundays 00:00–05:00, across
// the hour the clocks change; a 1-step and a 2-step service.
func dstOffice(id string, slotMinutes int) OfficeConfig {
	night := []string{"00:00-05:00"}
	return OfficeConfig{
		ID: id, Name: "Office " + id, Region: "berlin", City: "Berlin", Timezone: "Europe/Berlin",
		SlotMinutes: slotMinutes, Windows: 1,
		Hours: map[string][]string{"sun": night},
		Services: []ServiceConfig{
			{ID: "patent", Name: "Patent", Slots: 1, Reschedulable: true},
			{ID: "rvp", Name: "RVP", Slots: 2},
		},
		Policy: DefaultPolicy(),
	}
}

func rfc3339(ts []time.Time) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.Format(time.RFC3339)
	}
	return out
}

// checkNight checks every availability read of date against want, the
// starts of the night in order: Slots, Days, FirstFree, Search and
// Alternatives list each start once, earliest first.
func checkNight(t *testing.T, e *Engine, now time.Time, office, service string, date Date, want []string) {
	t.Helper()
	slots, err := e.Slots(now, office, date, service)
	if err != nil {
		t.Fatal(err)
	}
	var starts []time.Time
	for _, s := range slots {
		starts = append(starts, s.Start)
	}
	if got := rfc3339(starts); !slices.Equal(got, want) {
		t.Fatalf("%s %s slots:\n got %q\nwant %q", office, date, got, want)
	}
	days, err := e.Days(now, office, service, date, date)
	if err != nil || len(days) != 1 || days[0].Free != len(want) {
		t.Fatalf("%s days: %v %v, want %d free", date, days, err, len(want))
	}
	dayStart := date.At(0, berlin)
	first, err := e.FirstFree(now, office, service, dayStart, len(want))
	if err != nil {
		t.Fatal(err)
	}
	search := e.Search(now, "berlin", service, dayStart, len(want))
	alts := e.Alternatives(now, office, service, dayStart, len(want))
	for name, list := range map[string][]Opening{"first free": first, "search": search, "alternatives": alts} {
		var got []time.Time
		for _, o := range list {
			got = append(got, o.Start)
		}
		if !slices.Equal(rfc3339(got), want) {
			t.Fatalf("%s %s %s:\n got %q\nwant %q", office, date, name, rfc3339(got), want)
		}
	}
}

// bookNight books every seat of date at a one-window office: every other
// start exactly, then the rest through earliest_after from midnight. Each
// exact start is booked as asked, every booking ends a grid step after it
// starts, and every start of want is booked exactly once.
func bookNight(t *testing.T, e *Engine, now time.Time, office string, date Date, want []string) []Booking {
	t.Helper()
	l := mustOffice(t, e, office).lay.Load()
	step := time.Duration(l.stepMinutes) * time.Minute
	var got []Booking
	n := 0
	hold := func(req HoldRequest) (Booking, error) {
		n++
		req.Office, req.Service, req.Applicant = office, "patent", "night-"+string(rune('a'+n))
		return e.Hold(now, req, portal())
	}
	for i := 0; i < len(want); i += 2 {
		start, err := time.Parse(time.RFC3339, want[i])
		if err != nil {
			t.Fatal(err)
		}
		b, err := hold(HoldRequest{Start: start})
		if err != nil {
			t.Fatalf("hold %s: %v", want[i], err)
		}
		if s := b.Start.Format(time.RFC3339); s != want[i] {
			t.Fatalf("hold %s: booked at %s", want[i], s)
		}
		got = append(got, b)
	}
	for {
		b, err := hold(HoldRequest{EarliestAfter: date.At(0, berlin)})
		if errors.Is(err, ErrSlotTaken) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if b.Date != date {
			break // the night is full: earliest_after moved on
		}
		got = append(got, b)
		if len(got) > 2*len(want) {
			t.Fatalf("more than %d bookings on a night of %d seats", len(got), len(want))
		}
	}
	seen := map[string]string{}
	for _, b := range got {
		s := b.Start.Format(time.RFC3339)
		if other, dup := seen[s]; dup {
			t.Fatalf("one desk, two people: %s and %s both have window %d at %s–%s", other, b.Number, b.Window+1, s, b.End.Format(time.RFC3339))
		}
		seen[s] = b.Number
		if b.End.Sub(b.Start) != step {
			t.Fatalf("booking %s: %s–%s is not one %s step", b.Number, s, b.End.Format(time.RFC3339), step)
		}
		if b.Date != date || !strings.Contains(b.Number, "-"+string(date.appendCompact(nil))+"-") {
			t.Fatalf("booking %s at %s: date %s, want %s", b.Number, s, b.Date, date)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("%d bookings on the night, want one per seat: %d", len(got), len(want))
	}
	for _, s := range want {
		if _, ok := seen[s]; !ok {
			t.Fatalf("seat %s was never booked", s)
		}
	}
	if err := e.Verify(); err != nil {
		t.Fatal(err)
	}
	checkCounters(t, e)
	return got
}

func mustOffice(t testing.TB, e *Engine, id string) *office {
	t.Helper()
	o, err := e.office(id)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// TestDefectDSTDoubleBookingSpringForward: on 2027-03-28 the Berlin clocks
// go from 02:00 to 03:00. The night has 8 half-hour seats, none labelled
// 02:xx; 03:00+02:00 was once listed twice and sold twice at window 1.
func TestDefectDSTDoubleBookingSpringForward(t *testing.T) {
	now := time.Date(2027, 3, 27, 12, 0, 0, 0, berlin)
	e, _ := newEngineAt(t, now, dstOffice("ber", 30))
	want := []string{
		"2027-03-28T00:00:00+01:00", "2027-03-28T00:30:00+01:00", "2027-03-28T01:00:00+01:00", "2027-03-28T01:30:00+01:00",
		"2027-03-28T03:00:00+02:00", "2027-03-28T03:30:00+02:00", "2027-03-28T04:00:00+02:00", "2027-03-28T04:30:00+02:00",
	}
	checkNight(t, e, now, "ber", "patent", springForward, want)
	// A 2-step service runs across the change: 01:30+01:00 for an hour.
	rvp, err := e.Hold(now, HoldRequest{Office: "ber", Service: "rvp", Applicant: "r", Start: time.Date(2027, 3, 28, 1, 30, 0, 0, offset(1))}, portal())
	if err != nil {
		t.Fatal(err)
	}
	if s, e := rvp.Start.Format(time.RFC3339), rvp.End.Format(time.RFC3339); s != "2027-03-28T01:30:00+01:00" || e != "2027-03-28T03:30:00+02:00" {
		t.Fatalf("2-step across the change: %s–%s", s, e)
	}
	if _, err := e.Cancel(now, rvp.ID, "r", portal()); err != nil {
		t.Fatal(err)
	}
	bookNight(t, e, now, "ber", springForward, want)
	// 02:00 written with the winter offset is the instant 03:00+02:00: a
	// seat, and a taken one.
	_, err = e.Hold(now, HoldRequest{Office: "ber", Service: "patent", Applicant: "late", Start: time.Date(2027, 3, 28, 2, 0, 0, 0, offset(1))}, portal())
	wantErr(t, err, ErrSlotTaken)
}

// TestDefectDSTDoubleBookingFallBack: on 2027-10-31 the Berlin clocks go
// from 03:00 back to 02:00. The night has 12 half-hour seats, the repeated
// hour twice; a hold for 02:30+02:00 was once booked at 02:30+01:00, and
// the first 02:00–02:59 could not be booked at all.
func TestDefectDSTDoubleBookingFallBack(t *testing.T) {
	now := time.Date(2027, 10, 30, 12, 0, 0, 0, berlin)
	e, _ := newEngineAt(t, now, dstOffice("ber", 30))
	want := []string{
		"2027-10-31T00:00:00+02:00", "2027-10-31T00:30:00+02:00", "2027-10-31T01:00:00+02:00", "2027-10-31T01:30:00+02:00",
		"2027-10-31T02:00:00+02:00", "2027-10-31T02:30:00+02:00", "2027-10-31T02:00:00+01:00", "2027-10-31T02:30:00+01:00",
		"2027-10-31T03:00:00+01:00", "2027-10-31T03:30:00+01:00", "2027-10-31T04:00:00+01:00", "2027-10-31T04:30:00+01:00",
	}
	checkNight(t, e, now, "ber", "patent", fallBack, want)
	first := time.Date(2027, 10, 31, 2, 30, 0, 0, offset(2))
	b, err := e.Hold(now, HoldRequest{Office: "ber", Service: "patent", Applicant: "x", Start: first}, portal())
	if err != nil {
		t.Fatal(err)
	}
	if s, e := b.Start.Format(time.RFC3339), b.End.Format(time.RFC3339); s != "2027-10-31T02:30:00+02:00" || e != "2027-10-31T02:00:00+01:00" {
		t.Fatalf("hold for %s booked at %s–%s", first.Format(time.RFC3339), s, e)
	}
	_, err = e.Hold(now, HoldRequest{Office: "ber", Service: "patent", Applicant: "y", Start: first.In(time.UTC)}, portal())
	wantErr(t, err, ErrSlotTaken) // the same instant, written in UTC
	if _, err := e.Cancel(now, b.ID, "x", portal()); err != nil {
		t.Fatal(err)
	}
	bookNight(t, e, now, "ber", fallBack, want)
}

// TestDefectDSTDoubleBookingDerivedTimes: what derives from a seat's time
// on the night the clocks go back is counted from its instant: the
// cancel cutoff, the reminder 24 hours before, the no-show after the
// grace; the booking's number and day stay those of its office-local date.
func TestDefectDSTDoubleBookingDerivedTimes(t *testing.T) {
	now := time.Date(2027, 10, 30, 3, 0, 0, 0, berlin) // 23h30m before 02:30+02:00
	e, j := newEngineAt(t, now, dstOffice("ber", 30))
	start := time.Date(2027, 10, 31, 2, 30, 0, 0, offset(2))
	b := mustHold(t, e, now, HoldRequest{Office: "ber", Service: "patent", Applicant: "x", Start: start, Confirm: true})
	if b.Date != fallBack || b.Number != "BER-20271031-0001" {
		t.Fatalf("booking %s on %s", b.Number, b.Date)
	}
	// Under the 24h cutoff, over the 12h floor: a request, not a cancel.
	got, err := e.Cancel(now, b.ID, "x", portal())
	if err != nil || got.Status != StatusCancelRequested {
		t.Fatalf("cancel 23h30m ahead: %v %v, want cancel_requested", got.Status, err)
	}
	if _, err := e.RejectCancel(now, b.ID, Meta{Actor: "op"}); err != nil {
		t.Fatal(err)
	}
	reminders := func() int { return countEvents(j, EventReminderDue) }
	// The reminder is due at 02:30+02:00 the day before, already passed at
	// now: the first Tick sends it.
	if err := e.Tick(now.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if n := reminders(); n != 1 {
		t.Fatalf("%d reminders after the reminder time, want 1", n)
	}
	// The no-show comes at 02:45+02:00, not an hour later at 02:45+01:00.
	if err := e.Tick(start.Add(14 * time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got, _ := e.Get(b.ID, ""); got.Status != StatusConfirmed {
		t.Fatalf("status %s before start + grace", got.Status)
	}
	if err := e.Tick(start.Add(15 * time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got, _ := e.Get(b.ID, ""); got.Status != StatusNoShow {
		t.Fatalf("status %s at start + grace (%s), want no_show", got.Status, start.Add(15*time.Minute).Format(time.RFC3339))
	}
}

// TestDefectDSTDoubleBookingStartNotASeat: on a 2-hour grid the repeated
// hour cannot hold a second 02:00 seat, since the first one (02:00+02:00)
// still runs at 02:00+01:00; that start is refused as not bookable, and
// the hour the clocks skip leaves a gap no 2-step run may cross.
func TestDefectDSTDoubleBookingStartNotASeat(t *testing.T) {
	cfg := dstOffice("two", 120)
	cfg.Hours = map[string][]string{"sun": {"00:00-24:00"}}
	now := time.Date(2027, 10, 30, 12, 0, 0, 0, berlin)
	e, _ := newEngineAt(t, now, cfg)
	want := []string{"2027-10-31T00:00:00+02:00", "2027-10-31T02:00:00+02:00"}
	for h := 4; h < 24; h += 2 {
		want = append(want, time.Date(2027, 10, 31, h, 0, 0, 0, berlin).Format(time.RFC3339))
	}
	checkNight(t, e, now, "two", "patent", fallBack, want)
	_, err := e.Hold(now, HoldRequest{Office: "two", Service: "patent", Applicant: "x", Start: time.Date(2027, 10, 31, 2, 0, 0, 0, offset(1))}, portal())
	wantErr(t, err, ErrNotReleased)
	b := mustHold(t, e, now, HoldRequest{Office: "two", Service: "patent", Applicant: "y", Start: time.Date(2027, 10, 31, 2, 0, 0, 0, offset(2))})
	if s, e := b.Start.Format(time.RFC3339), b.End.Format(time.RFC3339); s != "2027-10-31T02:00:00+02:00" || e != "2027-10-31T03:00:00+01:00" {
		t.Fatalf("02:00+02:00 booked at %s–%s", s, e)
	}

	now = time.Date(2027, 3, 27, 12, 0, 0, 0, berlin)
	e, _ = newEngineAt(t, now, cfg)
	want = []string{"2027-03-28T00:00:00+01:00"}
	for h := 4; h < 24; h += 2 {
		want = append(want, time.Date(2027, 3, 28, h, 0, 0, 0, berlin).Format(time.RFC3339))
	}
	checkNight(t, e, now, "two", "patent", springForward, want)
	// 00:00+01:00 ends at 03:00+02:00; the next seat starts at 04:00+02:00.
	checkNight(t, e, now, "two", "rvp", springForward, want[1:len(want)-1])
	_, err = e.Hold(now, HoldRequest{Office: "two", Service: "rvp", Applicant: "z", Start: time.Date(2027, 3, 28, 0, 0, 0, 0, berlin)}, portal())
	wantErr(t, err, ErrNotReleased)
}

// TestDefectDSTDoubleBookingReleaseTime: the daily release happens when the
// office's clock first reaches release_time. With 02:30 on the night the
// clocks skip 02:00–03:00 that is 03:00+02:00, and the lottery window
// counts from it; on the night they repeat the hour, the second 02:30
// releases nothing again, and an office created in the repeated hour after
// the first 02:30 starts with today's release done.
func TestDefectDSTDoubleBookingReleaseTime(t *testing.T) {
	cfg := dstOffice("rel", 30)
	cfg.Policy.ReleaseTime = "02:30"
	cfg.Policy.ReleaseLottery = Duration(2 * time.Second)
	through := func(e *Engine) Date {
		rec, err := e.Office("rel")
		if err != nil {
			t.Fatal(err)
		}
		return rec.ReleasedThrough
	}
	t.Run("spring-forward", func(t *testing.T) {
		created := time.Date(2027, 3, 27, 12, 0, 0, 0, berlin)
		e, _ := newEngineAt(t, created, cfg)
		before := through(e)
		if err := e.Tick(time.Date(2027, 3, 28, 1, 59, 59, 0, berlin)); err != nil {
			t.Fatal(err)
		}
		if through(e) != before {
			t.Fatalf("released through %s before the release minute", through(e))
		}
		tick := time.Date(2027, 3, 28, 3, 0, 1, 500_000_000, berlin)
		if err := e.Tick(tick); err != nil {
			t.Fatal(err)
		}
		if through(e) != before+1 {
			t.Fatalf("released through %s after the release minute, want %s", through(e), before+1)
		}
		lot := mustOffice(t, e, "rel").lottery.Load()
		if want := time.Date(2027, 3, 28, 3, 0, 2, 0, berlin); lot == nil || !lot.closes.Equal(want) {
			t.Fatalf("lottery %+v, want it to close at %s", lot, want.Format(time.RFC3339))
		}
	})
	t.Run("fall-back", func(t *testing.T) {
		// One release, at the first 02:30.
		e, _ := newEngineAt(t, time.Date(2027, 10, 30, 12, 0, 0, 0, berlin), cfg)
		before := through(e)
		for _, tick := range []time.Time{
			time.Date(2027, 10, 31, 2, 29, 0, 0, offset(2)), time.Date(2027, 10, 31, 2, 30, 0, 0, offset(2)),
			time.Date(2027, 10, 31, 2, 10, 0, 0, offset(1)), time.Date(2027, 10, 31, 2, 30, 0, 0, offset(1)),
		} {
			if err := e.Tick(tick); err != nil {
				t.Fatal(err)
			}
		}
		if through(e) != before+1 || e.Stats().Releases != 1 {
			t.Fatalf("released through %s in %d releases, want %s in 1", through(e), e.Stats().Releases, before+1)
		}
		// Created at 02:10+01:00, 40 minutes after the first 02:30.
		e, _ = newEngineAt(t, time.Date(2027, 10, 31, 2, 10, 0, 0, offset(1)), cfg)
		if want := fallBack + 30; through(e) != want {
			t.Fatalf("created after the release minute: released through %s, want %s", through(e), want)
		}
		if err := e.Tick(time.Date(2027, 10, 31, 2, 30, 0, 0, offset(1))); err != nil {
			t.Fatal(err)
		}
		if e.Stats().Releases != 0 {
			t.Fatalf("%d releases at the second 02:30, want none", e.Stats().Releases)
		}
	})
}

// TestDefectDSTDoubleBookingWatch: a seat freed in the repeated hour is
// offered to a watch as the instant that was freed, and an auto-hold
// takes that very seat.
func TestDefectDSTDoubleBookingWatch(t *testing.T) {
	now := time.Date(2027, 10, 30, 12, 0, 0, 0, berlin)
	e, j := newEngineAt(t, now, dstOffice("ber", 30))
	first := time.Date(2027, 10, 31, 2, 30, 0, 0, offset(2))
	b := mustHold(t, e, now, HoldRequest{Office: "ber", Service: "patent", Applicant: "x", Start: first})
	if _, err := e.Watch(now, WatchRequest{Applicant: "w", Service: "patent", Office: "ber", From: fallBack, To: fallBack}, portal()); err != nil {
		t.Fatal(err)
	}
	// Watches are served oldest first: the auto-hold comes second.
	if _, err := e.Watch(now.Add(time.Second), WatchRequest{Applicant: "h", Service: "patent", Office: "ber", From: fallBack, To: fallBack, AutoHold: true}, portal()); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Cancel(now, b.ID, "x", portal()); err != nil {
		t.Fatal(err)
	}
	var offered []time.Time
	for _, c := range j.Changes() {
		for _, ev := range c.Events {
			if ev.Type == EventWatchMatched {
				offered = append(offered, time.Unix(0, ev.StartUnixNano))
			}
		}
	}
	if len(offered) != 1 || !offered[0].Equal(first) {
		t.Fatalf("watch offered %v, want %s", offered, first.Format(time.RFC3339))
	}
	// The first watch was told; the seat is free, and the next cancel of it
	// hands it to the auto-hold.
	b = mustHold(t, e, now, HoldRequest{Office: "ber", Service: "patent", Applicant: "y", Start: first})
	if _, err := e.Cancel(now, b.ID, "y", portal()); err != nil {
		t.Fatal(err)
	}
	list, _ := e.List("h", ListFilter{}, 0, 10)
	if len(list) != 1 || !list[0].Start.Equal(first) || list[0].Start.Format(time.RFC3339) != "2027-10-31T02:30:00+02:00" {
		t.Fatalf("auto-hold: %+v", list)
	}
	if err := e.Verify(); err != nil {
		t.Fatal(err)
	}
}
