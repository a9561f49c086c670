// Package compute holds strata's numerics: the structured linear operators
// that replace a dense weight W (out x in) by a trunk S plus a correction R,
// their projections from a dense matrix, their gradients, and the linear
// algebra those need. It does no I/O.
//
// # Conventions
//
// Every matrix is row-major. A batch X of n inputs is an n x in slice; an
// operator W applied to it gives Y = X W^T (n x out). The transpose maps an
// n x out batch back: X = Y W.
//
// Apply and gradients are generic over float32 and float64: training runs in
// float32, while projections, singular values, gradient checks and metrics
// use float64. GEMMs go through gonum's blas32 / blas64 seams, so a faster
// BLAS can be swapped in with blas64.Use and blas32.Use.
//
// # Rectangular shapes and padding
//
// Families whose structure needs divisible dimensions (monarch, blockdiag,
// kronecker) zero-pad a layer to the next admissible shape: the input is
// padded with zeros and the extra outputs are dropped, so the operator is the
// top-left out x in corner of a padded structured matrix. The padded shape is
// a deterministic function of the Spec (the next multiples of b, or of the
// Kronecker factor shape), and the parameter shapes reported by Params are
// those of the padded operator.
// circulant uses a square of side max(out, in) and toeplitz is rectangular
// by nature; orthogonal, lowrank, dense and sparse need no padding.
package compute
