package compute

import (
	"errors"
	"math"
	"slices"
	"sync"
	"testing"

	"gonum.org/v1/gonum/mat"
)

func TestKroneckerOperator(t *testing.T) {
	tests := []struct {
		name string
		spec Spec
	}{
		{"square default r=2", Spec{Out: 16, In: 16, Rank: 2}},
		{"rect 3x4 factors r=3", Spec{Out: 12, In: 20, Rank: 3, FactorShape: [2]int{3, 4}}},
		{"rect default r=2", Spec{Out: 10, In: 21, Rank: 2}},
		{"tall default r=2", Spec{Out: 24, In: 18, Rank: 2}},
		{"padded r=2", Spec{Out: 10, In: 14, Rank: 2, FactorShape: [2]int{3, 4}}},
		{"padded wide r=1", Spec{Out: 5, In: 13, Rank: 1, FactorShape: [2]int{2, 3}}},
		{"r=1 square", Spec{Out: 9, In: 12, Rank: 1}},
		{"r=1 rect factors", Spec{Out: 6, In: 15, Rank: 1, FactorShape: [2]int{2, 5}}},
		{"prime default", Spec{Out: 7, In: 5, Rank: 1}},
		{"1-row factor", Spec{Out: 8, In: 6, Rank: 2, FactorShape: [2]int{1, 3}}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.spec.Family = FamilyKronecker
			rng := newRand(uint64(300 + i))
			checkOperator(t, randomMember(t, tt.spec, rng), rng)
		})
	}
}

// Padded specs are not in this table: a padded member is the corner of a
// Kronecker sum whose padding rows and columns are not zero, so the
// projection of the zero-padded corner is a different (nearer-to-zero)
// sum.
func TestKroneckerRecovery(t *testing.T) {
	tests := []struct {
		name string
		spec Spec
	}{
		{"square r=1", Spec{Out: 16, In: 16, Rank: 1}},
		{"square r=2", Spec{Out: 16, In: 16, Rank: 2}},
		{"square r=3", Spec{Out: 36, In: 36, Rank: 3}},
		{"rect 3x4 r=1", Spec{Out: 12, In: 20, Rank: 1, FactorShape: [2]int{3, 4}}},
		{"rect 3x4 r=2", Spec{Out: 12, In: 20, Rank: 2, FactorShape: [2]int{3, 4}}},
		{"rect 3x4 r=3", Spec{Out: 12, In: 20, Rank: 3, FactorShape: [2]int{3, 4}}},
		{"rect default r=2", Spec{Out: 12, In: 20, Rank: 2}},
		{"tall default r=3", Spec{Out: 24, In: 18, Rank: 3}},
		// R is 256 x 256: the randomized SVD path.
		{"randomized r=3", Spec{Out: 256, In: 256, Rank: 3}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.spec.Family = FamilyKronecker
			checkRecovery(t, tt.spec, newRand(uint64(400+i)))
		})
	}
}

// rearrangeForTest builds the Van Loan-Pitsianis matrix entry by entry:
// R[a n1 + c, b n2 + d] = W[a m2 + b, c n2 + d].
func rearrangeForTest(w *mat.Dense, m1, n1, m2, n2 int) *mat.Dense {
	r := mat.NewDense(m1*n1, m2*n2, nil)
	for a := range m1 {
		for b := range m2 {
			for c := range n1 {
				for d := range n2 {
					r.Set(a*n1+c, b*n2+d, w.At(a*m2+b, c*n2+d))
				}
			}
		}
	}
	return r
}

