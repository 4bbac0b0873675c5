package allocator

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"slotd/internal/slotdtest/testtime"
)

// Concurrency hammers, meant for -race. Many goroutines race for fewer
// seats than requests; afterwards the state is checked by brute force:
//
//   - DESIGN invariant 1: no seat is owned by two active bookings
//     (checkSeatsExact scans every booking);
//   - claim invariant C1: exactly as many claims succeed as there are seats;
//   - claim invariant C3: every day's free counter equals its popcount, and
//     every bit is free exactly when its step is open and no active booking
//     owns it;
//   - lifecycle invariant L1: of racing confirm, cancel, force-cancel,
//     Tick-driven expiry and reschedule of one booking, the successes form
//     one serial history.

// hammerOffice: one window per desk, 15-minute grid, open every day.
func hammerOffice(id string, windows int, hours string) OfficeConfig {
	h := []string{hours}
	return OfficeConfig{
		ID: id, Name: "Office " + id, Region: "moscow", City: "Москва", Timezone: "Europe/Moscow",
		SlotMinutes: 15, Windows: windows,
		Hours:    map[string][]string{"mon": h, "tue": h, "wed": h, "thu": h, "fri": h, "sat": h, "sun": h},
		Services: []ServiceConfig{{ID: "patent", Name: "Патент", Slots: 1, Reschedulable: true}},
		Policy:   DefaultPolicy(),
	}
}

// hammerSeats lists, by brute force over every minute, the seats of date
// at an office of loc on a grid of stepMinutes (dividing an hour) open
// from one minute of the day to another: every instant whose wall clock
// shows a grid label of the date within the hours, in order of time. The
// hour the clocks skip has none; the hour they repeat, two of each.
func hammerSeats(loc *time.Location, date Date, stepMinutes, from, to int) []time.Time {
	var out []time.Time
	for u := int64(date)*86400 - zoneOffsetMax; u < int64(date+1)*86400+zoneOffsetMax; u += 60 {
		lt := time.Unix(u, 0).In(loc)
		if m := lt.Hour()*60 + lt.Minute(); DateOf(lt) == date && m%stepMinutes == 0 && m >= from && m < to {
			out = append(out, lt)
		}
	}
	return out
}

// hammerStarts are the exact starts a hammer asks for on date: the seats,
// and, for each grid label within the hours, the instant time.Date makes
// of it and the label written with each of the zone's offsets that day
// (on the nights the clocks change: an hour of the same labels once more,
// or of labels that do not exist). Not all are seats, and some are seats
// of the same instant.
func hammerStarts(loc *time.Location, date Date, from, to int) []time.Time {
	out := hammerSeats(loc, date, 15, from, to)
	y, m, dd := date.civil()
	offsets := map[int]bool{}
	for _, h := range []int{0, 12, 23} {
		_, off := time.Date(y, m, dd, h, 0, 0, 0, loc).Zone()
		offsets[off] = true
	}
	for minute := from; minute < to; minute += 15 {
		out = append(out, date.At(minute, loc))
		for off := range offsets {
			out = append(out, time.Date(y, m, dd, 0, minute, 0, 0, time.FixedZone("", off)))
		}
	}
	return out
}

