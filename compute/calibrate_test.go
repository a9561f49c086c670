package compute

import (
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"testing"

	"gonum.org/v1/gonum/mat"
	"gonum.org/v1/gonum/optimize"
)

// Tolerances of the data-aware tests.
const (
	// tolExactFit: an exact fit (closed form or normal equations) against
	// an independent derivation of the same minimiser, relative.
	tolExactFit = 1e-9
	// tolBrute: an objective value against a BFGS minimiser's, relative.
	tolBrute = 1e-8
)

// anisotropic returns n rows of width in with strongly unequal feature
// scales in a random basis: Z diag(s) Q with s_j = 10^(-2 j / in) (a
// 100:1 spread) and a mean offset, like post-activation features.
func anisotropic(rng *rand.Rand, n, in int) []float64 {
	q := randomOrthogonal(rng, in)
	z := randDense(rng, n, in)
	for j := range in {
		s := math.Pow(10, -2*float64(j)/float64(in))
		for i := range n {
			z.Set(i, j, z.At(i, j)*s)
		}
	}
	var x mat.Dense
	x.Mul(z, q)
	for i := range n {
		for j := range in {
			x.Set(i, j, x.At(i, j)+0.3)
		}
	}
	return x.RawMatrix().Data
}

// augmented returns [X; sqrt(n lambda) I], the rows whose plain output
// error is n F (the ridge written as data): an independent statement of
// the objective.
func augmented(x []float64, n, in int, lambda float64) *mat.Dense {
	a := mat.NewDense(n+in, in, nil)
	a.Slice(0, n, 0, in).(*mat.Dense).Copy(mat.NewDense(n, in, x))
	for i := range in {
		a.Set(n+i, i, math.Sqrt(float64(n)*lambda))
	}
	return a
}

// outputObjective returns ||(W - A) Xa^T||_F^2 / n for the augmented rows
// xa: F computed from the rows, without the Calibration.
func outputObjective(w, a mat.Matrix, xa *mat.Dense, n int) float64 {
	var d, y mat.Dense
	d.Sub(w, a)
	y.Mul(xa, d.T())
	v := mat.Norm(&y, 2)
	return v * v / float64(n)
}

// projectedOptimum is the rank-k minimiser of ||(W - A) Xa^T||_F derived
// without whitening: the best rank-k approximation of Y = W Xa^T is
// U_k U_k^T Y (Eckart-Young), which A = U_k U_k^T W attains; Xa has full
// column rank, so that A is the unique minimiser when sigma_k > sigma_k+1.
func projectedOptimum(w *mat.Dense, xa *mat.Dense, k int) *mat.Dense {
	var y mat.Dense
	y.Mul(w, xa.T())
	var svd mat.SVD
	if !svd.Factorize(&y, mat.SVDThin) {
		panic("svd")
	}
	var u mat.Dense
	svd.UTo(&u)
	out, _ := w.Dims()
	uk := u.Slice(0, out, 0, k)
	var p, a mat.Dense
	p.Mul(uk, uk.T())
	a.Mul(&p, w)
	return &a
}

func mustCalibration(t *testing.T, x []float64, n, in int, alpha float64) *Calibration {
	t.Helper()
	cal, err := NewCalibration(x, n, in, alpha)
	if err != nil {
		t.Fatal(err)
	}
	return cal
}

func TestGramAccumulates(t *testing.T) {
	rng := newRand(1)
	n, in := 37, 6
	x := randSlice(rng, n*in)
	g := NewGram(in)
	for lo := 0; lo < n; lo += 10 {
		hi := min(lo+10, n)
		if err := g.Add(x[lo*in:hi*in], hi-lo); err != nil {
			t.Fatal(err)
		}
	}
	// Rejected batches leave the sums alone.
	bad := []struct {
		name string
		x    []float64
		n    int
		want error
	}{
		{"short", x[:in+1], 2, ErrCalibration},
		{"negative rows", nil, -1, ErrCalibration},
		{"NaN", append(make([]float64, in-1), math.NaN()), 1, ErrNotFinite},
		{"Inf", append(make([]float64, in-1), math.Inf(-1)), 1, ErrNotFinite},
	}
	for _, tt := range bad {
		if err := g.Add(tt.x, tt.n); !errors.Is(err, tt.want) {
			t.Errorf("%s: got %v want %v", tt.name, err, tt.want)
		}
	}
	if g.Rows() != n {
		t.Fatalf("rows %d want %d", g.Rows(), n)
	}
	cal, err := g.Calibration(0)
	if err != nil {
		t.Fatal(err)
	}
	xm := mat.NewDense(n, in, x)
	var want mat.Dense
	want.Mul(xm.T(), xm)
	want.Scale(1/float64(n), &want)
	if d := relDiff(rowMajor(cal.SecondMoment()), rowMajor(&want)); d > 1e-14 {
		t.Errorf("second moment off by %g", d)
	}
}

