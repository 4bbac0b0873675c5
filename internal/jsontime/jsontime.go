// Package jsontime writes times as RFC 3339 JSON strings, in the time's
// own zone, the way the API's answers carry them; DayClock writes the
// many starts of one day quickly. The API edge and the peer comparison's
// edge both answer availability with it.
package jsontime

import "time"

// Append appends t as an RFC 3339 JSON string in t's own zone.
func Append(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339)
	return append(b, '"')
}

// DayClock formats the many starts of one day quickly: the date and the
// zone offset are written once, and each start that falls on the same
// date at the same offset with whole seconds is written from its distance
// to the first. Any other time takes Append's way. An answer of 96
// starts spent most of its encoding in time.Time.AppendFormat. Owned by
// the one caller that made it.
type DayClock struct {
	first    time.Time
	offset   int // seconds east of UTC at first
	secOfDay int // first's wall clock, in seconds since midnight
	// date holds `"2006-01-02T` and zone `Z"` or `+03:00"`, in arrays so
	// that Init allocates nothing; slow is set when they do not fit (a
	// year of more than four digits) or first has a fraction of a second,
	// and every time then takes Append's way.
	date, zone       [16]byte
	dateLen, zoneLen int
	slow             bool
}

// Init readies c for the starts of first's day, first among them.
func (c *DayClock) Init(first time.Time) {
	c.first = first
	_, c.offset = first.Zone()
	h, m, s := first.Clock()
	c.secOfDay = h*3600 + m*60 + s
	var buf [64]byte
	d := first.AppendFormat(append(buf[:0], '"'), "2006-01-02T")
	z := append(first.AppendFormat(buf[len(d):len(d)], "Z07:00"), '"')
	c.slow = len(d) > len(c.date) || len(z) > len(c.zone) || first.Nanosecond() != 0
	c.dateLen, c.zoneLen = copy(c.date[:], d), copy(c.zone[:], z)
}

// AppendTime appends t exactly as Append would.
func (c *DayClock) AppendTime(b []byte, t time.Time) []byte {
	since := t.Sub(c.first)
	if _, off := t.Zone(); off == c.offset && since%time.Second == 0 {
		if out, ok := c.appendClock(b, int(since/time.Second)); ok {
			return out
		}
	}
	return Append(b, t)
}

// AppendAfter appends the time sec seconds after first exactly as Append
// would, for a caller that knows no zone transition falls between the two
// (allocator.DayGrid.Uniform tells).
func (c *DayClock) AppendAfter(b []byte, sec int) []byte {
	if out, ok := c.appendClock(b, sec); ok {
		return out
	}
	return Append(b, c.first.Add(time.Duration(sec)*time.Second))
}

// appendClock writes first + sec from the date and zone of Init; false
// when that time is not of first's day (or Init found it cannot write
// any), and Append's way must be taken.
func (c *DayClock) appendClock(b []byte, sec int) ([]byte, bool) {
	s := c.secOfDay + sec
	if c.slow || sec < 0 || s >= 86400 {
		return b, false
	}
	b = append(b, c.date[:c.dateLen]...)
	h, m := s/3600, s/60%60
	s %= 60
	b = append(b, byte('0'+h/10), byte('0'+h%10), ':', byte('0'+m/10), byte('0'+m%10), ':', byte('0'+s/10), byte('0'+s%10))
	return append(b, c.zone[:c.zoneLen]...), true
}
