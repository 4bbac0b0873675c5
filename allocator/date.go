package allocator

import (
	"fmt"
	"time"
)

// Date is a civil date in an office's time zone, counted in days since
// 1970-01-01. It carries no zone: the office gives it one.
type Date int32

// dateLayout is the wire form of a Date.
const dateLayout = "2006-01-02"

// ParseDate parses YYYY-MM-DD.
func ParseDate(s string) (Date, error) {
	if len(s) != len(dateLayout) {
		return 0, fmt.Errorf("%w: date %q is not YYYY-MM-DD", ErrValidation, s)
	}
	t, err := time.Parse(dateLayout, s)
	if err != nil {
		return 0, fmt.Errorf("%w: date %q is not YYYY-MM-DD", ErrValidation, s)
	}
	return DateOf(t), nil
}

// DateOf returns the civil date of t in t's own location.
func DateOf(t time.Time) Date {
	y, m, d := t.Date()
	u := time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
	return Date(u.Unix() / 86400)
}

// civil returns year, month, day.
func (d Date) civil() (int, time.Month, int) {
	return time.Unix(int64(d)*86400, 0).UTC().Date()
}

// String formats d as YYYY-MM-DD.
func (d Date) String() string {
	return time.Unix(int64(d)*86400, 0).UTC().Format(dateLayout)
}

// appendCompact appends d as YYYYMMDD.
func (d Date) appendCompact(b []byte) []byte {
	return time.Unix(int64(d)*86400, 0).UTC().AppendFormat(b, "20060102")
}

// Weekday of d.
func (d Date) Weekday() time.Weekday {
	return time.Weekday((int64(d)%7 + 7 + 4) % 7) // 1970-01-01 was a Thursday
}

// At returns the instant of minute-of-day m on d in loc, by wall clock,
// as time.Date gives it: a minute the clocks skip lands in the hour after
// it, one they repeat on either occurrence. Seats never come from it
// (dayclock.go).
func (d Date) At(minute int, loc *time.Location) time.Time {
	y, mo, dd := d.civil()
	return time.Date(y, mo, dd, 0, minute, 0, 0, loc)
}

// MarshalText implements encoding.TextMarshaler.
func (d Date) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Date) UnmarshalText(b []byte) error {
	v, err := ParseDate(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}
