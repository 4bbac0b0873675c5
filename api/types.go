package api

import (
	"time"

	"slotd/allocator"
)

// Booking statuses as the API names them. The names are spelled once, in
// package allocator (Status.String); these are the same strings, for
// clients that branch on a booking's status.
var (
	StatusHeld            = allocator.StatusHeld.String()
	StatusConfirmed       = allocator.StatusConfirmed.String()
	StatusCancelRequested = allocator.StatusCancelRequested.String()
	StatusCheckedIn       = allocator.StatusCheckedIn.String()
	StatusCompleted       = allocator.StatusCompleted.String()
	StatusCancelled       = allocator.StatusCancelled.String()
	StatusExpired         = allocator.StatusExpired.String()
	StatusNoShow          = allocator.StatusNoShow.String()
	// StatusAwaitingApproval: confirmed by the applicant, waiting for an
	// operator of the office (a service with requires_approval); it owns
	// its seat.
	StatusAwaitingApproval = allocator.StatusAwaitingApproval.String()
	// StatusRejected: the office refused the request (a terminal status).
	StatusRejected = allocator.StatusRejected.String()
)

// StatusActive reports whether a booking in the named status owns its
// seat: held, confirmed, awaiting_approval, cancel_requested or
// checked_in.
func StatusActive(status string) bool {
	s, ok := allocator.ParseStatus(status)
	return ok && s.Active()
}

// Booking is the booking JSON: POST /v1/bookings and every booking route
// answer one, GET /v1/bookings a page of them.
type Booking struct {
	ID        string `json:"id"`     // 128 random bits, URL-safe base64
	Number    string `json:"number"` // human-readable, unique per office
	Office    string `json:"office"`
	Service   string `json:"service"`
	Applicant string `json:"applicant"`
	// Namespace is the portal namespace the applicant lives in ("" for
	// bookings stored before namespaces).
	Namespace string `json:"namespace"`
	// Window is the desk, numbered from 1 as people read it.
	Window int       `json:"window"`
	Start  time.Time `json:"start"` // in the office's offset
	End    time.Time `json:"end"`
	Status string    `json:"status"`
	// HoldExpiresAt is set while the booking is held.
	HoldExpiresAt *time.Time     `json:"hold_expires_at,omitempty"`
	Reschedules   int            `json:"reschedules"`
	History       []HistoryEntry `json:"history"`
}

// HistoryEntry is one transition of a booking.
type HistoryEntry struct {
	At     time.Time `json:"at"`
	Status string    `json:"status"`
	Actor  string    `json:"actor"` // the API key's name, or "system"
	Reason string    `json:"reason"`
}

// BookingPage is GET /v1/bookings (bookings in creation order; with
// ?number=, one booking or none) and GET
// /v1/offices/{office}/days/{date}/bookings (a day by window, then
// start), with the cursor of the next page ("" on the last).
type BookingPage struct {
	Bookings   []Booking `json:"bookings"`
	NextCursor string    `json:"next_cursor"`
}

// Opening is a free start: an alternative offered with slot_taken, a
// search result, an office's next free start.
type Opening struct {
	Office string    `json:"office"`
	Start  time.Time `json:"start"`
	Free   int       `json:"free"`
}

// SearchResults is GET /v1/search.
type SearchResults struct {
	Results []Opening `json:"results"`
}

// Day is one released date with the free starts of a service.
type Day struct {
	Date string `json:"date"` // YYYY-MM-DD, office-local
	Free int    `json:"free"`
}

// Days is GET /v1/offices/{office}/days.
type Days struct {
	Days []Day `json:"days"`
}

// Slot is one start of a day with its free seats.
type Slot struct {
	Start time.Time `json:"start"`
	Free  int       `json:"free"`
}

// Slots is GET /v1/offices/{office}/days/{date}/slots.
type Slots struct {
	Slots []Slot `json:"slots"`
}

// Office is GET /v1/offices/{id}: the config as PUT (its shape and rules
// are allocator.OfficeConfig's) and the last released date.
type Office struct {
	allocator.OfficeConfig
	ReleasedThrough string `json:"released_through"`
}

// Office loads in an OfficeSummary.
const (
	LoadFree = allocator.LoadFree
	LoadBusy = allocator.LoadBusy
	LoadFull = allocator.LoadFull
)

// OfficeSummary is one office of GET /v1/offices: its config, free seats
// over its released dates, the next free start (nil when none) and its
// load (free, busy or full).
type OfficeSummary struct {
	Office
	FreeSeats int      `json:"free_seats"`
	NextFree  *Opening `json:"next_free"`
	Load      string   `json:"load"`
}

// Offices is GET /v1/offices.
type Offices struct {
	Offices []OfficeSummary `json:"offices"`
}