// checkSeatsExact asserts DESIGN invariant 1 and claim invariant C3 by
// brute force on a quiet engine: no seat, an instant at a window, has two
// active owners; every active run is its length of unbroken time; and
// every bit of every materialised day is 1 exactly when the step is open,
// the day is not closed and no active booking owns the seat.
func checkSeatsExact(t testing.TB, e *Engine) (active int) {
	t.Helper()
	type seatAt struct {
		office string
		window uint16
		unix   int64
	}
	owners := map[seatAt]ID{}
	owned := map[seatKey]bool{}
	e.index.each(func(b *booking) bool {
		r := b.rec.Load()
		if !r.Status.Active() {
			return true
		}
		active++
		v, _ := e.View(r)
		o, _ := e.office(r.Office)
		step := time.Duration(o.lay.Load().stepMinutes) * time.Minute
		if v.End.Sub(v.Start) != time.Duration(r.Slots)*step {
			t.Fatalf("booking %s: %s–%s is not %d unbroken steps", v.Number, v.Start.Format(time.RFC3339), v.End.Format(time.RFC3339), r.Slots)
		}
		for i := range r.Slots {
			at := v.Start.Add(time.Duration(i) * step)
			k := seatAt{r.Office, r.Window, at.Unix()}
			if other, dup := owners[k]; dup {
				t.Fatalf("DESIGN invariant 1: seat %s window %d at %s owned by %s and %s", r.Office, r.Window+1, at.Format(time.RFC3339), other, r.ID)
			}
			owners[k] = r.ID
			owned[seatKey{r.Office, r.Date, r.Window, r.Step + i}] = true
		}
		return true
	})
	for _, id := range e.OfficeIDs() {
		o, _ := e.office(id)
		l := o.lay.Load()
		for date, dy := range *o.days.Load() {
			for w := 0; w < l.windows; w++ {
				for s := 0; s < int(dy.clock.n); s++ {
					want := !dy.closed.Load() && dy.isOpen(s) && !owned[seatKey{id, date, uint16(w), uint16(s)}]
					if got := dy.isFree(w, s, 1); got != want {
						t.Fatalf("claim invariant C3: %s %s window %d step %d: bit free=%v, want %v", id, date, w, s, got, want)
					}
				}
			}
		}
	}
	checkCounters(t, e)
	if err := e.Verify(); err != nil {
		t.Fatal(err)
	}
	return active
}

// raceGo runs f(g) on n goroutines released together and waits for them.
func raceGo(n int, f func(g int)) {
	var start, done sync.WaitGroup
	start.Add(1)
	for g := range n {
		done.Add(1)
		go func() {
			defer done.Done()
			start.Wait()
			f(g)
		}()
	}
	start.Done()
	done.Wait()
}

// TestHammerClaimInvariantC1HotOfficeDate: 16 goroutines make 960 requests
// for the seats of one office-date (640 exact starts, then 320
// earliest_after from its midnight, which move on to the next date once it
// is full). Exactly one hold per seat succeeds on the date, each seat has
// one owner, the day ends with no free bit. The date is an ordinary one in
// Moscow (144 seats) or, in Berlin open 00:00–06:00, a night the clocks
// change: 2027-03-28 (5 hours, 80 seats) and 2027-10-31 (7 hours, 112
// seats). There the exact starts include the hour's labels written either
// way, and each hold must be booked exactly at the instant asked.
func TestHammerClaimInvariantC1HotOfficeDate(t *testing.T) {
	for _, c := range []struct {
		name     string
		zone     string
		now      time.Time
		date     Date
		from, to int // opening hours, minutes of the day
		seats    int
	}{
		{"moscow", "Europe/Moscow", t0, d(2), 9 * 60, 18 * 60, 4 * 36},
		{"spring-forward", "Europe/Berlin", time.Date(2027, 3, 27, 12, 0, 0, 0, berlin), springForward, 0, 6 * 60, 4 * 20},
		{"fall-back", "Europe/Berlin", time.Date(2027, 10, 30, 12, 0, 0, 0, berlin), fallBack, 0, 6 * 60, 4 * 28},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := hammerOffice("hot", 4, fmt.Sprintf("%02d:00-%02d:00", c.from/60, c.to/60))
			cfg.Timezone = c.zone
			loc := testtime.MustLoc(c.zone)
			if n := 4 * len(hammerSeats(loc, c.date, 15, c.from, c.to)); n != c.seats {
				t.Fatalf("%d seats by brute force, want %d", n, c.seats)
			}
			hammerHotDate(t, c.now, cfg, loc, c.date, hammerStarts(loc, c.date, c.from, c.to), c.seats)
		})
	}
}

