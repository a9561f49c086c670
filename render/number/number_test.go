package number

import (
	"math"
	"testing"

	"github.com/strata-ml/strata/validation"
)

func TestFormat(t *testing.T) {
	tests := []struct {
		v           float64
		plain, plus string
	}{
		{0, "0", "+0"}, {math.Copysign(0, -1), "-0", "-0"}, {26122, "26122", "+26122"}, {-11688, "-11688", "-11688"},
		{0.0008891, "0.0008891", "+0.0008891"}, {0.123456, "0.1235", "+0.1235"}, {-0.004454, "-0.004454", "-0.004454"},
		{1e15, "1e+15", "+1e+15"}, {123456.7, "1.235e+05", "+1.235e+05"},
		{math.NaN(), "NaN", "NaN"}, {math.Inf(1), "+inf", "+inf"}, {math.Inf(-1), "-inf", "-inf"},
	}
	for _, tt := range tests {
		if got := Format(tt.v); got != tt.plain {
			t.Errorf("Format(%v) = %q, want %q", tt.v, got, tt.plain)
		}
		if got := Signed(tt.v); got != tt.plus {
			t.Errorf("Signed(%v) = %q, want %q", tt.v, got, tt.plus)
		}
	}
}

func TestCells(t *testing.T) {
	f := func(v float64) *validation.NullableFloat { x := validation.NullableFloat(v); return &x }
	if Cell(nil) != "-" || SignedCell(nil) != "-" || OrNull(nil) != "null" || Interval(nil) != "-" {
		t.Error("null values")
	}
	if Cell(f(0.5)) != "0.5" || SignedCell(f(0.5)) != "+0.5" || OrNull(f(2)) != "2" {
		t.Error("values")
	}
	if got := Interval(&validation.Interval{-0.006737, 0}); got != "[-0.006737, +0]" {
		t.Errorf("Interval = %q", got)
	}
	sd := validation.NullableFloat(0.01234)
	s := &validation.Spread{N: 2, Mean: 0.5, SD: &sd}
	if got := Spread(s, 100, true); got != "+50 ± 1.2" {
		t.Errorf("Spread = %q", got)
	}
	if got := Spread(&validation.Spread{N: 1, Mean: 0.25}, 1, false); got != "0.25" || Spread(nil, 1, false) != "-" {
		t.Errorf("Spread of one seed = %q", got)
	}
}