func TestCalibrationRejects(t *testing.T) {
	rng := newRand(2)
	good := randSlice(rng, 20*4)
	tests := []struct {
		name  string
		x     []float64
		n, in int
		alpha float64
		want  error
	}{
		{"no rows", nil, 0, 4, -1, ErrCalibration},
		{"wrong width", good[:78], 20, 4, -1, ErrCalibration},
		{"zero width", nil, 0, 0, -1, ErrCalibration},
		{"NaN", append(good[:76:76], 1, 2, math.NaN(), 3), 20, 4, -1, ErrNotFinite},
		{"all zero", make([]float64, 8), 2, 4, -1, ErrCalibration},
		{"singular without ridge", good[:8], 2, 4, 0, ErrCalibration},
		{"NaN ridge", good, 20, 4, math.NaN(), ErrNotFinite},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewCalibration(tt.x, tt.n, tt.in, tt.alpha)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v want %v", err, tt.want)
			}
		})
	}
	// The singular case works with a ridge.
	if _, err := NewCalibration(good[:8], 2, 4, 1e-3); err != nil {
		t.Errorf("ridged rank-2 calibration: %v", err)
	}
	// A layer of another width is bad input, not a panic.
	cal := mustCalibration(t, good, 20, 4, -1)
	if _, err := ProjectCalibrated(randDense(rng, 3, 5), Spec{Family: FamilyLowRank, Rank: 1}, cal, CalibratedConfig{}, 1); !errors.Is(err, ErrCalibration) {
		t.Errorf("width mismatch: got %v want ErrCalibration", err)
	}
	if _, err := ProjectCalibrated(randDense(rng, 3, 4), Spec{Family: FamilyLowRank, Rank: 9}, cal, CalibratedConfig{}, 1); !errors.Is(err, ErrSpec) {
		t.Errorf("rank too large: got %v want ErrSpec", err)
	}
}

// The ridge is the rows sqrt(n lambda) e_i appended to X, and it scales
// with the activations, so the fits do not depend on their units.
func TestRidgeIsRowsAndUnitFree(t *testing.T) {
	rng := newRand(3)
	n, in, out := 15, 8, 5
	x := anisotropic(rng, n, in)
	w, a := randDense(rng, out, in), randDense(rng, out, in)
	cal := mustCalibration(t, x, n, in, 0.05)
	want := outputObjective(w, a, augmented(x, n, in, cal.Lambda()), n)
	if got := cal.objective(w, a); math.Abs(got-want) > 1e-12*want {
		t.Errorf("F = %.15g, augmented rows give %.15g", got, want)
	}
	scaled := make([]float64, len(x))
	for i, v := range x {
		scaled[i] = 1000 * v
	}
	cal2 := mustCalibration(t, scaled, n, in, 0.05)
	for _, spec := range []Spec{{Family: FamilyLowRank, Rank: 2}, {Family: FamilyToeplitz}, {Family: FamilyMonarch, Blocks: 2, Rank: 1}} {
		p1, err := ProjectCalibrated(w, spec, cal, CalibratedConfig{}, 1)
		if err != nil {
			t.Fatal(err)
		}
		p2, err := ProjectCalibrated(w, spec, cal2, CalibratedConfig{}, 1)
		if err != nil {
			t.Fatal(err)
		}
		if d := relDiff(rowMajor(Dense(p1)), rowMajor(Dense(p2))); d > 1e-9 {
			t.Errorf("%s: activations x1000 move the fit by %g", spec.Family, d)
		}
	}
}

func TestOutputRelativeError(t *testing.T) {
	rng := newRand(4)
	n, in, out := 30, 6, 4
	x := randSlice(rng, n*in)
	w, a := randDense(rng, out, in), randDense(rng, out, in)
	// Row by row: sum_t ||(W - A) x_t||^2 / sum_t ||W x_t||^2.
	var num, den float64
	for r := range n {
		xr := mat.NewVecDense(in, x[r*in:(r+1)*in])
		var y1, y2 mat.VecDense
		y1.MulVec(w, xr)
		y2.MulVec(a, xr)
		den += mat.Dot(&y1, &y1)
		y1.SubVec(&y1, &y2)
		num += mat.Dot(&y1, &y1)
	}
	want := math.Sqrt(num / den)
	if got := OutputRelativeError(w, a, x, n); math.Abs(got-want) > 1e-13 {
		t.Errorf("OutputRelativeError %.15g want %.15g", got, want)
	}
	cal := mustCalibration(t, x, n, in, 0.5) // the ridge must not enter
	if got := cal.RelativeError(w, a); math.Abs(got-want) > 1e-12 {
		t.Errorf("Calibration.RelativeError %.15g want %.15g", got, want)
	}
	if got := OutputRelativeError(w, w, x, n); got != 0 {
		t.Errorf("error of W against itself %g", got)
	}
}