func hammerHotDate(t *testing.T, now time.Time, cfg OfficeConfig, loc *time.Location, date Date, starts []time.Time, seats int) {
	const seed = 1
	e, _ := newEngineAt(t, now, cfg)
	var ok, later, taken atomic.Int64
	raceGo(16, func(g int) {
		r := rand.New(rand.NewPCG(seed, uint64(g)))
		for i := range 60 {
			req := HoldRequest{Office: cfg.ID, Service: "patent", Applicant: fmt.Sprintf("g%d-%d", g, i)}
			if i < 40 {
				req.Start = starts[r.IntN(len(starts))]
			} else {
				req.EarliestAfter = date.At(0, loc)
			}
			b, err := e.Hold(now, req, portal())
			switch {
			case err == nil && !req.Start.IsZero() && !b.Start.Equal(req.Start):
				t.Errorf("seed %d: hold for %s booked at %s", seed, req.Start.Format(time.RFC3339), b.Start.Format(time.RFC3339))
				return
			case err == nil && b.Date == date:
				ok.Add(1)
			case err == nil: // earliest_after moved on to the next date
				later.Add(1)
			case errors.Is(err, ErrSlotTaken), errors.Is(err, ErrNotReleased) && !req.Start.IsZero():
				taken.Add(1) // a label written with the other offset may be outside the hours
			default:
				t.Errorf("seed %d: hold: %v", seed, err)
				return
			}
		}
	})
	if t.Failed() {
		return
	}
	if ok.Load() != int64(seats) || ok.Load()+later.Load()+taken.Load() != 16*60 {
		t.Fatalf("seed %d: claim invariant C1: %d holds succeeded on %s, %d later, %d refused; want exactly %d of %d", seed, ok.Load(), date, later.Load(), taken.Load(), seats, 16*60)
	}
	if taken.Load() == 0 || later.Load() == 0 {
		t.Fatalf("no contention: %d refused, %d moved on", taken.Load(), later.Load())
	}
	if n := checkSeatsExact(t, e); n != seats+int(later.Load()) {
		t.Fatalf("%d active bookings, want %d", n, int64(seats)+later.Load())
	}
	if days, _ := e.Days(now, cfg.ID, "patent", date, date); len(days) != 1 || days[0].Free != 0 {
		t.Fatalf("days after the rush: %v", days)
	}
}

// TestHammerClaimInvariantC1SpreadOffices: 8 goroutines over 40 offices × 5
// dates (1,600 seats) — random exact starts, then earliest_after sweeps of
// every office. Exactly 1,600 succeed.
func TestHammerClaimInvariantC1SpreadOffices(t *testing.T) {
	const seed = 2
	var cfgs []OfficeConfig
	for i := range 40 {
		cfg := hammerOffice(fmt.Sprintf("o%02d", i), 1, "09:00-11:00")
		cfg.Policy.HorizonDays = 5 // released through d(5)
		cfgs = append(cfgs, cfg)
	}
	e, _ := newTestEngine(t, cfgs...)
	const seats = 40 * 5 * 8
	var ok atomic.Int64
	raceGo(8, func(g int) {
		r := rand.New(rand.NewPCG(seed, uint64(g)))
		n := 0
		hold := func(req HoldRequest) error {
			n++
			req.Service, req.Applicant = "patent", fmt.Sprintf("g%d-%d", g, n)
			_, err := e.Hold(t0, req, portal())
			if err == nil {
				ok.Add(1)
			} else if !errors.Is(err, ErrSlotTaken) {
				t.Errorf("seed %d: hold: %v", seed, err)
			}
			return err
		}
		for range 400 {
			hold(HoldRequest{Office: cfgs[r.IntN(40)].ID, Start: d(1+r.IntN(5)).At(9*60+15*r.IntN(8), msk)})
		}
		for _, i := range r.Perm(40) {
			for hold(HoldRequest{Office: cfgs[i].ID, EarliestAfter: d(1).At(0, msk)}) == nil {
			}
		}
	})
	if got := ok.Load(); got != seats {
		t.Fatalf("seed %d: claim invariant C1: %d holds succeeded, want %d", seed, got, seats)
	}
	if n := checkSeatsExact(t, e); n != seats {
		t.Fatalf("%d active bookings, want %d", n, seats)
	}
}

