package loadtest

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"slotd/api"
	"slotd/client"
)

// The invariant check runs after the load, against the server, and fails
// the run when any of these does not hold:
//
//	C1. Every booking the run got a 2xx for is present (GET
//	    /v1/bookings/{id}) in the status of the last 2xx answer about it,
//	    or in the status of a later change whose answer never came, or
//	    expired if it was left held.
//	C2. No two active bookings (api.StatusActive: held, confirmed,
//	    awaiting_approval, cancel_requested, checked_in) the run created
//	    own the same seat: for each office and
//	    window their [start, end) runs do not overlap, so in particular no
//	    two share office+start+window.
//	C3. For each (office, service, date) the run touched, the sum of `free`
//	    over /days/{date}/slots equals the `free` of /days for that date.
//	    Other clients and hold expiry may move the counters while we read,
//	    so /days is read before and after /slots and the pair is retried
//	    until both /days reads agree.

// CreatedBooking is one booking the run created.
type CreatedBooking struct {
	ID        string
	Applicant string
	Office    string
	Service   string
	// Status is what the last 2xx answer about the booking said.
	Status client.Status
	// Pending is the status a later change would have produced if its
	// answer (never received) succeeded; "" when no change was unanswered.
	Pending client.Status
}

// CheckDay is one (office, service, date) whose counters C3 checks.
type CheckDay struct {
	Office, Service, Date string
}

// CheckInput is what the check verifies.
type CheckInput struct {
	Bookings []CreatedBooking
	Days     []CheckDay
}

// CheckReport is the result of the invariant check.
type CheckReport struct {
	Bookings        int      // bookings read back (C1)
	ActiveBookings  int      // of them, owning a seat (C2)
	Days            int      // dates whose counters were compared (C3)
	Violations      []string // the first violationsMax violations
	ViolationsTotal int
}

// OK reports whether every invariant held.
func (r CheckReport) OK() bool { return r.ViolationsTotal == 0 }

const (
	violationsMax      = 50
	checkConcurrency   = 16
	checkAttemptsMax   = 30 // per read, waiting out 429s
	counterAttemptsMax = 5
	checkBookingsMax   = 1 << 20
	checkDaysMax       = 1 << 12
)

// checker accumulates violations. Safe for concurrent use.
type checker struct {
	mu  sync.Mutex
	rep CheckReport
}

func (ck *checker) violate(format string, args ...any) {
	ck.mu.Lock()
	defer ck.mu.Unlock()
	ck.rep.ViolationsTotal++
	if len(ck.rep.Violations) < violationsMax {
		ck.rep.Violations = append(ck.rep.Violations, fmt.Sprintf(format, args...))
	}
}

// CheckInvariants verifies C1–C3 against the server c talks to. It returns
// an error only when the check itself could not run (context ended);
// broken invariants are in the report.
func CheckInvariants(ctx context.Context, c *apiClient, in CheckInput) (CheckReport, error) {
	if len(in.Bookings) > checkBookingsMax || len(in.Days) > checkDaysMax {
		return CheckReport{}, fmt.Errorf("check: %d bookings and %d days exceed the limits %d and %d",
			len(in.Bookings), len(in.Days), checkBookingsMax, checkDaysMax)
	}
	ck := &checker{}
	read := make([]client.Booking, len(in.Bookings))
	found := make([]bool, len(in.Bookings))
	forEach(ctx, len(in.Bookings), checkConcurrency, func(i int) {
		cb := in.Bookings[i]
		b, err := c.booking(ctx, cb.ID, cb.Applicant)
		if err != nil {
			if ctx.Err() == nil {
				ck.violate("C1: booking %s (%s): cannot read it back: %v", cb.ID, cb.Applicant, err)
			}
			return
		}
		read[i], found[i] = b, true
		if !statusConsistent(cb, b.Status) {
			ck.violate("C1: booking %s (%s): status %q, but the run was told %q%s",
				cb.ID, cb.Applicant, b.Status, cb.Status, pendingNote(cb.Pending))
		}
	})
	if err := ctx.Err(); err != nil {
		return ck.rep, fmt.Errorf("check interrupted: %w", err)
	}
	ck.rep.Bookings = len(in.Bookings)

	var active []client.Booking
	for i, b := range read {
		if found[i] && api.StatusActive(string(b.Status)) {
			active = append(active, b)
		}
	}
	ck.rep.ActiveBookings = len(active)
	checkSeats(ck, active)

	forEach(ctx, len(in.Days), checkConcurrency, func(i int) { checkCounters(ctx, ck, c, in.Days[i]) })
	if err := ctx.Err(); err != nil {
		return ck.rep, fmt.Errorf("check interrupted: %w", err)
	}
	ck.rep.Days = len(in.Days)
	return ck.rep, nil
}

