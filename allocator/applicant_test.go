package allocator

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// TestDefectApplicantStateKeptAfterFailedHolds: an applicant whose holds
// all failed has nothing the rules need, yet its state stayed in the
// table until restart: memory grew with every distinct id that ever
// tried (500k failed holds cost about 54 MB). The table must hold only
// the applicants with bookings.
func TestDefectApplicantStateKeptAfterFailedHolds(t *testing.T) {
	e, _ := newTestEngine(t, testOffice("a"))
	start := at(3, 9, 0)
	for _, a := range []string{"holder-1", "holder-2"} { // both windows
		mustHold(t, e, t0, HoldRequest{Office: "a", Service: "patent", Applicant: a, Start: start})
	}
	const tries = 1000
	for i := range tries {
		req := HoldRequest{Office: "a", Service: "patent", Applicant: fmt.Sprintf("bot-%d", i), Start: start}
		if i%2 == 1 { // the first free start after the released dates: none
			req.Start, req.EarliestAfter = time.Time{}, at(60, 9, 0)
		}
		_, err := e.Hold(t0, req, portal())
		wantErr(t, err, ErrSlotTaken)
	}
	if n := e.Stats().Applicants; n != 2 {
		t.Fatalf("%d applicant entries after %d failed holds, want 2 (the holders)", n, tries)
	}
	checkCounters(t, e)
}

// TestHammerApplicantFreesRacingHolds races holds and cancels of the same
// applicants on several goroutines while most holds fail (the seats are
// few), so that empty states are removed from the table (A1–A3) while
// other holds of the same applicant reserve through them. No applicant may
// ever have more active bookings than max_active_per_applicant; afterwards
// each applicant's count matches its bookings, and the table holds exactly
// the applicants with a booking. Meant for -race.
func TestHammerApplicantFreesRacingHolds(t *testing.T) {
	const (
		offices, maxActive = 4, 2
		applicants         = 300
		opsPerApplicant    = 24 // consecutive operations, from every goroutine, on one applicant
	)
	var cfgs []OfficeConfig
	for i := range offices {
		cfg := hammerOffice(fmt.Sprintf("h%d", i), 1, "09:00-10:00") // 4 starts, 1 window
		cfg.Policy.MaxActivePerApplicant = maxActive
		cfgs = append(cfgs, cfg)
	}
	// Commits yield, so that other holds of the applicant run while one
	// is between its reservation and its listing (A2, A3).
	e, err := New(Config{Journal: &MemJournal{Hook: func(*Change) { runtime.Gosched() }}})
	if err != nil {
		t.Fatal(err)
	}
	for _, cfg := range cfgs {
		if _, err := e.PutOffice(t0, cfg, Meta{Actor: "admin"}); err != nil {
			t.Fatal(err)
		}
	}
	var live [applicants]atomic.Int32 // per applicant: holds answered minus cancels begun
	var next atomic.Int64
	raceGo(8, func(g int) {
		rng := rand.New(rand.NewPCG(uint64(g), 7))
		for {
			op := next.Add(1) - 1
			k := int(op / opsPerApplicant)
			if k >= applicants {
				return
			}
			applicant := fmt.Sprintf("app-%d", k)
			req := HoldRequest{Office: fmt.Sprintf("h%d", rng.IntN(offices)), Service: "patent", Applicant: applicant,
				Start: d(3).At(9*60+15*rng.IntN(4), msk)}
			b, err := e.Hold(t0, req, portal())
			if err != nil {
				if !errors.Is(err, ErrSlotTaken) && !errors.Is(err, ErrLimitReached) && !errors.Is(err, ErrDuplicateBooking) {
					t.Errorf("hold: %v", err)
				}
				continue
			}
			if n := live[k].Add(1); n > maxActive {
				t.Errorf("%s has %d active bookings, the limit is %d", applicant, n, maxActive)
			}
			if rng.IntN(4) > 0 { // most are cancelled, so seats come free again
				live[k].Add(-1) // before the cancel: never counts a booking already gone
				if _, err := e.Cancel(t0, b.ID, applicant, portal()); err != nil {
					t.Errorf("cancel: %v", err)
				}
			}
		}
	})
	withBookings := 0
	for k := range applicants {
		applicant := fmt.Sprintf("app-%d", k)
		list := e.apps.list(applicant)
		if len(list) > 0 {
			withBookings++
		}
		activeBookings := 0
		for _, b := range list {
			if b.rec.Load().Status.Active() {
				activeBookings++
			}
		}
		if active, _ := e.apps.snapshot(applicant); active != activeBookings || active > maxActive {
			t.Fatalf("%s: the table counts %d active, its bookings %d (limit %d)", applicant, active, activeBookings, maxActive)
		}
	}
	if n := e.Stats().Applicants; n != withBookings {
		t.Fatalf("%d applicant entries, want %d (those with bookings)", n, withBookings)
	}
	if withBookings == applicants || withBookings == 0 {
		t.Fatalf("%d of %d applicants booked: the run never or always freed a state", withBookings, applicants)
	}
	checkSeatsExact(t, e)
}

// TestDefectApplicantStateKeptAfterWatches: the per-applicant count of
// active watches kept an entry at zero for every applicant that ever
// watched; it must hold only applicants with active watches.
func TestDefectApplicantStateKeptAfterWatches(t *testing.T) {
	e, _ := newTestEngine(t, testOffice("a"))
	for i := range 100 {
		a := fmt.Sprintf("watcher-%d", i)
		w, err := e.Watch(t0, WatchRequest{Applicant: a, Service: "patent", Office: "a", From: d(1), To: d(5)}, portal())
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Unwatch(t0, w.ID, a, portal()); err != nil {
			t.Fatal(err)
		}
	}
	e.watches.mu.Lock()
	n := len(e.watches.perApplicant)
	e.watches.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d applicants counted after every watch was deleted, want 0", n)
	}
}
