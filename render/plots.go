package render

import (
	"bytes"
	"cmp"
	"fmt"
	"image/color"
	"math"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/validation"
)

// This file draws the report's plots with gonum/plot as standalone SVG
// documents; html.go inlines them.

// Plot is one figure of the report.
type Plot struct {
	// ID is the figure's id in report.html and its file name (ID.svg) in
	// the report's directory.
	ID, Title, Caption string
	// SVG is the standalone SVG document, nil when the plot has no data;
	// Missing then says why.
	SVG     []byte
	Missing string
}

// Plot ids, in the order of the report.
const (
	PlotSpectra     = "plot-spectra"
	PlotTraining    = "plot-training"
	PlotSensitivity = "plot-sensitivity"
	PlotResidual    = "plot-residual-share"
	PlotRobustness  = "plot-robustness"
)

// PlotIDs lists the plots every report has, in order (a plot without
// data is a figure with a note instead of an SVG).
var PlotIDs = []string{PlotSpectra, PlotTraining, PlotSensitivity, PlotResidual, PlotRobustness}

// Model colours, the same in every plot.
var (
	colorBaseline  = color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}
	colorCandidate = color.RGBA{R: 0xe0, G: 0x6c, B: 0x00, A: 0xff}
	colorControl   = color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff}
	colorTrunk     = color.RGBA{R: 0x99, G: 0x4c, B: 0xc0, A: 0xff}
)

// maxSpectraLayers bounds the layers drawn in the spectra plot.
const maxSpectraLayers = 12

// TrainLogs are the training logs of a validation's models, for the
// training curves; nil where there is none.
type TrainLogs struct {
	Baseline, Candidate, Control *arrowio.TrainLog
}

// Plots draws every plot of a validation and its training logs. A plot
// that cannot be drawn is reported missing, never a panic.
func Plots(v *validation.Result, logs TrainLogs) []Plot {
	plots := []Plot{
		{ID: PlotSpectra, Title: "Singular-value spectra per layer",
			Caption: "Singular values (log scale, largest first) of each linear layer's effective weight: the dense baseline's W, the candidate's W = S + R and its trunk S alone, and the control's W."},
		{ID: PlotTraining, Title: "Training curves",
			Caption: "Training loss per optimisation step (log scale) and validation loss per epoch (dots): the dense baseline's own training, then the candidate's fine-tuning next to the control's, with the same budget."},
		{ID: PlotSensitivity, Title: "Sensitivity vs input noise",
			Caption: "Mean ||f(x+d) - f(x)|| / ||d|| for Gaussian input noise d at each level (a share of each feature's standard deviation), absolute and relative to the mean ||f(x)||."},
		{ID: PlotResidual, Title: "Residual share per layer",
			Caption: "The candidate's mean ||R u|| / (||S u|| + ||R u||) per layer on the evaluation inputs: how much of each layer's output the correction R carries. Dense layers have none."},
		{ID: PlotRobustness, Title: "Robustness per layer",
			Caption: "Mean score drop when one layer's effective weight gets Gaussian noise of relative Frobenius norm eps (lower is more robust)."},
	}
	draws := map[string]func() ([]byte, string){
		PlotSpectra:     func() ([]byte, string) { return plotSpectra(v) },
		PlotTraining:    func() ([]byte, string) { return plotTraining(logs) },
		PlotSensitivity: func() ([]byte, string) { return plotSensitivity(v) },
		PlotResidual:    func() ([]byte, string) { return plotResidualShare(v) },
		PlotRobustness:  func() ([]byte, string) { return plotRobustness(v) },
	}
	for i := range plots {
		plots[i].SVG, plots[i].Missing = safeDraw(draws[plots[i].ID])
	}
	return plots
}

// safeDraw runs a plot function, turning a panic of the plotting library
// into a missing plot.
func safeDraw(f func() ([]byte, string)) (svg []byte, missing string) {
	defer func() {
		if r := recover(); r != nil {
			svg, missing = nil, fmt.Sprintf("could not be drawn: %v", r)
		}
	}()
	return f()
}

