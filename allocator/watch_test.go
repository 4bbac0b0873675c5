package allocator

import (
	"errors"
	"testing"
	"time"
)

// oneWindowOffice has a single desk so one booking fills a start.
func oneWindowOffice() OfficeConfig {
	c := testOffice("a")
	c.Windows = 1
	return c
}

func watch(t *testing.T, e *Engine, now time.Time, applicant string, auto bool) WatchRecord {
	t.Helper()
	w, err := e.Watch(now, WatchRequest{Applicant: applicant, Service: "patent", Office: "a", From: d(1), To: d(10), AutoHold: auto}, portal())
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func matchedEvents(j *MemJournal) []Event {
	var out []Event
	for _, c := range j.Changes() {
		for _, ev := range c.Events {
			if ev.Type == EventWatchMatched {
				out = append(out, ev)
			}
		}
	}
	return out
}

// W1, W3: a freed seat goes to the oldest auto-hold watch without ever
// being free; when that hold expires it passes to the next watch.
func TestWatchAutoHoldHandsOverInOrder(t *testing.T) {
	e, j := newTestEngine(t, oneWindowOffice())
	start := at(2, 10, 0)
	b := confirmed(t, e, t0, "owner", start)
	first := watch(t, e, t0, "first", true)
	watch(t, e, t0.Add(time.Second), "second", true)
	if _, err := e.Cancel(t0.Add(time.Minute), b.ID, "owner", portal()); err != nil {
		t.Fatal(err)
	}
	// Nobody can grab it: it went straight to the first watch.
	_, err := hold(e, t0.Add(time.Minute), "fast-bot", "patent", start)
	wantErr(t, err, ErrSlotTaken)
	evs := matchedEvents(j)
	if len(evs) != 1 || evs[0].Watch.ID != first.ID || evs[0].Booking == nil || evs[0].Booking.Applicant != "first" ||
		evs[0].Booking.Status != StatusHeld || evs[0].StartUnixNano != start.UnixNano() {
		t.Fatalf("matched events: %+v", evs)
	}
	if _, err := e.GetWatch(first.ID, "first"); !errors.Is(err, ErrWatchNotFound) {
		t.Fatal("served watch still active")
	}
	// The first applicant lets the hold expire: the seat passes on.
	if err := e.Tick(t0.Add(12 * time.Minute)); err != nil {
		t.Fatal(err)
	}
	evs = matchedEvents(j)
	if len(evs) != 2 || evs[1].Booking.Applicant != "second" {
		t.Fatalf("after expiry: %+v", evs)
	}
	_, err = hold(e, t0.Add(12*time.Minute), "fast-bot", "patent", start)
	wantErr(t, err, ErrSlotTaken)
	if err := e.Verify(); err != nil {
		t.Fatal(err)
	}
}

// W1 without auto_hold: the seat is freed and the watch is told.
func TestWatchNotifyOnly(t *testing.T) {
	e, j := newTestEngine(t, oneWindowOffice())
	start := at(2, 10, 0)
	b := confirmed(t, e, t0, "owner", start)
	w := watch(t, e, t0, "waiter", false)
	e.Cancel(t0, b.ID, "owner", portal())
	evs := matchedEvents(j)
	if len(evs) != 1 || evs[0].Watch.ID != w.ID || evs[0].Booking != nil || evs[0].StartUnixNano != start.UnixNano() {
		t.Fatalf("matched: %+v", evs)
	}
	mustHold(t, e, t0, HoldRequest{Office: "a", Service: "patent", Applicant: "waiter", Start: start})
}

// W2: an applicant who cannot hold is skipped and keeps the watch.
func TestWatchSkipsRefusedApplicant(t *testing.T) {
	cfg := oneWindowOffice()
	cfg.Policy.MaxActivePerApplicant = 1
	e, j := newTestEngine(t, cfg)
	start := at(2, 10, 0)
	b := confirmed(t, e, t0, "owner", start)
	full := watch(t, e, t0, "full", true)
	mustHold(t, e, t0, HoldRequest{Office: "a", Service: "rvp", Applicant: "full", Start: at(3, 10, 0)}) // at its limit
	watch(t, e, t0.Add(time.Second), "next", true)
	e.Cancel(t0, b.ID, "owner", portal())
	evs := matchedEvents(j)
	if len(evs) != 1 || evs[0].Booking.Applicant != "next" {
		t.Fatalf("matched: %+v", evs)
	}
	if _, err := e.GetWatch(full.ID, "full"); err != nil {
		t.Fatalf("refused watch lost: %v", err)
	}
	if err := e.Verify(); err != nil {
		t.Fatal(err)
	}
}

// W4: newly released dates go to watches first.
func TestWatchGetsNewlyReleasedDate(t *testing.T) {
	e, j := newTestEngine(t, oneWindowOffice())
	w, err := e.Watch(t0, WatchRequest{Applicant: "w", Service: "patent", Region: "moscow", From: d(31), To: d(40), AutoHold: true}, portal())
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Tick(at(1, 0, 0)); err != nil { // releases d(31)
		t.Fatal(err)
	}
	evs := matchedEvents(j)
	if len(evs) != 1 || evs[0].Watch.ID != w.ID || evs[0].Booking == nil || !time.Unix(0, evs[0].StartUnixNano).Equal(at(31, 9, 0)) {
		t.Fatalf("matched: %+v", evs)
	}
}

func TestWatchValidationAndLimits(t *testing.T) {
	e, _ := newTestEngine(t, oneWindowOffice())
	f := func(req WatchRequest, want error) {
		t.Helper()
		_, err := e.Watch(t0, req, portal())
		wantErr(t, err, want)
	}
	f(WatchRequest{Applicant: "x", Service: "patent", From: d(1), To: d(2)}, ErrValidation)                                // no office nor region
	f(WatchRequest{Applicant: "x", Service: "patent", Office: "a", Region: "moscow", From: d(1), To: d(2)}, ErrValidation) // both
	f(WatchRequest{Applicant: "x", Service: "patent", Office: "a", From: d(3), To: d(2)}, ErrValidation)
	f(WatchRequest{Applicant: "x", Service: "patent", Office: "zz", From: d(1), To: d(2)}, ErrOfficeNotFound)
	f(WatchRequest{Applicant: "x", Service: "nope", Office: "a", From: d(1), To: d(2)}, ErrServiceNotFound)
	for i := 0; i < watchesPerApplicantMax; i++ {
		watch(t, e, t0, "x", false)
	}
	f(WatchRequest{Applicant: "x", Service: "patent", Office: "a", From: d(1), To: d(2)}, ErrLimitReached)
	w := watch(t, e, t0, "y", false)
	wantErr(t, e.Unwatch(t0, w.ID, "x", portal()), ErrWatchNotFound) // another applicant's
	if err := e.Unwatch(t0, w.ID, "y", portal()); err != nil {
		t.Fatal(err)
	}
	wantErr(t, e.Unwatch(t0, w.ID, "y", portal()), ErrWatchNotFound)
}

// Closures cancel bookings but leave their applicants' watches active, and
// watches survive a restore.
func TestWatchSurvivesClosureAndRestore(t *testing.T) {
	e, j := newTestEngine(t, oneWindowOffice())
	confirmed(t, e, t0, "x", at(2, 10, 0))
	w := watch(t, e, t0, "x", true)
	if _, err := e.CloseDate(t0, "a", d(2), Meta{Actor: "admin"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.GetWatch(w.ID, "x"); err != nil {
		t.Fatalf("closure ended the watch: %v", err)
	}
	r, _ := restored(t, j, t0)
	if _, err := r.GetWatch(w.ID, "x"); err != nil {
		t.Fatalf("watch lost in restore: %v", err)
	}
}
