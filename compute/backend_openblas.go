//go:build openblas

package compute

/*
#cgo LDFLAGS: -lopenblas -llapacke
#include <lapacke.h>
#include <malloc.h>

char* openblas_get_corename(void);
int openblas_get_num_threads(void);
void openblas_set_num_threads(int);
*/
import "C"

import (
	"unsafe"

	"gonum.org/v1/gonum/blas/blas32"
	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/lapack/lapack64"
	"gonum.org/v1/gonum/mat"
	"gonum.org/v1/netlib/blas/netlib"
)

// The openblas backend (go build -tags openblas, linked with -lopenblas
// -llapacke): every blas32 and blas64 call, gonum's own LAPACK routines
// (which call blas64 for their level-3 work) and mat included, goes to
// OpenBLAS through gonum.org/v1/netlib's cgo bindings; the LAPACK routines
// that dominate our run time go to LAPACK itself (openblasLapack), and
// the full SVD to its divide-and-conquer driver dgesdd, which gonum lacks.
//
// gonum.org/v1/netlib's own LAPACK bindings (lapack/netlib) stopped
// following gonum's lapack.Float64 interface in 2019, so they cannot be
// passed to lapack64.Use; openblasLapack embeds gonum's implementation
// instead and replaces a few methods.
func init() {
	blas64.Use(netlib.Implementation{})
	blas32.Use(netlib.Implementation{})
	lapack64.Use(openblasLapack{})
	thinSVD = gesddSVD
	getrfTransposed = getrfTransposedLAPACK
	// LAPACKE mallocs each call's work arrays (megabytes for the SVDs of a
	// monarch projection's blocks) on whichever thread the goroutine runs.
	// glibc raises its mmap threshold to 32 MB after the first large free,
	// so from then on these land in per-thread arenas that keep their
	// pages: converting a 4096 x 4096 layer retained 10-15 MB of RSS that
	// way. A fixed threshold gives them back to the kernel at free.
	C.mallopt(C.M_MMAP_THRESHOLD, mmapThreshold)
}

// mmapThreshold is the malloc size from which glibc maps and unmaps
// (mallopt M_MMAP_THRESHOLD; fixing it turns off its dynamic growth).
const mmapThreshold = 1 << 20

// Backend names the BLAS and LAPACK implementation: "openblas".
func Backend() string { return "openblas" }

// BLASCore returns OpenBLAS's kernel set, e.g. "Cooperlake" (AVX-512) or
// "Haswell" (AVX2, what OPENBLAS_CORETYPE=Haswell forces).
func BLASCore() string { return C.GoString(C.openblas_get_corename()) }

// BLASThreads returns the number of threads one OpenBLAS call may use.
func BLASThreads() int { return int(C.openblas_get_num_threads()) }

// SetBLASThreads sets the number of threads one OpenBLAS call may use,
// for the whole process (OpenBLAS keeps one global setting; its start-up
// value comes from OPENBLAS_NUM_THREADS or the CPU count).
func SetBLASThreads(n int) { C.openblas_set_num_threads(C.int(max(n, 1))) }

// gesddSVD is thinSVD by LAPACK's dgesdd. A row-major m x n matrix is the
// column-major n x m A^T, and A^T = V S U^T, so dgesdd on the buffer as it
// is returns U^T where it puts VT and V where it puts U: both come out
// row-major without a transpose of the input. Non-finite input goes to
// gonum's path, which reports it the way callers expect.
func gesddSVD(a mat.Matrix, vectors bool) (u *mat.Dense, s []float64, v *mat.Dense, ok bool) {
	m, n := a.Dims()
	buf := rowMajor(a) // a fresh m x n copy: dgesdd destroys its input
	if min(m, n) == 0 || !allFinite(buf) {
		return gonumThinSVD(a, vectors)
	}
	u, s, v, info := gesdd(buf, m, n, vectors)
	if info != 0 {
		// dbdsdc, the divide and conquer inside dgesdd, can fail to
		// converge (info > 0) where the QR iteration of dgesvd, gonum's
		// path, does not.
		return gonumThinSVD(a, vectors)
	}
	return u, s, v, true
}

// gesdd runs dgesdd on buf, a row-major m x n matrix it destroys, and
// returns LAPACK's info with the factors (valid only when info is 0).
func gesdd(buf []float64, m, n int, vectors bool) (u *mat.Dense, s []float64, v *mat.Dense, info int) {
	k := min(m, n)
	s = make([]float64, k)
	if !vectors {
		info := C.LAPACKE_dgesdd(C.LAPACK_COL_MAJOR, 'N', C.lapack_int(n), C.lapack_int(m),
			dptr(buf), C.lapack_int(n), dptr(s), nil, 1, nil, 1)
		return nil, s, nil, int(info)
	}
	ub := make([]float64, m*k)  // U, row-major m x k: VT of A^T (k x m, ld k)
	vtb := make([]float64, k*n) // V^T, row-major k x n: U of A^T (n x k, ld n)
	info = int(C.LAPACKE_dgesdd(C.LAPACK_COL_MAJOR, 'S', C.lapack_int(n), C.lapack_int(m),
		dptr(buf), C.lapack_int(n), dptr(s), dptr(vtb), C.lapack_int(n), dptr(ub), C.lapack_int(k)))
	if info != 0 {
		return nil, nil, nil, info
	}
	return mat.NewDense(m, k, ub), s, mat.DenseCopyOf(mat.NewDense(k, n, vtb).T()), 0
}

func dptr(s []float64) *C.double { return (*C.double)(unsafe.Pointer(&s[0])) }