// newPlot returns a plot with sans-serif text.
func newPlot(title, x, y string) *plot.Plot {
	p := plot.New()
	p.Title.Text, p.X.Label.Text, p.Y.Label.Text = title, x, y
	sans := func(s *plot.Plot) {
		s.Title.TextStyle.Font.Variant = "Sans"
		s.X.Label.TextStyle.Font.Variant = "Sans"
		s.Y.Label.TextStyle.Font.Variant = "Sans"
		s.X.Tick.Label.Font.Variant = "Sans"
		s.Y.Tick.Label.Font.Variant = "Sans"
		s.Legend.TextStyle.Font.Variant = "Sans"
	}
	sans(p)
	p.Title.TextStyle.Font.Size = vg.Points(11)
	p.X.Label.TextStyle.Font.Size = vg.Points(8.5)
	p.Y.Label.TextStyle.Font.Size = vg.Points(8.5)
	p.X.Tick.Label.Font.Size = vg.Points(8)
	p.Y.Tick.Label.Font.Size = vg.Points(8)
	p.Add(plotter.NewGrid())
	return p
}

// legendWidth is the strip at the right of a figure that holds its
// legend, outside the data.
const legendWidth = 2.2 * vg.Inch

// newLegend returns an empty legend in the plots' style.
func newLegend() *plot.Legend {
	l := plot.NewLegend()
	l.TextStyle.Font.Variant = "Sans"
	l.TextStyle.Font.Size = vg.Points(8.5)
	l.Top = true
	l.Left = true
	l.ThumbnailWidth = vg.Points(18)
	return &l
}

// svgTiles draws plots (rows x cols, nil for an empty tile) into one
// SVG document of the given size of the tiles, plus a strip at the right
// for the legend when there is one.
func svgTiles(plots [][]*plot.Plot, legend *plot.Legend, w, h vg.Length) []byte {
	if legend != nil {
		w += legendWidth
	}
	c := vgsvg.New(w, h)
	page := draw.New(c)
	// A white page under the tiles.
	page.SetColor(color.White)
	page.Fill(page.Rectangle.Path())
	dc := page
	if legend != nil {
		dc = draw.Crop(page, 0, -legendWidth, 0, 0)
		legend.Draw(draw.Crop(page, w-legendWidth+vg.Millimeter*2, 0, 0, -vg.Millimeter*8))
	}
	t := draw.Tiles{Rows: len(plots), Cols: len(plots[0]), PadX: vg.Millimeter * 4, PadY: vg.Millimeter * 4,
		PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
	canvases := plot.Align(plots, t, dc)
	for j := range plots {
		for i, p := range plots[j] {
			if p != nil {
				p.Draw(canvases[j][i])
			}
		}
	}
	var buf bytes.Buffer
	if _, err := c.WriteTo(&buf); err != nil {
		panic(err) // a bytes.Buffer does not fail
	}
	return buf.Bytes()
}

// grid lays n plots out in rows of at most cols.
func grid(ps []*plot.Plot, cols int) [][]*plot.Plot {
	cols = min(cols, len(ps))
	rows := (len(ps) + cols - 1) / cols
	g := make([][]*plot.Plot, rows)
	for j := range g {
		g[j] = make([]*plot.Plot, cols)
		for i := range cols {
			if k := j*cols + i; k < len(ps) {
				g[j][i] = ps[k]
			}
		}
	}
	return g
}

// series is one line of a plot.
type series struct {
	name   string
	xy     plotter.XYs
	color  color.Color
	dashes []vg.Length
	// points marks each value with a dot; noLine draws only the dots.
	points, noLine bool
}

// addSeries adds lines (and points) to p, and an entry per new name to
// the legend when it is not nil. Empty series are skipped.
func addSeries(p *plot.Plot, legend *legendSet, ss ...series) error {
	for _, s := range ss {
		if len(s.xy) == 0 {
			continue
		}
		l, err := plotter.NewLine(s.xy)
		if err != nil {
			return err
		}
		l.Color, l.Dashes, l.Width = s.color, s.dashes, vg.Points(1.2)
		thumbs := []plot.Thumbnailer{l}
		if s.points || len(s.xy) == 1 {
			sc, err := plotter.NewScatter(s.xy)
			if err != nil {
				return err
			}
			sc.Color = s.color
			sc.Radius = vg.Points(2)
			if s.noLine {
				thumbs = nil
			} else {
				p.Add(l)
			}
			p.Add(sc)
			thumbs = append(thumbs, sc)
		} else {
			p.Add(l)
		}
		legend.add(s.name, thumbs...)
	}
	return nil
}

// legendSet is a legend with one entry per name.
type legendSet struct {
	l    *plot.Legend
	seen map[string]bool
}

func newLegendSet() *legendSet { return &legendSet{l: newLegend(), seen: map[string]bool{}} }

func (ls *legendSet) add(name string, thumbs ...plot.Thumbnailer) {
	if ls == nil || ls.seen[name] {
		return
	}
	ls.seen[name] = true
	ls.l.Add(name, thumbs...)
}

func (ls *legendSet) legend() *plot.Legend {
	if ls == nil || len(ls.seen) == 0 {
		return nil
	}
	return ls.l
}

// extent is the range of the points of some series.
type extent struct{ xlo, xhi, ylo, yhi float64 }

// extentOf returns the range of the points of ss (zeros when there are
// none).
func extentOf(ss []series) extent {
	e := extent{math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)}
	for _, s := range ss {
		for _, p := range s.xy {
			e.xlo, e.xhi = min(e.xlo, p.X), max(e.xhi, p.X)
			e.ylo, e.yhi = min(e.ylo, p.Y), max(e.yhi, p.Y)
		}
	}
	if math.IsInf(e.xlo, 1) {
		return extent{}
	}
	return e
}

