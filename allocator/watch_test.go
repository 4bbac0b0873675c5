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

func matchedEvents(j *MemJournal) []Event { return eventsOf(j, EventWatchMatched) }

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

// eventsOf lists the events of type typ the journal committed, in order.
func eventsOf(j *MemJournal, typ string) []Event {
	var out []Event
	for _, c := range j.Changes() {
		for _, ev := range c.Events {
			if ev.Type == typ {
				out = append(out, ev)
			}
		}
	}
	return out
}

// W5: an applicant holding a booking of the service is moved to an
// earlier freed seat (a reschedule, same id), and the seat it leaves goes
// to the next watch, never free in between.
func TestWatchMovesHolderToEarlierSeat(t *testing.T) {
	e, j := newTestEngine(t, oneWindowOffice())
	early, late := at(2, 10, 0), at(4, 10, 0)
	owner := confirmed(t, e, t0, "owner", early)
	mine := confirmed(t, e, t0, "mover", late)
	w := watch(t, e, t0, "mover", true)
	watch(t, e, t0.Add(time.Second), "next", true)
	if _, err := e.Cancel(t0.Add(time.Minute), owner.ID, "owner", portal()); err != nil {
		t.Fatal(err)
	}
	moved, err := e.Get(mine.ID, "mover")
	if err != nil {
		t.Fatal(err)
	}
	if !moved.Start.Equal(early) || moved.Status != StatusConfirmed || moved.Reschedules != 1 {
		t.Fatalf("not moved: start %s status %s reschedules %d", moved.Start, moved.Status, moved.Reschedules)
	}
	if evs := eventsOf(j, EventRescheduled); len(evs) != 1 || evs[0].Booking.ID != mine.ID {
		t.Fatalf("rescheduled events: %+v", evs)
	}
	evs := matchedEvents(j)
	if len(evs) != 2 || evs[0].Watch.ID != w.ID || evs[0].Booking == nil || evs[0].Booking.ID != mine.ID ||
		evs[0].StartUnixNano != early.UnixNano() {
		t.Fatalf("matched events: %+v", evs)
	}
	// The seat left behind went straight to the next watch.
	if evs[1].Booking == nil || evs[1].Booking.Applicant != "next" || evs[1].StartUnixNano != late.UnixNano() {
		t.Fatalf("old seat: %+v", evs[1])
	}
	_, err = hold(e, t0.Add(time.Minute), "fast-bot", "patent", late)
	wantErr(t, err, ErrSlotTaken)
	if err := e.Verify(); err != nil {
		t.Fatal(err)
	}
}

// W5: the old seat of a moved booking becomes free when no watch wants it.
func TestWatchMovedHolderFreesOldSeat(t *testing.T) {
	e, _ := newTestEngine(t, oneWindowOffice())
	early, late := at(2, 10, 0), at(4, 10, 0)
	owner := confirmed(t, e, t0, "owner", early)
	confirmed(t, e, t0, "mover", late)
	watch(t, e, t0, "mover", true)
	if _, err := e.Cancel(t0.Add(time.Minute), owner.ID, "owner", portal()); err != nil {
		t.Fatal(err)
	}
	mustHold(t, e, t0.Add(time.Minute), HoldRequest{Office: "a", Service: "patent", Applicant: "other", Start: late})
	if err := e.Verify(); err != nil {
		t.Fatal(err)
	}
}

// W5: a seat later than the holder's booking is no match, with or without
// auto_hold; the next watch is served.
func TestWatchHolderNotOfferedLaterSeat(t *testing.T) {
	e, j := newTestEngine(t, oneWindowOffice())
	early, late := at(2, 10, 0), at(4, 10, 0)
	mine := confirmed(t, e, t0, "mover", early)
	owner := confirmed(t, e, t0, "owner", late)
	auto := watch(t, e, t0, "mover", true)
	notify := watch(t, e, t0, "mover", false)
	watch(t, e, t0.Add(time.Second), "next", true)
	if _, err := e.Cancel(t0.Add(time.Minute), owner.ID, "owner", portal()); err != nil {
		t.Fatal(err)
	}
	evs := matchedEvents(j)
	if len(evs) != 1 || evs[0].Booking == nil || evs[0].Booking.Applicant != "next" {
		t.Fatalf("matched events: %+v", evs)
	}
	if got, _ := e.Get(mine.ID, "mover"); !got.Start.Equal(early) || got.Reschedules != 0 {
		t.Fatalf("holder moved to a later seat: %s", got.Start)
	}
	for _, w := range []WatchRecord{auto, notify} {
		if _, err := e.GetWatch(w.ID, "mover"); err != nil {
			t.Fatalf("unserved watch lost: %v", err)
		}
	}
}

