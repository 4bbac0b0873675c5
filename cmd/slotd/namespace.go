package main

import (
	"sync/atomic"

	"slotd/allocator"
	"slotd/httpapi"
)

// legacyCensus counts, while Recover restores the bookings and watches,
// those of the legacy namespace: stored before portal namespaces, their
// applicant has no namespace (httpapi/namespace.go, N4). Only keys that
// name the namespace "" reach them; serve refuses a keys file that would
// leave active ones unreachable (httpapi.CheckLegacyBookings). An active
// watch counts as much as a booking: with auto_hold it would hold seats
// for applicants no portal can then see or confirm. Safe for concurrent
// use, as Recover requires.
type legacyCensus struct {
	*allocator.Engine
	bookings, active atomic.Int64
}

func (c *legacyCensus) RestoreWatch(w *allocator.WatchRecord) error {
	if ns, _ := httpapi.SplitApplicant(w.Applicant); ns == "" && w.Active {
		c.active.Add(1)
	}
	return c.Engine.RestoreWatch(w)
}

func (c *legacyCensus) RestoreBooking(rec *allocator.BookingRecord) error {
	if ns, _ := httpapi.SplitApplicant(rec.Applicant); ns == "" {
		c.bookings.Add(1)
		if rec.Status.Active() {
			c.active.Add(1)
		}
	}
	return c.Engine.RestoreBooking(rec)
}
