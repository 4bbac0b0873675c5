package loadtest

import (
	"bytes"
	"image/png"
	"testing"
	"time"
)

// The chart shows every class that occurred in its colour, in both
// panels, and keeps to its bound on dots by sampling evenly.
func TestChartDrawsEachClass(t *testing.T) {
	var c chartSeries
	for i := 0; i < 3000; i++ {
		at := time.Duration(i) * time.Millisecond
		class := ClassOK
		switch {
		case i%10 == 0:
			class = ClassSlotTaken
		case i%97 == 0:
			class = ClassShed
		}
		c.add(at, time.Duration(1+i%50)*time.Millisecond, class)
	}
	var buf bytes.Buffer
	if err := c.writePNG(&buf, "test"); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != chartW || b.Dy() != chartH {
		t.Fatalf("chart is %v", b)
	}
	// Count the pixels of each class colour inside each panel.
	latency, rate := map[int]int{}, map[int]int{}
	for y := 0; y < chartH; y++ {
		for x := chartLeft; x < chartW-chartRight; x++ {
			r, g, b, _ := img.At(x, y).RGBA()
			for ci, col := range classColors {
				if uint8(r>>8) == col.R && uint8(g>>8) == col.G && uint8(b>>8) == col.B {
					if y < chartTop+chartLatencyH {
						latency[ci]++
					} else {
						rate[ci]++
					}
				}
			}
		}
	}
	for _, k := range []Class{ClassOK, ClassSlotTaken, ClassShed} {
		ci := classIndex(k)
		if latency[ci] == 0 || rate[ci] == 0 {
			t.Errorf("%s: %d pixels in the latency panel, %d in the rate panel", k, latency[ci], rate[ci])
		}
	}
	if ci := classIndex(ClassError); latency[ci] != 0 {
		t.Errorf("no errors occurred, yet %d error pixels", latency[ci])
	}
}

func TestChartSamplesBeyondItsBound(t *testing.T) {
	var c chartSeries
	const n = 3*chartPointsMax + 17
	for i := 0; i < n; i++ {
		c.add(time.Duration(i)*time.Microsecond, time.Millisecond, ClassOK)
	}
	if len(c.points) >= chartPointsMax || len(c.points) < chartPointsMax/4 {
		t.Fatalf("%d dots kept of %d, bound %d", len(c.points), n, chartPointsMax)
	}
	// Evenly: the kept dots span the whole run.
	if last := c.points[len(c.points)-1].at; float64(last) < 0.9*float64(n)*1e-6 {
		t.Fatalf("the last kept dot is at %.3fs of %.3fs", last, float64(n)*1e-6)
	}
	var buf bytes.Buffer
	if err := c.writePNG(&buf, "many"); err != nil {
		t.Fatal(err)
	}
	var empty chartSeries
	if err := empty.writePNG(&buf, "empty"); err != nil {
		t.Fatal(err)
	}
}
