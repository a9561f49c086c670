package compute

import (
	"cmp"
	"context"
	"fmt"
	"math"

	"gonum.org/v1/gonum/mat"
)

// Project returns the operator of family s.Family (with s's
// hyper-parameters) nearest to w (out x in). s.Out and s.In are taken from
// w. seed drives the randomized SVD used for large low-rank factors, so
// the result is a deterministic function of (w, s, seed). Errors wrap
// ErrSpec for hyper-parameters that do not fit w and ErrNotFinite for a w
// with NaN or Inf.
func Project(w *mat.Dense, s Spec, seed uint64) (Operator[float64], error) {
	return ProjectContext(context.Background(), w, s, seed)
}

// ProjectContext is Project stopping early with ctx's error when ctx is
// done: the families whose projection takes long check ctx between
// bounded pieces of work (monarch between its blocks' SVDs, the
// randomized SVDs of lowrank and kronecker between their passes over w);
// the others are a few passes over w and run to the end.
func ProjectContext(ctx context.Context, w *mat.Dense, s Spec, seed uint64) (Operator[float64], error) {
	s.Out, s.In = w.Dims()
	if s.Out == 0 || s.In == 0 {
		return nil, fmt.Errorf("%w: empty %dx%d matrix", ErrSpec, s.Out, s.In)
	}
	if !allFinite(denseData(w)) {
		return nil, ErrNotFinite
	}
	p, ok := projectors[s.Family]
	if !ok {
		return nil, fmt.Errorf("%w: no projection onto family %q", ErrSpec, s.Family)
	}
	// Validate the spec first, so every family rejects bad
	// hyper-parameters the same way New does.
	if _, err := New[float64](s); err != nil {
		return nil, err
	}
	return p(ctx, w, s, seed)
}

// Residual selects the correction R fitted to W - S.
type Residual struct {
	// Kind is ResidualLowRank (also when empty), ResidualSparse or
	// ResidualNone.
	Kind ResidualKind `json:"kind"`
	// Rank of a lowrank correction.
	Rank int `json:"rank,omitempty"`
	// NNZ is the number of entries of a sparse correction.
	NNZ int `json:"nnz,omitempty"`
}

// Decompose projects w onto the trunk family of trunk, then fits the
// residual correction to w - S: the truncated SVD of w - S (Eckart-Young)
// for "lowrank", its largest-magnitude entries for "sparse", nothing for
// "none". The result is a Sum.
//
// A large low-rank residual is fitted by the randomized SVD of w - S
// taken through products (W X - S X, the second through the trunk
// operator), so no dense copy of w - S is made; the other cases form it.
func Decompose(w *mat.Dense, trunk Spec, residual Residual, seed uint64) (*Sum[float64], error) {
	return DecomposeContext(context.Background(), w, trunk, residual, seed)
}

// DecomposeContext is Decompose stopping early with ctx's error when ctx
// is done, as ProjectContext does, and between the passes of the
// residual's randomized SVD; the result does not depend on ctx otherwise.
func DecomposeContext(ctx context.Context, w *mat.Dense, trunk Spec, residual Residual, seed uint64) (*Sum[float64], error) {
	s, err := ProjectContext(ctx, w, trunk, seed)
	if err != nil {
		return nil, fmt.Errorf("trunk %s: %w", trunk.Family, err)
	}
	out, in := w.Dims()
	rs, err := residual.spec()
	if err != nil {
		return nil, err
	}
	rseed := residualSeed(seed)
	if rs.Family == FamilyLowRank && !exactTruncation(out, in, rs.Rank) {
		rs.Out, rs.In = out, in
		if _, err := New[float64](rs); err != nil {
			return nil, fmt.Errorf("residual %s: %w", residual.Kind, err)
		}
		u, sv, v, err := randomizedSVDOf(ctx, residualMap{w, s}, rs.Rank, rseed)
		if err != nil {
			return nil, fmt.Errorf("residual %s: %w", residual.Kind, err)
		}
		return NewSum(s, Operator[float64](lowRankOf(u, sv, v, rs.Rank))), nil
	}
	diff := mat.NewDense(out, in, nil)
	s.DenseTo(diff.RawMatrix().Data)
	diff.Sub(w, diff)
	r, err := ProjectContext(ctx, diff, rs, rseed)
	if err != nil {
		return nil, fmt.Errorf("residual %s: %w", residual.Kind, err)
	}
	return NewSum(s, r), nil
}

