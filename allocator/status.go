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
// cancel_requested or checked_in (DESIGN §1).
func (s Status) Active() bool {
	return s == StatusHeld || s == StatusConfirmed || s == StatusCancelRequested || s == StatusCheckedIn
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
)

// Actors the engine itself acts as.
const (
	ActorSystem = "system"
	// ReasonOfficeClosed is the history reason of bookings cancelled by a closure.
	ReasonOfficeClosed = "office_closed"
)
