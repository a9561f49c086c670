package compute

import (
	"fmt"

	"gonum.org/v1/gonum/mat"
)

// CalibratedConfig bounds the iterations of data-aware conversion. The
// zero value selects the defaults.
type CalibratedConfig struct {
	// Rounds bounds the trunk / correction alternations of
	// DecomposeCalibrated; 0 means 4.
	Rounds int
	// Sweeps bounds the sweeps of the iterative trunk fits (monarch,
	// kronecker, and orthogonal when out < in); 0 means 100.
	Sweeps int
	// Tol stops an iteration (a fit's sweeps, or the rounds) when one
	// step lowers the objective F by less than Tol times F; 0 means 1e-6.
	Tol float64
}

func (cfg CalibratedConfig) withDefaults() CalibratedConfig {
	if cfg.Rounds <= 0 {
		cfg.Rounds = 4
	}
	if cfg.Sweeps <= 0 {
		cfg.Sweeps = 100
	}
	if !(cfg.Tol > 0) {
		cfg.Tol = 1e-6
	}
	return cfg
}

// converged reports whether a step from prev to next lowered the
// objective by at most tol relative to prev (a rise counts as converged).
func converged(prev, next, tol float64) bool { return prev-next <= tol*prev }

// calibratedFitter returns the member of spec's family (spec.Out x
// spec.In, the shape of t) nearest to the target t in the calibration's
// objective F(A) = tr((T - A) M (T - A)^T). Families where that is a
// linear or spectral problem return the exact minimiser and ignore init;
// the iterative ones start from init (a member of the family, e.g. the
// current trunk of an alternation) or, when init is nil, from the
// weight-only projection of t, and never return anything worse than their
// start.
type calibratedFitter func(t *mat.Dense, spec Spec, cal *Calibration, init Operator[float64], cfg CalibratedConfig, seed uint64) (Operator[float64], error)

var calibratedFitters = map[string]calibratedFitter{
	FamilyDense:      fitDenseCalibrated,
	FamilyZero:       fitZeroCalibrated,
	FamilyLowRank:    fitLowRankCalibrated,
	FamilyBlockDiag:  fitBlockDiagCalibrated,
	FamilySparse:     fitSparseCalibrated,
	FamilyCirculant:  fitCirculantCalibrated,
	FamilyToeplitz:   fitToeplitzCalibrated,
	FamilyOrthogonal: fitOrthogonalCalibrated,
	FamilyMonarch:    fitMonarchCalibrated,
	FamilyKronecker:  fitKroneckerCalibrated,
}

// ProjectCalibrated is the data-aware Project: it returns the operator of
// family s.Family (with s's hyper-parameters; s.Out and s.In are taken
// from w, out x in) that minimises the output error on the calibration
// rows, through the ridged objective F(A) = tr((W - A) M (W - A)^T) of
// Calibration, instead of ||W - A||_F. Per family:
//
//   - lowrank: exact, the whitened truncated SVD (rank k of W L,
//     unwhitened by L^(-1));
//   - blockdiag, circulant, toeplitz: exact weighted least squares over
//     the parameters (blockdiag row by row, the others through the normal
//     equations of their diagonals);
//   - sparse: the pattern of the NNZ largest |W_ij| sqrt(M_jj), then the
//     exact least-squares values on that pattern;
//   - orthogonal: exact for out >= in (Q the polar factor of W M), and
//     iterative majorisation for out < in;
//   - monarch: block coordinate descent, each step the exact whitened
//     rank-r fit of one submatrix; kronecker: alternating least squares on
//     the A and B factors. Both start from the weight-only projection.
//
// The iterative fits stop per cfg and are never worse than the weight-only
// projection in F. seed drives the randomized SVDs of large factors.
// Errors wrap ErrSpec (bad hyper-parameters), ErrCalibration (cal's width
// is not w's in), ErrNotFinite or ErrNoConvergence.
func ProjectCalibrated(w *mat.Dense, s Spec, cal *Calibration, cfg CalibratedConfig, seed uint64) (Operator[float64], error) {
	s, err := checkCalibrated(w, s, cal)
	if err != nil {
		return nil, err
	}
	return fitCalibrated(w, s, cal, nil, cfg.withDefaults(), seed)
}

// checkCalibrated validates a target and a Spec against a Calibration
// and returns the Spec with w's shape.
func checkCalibrated(w *mat.Dense, s Spec, cal *Calibration) (Spec, error) {
	s.Out, s.In = w.Dims()
	if s.In != cal.in {
		return s, fmt.Errorf("%w: activations of width %d for a layer with %d inputs", ErrCalibration, cal.in, s.In)
	}
	if !allFinite(denseData(w)) {
		return s, ErrNotFinite
	}
	if _, ok := calibratedFitters[s.Family]; !ok {
		return s, fmt.Errorf("%w: no data-aware projection onto family %q", ErrSpec, s.Family)
	}
	if _, err := New[float64](s); err != nil {
		return s, err
	}
	return s, nil
}

func fitCalibrated(t *mat.Dense, s Spec, cal *Calibration, init Operator[float64], cfg CalibratedConfig, seed uint64) (Operator[float64], error) {
	op, err := calibratedFitters[s.Family](t, s, cal, init, cfg, seed)
	if err != nil {
		return nil, fmt.Errorf("data-aware %s: %w", s.Family, err)
	}
	return op, nil
}