// positive returns the points (k+1, v[k]) of the finite positive values:
// what a log axis can show.
func positive(v []validation.NullableFloat) plotter.XYs {
	var xy plotter.XYs
	for k, f := range v {
		if x := float64(f); x > 0 && !math.IsInf(x, 0) {
			xy = append(xy, plotter.XY{X: float64(k + 1), Y: x})
		}
	}
	return xy
}

func plotSpectra(v *validation.Result) ([]byte, string) {
	if len(v.Layers) == 0 {
		return nil, cmp.Or(v.LayersReason, "validation.json has no layers")
	}
	layers := v.Layers[:min(len(v.Layers), maxSpectraLayers)]
	legend := newLegendSet()
	var ps []*plot.Plot
	for _, l := range layers {
		p := newPlot(fmt.Sprintf("layer %s (%dx%d): %s", l.Name, l.Shape[0], l.Shape[1], l.Family), "index", "singular value")
		sv := l.SingularValues
		ss := []series{
			{name: "baseline W (dense)", xy: positive(sv.Baseline), color: colorBaseline},
			{name: "candidate W = S + R", xy: positive(sv.Candidate), color: colorCandidate},
			{name: "candidate trunk S", xy: positive(sv.CandidateTrunk), color: colorTrunk, dashes: []vg.Length{vg.Points(4), vg.Points(2)}},
			{name: "control W", xy: positive(sv.Control), color: colorControl, dashes: []vg.Length{vg.Points(1), vg.Points(2)}},
		}
		n := 0
		for _, s := range ss {
			n += len(s.xy)
		}
		if n == 0 {
			continue
		}
		if err := addSeries(p, legend, ss...); err != nil {
			return nil, err.Error()
		}
		e := extentOf(ss)
		setLinear(&p.X, 1, e.xhi)
		setLog(&p.Y, e.ylo, e.yhi)
		ps = append(ps, p)
	}
	if len(ps) == 0 {
		return nil, "validation.json has no singular values"
	}
	g := grid(ps, 3)
	return svgTiles(g, legend.legend(), vg.Length(len(g[0]))*3*vg.Inch, vg.Length(len(g))*2.6*vg.Inch), ""
}

