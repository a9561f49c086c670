package compute

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/mat"
)

// ResidualCurve returns e_0 ... e_K, K = min(maxRank, out, in): the
// relative ridged output error of trunk + R_k, where R_k is the best
// correction of rank at most k in the calibration's objective (FitResidual's
// lowrank R, exact):
//
//	e_k = sqrt(F(S + R_k) / F(0)),   F(A) = tr((W - A) M (W - A)^T),
//
// F(0) = tr(W M W^T). One truncated SVD of (W - S) L (M = L L^T) gives
// them all, as Auto reads weight errors (Eckart-Young): F(S + R_k) =
// ||(W - S) L||_F^2 - sum_{i<k} sigma_i^2. It is how a whole-model
// assignment ranks trunk and residual-rank candidates without a fit per
// rank. The SVD is TruncatedSVD's, seeded by seed (exact for small
// matrices). w is out x in and trunk must have its shape (else ErrShape
// panics); errors wrap ErrCalibration (cal's width is not in) or
// ErrNotFinite.
func (c *Calibration) ResidualCurve(w *mat.Dense, trunk Operator[float64], maxRank int, seed uint64) ([]float64, error) {
	out, in := w.Dims()
	if so, si := trunk.Shape(); so != out || si != in || maxRank < 0 {
		panic(ErrShape)
	}
	if in != c.in {
		return nil, fmt.Errorf("%w: activations of width %d for a layer with %d inputs", ErrCalibration, c.in, in)
	}
	if !allFinite(denseData(w)) {
		return nil, ErrNotFinite
	}
	d := minusOp(w, trunk)
	c.whiten(d)
	base := mat.Norm(d, 2)
	base *= base
	ww := mat.DenseCopyOf(w)
	c.whiten(ww)
	total := mat.Norm(ww, 2)
	total *= total
	if total == 0 {
		total = 1
	}
	k := min(maxRank, out, in)
	var sv []float64
	if k > 0 {
		_, s, _, err := TruncatedSVD(d, k, seed)
		if err != nil {
			return nil, err
		}
		sv = s
	}
	curve := make([]float64, k+1)
	f := base
	for i := range curve {
		curve[i] = math.Sqrt(max(f, 0) / total)
		if i < len(sv) {
			f -= sv[i] * sv[i]
		}
	}
	return curve, nil
}
