package compute

import (
	"cmp"
	"math"
	"slices"

	"gonum.org/v1/gonum/mat"
)

// The families that are linear in their parameters, A = sum_p theta_p B_p,
// make F(A) = tr((T - A) M (T - A)^T) a convex quadratic in theta, so the
// data-aware fit is exact weighted least squares. M is positive definite
// and every parameter reaches a visible entry, so the minimiser is unique.

// rowSupportFit solves the least-squares problem of rows whose nonzeros
// are confined to the columns cols (sorted, distinct): for each row i in
// rows,
//
//	min over a (zero outside cols) of (t_i - a) M (t_i - a)^T,
//
// whose normal equations a_J M_JJ = (t_i M)_J give a_J = (T M)[i, J]
// M_JJ^(-1) (J = cols): the in-support part of t_i plus the regression of
// its off-support part onto the support, t_K M_KJ M_JJ^(-1). Rows decouple
// given M, and rows that share a support share the factorisation of M_JJ.
// tm is T M (out x in); the result is len(rows) x len(cols).
func rowSupportFit(tm *mat.Dense, m *mat.SymDense, rows, cols []int) (*mat.Dense, error) {
	k := len(cols)
	mjj := mat.NewSymDense(k, nil)
	for a, ca := range cols {
		for b := a; b < k; b++ {
			mjj.SetSym(a, b, m.At(ca, cols[b]))
		}
	}
	rhs := mat.NewDense(k, len(rows), nil) // (T M)[rows, J]^T
	for r, i := range rows {
		for a, c := range cols {
			rhs.Set(a, r, tm.At(i, c))
		}
	}
	x, err := solveSPD(mjj, rhs)
	if err != nil {
		return nil, err
	}
	return mat.DenseCopyOf(x.T()), nil
}

// solveSPD returns X with G X = H for G symmetric positive semi-definite:
// by Cholesky when G is numerically definite, else by the pseudo-inverse
// from the eigendecomposition (eigenvalues below n eps max|eig| dropped),
// which gives the minimum-norm least-squares solution. Either way X
// minimises the quadratic x^T G x - 2 x^T h column by column.
func solveSPD(g *mat.SymDense, h *mat.Dense) (*mat.Dense, error) {
	var ch mat.Cholesky
	var x mat.Dense
	if ch.Factorize(g) {
		if err := ch.SolveTo(&x, h); err == nil && allFinite(x.RawMatrix().Data) {
			return &x, nil
		}
	}
	var eig mat.EigenSym
	if !eig.Factorize(g, true) {
		return nil, ErrNoConvergence
	}
	vals := eig.Values(nil)
	var vecs mat.Dense
	eig.VectorsTo(&vecs)
	n := len(vals)
	cut := float64(n) * 0x1p-52 * max(math.Abs(vals[0]), math.Abs(vals[n-1]))
	var vth mat.Dense
	vth.Mul(vecs.T(), h)
	for i, v := range vals {
		row := vth.RawRowView(i)
		inv := 0.0
		if v > cut {
			inv = 1 / v
		}
		for j := range row {
			row[j] *= inv
		}
	}
	x.Mul(&vecs, &vth)
	return &x, nil
}

// fitBlockDiagCalibrated fits each diagonal block exactly: block j's rows
// share the support of its columns, so rowSupportFit gives D_j =
// (T M)[rows_j, cols_j] M_jj^(-1), one Cholesky per block. Padded rows and
// columns (outside out x in) stay zero.
func fitBlockDiagCalibrated(t *mat.Dense, s Spec, cal *Calibration, _ Operator[float64], _ CalibratedConfig, _ uint64) (Operator[float64], error) {
	po, pi, err := blockDiagPadded(s)
	if err != nil {
		return nil, err
	}
	b := s.Blocks
	mo, mi := po/b, pi/b
	var tm mat.Dense
	tm.Mul(t, cal.m)
	bd := NewBlockDiag[float64](po, pi, b, nil)
	for j := range b {
		rows := span(j*mo, min((j+1)*mo, s.Out))
		cols := span(j*mi, min((j+1)*mi, s.In))
		if len(rows) == 0 || len(cols) == 0 {
			continue
		}
		blk, err := rowSupportFit(&tm, cal.m, rows, cols)
		if err != nil {
			return nil, err
		}
		for i := range rows {
			copy(bd.d[(j*mo+i)*mi:][:len(cols)], blk.RawRowView(i))
		}
	}
	return maybePad[float64](bd, s.Out, s.In), nil
}

