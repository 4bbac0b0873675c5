package loadtest

// plot.png: a picture of one run that needs no browser — answer latency
// over time (one dot per answer, coloured by its class) above the answers
// per second of each class. vegeta's plot.html draws the same latencies
// interactively.

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"
	"math"
	"time"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// chartPointsMax bounds the dots kept: beyond it every other one is
// dropped and only every 2nd (4th, …) later one kept, so the picture
// stays an even sample of the run.
const chartPointsMax = 200_000

type chartPoint struct {
	at      float32 // seconds since the run began
	latency float32 // milliseconds
	class   uint8   // index into classes
}

// chartSeries collects the dots of a run. Handler goroutine only.
type chartSeries struct {
	// total counts every answer per class, sampled or not: the legend's
	// figures, exact however many dots were dropped.
	total  [len(classes)]int
	points []chartPoint
	stride int // keep one answer in stride
	seen   int
}

// add records an answer at, after the run began.
func (c *chartSeries) add(at, latency time.Duration, class Class) {
	ci := classIndex(class)
	c.total[ci]++
	c.seen++
	if c.stride > 1 && c.seen%c.stride != 0 {
		return
	}
	c.points = append(c.points, chartPoint{
		at:      float32(at.Seconds()),
		latency: float32(latency.Seconds() * 1e3),
		class:   uint8(ci),
	})
	if len(c.points) >= chartPointsMax {
		kept := c.points[:0]
		for i := 0; i < len(c.points); i += 2 {
			kept = append(kept, c.points[i])
		}
		c.points = kept
		c.stride = max(2, 2*c.stride)
	}
}

// classIndex is the position of class in classes.
func classIndex(class Class) int {
	for i, k := range classes {
		if k == class {
			return i
		}
	}
	return len(classes) - 1 // unknown: drawn as an error
}

// classColors gives each Class its colour, in the order of classes.
var classColors = [len(classes)]color.RGBA{
	{0x2b, 0x8c, 0x3e, 0xff}, // ok
	{0xe0, 0xa0, 0x00, 0xff}, // slot_taken
	{0x8e, 0x5b, 0xc8, 0xff}, // duplicate
	{0x7f, 0x7f, 0x7f, 0xff}, // not_released
	{0xe8, 0x5d, 0x0c, 0xff}, // rate_limited
	{0xd0, 0x1c, 0x1c, 0xff}, // shed
	{0x3a, 0x6e, 0xc8, 0xff}, // refused
	{0x00, 0x00, 0x00, 0xff}, // error
}

var (
	chartInk  = color.RGBA{0x20, 0x20, 0x20, 0xff}
	chartGrid = color.RGBA{0xe4, 0xe4, 0xe4, 0xff}
)

const (
	chartW, chartH   = 1200, 760
	chartLeft        = 80
	chartRight       = 170 // the legend sits here
	chartTop         = 40
	chartLatencyH    = 420
	chartGap         = 50
	chartRateH       = 190
	chartRateBinsMax = 240
)

