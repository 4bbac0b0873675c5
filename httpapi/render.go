package httpapi

import (
	"strconv"
	"time"
	"unicode/utf8"

	"slotd/allocator"
	"slotd/internal/jsontime"
)

// Hand-written JSON appenders for the hot responses (bookings, slots,
// availability). They produce what encoding/json would for the same
// shapes (TestAppendersMatchEncodingJSON), without reflection.

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD,
// control characters are escaped, and so are <, > and & (as encoding/json
// does), so the output is safe to embed anywhere.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// appendBooking appends the booking JSON of DESIGN §1 and the applicant's
// namespace (namespace.go). window is 1-based (desk 1 is the first
// window); times are in the office's offset.
func appendBooking(b []byte, v *allocator.Booking) []byte {
	namespace, applicant := SplitApplicant(v.Applicant)
	loc := v.Start.Location()
	b = append(b, `{"id":"`...)
	b = append(b, v.ID.String()...) // URL-safe base64: nothing to escape
	b = append(b, `","number":`...)
	b = appendString(b, v.Number)
	b = append(b, `,"office":`...)
	b = appendString(b, v.Office)
	b = append(b, `,"service":`...)
	b = appendString(b, v.Service)
	b = append(b, `,"applicant":`...)
	b = appendString(b, applicant)
	b = append(b, `,"namespace":`...)
	b = appendString(b, namespace)
	b = append(b, `,"window":`...)
	b = strconv.AppendInt(b, int64(v.Window)+1, 10)
	b = append(b, `,"start":`...)
	b = jsontime.Append(b, v.Start)
	b = append(b, `,"end":`...)
	b = jsontime.Append(b, v.End)
	b = append(b, `,"status":"`...)
	b = append(b, v.Status.String()...)
	b = append(b, '"')
	if !v.HoldExpiresAt.IsZero() {
		b = append(b, `,"hold_expires_at":`...)
		b = jsontime.Append(b, v.HoldExpiresAt)
	}
	b = append(b, `,"reschedules":`...)
	b = strconv.AppendInt(b, int64(v.Reschedules), 10)
	b = append(b, `,"history":[`...)
	for i, h := range v.History.All() {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"at":`...)
		b = jsontime.Append(b, time.Unix(0, h.AtUnixNano).In(loc))
		b = append(b, `,"status":"`...)
		b = append(b, h.Status.String()...)
		b = append(b, `","actor":`...)
		b = appendString(b, h.Actor)
		b = append(b, `,"reason":`...)
		b = appendString(b, h.Reason)
		b = append(b, '}')
	}
	return append(b, "]}"...)
}

// appendOpening appends {"office","start","free"}.
func appendOpening(b []byte, o *allocator.Opening) []byte {
	b = append(b, `{"office":`...)
	b = appendString(b, o.Office)
	b = append(b, `,"start":`...)
	b = jsontime.Append(b, o.Start)
	b = append(b, `,"free":`...)
	b = strconv.AppendInt(b, int64(o.Free), 10)
	return append(b, '}')
}

// appendOpenings appends a JSON array of openings (never null).
func appendOpenings(b []byte, list []allocator.Opening) []byte {
	b = append(b, '[')
	for i := range list {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendOpening(b, &list[i])
	}
	return append(b, ']')
}

// appendSlots appends {"slots":[{"start","free"}…]} from the compact form
// of a day's starts: on a day without a zone transition each start is
// written from its offset to midnight, with no time.Time.
func appendSlots(b []byte, grid *allocator.DayGrid, list []allocator.StepFree) []byte {
	b = append(b, `{"slots":[`...)
	midnight, length, uniform := grid.Uniform()
	var day jsontime.DayClock
	switch {
	case uniform:
		day.Init(midnight)
	case len(list) > 0:
		day.Init(grid.Start(int(list[0].Step)))
	}
	stepSeconds := int(length / time.Second)
	for i, s := range list {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"start":`...)
		if uniform {
			b = day.AppendAfter(b, int(s.Step)*stepSeconds)
		} else {
			b = day.AppendTime(b, grid.Start(int(s.Step)))
		}
		b = append(b, `,"free":`...)
		b = strconv.AppendUint(b, uint64(s.Free), 10)
		b = append(b, '}')
	}
	return append(b, "]}"...)
}

// appendDays appends {"days":[{"date","free"}…]}.
func appendDays(b []byte, list []allocator.DayFree) []byte {
	b = append(b, `{"days":[`...)
	for i := range list {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"date":"`...)
		b = append(b, list[i].Date.String()...)
		b = append(b, `","free":`...)
		b = strconv.AppendInt(b, int64(list[i].Free), 10)
		b = append(b, '}')
	}
	return append(b, "]}"...)
}

// appendOfficeSummary appends an office list item: the config fields plus
// free_seats, next_free, load and released_through.
func appendOfficeSummary(b []byte, s *allocator.OfficeSummary) []byte {
	b = appendOfficeRecord(b, &s.Config, s.ReleasedThrough)
	b = b[:len(b)-1] // reopen the object
	b = append(b, `,"free_seats":`...)
	b = strconv.AppendInt(b, int64(s.FreeSeats), 10)
	b = append(b, `,"next_free":`...)
	if s.NextFree == nil {
		b = append(b, "null"...)
	} else {
		b = appendOpening(b, s.NextFree)
	}
	b = append(b, `,"load":`...)
	b = appendString(b, s.Load)
	return append(b, '}')
}

// appendOfficeRecord appends an office config with released_through.
// Absent lists render as [], not null.
func appendOfficeRecord(b []byte, cfg *allocator.OfficeConfig, releasedThrough allocator.Date) []byte {
	c := *cfg
	if c.Closures == nil {
		c.Closures = []string{}
	}
	c.Services = append([]allocator.ServiceConfig(nil), c.Services...)
	for i := range c.Services {
		if c.Services[i].Weekdays == nil {
			c.Services[i].Weekdays = []string{}
		}
	}
	b = appendJSON(b, &c)
	b = b[:len(b)-1]
	b = append(b, `,"released_through":"`...)
	b = append(b, releasedThrough.String()...)
	return append(b, `"}`...)
}
