package httpapi

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"slotd/allocator"
	"slotd/internal/slotdtest/testtime"
)

// Holds waiting for a release lottery's draw do not occupy in-flight
// slots: a crowd larger than InFlightMax all gets into the draw instead of
// the late part of it being shed (which would hand the rush back to the
// fastest).
func TestLotteryWaitersDoNotHoldInFlightSlots(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.InFlightMax = 2 })
	cfg := testOffice("office-l")
	cfg.Policy.ReleaseLottery = allocator.Duration(2 * time.Second)
	if _, err := e.eng.PutOffice(e.clock.Now(), cfg, allocator.Meta{Actor: "setup"}); err != nil {
		t.Fatal(err)
	}
	rec, _ := e.eng.Office("office-l")
	through := rec.ReleasedThrough + 7
	if _, err := e.eng.Release(e.clock.Now(), "office-l", through, allocator.Meta{Actor: "admin"}); err != nil {
		t.Fatal(err)
	}
	after := (rec.ReleasedThrough + 1).String() + "T00:00:00+03:00"
	const crowd = 6
	codes := make([]int, crowd)
	var wg sync.WaitGroup
	for i := 0; i < crowd; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := e.post("/v1/bookings", keyPortal, fmt.Sprintf(`{"office":"office-l","service":"patent","applicant":"p%d","earliest_after":%q}`, i, after))
			codes[i] = r.status
		}()
	}
	err := testtime.Poll(20*time.Second, func() error { // a bound, not an assertion
		if n := e.eng.Stats().LotteryEntries; n < crowd {
			return fmt.Errorf("only %d of %d holds entered the draw", n, crowd)
		}
		return nil
	})
	if err != nil {
		wg.Wait() // the answers, read below, are written by the holds' goroutines
		t.Fatalf("%v; answers %v", err, codes)
	}
	e.clock.Add(2 * time.Second)
	if err := e.eng.Tick(e.clock.Now()); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for i, c := range codes {
		if c != 201 {
			t.Fatalf("applicant %d got %d; all answers %v", i, c, codes)
		}
	}
}
