package compute

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"gonum.org/v1/gonum/mat"
)

// This file holds the property checks every operator must pass. Family
// tests call checkOperator on random members of the family and
// checkRecovery on random in-family matrices.

// Tolerances (float64 unless stated).
const (
	tolExact    = 1e-12 // adjoint, apply vs materialise
	tolGrad     = 1e-6  // central finite differences
	tolSV       = 1e-9  // structural singular values vs dense SVD
	tolRecovery = 1e-10 // projection of an in-family matrix
	tolFloat32  = 1e-4  // float32 apply vs float64 apply
)

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 42)) }

func randSlice(rng *rand.Rand, n int) []float64 {
	s := make([]float64, n)
	for i := range s {
		s[i] = rng.NormFloat64()
	}
	return s
}

func randDense(rng *rand.Rand, m, n int) *mat.Dense { return mat.NewDense(m, n, randSlice(rng, m*n)) }

// randomMember returns an operator of spec's family with random
// parameters: the projection of a random matrix, with every trainable
// parameter then perturbed, so that it is a generic member of the family.
func randomMember(t *testing.T, spec Spec, rng *rand.Rand) Operator[float64] {
	t.Helper()
	op, err := Project(randDense(rng, spec.Out, spec.In), spec, rng.Uint64())
	if err != nil {
		t.Fatalf("Project(%+v): %v", spec, err)
	}
	for _, p := range op.Params() {
		if p.Frozen {
			continue
		}
		for i := range p.Data {
			p.Data[i] += 0.3 * rng.NormFloat64()
		}
	}
	return op
}

// relDiff returns max |a_i - b_i| / max(max |b_i|, tiny).
func relDiff(a, b []float64) float64 {
	var num, den float64
	for i := range a {
		num = max(num, math.Abs(a[i]-b[i]))
		den = max(den, math.Abs(b[i]))
	}
	if den == 0 {
		return num
	}
	return num / den
}

func identity(n int) []float64 {
	s := make([]float64, n*n)
	for i := range n {
		s[i*n+i] = 1
	}
	return s
}

func transpose(a []float64, m, n int) []float64 {
	t := make([]float64, m*n)
	for i := range m {
		for j := range n {
			t[j*m+i] = a[i*n+j]
		}
	}
	return t
}

// matmulT returns x (n x k) times b^T (b is m x k).
func matmulT(x []float64, n, k int, b []float64, m int) []float64 {
	y := make([]float64, n*m)
	for r := range n {
		for i := range m {
			var s float64
			for j := range k {
				s += x[r*k+j] * b[i*k+j]
			}
			y[r*m+i] = s
		}
	}
	return y
}

