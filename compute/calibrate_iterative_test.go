package compute

import (
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/mat"
	"gonum.org/v1/gonum/optimize"
)

// tolLocal is the relative tolerance of the iterative fits against a
// brute-force optimiser on tiny cases: both stop at a convergence test,
// so they agree to about the square root of their stopping tolerances.
const tolLocal = 1e-6

var iterativeSpecs = []struct {
	name string
	spec Spec
}{
	{"monarch", Spec{Family: FamilyMonarch, Out: 8, In: 8, Blocks: 2, Rank: 1}},
	{"monarch rank 2 rectangular", Spec{Family: FamilyMonarch, Out: 12, In: 8, Blocks: 2, Rank: 2}},
	{"monarch padded", Spec{Family: FamilyMonarch, Out: 7, In: 10, Blocks: 3, Rank: 1}},
	{"kronecker", Spec{Family: FamilyKronecker, Out: 6, In: 6, Rank: 1}},
	{"kronecker rank 2", Spec{Family: FamilyKronecker, Out: 8, In: 6, Rank: 2}},
	{"kronecker padded", Spec{Family: FamilyKronecker, Out: 7, In: 9, Rank: 2, FactorShape: [2]int{2, 2}}},
	{"orthogonal tall", Spec{Family: FamilyOrthogonal, Out: 4, In: 3}},
	{"orthogonal square", Spec{Family: FamilyOrthogonal, Out: 3, In: 3}},
	{"orthogonal wide", Spec{Family: FamilyOrthogonal, Out: 2, In: 5}},
}

// Each sweep is an exact minimisation over a block (or a majorisation
// step), so F never rises with the number of sweeps, starts no worse than
// the weight-only projection, and ends strictly lower.
func TestIterativeFitsMonotone(t *testing.T) {
	for i, tt := range iterativeSpecs {
		t.Run(tt.name, func(t *testing.T) {
			rng := newRand(uint64(300 + i))
			n := 3 * tt.spec.In
			x := anisotropic(rng, n, tt.spec.In)
			w := randDense(rng, tt.spec.Out, tt.spec.In)
			cal := mustCalibration(t, x, n, tt.spec.In, 1e-3)
			wo, err := Project(w, tt.spec, 1)
			if err != nil {
				t.Fatal(err)
			}
			prev := cal.objective(w, Dense(wo))
			first := prev
			for sweeps := 1; sweeps <= 8; sweeps++ {
				op, err := ProjectCalibrated(w, tt.spec, cal, CalibratedConfig{Sweeps: sweeps, Tol: 1e-300}, 1)
				if err != nil {
					t.Fatal(err)
				}
				f := cal.objective(w, Dense(op))
				if f > prev*(1+1e-12) {
					t.Errorf("%d sweeps: F %.15g above %.15g after %d", sweeps, f, prev, sweeps-1)
				}
				prev = f
			}
			if !(prev < 0.99*first) {
				t.Errorf("F %.6g not clearly below the weight-only %.6g", prev, first)
			}
		})
	}
}

// On tiny cases a brute-force optimiser over the family's parameters
// (BFGS, or Nelder-Mead for orthogonal) does not beat the fit: started
// from the fit it finds no lower F (the fit is a local minimum), started
// from the weight-only projection it ends no lower, and for monarch and
// orthogonal neither do 6 random starts. Weighted Kronecker
// approximation has local minima the alternating fit does not always
// escape (alternating fits of one 8 x 10 case from random starts end at
// F = 0.323 or 0.398), so there the random starts are only reported.
func TestIterativeFitsMatchBruteForce(t *testing.T) {
	for i, tt := range iterativeSpecs {
		t.Run(tt.name, func(t *testing.T) {
			rng := newRand(uint64(400 + i))
			n := 3 * tt.spec.In
			x := anisotropic(rng, n, tt.spec.In)
			w := randDense(rng, tt.spec.Out, tt.spec.In)
			cal := mustCalibration(t, x, n, tt.spec.In, 1e-3)
			op, err := ProjectCalibrated(w, tt.spec, cal, CalibratedConfig{Sweeps: 20000, Tol: 1e-14}, 1)
			if err != nil {
				t.Fatal(err)
			}
			wo, err := Project(w, tt.spec, 1)
			if err != nil {
				t.Fatal(err)
			}
			xa := augmented(x, n, tt.spec.In, cal.Lambda())
			f := outputObjective(w, Dense(op), xa, n)
			minimise := bruteForceParams
			if tt.spec.Family == FamilyOrthogonal {
				minimise = bruteForceOrthogonal
			}
			fromFit := minimise(w, xa, n, op, nil)
			fromWeightOnly := minimise(w, xa, n, wo, nil)
			random := math.Inf(1)
			for range 6 {
				random = min(random, minimise(w, xa, n, op, rng))
			}
			t.Logf("F %.12g; brute force from the fit %.12g, from weight-only %.12g, best of random starts %.12g",
				f, fromFit, fromWeightOnly, random)
			for _, ref := range []struct {
				name string
				f    float64
			}{{"from the fit", fromFit}, {"from weight-only", fromWeightOnly}, {"from random starts", random}} {
				if ref.name == "from random starts" && tt.spec.Family == FamilyKronecker {
					continue
				}
				if f > ref.f*(1+tolLocal) {
					t.Errorf("F = %.12g above the brute-force minimum %s %.12g", f, ref.name, ref.f)
				}
			}
		})
	}
}

