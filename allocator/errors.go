package allocator

import (
	"errors"
	"time"
)

// Sentinel errors. Each refusal of a domain rule has its own sentinel so that
// the HTTP edge can map it to one stable error code of DESIGN §3. Callers
// compare with errors.Is; the engine wraps them with context.
var (
	// ErrValidation wraps every malformed input: bad config, bad date, a start
	// off the office grid. The edge maps it to 400 validation_failed.
	ErrValidation = errors.New("allocator: validation failed")

	ErrOfficeNotFound  = errors.New("allocator: office not found")
	ErrServiceNotFound = errors.New("allocator: service not found")
	ErrBookingNotFound = errors.New("allocator: booking not found")

	ErrSlotTaken         = errors.New("allocator: slot taken")
	ErrInvalidTransition = errors.New("allocator: invalid transition")
	ErrDuplicateBooking  = errors.New("allocator: duplicate booking")

	ErrNotReleased         = errors.New("allocator: date not bookable")
	ErrTooLateToCancel     = errors.New("allocator: too late to cancel")
	ErrTooLateToReschedule = errors.New("allocator: too late to reschedule")
	ErrNotReschedulable    = errors.New("allocator: service not reschedulable")
	ErrRescheduleLimit     = errors.New("allocator: reschedule limit reached")
	ErrLimitReached        = errors.New("allocator: active booking limit reached")
	ErrApplicantBlocked    = errors.New("allocator: applicant blocked")
	// ErrCancelNotOnline refuses an applicant's cancel of a confirmed
	// booking of a service with online_cancel off: only an operator's
	// force-cancel ends it.
	ErrCancelNotOnline = errors.New("allocator: cancel not online")

	// ErrHistoryLimit refuses a transition that would leave a booking's
	// history without room to end within HistoryEntriesMax (history.go).
	// It is the refusal of one booking's change; the engine stays writable.
	ErrHistoryLimit = errors.New("allocator: booking history limit reached")

	// ErrLayoutInUse refuses a config replacement that would move seats under
	// existing active bookings (timezone, grid, windows or hours change).
	ErrLayoutInUse = errors.New("allocator: office layout in use")

	// ErrOverloaded refuses work beyond a bounded queue (a full release
	// lottery); the edge answers 503 overloaded with Retry-After.
	ErrOverloaded = errors.New("allocator: overloaded")

	// ErrDegraded is returned for every state change after the journal failed
	// to sync: the disk state is unknown, so the engine stops writing.
	ErrDegraded = errors.New("allocator: degraded after journal failure")

	// ErrLedgerUnavailable refuses a new booking whose applicant's ledger
	// (Config.Ledger) cannot be reached right now; nothing was booked.
	// The edge answers 503 no_leader with Retry-After.
	ErrLedgerUnavailable = errors.New("allocator: the applicant's ledger is unavailable")
)

// BlockedError refuses a new booking of an applicant whose cancel penalty
// (DESIGN §1) blocks it; it wraps ErrApplicantBlocked and says until when,
// so the edge can tell the applicant when to come back (blocked_until).
type BlockedError struct {
	// Until is the end of the block, in the office's time zone.
	Until time.Time
}

func (e *BlockedError) Error() string {
	return ErrApplicantBlocked.Error() + ": until " + e.Until.Format(time.RFC3339)
}

// Unwrap makes errors.Is(err, ErrApplicantBlocked) hold.
func (e *BlockedError) Unwrap() error { return ErrApplicantBlocked }