// spec returns the operator Spec of the correction: lowrank, sparse, or
// zero for "none" and for a rank or count of 0.
func (residual Residual) spec() (Spec, error) {
	kind := cmp.Or(residual.Kind, ResidualLowRank)
	if !kind.Valid() {
		return Spec{}, fmt.Errorf("%w: unknown residual kind %q (want %s)", ErrSpec, residual.Kind, JoinNames(ResidualKinds))
	}
	switch {
	case kind == ResidualLowRank && residual.Rank > 0:
		return Spec{Family: FamilyLowRank, Rank: residual.Rank}, nil
	case kind == ResidualSparse && residual.NNZ > 0:
		return Spec{Family: FamilySparse, NNZ: residual.NNZ}, nil
	}
	return Spec{Family: FamilyZero}, nil
}

// residualSeed derives the seed of a correction's projection from the
// layer's seed, so trunk and correction draw different random sketches.
func residualSeed(seed uint64) uint64 { return seed ^ 0x9e3779b97f4a7c15 }

// residualMap is W - S as a linearMap, S an operator of W's shape: the
// products with S go through the operator (Apply on the transposed block
// of vectors), so W - S is never formed.
type residualMap struct {
	w *mat.Dense
	s Operator[float64]
}

func (r residualMap) Dims() (int, int) { return r.w.Dims() }

// mul sets dst = W X - S X: the rows of X^T through Apply are the rows of
// (S X)^T.
func (r residualMap) mul(dst, x *mat.Dense) {
	dst.Mul(r.w, x)
	out, _ := r.s.Shape()
	_, l := x.Dims()
	sx := make([]float64, l*out)
	r.s.Apply(sx, rowMajor(x.T()), l, nil)
	dst.Sub(dst, mat.NewDense(l, out, sx).T())
}

// mulT sets dst = W^T Y - S^T Y, by ApplyT on the rows of Y^T.
func (r residualMap) mulT(dst, y *mat.Dense) {
	dst.Mul(r.w.T(), y)
	_, in := r.s.Shape()
	_, l := y.Dims()
	sy := make([]float64, l*in)
	r.s.ApplyT(sy, rowMajor(y.T()), l, nil)
	dst.Sub(dst, mat.NewDense(l, in, sy).T())
}

func denseData(w *mat.Dense) []float64 {
	raw := w.RawMatrix()
	if raw.Stride == raw.Cols {
		return raw.Data[:raw.Rows*raw.Cols]
	}
	return mat.DenseCopyOf(w).RawMatrix().Data
}

// rowMajor returns w's entries as a fresh contiguous row-major slice.
func rowMajor(w mat.Matrix) []float64 {
	return mat.DenseCopyOf(w).RawMatrix().Data
}

// ceilTo rounds n up to a multiple of b.
func ceilTo(n, b int) int { return (n + b - 1) / b * b }

// padDense returns w zero-padded to rows x cols (w itself when no padding
// is needed).
func padDense(w *mat.Dense, rows, cols int) *mat.Dense {
	m, n := w.Dims()
	if m == rows && n == cols {
		return w
	}
	p := mat.NewDense(rows, cols, nil)
	p.Slice(0, m, 0, n).(*mat.Dense).Copy(w)
	return p
}

func isqrtFloor(n int) int { return int(math.Sqrt(float64(n))) }
