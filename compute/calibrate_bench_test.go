package compute

import (
	"gonum.org/v1/gonum/mat"
	"testing"
)

// BenchmarkProjectCalibrated times the data-aware fit of each family on
// a 256 x 256 layer with 1024 anisotropic calibration rows, beside the
// weight-only projection of the same spec.
func BenchmarkProjectCalibrated(b *testing.B) {
	n, in, out := 1024, 256, 256
	rng := newRand(900)
	x := anisotropic(rng, n, in)
	w := randDense(rng, out, in)
	cal, err := NewCalibration(x, n, in, -1)
	if err != nil {
		b.Fatal(err)
	}
	specs := []Spec{
		{Family: FamilyLowRank, Rank: 32},
		{Family: FamilyBlockDiag, Blocks: 8},
		{Family: FamilyToeplitz},
		{Family: FamilyCirculant},
		{Family: FamilyMonarch, Blocks: 8, Rank: 4},
		{Family: FamilyKronecker, Rank: 4},
		{Family: FamilyOrthogonal},
		{Family: FamilyOrthogonal, Out: 128},
	}
	for _, s := range specs {
		wl := w
		if s.Out > 0 {
			wl = w.Slice(0, s.Out, 0, in).(*mat.Dense)
		}
		name := s.String()
		if s.Out > 0 {
			name += " 128x256"
		}
		b.Run(name+"/weight-only", func(b *testing.B) {
			for b.Loop() {
				if _, err := Project(wl, s, 1); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/data-aware", func(b *testing.B) {
			for b.Loop() {
				if _, err := ProjectCalibrated(wl, s, cal, CalibratedConfig{}, 1); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
