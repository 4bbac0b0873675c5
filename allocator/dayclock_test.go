package allocator

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"slotd/internal/slotdtest/testtime"
)

// The steps of a date, worked out by brute force: every minute around the
// date whose wall clock shows a grid label of the date is a label
// instant; a label instant inside the seat before it is no seat, and a
// gap between two seats is a dead step. clockOf must agree on every zone
// shape in use: no change, one hour forward and back (Berlin), half an
// hour (Lord Howe), two hours (Troll), at midnight (Santiago, Havana), and
// a date the clocks skip entirely (Apia, 2011).
func TestDayClockMatchesBruteForce(t *testing.T) {
	f := func(zone string, y int, m time.Month, dd int) {
		t.Helper()
		loc := testtime.MustLoc(zone)
		date := DateOf(time.Date(y, m, dd, 12, 0, 0, 0, time.UTC))
		for _, grid := range []int{5, 15, 30, 45, 60, 120, 240} {
			cfg := allDayOffice("c", 1)
			cfg.Timezone, cfg.SlotMinutes = zone, grid
			l := mustLayout(t, cfg)
			c := l.clockOf(date)
			name := fmt.Sprintf("%s %s grid %d", zone, date, grid)
			step := int64(grid) * 60
			var labels []int64 // label instants, unix seconds
			for u := int64(date)*86400 - zoneOffsetMax; u < int64(date+1)*86400+zoneOffsetMax; u += 60 {
				lt := time.Unix(u, 0).In(loc)
				if minute := lt.Hour()*60 + lt.Minute(); DateOf(lt) == date && lt.Second() == 0 && minute%grid == 0 {
					labels = append(labels, u)
				}
			}
			var want []int64 // steps, a dead one as its negation
			prevEnd := int64(-1 << 62)
			for _, u := range labels {
				if u < prevEnd {
					if _, ok := c.stepAt(time.Unix(u, 0)); ok {
						t.Fatalf("%s: %s is inside the seat before it, yet a step", name, time.Unix(u, 0).In(loc).Format(time.RFC3339))
					}
					continue
				}
				if len(want) > 0 && u > prevEnd {
					want = append(want, -prevEnd)
				}
				want = append(want, u)
				prevEnd = u + step
			}
			var got []int64
			for s := range int(c.n) {
				u := c.startUnix(s)
				if c.label(s) == deadStep {
					got = append(got, -u)
					continue
				}
				got = append(got, u)
				lt := c.at(s)
				if k := (lt.Hour()*60 + lt.Minute()) / grid; k != c.label(s) || DateOf(lt) != date {
					t.Fatalf("%s: step %d at %s has label %d", name, s, lt.Format(time.RFC3339), c.label(s))
				}
				if back, ok := c.stepAt(lt); !ok || back != s {
					t.Fatalf("%s: stepAt(%s) = %d, %v; want %d", name, lt.Format(time.RFC3339), back, ok, s)
				}
			}
			if !slices.Equal(got, want) {
				t.Fatalf("%s: steps\n got %v\nwant %v", name, got, want)
			}
			uniform := len(want) == 1440/grid
			for i := range want {
				uniform = uniform && want[i] == want[0]+int64(i)*step
			}
			if (c.table == nil) != uniform {
				t.Fatalf("%s: uniform %v, want %v", name, c.table == nil, uniform)
			}
			if err := c.check(); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			// firstFrom against a scan of the steps.
			r := rand.New(rand.NewPCG(uint64(date), uint64(grid)))
			for range 200 {
				from := time.Unix(int64(date)*86400-zoneOffsetMax+r.Int64N(2*zoneOffsetMax+86400), r.Int64N(2)*5e8)
				now := from.Add(time.Duration(r.IntN(7200)-3600) * time.Second)
				wantFirst := int(c.n)
				for s := int(c.n) - 1; s >= 0; s-- {
					if st := time.Unix(c.startUnix(s), 0); !st.Before(from) && st.After(now) {
						wantFirst = s
					}
				}
				if got := c.firstFrom(from, now); got != wantFirst {
					t.Fatalf("%s: firstFrom(%s, %s) = %d, want %d", name, from, now, got, wantFirst)
				}
			}
			// wallInstant: the first minute whose clock reads the minute or
			// later on the date.
			for _, minute := range []int{0, 60, 90, 120, 150, 180, 1380, 1439} {
				var first int64
				for _, u := range labelMinutes(loc, date) {
					if lt := time.Unix(u, 0).In(loc); lt.Hour()*60+lt.Minute() >= minute {
						first = u
						break
					}
				}
				if got := l.wallInstant(date, minute); first != 0 && got.Unix() != first {
					t.Fatalf("%s: wallInstant(%d) = %s, want %s", name, minute, got.Format(time.RFC3339), time.Unix(first, 0).In(loc).Format(time.RFC3339))
				}
			}
		}
	}
	f("Europe/Moscow", 2026, 12, 1)
	f("Europe/Berlin", 2027, 7, 1)
	f("Europe/Berlin", 2027, 3, 28)
	f("Europe/Berlin", 2027, 10, 31)
	f("Europe/Berlin", 2026, 3, 29)
	f("Europe/Berlin", 2026, 10, 25)
	f("Australia/Lord_Howe", 2027, 4, 4)
	f("Australia/Lord_Howe", 2027, 10, 3)
	f("Antarctica/Troll", 2027, 3, 28)
	f("Antarctica/Troll", 2027, 10, 31)
	f("America/Santiago", 2027, 4, 3)
	f("America/Santiago", 2027, 9, 5)
	f("America/Havana", 2027, 3, 14)
	f("America/Havana", 2027, 11, 7)
	f("Pacific/Apia", 2011, 12, 30)
	f("UTC", 2027, 3, 28)
}

// labelMinutes lists, in order, the whole minutes whose wall clock in loc
// shows date.
func labelMinutes(loc *time.Location, date Date) []int64 {
	var out []int64
	for u := int64(date)*86400 - zoneOffsetMax; u < int64(date+1)*86400+zoneOffsetMax; u += 60 {
		if DateOf(time.Unix(u, 0).In(loc)) == date {
			out = append(out, u)
		}
	}
	return out
}
