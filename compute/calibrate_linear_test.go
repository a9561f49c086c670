package compute

import (
	"math/rand/v2"
	"slices"
	"testing"

	"gonum.org/v1/gonum/mat"
)

// denseLeastSquares is the reference for the families that are linear in
// their parameters: it materialises the basis matrix B_p of every
// trainable scalar of template (one parameter 1, the rest 0), drops those
// no visible entry sees, and solves min_theta ||(W - sum theta_p B_p)
// Xa^T||_F by Householder QR on the (out (n + in)) x P design matrix. It
// returns sum theta_p B_p. The template's frozen state (a sparse
// pattern) is kept.
func denseLeastSquares(t *testing.T, template Operator[float64], w, xa *mat.Dense) *mat.Dense {
	t.Helper()
	out, in := w.Dims()
	rows, _ := xa.Dims()
	op := Clone(template)
	var bases []*mat.Dense
	for _, p := range op.Params() {
		if p.Frozen {
			continue
		}
		clear(p.Data)
	}
	for _, p := range op.Params() {
		if p.Frozen {
			continue
		}
		for i := range p.Data {
			p.Data[i] = 1
			b := Dense(op)
			p.Data[i] = 0
			if mat.Norm(b, 2) > 0 {
				bases = append(bases, b)
			}
		}
	}
	design := mat.NewDense(out*rows, len(bases), nil)
	for j, b := range bases {
		var y mat.Dense
		y.Mul(b, xa.T())
		design.SetCol(j, y.RawMatrix().Data)
	}
	var y mat.Dense
	y.Mul(w, xa.T())
	target := mat.NewVecDense(out*rows, mat.DenseCopyOf(&y).RawMatrix().Data)
	var theta mat.VecDense
	if err := theta.SolveVec(design, target); err != nil {
		t.Fatalf("reference least squares: %v", err)
	}
	a := mat.NewDense(out, in, nil)
	for j, b := range bases {
		var s mat.Dense
		s.Scale(theta.AtVec(j), b)
		a.Add(a, &s)
	}
	return a
}

func TestLinearFamiliesMatchDenseLeastSquares(t *testing.T) {
	tests := []struct {
		name  string
		spec  Spec
		n     int
		alpha float64
	}{
		{"blockdiag square", Spec{Family: FamilyBlockDiag, Out: 8, In: 8, Blocks: 2}, 40, 0},
		{"blockdiag padded wide", Spec{Family: FamilyBlockDiag, Out: 7, In: 10, Blocks: 3}, 40, 1e-3},
		{"blockdiag padded tall, few rows", Spec{Family: FamilyBlockDiag, Out: 10, In: 6, Blocks: 4}, 4, 1e-2},
		{"circulant square", Spec{Family: FamilyCirculant, Out: 6, In: 6}, 30, 0},
		{"circulant prime side", Spec{Family: FamilyCirculant, Out: 7, In: 7}, 30, 1e-3},
		{"circulant wide", Spec{Family: FamilyCirculant, Out: 5, In: 9}, 30, 1e-3},
		{"circulant tall", Spec{Family: FamilyCirculant, Out: 9, In: 5}, 30, 0},
		{"toeplitz square", Spec{Family: FamilyToeplitz, Out: 6, In: 6}, 30, 0},
		{"toeplitz wide, few rows", Spec{Family: FamilyToeplitz, Out: 4, In: 9}, 5, 1e-2},
		{"toeplitz tall", Spec{Family: FamilyToeplitz, Out: 9, In: 4}, 30, 1e-3},
		{"sparse", Spec{Family: FamilySparse, Out: 6, In: 8, NNZ: 15}, 30, 1e-3},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rng := newRand(uint64(200 + i))
			x := anisotropic(rng, tt.n, tt.spec.In)
			w := randDense(rng, tt.spec.Out, tt.spec.In)
			cal := mustCalibration(t, x, tt.n, tt.spec.In, tt.alpha)
			op, err := ProjectCalibrated(w, tt.spec, cal, CalibratedConfig{}, 1)
			if err != nil {
				t.Fatal(err)
			}
			xa := augmented(x, tt.n, tt.spec.In, cal.Lambda())
			want := denseLeastSquares(t, op, w, xa)
			if d := relDiff(rowMajor(Dense(op)), rowMajor(want)); d > tolExactFit {
				t.Errorf("data-aware fit differs from the dense least squares by %g", d)
			}
			// And it is never worse than keeping the weight-only values.
			wo, err := Project(w, tt.spec, 1)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("weight-only is %.2g away from the optimum", relDiff(rowMajor(Dense(wo)), rowMajor(want)))
			if fd, fw := cal.objective(w, Dense(op)), cal.objective(w, Dense(wo)); fd > fw {
				t.Errorf("F data-aware %g above weight-only %g", fd, fw)
			}
		})
	}
}

// A sparse pattern given from outside gets the exact values too.
func TestSparseOnRandomPattern(t *testing.T) {
	rng := newRand(220)
	out, in, n, nnz := 5, 7, 25, 12
	x := anisotropic(rng, n, in)
	w := randDense(rng, out, in)
	cal := mustCalibration(t, x, n, in, 1e-3)
	pattern := rand.New(rand.NewPCG(1, 2)).Perm(out * in)[:nnz]
	slices.Sort(pattern)
	var tm mat.Dense
	tm.Mul(w, cal.m)
	op, err := sparseOnPattern(&tm, Spec{Family: FamilySparse, Out: out, In: in, NNZ: nnz}, cal, pattern)
	if err != nil {
		t.Fatal(err)
	}
	want := denseLeastSquares(t, op, w, augmented(x, n, in, cal.Lambda()))
	if d := relDiff(rowMajor(Dense(op)), rowMajor(want)); d > tolExactFit {
		t.Errorf("sparse values differ from the dense least squares by %g", d)
	}
}
