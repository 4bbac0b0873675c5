package allocator

import (
	"errors"
	"testing"
	"time"

	"slotd/internal/slotdtest/testtime"
)

// Test fixtures shared by the package's tests.

// The clock fixtures of every package's tests (testtime), under short
// names for the hundreds of call sites here. t0 is a Monday morning in
// Moscow, before the release minute of the next day.
var (
	msk    = testtime.MSK
	berlin = testtime.Berlin
	t0     = testtime.T0
	at     = testtime.At
)

// testOffice: 2 windows, 15-minute grid, Mon–Fri 09:00–13:00 and 14:00–18:00,
// a 1-step reschedulable service and a 2-step non-reschedulable one. It is
// slotdtest.Office(id, 2), written again because the package's own tests
// cannot import slotdtest: slotdtest imports allocator, an import cycle.
func testOffice(id string) OfficeConfig {
	wk := []string{"09:00-13:00", "14:00-18:00"}
	return OfficeConfig{
		ID: id, Name: "Office " + id, Region: "moscow", City: "Москва", Address: "ул. Тестовая, 1",
		Timezone: "Europe/Moscow", SlotMinutes: 15, Windows: 2,
		Hours: map[string][]string{"mon": wk, "tue": wk, "wed": wk, "thu": wk, "fri": wk},
		Services: []ServiceConfig{
			{ID: "patent", Name: "Патент", Slots: 1, Reschedulable: true},
			{ID: "rvp", Name: "РВП", Slots: 2},
		},
		Policy: DefaultPolicy(),
	}
}

// newTestEngine is newEngineAt at t0.
func newTestEngine(t testing.TB, offices ...OfficeConfig) (*Engine, *MemJournal) {
	t.Helper()
	return newEngineAt(t, t0, offices...)
}

// newEngineAt returns an engine on a MemJournal with offices put at now,
// and the journal.
func newEngineAt(t testing.TB, now time.Time, offices ...OfficeConfig) (*Engine, *MemJournal) {
	t.Helper()
	j := &MemJournal{}
	e, err := New(Config{Journal: j})
	if err != nil {
		t.Fatal(err)
	}
	for _, cfg := range offices {
		if _, err := e.PutOffice(now, cfg, Meta{Actor: "admin"}); err != nil {
			t.Fatalf("PutOffice %s: %v", cfg.ID, err)
		}
	}
	return e, j
}

// restored is a fresh engine recovered from what j holds, the way the
// journal's recovery feeds it: offices, bookings, number marks, watches,
// then RestoreDone at now. It returns the engine and its own journal.
func restored(t testing.TB, j *MemJournal, now time.Time) (*Engine, *MemJournal) {
	t.Helper()
	j2 := &MemJournal{}
	r, err := New(Config{Journal: j2})
	if err != nil {
		t.Fatal(err)
	}
	offices, bookings := j.Latest()
	for _, o := range offices {
		if err := r.RestoreOffice(o); err != nil {
			t.Fatal(err)
		}
	}
	for _, b := range bookings {
		if err := r.RestoreBooking(b); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range j.SeqMarks() {
		if err := r.RestoreSeqMark(m); err != nil {
			t.Fatal(err)
		}
	}
	for _, w := range j.ActiveWatches() {
		if err := r.RestoreWatch(w); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.RestoreDone(now); err != nil {
		t.Fatal(err)
	}
	return r, j2
}

func portal() Meta { return Meta{Actor: "portal-a"} }

func mustHold(t testing.TB, e *Engine, now time.Time, req HoldRequest) Booking {
	t.Helper()
	b, err := e.Hold(now, req, portal())
	if err != nil {
		t.Fatalf("Hold(%+v): %v", req, err)
	}
	return b
}

func wantErr(t testing.TB, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("got error %v, want %v", err, want)
	}
}

// checkCounters asserts claim invariant C3 on every materialised day.
func checkCounters(t testing.TB, e *Engine) {
	t.Helper()
	for _, id := range e.OfficeIDs() {
		o, _ := e.office(id)
		for date, d := range *o.days.Load() {
			if got, want := int(d.freeSeats()), d.popcount(); got != want {
				t.Fatalf("office %s %s: free counter %d, bitmap popcount %d", id, date, got, want)
			}
		}
	}
}
