package slotdtest

import (
	"fmt"
	"testing"
	"time"

	"slotd/allocator"
	"slotd/internal/slotdtest/testtime"
)

// The office configs the packages' tests and benchmarks share (the
// allocator's own tests keep theirs: they cannot import this package).

// Office is the test office: a 15-minute grid, Mon–Fri 09:00–13:00 and
// 14:00–18:00 in Moscow, a 1-step reschedulable service "patent" and a
// 2-step service "rvp" that is not.
func Office(id string, windows int) allocator.OfficeConfig {
	wk := []string{"09:00-13:00", "14:00-18:00"}
	return allocator.OfficeConfig{
		ID: id, Name: "Office " + id, Region: "moscow", City: "Москва", Address: "ул. Тестовая, 1",
		Timezone: "Europe/Moscow", SlotMinutes: 15, Windows: windows,
		Hours: map[string][]string{"mon": wk, "tue": wk, "wed": wk, "thu": wk, "fri": wk},
		Services: []allocator.ServiceConfig{
			{ID: "patent", Name: "Патент", Slots: 1, Reschedulable: true},
			{ID: "rvp", Name: "РВП", Slots: 2},
		},
		Policy: allocator.DefaultPolicy(),
	}
}

// BenchOffice is office i ("o000", "o001", …) of the benchmarks: open
// around the clock every day, 64 windows on a 15-minute grid (96 starts),
// one 1-step service "s", a 60-day horizon.
func BenchOffice(i int) allocator.OfficeConfig {
	all := []string{"00:00-24:00"}
	p := allocator.DefaultPolicy()
	p.HorizonDays = 60
	return allocator.OfficeConfig{
		ID: fmt.Sprintf("o%03d", i), Name: "Bench", Region: "r", City: "c", Address: "a", Timezone: "Europe/Moscow",
		SlotMinutes: 15, Windows: 64,
		Hours:    map[string][]string{"mon": all, "tue": all, "wed": all, "thu": all, "fri": all, "sat": all, "sun": all},
		Services: []allocator.ServiceConfig{{ID: "s", Name: "S", Slots: 1}},
		Policy:   p,
	}
}

// BenchOffices is how many BenchOffice offices the benchmarks put.
const BenchOffices = 64

// BenchNow is the benchmarks' clock: the bench offices' next 60 dates are
// released at it. It is 00:30 on T0's date, not T0: the benchmarks keep
// the base they were first measured at, so their figures stay comparable.
var BenchNow = testtime.At(0, 0, 30)

// PutBenchOffices puts the BenchOffices offices into e at BenchNow.
func PutBenchOffices(tb testing.TB, e *allocator.Engine) {
	tb.Helper()
	for i := range BenchOffices {
		if _, err := e.PutOffice(BenchNow, BenchOffice(i), allocator.Meta{Actor: "bench"}); err != nil {
			tb.Fatal(err)
		}
	}
}

// BenchSeat gives booking i of a benchmark its own seat at the bench
// offices: offices round-robin, then 64 bookings per start (one per
// window), 96 starts a day, 58 days from the day after BenchNow: 22.8M
// seats before one repeats.
func BenchSeat(i int64) (office string, start time.Time) {
	k := i / BenchOffices
	step := (k / 64) % 96
	day := 1 + (k/(64*96))%58
	return fmt.Sprintf("o%03d", i%BenchOffices), testtime.At(int(day), 0, 15*int(step))
}