// DecomposeCalibrated is the data-aware Decompose: W ~ S + R with S in the
// family of trunk and R the correction of residual, minimising the ridged
// output objective F(S + R) of Calibration by block coordinate descent.
// It starts from the weight-only trunk S0 = Project(W) with its best
// correction R0 (the exact whitened fit to W - S0, see FitResidual), then
// alternates, for up to cfg.Rounds rounds:
//
//	S <- the data-aware fit of W - R (ProjectCalibrated's, from S),
//	R <- the data-aware fit of W - S,
//
// stopping when a round lowers F by less than cfg.Tol relative. Each step
// minimises F over one block (exactly, or from the current point for the
// iterative trunks), so F never rises, and the result is never worse in F
// than the weight-only Decompose. A sparse correction keeps the better of
// its previous pattern and a fresh one. Errors as ProjectCalibrated.
func DecomposeCalibrated(w *mat.Dense, trunk Spec, residual Residual, cal *Calibration, cfg CalibratedConfig, seed uint64) (*Sum[float64], error) {
	trunk, err := checkCalibrated(w, trunk, cal)
	if err != nil {
		return nil, fmt.Errorf("trunk %s: %w", trunk.Family, err)
	}
	rs, err := residual.spec()
	if err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	s, err := Project(w, trunk, seed)
	if err != nil {
		return nil, fmt.Errorf("trunk %s: %w", trunk.Family, err)
	}
	r, err := fitCorrection(w, s, rs, cal, nil, cfg, seed)
	if err != nil {
		return nil, err
	}
	f := cal.objective(w, Dense[float64](NewSum(s, r)))
	for range cfg.Rounds {
		s2, err := fitCalibrated(minusOp(w, r), trunk, cal, s, cfg, seed)
		if err != nil {
			return nil, fmt.Errorf("trunk: %w", err)
		}
		r2, err := fitCorrection(w, s2, rs, cal, r, cfg, seed)
		if err != nil {
			return nil, err
		}
		f2 := cal.objective(w, Dense[float64](NewSum(s2, r2)))
		if f2 > f {
			break // rounding at convergence: keep the better pair
		}
		done := converged(f, f2, cfg.Tol)
		s, r, f = s2, r2, f2
		if done || isZero(r) {
			break
		}
	}
	return NewSum(s, r), nil
}

// minusOp returns w - op as a new matrix.
func minusOp(w *mat.Dense, op Operator[float64]) *mat.Dense {
	out, in := w.Dims()
	d := make([]float64, out*in)
	op.DenseTo(d)
	for i, v := range denseData(w) {
		d[i] = v - d[i]
	}
	return mat.NewDense(out, in, d)
}

// fitCorrection returns the data-aware correction of spec rs (sized to
// w) fitted to w - s, starting from prev when not nil.
func fitCorrection(w *mat.Dense, s Operator[float64], rs Spec, cal *Calibration, prev Operator[float64], cfg CalibratedConfig, seed uint64) (Operator[float64], error) {
	rs.Out, rs.In = w.Dims()
	r, err := fitCalibrated(minusOp(w, s), rs, cal, prev, cfg, residualSeed(seed))
	if err != nil {
		return nil, fmt.Errorf("residual: %w", err)
	}
	return r, nil
}

// FitResidual is the training-free correction: for a fixed trunk S (any
// operator of w's shape) it returns S + R with R of kind residual fitted
// to the calibration rows, min ||(W - S - R) X^T||_F through the ridged
// objective of Calibration. A lowrank R is exact: the whitened truncated
// SVD of W - S, i.e. R L = the best rank-r approximation of (W - S) L
// (Eckart-Young), so no training is needed to validate a candidate. A
// sparse R takes the NNZ largest |(W - S)_ij| sqrt(M_jj) and exact
// least-squares values there. S is kept, not copied. Errors as
// ProjectCalibrated.
func FitResidual(w *mat.Dense, trunk Operator[float64], residual Residual, cal *Calibration, seed uint64) (*Sum[float64], error) {
	if so, si := trunk.Shape(); !sameShape(w, so, si) {
		panic(ErrShape)
	}
	rs, err := residual.spec()
	if err != nil {
		return nil, err
	}
	if rs, err = checkCalibrated(w, rs, cal); err != nil {
		return nil, fmt.Errorf("residual: %w", err)
	}
	r, err := fitCorrection(w, trunk, rs, cal, nil, CalibratedConfig{}.withDefaults(), seed)
	if err != nil {
		return nil, err
	}
	return NewSum(trunk, r), nil
}

// fitDenseCalibrated returns T itself, where F is zero.
func fitDenseCalibrated(t *mat.Dense, s Spec, _ *Calibration, _ Operator[float64], _ CalibratedConfig, _ uint64) (Operator[float64], error) {
	return NewDenseOp(s.Out, s.In, rowMajor(t)), nil
}

func fitZeroCalibrated(_ *mat.Dense, s Spec, _ *Calibration, _ Operator[float64], _ CalibratedConfig, _ uint64) (Operator[float64], error) {
	return &Zero[float64]{s.Out, s.In}, nil
}

// fitLowRankCalibrated is the whitened truncated SVD, the exact minimiser
// of F over rank-k matrices (see whitenedTruncation).
func fitLowRankCalibrated(t *mat.Dense, s Spec, cal *Calibration, _ Operator[float64], _ CalibratedConfig, seed uint64) (Operator[float64], error) {
	u, v, err := whitenedTruncation(t, cal.lower, s.Rank, seed)
	if err != nil {
		return nil, err
	}
	return NewLowRank(s.Out, s.In, s.Rank, rowMajor(u), rowMajor(v)), nil
}

// unpad returns the operator inside a padded wrapper, or op itself.
func unpad(op Operator[float64]) Operator[float64] {
	if p, ok := op.(*padded[float64]); ok {
		return p.inner
	}
	return op
}

func sameShape(w mat.Matrix, out, in int) bool {
	r, c := w.Dims()
	return r == out && c == in
}