// TestHammerDefectDSTDoubleBooking: 8 goroutines over 12 offices — 9 in
// Berlin, 3 in Moscow (no clock change) — and the three dates around a
// night the clocks change, open 00:00–06:00: random exact starts (seats,
// and labels of the changing hour written either way), earliest_after,
// cancels and reschedules race; then earliest_after sweeps fill every
// office. Every hold is booked at the instant asked, no seat (an instant
// at a window) is owned twice, and exactly as many holds succeed as the
// brute-force count of seats.
func TestHammerDefectDSTDoubleBooking(t *testing.T) {
	for _, c := range []struct {
		name string
		now  time.Time
		date Date
	}{
		{"spring-forward", time.Date(2027, 3, 26, 12, 0, 0, 0, berlin), springForward},
		{"fall-back", time.Date(2027, 10, 29, 12, 0, 0, 0, berlin), fallBack},
	} {
		t.Run(c.name, func(t *testing.T) { hammerClockChange(t, c.now, c.date) })
	}
}

func hammerClockChange(t *testing.T, now time.Time, date Date) {
	const seed, offices = 6, 12
	var cfgs []OfficeConfig
	var locs []*time.Location
	seats := 0
	var starts [][]time.Time // per office, the exact starts asked for
	for i := range offices {
		cfg := hammerOffice(fmt.Sprintf("d%02d", i), 2, "00:00-06:00")
		if i%4 != 3 {
			cfg.Timezone = "Europe/Berlin"
		}
		cfg.Policy.HorizonDays = 3
		loc := testtime.MustLoc(cfg.Timezone)
		var mine []time.Time
		for dd := date - 1; dd <= date+1; dd++ {
			seats += 2 * len(hammerSeats(loc, dd, 15, 0, 6*60))
			mine = append(mine, hammerStarts(loc, dd, 0, 6*60)...)
		}
		cfgs, locs, starts = append(cfgs, cfg), append(locs, loc), append(starts, mine)
	}
	e, _ := newEngineAt(t, now, cfgs...)
	for _, cfg := range cfgs { // the three dates, all ahead, and nothing more
		if rec, _ := e.Office(cfg.ID); rec.ReleasedThrough != date+1 {
			t.Fatalf("%s released through %s, want %s", cfg.ID, rec.ReleasedThrough, date+1)
		}
	}
	var holds, cancels, taken, moved atomic.Int64
	raceGo(8, func(g int) {
		r := rand.New(rand.NewPCG(seed, uint64(g)))
		n := 0
		hold := func(req HoldRequest) (Booking, error) {
			n++
			req.Service, req.Applicant = "patent", fmt.Sprintf("g%d-%d", g, n)
			b, err := e.Hold(now, req, portal())
			switch {
			case err == nil && !req.Start.IsZero() && !b.Start.Equal(req.Start):
				t.Errorf("seed %d: hold for %s booked at %s", seed, req.Start.Format(time.RFC3339), b.Start.Format(time.RFC3339))
			case err == nil:
				holds.Add(1)
			case errors.Is(err, ErrSlotTaken):
				taken.Add(1)
			case !errors.Is(err, ErrNotReleased):
				t.Errorf("seed %d: hold: %v", seed, err)
			}
			return b, err
		}
		for range 300 {
			i := r.IntN(offices)
			req := HoldRequest{Office: cfgs[i].ID, Start: starts[i][r.IntN(len(starts[i]))]}
			if r.IntN(4) == 0 {
				req = HoldRequest{Office: cfgs[i].ID, EarliestAfter: (date - 1 + Date(r.IntN(3))).At(r.IntN(6*60), locs[i])}
			}
			b, err := hold(req)
			if err != nil {
				continue
			}
			switch r.IntN(4) {
			case 0:
				if _, err := e.Cancel(now, b.ID, b.Applicant, portal()); err != nil {
					t.Errorf("seed %d: cancel: %v", seed, err)
				}
				cancels.Add(1)
			case 1:
				if _, err := e.Confirm(now, b.ID, b.Applicant, portal()); err != nil {
					t.Errorf("seed %d: confirm: %v", seed, err)
				}
				j := r.IntN(offices)
				to := starts[j][r.IntN(len(starts[j]))]
				v, err := e.Reschedule(now, b.ID, RescheduleRequest{Applicant: b.Applicant, Office: cfgs[j].ID, Start: to}, portal())
				switch {
				case err == nil && !v.Start.Equal(to):
					t.Errorf("seed %d: reschedule to %s landed at %s", seed, to.Format(time.RFC3339), v.Start.Format(time.RFC3339))
				case err == nil:
					moved.Add(1)
				case err != nil && !errors.Is(err, ErrSlotTaken) && !errors.Is(err, ErrNotReleased) &&
					!errors.Is(err, ErrInvalidTransition) && !errors.Is(err, ErrDuplicateBooking) && !errors.Is(err, ErrTooLateToReschedule):
					t.Errorf("seed %d: reschedule: %v", seed, err)
				}
			}
		}
		for _, i := range r.Perm(offices) {
			for {
				if _, err := hold(HoldRequest{Office: cfgs[i].ID, EarliestAfter: (date - 1).At(0, locs[i])}); err != nil {
					break
				}
			}
		}
	})
	if t.Failed() {
		return
	}
	checkSeatsExact(t, e)
	if got := holds.Load() - cancels.Load(); got != int64(seats) {
		t.Fatalf("seed %d: claim invariant C1: %d holds stand on %d seats", seed, got, seats)
	}
	if taken.Load() == 0 || moved.Load() == 0 {
		t.Fatalf("seed %d: no contention: %d holds found their seat taken, %d reschedules", seed, taken.Load(), moved.Load())
	}
}

