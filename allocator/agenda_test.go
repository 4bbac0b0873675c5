package allocator

import (
	"errors"
	"slices"
	"testing"
)

// agendaNumbers lists the numbers of an agenda page.
func agendaNumbers(t *testing.T, e *Engine, office string, date Date, f AgendaFilter, after AgendaKey, limit int) ([]string, bool) {
	t.Helper()
	list, more, err := e.Agenda(office, date, f, after, limit)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, b := range list {
		out = append(out, b.Number)
	}
	return out, more
}

func wantNumbers(t *testing.T, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

// TestAgendaOrderFiltersPages: a day's bookings come by window, then
// start, filtered by status and service, and a page continues after the
// key of the previous page's last booking.
func TestAgendaOrderFiltersPages(t *testing.T) {
	e, j := newTestEngine(t, testOffice("msk-1"))
	date := DateOf(at(2, 0, 0))
	a1 := mustHold(t, e, t0, HoldRequest{Office: "msk-1", Service: "patent", Applicant: "a1", Start: at(2, 10, 0), Confirm: true})
	a2 := mustHold(t, e, t0, HoldRequest{Office: "msk-1", Service: "patent", Applicant: "a2", Start: at(2, 10, 0)})
	a3 := mustHold(t, e, t0, HoldRequest{Office: "msk-1", Service: "rvp", Applicant: "a3", Start: at(2, 9, 0), Confirm: true})
	a4 := mustHold(t, e, t0, HoldRequest{Office: "msk-1", Service: "patent", Applicant: "a4", Start: at(2, 11, 0)})
	mustHold(t, e, t0, HoldRequest{Office: "msk-1", Service: "patent", Applicant: "a5", Start: at(3, 11, 0)}) // another date
	if a1.Window != 0 || a2.Window != 1 {
		t.Fatalf("windows %d, %d: the test expects the first free window", a1.Window, a2.Window)
	}

	got, more := agendaNumbers(t, e, "msk-1", date, AgendaFilter{}, AgendaKey{}, 10)
	wantNumbers(t, got, a3.Number, a1.Number, a4.Number, a2.Number)
	if more {
		t.Fatal("more after the whole day")
	}
	got, _ = agendaNumbers(t, e, "msk-1", date, AgendaFilter{Status: StatusConfirmed}, AgendaKey{}, 10)
	wantNumbers(t, got, a3.Number, a1.Number)
	got, _ = agendaNumbers(t, e, "msk-1", date, AgendaFilter{Service: "patent", Status: StatusHeld}, AgendaKey{}, 10)
	wantNumbers(t, got, a4.Number, a2.Number)

	got, more = agendaNumbers(t, e, "msk-1", date, AgendaFilter{}, AgendaKey{}, 2)
	wantNumbers(t, got, a3.Number, a1.Number)
	if !more {
		t.Fatal("no more after the first page")
	}
	after, err := ParseAgendaKey(AgendaKeyOf(&a1.BookingRecord).String())
	if err != nil || after != AgendaKeyOf(&a1.BookingRecord) {
		t.Fatalf("cursor round trip: %v, %v", after, err)
	}
	got, more = agendaNumbers(t, e, "msk-1", date, AgendaFilter{}, after, 2)
	wantNumbers(t, got, a4.Number, a2.Number)
	if more {
		t.Fatal("more after the last page")
	}

	// A restarted engine lists the same day.
	r, _ := restored(t, j, t0)
	got, _ = agendaNumbers(t, r, "msk-1", date, AgendaFilter{}, AgendaKey{}, 10)
	wantNumbers(t, got, a3.Number, a1.Number, a4.Number, a2.Number)

	if _, _, err := e.Agenda("nowhere", date, AgendaFilter{}, AgendaKey{}, 10); !errors.Is(err, ErrOfficeNotFound) {
		t.Fatalf("unknown office: %v", err)
	}
	for _, bad := range []string{"x", "1.2", "1.2.x", "70000.1.1", "-1.2.3"} {
		if _, err := ParseAgendaKey(bad); !errors.Is(err, ErrValidation) {
			t.Fatalf("cursor %q: %v", bad, err)
		}
	}
}

// TestAgendaFollowsReschedule: a rescheduled booking leaves its old
// date's agenda and joins the new one, once, also when it comes back.
func TestAgendaFollowsReschedule(t *testing.T) {
	e, _ := newTestEngine(t, testOffice("msk-1"))
	d2, d3 := DateOf(at(2, 0, 0)), DateOf(at(3, 0, 0))
	b := mustHold(t, e, t0, HoldRequest{Office: "msk-1", Service: "patent", Applicant: "a1", Start: at(2, 10, 0), Confirm: true})
	moved, err := e.Reschedule(t0, b.ID, RescheduleRequest{Applicant: "a1", Start: at(3, 10, 0)}, portal())
	if err != nil {
		t.Fatal(err)
	}
	got, _ := agendaNumbers(t, e, "msk-1", d2, AgendaFilter{}, AgendaKey{}, 10)
	wantNumbers(t, got)
	got, _ = agendaNumbers(t, e, "msk-1", d3, AgendaFilter{}, AgendaKey{}, 10)
	wantNumbers(t, got, moved.Number)
	back, err := e.Reschedule(t0, b.ID, RescheduleRequest{Applicant: "a1", Start: at(2, 12, 0)}, portal())
	if err != nil {
		t.Fatal(err)
	}
	got, _ = agendaNumbers(t, e, "msk-1", d2, AgendaFilter{}, AgendaKey{}, 10)
	wantNumbers(t, got, back.Number)
	got, _ = agendaNumbers(t, e, "msk-1", d3, AgendaFilter{}, AgendaKey{}, 10)
	wantNumbers(t, got)

	// The old number names nothing; the new one names the booking.
	office, date, seq, err := ParseNumber(b.Number)
	if err != nil {
		t.Fatal(err)
	}
	if got := e.Numbered(office, date, seq); len(got) != 0 {
		t.Fatalf("old number %s found %d bookings", b.Number, len(got))
	}
	office, date, seq, err = ParseNumber(back.Number)
	if err != nil {
		t.Fatal(err)
	}
	if got := e.Numbered(office, date, seq); len(got) != 1 || got[0].ID != b.ID {
		t.Fatalf("number %s: %+v", back.Number, got)
	}
}

// TestParseNumber: a number splits into office, date and sequence, and
// only the shape bookingNumber writes parses.
func TestParseNumber(t *testing.T) {
	date := DateOf(at(1, 0, 0))
	office, d, seq, err := ParseNumber(bookingNumber("msk-sakharovo", date, 42))
	if err != nil || office != "msk-sakharovo" || d != date || seq != 42 {
		t.Fatalf("got %q %s %d %v", office, d, seq, err)
	}
	if _, _, seq, err := ParseNumber(bookingNumber("o1", date, 123456)); err != nil || seq != 123456 {
		t.Fatalf("long seq: %d %v", seq, err)
	}
	for _, bad := range []string{"", "MSK", "MSK-20261201", "MSK-20261201-42", "msk-20261201-0042",
		"MSK-20261301-0042", "MSK-2026121-00042", "-20261201-0042", "MSK-20261201-00042", "MSK-20261201-0000",
		"MSK_X-20261201-0042", "MSK-20261201-99999999999"} {
		if _, _, _, err := ParseNumber(bad); !errors.Is(err, ErrValidation) {
			t.Fatalf("%q: %v", bad, err)
		}
	}
}

// TestAgendaConcurrentHolds: holds racing agenda reads on one date leave
// every booking listed once, and a read never sees a booking twice.
func TestAgendaConcurrentHolds(t *testing.T) {
	e, _ := newTestEngine(t, testOffice("msk-1"))
	date := DateOf(at(2, 0, 0))
	const workers, each = 4, 16 // 2 windows × 32 steps: 64 seats
	done := make(chan struct{})
	readErr := make(chan error, 1)
	go func() {
		defer close(readErr)
		for {
			select {
			case <-done:
				return
			default:
			}
			list, _, err := e.Agenda("msk-1", date, AgendaFilter{}, AgendaKey{}, 1000)
			if err != nil {
				readErr <- err
				return
			}
			seen := map[ID]bool{}
			for _, b := range list {
				if seen[b.ID] {
					readErr <- errors.New("a booking listed twice: " + b.Number)
					return
				}
				seen[b.ID] = true
			}
		}
	}()
	errs := make(chan error, workers)
	for w := range workers {
		go func() {
			for i := range each {
				a := "w" + string(rune('a'+w)) + "-" + string(rune('a'+i))
				_, err := e.Hold(t0, HoldRequest{Office: "msk-1", Service: "patent", Applicant: a, EarliestAfter: at(2, 9, 0)}, portal())
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	close(done)
	if err := <-readErr; err != nil {
		t.Fatal(err)
	}
	list, more, err := e.Agenda("msk-1", date, AgendaFilter{}, AgendaKey{}, 1000)
	if err != nil || more || len(list) != workers*each {
		t.Fatalf("%d bookings (more %v, %v), want %d", len(list), more, err, workers*each)
	}
	for i := 1; i < len(list); i++ {
		if AgendaKeyOf(&list[i-1].BookingRecord).compare(AgendaKeyOf(&list[i].BookingRecord)) >= 0 {
			t.Fatalf("out of order at %d: %s after %s", i, list[i].Number, list[i-1].Number)
		}
	}
}
