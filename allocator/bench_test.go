package allocator

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
)

// Benchmarks of DESIGN §6's allocator targets (measured by `make bench`,
// never asserted by tests): claim+release spread over offices (≥ 20M/s on
// 2 cores) and on one office-date (≥ 3M/s), 0 allocations per claim, and
// memory per office-day and per active booking (≤ 256 B).

// benchDays materialises offices × dates days of a 10-window, 48-step
// layout (30-minute grid around the clock): one word per window.
func benchDays(b *testing.B, offices, dates int) []*day {
	b.Helper()
	cfg := allDayOffice("b", 10)
	cfg.SlotMinutes = 30
	l := mustLayout(b, cfg)
	days := make([]*day, 0, offices*dates)
	for range offices {
		for i := range dates {
			days = append(days, newDay(l, d(i)))
		}
	}
	return days
}

func reportRate(b *testing.B, unit string) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), unit)
}

// BenchmarkClaimReleaseSpread: the raw claim path (day.claim, day.release)
// on pre-resolved days of 1,000 offices × 4 dates, spread so that no two
// goroutines share a day: each claims on its own share of the days, a
// random day, window and step at a time. This is the claim path without
// contention.
func BenchmarkClaimReleaseSpread(b *testing.B) {
	claimRelease(b, benchDays(b, 1000, 4), true)
}

// BenchmarkClaimReleaseShared: as Spread, but every goroutine picks from
// all the days. Two rarely meet on one day, yet each day's cache lines are
// written by both cores in turn, and moving them between cores is most of
// the cost.
func BenchmarkClaimReleaseShared(b *testing.B) {
	claimRelease(b, benchDays(b, 1000, 4), false)
}

// BenchmarkClaimReleaseHotDay: every goroutine on one office-date (10
// windows × 48 steps), all bumping the same free counter.
func BenchmarkClaimReleaseHotDay(b *testing.B) {
	claimRelease(b, benchDays(b, 1, 1), false)
}

// claimRelease claims and releases one seat at a time: a random day, window
// and step, from a generator of each goroutine's own. With own, goroutine
// g of GOMAXPROCS picks only from the g-th part of days.
func claimRelease(b *testing.B, days []*day, own bool) {
	var started atomic.Uint64
	parts := uint64(runtime.GOMAXPROCS(0))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		g := started.Add(1) - 1
		mine := days
		if own && uint64(len(days)) >= parts {
			g %= parts
			mine = days[g*uint64(len(days))/parts : (g+1)*uint64(len(days))/parts]
		}
		x := (g+1)*0x9e3779b97f4a7c15 | 1
		for pb.Next() {
			x ^= x << 13 // xorshift64
			x ^= x >> 7
			x ^= x << 17
			dy := mine[x%uint64(len(mine))]
			w, s := int(x>>32)%10, int(x>>40)%48
			if dy.claim(w, s, 1) {
				dy.release(w, s, 1)
			}
		}
	})
	reportRate(b, "claims/s")
}

// BenchmarkClaimAnyHotDay: claimAny (lowest free window) on one day.
func BenchmarkClaimAnyHotDay(b *testing.B) {
	dy := benchDays(b, 1, 1)[0]
	var next atomic.Uint64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(next.Add(1) * 241)
		for pb.Next() {
			i++
			s := i % 48
			if w := dy.claimAny(10, s, 1); w >= 0 {
				dy.release(w, s, 1)
			}
		}
	})
	reportRate(b, "claims/s")
}

// discardJournal acknowledges every change and keeps nothing: the
// benchmarks measure the engine, not a journal.
type discardJournal struct{}

func (discardJournal) Commit(*Change) error { return nil }

