package allocator

import (
	"fmt"
	"time"
)

// seatKey names one seat for ownership checks.
type seatKey struct {
	office string
	date   Date
	window uint16
	step   uint16
}

// Verify checks the engine's state against DESIGN invariant 1 and claim
// invariants C3 and C5 by brute force: no seat is owned by two active
// bookings, every active booking's seat is taken in the bitmap, every
// day's free counter equals its bitmap popcount, every day's steps are
// distinct spans of time in order, and the bookings-by-status gauges
// equal a count of the bookings. It costs O(bookings + seats) and is
// meant for tests, crash checks and load-test verification, on a quiet
// engine (in-flight operations make the counters differ transiently).
func (e *Engine) Verify() error {
	owners := map[seatKey]ID{}
	var problem error
	var inStatus [statusEnd]int64
	e.index.each(func(b *booking) bool {
		r := b.rec.Load()
		inStatus[r.Status]++
		if !r.Status.Active() {
			return true
		}
		o, err := e.office(r.Office)
		if err != nil {
			problem = fmt.Errorf("booking %s: %w", r.ID, err)
			return false
		}
		d := (*o.days.Load())[r.Date]
		if d == nil {
			problem = fmt.Errorf("booking %s: its day %s is not loaded", r.ID, r.Date)
			return false
		}
		for s := r.Step; s < r.Step+r.Slots; s++ {
			k := seatKey{r.Office, r.Date, r.Window, s}
			if other, dup := owners[k]; dup {
				problem = fmt.Errorf("seat %s %s window %d at %s is owned by %s and %s",
					r.Office, r.Date, r.Window+1, d.clock.at(int(s)).Format(time.RFC3339), other, r.ID)
				return false
			}
			owners[k] = r.ID
		}
		if !d.closed.Load() && d.isFree(int(r.Window), int(r.Step), 1) {
			problem = fmt.Errorf("booking %s is %s but its seat is free in the bitmap", r.ID, r.Status)
			return false
		}
		return true
	})
	if problem != nil {
		return problem
	}
	for st := StatusHeld; st < statusEnd; st++ {
		if got := e.counter.InStatus[st].Load(); got != inStatus[st] {
			return fmt.Errorf("%d bookings are %s but the gauge says %d", inStatus[st], st, got)
		}
	}
	for _, id := range e.OfficeIDs() {
		o, _ := e.office(id)
		for date, d := range *o.days.Load() {
			if got, want := int(d.freeSeats()), d.popcount(); got != want {
				return fmt.Errorf("office %s %s: free counter %d but bitmap popcount %d", id, date, got, want)
			}
			if err := d.clock.check(); err != nil {
				return fmt.Errorf("office %s %s: %w", id, date, err)
			}
		}
	}
	return nil
}