// bruteForceParams minimises ||(W - A) Xa^T||_F^2 / n over the trainable
// parameters of start's family with BFGS, gradients from the operator's
// own Backward (checked against finite differences elsewhere), from start
// itself or, when rng is not nil, from random parameters, and returns the
// value it ends at.
func bruteForceParams(w, xa *mat.Dense, n int, start Operator[float64], rng *rand.Rand) float64 {
	op := Clone(start)
	rows, in := xa.Dims()
	out, _ := w.Dims()
	xs := rowMajor(xa)
	yw := make([]float64, rows*out)
	NewDenseOp(out, in, rowMajor(w)).Apply(yw, xs, rows, nil)
	params := op.Params()
	set := func(p []float64) {
		for _, q := range params {
			if !q.Frozen {
				p = p[copy(q.Data, p):]
			}
		}
	}
	y := make([]float64, rows*out)
	problem := optimize.Problem{
		Func: func(p []float64) float64 {
			set(p)
			op.Apply(y, xs, rows, nil)
			var f float64
			for i, v := range y {
				f += (v - yw[i]) * (v - yw[i])
			}
			return f / float64(n)
		},
		Grad: func(g, p []float64) {
			set(p)
			op.Apply(y, xs, rows, nil)
			for i := range y {
				y[i] = 2 * (y[i] - yw[i]) / float64(n)
			}
			grads := make([][]float64, len(params))
			for i, q := range params {
				grads[i] = make([]float64, len(q.Data))
			}
			op.Backward(nil, xs, y, rows, grads, nil)
			g = g[:0]
			for i, q := range params {
				if !q.Frozen {
					g = append(g, grads[i]...)
				}
			}
		},
	}
	var x0 []float64
	for _, q := range start.Params() {
		if !q.Frozen {
			x0 = append(x0, q.Data...)
		}
	}
	if rng != nil {
		x0 = randSlice(rng, len(x0))
	}
	return minimizeBFGS(problem, x0)
}

func minimizeBFGS(problem optimize.Problem, x0 []float64) float64 {
	res, err := optimize.Minimize(problem, x0,
		&optimize.Settings{GradientThreshold: 1e-12, MajorIterations: 20000,
			Converger: &optimize.FunctionConverge{Absolute: 1e-15, Relative: 1e-15, Iterations: 200}},
		&optimize.BFGS{})
	if res == nil {
		return math.Inf(1) // a failed run proves nothing either way
	}
	_ = err // stopping on an iteration limit still leaves a valid point
	return res.F
}

// bruteForceOrthogonal minimises ||(W - s Q) Xa^T||_F^2 / n over s and
// Q = polar(Y) for unconstrained Y (out x in), with Nelder-Mead (no
// gradients needed), from start or, when rng is not nil, from a random
// point, and returns the value it ends at.
func bruteForceOrthogonal(w, xa *mat.Dense, n int, start Operator[float64], rng *rand.Rand) float64 {
	out, in := w.Dims()
	problem := optimize.Problem{Func: func(p []float64) float64 {
		q, err := PolarFactor(mat.NewDense(out, in, p[1:]))
		if err != nil {
			return math.Inf(1)
		}
		q.Scale(p[0], q)
		return outputObjective(w, q, xa, n)
	}}
	o := start.(*Orthogonal[float64])
	x0 := append([]float64{o.Scale()}, o.q...)
	if rng != nil {
		x0 = randSlice(rng, 1+out*in)
	}
	res, _ := optimize.Minimize(problem, x0,
		&optimize.Settings{MajorIterations: 100000, FuncEvaluations: 200000,
			Converger: &optimize.FunctionConverge{Absolute: 1e-15, Relative: 1e-15, Iterations: 1000}},
		&optimize.NelderMead{})
	if res == nil {
		return math.Inf(1)
	}
	return res.F
}
