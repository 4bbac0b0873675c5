package replica

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"slotd/allocator"
	"slotd/internal/slotdtest"
)

// BenchmarkHoldTwoGroups holds and cancels seats at an office of group 1
// of a three-node, two-group cluster in process (real Pebble, loopback
// Raft), one applicant per hold, half of them homed in the other group:
// with the ledger, each hold and each cancel makes one more commit in the
// applicant's home group; "off" is the same cluster without it (each
// group then enforces the applicant rules for its own offices only).
//
//	for i in 1 2 3; do for m in ledger off; do
//	  go test -run=NONE -bench=HoldTwoGroups/$m -benchtime=4000x ./replica; done; done
func BenchmarkHoldTwoGroups(b *testing.B) {
	for _, mode := range []string{"ledger", "off"} {
		b.Run(mode, func(b *testing.B) {
			// slotd's own Raft tick: elections after a second, not after
			// the tests' 100 ms, which a loaded machine outlasts.
			c := &testCluster{t: b, isolated: map[uint64]bool{}, tick: 100 * time.Millisecond}
			if mode == "off" {
				c.broken = func(r *Replica) { r.testNoLedger = true }
			}
			startCluster(c, 3, 2)
			_, e := c.leaderEngine(1)
			for i := range 8 {
				if _, err := e.PutOffice(slotdtest.BenchNow, slotdtest.BenchOffice(i), allocator.Meta{Actor: "bench"}); err != nil {
					b.Fatal(err)
				}
			}
			var next, refused atomic.Int64
			b.ReportAllocs()
			b.SetParallelism(8) // 16 callers on two cores: commits overlap, as under an edge
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := next.Add(1)
					office, start := slotdtest.BenchSeat(i)
					office = fmt.Sprintf("o%03d", i%8)
					applicant := fmt.Sprintf("ns\x00b%d", i)
					bk, err := e.Hold(slotdtest.BenchNow, allocator.HoldRequest{Office: office, Service: "s", Applicant: applicant, Start: start}, allocator.Meta{Actor: "bench"})
					if err == nil {
						_, err = e.Cancel(slotdtest.BenchNow, bk.ID, applicant, allocator.Meta{Actor: "bench"})
					}
					if err != nil {
						refused.Add(1) // a leadership change under load: counted, not retried
					}
				}
			})
			b.ReportMetric(float64(refused.Load())/float64(b.N), "refused/op")
			if refused.Load() > int64(b.N)/10 {
				b.Fatalf("%d of %d refused: the cluster did not serve", refused.Load(), b.N)
			}
		})
	}
}
