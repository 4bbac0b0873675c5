package allocator

import (
	"math/bits"
	"math/rand/v2"
	"testing"
)

// The bit-sliced start counter agrees with counting set bits one by one,
// for any number of windows up to windowsMax and any bitmaps, read one
// step at a time (at) and eight at a time (eight, up to 255 windows).
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
		planes := bits.Len(uint(windows))
		for s := range naive {
			if got := c.at(s, planes); got != naive[s] {
				t.Fatalf("trial %d (%d windows): step %d counted %d, want %d", trial, windows, s, got, naive[s])
			}
			if planes > eightMax {
				continue
			}
			if got := int(c.eight(s/8, planes) >> (8 * (s % 8)) & 0xff); got != naive[s] {
				t.Fatalf("trial %d (%d windows): eight counted step %d as %d, want %d", trial, windows, s, got, naive[s])
			}
		}
	}
}
