package peers

import (
	"context"
	"errors"
	"fmt"
	"time"

	"slotd/api"
)

// Backend is the API subset the rush needs, implemented on slotd, on
// PostgreSQL and on Redis. Implementations must be safe for concurrent use.
type Backend interface {
	// Availability appends to free the free seats of every start of the
	// date, in order: the s-th count is Layout.Start(date, s)'s. The
	// edge writes the starts from the Layout.
	Availability(ctx context.Context, office, date, service string, free []int) ([]int, error)
	// Hold holds and confirms one seat at req.Start in one durable step
	// (confirm:true in DESIGN §3). ErrSlotTaken when no window is free.
	Hold(ctx context.Context, req HoldRequest) (Booking, error)
	// Cancel cancels the applicant's booking and frees its seat.
	Cancel(ctx context.Context, id, applicant string) error
	// Active reads back, from what the backend stored, every booking of the
	// date that owns a seat. For Verify after a run, not for serving.
	Active(ctx context.Context, office, date string) ([]Booking, error)
	// Name is the backend's row label in the tables.
	Name() string
	Close() error
}

// HoldRequest asks for a confirmed booking at an exact start.
type HoldRequest struct {
	Office, Service, Applicant string
	Start                      time.Time
}

// Booking is what a hold answers and Active reads back.
type Booking struct {
	ID, Number                 string
	Office, Service, Applicant string
	// Window is the desk, 1-based as shown to applicants.
	Window     int
	Start, End time.Time
	Status     string
}

// Statuses the peers store, named as the API names them.
var (
	statusConfirmed = api.StatusConfirmed
	statusCancelled = api.StatusCancelled
)

// Errors every Backend returns for the refusals the edge maps to codes.
var (
	ErrSlotTaken   = errors.New("peers: slot taken")
	ErrDuplicate   = errors.New("peers: duplicate booking")
	ErrNotFound    = errors.New("peers: not found")
	ErrNotBookable = errors.New("peers: not bookable")
	ErrValidation  = errors.New("peers: validation failed")
	ErrTransition  = errors.New("peers: invalid transition")
)

// Layout is the office every backend serves: one office in UTC with one
// one-step service, open the same hours on every date, the same seats on
// every date. A value type; safe to share.
type Layout struct {
	Office, Service string
	// Windows is the number of seats per start (parallel desks), 1..256.
	Windows int
	// StepMinutes is the grid step in minutes; it divides OpenMinute and
	// CloseMinute.
	StepMinutes int
	// OpenMinute and CloseMinute bound the day's starts, in minutes after
	// midnight UTC.
	OpenMinute, CloseMinute int
	// Dates are the dates of the rush (YYYY-MM-DD), all released.
	Dates []string
}

// DefaultLayout returns the rush office: 64 windows, a 5-minute grid from
// 08:00 to 20:00 (144 starts, 9216 seats a date), on dates days from 2
// days after now.
func DefaultLayout(now time.Time, days int) Layout {
	l := Layout{Office: "bench", Service: "patent", Windows: 64, StepMinutes: 5, OpenMinute: 8 * 60, CloseMinute: 20 * 60}
	first := now.UTC().Truncate(24*time.Hour).AddDate(0, 0, 2)
	for i := range days {
		l.Dates = append(l.Dates, first.AddDate(0, 0, i).Format(time.DateOnly))
	}
	return l
}

// validate returns the first problem with l.
func (l *Layout) validate() error {
	switch {
	case l.Office == "" || l.Service == "":
		return errors.New("peers: Layout needs an office and a service id")
	case l.Windows < 1 || l.Windows > 256:
		return fmt.Errorf("peers: Layout.Windows %d must be in 1..256", l.Windows)
	case l.StepMinutes < 5 || 1440%l.StepMinutes != 0:
		return fmt.Errorf("peers: Layout.StepMinutes %d must be ≥ 5 and divide a day", l.StepMinutes)
	case l.OpenMinute < 0 || l.CloseMinute > 1440 || l.OpenMinute >= l.CloseMinute ||
		l.OpenMinute%l.StepMinutes != 0 || l.CloseMinute%l.StepMinutes != 0:
		return fmt.Errorf("peers: Layout hours %d..%d must be an ordered range of whole steps within a day", l.OpenMinute, l.CloseMinute)
	case len(l.Dates) == 0:
		return errors.New("peers: Layout needs at least one date")
	}
	for _, d := range l.Dates {
		if _, err := time.Parse(time.DateOnly, d); err != nil {
			return fmt.Errorf("peers: Layout date %q is not YYYY-MM-DD", d)
		}
	}
	return nil
}

// Steps is the number of starts a date has.
func (l *Layout) Steps() int { return (l.CloseMinute - l.OpenMinute) / l.StepMinutes }

// Seats is the number of seats of one date.
func (l *Layout) Seats() int { return l.Steps() * l.Windows }

// Start is the instant of step (0 = the opening) on date.
func (l *Layout) Start(date string, step int) time.Time {
	d, _ := time.Parse(time.DateOnly, date)
	return d.Add(time.Duration(l.OpenMinute+step*l.StepMinutes) * time.Minute)
}

// checkDay refuses an availability read of another office or service
// (ErrNotFound) or of a date the rush does not release (ErrNotBookable).
func (l *Layout) checkDay(office, service, date string) error {
	if office != l.Office || service != l.Service {
		return ErrNotFound
	}
	if !l.hasDate(date) {
		return ErrNotBookable
	}
	return nil
}

// seatOf maps a hold request to its date and step, refusing another
// office or service (ErrNotFound) and starts stepOf refuses.
func (l *Layout) seatOf(req HoldRequest) (date string, step int, err error) {
	if req.Office != l.Office || req.Service != l.Service {
		return "", 0, ErrNotFound
	}
	return l.stepOf(req.Start)
}

// stepOf maps a start to its date and step, or fails with ErrNotBookable
// (outside the rush's dates or hours) or ErrValidation (off the grid).
func (l *Layout) stepOf(t time.Time) (date string, step int, err error) {
	t = t.UTC()
	date = t.Format(time.DateOnly)
	if !l.hasDate(date) {
		return "", 0, fmt.Errorf("%w: %s is not a released date", ErrNotBookable, date)
	}
	minute := t.Hour()*60 + t.Minute()
	if t.Second() != 0 || t.Nanosecond() != 0 || minute%l.StepMinutes != 0 {
		return "", 0, fmt.Errorf("%w: %s is off the %d-minute grid", ErrValidation, t.Format(time.RFC3339), l.StepMinutes)
	}
	if minute < l.OpenMinute || minute >= l.CloseMinute {
		return "", 0, fmt.Errorf("%w: %s is outside the office's hours", ErrNotBookable, t.Format(time.RFC3339))
	}
	return date, (minute - l.OpenMinute) / l.StepMinutes, nil
}

func (l *Layout) hasDate(date string) bool {
	for _, d := range l.Dates {
		if d == date {
			return true
		}
	}
	return false
}

// zeroFree appends a count of 0 for every start of a date to free.
func (l *Layout) zeroFree(free []int) []int {
	for range l.Steps() {
		free = append(free, 0)
	}
	return free
}
