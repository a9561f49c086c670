//go:build !openblas

package compute

// Backend names the BLAS and LAPACK implementation the package computes
// with: "gonum" (pure Go, the default) or "openblas" (OpenBLAS and
// LAPACKE through cgo, built with -tags openblas).
func Backend() string { return "gonum" }

// BLASCore returns the CPU kernel set the BLAS chose at start-up (for
// OpenBLAS its core name, e.g. "Cooperlake" or "Haswell", which
// OPENBLAS_CORETYPE overrides), or "" for the pure Go backend.
func BLASCore() string { return "" }

// BLASThreads returns the number of threads one BLAS call may use: 1 for
// gonum, whose GEMM parallelism is its own goroutines and not
// configurable.
func BLASThreads() int { return 1 }

// SetBLASThreads sets the number of threads one BLAS call may use, for
// the whole process. A no-op for gonum.
func SetBLASThreads(n int) {}