// TestHammerClaimInvariantC1RawDayAcrossWordBoundary races day.claim
// directly: every round, 8 goroutines claim the same sequence of runs of
// 1–3 steps around the 63/64 and 127/128 word boundaries of a 288-step day;
// each winner marks its steps in an ownership table by CAS, so a step won
// twice is caught at once. With CAS replaced by Load+Store this fails.
func TestHammerClaimInvariantC1RawDayAcrossWordBoundary(t *testing.T) {
	const seed = 3
	l := mustLayout(t, allDayOffice("w", 2))
	dy := newDay(l, d(1))
	type run struct{ w, step, slots int }
	r := rand.New(rand.NewPCG(seed, 0))
	var runs []run
	for range 400 {
		base := []int{60, 124, 188, 252}[r.IntN(4)]
		runs = append(runs, run{r.IntN(2), base + r.IntN(8), 1 + r.IntN(3)})
	}
	var owner [2][288]atomic.Int32
	var wins atomic.Int64
	for round := range 30 {
		raceGo(8, func(g int) {
			var mine []run
			for _, x := range runs {
				if !dy.claim(x.w, x.step, x.slots) {
					continue
				}
				wins.Add(1)
				for s := x.step; s < x.step+x.slots; s++ {
					if !owner[x.w][s].CompareAndSwap(0, int32(g+1)) {
						t.Errorf("seed %d round %d: claim invariant C1: window %d step %d claimed by goroutines %d and %d", seed, round, x.w, s, owner[x.w][s].Load()-1, g)
					}
				}
				mine = append(mine, x)
			}
			for _, x := range mine {
				for s := x.step; s < x.step+x.slots; s++ {
					owner[x.w][s].Store(0)
				}
				dy.release(x.w, x.step, x.slots)
			}
		})
		if t.Failed() {
			return
		}
		if got, want := int(dy.freeSeats()), 2*288; got != want || dy.popcount() != want {
			t.Fatalf("round %d: free %d, popcount %d after releasing everything; want %d (claim invariant C3)", round, got, dy.popcount(), want)
		}
	}
	if wins.Load() == 0 {
		t.Fatal("no claim succeeded")
	}
}