// W5 without auto_hold: the holder is told of an earlier seat, which is
// released, and the booking stays where it is.
func TestWatchHolderNotifiedOfEarlierSeat(t *testing.T) {
	e, j := newTestEngine(t, oneWindowOffice())
	early, late := at(2, 10, 0), at(4, 10, 0)
	owner := confirmed(t, e, t0, "owner", early)
	mine := confirmed(t, e, t0, "mover", late)
	w := watch(t, e, t0, "mover", false)
	if _, err := e.Cancel(t0.Add(time.Minute), owner.ID, "owner", portal()); err != nil {
		t.Fatal(err)
	}
	evs := matchedEvents(j)
	if len(evs) != 1 || evs[0].Watch.ID != w.ID || evs[0].Booking != nil || evs[0].StartUnixNano != early.UnixNano() {
		t.Fatalf("matched events: %+v", evs)
	}
	if got, _ := e.Get(mine.ID, "mover"); !got.Start.Equal(late) {
		t.Fatalf("moved without auto_hold: %s", got.Start)
	}
	mustHold(t, e, t0.Add(time.Minute), HoldRequest{Office: "a", Service: "patent", Applicant: "other", Start: early})
}

// W5: a booking of a non-reschedulable service cannot be moved; its
// watch is skipped (and kept) and the next watch is served.
func TestWatchSkipsNonReschedulableHolder(t *testing.T) {
	e, j := newTestEngine(t, oneWindowOffice())
	early, late := at(2, 10, 0), at(4, 10, 0)
	owner := mustHold(t, e, t0, HoldRequest{Office: "a", Service: "rvp", Applicant: "owner", Start: early, Confirm: true})
	mine := mustHold(t, e, t0, HoldRequest{Office: "a", Service: "rvp", Applicant: "holder", Start: late, Confirm: true})
	req := WatchRequest{Applicant: "holder", Service: "rvp", Office: "a", From: d(1), To: d(10), AutoHold: true}
	skipped, err := e.Watch(t0, req, portal())
	if err != nil {
		t.Fatal(err)
	}
	req.Applicant = "next"
	if _, err := e.Watch(t0.Add(time.Second), req, portal()); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Cancel(t0.Add(time.Minute), owner.ID, "owner", portal()); err != nil {
		t.Fatal(err)
	}
	evs := matchedEvents(j)
	if len(evs) != 1 || evs[0].Booking == nil || evs[0].Booking.Applicant != "next" || evs[0].StartUnixNano != early.UnixNano() {
		t.Fatalf("matched events: %+v", evs)
	}
	if got, _ := e.Get(mine.ID, "holder"); !got.Start.Equal(late) {
		t.Fatalf("non-reschedulable booking moved to %s", got.Start)
	}
	if _, err := e.GetWatch(skipped.ID, "holder"); err != nil {
		t.Fatalf("skipped watch lost: %v", err)
	}
	if err := e.Verify(); err != nil {
		t.Fatal(err)
	}
}

// W5: a move is a reschedule, so max_reschedules bounds it.
func TestWatchSkipsHolderAtRescheduleLimit(t *testing.T) {
	cfg := oneWindowOffice()
	cfg.Policy.MaxReschedules = 0
	e, j := newTestEngine(t, cfg)
	early, late := at(2, 10, 0), at(4, 10, 0)
	owner := confirmed(t, e, t0, "owner", early)
	mine := confirmed(t, e, t0, "mover", late)
	watch(t, e, t0, "mover", true)
	if _, err := e.Cancel(t0.Add(time.Minute), owner.ID, "owner", portal()); err != nil {
		t.Fatal(err)
	}
	if evs := matchedEvents(j); len(evs) != 0 {
		t.Fatalf("matched events: %+v", evs)
	}
	if got, _ := e.Get(mine.ID, "mover"); !got.Start.Equal(late) {
		t.Fatalf("moved past the limit: %s", got.Start)
	}
	mustHold(t, e, t0.Add(time.Minute), HoldRequest{Office: "a", Service: "patent", Applicant: "other", Start: early})
}