// writePNG draws the chart; title goes on top.
func (c *chartSeries) writePNG(w io.Writer, title string) error {
	img := image.NewRGBA(image.Rect(0, 0, chartW, chartH))
	draw.Draw(img, img.Bounds(), image.White, image.Point{}, draw.Src)
	text(img, chartLeft, 22, title)

	x0, x1 := chartLeft, chartW-chartRight
	var span float64
	lmin, lmax := math.Inf(1), 0.0
	for _, p := range c.points {
		span = max(span, float64(p.at))
		if p.latency > 0 {
			lmin = min(lmin, float64(p.latency))
		}
		lmax = max(lmax, float64(p.latency))
	}
	span = max(span, 1)
	if lmax == 0 {
		lmin, lmax = 0.1, 1
	}
	xOf := func(s float64) int { return x0 + int(s/span*float64(x1-x0)) }

	// Latency panel: log scale, one decade per gridline.
	ly0, ly1 := chartTop+chartLatencyH, chartTop
	dlo, dhi := math.Floor(math.Log10(lmin)), math.Ceil(math.Log10(lmax))
	if dhi <= dlo {
		dhi = dlo + 1
	}
	yOfLatency := func(ms float64) int {
		if ms <= 0 {
			return ly0
		}
		f := (math.Log10(ms) - dlo) / (dhi - dlo)
		return ly0 - int(f*float64(ly0-ly1))
	}
	for d := dlo; d <= dhi; d++ {
		y := yOfLatency(math.Pow(10, d))
		hline(img, x0, x1, y, chartGrid)
		text(img, 8, y+4, msLabel(math.Pow(10, d)))
	}
	xTicks(img, x0, x1, ly0, span, xOf)
	frame(img, x0, x1, ly1, ly0)
	text(img, x0+6, ly1+16, "latency of each answer (log scale)")
	// Successes first, so the refusals and errors drawn over them show.
	for ci := range classes {
		col := classColors[ci]
		for _, p := range c.points {
			if int(p.class) == ci {
				dot(img, xOf(float64(p.at)), yOfLatency(float64(p.latency)), col)
			}
		}
	}

	// Rate panel: answers per second of each class, per bin.
	ry1 := ly0 + chartGap
	ry0 := ry1 + chartRateH
	bins := min(chartRateBinsMax, max(1, int(span*10)))
	binSec := span / float64(bins)
	counts := make([][]int, len(classes)) // answers per class and bin, from the dots
	for ci := range counts {
		counts[ci] = make([]int, bins)
	}
	for _, p := range c.points {
		b := min(bins-1, int(float64(p.at)/binSec))
		counts[p.class][b] += max(1, c.stride)
	}
	var peak float64
	for ci := range counts {
		for _, n := range counts[ci] {
			peak = max(peak, float64(n)/binSec)
		}
	}
	step := niceStep(max(peak, 1) / 4)
	top := math.Ceil(max(peak, 1)/step) * step
	yOfRate := func(r float64) int { return ry0 - int(r/top*float64(ry0-ry1)) }
	for r := 0.0; r <= top; r += step {
		y := yOfRate(r)
		hline(img, x0, x1, y, chartGrid)
		text(img, 8, y+4, fmt.Sprintf("%.0f/s", r))
	}
	xTicks(img, x0, x1, ry0, span, xOf)
	frame(img, x0, x1, ry1, ry0)
	text(img, x0+6, ry1+16, "answers per second")
	text(img, (x0+x1)/2-60, ry0+34, "seconds since the start")
	for ci := range counts {
		if c.total[ci] == 0 {
			continue
		}
		px, py := -1, 0
		for b, n := range counts[ci] {
			x, y := xOf((float64(b)+0.5)*binSec), yOfRate(float64(n)/binSec)
			if px >= 0 {
				line(img, px, py, x, y, classColors[ci])
			}
			px, py = x, y
		}
	}

	// Legend: the classes that occur, with their counts.
	ly := chartTop + 10
	for ci, k := range classes {
		if c.total[ci] == 0 {
			continue
		}
		draw.Draw(img, image.Rect(x1+14, ly-9, x1+24, ly+1), image.NewUniform(classColors[ci]), image.Point{}, draw.Src)
		text(img, x1+30, ly, fmt.Sprintf("%s %d", k, c.total[ci]))
		ly += 18
	}
	if c.stride > 1 {
		text(img, x1+14, ly+8, fmt.Sprintf("1 dot per %d", c.stride))
	}
	return png.Encode(w, img)
}

// xTicks labels the time axis below y with about ten round values.
func xTicks(img *image.RGBA, x0, x1, y int, span float64, xOf func(float64) int) {
	step := niceStep(span / 10)
	for s := 0.0; s <= span+step/1e6; s += step {
		x := xOf(s)
		vline(img, x, y, y+4, chartInk)
		label := fmt.Sprintf("%g", math.Round(s*1000)/1000)
		text(img, x-len(label)*7/2, y+17, label)
	}
}

// niceStep rounds v up to 1, 2 or 5 times a power of ten.
func niceStep(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

func msLabel(ms float64) string {
	switch {
	case ms >= 1000:
		return fmt.Sprintf("%g s", ms/1000)
	case ms >= 1:
		return fmt.Sprintf("%g ms", ms)
	default:
		return fmt.Sprintf("%g us", ms*1000) // the bitmap font has ASCII only
	}
}

func text(img *image.RGBA, x, y int, s string) {
	d := font.Drawer{Dst: img, Src: image.NewUniform(chartInk), Face: basicfont.Face7x13,
		Dot: fixed.P(x, y)}
	d.DrawString(s)
}

func dot(img *image.RGBA, x, y int, c color.RGBA) {
	for dx := 0; dx < 2; dx++ {
		for dy := 0; dy < 2; dy++ {
			img.SetRGBA(x+dx, y-dy, c)
		}
	}
}

func hline(img *image.RGBA, x0, x1, y int, c color.RGBA) {
	for x := x0; x <= x1; x++ {
		img.SetRGBA(x, y, c)
	}
}

func vline(img *image.RGBA, x, y0, y1 int, c color.RGBA) {
	for y := y0; y <= y1; y++ {
		img.SetRGBA(x, y, c)
	}
}

func frame(img *image.RGBA, x0, x1, y0, y1 int) {
	hline(img, x0, x1, y0, chartInk)
	hline(img, x0, x1, y1, chartInk)
	vline(img, x0, y0, y1, chartInk)
	vline(img, x1, y0, y1, chartInk)
}

// line draws from (x0, y0) to (x1, y1), two pixels thick (Bresenham).
func line(img *image.RGBA, x0, y0, x1, y1 int, c color.RGBA) {
	dx, dy := abs(x1-x0), -abs(y1-y0)
	sx, sy := 1, 1
	if x0 > x1 {
		sx = -1
	}
	if y0 > y1 {
		sy = -1
	}
	e := dx + dy
	for {
		img.SetRGBA(x0, y0, c)
		img.SetRGBA(x0, y0+1, c)
		if x0 == x1 && y0 == y1 {
			return
		}
		e2 := 2 * e
		if e2 >= dy {
			e += dy
			x0 += sx
		}
		if e2 <= dx {
			e += dx
			y0 += sy
		}
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}
