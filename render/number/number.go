// Package number is strata's one number formatter: how every value a
// person reads is written, in the gate's sentences, report.html,
// report.md, sweep.md and the CLI's tables alike. It is a package of its
// own, below the gate and render, because the gate writes numbers into
// its rule sentences and render draws the gate's decision.
package number

import (
	"fmt"
	"math"
	"strconv"

	"github.com/strata-ml/strata/validation"
)

// Format writes v compactly: up to four significant digits, whole numbers
// of any size below 1e15 in full, NaN and infinities as NaN, +inf, -inf.
func Format(v float64) string {
	switch {
	case math.IsNaN(v):
		return "NaN"
	case math.IsInf(v, 1):
		return "+inf"
	case math.IsInf(v, -1):
		return "-inf"
	case v == math.Trunc(v) && math.Abs(v) < 1e15:
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	return strconv.FormatFloat(v, 'g', 4, 64)
}

// Signed writes a difference as Format does, with its sign ("+0" for 0).
func Signed(v float64) string {
	s := Format(v)
	if v > 0 && !math.IsInf(v, 1) || (v == 0 && !math.Signbit(v)) {
		return "+" + s
	}
	return s
}

// Cell writes a table value; "-" for null.
func Cell(f *validation.NullableFloat) string {
	if f == nil {
		return "-"
	}
	return Format(float64(*f))
}

// SignedCell writes a difference in a table; "-" for null.
func SignedCell(f *validation.NullableFloat) string {
	if f == nil {
		return "-"
	}
	return Signed(float64(*f))
}

// OrNull writes a value in a sentence; "null" for null.
func OrNull(f *validation.NullableFloat) string {
	if f == nil {
		return "null"
	}
	return Format(float64(*f))
}

// Interval writes a 95% interval of a difference as "[-0.01, +0.02]"; "-"
// for none.
func Interval(c *validation.Interval) string {
	if c == nil || math.IsNaN(float64(c[0])) || math.IsNaN(float64(c[1])) {
		return "-"
	}
	return "[" + Signed(float64(c[0])) + ", " + Signed(float64(c[1])) + "]"
}

// Spread writes a value over seeds as mean ± sd with 4 significant digits
// (the sd with 2; "-" for nil); scale multiplies every value first (100
// for percentage points) and signed shows the mean's sign.
func Spread(s *validation.Spread, scale float64, signed bool) string {
	if s == nil {
		return "-"
	}
	f := "%.4g"
	if signed {
		f = "%+.4g"
	}
	out := fmt.Sprintf(f, float64(s.Mean)*scale)
	if s.SD != nil {
		out += fmt.Sprintf(" ± %.2g", float64(*s.SD)*scale)
	}
	return out
}