// W5 across offices: a region watch moves the booking to an earlier seat
// at another office of the region, and frees its seat at the first.
func TestWatchMovesHolderAcrossOffices(t *testing.T) {
	other := oneWindowOffice()
	other.ID = "b"
	e, j := newTestEngine(t, oneWindowOffice(), other)
	early, late := at(2, 10, 0), at(4, 10, 0)
	owner := confirmed(t, e, t0, "owner", early)
	mine := mustHold(t, e, t0, HoldRequest{Office: "b", Service: "patent", Applicant: "mover", Start: late, Confirm: true})
	if _, err := e.Watch(t0, WatchRequest{Applicant: "mover", Service: "patent", Region: "moscow", From: d(1), To: d(10), AutoHold: true}, portal()); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Cancel(t0.Add(time.Minute), owner.ID, "owner", portal()); err != nil {
		t.Fatal(err)
	}
	got, err := e.Get(mine.ID, "mover")
	if err != nil || got.Office != "a" || !got.Start.Equal(early) || got.Reschedules != 1 {
		t.Fatalf("not moved: %+v %v", got, err)
	}
	if evs := matchedEvents(j); len(evs) != 1 || evs[0].Booking.ID != mine.ID {
		t.Fatalf("matched events: %+v", evs)
	}
	mustHold(t, e, t0.Add(time.Minute), HoldRequest{Office: "b", Service: "patent", Applicant: "other", Start: late})
	if err := e.Verify(); err != nil {
		t.Fatal(err)
	}
	// The move and the watch's end were one durable change: recovery sees
	// the booking moved and no watch left.
	r, _ := restored(t, j, t0.Add(2*time.Minute))
	if got, err := r.Get(mine.ID, "mover"); err != nil || got.Office != "a" || !got.Start.Equal(early) {
		t.Fatalf("restored: %+v %v", got, err)
	}
	if n := r.watches.n.Load(); n != 0 {
		t.Fatalf("restored %d watches, want the served one gone", n)
	}
	if err := r.Verify(); err != nil {
		t.Fatal(err)
	}
}

// W1 within one Tick: seats freed by expiries that fall due in the same
// Tick are offered in the order their holds expired, whatever office and
// timer wheel they belong to. Office a's timers sit on a later wheel than
// b's, and a's hold expires first: its seat goes to the region's watch,
// b's to no one.
func TestTickOffersSeatsInTheOrderTheyFreed(t *testing.T) {
	oa, ob := testOffice("a"), testOffice("b")
	oa.Windows, ob.Windows = 1, 1
	e, j := newTestEngine(t, oa, ob)
	first := mustHold(t, e, t0, HoldRequest{Office: "a", Service: "patent", Applicant: "x", Start: at(2, 10, 0)})
	mustHold(t, e, t0.Add(time.Minute), HoldRequest{Office: "b", Service: "patent", Applicant: "y", Start: at(2, 10, 0)})
	w, err := e.Watch(t0.Add(2*time.Minute), WatchRequest{Applicant: "w", Service: "patent", Region: "moscow", From: d(1), To: d(10), AutoHold: true}, portal())
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Tick(t0.Add(time.Hour)); err != nil { // both holds expired meanwhile
		t.Fatal(err)
	}
	evs := matchedEvents(j)
	if len(evs) != 1 || evs[0].Watch.ID != w.ID || evs[0].Office != "a" || evs[0].Booking.Applicant != "w" {
		t.Fatalf("the watch was served %+v; want the seat of office a, whose hold (%s) expired first", evs, first.ID)
	}
}

// A watch may take an id its caller chose (the parts of a cluster's
// region watch share one); a second active watch under that id is
// refused, and the id is free again once the first is gone.
func TestWatchChosenID(t *testing.T) {
	e, _ := newTestEngine(t, oneWindowOffice())
	id := ID{0, 1, 2, 3}
	req := WatchRequest{Applicant: "w", Service: "patent", Office: "a", From: d(1), To: d(10), ID: id}
	w, err := e.Watch(t0, req, portal())
	if err != nil || w.ID != id {
		t.Fatalf("watch %v %v, want id %s", w.ID, err, id)
	}
	req.Applicant = "other"
	_, err = e.Watch(t0, req, portal())
	wantErr(t, err, ErrValidation)
	if err := e.Unwatch(t0, id, "w", portal()); err != nil {
		t.Fatal(err)
	}
	if w, err := e.Watch(t0, req, portal()); err != nil || w.ID != id {
		t.Fatalf("watch after the first was deleted: %v %v", w.ID, err)
	}
}