// TestHammerClaimInvariantC1Lockstep makes the race as tight as it gets:
// one goroutine per core, released together by a spinning barrier, all
// claim the same run (alternately one step and a run across the 63/64 word
// boundary) thousands of times. Exactly one wins each time. A claim that
// loads and stores instead of compare-and-swapping lets two win.
func TestHammerClaimInvariantC1Lockstep(t *testing.T) {
	l := mustLayout(t, allDayOffice("w", 1))
	dy := newDay(l, d(1))
	procs := max(runtime.GOMAXPROCS(0), 2)
	const rounds = 2000
	var arrived atomic.Int64
	barrier := func(n int64) {
		arrived.Add(1)
		for spins := 0; arrived.Load() < n*int64(procs); spins++ {
			if spins%4096 == 4095 {
				runtime.Gosched()
			}
		}
	}
	winners := make([]atomic.Int32, rounds)
	raceGo(procs, func(g int) {
		for i := range rounds {
			step, slots := 10, 1
			if i%2 == 1 {
				step, slots = 62, 4
			}
			barrier(int64(2*i + 1))
			won := dy.claim(0, step, slots)
			if won {
				winners[i].Add(1)
			}
			barrier(int64(2*i + 2))
			if won {
				dy.release(0, step, slots)
			}
		}
	})
	for i := range winners {
		if n := winners[i].Load(); n != 1 {
			t.Fatalf("claim invariant C1: round %d of %d had %d winners, want 1", i, rounds, n)
		}
	}
	checkDay(t, dy)
}

// TestHammerDesignInvariant1MultiStepAcrossWordBoundary: 2-step holds at
// starts straddling steps 63/64 and 127/128 of a 5-minute office, with
// cancels and re-holds racing; overlapping runs never both win and the
// bitmaps equal the union of the active bookings' runs afterwards.
func TestHammerDesignInvariant1MultiStepAcrossWordBoundary(t *testing.T) {
	const seed = 4
	e, _ := newTestEngine(t, allDayOffice("w", 2))
	date := d(2)
	var ok atomic.Int64
	raceGo(12, func(g int) {
		r := rand.New(rand.NewPCG(seed, uint64(g)))
		for i := range 150 {
			step := []int{62, 63, 64, 126, 127, 128}[r.IntN(6)]
			b, err := e.Hold(t0, HoldRequest{Office: "w", Service: "two", Applicant: fmt.Sprintf("g%d-%d", g, i), Start: date.At(5*step, msk)}, portal())
			if err != nil {
				if !errors.Is(err, ErrSlotTaken) {
					t.Errorf("seed %d: hold: %v", seed, err)
				}
				continue
			}
			ok.Add(1)
			if r.IntN(2) == 0 {
				if _, err := e.Cancel(t0, b.ID, b.Applicant, portal()); err != nil {
					t.Errorf("seed %d: cancel: %v", seed, err)
				}
			}
		}
	})
	if ok.Load() == 0 {
		t.Fatal("no hold succeeded")
	}
	checkSeatsExact(t, e)
}