// span returns lo, lo+1, ..., hi-1 (empty when hi <= lo).
func span(lo, hi int) []int {
	var s []int
	for i := lo; i < hi; i++ {
		s = append(s, i)
	}
	return s
}

// fitSparseCalibrated chooses NNZ positions and fits their values
// exactly. Which positions are best is combinatorial; it tries the NNZ
// largest |T_ij| sqrt(M_jj) (the output energy each entry carries alone),
// the NNZ largest |T_ij| (the weight-only pattern) and, when init is a
// sparse operator, init's own pattern, fits each pattern's values by
// rowSupportFit (exact for that pattern) and keeps the lowest F, so the
// result is never worse than the weight-only projection or init.
func fitSparseCalibrated(t *mat.Dense, s Spec, cal *Calibration, init Operator[float64], _ CalibratedConfig, _ uint64) (Operator[float64], error) {
	var tm mat.Dense
	tm.Mul(t, cal.m)
	patterns := [][]int{
		topEntries(t, s.NNZ, func(j int) float64 { return math.Sqrt(cal.m.At(j, j)) }),
		topEntries(t, s.NNZ, func(int) float64 { return 1 }),
	}
	if sp, ok := init.(*Sparse[float64]); ok && len(sp.values) == s.NNZ {
		p := make([]int, s.NNZ)
		for e := range p {
			p[e] = int(sp.rows[e])*s.In + int(sp.cols[e])
		}
		patterns = append(patterns, p)
	}
	var best Operator[float64]
	bestF := math.Inf(1)
	for _, p := range patterns {
		op, err := sparseOnPattern(&tm, s, cal, p)
		if err != nil {
			return nil, err
		}
		if f := cal.objective(t, Dense(op)); f < bestF {
			best, bestF = op, f
		}
	}
	return best, nil
}

// topEntries returns the row-major indices of the k entries of t with the
// largest |t_ij| weight(j), sorted; ties go to the earlier entry.
func topEntries(t *mat.Dense, k int, weight func(j int) float64) []int {
	out, in := t.Dims()
	score := make([]float64, out*in)
	ws := make([]float64, in)
	for j := range ws {
		ws[j] = weight(j)
	}
	for i := range out {
		for j, v := range t.RawRowView(i) {
			score[i*in+j] = math.Abs(v) * ws[j]
		}
	}
	idx := span(0, out*in)
	slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(score[b], score[a]) })
	keep := idx[:k]
	slices.Sort(keep)
	return keep
}

// sparseOnPattern returns the sparse operator on the sorted row-major
// positions p with the exact least-squares values (rowSupportFit per row).
func sparseOnPattern(tm *mat.Dense, s Spec, cal *Calibration, p []int) (Operator[float64], error) {
	op, err := newSparseFromSpec[float64](s)
	if err != nil {
		return nil, err
	}
	sp := op.(*Sparse[float64])
	for lo := 0; lo < len(p); {
		row := p[lo] / s.In
		hi := lo
		var cols []int
		for ; hi < len(p) && p[hi]/s.In == row; hi++ {
			cols = append(cols, p[hi]%s.In)
		}
		vals, err := rowSupportFit(tm, cal.m, []int{row}, cols)
		if err != nil {
			return nil, err
		}
		for e := lo; e < hi; e++ {
			sp.rows[e], sp.cols[e] = float64(row), float64(cols[e-lo])
			sp.values[e] = vals.At(0, e-lo)
		}
		lo = hi
	}
	return sp, nil
}

