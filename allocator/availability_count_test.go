package allocator

import (
	"math/bits"
	"math/rand/v2"
	"testing"
)

// The bit-sliced start counter agrees with counting set bits one by one,
// for any number of windows up to windowsMax and any bitmaps.
func TestStartCountsMatchNaiveCount(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 0))
	for trial := 0; trial < 200; trial++ {
		windows := 1 + r.IntN(windowsMax)
		if trial == 0 {
			windows = windowsMax // every bitmap full: the largest count
		}
		words := 1 + r.IntN(8)
		var c startCounts
		naive := make([]int, words*64)
		for w := 0; w < windows; w++ {
			bm := make([]uint64, words)
			for i := range bm {
				switch {
				case trial == 0:
					bm[i] = ^uint64(0)
				default:
					bm[i] = r.Uint64() & r.Uint64() // about a quarter of the bits
				}
				for x := bm[i]; x != 0; x &= x - 1 {
					naive[i*64+bits.TrailingZeros64(x)]++
				}
			}
			c.add(bm)
		}
		for s := range naive {
			if got := c.at(s, bits.Len(uint(windows))); got != naive[s] {
				t.Fatalf("trial %d (%d windows): step %d counted %d, want %d", trial, windows, s, got, naive[s])
			}
		}
	}
}
