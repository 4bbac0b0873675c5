package loadtest

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"testing"
	"time"
)

// colorPixels counts the pixels of exactly col inside r, per column.
func colorPixels(img image.Image, r image.Rectangle, col color.RGBA) map[int]int {
	cols := map[int]int{}
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			cr, cg, cb, _ := img.At(x, y).RGBA()
			if uint8(cr>>8) == col.R && uint8(cg>>8) == col.G && uint8(cb>>8) == col.B {
				cols[x]++
			}
		}
	}
	return cols
}

func pixelCount(img image.Image, r image.Rectangle, col color.RGBA) int {
	n := 0
	for _, c := range colorPixels(img, r, col) {
		n += c
	}
	return n
}

// The chart shows every class that occurred in its colour, in both
// panels, and nothing of a class that did not occur.
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
		c.add(at, time.Duration(1+i%50)*time.Millisecond, class, false)
	}
	var buf bytes.Buffer
	if err := c.writePNG(&buf, "test"); err != nil {
		t.Fatal(err)
	}
	decoded, err := png.Decode(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if b := decoded.Bounds(); b.Dx() != chartW || b.Dy() != chartH {
		t.Fatalf("chart is %v", b)
	}
	img, frame := c.render("test")
	if len(frame.panels) != 2 {
		t.Fatalf("%d panels without bots, want latency and rate", len(frame.panels))
	}
	latency, rate := frame.panels[0], frame.panels[1]
	if latency.Dx() < chartW/2 || rate.Dy() < 100 || latency.Max.Y > rate.Min.Y {
		t.Fatalf("panels %v and %v", latency, rate)
	}
	for _, k := range []Class{ClassOK, ClassSlotTaken, ClassShed} {
		col := classColors[classIndex(k)]
		if l, r := pixelCount(img, latency, col), pixelCount(img, rate, col); l == 0 || r == 0 {
			t.Errorf("%s: %d pixels in the latency panel, %d in the rate panel", k, l, r)
		}
	}
	for _, k := range []Class{ClassError, ClassRateLimited} {
		if n := pixelCount(img, img.Bounds(), classColors[classIndex(k)]); n != 0 {
			t.Errorf("no %s occurred, yet %d of its pixels", k, n)
		}
	}
	if n := pixelCount(img, img.Bounds(), chartMarkColor); n != 0 {
		t.Errorf("nothing to mark, yet %d marker pixels", n)
	}
}

// The release and the lottery draw are vertical lines at their instants,
// in every panel; a release without a lottery has no draw line.
func TestChartMarksReleaseAndLotteryDraw(t *testing.T) {
	f := func(lottery time.Duration, want []float64) {
		t.Helper()
		var c chartSeries
		for i := 0; i < 5000; i++ {
			c.add(time.Duration(i)*time.Millisecond, 2*time.Millisecond, ClassOK, false)
		}
		c.markRelease(time.Second, lottery)
		img, frame := c.render("marks")
		near := func(x int) bool {
			for _, s := range want {
				if d := x - frame.column(s); d >= -3 && d <= 3 {
					return true
				}
			}
			return false
		}
		for i, panel := range frame.panels {
			cols := colorPixels(img, panel, chartMarkColor)
			for _, s := range want {
				x, n := frame.column(s), 0
				for dx := -3; dx <= 3; dx++ {
					n += cols[x+dx]
				}
				// A line across the panel, dashed or not.
				if n < panel.Dy()/3 {
					t.Errorf("lottery %s: panel %d has %d marker pixels around column %d (%.1fs), want a line of %d",
						lottery, i, n, x, s, panel.Dy())
				}
			}
			if i == 0 {
				continue // the labels sit beside the lines
			}
			for x, n := range cols {
				if !near(x) {
					t.Errorf("lottery %s: panel %d has %d marker pixels in column %d, away from every mark", lottery, i, n, x)
				}
			}
		}
	}
	f(2*time.Second, []float64{1, 3})
	f(0, []float64{1})
}

// With bots, their answers per second get a panel of their own, so the
// picture shows what each group got: here people booked and bots were
// rate-limited, and each panel shows only its group's classes.
func TestChartSeparatesBotsFromPeople(t *testing.T) {
	var c chartSeries
	for i := 0; i < 4000; i++ {
		at := time.Duration(i) * time.Millisecond
		if i%4 == 0 {
			c.add(at, 3*time.Millisecond, ClassOK, false)
		} else {
			c.add(at, time.Millisecond, ClassRateLimited, true)
		}
	}
	img, frame := c.render("bots")
	if b := img.Bounds(); b.Dx() != chartW || b.Dy() != chartHSplit {
		t.Fatalf("chart is %v", b)
	}
	if len(frame.panels) != 3 {
		t.Fatalf("%d panels with bots, want latency, people and bots", len(frame.panels))
	}
	latency, people, bots := frame.panels[0], frame.panels[1], frame.panels[2]
	if !(latency.Max.Y <= people.Min.Y && people.Max.Y <= bots.Min.Y) || people.Min.X != bots.Min.X {
		t.Fatalf("panels %v, %v, %v: want them stacked with one time axis", latency, people, bots)
	}
	ok, limited := classColors[classIndex(ClassOK)], classColors[classIndex(ClassRateLimited)]
	f := func(panel string, r image.Rectangle, col color.RGBA, want bool) {
		t.Helper()
		if n := pixelCount(img, r, col); (n > 0) != want {
			t.Errorf("%s panel: %d pixels of %v, want some: %v", panel, n, col, want)
		}
	}
	f("latency", latency, ok, true)
	f("latency", latency, limited, true)
	f("people", people, ok, true)
	f("people", people, limited, false)
	f("bots", bots, ok, false)
	f("bots", bots, limited, true)
}

func TestChartSamplesBeyondItsBound(t *testing.T) {
	var c chartSeries
	const n = 3*chartPointsMax + 17
	for i := 0; i < n; i++ {
		c.add(time.Duration(i)*time.Microsecond, time.Millisecond, ClassOK, i%5 == 0)
	}
	if len(c.points) >= chartPointsMax || len(c.points) < chartPointsMax/4 {
		t.Fatalf("%d dots kept of %d, bound %d", len(c.points), n, chartPointsMax)
	}
	// Evenly: the kept dots span the whole run.
	if last := c.points[len(c.points)-1].at; float64(last) < 0.9*float64(n)*1e-6 {
		t.Fatalf("the last kept dot is at %.3fs of %.3fs", last, float64(n)*1e-6)
	}
	// The legend's counts are exact however many dots were dropped.
	if got := c.total[groupPeople][0] + c.total[groupBots][0]; got != n {
		t.Fatalf("%d answers counted of %d", got, n)
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