// The whitened SVD is the exact minimiser: it matches the projection
// optimum derived from the rows without any whitening, with and without a
// ridge, for tall, wide and rank-deficient (n < in) activations, and no
// BFGS run over the factors, from many starts, finds a lower objective.
func TestLowRankCalibratedExact(t *testing.T) {
	tests := []struct {
		name            string
		n, in, out, k   int
		alpha           float64
		bruteForceStart int
	}{
		{"tall, no ridge", 40, 7, 9, 2, 0, 12},
		{"wide, no ridge", 50, 12, 5, 3, 0, 12},
		{"fewer rows than inputs, ridge", 6, 10, 8, 3, 1e-2, 12},
		{"default ridge", 30, 8, 8, 4, -1, 0},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rng := newRand(uint64(10 + i))
			x := anisotropic(rng, tt.n, tt.in)
			w := randDense(rng, tt.out, tt.in)
			cal := mustCalibration(t, x, tt.n, tt.in, tt.alpha)
			op, err := ProjectCalibrated(w, Spec{Family: FamilyLowRank, Rank: tt.k}, cal, CalibratedConfig{}, 1)
			if err != nil {
				t.Fatal(err)
			}
			xa := augmented(x, tt.n, tt.in, cal.Lambda())
			want := projectedOptimum(w, xa, tt.k)
			got := Dense(op)
			if d := relDiff(rowMajor(got), rowMajor(want)); d > tolExactFit {
				t.Errorf("whitened SVD differs from the projection optimum by %g", d)
			}
			f := outputObjective(w, got, xa, tt.n)
			if tt.bruteForceStart > 0 {
				best := bruteForceLowRank(w, xa, tt.n, tt.k, tt.bruteForceStart, rng)
				if f > best*(1+tolBrute) {
					t.Errorf("F = %.15g above a BFGS minimum %.15g", f, best)
				}
				if best < f*(1-tolBrute) {
					t.Errorf("BFGS found %.15g below the exact minimum %.15g", best, f)
				}
				t.Logf("F %.15g, BFGS best %.15g (relative gap %.1e)", f, best, (best-f)/f)
			}
		})
	}
}

// bruteForceLowRank minimises ||(W - U V^T) Xa^T||_F^2 / n over the
// factors with BFGS from random starts and returns the least value found.
func bruteForceLowRank(w, xa *mat.Dense, n, k, starts int, rng *rand.Rand) float64 {
	out, in := w.Dims()
	var m mat.Dense
	m.Mul(xa.T(), xa)
	m.Scale(1/float64(n), &m)
	split := func(p []float64) (*mat.Dense, *mat.Dense) {
		return mat.NewDense(out, k, p[:out*k]), mat.NewDense(in, k, p[out*k:])
	}
	resid := func(p []float64) *mat.Dense {
		u, v := split(p)
		var d mat.Dense
		d.Mul(u, v.T())
		d.Sub(w, &d)
		return &d
	}
	problem := optimize.Problem{
		Func: func(p []float64) float64 {
			d := resid(p)
			var dm mat.Dense
			dm.Mul(d, &m)
			return frobeniusDot(&dm, d)
		},
		Grad: func(g, p []float64) {
			u, v := split(p)
			var dm, gu, gv mat.Dense
			dm.Mul(resid(p), &m) // gradient of F in A is -2 D M
			gu.Mul(&dm, v)
			gv.Mul(dm.T(), u)
			for i, x := range gu.RawMatrix().Data {
				g[i] = -2 * x
			}
			for i, x := range gv.RawMatrix().Data {
				g[out*k+i] = -2 * x
			}
		},
	}
	best := math.Inf(1)
	for range starts {
		res, err := optimize.Minimize(problem, randSlice(rng, (out+in)*k),
			&optimize.Settings{GradientThreshold: 1e-13, MajorIterations: 20000, Converger: &optimize.FunctionConverge{Absolute: 1e-15, Relative: 1e-15, Iterations: 200}},
			&optimize.BFGS{})
		if err == nil || res != nil {
			best = min(best, res.F)
		}
	}
	return best
}

// The low-rank fit against numpy: testdata/calibrated_lowrank.json holds
// X, W and the minimiser U_k U_k^T W from numpy's SVD of W Xa^T (the
// script beside it), an implementation independent of gonum's Cholesky,
// triangular solves and SVD. (The weight-only projection is 0.27 to 1
// away from it, relative, on these cases.)
func TestLowRankCalibratedNumpy(t *testing.T) {
	data, err := os.ReadFile("testdata/calibrated_lowrank.json")
	if err != nil {
		t.Fatal(err)
	}
	var cases []struct {
		N, In, Out, K int
		Alpha         float64
		X, W, A       []float64
	}
	if err := json.Unmarshal(data, &cases); err != nil {
		t.Fatal(err)
	}
	if len(cases) == 0 {
		t.Fatal("no cases in the fixture")
	}
	for _, c := range cases {
		cal := mustCalibration(t, c.X, c.N, c.In, c.Alpha)
		w := mat.NewDense(c.Out, c.In, c.W)
		op, err := ProjectCalibrated(w, Spec{Family: FamilyLowRank, Rank: c.K}, cal, CalibratedConfig{}, 1)
		if err != nil {
			t.Fatal(err)
		}
		if d := relDiff(rowMajor(Dense(op)), c.A); d > 1e-8 {
			t.Errorf("%dx%d rank %d (n %d, alpha %g): differs from numpy by %g", c.Out, c.In, c.K, c.N, c.Alpha, d)
		}
	}
}