// The projection is the Frobenius optimum: its relative error is the
// Eckart-Young tail of the rearranged matrix (the rearrangement is an
// isometry), and perturbing the factors never lowers it.
func TestKroneckerOptimality(t *testing.T) {
	tests := []struct {
		name           string
		out, in, r     int
		factor         [2]int
		m1, n1, m2, n2 int
	}{
		{"12x20 3x4 r=2", 12, 20, 2, [2]int{3, 4}, 3, 4, 4, 5},
		{"16x16 default r=1", 16, 16, 1, [2]int{}, 4, 4, 4, 4},
		{"18x12 default r=3", 18, 12, 3, [2]int{}, 3, 3, 6, 4},
		{"8x30 2x5 r=4", 8, 30, 4, [2]int{2, 5}, 2, 5, 4, 6},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rng := newRand(uint64(500 + i))
			w := randDense(rng, tt.out, tt.in)
			spec := Spec{Family: FamilyKronecker, Rank: tt.r, FactorShape: tt.factor}
			op, err := Project(w, spec, 1)
			if err != nil {
				t.Fatal(err)
			}
			got := RelativeError(w, Dense(op))
			want := tailError(SingularValuesOf(rearrangeForTest(w, tt.m1, tt.n1, tt.m2, tt.n2), nil), tt.r)
			if math.Abs(got-want) > 1e-12 {
				t.Errorf("error %.15g, rearranged tail %.15g", got, want)
			}
			for range 20 {
				p := Clone(op)
				for _, par := range p.Params() {
					for j := range par.Data {
						par.Data[j] += 1e-3 * rng.NormFloat64()
					}
				}
				if e := RelativeError(w, Dense(p)); e < got-1e-14 {
					t.Errorf("perturbed error %.15g below optimum %.15g", e, got)
				}
			}
		})
	}
}

func TestSquarestDivisor(t *testing.T) {
	tests := []struct{ n, want int }{
		{1, 1}, {2, 1}, {4, 2}, {7, 1}, {10, 2}, {12, 3}, {35, 5}, {36, 6},
		{64, 8}, {1000, 25}, {4096, 64}, {4095, 63}, {97, 1},
	}
	for _, tt := range tests {
		if got := squarestDivisor(tt.n); got != tt.want {
			t.Errorf("squarestDivisor(%d) = %d, want %d", tt.n, got, tt.want)
		}
		// Reference: brute force over all divisors, ties to the smaller.
		best := 1
		for d := 1; d <= tt.n; d++ {
			if tt.n%d == 0 && math.Abs(float64(d)-math.Sqrt(float64(tt.n))) < math.Abs(float64(best)-math.Sqrt(float64(tt.n))) {
				best = d
			}
		}
		if best != tt.want {
			t.Errorf("brute force for %d gives %d, table says %d", tt.n, best, tt.want)
		}
	}
}