func plotTraining(logs TrainLogs) ([]byte, string) {
	curve := func(l *arrowio.TrainLog) (loss, valid plotter.XYs) {
		if l == nil {
			return nil, nil
		}
		for _, r := range l.Rows {
			if r.Loss > 0 && !math.IsInf(r.Loss, 0) {
				loss = append(loss, plotter.XY{X: float64(r.Step), Y: r.Loss})
			}
			if r.ValidLoss > 0 && !math.IsInf(r.ValidLoss, 0) {
				valid = append(valid, plotter.XY{X: float64(r.Step), Y: r.ValidLoss})
			}
		}
		return loss, valid
	}
	legend := newLegendSet()
	var ps []*plot.Plot
	add := func(title string, ss ...series) error {
		n := 0
		for _, s := range ss {
			n += len(s.xy)
		}
		if n == 0 {
			return nil
		}
		p := newPlot(title, "step", "loss")
		if err := addSeries(p, legend, ss...); err != nil {
			return err
		}
		e := extentOf(ss)
		setLinear(&p.X, min(0, e.xlo), e.xhi)
		setLog(&p.Y, e.ylo, e.yhi)
		ps = append(ps, p)
		return nil
	}
	bl, bv := curve(logs.Baseline)
	cl, cv := curve(logs.Candidate)
	kl, kv := curve(logs.Control)
	err := add("dense baseline: training",
		series{name: "baseline: train loss", xy: bl, color: colorBaseline},
		series{name: "baseline: validation loss", xy: bv, color: colorBaseline, points: true, noLine: true})
	if err == nil {
		err = add("fine-tuning: candidate vs control",
			series{name: "candidate: train loss", xy: cl, color: colorCandidate},
			series{name: "candidate: validation loss", xy: cv, color: colorCandidate, points: true, noLine: true},
			series{name: "control: train loss", xy: kl, color: colorControl},
			series{name: "control: validation loss", xy: kv, color: colorControl, points: true, noLine: true})
	}
	if err != nil {
		return nil, err.Error()
	}
	if len(ps) == 0 {
		return nil, "validation.json names no training log that could be read (validate --train-log, --baseline-train-log, --control-train-log)"
	}
	return svgTiles(grid(ps, 2), legend.legend(), vg.Length(len(ps))*4*vg.Inch, 3*vg.Inch), ""
}

func plotSensitivity(v *validation.Result) ([]byte, string) {
	legend := newLegendSet()
	var ps []*plot.Plot
	for _, key := range []string{validation.MetricPerturbationSensitivity, validation.MetricPerturbationSensitivityRelative} {
		m := v.Metrics[key]
		if m == nil || len(m.Parts) == 0 {
			continue
		}
		var b, c, k plotter.XYs
		for _, part := range m.Parts {
			if part == nil || !(part.Noise > 0) {
				continue
			}
			add := func(xy *plotter.XYs, f *validation.NullableFloat) {
				if validation.Finite(f) {
					*xy = append(*xy, plotter.XY{X: part.Noise, Y: float64(*f)})
				}
			}
			add(&b, part.Baseline)
			add(&c, part.Candidate)
			add(&k, part.Control)
		}
		if len(b)+len(c)+len(k) == 0 {
			continue
		}
		y := "||f(x+d) - f(x)|| / ||d||"
		if key == validation.MetricPerturbationSensitivityRelative {
			y = "the same / mean ||f(x)||"
		}
		p := newPlot(key, "noise level (share of feature std)", y)
		ss := []series{
			{name: "baseline", xy: b, color: colorBaseline, points: true},
			{name: "candidate", xy: c, color: colorCandidate, points: true},
			{name: "control", xy: k, color: colorControl, points: true},
		}
		if err := addSeries(p, legend, ss...); err != nil {
			return nil, err.Error()
		}
		e := extentOf(ss)
		setLinear(&p.X, 0, e.xhi)
		setLinear(&p.Y, min(0, e.ylo), e.yhi)
		ps = append(ps, p)
	}
	if len(ps) == 0 {
		reason := "validation.json has no perturbation levels"
		if m := v.Metrics[validation.MetricPerturbationSensitivity]; m != nil && m.Reason != "" {
			reason = m.Reason
		}
		return nil, reason
	}
	return svgTiles(grid(ps, 2), legend.legend(), vg.Length(len(ps))*4*vg.Inch, 3*vg.Inch), ""
}