// diagonalNormal returns the normal equations K theta = h of the Toeplitz
// parametrisation of an out x in matrix, A[i][j] = theta[i - j + in - 1]
// (P = out + in - 1 parameters, one per diagonal d = i - j): with B_p the
// 0/1 mask of diagonal d_p,
//
//	K[p][q] = tr(B_p M B_q^T) = sum_i M[i - d_p, i - d_q],
//	h[p]    = tr(T M B_p^T)   = sum over diagonal d_p of (T M)[i][j],
//
// the sums over the rows i where both columns are inside [0, in). Each
// K[p][q] is a run of the diagonal q - p of M, read in O(1) from running
// sums along M's diagonals, so K costs O(P^2 + in^2) besides the GEMM T M.
func diagonalNormal(t *mat.Dense, m *mat.SymDense) (*mat.SymDense, []float64) {
	out, in := t.Dims()
	np := out + in - 1
	// cum[(j+1)(in+1) + j'+1] = cum[j(in+1) + j'] + M[j][j']: running sums
	// along each diagonal of M.
	w := in + 1
	cum := make([]float64, w*w)
	for j := range in {
		for jj := range in {
			cum[(j+1)*w+jj+1] = cum[j*w+jj] + m.At(j, jj)
		}
	}
	k := mat.NewSymDense(np, nil)
	for p := range np {
		d := p - (in - 1)
		for q := p; q < np; q++ {
			dq := q - (in - 1)
			// Column j of row i = j + d pairs with column j + e, e = d - dq.
			e := d - dq
			lo := max(0, -d, -e)
			hi := min(in, out-d, in-e)
			if hi > lo {
				k.SetSym(p, q, cum[hi*w+hi+e]-cum[lo*w+lo+e])
			}
		}
	}
	var tm mat.Dense
	tm.Mul(t, m)
	h := make([]float64, np)
	for i := range out {
		for j, v := range tm.RawRowView(i) {
			h[i-j+in-1] += v
		}
	}
	return k, h
}

// fitToeplitzCalibrated solves the diagonal normal equations exactly.
func fitToeplitzCalibrated(t *mat.Dense, s Spec, cal *Calibration, _ Operator[float64], _ CalibratedConfig, _ uint64) (Operator[float64], error) {
	k, h := diagonalNormal(t, cal.m)
	theta, err := solveSPD(k, mat.NewDense(len(h), 1, h))
	if err != nil {
		return nil, err
	}
	return NewToeplitz(s.Out, s.In, theta.RawMatrix().Data), nil
}

// fitCirculantCalibrated folds the Toeplitz normal equations onto the
// wrapped diagonals: the out x in corner's diagonal d carries c[d mod N]
// (N = max(out, in)), so with Phi the 0/1 map from diagonals to c, the
// normal equations are (Phi^T K Phi) c = Phi^T h.
func fitCirculantCalibrated(t *mat.Dense, s Spec, cal *Calibration, _ Operator[float64], _ CalibratedConfig, _ uint64) (Operator[float64], error) {
	k, h := diagonalNormal(t, cal.m)
	n := max(s.Out, s.In)
	g := mat.NewSymDense(n, nil)
	hc := mat.NewDense(n, 1, nil)
	np := len(h)
	for p := range np {
		a := mod(p-(s.In-1), n)
		hc.Set(a, 0, hc.At(a, 0)+h[p])
		for q := range np {
			b := mod(q-(s.In-1), n)
			if a <= b {
				g.SetSym(a, b, g.At(a, b)+k.At(p, q))
			}
		}
	}
	c, err := solveSPD(g, hc)
	if err != nil {
		return nil, err
	}
	return NewCirculant(s.Out, s.In, c.RawMatrix().Data), nil
}