// The resolved factor shape is recorded in the Spec, padding shows in the
// inner shape only, and the parameter count is r (m1 n1 + m2 n2).
func TestKroneckerSpecResolution(t *testing.T) {
	tests := []struct {
		name           string
		spec           Spec
		wantFactor     [2]int
		wantPadded     [2]int
		wantA, wantB   []int
		wantParameters int
	}{
		{"64 x 10", Spec{Out: 64, In: 10, Rank: 2}, [2]int{8, 2}, [2]int{64, 10}, []int{2, 8, 2}, []int{2, 8, 5}, 2 * (16 + 40)},
		{"7 x 12", Spec{Out: 7, In: 12, Rank: 1}, [2]int{1, 3}, [2]int{7, 12}, []int{1, 1, 3}, []int{1, 7, 4}, 3 + 28},
		{"one side given", Spec{Out: 12, In: 16, Rank: 1, FactorShape: [2]int{2, 0}}, [2]int{2, 4}, [2]int{12, 16}, []int{1, 2, 4}, []int{1, 6, 4}, 8 + 24},
		{"padded", Spec{Out: 10, In: 14, Rank: 3, FactorShape: [2]int{3, 4}}, [2]int{3, 4}, [2]int{12, 16}, []int{3, 3, 4}, []int{3, 4, 4}, 3 * (12 + 16)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.spec.Family = FamilyKronecker
			op, err := New[float64](tt.spec)
			if err != nil {
				t.Fatal(err)
			}
			s := op.Spec()
			if s.FactorShape != tt.wantFactor || s.Out != tt.spec.Out || s.In != tt.spec.In || s.Rank != tt.spec.Rank {
				t.Errorf("Spec() = %+v, want factor shape %v and shape %dx%d", s, tt.wantFactor, tt.spec.Out, tt.spec.In)
			}
			if out, in := op.Shape(); out != tt.spec.Out || in != tt.spec.In {
				t.Errorf("Shape() = %dx%d, want %dx%d", out, in, tt.spec.Out, tt.spec.In)
			}
			inner := op
			if p, ok := op.(*padded[float64]); ok {
				inner = p.Unpadded()
			}
			if po, pi := inner.Shape(); [2]int{po, pi} != tt.wantPadded {
				t.Errorf("inner shape %dx%d, want %v", po, pi, tt.wantPadded)
			}
			ps := op.Params()
			if !slices.Equal(ps[0].Shape, tt.wantA) || !slices.Equal(ps[1].Shape, tt.wantB) {
				t.Errorf("param shapes A %v B %v, want %v %v", ps[0].Shape, ps[1].Shape, tt.wantA, tt.wantB)
			}
			if got := NumParams(op); got != tt.wantParameters {
				t.Errorf("NumParams = %d, want %d", got, tt.wantParameters)
			}
			// Rebuilding from the resolved Spec gives the same layout.
			re, err := New[float64](s)
			if err != nil || re.Spec() != s {
				t.Errorf("New(%+v) = %+v, %v", s, re.Spec(), err)
			}
		})
	}
}

func TestKroneckerBadSpecs(t *testing.T) {
	tests := []struct {
		name string
		spec Spec
	}{
		{"rank zero", Spec{Out: 16, In: 16}},
		{"rank negative", Spec{Out: 16, In: 16, Rank: -1}},
		{"rank above factor size", Spec{Out: 16, In: 16, Rank: 17}},
		{"rank above 1x1 factor", Spec{Out: 7, In: 5, Rank: 2}},
		{"rank above small B", Spec{Out: 12, In: 20, Rank: 3, FactorShape: [2]int{12, 10}}},
		{"negative factor", Spec{Out: 12, In: 20, Rank: 1, FactorShape: [2]int{-3, 4}}},
		{"factor above out", Spec{Out: 12, In: 20, Rank: 1, FactorShape: [2]int{13, 4}}},
		{"factor above in", Spec{Out: 12, In: 20, Rank: 1, FactorShape: [2]int{3, 21}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.spec.Family = FamilyKronecker
			if _, err := New[float32](tt.spec); !errors.Is(err, ErrSpec) {
				t.Errorf("New: err = %v, want ErrSpec", err)
			}
			w := mat.NewDense(tt.spec.Out, tt.spec.In, nil)
			if _, err := Project(w, tt.spec, 0); !errors.Is(err, ErrSpec) {
				t.Errorf("Project: err = %v, want ErrSpec", err)
			}
		})
	}
}

