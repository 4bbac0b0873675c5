package allocator

// Status is a booking's lifecycle status. The names are part of the API.
type Status uint8

const (
	StatusHeld Status = iota + 1
	StatusConfirmed
	StatusCancelRequested
	StatusCheckedIn
	StatusCompleted
	StatusCancelled
	StatusExpired
	StatusNoShow
	// StatusAwaitingApproval: confirmed by the applicant, waiting for an
	// operator's approval (a service with requires_approval). It owns its
	// seat.
	StatusAwaitingApproval
	// StatusRejected: the office refused a request awaiting approval.
	StatusRejected
	statusEnd
)

var statusNames = [statusEnd]string{
	StatusHeld:            "held",
	StatusConfirmed:       "confirmed",
	StatusCancelRequested: "cancel_requested",
	StatusCheckedIn:       "checked_in",
	StatusCompleted:       "completed",
	StatusCancelled:       "cancelled",
	StatusExpired:         "expired",
	StatusNoShow:          "no_show",

	StatusAwaitingApproval: "awaiting_approval",
	StatusRejected:         "rejected",
}

// String returns the API name of s.
func (s Status) String() string {
	if s == 0 || s >= statusEnd {
		return "invalid"
	}
	return statusNames[s]
}

// ParseStatus maps an API name back to its Status.
func ParseStatus(name string) (Status, bool) {
	for s := StatusHeld; s < statusEnd; s++ {
		if statusNames[s] == name {
			return s, true
		}
	}
	return 0, false
}

// Valid reports whether s is a known status.
func (s Status) Valid() bool { return s >= StatusHeld && s < statusEnd }

// Active reports whether a booking in s owns its seat: held, confirmed,
// awaiting_approval, cancel_requested or checked_in (DESIGN §1).
func (s Status) Active() bool {
	return s == StatusHeld || s == StatusConfirmed || s == StatusAwaitingApproval || s == StatusCancelRequested || s == StatusCheckedIn
}

// Event types, spelled once. They are part of the API.
const (
	EventHeld            = "booking.held"
	EventConfirmed       = "booking.confirmed"
	EventCancelRequested = "booking.cancel_requested"
	EventCancelled       = "booking.cancelled"
	EventExpired         = "booking.expired"
	EventRescheduled     = "booking.rescheduled"
	EventCheckedIn       = "booking.checked_in"
	EventCompleted       = "booking.completed"
	EventNoShow          = "booking.no_show"
	EventReminderDue     = "reminder.due"
	EventSlotsReleased   = "slots.released"
	EventWatchMatched    = "watch.matched"
	// EventAwaitingApproval: a confirm of a service that requires approval
	// waits for the office. The office's approval emits EventConfirmed, as
	// every entry into confirmed does.
	EventAwaitingApproval = "booking.awaiting_approval"
	EventRejected         = "booking.rejected"
)

// Actors the engine itself acts as.
const (
	ActorSystem = "system"
	// ReasonOfficeClosed is the history reason of bookings cancelled by a closure.
	ReasonOfficeClosed = "office_closed"
	// ReasonNotApproved is the history reason of a request that no
	// operator approved by its start + no_show_grace.
	ReasonNotApproved = "not approved in time"
)