func pendingNote(p client.Status) string {
	if p == "" {
		return ""
	}
	return fmt.Sprintf(" (or %q by an unanswered change)", p)
}

// statusConsistent is C1 for one booking.
func statusConsistent(cb CreatedBooking, actual client.Status) bool {
	switch {
	case actual == cb.Status, cb.Pending != "" && actual == cb.Pending:
		return true
	case actual == client.Expired:
		// A hold left alone, or one whose confirmation never arrived, expires.
		return cb.Status == client.Held
	}
	return false
}

// seatRun is the run of steps an active booking owns.
type seatRun struct {
	start, end time.Time
	b          client.Booking
}

// checkSeats is C2.
func checkSeats(ck *checker, active []client.Booking) {
	type seatKey struct {
		office string
		window int
	}
	byWindow := map[seatKey][]seatRun{}
	for _, b := range active {
		start, end := b.Start, b.End
		if start.IsZero() {
			ck.violate("C2: booking %s: no start", b.Id)
			continue
		}
		if !end.After(start) {
			end = start.Add(time.Nanosecond) // no end: compare starts only
		}
		k := seatKey{b.Office, b.Window}
		byWindow[k] = append(byWindow[k], seatRun{start, end, b})
	}
	keys := make([]seatKey, 0, len(byWindow))
	for k := range byWindow {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].office != keys[j].office {
			return keys[i].office < keys[j].office
		}
		return keys[i].window < keys[j].window
	})
	for _, k := range keys {
		runs := byWindow[k]
		slices.SortFunc(runs, func(a, b seatRun) int { return a.start.Compare(b.start) })
		// After sorting by start, an overlap exists iff some run starts
		// before the furthest end seen so far.
		for i := 1; i < len(runs); i++ {
			prev := runs[i-1]
			if runs[i].start.Before(prev.end) {
				ck.violate("C2: seat owned twice: office %s window %d: %s %s (%s) and %s %s (%s)",
					k.office, k.window, prev.b.Id, prev.b.Start, prev.b.Status,
					runs[i].b.Id, runs[i].b.Start, runs[i].b.Status)
			}
			if prev.end.After(runs[i].end) {
				runs[i] = seatRun{runs[i].start, prev.end, prev.b}
			}
		}
	}
}

// checkCounters is C3 for one date.
func checkCounters(ctx context.Context, ck *checker, c *apiClient, d CheckDay) {
	var daysFree, slotsFree int
	for attempt := 1; ; attempt++ {
		before, err := dayFreeOf(ctx, c, d)
		if err != nil {
			ck.violate("C3: %s %s %s: cannot read /days: %v", d.Office, d.Service, d.Date, err)
			return
		}
		slots, err := c.slots(ctx, d.Office, d.Service, d.Date)
		if err != nil && errCode(err) != api.CodeNotReleased {
			ck.violate("C3: %s %s %s: cannot read /slots: %v", d.Office, d.Service, d.Date, err)
			return
		}
		after, err := dayFreeOf(ctx, c, d)
		if err != nil {
			ck.violate("C3: %s %s %s: cannot read /days: %v", d.Office, d.Service, d.Date, err)
			return
		}
		daysFree, slotsFree = after, 0
		for _, s := range slots {
			slotsFree += s.Free
		}
		if before == after && daysFree == slotsFree {
			return
		}
		if before == after || attempt == counterAttemptsMax {
			break // stable and different, or never stable
		}
	}
	ck.violate("C3: %s %s %s: /days says %d free, the slots of that date sum to %d",
		d.Office, d.Service, d.Date, daysFree, slotsFree)
}

// dayFreeOf reads the free count of one date from /days (0 when the date
// is not listed).
func dayFreeOf(ctx context.Context, c *apiClient, d CheckDay) (int, error) {
	days, err := c.days(ctx, d.Office, d.Service, d.Date, d.Date)
	if err != nil {
		return 0, err
	}
	for _, x := range days {
		if x.Date.String() == d.Date {
			return x.Free, nil
		}
	}
	return 0, nil
}

// forEach runs f(0..n-1) on up to workers goroutines, stopping early when
// ctx ends.
func forEach(ctx context.Context, n, workers int, f func(i int)) {
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(workers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				f(i)
			}
		}()
	}
	for i := 0; i < n && ctx.Err() == nil; i++ {
		select {
		case next <- i:
		case <-ctx.Done():
		}
	}
	close(next)
	wg.Wait()
}
