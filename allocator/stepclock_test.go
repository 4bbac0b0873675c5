package allocator

import (
	"testing"
	"time"
)

// stepClock must agree with startOf on every step, transition days included.
func TestStepClockMatchesStartOf(t *testing.T) {
	f := func(zone string, y int, m time.Month, d int) {
		t.Helper()
		cfg := testOffice("a")
		cfg.Timezone = zone
		cfg.SlotMinutes = 30
		l, err := compileLayout(cfg)
		if err != nil {
			t.Fatal(err)
		}
		date := DateOf(time.Date(y, m, d, 12, 0, 0, 0, time.UTC))
		clock := l.stepClock(date)
		for s := 0; s < l.steps; s++ {
			if got, want := clock.at(s), l.startOf(date, s); !got.Equal(want) {
				t.Fatalf("%s %s step %d: %s, want %s", zone, date, s, got, want)
			}
		}
	}
	f("Europe/Moscow", 2026, 12, 1)  // no transitions
	f("Europe/Berlin", 2026, 3, 29)  // spring forward
	f("Europe/Berlin", 2026, 10, 25) // fall back
	f("Europe/Berlin", 2026, 7, 1)   // summer, no transition
}
