package allocator

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"slotd/internal/slotdtest/testtime"
)

// lotteryOffice: one window, release at 00:00 with a 2s lottery.
func lotteryOffice() OfficeConfig {
	cfg := testOffice("a")
	cfg.Windows = 1
	cfg.Policy.ReleaseLottery = Duration(2 * time.Second)
	return cfg
}

// releaseDay31 opens d(31) at midnight; the lottery window is [00:00, 00:00:02).
func lotteryEngine(t *testing.T, seed string) *Engine {
	t.Helper()
	e, err := New(Config{Journal: &MemJournal{}, LotterySeed: []byte(seed)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.PutOffice(at(0, 23, 0), lotteryOffice(), Meta{}); err != nil {
		t.Fatal(err)
	}
	if err := e.Tick(at(1, 0, 0)); err != nil {
		t.Fatal(err)
	}
	return e
}

type lotteryOutcome struct {
	applicant string
	start     time.Time
	err       error
}

// enter sends requests concurrently (each waits for the draw), waits until
// all are queued, then closes the window with Tick and collects outcomes.
func enter(t *testing.T, e *Engine, now time.Time, reqs []HoldRequest) []lotteryOutcome {
	t.Helper()
	out := make([]lotteryOutcome, len(reqs))
	var wg sync.WaitGroup
	o, _ := e.office("a")
	lot := o.lottery.Load()
	for i, r := range reqs {
		// Enter one at a time so arrival order is exactly the slice order.
		before := e.Stats().LotteryEntries
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, err := e.Hold(now, r, portal())
			out[i] = lotteryOutcome{r.Applicant, b.Start, err}
		}()
		testtime.EventuallyTrue(t, 10*time.Second, "the request to enter the lottery", func() bool {
			return e.Stats().LotteryEntries != before || lotteryRefused(lot, r)
		})
	}
	if err := e.Tick(at(1, 0, 0).Add(2 * time.Second)); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	return out
}

// lotteryRefused reports whether r's applicant already has an entry (its
// repeat is refused at once without counting).
func lotteryRefused(lot *lottery, r HoldRequest) bool {
	lot.mu.Lock()
	defer lot.mu.Unlock()
	return lot.keys[entryKey(r.Applicant, "a", r.Service)]
}

func winners(out []lotteryOutcome) map[string]time.Time {
	w := map[string]time.Time{}
	for _, o := range out {
		if o.err == nil {
			w[o.applicant] = o.start
		}
	}
	return w
}

// Fairness F1: the order of winners does not depend on arrival order
// inside the window.
func TestLotteryOrderIndependentOfArrival(t *testing.T) {
	const applicants = 40
	var reqs []HoldRequest
	for i := 0; i < applicants; i++ {
		reqs = append(reqs, HoldRequest{Office: "a", Service: "patent", Applicant: fmt.Sprintf("p%02d", i), EarliestAfter: at(31, 9, 0)})
	}
	// d(31) has 32 one-window seats: 40 applicants, 8 lose.
	inWindow := at(1, 0, 0).Add(time.Second)
	a := winners(enter(t, lotteryEngine(t, "seed-1"), inWindow, reqs))
	shuffled := append([]HoldRequest(nil), reqs...)
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	b := winners(enter(t, lotteryEngine(t, "seed-1"), inWindow, shuffled))
	if len(a) != 32 || len(b) != 32 {
		t.Fatalf("winners %d and %d, want 32", len(a), len(b))
	}
	for app, start := range a {
		if !b[app].Equal(start) {
			t.Fatalf("applicant %s got %s in one arrival order and %s in another", app, start, b[app])
		}
	}
	// The draw is not first-come-first-served: the first 32 arrivals are
	// not exactly the winners.
	firstCome := 0
	for _, r := range reqs[:32] {
		if _, ok := a[r.Applicant]; ok {
			firstCome++
		}
	}
	if firstCome == 32 {
		t.Fatal("lottery served in arrival order")
	}
	// Another seed gives another order.
	c := winners(enter(t, lotteryEngine(t, "seed-2"), inWindow, reqs))
	same := true
	for app, start := range a {
		if !c[app].Equal(start) {
			same = false
		}
	}
	if same {
		t.Fatal("two seeds drew the same order")
	}
}

// Fairness F2/F3: repeats are refused, limits hold inside the lottery.
func TestLotteryOneEntryPerApplicantAndLimits(t *testing.T) {
	e := lotteryEngine(t, "seed")
	// An applicant with an active patent booking is refused as a duplicate.
	mustHold(t, e, at(1, 0, 0).Add(-time.Minute), HoldRequest{Office: "a", Service: "patent", Applicant: "has", Start: at(2, 10, 0)})
	inWindow := at(1, 0, 0).Add(500 * time.Millisecond)
	var reqs []HoldRequest
	for i := 0; i < 10; i++ { // a bot repeating itself
		reqs = append(reqs, HoldRequest{Office: "a", Service: "patent", Applicant: "bot", Start: at(31, 9, 0).Add(time.Duration(i) * 15 * time.Minute)})
	}
	reqs = append(reqs, HoldRequest{Office: "a", Service: "patent", Applicant: "has", Start: at(31, 12, 0)})
	out := enter(t, e, inWindow, reqs)
	won, dup := 0, 0
	for _, o := range out {
		switch {
		case o.err == nil:
			won++
		case errors.Is(o.err, ErrDuplicateBooking):
			dup++
		default:
			t.Fatalf("unexpected %v", o.err)
		}
	}
	if won != 1 || dup != 10 {
		t.Fatalf("bot won %d, %d duplicates", won, dup)
	}
	// After the window, first come first served resumes at once.
	if _, err := e.Hold(at(1, 0, 3), HoldRequest{Office: "a", Service: "patent", Applicant: "late", Start: at(31, 15, 0)}, portal()); err != nil {
		t.Fatal(err)
	}
	// A date released earlier is not in the lottery.
	if got := e.Stats().LotteryEntries; got != 2 {
		t.Fatalf("%d entries", got)
	}
}
