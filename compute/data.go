package compute

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// This file holds the data preparation the stages share: per-feature
// standardisation and seeded splits and shuffles of rows. Data are n x d
// row-major float64 slices.

// FitStandardization returns the per-feature mean and population standard
// deviation of x (n x d, accumulated in float64), the statistics finetune
// fits on its training split. A feature whose standard deviation is 0 or
// not finite (constant, like the border pixels of digits) gets std 1, so
// it is only centred. It panics with ErrShape when len(x) != n*d.
func FitStandardization(x []float64, n, d int) (mean, std []float64) {
	if len(x) != n*d {
		panic(ErrShape)
	}
	mean, std = make([]float64, d), make([]float64, d)
	for i := range n {
		for j, v := range x[i*d : (i+1)*d] {
			mean[j] += v
		}
	}
	for j := range mean {
		mean[j] /= float64(n)
	}
	for i := range n {
		for j, v := range x[i*d : (i+1)*d] {
			c := v - mean[j]
			std[j] += c * c
		}
	}
	for j := range std {
		std[j] = math.Sqrt(std[j] / float64(n))
		if !(std[j] > 0) || math.IsInf(std[j], 0) {
			std[j] = 1
		}
	}
	return mean, std
}

// Standardize sets dst to x (both n x d) with every feature standardised,
// x' = (x - mean[j]) / std[j], a std of 0 counting as 1. dst may be x. It
// panics with ErrShape when the lengths do not fit.
func Standardize(dst, x []float64, n, d int, mean, std []float64) {
	if len(x) != n*d || len(dst) != n*d || len(mean) != d || len(std) != d {
		panic(ErrShape)
	}
	for i := range n {
		row, out := x[i*d:(i+1)*d], dst[i*d:(i+1)*d]
		for j, v := range row {
			sd := std[j]
			if sd == 0 {
				sd = 1
			}
			out[j] = (v - mean[j]) / sd
		}
	}
}

// splitStream is the PCG stream of SplitRows: each use of a seed draws
// from its own stream, so that changing one (the split) never shifts
// another (the shuffles of training).
const splitStream uint64 = 0x5EED_5711

// SplitRows divides n rows into a training part and a held-out part of
// round(fraction * n) rows (at least one row each), chosen by a seeded
// shuffle: the same seed gives the same split on any machine. Both parts
// list their rows in increasing order. fraction must be in (0, 1) and n
// at least 2; otherwise the error wraps ErrSpec.
func SplitRows(n int, fraction float64, seed uint64) (train, held []int, err error) {
	if !(fraction > 0 && fraction < 1) {
		return nil, nil, fmt.Errorf("%w: split fraction %v: want a value in (0, 1)", ErrSpec, fraction)
	}
	if n < 2 {
		return nil, nil, fmt.Errorf("%w: cannot split %d rows into two non-empty parts", ErrSpec, n)
	}
	nHeld := min(max(int(math.Round(fraction*float64(n))), 1), n-1)
	isHeld := make([]bool, n)
	for _, r := range Permutation(n, seed, splitStream)[:nHeld] {
		isHeld[r] = true
	}
	for i, h := range isHeld {
		if h {
			held = append(held, i)
		} else {
			train = append(train, i)
		}
	}
	return train, held, nil
}

// Permutation returns a permutation of [0, n) drawn from the PCG stream
// (seed, stream) by a Fisher-Yates shuffle with a fixed bounded-integer
// rule (Lemire's multiply-shift on 32 random bits), so it does not depend
// on math/rand's helper algorithms and is the same on every machine and
// Go version.
func Permutation(n int, seed, stream uint64) []int {
	rng := rand.NewPCG(seed, stream)
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	for i := n - 1; i > 0; i-- {
		j := int((rng.Uint64() >> 32) * uint64(i+1) >> 32)
		p[i], p[j] = p[j], p[i]
	}
	return p
}
