//go:build goexperiment.simd && amd64

package compute

import "simd/archsimd"

// The float32 kernels of kernels32.go on AVX-512 vectors (16 float32 or 8
// float64 lanes) when the CPU has them: the same operations per element as
// the portable definitions, so the same bits. The tails shorter than a
// vector, and CPUs without AVX-512, go through the portable loops. (An
// AVX2 variant would be a second copy of each loop on 8 lanes.)

var useAVX512 = archsimd.X86.AVX512()

// SIMDKernels names the vector unit of the float32 training kernels:
// "avx512", or "scalar" (a CPU without AVX-512, or a build without
// GOEXPERIMENT=simd on amd64).
func SIMDKernels() string {
	if useAVX512 {
		return "avx512"
	}
	return "scalar"
}

func adamW32(p, g, m, v []float32, k adamCoef32) {
	n := len(p)
	g, m, v = g[:n], m[:n], v[:n]
	j := 0
	if useAVX512 {
		j = adamW32x16(p, g, m, v, k)
	}
	adamW32Scalar(p[j:], g[j:], m[j:], v[j:], k)
}

// adamW32x16 updates the entries below the last multiple of 16 and
// returns it.
func adamW32x16(p, g, m, v []float32, k adamCoef32) int {
	b1, c1 := archsimd.BroadcastFloat32x16(k.b1), archsimd.BroadcastFloat32x16(k.c1)
	b2, c2 := archsimd.BroadcastFloat32x16(k.b2), archsimd.BroadcastFloat32x16(k.c2)
	gs, shrink := archsimd.BroadcastFloat32x16(k.gscale), archsimd.BroadcastFloat32x16(k.shrink)
	step, isq2 := archsimd.BroadcastFloat32x16(k.step), archsimd.BroadcastFloat32x16(k.isq2)
	eps := archsimd.BroadcastFloat32x16(k.eps)
	j := 0
	for ; j+16 <= len(p); j += 16 {
		x := archsimd.LoadFloat32x16Slice(g[j:]).Mul(gs)
		mj := b1.Mul(archsimd.LoadFloat32x16Slice(m[j:])).Add(c1.Mul(x))
		vj := b2.Mul(archsimd.LoadFloat32x16Slice(v[j:])).Add(c2.Mul(x).Mul(x))
		mj.StoreSlice(m[j:])
		vj.StoreSlice(v[j:])
		den := vj.Sqrt().Mul(isq2).Add(eps)
		pj := archsimd.LoadFloat32x16Slice(p[j:]).Mul(shrink).Sub(step.Mul(mj.Div(den)))
		pj.StoreSlice(p[j:])
	}
	return j
}

func sumSquares32(x []float32) float64 { return addSumSquares32(x, nil) }

func addSumSquares32(dst, src []float32) float64 {
	if src != nil {
		src = src[:len(dst)]
	}
	var s [sumLanes]float64
	j := 0
	if useAVX512 {
		j = addSumSquares32x8(&s, dst, src)
	}
	for l := j; l < len(dst); l++ {
		if src != nil {
			dst[l] += src[l]
		}
		v := float64(dst[l])
		s[l%sumLanes] += float64(v * v)
	}
	return combineLanes(&s)
}

// addSumSquares32x8 adds src into dst and the squares of the result into
// the partial sums s, 8 entries at a time, one float64 lane per partial
// sum, and returns the number of entries done.
func addSumSquares32x8(s *[sumLanes]float64, dst, src []float32) int {
	var acc archsimd.Float64x8
	j := 0
	for ; j+8 <= len(dst); j += 8 {
		x := archsimd.LoadFloat32x8Slice(dst[j:])
		if src != nil {
			x = x.Add(archsimd.LoadFloat32x8Slice(src[j:]))
			x.StoreSlice(dst[j:])
		}
		d := x.ConvertToFloat64()
		acc = acc.Add(d.Mul(d))
	}
	acc.Store(s)
	return j
}
