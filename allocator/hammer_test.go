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

// checkSeatsExact asserts DESIGN invariant 1 and claim invariant C3 by
// brute force on a quiet engine: no seat has two active owners, and every
// bit of every materialised day is 1 exactly when the step is open, the day
// is not closed and no active booking owns the seat.
func checkSeatsExact(t testing.TB, e *Engine) (active int) {
	t.Helper()
	owners := map[seatKey]ID{}
	e.index.each(func(b *booking) bool {
		r := b.rec.Load()
		if !r.Status.Active() {
			return true
		}
		active++
		for s := r.Step; s < r.Step+r.Slots; s++ {
			k := seatKey{r.Office, r.Date, r.Window, s}
			if other, dup := owners[k]; dup {
				t.Fatalf("DESIGN invariant 1: seat %s %s window %d step %d owned by %s and %s", r.Office, r.Date, r.Window, s, other, r.ID)
			}
			owners[k] = r.ID
		}
		return true
	})
	for _, id := range e.OfficeIDs() {
		o, _ := e.office(id)
		l := o.lay.Load()
		for date, dy := range *o.days.Load() {
			open := l.open[date.Weekday()]
			for w := 0; w < l.windows; w++ {
				for s := 0; s < l.steps; s++ {
					want := !dy.closed.Load() && open[s/64]&(1<<(s%64)) != 0
					if _, owned := owners[seatKey{id, date, uint16(w), uint16(s)}]; owned {
						want = false
					}
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
// for the 144 seats of one office-date (640 exact starts, then 320
// earliest_after from its midnight, which move on to the next date once it
// is full). Exactly 144 succeed on the date, each seat has one owner, the
// day ends with no free bit.
func TestHammerClaimInvariantC1HotOfficeDate(t *testing.T) {
	const seed = 1
	e, _ := newTestEngine(t, hammerOffice("hot", 4, "09:00-18:00"))
	date := d(2)
	const seats = 4 * 36
	var ok, later, taken atomic.Int64
	raceGo(16, func(g int) {
		r := rand.New(rand.NewPCG(seed, uint64(g)))
		for i := range 60 {
			req := HoldRequest{Office: "hot", Service: "patent", Applicant: fmt.Sprintf("g%d-%d", g, i)}
			if i < 40 {
				req.Start = date.At(9*60+15*r.IntN(36), msk)
			} else {
				req.EarliestAfter = date.At(0, msk)
			}
			b, err := e.Hold(t0, req, portal())
			switch {
			case err == nil && b.Date == date:
				ok.Add(1)
			case err == nil: // earliest_after moved on to the next date
				later.Add(1)
			case errors.Is(err, ErrSlotTaken):
				taken.Add(1)
			default:
				t.Errorf("seed %d: hold: %v", seed, err)
				return
			}
		}
	})
	if ok.Load() != seats || ok.Load()+later.Load()+taken.Load() != 16*60 {
		t.Fatalf("seed %d: claim invariant C1: %d holds succeeded on %s, %d later, %d refused; want exactly %d of %d", seed, ok.Load(), date, later.Load(), taken.Load(), seats, 16*60)
	}
	if taken.Load() == 0 || later.Load() == 0 {
		t.Fatalf("no contention: %d refused, %d moved on", taken.Load(), later.Load())
	}
	if n := checkSeatsExact(t, e); n != seats+int(later.Load()) {
		t.Fatalf("%d active bookings, want %d", n, seats+later.Load())
	}
	if days, _ := e.Days(t0, "hot", "patent", date, date); len(days) != 1 || days[0].Free != 0 {
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
