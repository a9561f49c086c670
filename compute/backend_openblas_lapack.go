//go:build openblas

package compute

/*
#include <lapacke.h>
*/
import "C"

import (
	"gonum.org/v1/gonum/lapack/gonum"
)

// openblasLapack is gonum's LAPACK with the factorisations our code calls
// directly through lapack64 (LU, inverse from LU, QR and its Q) replaced
// by LAPACK's through LAPACKE. Every other routine is gonum's, whose
// level-3 work goes to OpenBLAS through blas64 anyway. The replacements
// keep gonum's conventions (row-major storage, 0-based pivots, a workspace
// query answering with work[0]), so their results can be passed to
// gonum's routines and back.
//
// LAPACKE's row-major interface transposes into a column-major copy and
// back: O(mn) next to the O(mn^2) factorisation.
type openblasLapack struct{ gonum.Implementation }

// getrfTransposedLAPACK is getrfTransposed through LAPACKE's column-major
// interface: the row-major n x n buffer is A^T in column-major order, so
// LAPACK factors it where it lies, without LAPACKE's transposed copy (a
// second matrix of A's size).
func getrfTransposedLAPACK(n int, a []float64, lda int) (transposed, ok bool) {
	if n == 0 {
		return true, true
	}
	piv := make([]C.lapack_int, n)
	info := C.LAPACKE_dgetrf(C.LAPACK_COL_MAJOR, C.lapack_int(n), C.lapack_int(n), dptr(a), C.lapack_int(lda), &piv[0])
	if info < 0 {
		panic(ErrShape)
	}
	return true, info == 0
}

// Dgetrf computes P A = L U with partial pivoting; ipiv is 0-based.
func (openblasLapack) Dgetrf(m, n int, a []float64, lda int, ipiv []int) (ok bool) {
	k := min(m, n)
	if k == 0 {
		return true
	}
	piv := make([]C.lapack_int, k)
	info := C.LAPACKE_dgetrf(C.LAPACK_ROW_MAJOR, C.lapack_int(m), C.lapack_int(n), dptr(a), C.lapack_int(lda), &piv[0])
	if info < 0 {
		panic(ErrShape)
	}
	for i, p := range piv {
		ipiv[i] = int(p) - 1
	}
	return info == 0
}

// Dgetri computes A^{-1} from the factors of Dgetrf (0-based ipiv).
func (openblasLapack) Dgetri(n int, a []float64, lda int, ipiv []int, work []float64, lwork int) (ok bool) {
	if lwork == -1 {
		work[0] = 1
		return true
	}
	if n == 0 {
		return true
	}
	piv := make([]C.lapack_int, n)
	for i := range piv {
		piv[i] = C.lapack_int(ipiv[i] + 1)
	}
	info := C.LAPACKE_dgetri(C.LAPACK_ROW_MAJOR, C.lapack_int(n), dptr(a), C.lapack_int(lda), &piv[0])
	if info < 0 {
		panic(ErrShape)
	}
	return info == 0
}

// Dgeqrf computes A = Q R, Q as elementary reflectors below the diagonal.
func (openblasLapack) Dgeqrf(m, n int, a []float64, lda int, tau, work []float64, lwork int) {
	if lwork == -1 {
		work[0] = 1
		return
	}
	if min(m, n) == 0 {
		return
	}
	if C.LAPACKE_dgeqrf(C.LAPACK_ROW_MAJOR, C.lapack_int(m), C.lapack_int(n), dptr(a), C.lapack_int(lda), dptr(tau)) < 0 {
		panic(ErrShape)
	}
}

// Dorgqr forms the m x n Q with orthonormal columns from k reflectors of
// Dgeqrf.
func (openblasLapack) Dorgqr(m, n, k int, a []float64, lda int, tau, work []float64, lwork int) {
	if lwork == -1 {
		work[0] = 1
		return
	}
	if n == 0 {
		return
	}
	var t *C.double
	if k > 0 {
		t = dptr(tau)
	}
	if C.LAPACKE_dorgqr(C.LAPACK_ROW_MAJOR, C.lapack_int(m), C.lapack_int(n), C.lapack_int(k), dptr(a), C.lapack_int(lda), t) < 0 {
		panic(ErrShape)
	}
}
