package compute

import (
	"errors"
	"math"
	"testing"

	"gonum.org/v1/gonum/mat"
)

func TestCoreOperators(t *testing.T) {
	tests := []struct {
		name string
		spec Spec
	}{
		{"dense square", Spec{Family: FamilyDense, Out: 6, In: 6}},
		{"dense wide", Spec{Family: FamilyDense, Out: 3, In: 7}},
		{"lowrank tall", Spec{Family: FamilyLowRank, Out: 9, In: 5, Rank: 2}},
		{"lowrank wide", Spec{Family: FamilyLowRank, Out: 4, In: 10, Rank: 3}},
		{"lowrank full", Spec{Family: FamilyLowRank, Out: 4, In: 4, Rank: 4}},
		{"sparse", Spec{Family: FamilySparse, Out: 6, In: 8, NNZ: 11}},
		{"sum lowrank+sparse", Spec{Family: FamilySum, Out: 7, In: 5,
			Trunk: &Spec{Family: FamilyLowRank, Rank: 2}, Correction: &Spec{Family: FamilySparse, NNZ: 4}}},
		{"sum dense+zero", Spec{Family: FamilySum, Out: 4, In: 6,
			Trunk: &Spec{Family: FamilyDense}, Correction: &Spec{Family: FamilyZero}}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rng := newRand(uint64(i))
			var op Operator[float64]
			if tt.spec.Family == FamilySum {
				tr, cr := *tt.spec.Trunk, *tt.spec.Correction
				tr.Out, tr.In, cr.Out, cr.In = tt.spec.Out, tt.spec.In, tt.spec.Out, tt.spec.In
				op = NewSum(randomMember(t, tr, rng), randomMember(t, cr, rng))
			} else {
				op = randomMember(t, tt.spec, rng)
			}
			checkOperator(t, op, rng)
		})
	}
}

func TestLowRankRecoveryAndOptimality(t *testing.T) {
	tests := []struct{ m, n, k int }{{12, 12, 3}, {20, 9, 4}, {7, 30, 5}, {150, 140, 6}}
	for i, tt := range tests {
		rng := newRand(uint64(100 + i))
		spec := Spec{Family: FamilyLowRank, Out: tt.m, In: tt.n, Rank: tt.k}
		checkRecovery(t, spec, rng)

		w := randDense(rng, tt.m, tt.n)
		op, err := Project(w, spec, 1)
		if err != nil {
			t.Fatal(err)
		}
		got := RelativeError(w, Dense(op))
		want := tailError(SingularValuesOf(w, nil), tt.k)
		if math.Abs(got-want) > 1e-10 {
			t.Errorf("%dx%d rank %d: error %.15g, Eckart-Young tail %.15g", tt.m, tt.n, tt.k, got, want)
		}
		// Perturbing the optimum never lowers the error.
		for range 20 {
			p := Clone(op)
			for _, par := range p.Params() {
				for j := range par.Data {
					par.Data[j] += 1e-3 * rng.NormFloat64()
				}
			}
			if e := RelativeError(w, Dense(p)); e < got-1e-14 {
				t.Errorf("perturbed lowrank error %g below optimum %g", e, got)
			}
		}
	}
}

func TestRandomizedSVDMatchesExact(t *testing.T) {
	// A 400 x 300 matrix with decaying spectrum: the randomized path
	// (min dim > exactSVDLimit, 4k < min dim) must match the exact
	// truncation error closely.
	rng := newRand(5)
	m, n, k := 400, 300, 20
	u, _, _, _ := exactTruncatedSVD(randDense(rng, m, m), m)
	v, _, _, _ := exactTruncatedSVD(randDense(rng, n, n), n)
	s := mat.NewDense(m, n, nil)
	for i := range n {
		s.Set(i, i, math.Pow(0.8, float64(i)))
	}
	var w mat.Dense
	w.Product(u, s, v.T())
	ur, sr, vr, err := TruncatedSVD(&w, k, 3)
	if err != nil {
		t.Fatal(err)
	}
	var approx mat.Dense
	approx.Product(ur, mat.NewDiagDense(k, sr), vr.T())
	got := RelativeError(&w, &approx)
	want := tailError(SingularValuesOf(&w, nil), k)
	if got > want*(1+1e-6) {
		t.Errorf("randomized rank-%d error %.12g, optimum %.12g", k, got, want)
	}
	for i := range k {
		if d := math.Abs(sr[i] - math.Pow(0.8, float64(i))); d > 1e-10 {
			t.Errorf("sigma_%d = %v, want %v", i, sr[i], math.Pow(0.8, float64(i)))
		}
	}

	// A flat spectrum (Gaussian matrix) is the hard case for the range
	// finder; the error must still be within 0.5% of the optimum.
	g := randDense(rng, 300, 260)
	ur, sr, vr, err = TruncatedSVD(g, 8, 3)
	if err != nil {
		t.Fatal(err)
	}
	approx.Reset()
	approx.Product(ur, mat.NewDiagDense(8, sr), vr.T())
	got = RelativeError(g, &approx)
	want = tailError(SingularValuesOf(g, nil), 8)
	if got > want*1.005 {
		t.Errorf("flat spectrum: randomized error %.12g, optimum %.12g", got, want)
	}
}

