package allocator

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// Search is the earliest limit starts of the union of every matching
// office's FirstFree, ties in office order: what a stable sort of all of
// them gives. Offices on 15-, 20- and 30-minute grids in two regions, some
// partly booked, so that starts interleave and tie across offices.
func TestSearchIsTheEarliestAcrossOffices(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 0))
	var cfgs []OfficeConfig
	for i := range 24 {
		cfg := testOffice(fmt.Sprintf("s%02d", i))
		cfg.SlotMinutes = []int{15, 20, 30}[i%3]
		if i%4 == 3 {
			cfg.Region = "spb"
		}
		cfgs = append(cfgs, cfg)
	}
	e, _ := newTestEngine(t, cfgs...)
	for i := range 600 {
		cfg := cfgs[r.IntN(len(cfgs))]
		_, _ = e.Hold(t0, HoldRequest{Office: cfg.ID, Service: "patent", Applicant: fmt.Sprintf("x%d", i),
			EarliestAfter: at(1+r.IntN(3), 9+r.IntN(8), 0)}, portal())
	}
	for trial := range 200 {
		region := []string{"", "moscow", "spb", "nowhere"}[trial%4]
		service := []string{"patent", "rvp"}[trial%2]
		after := at(1+r.IntN(4), r.IntN(24), r.IntN(60))
		limit := 1 + r.IntN(40)
		var want []Opening
		for _, id := range e.OfficeIDs() {
			o, _ := e.office(id)
			if region != "" && o.lay.Load().cfg.Region != region {
				continue
			}
			ff, err := e.FirstFree(t0, id, service, after, limit)
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, ff...)
		}
		slices.SortStableFunc(want, byStart)
		want = want[:min(len(want), limit)]
		got := e.Search(t0, region, service, after, limit)
		if len(got) != len(want) {
			t.Fatalf("trial %d: %d openings, want %d", trial, len(got), len(want))
		}
		for i := range got {
			if got[i].Office != want[i].Office || !got[i].Start.Equal(want[i].Start) || got[i].Free != want[i].Free {
				t.Fatalf("trial %d (%q %s after %s, limit %d): opening %d is %+v, want %+v", trial, region, service, after, limit, i, got[i], want[i])
			}
		}
	}
}

// On the nights the clocks change, an office's starts and those of
// offices an hour east still come out earliest first, ties in office
// order. Each office's own openings are in order of time and name each
// instant once: a day's steps are (claim invariant C5).
func TestSearchAcrossTheClockChange(t *testing.T) {
	var cfgs []OfficeConfig
	for i, zone := range []string{"Europe/Berlin", "Europe/Moscow", "Europe/Berlin", "Europe/Kaliningrad"} {
		cfg := hammerOffice(fmt.Sprintf("z%d", i), 2, "00:00-24:00")
		cfg.Timezone, cfg.Region = zone, "eu"
		cfg.SlotMinutes = []int{15, 20, 30, 10}[i]
		cfg.Policy.HorizonDays = horizonDaysMax
		cfgs = append(cfgs, cfg)
	}
	e, _ := newTestEngine(t, cfgs...)
	for _, after := range []time.Time{
		time.Date(2027, 3, 28, 1, 30, 0, 0, berlin),  // 02:00 CET becomes 03:00 CEST
		time.Date(2027, 10, 31, 1, 30, 0, 0, berlin), // 03:00 CEST becomes 02:00 CET
	} {
		got := e.Search(t0, "eu", "patent", after, 100)
		if len(got) != 100 {
			t.Fatalf("%s: %d openings", after, len(got))
		}
		if !slices.IsSortedFunc(got, byStart) {
			t.Fatalf("%s: not earliest first: %v", after, got)
		}
		var want []Opening
		for _, cfg := range cfgs {
			ff, err := e.FirstFree(t0, cfg.ID, "patent", after, 100)
			if err != nil {
				t.Fatal(err)
			}
			for i := 1; i < len(ff); i++ {
				if !ff[i-1].Start.Before(ff[i].Start) {
					t.Fatalf("%s: %s's own openings %s then %s", after, cfg.ID, ff[i-1].Start.Format(time.RFC3339), ff[i].Start.Format(time.RFC3339))
				}
			}
			want = append(want, ff...)
		}
		slices.SortStableFunc(want, byStart)
		for i := range got {
			if got[i].Office != want[i].Office || !got[i].Start.Equal(want[i].Start) {
				t.Fatalf("%s: opening %d is %+v, want %+v", after, i, got[i], want[i])
			}
		}
	}
}