// barGroup is one model's bars in a per-layer bar chart.
type barGroup struct {
	name  string
	color color.Color
	value func(layer int) *validation.NullableFloat
}

// layerBars draws grouped bars per layer, a missing value as no bar.
func layerBars(v *validation.Result, title, y string, groups []barGroup) []byte {
	names := make([]string, len(v.Layers))
	for i, l := range v.Layers {
		names[i] = l.Name
	}
	p := newPlot(title, "layer", y)
	legend := newLegendSet()
	// A layer's group of bars fills at most 60% of its slot (about 360
	// points of data width for them all), so the outer bars stay inside
	// the axes.
	n := len(v.Layers)
	w := vg.Points(min(24, 0.6*360/float64(n*len(groups))))
	lo, hi := 0.0, 0.0
	for gi, g := range groups {
		vals := make(plotter.Values, n)
		for i := range v.Layers {
			if f := g.value(i); validation.Finite(f) {
				vals[i] = float64(*f)
				lo, hi = min(lo, vals[i]), max(hi, vals[i])
			}
		}
		bc, err := plotter.NewBarChart(vals, w)
		if err != nil {
			panic(err)
		}
		bc.Color = g.color
		bc.LineStyle.Width = 0
		bc.Offset = vg.Length(float64(gi)-float64(len(groups)-1)/2) * w
		p.Add(bc)
		legend.add(g.name, bc)
	}
	p.NominalX(names...)
	// The axis line NominalX hides is the baseline the bars stand on,
	// spanning every layer's slot.
	p.X.Width = p.Y.Width
	p.X.Min, p.X.Max = -0.5, float64(n)-0.5
	setLinear(&p.Y, lo, hi)
	return svgTiles([][]*plot.Plot{{p}}, legend.legend(), 6*vg.Inch, 3*vg.Inch)
}

func plotResidualShare(v *validation.Result) ([]byte, string) {
	if len(v.Layers) == 0 {
		return nil, cmp.Or(v.LayersReason, "validation.json has no layers")
	}
	some := false
	for _, l := range v.Layers {
		some = some || validation.Finite(l.ResidualShare.Candidate)
	}
	if !some {
		return nil, "the candidate has no decomposed layer with a residual share"
	}
	return layerBars(v, "candidate: ||R u|| / (||S u|| + ||R u||)", "residual share", []barGroup{
		{"candidate", colorCandidate, func(i int) *validation.NullableFloat { return v.Layers[i].ResidualShare.Candidate }},
	}), ""
}

func plotRobustness(v *validation.Result) ([]byte, string) {
	if len(v.Layers) == 0 {
		return nil, cmp.Or(v.LayersReason, "validation.json has no layers")
	}
	groups := []barGroup{
		{"baseline", colorBaseline, func(i int) *validation.NullableFloat { return v.Layers[i].RobustnessDrop.Baseline }},
		{"candidate", colorCandidate, func(i int) *validation.NullableFloat { return v.Layers[i].RobustnessDrop.Candidate }},
	}
	hasControl := false
	for _, l := range v.Layers {
		hasControl = hasControl || l.RobustnessDrop.Control != nil
	}
	if hasControl {
		groups = append(groups, barGroup{"control", colorControl, func(i int) *validation.NullableFloat { return v.Layers[i].RobustnessDrop.Control }})
	}
	eps := ""
	if v.Config.RobustnessEps > 0 {
		eps = " (eps = " + strconv.FormatFloat(v.Config.RobustnessEps, 'g', -1, 64) + ")"
	}
	return layerBars(v, "score drop under weight noise"+eps, "mean score drop", groups), ""
}
