package compute

import (
	"errors"
	"math"
	"slices"
	"testing"
)

// TestPermutationPinned: the permutation is part of every seeded split
// and shuffle, so a change of algorithm would silently change every
// result. These values were drawn by it once and must stay.
func TestPermutationPinned(t *testing.T) {
	got := Permutation(10, 7, splitStream)
	want := []int{5, 9, 3, 7, 8, 4, 1, 2, 0, 6}
	if !slices.Equal(got, want) {
		t.Errorf("Permutation(10, 7, split) = %v, want %v", got, want)
	}
	s := slices.Clone(got)
	slices.Sort(s)
	for i, v := range s {
		if v != i {
			t.Fatalf("%v is not a permutation", got)
		}
	}
}

func TestSplitRows(t *testing.T) {
	train, held, err := SplitRows(10, 0.25, 7)
	if err != nil {
		t.Fatal(err)
	}
	if len(train) != 7 || len(held) != 3 || !slices.IsSorted(train) || !slices.IsSorted(held) {
		t.Fatalf("train %v held %v: want 7 and round(0.25*10) = 3 rows, each in order", train, held)
	}
	all := slices.Sorted(slices.Values(append(slices.Clone(train), held...)))
	for i, v := range all {
		if v != i {
			t.Fatalf("train %v + held %v is not a partition of 0..9", train, held)
		}
	}
	if _, h2, _ := SplitRows(10, 0.25, 7); !slices.Equal(held, h2) {
		t.Error("the same seed gave another split")
	}
	if _, h, _ := SplitRows(3, 0.01, 1); len(h) != 1 {
		t.Errorf("a tiny fraction holds out %d rows, want at least 1", len(h))
	}
	for _, bad := range []struct {
		n int
		f float64
	}{{10, 0}, {10, 1}, {10, math.NaN()}, {1, 0.5}} {
		if _, _, err := SplitRows(bad.n, bad.f, 1); !errors.Is(err, ErrSpec) {
			t.Errorf("SplitRows(%d, %v): err %v, want ErrSpec", bad.n, bad.f, err)
		}
	}
}

func TestFitStandardization(t *testing.T) {
	x := []float64{1, 5, 3, 5, 5, 5, 7, 5}
	mean, std := FitStandardization(x, 4, 2)
	// Column 0: mean 4, population std sqrt(5); column 1 is constant.
	if mean[0] != 4 || math.Abs(std[0]-math.Sqrt(5)) > 1e-15 || mean[1] != 5 || std[1] != 1 {
		t.Fatalf("mean %v std %v, want [4 5] [sqrt(5) 1]", mean, std)
	}
	dst := make([]float64, len(x))
	Standardize(dst, x, 4, 2, mean, []float64{std[0], 0}) // a std of 0 counts as 1
	if math.Abs(dst[6]-3/math.Sqrt(5)) > 1e-15 || dst[7] != 0 || x[0] != 1 {
		t.Errorf("standardised %v", dst)
	}
}
