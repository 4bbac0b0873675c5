package loadtest

// plot.png: a picture of one run that needs no browser — answer latency
// over time (one dot per answer, coloured by its class) above the answers
// per second of each class, with the release instant and the lottery draw
// marked when the run had them. When bots took part (botrush), a bot's
// dots are triangles and a person's are discs, and the answers per second
// get one panel for people and one for bots on the same scale: the green
// line of each says who got the seats. gonum/plot draws it; vegeta's
// plot.html draws the same latencies interactively.

import (
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"math"
	"time"

	xfont "golang.org/x/image/font"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// chartPointsMax bounds the dots kept: beyond it every other one is
// dropped and only every 2nd (4th, …) later one kept, so the picture
// stays an even sample of the run.
const chartPointsMax = 200_000

type chartPoint struct {
	at      float32 // seconds since the run began
	latency float32 // milliseconds
	class   uint8   // index into classes
	bot     bool    // the answer went to a bot (botrush)
}

// Who an answer went to: the chart counts and draws people and bots
// apart.
const (
	groupPeople = iota
	groupBots
	groupsCount
)

var groupNames = [groupsCount]string{"people", "bots"}

func (p chartPoint) group() int {
	if p.bot {
		return groupBots
	}
	return groupPeople
}

// chartMark is an instant of the run drawn as a labelled vertical line.
type chartMark struct {
	at     float64 // seconds since the run began
	label  string
	dashed bool
}

// chartSeries collects the dots of a run. Handler goroutine only.
type chartSeries struct {
	// total counts every answer per group and class, sampled or not: the
	// legend's figures, exact however many dots were dropped.
	total  [groupsCount][len(classes)]int
	points []chartPoint
	stride int // keep one answer in stride
	seen   int
	marks  []chartMark
}

// add records an answer at, after the run began; bot says whether it
// went to a bot.
func (c *chartSeries) add(at, latency time.Duration, class Class, bot bool) {
	ci := classIndex(class)
	p := chartPoint{
		at:      float32(at.Seconds()),
		latency: float32(latency.Seconds() * 1e3),
		class:   uint8(ci),
		bot:     bot,
	}
	c.total[p.group()][ci]++
	c.seen++
	if c.stride > 1 && c.seen%c.stride != 0 {
		return
	}
	c.points = append(c.points, p)
	if len(c.points) >= chartPointsMax {
		kept := c.points[:0]
		for i := 0; i < len(c.points); i += 2 {
			kept = append(kept, c.points[i])
		}
		c.points = kept
		c.stride = max(2, 2*c.stride)
	}
}

// markRelease marks the release, whose answer arrived at after the run
// began (the server opened the date at most then) and, when the office
// has a release lottery, its draw a lottery window later: the holds of
// the window wait for that line.
func (c *chartSeries) markRelease(at, lottery time.Duration) {
	c.marks = append(c.marks, chartMark{at: at.Seconds(), label: "release"})
	if lottery > 0 {
		c.marks = append(c.marks, chartMark{at: (at + lottery).Seconds(), label: "lottery draw", dashed: true})
	}
}

// hasBots reports whether any answer went to a bot: then the chart draws
// bots and people apart.
func (c *chartSeries) hasBots() bool {
	for _, n := range c.total[groupBots] {
		if n > 0 {
			return true
		}
	}
	return false
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

// groupGlyphs gives each group the shape of its dots: discs for people,
// larger triangles for bots, both filled so that they keep their colour
// where they overlap.
var groupGlyphs = [groupsCount]draw.GlyphStyle{
	{Shape: draw.CircleGlyph{}, Radius: chartPx(1.5)},
	{Shape: draw.PyramidGlyph{}, Radius: chartPx(2.5)},
}

var (
	chartInk       = color.RGBA{0x20, 0x20, 0x20, 0xff}
	chartGrid      = color.RGBA{0xe4, 0xe4, 0xe4, 0xff}
	chartMarkColor = color.RGBA{0x00, 0x96, 0x96, 0xff} // no class has it
	chartFont      = font.Font{Typeface: "Liberation", Variant: "Sans"}
)

// The picture's size and layout in pixels. The panels share the height
// left under the title by weight; plot.png is chartW × chartH, or ×
// chartHSplit with a rate panel for people and one for bots.
const (
	chartDPI           = 96
	chartW             = 1200
	chartH             = 760
	chartHSplit        = 980
	chartTitleH        = 56
	chartRight         = 290 // the legend's strip
	chartGap           = 24  // between panels
	chartLatencyWeight = 9
	chartRateWeight    = 5
	chartRateBinsMax   = 240
)

// chartPx is a length of n pixels at chartDPI.
func chartPx(n float64) vg.Length { return vg.Length(n) * vg.Inch / chartDPI }

// chartFrame says where render put the panels, for tests: the data area
// of each panel in pixels (latency first, then the rate panels in group
// order) and the seconds at their left and right edges.
type chartFrame struct {
	panels     []image.Rectangle
	xMin, xMax float64
}

// column is the pixel column of the instant s seconds after the start.
func (f chartFrame) column(s float64) int {
	p := f.panels[0]
	return p.Min.X + int(math.Round((s-f.xMin)/(f.xMax-f.xMin)*float64(p.Dx())))
}

// writePNG draws the chart; title goes on top (it may have several lines).
func (c *chartSeries) writePNG(w io.Writer, title string) error {
	img, _ := c.render(title)
	return png.Encode(w, img)
}

// render draws the chart.
func (c *chartSeries) render(title string) (image.Image, chartFrame) {
	groups := 1
	if c.hasBots() {
		groups = groupsCount
	}
	span := 1.0
	for _, p := range c.points {
		span = max(span, float64(p.at))
	}
	for _, m := range c.marks {
		span = max(span, m.at)
	}

	plots := append([]*plot.Plot{c.latencyPlot(span, groups)}, c.ratePlots(span, groups)...)
	weights := []int{chartLatencyWeight}
	for range groups {
		weights = append(weights, chartRateWeight)
	}
	heightPx := chartH
	if groups > 1 {
		heightPx = chartHSplit
	}

	canvas := vgimg.NewWith(vgimg.UseWH(chartPx(chartW), chartPx(float64(heightPx))), vgimg.UseDPI(chartDPI))
	dc := draw.New(canvas)
	titleStyle := chartText(12)
	titleStyle.Font.Weight = xfont.WeightBold
	titleStyle.YAlign = draw.YTop
	dc.FillText(titleStyle, vg.Point{X: chartPx(16), Y: dc.Max.Y - chartPx(10)}, title)

	area := draw.Crop(dc, 0, -chartPx(chartRight), chartPx(6), -chartPx(chartTitleH))
	tiles := alignedTiles(plots, stackTiles(area, weights, chartPx(chartGap)))
	frame := chartFrame{xMin: 0, xMax: span}
	for i, p := range plots {
		p.Draw(tiles[i])
		frame.panels = append(frame.panels, pixelRect(p.DataCanvas(tiles[i]), heightPx))
	}
	legend := c.legend(groups)
	legend.Draw(draw.Crop(dc, chartPx(chartW-chartRight+20), 0, 0, -chartPx(chartTitleH+8)))
	return canvas.Image(), frame
}

// latencyPlot is the top panel: the latency of every kept answer, log
// scale, one dot each.
func (c *chartSeries) latencyPlot(span float64, groups int) *plot.Plot {
	lmin, lmax := math.Inf(1), 0.0
	var dots [groupsCount][len(classes)]plotter.XYs
	for _, p := range c.points {
		if p.latency > 0 {
			lmin = min(lmin, float64(p.latency))
		}
		lmax = max(lmax, float64(p.latency))
		g := p.group()
		dots[g][p.class] = append(dots[g][p.class], plotter.XY{X: float64(p.at), Y: float64(p.latency)})
	}
	if lmax == 0 {
		lmin, lmax = 0.1, 1
	}
	dlo, dhi := math.Floor(math.Log10(lmin)), math.Ceil(math.Log10(lmax))
	if dhi <= dlo {
		dhi = dlo + 1
	}
	bottom := math.Pow(10, dlo)

	p := newChartPlot("latency of each answer (log scale)", "latency", span)
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = decadeTicks{}
	// Successes first, so the refusals and errors drawn over them show;
	// a class's bots over its people.
	for ci := range classes {
		for g := range groups {
			xys := dots[g][ci]
			if len(xys) == 0 {
				continue
			}
			for i := range xys {
				xys[i].Y = max(xys[i].Y, bottom) // a zero latency sits on the axis
			}
			s, err := plotter.NewScatter(xys)
			if err != nil {
				panic("BUG: chart dots are finite: " + err.Error())
			}
			s.GlyphStyle = groupGlyphs[g]
			s.GlyphStyle.Color = classColors[ci]
			p.Add(s)
		}
	}
	p.Add(markLines{marks: c.marks, labels: true})
	p.Y.Min, p.Y.Max = bottom, math.Pow(10, dhi)
	return p
}

// ratePlots are the answers per second of each class, one panel per
// group drawn apart, all on one scale.
func (c *chartSeries) ratePlots(span float64, groups int) []*plot.Plot {
	bins := min(chartRateBinsMax, max(1, int(span*10)))
	binSec := span / float64(bins)
	// Answers per group, class and bin, from the dots.
	var counts [groupsCount][len(classes)][]int
	for g := range groups {
		for ci := range classes {
			counts[g][ci] = make([]int, bins)
		}
	}
	for _, p := range c.points {
		b := min(bins-1, int(float64(p.at)/binSec))
		counts[p.group()][p.class][b] += max(1, c.stride) // groups is 1 only without bots
	}
	var peak float64
	for g := range groups {
		for ci := range classes {
			for _, n := range counts[g][ci] {
				peak = max(peak, float64(n)/binSec)
			}
		}
	}
	step := niceStep(max(peak, 1) / 4)

	plots := make([]*plot.Plot, groups)
	for g := range groups {
		heading := "answers per second"
		if groups > 1 {
			heading += " to " + groupNames[g]
		}
		p := newChartPlot(heading, "answers/s", span)
		p.Y.Tick.Marker = stepTicks{step: step}
		for ci := range classes {
			if c.total[g][ci] == 0 {
				continue
			}
			xys := make(plotter.XYs, bins)
			for b, n := range counts[g][ci] {
				xys[b] = plotter.XY{X: (float64(b) + 0.5) * binSec, Y: float64(n) / binSec}
			}
			l, err := plotter.NewLine(xys)
			if err != nil {
				panic("BUG: chart rates are finite: " + err.Error())
			}
			l.LineStyle = draw.LineStyle{Color: classColors[ci], Width: chartPx(2)}
			p.Add(l)
		}
		p.Add(markLines{marks: c.marks})
		p.Y.Min, p.Y.Max = 0, math.Ceil(max(peak, 1)/step)*step
		plots[g] = p
	}
	plots[groups-1].X.Label.Text = "seconds since the start"
	return plots
}

// newChartPlot is a panel with the chart's fonts, grid and time axis.
func newChartPlot(heading, yLabel string, span float64) *plot.Plot {
	p := plot.New()
	p.Title.Text = heading
	p.Title.TextStyle = chartText(11)
	p.Title.TextStyle.XAlign = draw.XCenter
	p.Title.TextStyle.YAlign = draw.YTop
	p.Title.Padding = chartPx(4)
	for _, a := range []*plot.Axis{&p.X, &p.Y} {
		a.Label.TextStyle.Font = chartText(11).Font
		a.Label.TextStyle.Color = chartInk
		a.Tick.Label.Font = chartText(10).Font
		a.Tick.Label.Color = chartInk
		a.Color = chartInk
		a.Tick.Color = chartInk
	}
	p.Y.Label.Text = yLabel
	grid := plotter.NewGrid()
	grid.Vertical = draw.LineStyle{Color: chartGrid, Width: chartPx(1)}
	grid.Horizontal = grid.Vertical
	p.Add(grid)
	p.X.Min, p.X.Max = 0, span
	p.X.Tick.Marker = stepTicks{step: niceStep(span / 10)}
	return p
}

// chartText is the chart's text style at size points.
func chartText(size vg.Length) text.Style {
	return text.Style{
		Color:   chartInk,
		Font:    font.From(chartFont, size),
		Handler: plot.DefaultTextHandler,
	}
}

// legend lists the classes that occurred with their counts (per group
// when the groups are drawn apart) and the dots' shapes.
func (c *chartSeries) legend(groups int) plot.Legend {
	l := plot.NewLegend()
	l.TextStyle = chartText(10)
	l.Top, l.Left = true, true
	l.ThumbnailWidth = chartPx(16)
	l.Padding = chartPx(5)
	for ci, k := range classes {
		people, bots := c.total[groupPeople][ci], c.total[groupBots][ci]
		if people+bots == 0 {
			continue
		}
		entry := fmt.Sprintf("%s %d", k, people+bots)
		if groups > 1 {
			entry = fmt.Sprintf("%s: %d people, %d bots", k, people, bots)
		}
		l.Add(entry, swatch(classColors[ci]))
	}
	if groups > 1 {
		for g := range groups {
			sty := groupGlyphs[g]
			sty.Color = chartInk
			l.Add(groupNames[g], glyphThumb(sty))
		}
	}
	if c.stride > 1 {
		l.Add(fmt.Sprintf("1 dot per %d answers", c.stride))
	}
	return l
}

// swatch is a legend thumbnail: a square of one colour.
type swatch color.RGBA

func (s swatch) Thumbnail(c *draw.Canvas) {
	side := min(c.Max.X-c.Min.X, c.Max.Y-c.Min.Y) * 0.8
	mid := c.Center()
	c.FillPolygon(color.RGBA(s), []vg.Point{
		{X: mid.X - side/2, Y: mid.Y - side/2}, {X: mid.X + side/2, Y: mid.Y - side/2},
		{X: mid.X + side/2, Y: mid.Y + side/2}, {X: mid.X - side/2, Y: mid.Y + side/2},
	})
}

// glyphThumb is a legend thumbnail: one dot of a shape, magnified.
type glyphThumb draw.GlyphStyle

func (g glyphThumb) Thumbnail(c *draw.Canvas) {
	sty := draw.GlyphStyle(g)
	sty.Radius *= 2
	c.DrawGlyph(sty, c.Center())
}

// markLines draws the chart's marks across a panel, labelled in the
// panel that has labels set.
type markLines struct {
	marks  []chartMark
	labels bool
}

func (m markLines) Plot(c draw.Canvas, p *plot.Plot) {
	trX, _ := p.Transforms(&c)
	sty := chartText(10)
	sty.Color = chartMarkColor
	sty.YAlign = draw.YTop
	lineH := sty.Rectangle("0").Size().Y * 1.4
	for i, mk := range m.marks {
		x := trX(mk.at)
		if !c.ContainsX(x) {
			continue
		}
		line := draw.LineStyle{Color: chartMarkColor, Width: chartPx(2)}
		if mk.dashed {
			line.Dashes = []vg.Length{chartPx(8), chartPx(4)}
		}
		c.StrokeLine2(line, x, c.Min.Y, x, c.Max.Y)
		if !m.labels {
			continue
		}
		// Each label a line below the previous one, so that close marks
		// keep both labels readable; right of its line unless near the
		// right edge.
		label := fmt.Sprintf("%s +%.2f s", mk.label, mk.at)
		size := sty.Rectangle(label).Size()
		at := vg.Point{X: x + chartPx(5), Y: c.Max.Y - chartPx(4) - vg.Length(i)*lineH}
		if x > c.Min.X+(c.Max.X-c.Min.X)*3/4 {
			at.X = x - chartPx(5) - size.X
		}
		c.FillPolygon(color.White, []vg.Point{
			{X: at.X - chartPx(2), Y: at.Y + chartPx(1)}, {X: at.X + size.X + chartPx(2), Y: at.Y + chartPx(1)},
			{X: at.X + size.X + chartPx(2), Y: at.Y - size.Y - chartPx(1)}, {X: at.X - chartPx(2), Y: at.Y - size.Y - chartPx(1)},
		})
		c.FillText(sty, at, label)
	}
}

// stackTiles splits area into panels from top to bottom, as high as their
// weights say, gap apart: a panel's heading then sits nearer to its own
// data than to the time axis above it.
func stackTiles(area draw.Canvas, weights []int, gap vg.Length) []draw.Canvas {
	var sum int
	for _, w := range weights {
		sum += w
	}
	free := area.Max.Y - area.Min.Y - gap*vg.Length(len(weights)-1)
	tiles := make([]draw.Canvas, len(weights))
	top := area.Max.Y
	for i, w := range weights {
		h := free * vg.Length(w) / vg.Length(sum)
		tiles[i] = draw.Crop(area, 0, 0, top-h-area.Min.Y, top-area.Max.Y)
		top -= h + gap
	}
	return tiles
}

// alignedTiles narrows the tiles so that the panels' data areas share
// their left and right edges, whatever the width of each one's tick
// labels: the time axes line up (plot.Align does this for equal tiles).
func alignedTiles(plots []*plot.Plot, tiles []draw.Canvas) []draw.Canvas {
	var left, right vg.Length
	for i, p := range plots {
		d := p.DataCanvas(tiles[i])
		left = max(left, d.Min.X-tiles[i].Min.X)
		right = max(right, tiles[i].Max.X-d.Max.X)
	}
	out := make([]draw.Canvas, len(tiles))
	for i, p := range plots {
		d := p.DataCanvas(tiles[i])
		out[i] = draw.Crop(tiles[i], left-(d.Min.X-tiles[i].Min.X), -(right - (tiles[i].Max.X - d.Max.X)), 0, 0)
	}
	return out
}

// pixelRect is the pixels of c in an image heightPx high (vg's y grows
// upwards, the image's downwards).
func pixelRect(c draw.Canvas, heightPx int) image.Rectangle {
	px := func(l vg.Length) int { return int(math.Round(float64(l / vg.Inch * chartDPI))) }
	return image.Rect(px(c.Min.X), heightPx-px(c.Max.Y), px(c.Max.X), heightPx-px(c.Min.Y))
}

// stepTicks labels an axis every step from zero.
type stepTicks struct{ step float64 }

func (t stepTicks) Ticks(lo, hi float64) []plot.Tick {
	var ticks []plot.Tick
	for v := math.Ceil(lo/t.step) * t.step; v <= hi+t.step/1e6; v += t.step {
		ticks = append(ticks, plot.Tick{Value: v, Label: fmt.Sprintf("%g", math.Round(v*1000)/1000)})
	}
	return ticks
}

// decadeTicks labels a log axis of milliseconds at each power of ten,
// with unlabelled ticks at 2…9 times it.
type decadeTicks struct{}

func (decadeTicks) Ticks(lo, hi float64) []plot.Tick {
	var ticks []plot.Tick
	for d := math.Floor(math.Log10(lo)); math.Pow(10, d) <= hi*(1+1e-9); d++ {
		v := math.Pow(10, d)
		ticks = append(ticks, plot.Tick{Value: v, Label: msLabel(v)})
		for k := 2.0; k <= 9 && k*v <= hi; k++ {
			ticks = append(ticks, plot.Tick{Value: k * v})
		}
	}
	return ticks
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
		return fmt.Sprintf("%g µs", ms*1000)
	}
}