// TestHammerLifecycleInvariantL1 races, on each of 240 held bookings,
// confirm, the applicant's cancel, an operator's force-cancel, a
// reschedule and a Tick past the hold's expiry. Each booking's history
// must be one serial path through the state diagram containing exactly
// the operations that reported success (plus the expiry, if it won), and
// its seat must be owned exactly while it is active.
func TestHammerLifecycleInvariantL1(t *testing.T) {
	const seed = 5
	e, _ := newTestEngine(t, hammerOffice("l", 3, "09:00-18:00"))
	r := rand.New(rand.NewPCG(seed, 0))
	base := t0
	wins := map[string]int{}
	actors := []string{"confirm", "cancel", "force", "resched", "expiry"}
	allWon := func() bool {
		for _, a := range actors {
			if wins[a] == 0 {
				return false
			}
		}
		return true
	}
	// At least 12 rounds; more, up to 48, until every transition has won a
	// race at least once: on a loaded machine the scheduler can starve one
	// of them for a dozen rounds, which says nothing about L1.
	for round := 0; round < 12 || (round < 48 && !allWon()); round++ {
		now := base.Add(time.Duration(round) * time.Hour)
		var ids []Booking
		for i := range 20 {
			b, err := e.Hold(now, HoldRequest{Office: "l", Service: "patent", Applicant: fmt.Sprintf("r%d-%d", round, i),
				EarliestAfter: d(5).At(9*60, msk)}, portal())
			if err != nil {
				t.Fatalf("seed %d: hold: %v", seed, err)
			}
			ids = append(ids, b)
		}
		targets := make([]time.Time, len(ids))
		for i := range targets {
			targets[i] = d(6).At(9*60+15*r.IntN(6), msk) // few steps: reschedules collide
		}
		type outcome struct {
			actor string
			err   error
		}
		results := make([][]outcome, len(ids))
		var mu sync.Mutex
		record := func(i int, actor string, err error) {
			mu.Lock()
			results[i] = append(results[i], outcome{actor, err})
			mu.Unlock()
		}
		act := now.Add(time.Minute)         // within the hold's TTL
		expire := now.Add(11 * time.Minute) // past it
		// The expiry races in two rounds of three, and each booking's four
		// callers start in a rotated order: on a machine that runs them
		// one after the other, every transition still gets to win.
		racers := 4 * len(ids)
		if round%3 != 1 {
			racers++
		}
		raceGo(racers, func(g int) {
			if g == 4*len(ids) {
				if err := e.Tick(expire); err != nil {
					t.Errorf("tick: %v", err)
				}
				return
			}
			i, b := g/4, ids[g/4]
			var err error
			switch (g%4 + i + round) % 4 {
			case 0:
				_, err = e.Confirm(act, b.ID, b.Applicant, Meta{Actor: "confirm"})
				record(i, "confirm", err)
			case 2:
				_, err = e.Cancel(act, b.ID, b.Applicant, Meta{Actor: "cancel"})
				record(i, "cancel", err)
			case 3:
				_, err = e.ForceCancel(act, b.ID, Meta{Actor: "force"})
				record(i, "force", err)
			case 1:
				// The reschedule needs the confirm first: retry while held.
				for {
					_, err = e.Reschedule(act, b.ID, RescheduleRequest{Applicant: b.Applicant, Start: targets[i]}, Meta{Actor: "resched"})
					if cur, _ := e.Get(b.ID, ""); !errors.Is(err, ErrInvalidTransition) || cur.Status != StatusHeld {
						break
					}
				}
				record(i, "resched", err)
			}
		})
		for i, b := range ids {
			got, _ := e.Get(b.ID, "")
			h := got.History.Transitions()
			succeeded := map[string]bool{}
			for _, o := range results[i] {
				if o.err == nil {
					succeeded[o.actor] = true
				} else if !errors.Is(o.err, ErrInvalidTransition) && !errors.Is(o.err, ErrSlotTaken) {
					t.Fatalf("seed %d: %s of %s: unexpected %v", seed, o.actor, b.ID, o.err)
				}
			}
			var path []string
			for _, x := range h[1:] {
				path = append(path, x.Actor)
				if x.Actor == ActorSystem {
					wins["expiry"]++
				} else {
					wins[x.Actor]++
					if !succeeded[x.Actor] {
						t.Fatalf("seed %d: lifecycle invariant L1: %s in the history of %s but it reported failure; results %v", seed, x.Actor, b.ID, results[i])
					}
					delete(succeeded, x.Actor)
				}
			}
			if len(succeeded) != 0 {
				t.Fatalf("seed %d: lifecycle invariant L1: %v reported success on %s but are not in its history %v", seed, succeeded, b.ID, path)
			}
			if !validPath(h) {
				t.Fatalf("seed %d: history of %s is not a path of the state diagram: %v", seed, b.ID, h)
			}
		}
		checkSeatsExact(t, e)
	}
	for _, actor := range actors {
		if wins[actor] == 0 {
			t.Errorf("seed %d: %s never won a race; wins %v", seed, actor, wins)
		}
	}
	t.Logf("transitions won: %v", wins)
}

// validPath reports whether h is a path of the state diagram from held
// through the transitions this hammer races.
func validPath(h []Transition) bool {
	next := map[Status][]Status{
		StatusHeld:      {StatusConfirmed, StatusCancelled, StatusExpired},
		StatusConfirmed: {StatusConfirmed, StatusCancelled},
	}
	if len(h) == 0 || h[0].Status != StatusHeld {
		return false
	}
	for i := 1; i < len(h); i++ {
		if !slices.Contains(next[h[i-1].Status], h[i].Status) {
			return false
		}
	}
	return true
}
