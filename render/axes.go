package render

import (
	"math"
	"strconv"

	"gonum.org/v1/plot"
)

// This file sets the plots' axes: ranges that end on a labelled tick, so
// that no point lies beyond the last label, ticks at 1, 2 or 5 times a
// power of ten, and labels with the digits the step needs and no more.

// niceTicks is a plot.Ticker of labelled ticks every step (a multiple of
// step, written with the digits step needs) and unlabelled ones halfway.
type niceTicks struct{ step float64 }

// Ticks implements plot.Ticker.
func (n niceTicks) Ticks(min, max float64) []plot.Tick {
	var ticks []plot.Tick
	digits := max0(-int(math.Floor(math.Log10(n.step) + 1e-9)))
	first := math.Ceil(min/n.step - 1e-9)
	for k := first; k*n.step <= max+n.step*1e-9; k++ {
		v := k * n.step
		ticks = append(ticks, plot.Tick{Value: v, Label: label(v, digits)})
		if half := v + n.step/2; half <= max+n.step*1e-9 {
			ticks = append(ticks, plot.Tick{Value: half})
		}
	}
	return ticks
}

// label writes v with the given decimals, trailing zeros dropped ("25",
// "0.5", "-0.0004"), and 0 without a sign.
func label(v float64, digits int) string {
	s := strconv.FormatFloat(v, 'f', digits, 64)
	if digits > 0 {
		for s[len(s)-1] == '0' {
			s = s[:len(s)-1]
		}
		if s[len(s)-1] == '.' {
			s = s[:len(s)-1]
		}
	}
	if s == "-0" {
		s = "0"
	}
	return s
}

func max0(v int) int { return max(v, 0) }

// niceStep returns the step of 1, 2 or 5 times a power of ten that cuts
// a span into about n intervals.
func niceStep(span float64, n int) float64 {
	raw := span / float64(n)
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw*(1-1e-9) {
			return m * p
		}
	}
	return 10 * p
}

// setLinear makes ax cover [lo, hi] with nice ticks, its ends on labelled
// ticks (a point range of zero width gets a unit around it).
func setLinear(ax *plot.Axis, lo, hi float64) {
	if !(hi > lo) {
		pad := math.Max(math.Abs(lo)*0.1, 1e-9)
		if lo == 0 {
			pad = 1
		}
		lo, hi = lo-pad, hi+pad
	}
	step := niceStep(hi-lo, 4)
	ax.Min = math.Floor(lo/step+1e-9) * step
	ax.Max = math.Ceil(hi/step-1e-9) * step
	ax.Tick.Marker = niceTicks{step}
}

// setLog makes a log axis cover [lo, hi] (both > 0) from the power of ten
// at or below lo to the one at or above hi, labelled at the powers.
func setLog(ax *plot.Axis, lo, hi float64) {
	ax.Scale = plot.LogScale{}
	ax.Min = math.Pow(10, math.Floor(math.Log10(lo)))
	ax.Max = math.Pow(10, math.Ceil(math.Log10(hi)))
	if ax.Max <= ax.Min {
		ax.Max = ax.Min * 10
	}
	ax.Tick.Marker = logTicks{}
}

// logTicks labels the powers of ten ("1e-05", "0.01", "1", "100") and
// marks 2 to 9 times each without a label.
type logTicks struct{}

// Ticks implements plot.Ticker.
func (logTicks) Ticks(min, max float64) []plot.Tick {
	var ticks []plot.Tick
	for e := math.Floor(math.Log10(min)); math.Pow(10, e) <= max*(1+1e-9); e++ {
		p := math.Pow(10, e)
		l := strconv.FormatFloat(p, 'g', 1, 64)
		if e >= 0 && e < 6 || e < 0 && e > -4 {
			l = strconv.FormatFloat(p, 'f', -1, 64)
			if e < 0 {
				l = label(p, int(-e))
			}
		}
		ticks = append(ticks, plot.Tick{Value: p, Label: l})
		for m := 2.0; m < 10 && m*p <= max*(1+1e-9); m++ {
			ticks = append(ticks, plot.Tick{Value: m * p})
		}
	}
	return ticks
}
