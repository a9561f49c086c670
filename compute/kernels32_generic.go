//go:build !(goexperiment.simd && amd64)

package compute

// Without GOEXPERIMENT=simd on amd64 the float32 kernels are the portable
// ones of kernels32.go.

func adamW32(p, g, m, v []float32, k adamCoef32) { adamW32Scalar(p, g, m, v, k) }

func sumSquares32(x []float32) float64 { return sumSquares32Scalar(x) }

func addSumSquares32(dst, src []float32) float64 { return addSumSquares32Scalar(dst, src) }

// SIMDKernels names the vector unit of the float32 training kernels:
// "avx512", or "scalar" (this build: GOEXPERIMENT=simd is off or the CPU
// is not amd64).
func SIMDKernels() string { return "scalar" }
