package jsontime

import (
	"math/rand/v2"
	"testing"
	"time"
	_ "time/tzdata" // the zones below on machines without a zoneinfo database
)

// DayClock writes exactly what time.Time.AppendFormat(RFC3339) writes, for
// the starts of whole days in zones with odd offsets and on the days their
// clocks change, past midnight, and for times with fractions of a second.
func TestDayClockMatchesRFC3339(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 0))
	days := []string{"2026-03-08", "2026-03-29", "2026-04-05", "2026-10-04", "2026-10-25", "2026-11-01", "2026-12-01"}
	for _, zone := range []string{"UTC", "Europe/Moscow", "Asia/Kolkata", "America/St_Johns", "America/New_York",
		"Europe/Berlin", "Australia/Lord_Howe", "Pacific/Chatham"} {
		loc, err := time.LoadLocation(zone)
		if err != nil {
			t.Fatal(err)
		}
		for _, day := range days {
			first, _ := time.ParseInLocation("2006-01-02", day, loc)
			for _, step := range []time.Duration{15 * time.Minute, 20 * time.Minute, time.Hour} {
				var times []time.Time
				for at := first; at.Before(first.Add(27 * time.Hour)); at = at.Add(step) {
					times = append(times, at)
				}
				// Some with a fraction of a second, and a first one with one.
				times = append(times, first.Add(time.Duration(r.IntN(1e9))), first.Add(-time.Minute))
				for _, start := range []time.Time{first, first.Add(time.Millisecond)} {
					var c DayClock
					c.Init(start)
					for _, at := range times {
						got := string(c.AppendTime(nil, at))
						want := string(at.AppendFormat([]byte{'"'}, time.RFC3339)) + `"`
						if got != want {
							t.Fatalf("%s %s: first %s, time %s: got %s, want %s", zone, day, start, at, got, want)
						}
					}
				}
			}
		}
	}
}

// A year of more than four digits does not fit DayClock's arrays: every
// time then takes Append's way, and still matches. Init allocates nothing.
func TestDayClockLongYearsAndNoAllocs(t *testing.T) {
	for _, first := range []time.Time{
		time.Date(12345, 6, 7, 8, 0, 0, 0, time.FixedZone("", 3*3600)),
		time.Date(-5, 1, 2, 0, 0, 0, 0, time.UTC),
		time.Date(9999, 12, 31, 23, 0, 0, 0, time.FixedZone("", -(9*3600+30*60))),
	} {
		var c DayClock
		c.Init(first)
		for _, at := range []time.Time{first, first.Add(15 * time.Minute), first.Add(90 * time.Minute)} {
			got := string(c.AppendTime(nil, at))
			want := string(at.AppendFormat([]byte{'"'}, time.RFC3339)) + `"`
			if got != want {
				t.Fatalf("first %s, time %s: got %s, want %s", first, at, got, want)
			}
		}
	}
	first := time.Date(2026, 11, 30, 8, 0, 0, 0, time.FixedZone("MSK", 3*3600))
	var c DayClock
	if n := testing.AllocsPerRun(100, func() { c.Init(first) }); n != 0 {
		t.Fatalf("Init allocates %v times", n)
	}
}

// AppendAfter writes what Append writes for first plus the seconds, inside
// the day and past its end (Append's way then).
func TestDayClockAppendAfter(t *testing.T) {
	for _, first := range []time.Time{
		time.Date(2026, 12, 1, 0, 0, 0, 0, time.FixedZone("MSK", 3*3600)),
		time.Date(2026, 12, 1, 9, 30, 0, 0, time.FixedZone("", -(3*3600+30*60))),
		time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC),
		time.Date(12345, 1, 1, 0, 0, 0, 0, time.UTC), // too long a year: always Append's way
	} {
		var c DayClock
		c.Init(first)
		for _, sec := range []int{0, 1, 59, 900, 3599, 45000, 86399, 86400, 90000, -60} {
			at := first.Add(time.Duration(sec) * time.Second)
			got := string(c.AppendAfter(nil, sec))
			want := string(at.AppendFormat([]byte{'"'}, time.RFC3339)) + `"`
			if got != want {
				t.Fatalf("first %s + %ds: got %s, want %s", first, sec, got, want)
			}
		}
	}
}