// For r = 1 the singular values are the products sigma_p(A) sigma_q(B),
// computed from the structure without materialising W.
func TestKroneckerSingularValuesAreProducts(t *testing.T) {
	// A = diag(3, 1) (2 x 3), B = diag(2, 0.5) (2 x 2): A (x) B is 4 x 6
	// with singular values {6, 1.5, 2, 0.5}, sorted.
	k := NewKronecker(2, 3, 2, 2, 1,
		[]float64{3, 0, 0, 0, 1, 0},
		[]float64{2, 0, 0, 0.5})
	if got, want := k.SingularValues(nil), []float64{6, 2, 1.5, 0.5}; relDiff(got, want) > 1e-15 {
		t.Errorf("SingularValues = %v, want %v", got, want)
	}
	// A 3 x 1 factor contributes one value; the rest of min(out, in) are 0.
	k = NewKronecker(3, 1, 2, 3, 1, []float64{1, 2, 2}, []float64{1, 0, 0, 0, 2, 0})
	if got, want := k.SingularValues(make([]float64, 0, 8)), []float64{6, 3, 0}; relDiff(got, want) > 1e-15 {
		t.Errorf("SingularValues = %v, want %v", got, want)
	}

	rng := newRand(11)
	for _, spec := range []Spec{
		{Family: FamilyKronecker, Out: 12, In: 20, Rank: 1, FactorShape: [2]int{3, 4}},
		{Family: FamilyKronecker, Out: 30, In: 8, Rank: 1},
	} {
		op := randomMember(t, spec, rng)
		if _, ok := op.(*Kronecker[float64]); !ok {
			t.Fatalf("%+v: got %T, want the unpadded *Kronecker", spec, op)
		}
		got := op.SingularValues(nil)
		want := SingularValuesOf(Dense(op), nil)
		if d := relDiff(got, want); d > tolSV {
			t.Errorf("%+v: structural singular values differ from dense by %g", spec, d)
		}
	}
}

// assertNoAllocs checks that Apply, ApplyT and Backward on a warm
// Workspace do not allocate.
func assertNoAllocs(t *testing.T, op Operator[float64], n int) {
	t.Helper()
	out, in := op.Shape()
	rng := newRand(17)
	x, dy := randSlice(rng, n*in), randSlice(rng, n*out)
	y, dx := make([]float64, n*out), make([]float64, n*in)
	grads := make([][]float64, len(op.Params()))
	for i, p := range op.Params() {
		grads[i] = make([]float64, len(p.Data))
	}
	ws := NewWorkspace[float64]()
	run := func() {
		op.Apply(y, x, n, ws)
		op.ApplyT(dx, dy, n, ws)
		op.Backward(dx, x, dy, n, grads, ws)
		op.Backward(nil, x, dy, n, grads[:1], ws)
	}
	run()
	if a := testing.AllocsPerRun(10, run); a != 0 {
		t.Errorf("%+v: %v allocations per run with a warm workspace", op.Spec(), a)
	}
}

func TestKroneckerWorkspaceReuseDoesNotAllocate(t *testing.T) {
	rng := newRand(18)
	for _, spec := range []Spec{
		{Family: FamilyKronecker, Out: 12, In: 20, Rank: 2, FactorShape: [2]int{3, 4}},
		{Family: FamilyKronecker, Out: 16, In: 16, Rank: 1},
		{Family: FamilyKronecker, Out: 10, In: 14, Rank: 3, FactorShape: [2]int{3, 4}},
	} {
		assertNoAllocs(t, randomMember(t, spec, rng), 8)
	}
}

// Apply keeps no state in the operator: goroutines with their own
// workspaces get identical results (run with -race).
func TestKroneckerOrthogonalConcurrentApply(t *testing.T) {
	rng := newRand(20)
	for _, spec := range []Spec{
		{Family: FamilyKronecker, Out: 10, In: 14, Rank: 2, FactorShape: [2]int{3, 4}},
		{Family: FamilyOrthogonal, Out: 9, In: 6},
	} {
		op := randomMember(t, spec, rng)
		out, in := op.Shape()
		const n = 4
		x := randSlice(rng, n*in)
		want := make([]float64, n*out)
		op.Apply(want, x, n, nil)
		var wg sync.WaitGroup
		results := make([][]float64, 4)
		for g := range results {
			wg.Go(func() {
				ws := NewWorkspace[float64]()
				y := make([]float64, n*out)
				for range 50 {
					op.Apply(y, x, n, ws)
				}
				results[g] = y
			})
		}
		wg.Wait()
		for g, y := range results {
			if !slices.Equal(y, want) {
				t.Errorf("%s: goroutine %d got a different result", spec.Family, g)
			}
		}
	}
}
