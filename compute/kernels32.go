package compute

import "math"

// The float32 elementwise kernels of a training step: the AdamW and SGD
// updates, the sum of the shards' gradients and the sum of squares
// behind the gradient norm. Each has a portable definition here; under
// GOEXPERIMENT=simd on amd64 (kernels32_simd.go) the same arithmetic runs
// on AVX-512 vectors. The vector versions perform the same
// IEEE-754 operations on every element in the same order (no fused
// multiply-adds: the explicit float32 conversions below forbid them in Go
// too, and sqrt and division are correctly rounded in both), so every
// path returns the same bits, on every CPU.

// adamW32Scalar applies one AdamW step to every entry j, in float32
// arithmetic, in one pass over the four slices (of equal length):
//
//	x = g gscale
//	m = b1 m + c1 x
//	v = b2 v + c2 x x
//	p = p shrink - step (m / (sqrt(v) isq2 + eps))
//
// the update of torch.optim.AdamW (decoupled decay applied to the old p)
// with the bias correction of v folded into isq2. Every product is
// rounded to float32 before it is added (the explicit conversions forbid
// fused multiply-adds, which the Go spec otherwise allows). The square
// root is taken in float64 and rounded: the same as a float32 square root,
// as float64 has more than twice float32's precision.
func adamW32Scalar(p, g, m, v []float32, k adamCoef32) {
	n := len(p)
	g, m, v = g[:n], m[:n], v[:n]
	for j := range p {
		x := g[j] * k.gscale
		mj := float32(k.b1*m[j]) + float32(k.c1*x)
		vj := float32(k.b2*v[j]) + float32(float32(k.c2*x)*x)
		m[j], v[j] = mj, vj
		den := float32(float32(math.Sqrt(float64(vj)))*k.isq2) + k.eps
		p[j] = float32(p[j]*k.shrink) - float32(k.step*(mj/den))
	}
}

// sumLanes is the number of partial sums of sumSquares32 and
// addSumSquares32: entry j goes to partial sum j mod sumLanes, the
// width of one AVX-512 vector of float64.
const sumLanes = 8

// sumSquares32Scalar returns the sum of x[j]^2 accumulated in float64: the
// squares of entries j = l mod 8 summed in order into partial sum l, then
// the partial sums added pairwise, ((s0 + s1) + (s2 + s3)) + ((s4 + s5) +
// (s6 + s7)).
func sumSquares32Scalar(x []float32) float64 {
	var s [sumLanes]float64
	j := 0
	for ; j+sumLanes <= len(x); j += sumLanes {
		for l := range sumLanes {
			v := float64(x[j+l])
			s[l] += float64(v * v)
		}
	}
	for l, v := range x[j:] {
		s[l] += float64(float64(v) * float64(v))
	}
	return combineLanes(&s)
}

func combineLanes(s *[sumLanes]float64) float64 {
	return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]))
}

// addSumSquares32Scalar adds src into dst (dst[j] += src[j] in float32)
// and returns the sum of squares of the result as sumSquares32 does.
// With src nil it only sums.
func addSumSquares32Scalar(dst, src []float32) float64 {
	if src != nil {
		src = src[:len(dst)]
		for j, v := range src {
			dst[j] += v
		}
	}
	return sumSquares32Scalar(dst)
}