func TestSparseProjectionKeepsLargest(t *testing.T) {
	w := mat.NewDense(2, 3, []float64{1, -5, 2, 4, -3, 0.5})
	op, err := Project(w, Spec{Family: FamilySparse, NNZ: 3}, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := mat.NewDense(2, 3, []float64{0, -5, 0, 4, -3, 0})
	if !mat.Equal(Dense(op), want) {
		t.Errorf("got %v, want %v", mat.Formatted(Dense(op)), mat.Formatted(want))
	}
	if NumParams(op) != 3 {
		t.Errorf("NumParams = %d, want 3 (indices are frozen)", NumParams(op))
	}
	sp := op.(*Sparse[float64])
	sp.rows[0] = 2
	if err := sp.Validate(); err == nil {
		t.Error("Validate accepted a row index outside the shape")
	}
}

func TestDecompose(t *testing.T) {
	rng := newRand(9)
	w := randDense(rng, 16, 12)
	sum, err := Decompose(w, Spec{Family: FamilyLowRank, Rank: 3}, Residual{Kind: "lowrank", Rank: 2}, 1)
	if err != nil {
		t.Fatal(err)
	}
	// lowrank 3 + lowrank 2 residual of the remainder = best rank-5.
	got := RelativeError(w, Dense(sum))
	want := tailError(SingularValuesOf(w, nil), 5)
	if math.Abs(got-want) > 1e-10 {
		t.Errorf("lowrank(3)+lowrank(2) error %g, want rank-5 optimum %g", got, want)
	}
	if _, err := Decompose(w, Spec{Family: FamilyLowRank, Rank: 3}, Residual{Kind: "bogus"}, 1); !errors.Is(err, ErrSpec) {
		t.Errorf("unknown residual kind: err = %v, want ErrSpec", err)
	}
}

// TestDecomposeImplicitResidual checks that a large low-rank residual,
// fitted through products with W and the trunk operator (residualMap),
// is the one the same randomized SVD finds on the dense W - S, and that
// the products are right: (W - S) X and (W - S)^T Y against the dense
// difference.
func TestDecomposeImplicitResidual(t *testing.T) {
	rng := newRand(10)
	w := randDense(rng, 200, 176)
	trunk := Spec{Family: FamilyMonarch, Blocks: 4, Rank: 5}
	res := Residual{Kind: "lowrank", Rank: 8}
	sum, err := Decompose(w, trunk, res, 3)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Project(w, trunk, 3)
	if err != nil {
		t.Fatal(err)
	}
	diff := mat.NewDense(200, 176, nil)
	diff.Sub(w, Dense(s))
	x, y := randDense(rng, 176, 7), randDense(rng, 200, 7)
	m := residualMap{w, s}
	var got, want mat.Dense
	got.ReuseAs(200, 7)
	m.mul(&got, x)
	want.Mul(diff, x)
	if d := relDiff(got.RawMatrix().Data, want.RawMatrix().Data); d > 1e-13 {
		t.Errorf("(W - S) X through the operator: rel diff %g", d)
	}
	got.Reset()
	got.ReuseAs(176, 7)
	m.mulT(&got, y)
	want.Reset()
	want.Mul(diff.T(), y)
	if d := relDiff(got.RawMatrix().Data, want.RawMatrix().Data); d > 1e-13 {
		t.Errorf("(W - S)^T Y through the operator: rel diff %g", d)
	}
	explicit, err := Project(diff, Spec{Family: FamilyLowRank, Rank: 8}, 3^0x9e3779b97f4a7c15)
	if err != nil {
		t.Fatal(err)
	}
	if d := relDiff(Dense(sum.Correction()).RawMatrix().Data, Dense(explicit).RawMatrix().Data); d > 1e-9 {
		t.Errorf("implicit residual vs the dense W - S's: rel diff %g", d)
	}
}

func TestProjectRejects(t *testing.T) {
	nan := mat.NewDense(2, 2, []float64{1, math.NaN(), 0, 1})
	tests := []struct {
		name string
		w    *mat.Dense
		spec Spec
		want error
	}{
		{"unknown family", mat.NewDense(2, 2, nil), Spec{Family: "fourier"}, ErrSpec},
		{"rank too big", mat.NewDense(3, 2, nil), Spec{Family: FamilyLowRank, Rank: 3}, ErrSpec},
		{"rank zero", mat.NewDense(3, 2, nil), Spec{Family: FamilyLowRank}, ErrSpec},
		{"nnz too big", mat.NewDense(2, 2, nil), Spec{Family: FamilySparse, NNZ: 5}, ErrSpec},
		{"nan", nan, Spec{Family: FamilyLowRank, Rank: 1}, ErrNotFinite},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Project(tt.w, tt.spec, 0)
			if !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestWorkspaceReuseDoesNotAllocate(t *testing.T) {
	rng := newRand(3)
	op := randomMember(t, Spec{Family: FamilyLowRank, Out: 32, In: 24, Rank: 4}, rng)
	sum := NewSum(op, randomMember(t, Spec{Family: FamilyLowRank, Out: 32, In: 24, Rank: 2}, rng))
	x := randSlice(rng, 8*24)
	y := make([]float64, 8*32)
	ws := NewWorkspace[float64]()
	sum.Apply(y, x, 8, ws)
	if a := testing.AllocsPerRun(10, func() { sum.Apply(y, x, 8, ws) }); a != 0 {
		t.Errorf("Apply with a warm workspace: %v allocations per run", a)
	}
}