// BenchmarkEngineHoldCancel: the full Engine.Hold + Cancel path (applicant
// limits, booking record, commit to a journal that keeps nothing, timer
// wheel, index) spread over 100 offices. Bookings stay in the index as archive, so
// memory grows with b.N.
func BenchmarkEngineHoldCancel(b *testing.B) {
	e, err := New(Config{Journal: discardJournal{}})
	if err != nil {
		b.Fatal(err)
	}
	const offices = 100
	for i := range offices {
		cfg := hammerOffice(fmt.Sprintf("o%03d", i), 10, "00:00-24:00")
		if _, err := e.PutOffice(t0, cfg, Meta{}); err != nil {
			b.Fatal(err)
		}
	}
	var next atomic.Uint64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		g := next.Add(1)
		applicant := fmt.Sprintf("bench-%d", g)
		ids := make([]string, offices)
		for i := range ids {
			ids[i] = fmt.Sprintf("o%03d", i)
		}
		i := int(g * 7919)
		for pb.Next() {
			i++
			req := HoldRequest{Office: ids[i%offices], Service: "patent", Applicant: applicant,
				Start: d(1+(i/offices)%20).At(15*((i/offices/20)%96), msk)}
			bk, err := e.Hold(t0, req, portal())
			if err != nil {
				continue // the seat was taken by another goroutine
			}
			if _, err := e.Cancel(t0, bk.ID, applicant, portal()); err != nil {
				b.Error(err)
				return
			}
		}
	})
	reportRate(b, "holds/s")
}

// BenchmarkDays30: availability of 30 days of one office (Days).
func BenchmarkDays30(b *testing.B) {
	e, _ := newTestEngine(b, testOffice("a"))
	for i := range 200 { // some seats taken, so counters are not all full
		e.Hold(t0, HoldRequest{Office: "a", Service: "patent", Applicant: fmt.Sprintf("x%d", i), EarliestAfter: d(1+i%20).At(0, msk)}, portal())
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if days, err := e.Days(t0, "a", "patent", d(0), d(29)); err != nil || len(days) == 0 {
			b.Fatal(days, err)
		}
	}
	reportRate(b, "reads/s")
}

// BenchmarkSlots64: the free starts of one day with their free counts
// (AppendSlotSteps, reusing its slice as the API edge does) at an office
// of 64 windows open around the clock on a 15-minute grid (96 starts), a
// few seats taken: what every availability read of a rush asks.
func BenchmarkSlots64(b *testing.B) {
	e, _ := newTestEngine(b, hammerOffice("w", 64, "00:00-24:00"))
	for i := range 200 {
		e.Hold(t0, HoldRequest{Office: "w", Service: "patent", Applicant: fmt.Sprintf("x%d", i), EarliestAfter: d(1).At(0, msk)}, portal())
	}
	b.ReportAllocs()
	b.ResetTimer()
	var slots []StepFree
	for b.Loop() {
		var err error
		if slots, _, err = e.AppendSlotSteps(slots[:0], t0, "w", d(1), "patent"); err != nil || len(slots) != 96 {
			b.Fatal(len(slots), err)
		}
	}
	reportRate(b, "reads/s")
}

// BenchmarkSearch200: the nearest free starts across 200 offices (Search),
// each office's first week partly booked.
func BenchmarkSearch200(b *testing.B) {
	var cfgs []OfficeConfig
	for i := range 200 {
		cfgs = append(cfgs, testOffice(fmt.Sprintf("s%03d", i)))
	}
	e, _ := newTestEngine(b, cfgs...)
	for i := range 2000 {
		e.Hold(t0, HoldRequest{Office: cfgs[i%200].ID, Service: "patent", Applicant: fmt.Sprintf("x%d", i), EarliestAfter: d(1).At(0, msk)}, portal())
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if got := e.Search(t0, "moscow", "patent", d(1).At(0, msk), 10); len(got) != 10 {
			b.Fatal(got)
		}
	}
	reportRate(b, "searches/s")
}

func heapBytes() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// BenchmarkMemoryOfficeDays: 1,000 offices × 30 days × 10 windows × 48
// steps materialised. Reports the bytes of the days alone and of an office
// without days. The timed loop only reads counters.
func BenchmarkMemoryOfficeDays(b *testing.B) {
	const offices, dates = 1000, 30
	before := heapBytes()
	e, err := New(Config{Journal: discardJournal{}})
	if err != nil {
		b.Fatal(err)
	}
	for i := range offices {
		cfg := allDayOffice(fmt.Sprintf("m%04d", i), 10)
		cfg.SlotMinutes = 30
		if _, err := e.PutOffice(t0, cfg, Meta{}); err != nil {
			b.Fatal(err)
		}
	}
	withOffices := heapBytes()
	var days []*day
	for _, id := range e.OfficeIDs() {
		o, _ := e.office(id)
		for i := range dates {
			days = append(days, o.day(o.lay.Load(), d(i)))
		}
	}
	withDays := heapBytes()
	var sum int64
	for i := 0; b.Loop(); i++ {
		sum += days[i%len(days)].freeSeats()
	}
	// After the loop: b.Loop's first call drops metrics reported before it.
	b.ReportMetric(float64(withOffices-before)/offices, "bytes/office")
	b.ReportMetric(float64(withDays-withOffices)/(offices*dates), "bytes/office-day")
	runtime.KeepAlive(e)
	runtime.KeepAlive(sum)
}