// checkOperator asserts the contract of Operator on op: materialise equals
// apply to the identity, apply equals the product with the materialised
// matrix, the adjoint identity, finite-difference parameter and input
// gradients, singular values, the float32 conversion and the rebuild from
// Spec.
func checkOperator(t *testing.T, op Operator[float64], rng *rand.Rand) {
	t.Helper()
	out, in := op.Shape()
	const n = 5
	ws := NewWorkspace[float64]()
	w := make([]float64, out*in)
	op.DenseTo(w)

	// Materialise equals apply to the identity, both ways.
	wt := make([]float64, in*out)
	op.Apply(wt, identity(in), in, ws)
	if d := relDiff(transpose(wt, in, out), w); d > tolExact {
		t.Errorf("Apply(I)^T vs DenseTo: rel diff %g > %g", d, tolExact)
	}
	wa := make([]float64, out*in)
	op.ApplyT(wa, identity(out), out, ws)
	if d := relDiff(wa, w); d > tolExact {
		t.Errorf("ApplyT(I) vs DenseTo: rel diff %g > %g", d, tolExact)
	}

	// Apply equals X W^T with W materialised.
	x := randSlice(rng, n*in)
	y := make([]float64, n*out)
	op.Apply(y, x, n, ws)
	if d := relDiff(y, matmulT(x, n, in, w, out)); d > tolExact {
		t.Errorf("Apply vs X W^T: rel diff %g > %g", d, tolExact)
	}

	// Adjoint: <W x, g> = <x, W^T g>.
	g := randSlice(rng, n*out)
	xt := make([]float64, n*in)
	op.ApplyT(xt, g, n, ws)
	lhs, rhs := dot(y, g), dot(x, xt)
	if d := math.Abs(lhs-rhs) / max(math.Abs(lhs), 1e-300); d > tolExact {
		t.Errorf("adjoint: <Wx,g> = %v, <x,W^T g> = %v, rel diff %g", lhs, rhs, d)
	}

	// Gradients of L = <Apply(x), g> against central differences.
	params := op.Params()
	grads := make([][]float64, len(params))
	for i, p := range params {
		grads[i] = make([]float64, len(p.Data))
	}
	dx := make([]float64, n*in)
	op.Backward(dx, x, g, n, grads, ws)
	if d := relDiff(dx, xt); d > tolExact {
		t.Errorf("Backward dx vs ApplyT(dy): rel diff %g", d)
	}
	loss := func() float64 {
		op.Apply(y, x, n, ws)
		return dot(y, g)
	}
	for i, p := range params {
		if p.Frozen {
			if slices.ContainsFunc(grads[i], func(v float64) bool { return v != 0 }) {
				t.Errorf("param %q is frozen but got a gradient", p.Name)
			}
			continue
		}
		var gmax float64
		for _, v := range grads[i] {
			gmax = max(gmax, math.Abs(v))
		}
		for _, j := range sampleIndices(rng, len(p.Data), 12) {
			orig := p.Data[j]
			h := 1e-6 * max(1, math.Abs(orig))
			p.Data[j] = orig + h
			lp := loss()
			p.Data[j] = orig - h
			lm := loss()
			p.Data[j] = orig
			fd := (lp - lm) / (2 * h)
			if d := math.Abs(fd-grads[i][j]) / max(gmax, 1e-12); d > tolGrad {
				t.Errorf("param %q[%d]: backward %v, finite difference %v (rel %g > %g)", p.Name, j, grads[i][j], fd, d, tolGrad)
			}
		}
	}

	// Backward accumulates: a second call doubles the gradients.
	before := slices.Clone(grads)
	for i := range before {
		before[i] = slices.Clone(grads[i])
	}
	op.Backward(nil, x, g, n, grads, ws)
	for i := range grads {
		for j := range grads[i] {
			if want := 2 * before[i][j]; math.Abs(grads[i][j]-want) > 1e-12*max(1, math.Abs(want)) {
				t.Fatalf("param %q[%d]: second Backward gave %v, want accumulated %v", params[i].Name, j, grads[i][j], want)
			}
		}
	}

	// Singular values.
	got := op.SingularValues(nil)
	want := SingularValuesOf(mat.NewDense(out, in, w), nil)
	if len(got) != len(want) {
		t.Fatalf("SingularValues: %d values, want %d", len(got), len(want))
	}
	if d := relDiff(got, want); d > tolSV {
		t.Errorf("SingularValues vs dense SVD: rel diff %g > %g\n got %v\nwant %v", d, tolSV, got, want)
	}

	// Rebuild from Spec and Params.
	re, err := New[float64](op.Spec())
	if err != nil {
		t.Fatalf("New(Spec()): %v", err)
	}
	vals := make([][]float64, len(params))
	for i, p := range params {
		vals[i] = p.Data
	}
	if err := SetParams(re, vals); err != nil {
		t.Fatal(err)
	}
	w2 := make([]float64, out*in)
	re.DenseTo(w2)
	if !slices.Equal(w, w2) {
		t.Errorf("rebuilt from Spec %+v: different matrix", op.Spec())
	}

	// float32 apply agrees with float64.
	op32 := Convert[float32](op)
	x32 := make([]float32, len(x))
	for i, v := range x {
		x32[i] = float32(v)
	}
	y32 := make([]float32, n*out)
	op32.Apply(y32, x32, n, NewWorkspace[float32]())
	y64 := make([]float64, n*out)
	for i, v := range y32 {
		y64[i] = float64(v)
	}
	op.Apply(y, x, n, ws)
	if d := relDiff(y64, y); d > tolFloat32 {
		t.Errorf("float32 Apply vs float64: rel diff %g > %g", d, tolFloat32)
	}
	// float32 Backward agrees with float64 too.
	g32 := make([]float32, len(g))
	for i, v := range g {
		g32[i] = float32(v)
	}
	grads32 := make([][]float32, len(params))
	for i, p := range params {
		grads32[i] = make([]float32, len(p.Data))
		clear(grads[i])
	}
	dx32 := make([]float32, n*in)
	op32.Backward(dx32, x32, g32, n, grads32, NewWorkspace[float32]())
	op.Backward(dx, x, g, n, grads, ws)
	if d := relDiff(widen(dx32), dx); d > tolFloat32 {
		t.Errorf("float32 Backward dx vs float64: rel diff %g > %g", d, tolFloat32)
	}
	for i := range grads {
		if d := relDiff(widen(grads32[i]), grads[i]); d > tolFloat32 {
			t.Errorf("float32 Backward grad %q vs float64: rel diff %g > %g", params[i].Name, d, tolFloat32)
		}
	}
	if NumParams(op) <= 0 && op.Spec().Family != FamilyZero {
		t.Errorf("NumParams = %d", NumParams(op))
	}
	if op.FLOPs() < 0 {
		t.Errorf("FLOPs = %d", op.FLOPs())
	}
}

// sampleIndices returns up to k distinct indices in [0, n), always
// including the first and last.
func sampleIndices(rng *rand.Rand, n, k int) []int {
	if n <= k {
		idx := make([]int, n)
		for i := range idx {
			idx[i] = i
		}
		return idx
	}
	idx := []int{0, n - 1}
	for len(idx) < k {
		idx = append(idx, rng.IntN(n))
	}
	return idx
}

// checkRecovery asserts that projecting a random in-family matrix of spec
// recovers it to tolRecovery.
func checkRecovery(t *testing.T, spec Spec, rng *rand.Rand) {
	t.Helper()
	member := randomMember(t, spec, rng)
	w := Dense(member)
	op, err := Project(w, spec, 7)
	if err != nil {
		t.Fatalf("Project: %v", err)
	}
	if e := RelativeError(w, Dense(op)); e > tolRecovery {
		t.Errorf("%+v: in-family recovery error %g > %g", spec, e, tolRecovery)
	}
}

// tailError returns sqrt(sum_{i >= k} s_i^2) / ||s||: the Eckart-Young
// error of the best rank-k approximation, relative.
func tailError(s []float64, k int) float64 {
	var tail, all float64
	for i, v := range s {
		all += v * v
		if i >= k {
			tail += v * v
		}
	}
	return math.Sqrt(tail / all)
}

func widen(s []float32) []float64 {
	w := make([]float64, len(s))
	for i, v := range s {
		w[i] = float64(v)
	}
	return w
}
