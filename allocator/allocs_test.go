package allocator

import (
	"testing"
	"time"
	"unsafe"
)

// Claim invariants C2 and C4 of calendar.go, checked on a day built straight
// from a layout: no engine, no journal, just the bitmaps.

// allDayOffice has a 5-minute grid open around the clock, so a day has 288
// steps, 5 words per window, and a short run can cross the word boundary
// between steps 63 and 64.
func allDayOffice(id string, windows int) OfficeConfig {
	all := []string{"00:00-24:00"}
	return OfficeConfig{
		ID: id, Name: "Office " + id, Region: "moscow", City: "Москва",
		Timezone: "Europe/Moscow", SlotMinutes: 5, Windows: windows,
		Hours: map[string][]string{"mon": all, "tue": all, "wed": all, "thu": all, "fri": all, "sat": all, "sun": all},
		Services: []ServiceConfig{
			{ID: "one", Name: "One step", Slots: 1, Reschedulable: true},
			{ID: "two", Name: "Two steps", Slots: 2, Reschedulable: true},
			{ID: "three", Name: "Three steps", Slots: 3},
		},
		Policy: DefaultPolicy(),
	}
}

func mustLayout(t testing.TB, cfg OfficeConfig) *layout {
	t.Helper()
	l, err := compileLayout(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestClaimInvariantC4ClaimReleaseDoNotAllocate asserts 0 allocations on
// the hot path: day.claim, day.release and day.claimAny.
func TestClaimInvariantC4ClaimReleaseDoNotAllocate(t *testing.T) {
	l := mustLayout(t, allDayOffice("a", 4))
	dy := newDay(l, DateOf(t0))
	f := func(name string, fn func()) {
		t.Helper()
		if n := testing.AllocsPerRun(1000, fn); n != 0 {
			t.Fatalf("%s: %v allocations per run, want 0", name, n)
		}
	}
	f("claim+release 1 step", func() {
		if !dy.claim(1, 10, 1) {
			t.Fatal("claim failed")
		}
		dy.release(1, 10, 1)
	})
	f("claim+release across words", func() {
		if !dy.claim(2, 63, 2) {
			t.Fatal("claim failed")
		}
		dy.release(2, 63, 2)
	})
	f("failed claim", func() {
		if !dy.claim(0, 100, 1) {
			t.Fatal("claim failed")
		}
		if dy.claim(0, 99, 3) {
			t.Fatal("overlapping claim succeeded")
		}
		dy.release(0, 100, 1)
	})
	f("claimAny+release", func() {
		w := dy.claimAny(l.windows, 200, 3)
		if w < 0 {
			t.Fatal("claimAny found nothing")
		}
		dy.release(w, 200, 3)
	})
	checkDay(t, dy)
}

// TestClaimInvariantC2RollbackAcrossWordBoundary: a run across the word
// boundary whose second word is taken fails and leaves the first word as
// it was; so does a run whose first word is taken.
func TestClaimInvariantC2RollbackAcrossWordBoundary(t *testing.T) {
	l := mustLayout(t, allDayOffice("a", 2))
	dy := newDay(l, DateOf(t0))
	if l.words != 5 || l.steps != 288 {
		t.Fatalf("layout has %d words, %d steps; want 5, 288", l.words, l.steps)
	}
	if !dy.claim(1, 64, 1) { // step 64 is bit 0 of word 1
		t.Fatal("claim of step 64 failed")
	}
	word0, word1 := dy.bits[1*dy.words].Load(), dy.bits[1*dy.words+1].Load()
	free := dy.freeSeats()
	for _, run := range [][2]int{{62, 3}, {63, 2}, {60, 8}, {64, 1}, {0, 65}} {
		if dy.claim(1, run[0], run[1]) {
			t.Fatalf("claim of [%d,+%d) over a taken step 64 succeeded", run[0], run[1])
		}
		if got := dy.bits[1*dy.words].Load(); got != word0 {
			t.Fatalf("after failed claim [%d,+%d): word 0 is %#x, was %#x (C2: not rolled back)", run[0], run[1], got, word0)
		}
		if got := dy.bits[1*dy.words+1].Load(); got != word1 {
			t.Fatalf("after failed claim [%d,+%d): word 1 is %#x, was %#x", run[0], run[1], got, word1)
		}
		if got := dy.freeSeats(); got != free {
			t.Fatalf("after failed claim: free %d, was %d", got, free)
		}
	}
	// The other direction: first word taken, second word untouched.
	if !dy.claim(0, 63, 1) {
		t.Fatal("claim of step 63 failed")
	}
	w1 := dy.bits[0*dy.words+1].Load()
	if dy.claim(0, 63, 2) {
		t.Fatal("claim over a taken step 63 succeeded")
	}
	if got := dy.bits[0*dy.words+1].Load(); got != w1 {
		t.Fatalf("word 1 changed by a failed claim: %#x, was %#x", got, w1)
	}
	// A free run across the boundary is claimed whole and released whole.
	if !dy.claim(0, 126, 4) {
		t.Fatal("claim of [126,130) failed")
	}
	if dy.isFree(0, 127, 1) || dy.isFree(0, 128, 1) || !dy.isFree(0, 130, 1) || !dy.isFree(0, 125, 1) {
		t.Fatal("claim [126,130) took the wrong bits")
	}
	dy.release(0, 126, 4)
	checkDay(t, dy)
}

// checkDay asserts claim invariant C3 on one quiet day.
func checkDay(t testing.TB, dy *day) {
	t.Helper()
	if got, want := int(dy.freeSeats()), dy.popcount(); got != want {
		t.Fatalf("day %s: free counter %d, popcount %d (claim invariant C3)", dy.date, got, want)
	}
}

// TestClaimInvariantC4TransitionDayCostsNothingPerClaim: a night the
// clocks change has its step table built with the day; after that, finding
// a start's step, the claim, the release and a day's availability read
// allocate nothing there either.
func TestClaimInvariantC4TransitionDayCostsNothingPerClaim(t *testing.T) {
	for _, date := range []Date{springForward, fallBack} {
		cfg := allDayOffice("a", 4)
		cfg.Timezone = "Europe/Berlin"
		now := time.Date(2027, 3, 1, 12, 0, 0, 0, berlin)
		if date == fallBack {
			now = time.Date(2027, 10, 1, 12, 0, 0, 0, berlin)
		}
		e, _ := newEngineAt(t, now, cfg)
		o := mustOffice(t, e, "a")
		dy := o.day(o.lay.Load(), date)
		if dy.clock.table == nil {
			t.Fatalf("%s: no step table", date)
		}
		start := time.Date(2027, 3, 28, 3, 0, 0, 0, berlin) // after the change
		if date == fallBack {
			start = time.Date(2027, 10, 31, 2, 30, 0, 0, time.FixedZone("", 3600)) // the second 02:30
		}
		var steps []StepFree
		n := testing.AllocsPerRun(1000, func() {
			s, ok := dy.clock.stepAt(start)
			if !ok || !dy.clock.at(s).Equal(start) {
				t.Fatalf("%s: stepAt(%s) = %d, %v", date, start, s, ok)
			}
			w := dy.claimAny(4, s, 2)
			if w < 0 {
				t.Fatal("claimAny found nothing")
			}
			dy.release(w, s, 2)
			var err error
			if steps, _, err = e.AppendSlotSteps(steps[:0], now, "a", date, "two"); err != nil || len(steps) == 0 {
				t.Fatal(len(steps), err)
			}
		})
		if n != 0 {
			t.Fatalf("%s: %v allocations per claim and read, want 0", date, n)
		}
		checkDay(t, dy)
	}
}

// TestPerBookingSizes holds the engine's per-booking and per-applicant
// objects to the sizes the memory budget counts on (DESIGN §6, at most
// 256 bytes per active booking; BenchmarkMemoryPerBooking measures the
// whole): the record fills the 112-byte size class, the booking 16 bytes
// (its day is found from the record), an applicant's state 64 (its
// active count is summed from its services).
func TestPerBookingSizes(t *testing.T) {
	f := func(name string, got, want uintptr) {
		t.Helper()
		if got != want {
			t.Errorf("%s is %d bytes, want %d", name, got, want)
		}
	}
	f("BookingRecord", unsafe.Sizeof(BookingRecord{}), 112)
	f("booking", unsafe.Sizeof(booking{}), 16)
	f("applicantState", unsafe.Sizeof(applicantState{}), 64)
	f("timerEntry", unsafe.Sizeof(timerEntry{}), 16)
}