// BenchmarkMemoryPerBooking: 100,000 active bookings of 33,334 applicants
// (three each, the default limit, of three services) over 4 offices, held or confirmed (one
// history entry more). Reports heap bytes per booking; DESIGN §6 targets
// ≤ 256 B.
func BenchmarkMemoryPerBooking(b *testing.B) {
	for _, confirm := range []bool{false, true} {
		name := "held"
		if confirm {
			name = "confirmed"
		}
		b.Run(name, func(b *testing.B) { benchMemoryPerBooking(b, confirm) })
	}
}

func benchMemoryPerBooking(b *testing.B, confirm bool) {
	const n, offices = 100_000, 4
	e, err := New(Config{Journal: discardJournal{}})
	if err != nil {
		b.Fatal(err)
	}
	// Three services, one booking of each per applicant: a second active
	// booking of one service anywhere is a duplicate.
	services := [3]string{"patent", "passport", "registration"}
	for i := range offices {
		cfg := hammerOffice(fmt.Sprintf("p%d", i), 10, "00:00-24:00")
		for _, id := range services[1:] {
			cfg.Services = append(cfg.Services, ServiceConfig{ID: id, Name: id, Slots: 1, Reschedulable: true})
		}
		if _, err := e.PutOffice(t0, cfg, Meta{}); err != nil {
			b.Fatal(err)
		}
		o, _ := e.office(cfg.ID)
		for day := 1; day <= 30; day++ { // days exist before: count bookings only
			o.day(o.lay.Load(), d(day))
		}
	}
	applicants := make([]string, n/3+1)
	for i := range applicants {
		applicants[i] = fmt.Sprintf("applicant-%06d", i)
	}
	before := heapBytes()
	for i := range n {
		seat := i / offices // 10 windows × 96 steps × 30 days per office
		req := HoldRequest{Office: fmt.Sprintf("p%d", i%offices), Service: services[i%3], Applicant: applicants[i/3],
			Start: d(1+seat/960).At(15*((seat/10)%96), msk), Confirm: confirm}
		if _, err := e.Hold(t0, req, portal()); err != nil {
			b.Fatalf("hold %d: %v", i, err)
		}
	}
	perBooking := float64(heapBytes()-before) / n
	for b.Loop() {
		e.Stats()
	}
	b.ReportMetric(perBooking, "B/booking")
	runtime.KeepAlive(e)
}

// BenchmarkMemoryFailedHolds: b.N distinct applicants each try to hold a
// start that is taken, the way a bot rotating ids does. Reports the heap
// bytes left behind per distinct failed applicant, measured after GC: an
// applicant whose hold failed has nothing the rules need, so this should
// stay near 0 however many there were. Run with -benchtime=2000000x for
// millions of applicants.
func BenchmarkMemoryFailedHolds(b *testing.B) {
	e, err := New(Config{Journal: discardJournal{}})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := e.PutOffice(t0, hammerOffice("f", 1, "00:00-24:00"), Meta{}); err != nil {
		b.Fatal(err)
	}
	start := d(1).At(9*60, msk)
	if _, err := e.Hold(t0, HoldRequest{Office: "f", Service: "patent", Applicant: "holder", Start: start}, portal()); err != nil {
		b.Fatal(err)
	}
	id := make([]byte, 0, 32)
	before := heapBytes()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		id = fmt.Appendf(id[:0], "bot-%d", i)
		if _, err := e.Hold(t0, HoldRequest{Office: "f", Service: "patent", Applicant: string(id), Start: start}, portal()); err == nil {
			b.Fatal("a hold of a taken start went through")
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(int64(heapBytes())-int64(before))/float64(b.N), "B/failed-applicant")
	runtime.KeepAlive(e)
}
