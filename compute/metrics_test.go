package compute

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"gonum.org/v1/gonum/mat"
)

// randomOrthogonal returns a k x k orthogonal matrix (Householder QR of a
// Gaussian matrix).
func randomOrthogonal(rng *rand.Rand, k int) *mat.Dense {
	a := mat.NewDense(k, k, nil)
	for i := range k {
		for j := range k {
			a.Set(i, j, rng.NormFloat64())
		}
	}
	orthonormalize(a)
	return a
}

// linearNet returns a network of dense linear layers with the given
// weights (out x in each) and no activation between them; with bias, each
// layer gets a random bias (which no Jacobian or difference sees).
func linearNet(t *testing.T, task Task, bias bool, ws ...*mat.Dense) *Network[float64] {
	t.Helper()
	_, in := ws[0].Dims()
	spec := NetworkSpec{Task: task, Inputs: in}
	for _, w := range ws {
		out, in := w.Dims()
		spec.Layers = append(spec.Layers, linearLayer(in, out, bias, nil))
	}
	net, err := NewNetwork[float64](spec)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(9, 9))
	for i, w := range ws {
		p := net.Operator(i).Params()[0].Data
		copy(p, w.RawMatrix().Data)
	}
	for _, p := range net.Params() {
		if p.Role == RoleBias {
			for j := range p.Data {
				p.Data[j] = rng.NormFloat64()
			}
		}
	}
	return net
}

func randRows(rng *rand.Rand, n, d int) []float64 {
	x := make([]float64, n*d)
	for i := range x {
		x[i] = rng.NormFloat64()
	}
	return x
}

// TestJacobianLinearKnownSpectrum builds W2 W1 = U2 diag(a b) V1^T from
// W1 = U1 diag(a) V1^T and W2 = U2 diag(b) U1^T, so the Jacobian of the
// linear network has the singular values a_k b_k at every input.
func TestJacobianLinearKnownSpectrum(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	a := []float64{4, 3, 2, 1, 0.5}
	b := []float64{1, 2, 1, 3, 2}
	u1, u2, v1 := randomOrthogonal(rng, 5), randomOrthogonal(rng, 5), randomOrthogonal(rng, 5)
	var w1, w2 mat.Dense
	w1.Product(u1, mat.NewDiagDense(5, a), v1.T())
	w2.Product(u2, mat.NewDiagDense(5, b), u1.T())
	net := linearNet(t, TaskClassification, true, &w1, &w2)
	// Singular values 4, 6, 2, 3, 1: condition 6; the std of their logs
	// is computed here from the definition.
	sv := []float64{4, 6, 2, 3, 1}
	var mean float64
	for _, s := range sv {
		mean += math.Log(s) / 5
	}
	var q float64
	for _, s := range sv {
		q += (math.Log(s) - mean) * (math.Log(s) - mean) / 5
	}
	wantStd := math.Sqrt(q)
	n := 7
	x := randRows(rng, n, 5)
	st := JacobianConditions(net, x, n, []JacobianView{{}}, NewWorkspace[float64]())[0]
	for i := range n {
		if math.Abs(st.Condition[i]-6) > 1e-10 {
			t.Errorf("row %d: condition %.15g, want 6", i, st.Condition[i])
		}
		if math.Abs(st.LogSigmaStd[i]-wantStd) > 1e-10 {
			t.Errorf("row %d: log sigma std %.15g, want %.15g", i, st.LogSigmaStd[i], wantStd)
		}
	}
}

// TestJacobianLinearProduct compares, for a rectangular linear network and
// a per-feature input scale, the condition with the SVD of the product
// W2 W1 diag(scale) formed directly.
func TestJacobianLinearProduct(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	w1 := mat.NewDense(9, 7, randRows(rng, 9, 7))
	w2 := mat.NewDense(4, 9, randRows(rng, 4, 9))
	scale := make([]float64, 7)
	for i := range scale {
		scale[i] = 0.5 + rng.Float64()
	}
	net := linearNet(t, TaskClassification, true, w1, w2)
	var j mat.Dense
	j.Product(w2, w1, mat.NewDiagDense(7, scale))
	var svd mat.SVD
	if !svd.Factorize(&j, mat.SVDNone) {
		t.Fatal("SVD failed")
	}
	sv := svd.Values(nil)
	want := sv[0] / sv[len(sv)-1]
	n := 20 // more than one group of Jacobians
	x := randRows(rng, n, 7)
	st := JacobianConditions(net, x, n, []JacobianView{{ColumnScale: scale}}, nil)[0]
	for i := range n {
		if math.Abs(st.Condition[i]-want)/want > 1e-10 {
			t.Errorf("row %d: condition %.15g, want %.15g", i, st.Condition[i], want)
		}
	}
}

// TestOrthogonalNetwork: a product of orthogonal layers (with biases) is
// an isometry up to a shift, so its Jacobian has condition 1 and every
// perturbation moves the outputs by exactly its own norm: sensitivity 1.
func TestOrthogonalNetwork(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	net := linearNet(t, TaskClassification, true, randomOrthogonal(rng, 6), randomOrthogonal(rng, 6))
	n := 40
	x := randRows(rng, n, 6)
	st := JacobianConditions(net, x, n, []JacobianView{{}}, nil)[0]
	for i, c := range st.Condition {
		if math.Abs(c-1) > 1e-12 || st.LogSigmaStd[i] > 1e-12 {
			t.Fatalf("row %d: condition %.15g, log sigma std %g; want 1 and 0", i, c, st.LogSigmaStd[i])
		}
	}
	sigma := []float64{1, 2, 0.5, 1, 3, 1} // any per-feature scale
	for _, level := range []float64{0.01, 0.1, 1} {
		p := PerturbationSensitivity(net, x, n, sigma, nil, level, 7, nil)
		for i, r := range p.Ratio {
			if math.Abs(r-1) > 1e-9 {
				t.Fatalf("level %g row %d: sensitivity %.15g, want 1", level, i, r)
			}
		}
	}
	// The orthogonal family (s Q) as a structured layer: condition 1 and
	// sensitivity s.
	q := randomOrthogonal(rng, 6)
	onet := linearNet(t, TaskRegression, false, q)
	if err := onet.SetOperator(0, NewOrthogonal(6, 6, q.RawMatrix().Data, 2.5)); err != nil {
		t.Fatal(err)
	}
	if c := JacobianConditions(onet, x, 3, []JacobianView{{}}, nil)[0].Condition; math.Abs(c[0]-1) > 1e-12 {
		t.Errorf("orthogonal family: condition %v, want 1", c[0])
	}
	if r := PerturbationSensitivity(onet, x, 3, sigma, nil, 0.05, 1, nil).Ratio; math.Abs(r[0]-2.5) > 1e-9 {
		t.Errorf("orthogonal family: sensitivity %v, want 2.5", r[0])
	}
}

// TestPerturbationNoise checks the noise itself through the identity
// network f(x) = x: f(x+d) - f(x) = d scale, so the ratio is
// ||d scale|| / ||d||, and the same seed gives the same d.
func TestPerturbationNoise(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	id := mat.NewDense(3, 3, []float64{1, 0, 0, 0, 1, 0, 0, 0, 1})
	net := linearNet(t, TaskClassification, false, id)
	n := 500
	x := randRows(rng, n, 3)
	sigma := []float64{1, 0, 2} // feature 1 is constant: no noise there
	p := PerturbationSensitivity(net, x, n, sigma, nil, 0.1, 11, nil)
	for i, r := range p.Ratio {
		if math.Abs(r-1) > 1e-12 {
			t.Fatalf("row %d: identity sensitivity %v, want 1", i, r)
		}
		if want := math.Sqrt(x[3*i]*x[3*i] + x[3*i+1]*x[3*i+1] + x[3*i+2]*x[3*i+2]); math.Abs(p.Output[i]-want) > 1e-12 {
			t.Fatalf("row %d: output norm %v, want %v", i, p.Output[i], want)
		}
	}
	// With scale (1, 1, 3) the network sees d scale. Feature 0 has noise
	// 0.1 z0, feature 2 0.2 z2: the ratio is sqrt(z0^2 + 36 z2^2) /
	// sqrt(z0^2 + 4 z2^2), which is in [1, 3].
	ps := PerturbationSensitivity(net, x, n, sigma, []float64{1, 1, 3}, 0.1, 11, nil)
	var mean float64
	for i, r := range ps.Ratio {
		if r < 1-1e-12 || r > 3+1e-12 {
			t.Fatalf("row %d: scaled sensitivity %v outside [1, 3]", i, r)
		}
		mean += r / float64(n)
	}
	if mean < 1.8 || mean > 2.8 {
		t.Errorf("mean scaled sensitivity %v, want about 2.4", mean)
	}
	// Flips: two classes, x = (1, 0): the prediction flips when the
	// noise on feature 1 exceeds 1, i.e. P(10 z > 1) = P(z > 0.1) = 0.4602.
	id2 := mat.NewDense(2, 2, []float64{1, 0, 0, 1})
	net2 := linearNet(t, TaskClassification, false, id2)
	m := 4000
	x2 := make([]float64, 2*m)
	for i := range m {
		x2[2*i] = 1
	}
	pf := PerturbationSensitivity(net2, x2, m, []float64{0, 1}, nil, 10, 3, nil)
	if rate := Mean(pf.Flipped); math.Abs(rate-0.4602) > 0.03 {
		t.Errorf("flip rate %v, want about 0.4602", rate)
	}
	// Same seed, same noise; another seed, other noise.
	a := PerturbationSensitivity(net2, x2, 100, []float64{0, 1}, nil, 10, 3, nil)
	b := PerturbationSensitivity(net2, x2, 100, []float64{0, 1}, nil, 10, 4, nil)
	same := true
	for i := range a.Flipped {
		same = same && a.Flipped[i] == pf.Flipped[i]
	}
	if !same {
		t.Error("the same seed drew different noise")
	}
	diff := false
	for i := range a.Flipped {
		diff = diff || a.Flipped[i] != b.Flipped[i]
	}
	if !diff {
		t.Error("different seeds drew the same noise")
	}
}

// TestLayerRobustnessScaling: for a linear regressor y = W x fitted
// exactly (targets W x) and the inputs x = e_1 .. e_in, the perturbed
// model's MSE is sum_i ||E e_i||^2 / (n out) = ||E||_F^2 / (in out) =
// eps^2 ||W||_F^2 / (in out): the drop of the score (minus the MSE) is
// known exactly for every draw.
func TestLayerRobustnessScaling(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 2))
	in, out := 6, 3
	w := mat.NewDense(out, in, randRows(rng, out, in))
	net := linearNet(t, TaskRegression, false, w)
	// A regression net has one output per target row in a dataset, but
	// Network allows several: the MSE averages over them.
	x := make([]float64, in*in)
	for i := range in {
		x[i*in+i] = 1
	}
	target := make([]float64, in*out)
	for i := range in {
		for k := range out {
			target[i*out+k] = w.At(k, i)
		}
	}
	eps := 0.1
	drops, err := LayerRobustness(net, x, target, nil, in, eps, 5, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	wn := mat.Norm(w, 2)
	want := eps * eps * wn * wn / float64(in*out)
	if len(drops) != 1 || len(drops[0]) != in {
		t.Fatalf("drops %v, want 1 layer x %d examples", drops, in)
	}
	// Per example the drop is ||E e_i||^2 / out, which varies; their mean
	// is the known drop of the score, draw by draw and so on average.
	if got := Mean(drops[0]); math.Abs(got-want) > 1e-12 {
		t.Errorf("mean drop %.15g, want %.15g", got, want)
	}
	// eps 0 changes nothing; the network itself is never modified.
	before := append([]float64(nil), net.Params()[0].Data...)
	zero, _ := LayerRobustness(net, x, target, nil, in, 0, 2, 1, nil)
	for _, d := range zero[0] {
		if d != 0 {
			t.Errorf("eps 0: drops %v, want 0", zero[0])
			break
		}
	}
	if !slices.Equal(before, net.Params()[0].Data) || net.Operator(0).Spec().Family != FamilyDense {
		t.Error("LayerRobustness modified the network")
	}
}

// TestLayerRobustnessResolution: a classifier's per-example drops are
// multiples of 1/draws in [-1, 1], so a layer's mean drop is a multiple
// of 1/(n draws), the resolution validate reports.
func TestLayerRobustnessResolution(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 8))
	net := linearNet(t, TaskClassification, true, mat.NewDense(4, 6, randRows(rng, 4, 6)), mat.NewDense(3, 4, randRows(rng, 3, 4)))
	n, draws := 50, 3
	x := randRows(rng, n, 6)
	y := make([]float64, n)
	for i := range y {
		y[i] = float64(i % 3)
	}
	drops, err := LayerRobustness(net, x, y, nil, n, 0.8, draws, 4, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, row := range drops {
		moved := 0
		for e, d := range row {
			c := d * float64(draws)
			if math.Abs(c-math.Round(c)) > 1e-12 || d < -1 || d > 1 {
				t.Fatalf("layer %d example %d: drop %v is not a multiple of 1/%d in [-1, 1]", k, e, d, draws)
			}
			if d != 0 {
				moved++
			}
		}
		if moved == 0 {
			t.Errorf("layer %d: eps 0.8 moved no prediction; the test checks nothing", k)
		}
	}
}

// TestResidualShares compares the shares of a Sum layer with ||R u|| and
// ||S u|| computed from the dense S and R, on the layer's actual input
// (after a first dense layer and a ReLU).
func TestResidualShares(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	spec := NetworkSpec{Task: TaskClassification, Inputs: 5, Layers: []LayerSpec{
		linearLayer(5, 8, true, nil), actLayer("relu"),
		linearLayer(8, 4, true, sumOf(Spec{Family: FamilyBlockDiag, Blocks: 2}, Spec{Family: FamilyLowRank, Rank: 2})),
	}}
	net := netRandomized(t, spec, rng)
	n := 30
	x := randRows(rng, n, 5)
	shares := ResidualShares(net, x, n, nil)
	if len(shares) != 2 || shares[0] != nil || len(shares[1]) != n {
		t.Fatalf("shares: %d layers, first %v, second %d rows", len(shares), shares[0], len(shares[1]))
	}
	sum := net.Operator(2).(*Sum[float64])
	s, r := Dense(sum.Trunk()), Dense(sum.Correction())
	w1 := Dense(net.Operator(0))
	b1 := net.Params()[1].Data
	for i := range n {
		u := mat.NewVecDense(5, x[i*5:(i+1)*5])
		var h mat.VecDense
		h.MulVec(w1, u)
		for j := range 8 {
			h.SetVec(j, max(0, h.AtVec(j)+b1[j]))
		}
		var su, ru mat.VecDense
		su.MulVec(s, &h)
		ru.MulVec(r, &h)
		want := mat.Norm(&ru, 2) / (mat.Norm(&su, 2) + mat.Norm(&ru, 2))
		if math.Abs(shares[1][i]-want) > 1e-12 {
			t.Errorf("row %d: share %.15g, want %.15g", i, shares[1][i], want)
		}
	}
}

func TestGradNormBatches(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 8))
	spec := NetworkSpec{Task: TaskClassification, Inputs: 4, Layers: []LayerSpec{
		linearLayer(4, 6, true, nil), actLayer("tanh"), linearLayer(6, 3, true, nil),
	}}
	net := netRandomized(t, spec, rng)
	tests := []struct {
		n, batch  int
		wantSizes []int
	}{
		{450, 64, []int{65, 65, 64, 64, 64, 64, 64}},
		{10, 64, []int{10}},
		{100, 30, []int{34, 33, 33}},
		{3, 1, []int{1, 1, 1}},
	}
	for _, tt := range tests {
		x := randRows(rng, tt.n, 4)
		y := netTargets(net, tt.n, rng)
		norms, sizes, err := GradNormBatches(net, x, y, tt.n, tt.batch, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(sizes, tt.wantSizes) {
			t.Errorf("n %d batch %d: sizes %v, want %v", tt.n, tt.batch, sizes, tt.wantSizes)
			continue
		}
		lo := 0
		for b, size := range sizes {
			want, _ := net.EffectiveGradNorms(nil, x[lo*4:(lo+size)*4], y[lo:lo+size], size, nil)
			if !slices.Equal(norms[b], want) {
				t.Errorf("batch %d: norms %v, want %v", b, norms[b], want)
			}
			lo += size
		}
	}
	if _, _, err := GradNormBatches(net, make([]float64, 8), []float64{0, 7}, 2, 1, nil); err == nil {
		t.Error("bad target accepted")
	}
	for _, tc := range []struct {
		v    []float64
		want float64
	}{{[]float64{2, 4, 1}, 4}, {[]float64{3}, 1}, {[]float64{0, 1}, math.Inf(1)}} {
		if got := NormRatio(tc.v); got != tc.want {
			t.Errorf("NormRatio(%v) = %v, want %v", tc.v, got, tc.want)
		}
	}
}

func TestSpectralCondition(t *testing.T) {
	tests := []struct {
		sv         []float64
		rows, cols int
		want       float64
	}{
		{[]float64{4, 2, 1}, 3, 5, 4},
		{[]float64{3}, 1, 9, 1},
		{[]float64{1, 0}, 2, 2, math.Inf(1)},
		{[]float64{0}, 1, 3, math.Inf(1)},
		// 5 * 2^-52 = 1.1e-15: just above is a (huge) condition, at or
		// below is singular.
		{[]float64{1, 2e-15}, 2, 5, 5e14},
		{[]float64{1, 1e-15}, 2, 5, math.Inf(1)},
		{nil, 0, 0, math.NaN()},
	}
	for _, tt := range tests {
		got := SpectralCondition(tt.sv, tt.rows, tt.cols)
		if !(got == tt.want || (math.IsNaN(got) && math.IsNaN(tt.want)) || math.Abs(got-tt.want) <= 1e-12*tt.want) {
			t.Errorf("SpectralCondition(%v, %d, %d) = %v, want %v", tt.sv, tt.rows, tt.cols, got, tt.want)
		}
	}
	// A rank-deficient linear network: W2 W1 has rank 1 < 2 outputs.
	w1 := mat.NewDense(1, 3, []float64{1, 2, 3})
	w2 := mat.NewDense(2, 1, []float64{1, -1})
	net := linearNet(t, TaskClassification, false, w1, w2)
	st := JacobianConditions(net, []float64{1, 1, 1}, 1, []JacobianView{{}}, nil)[0]
	if !math.IsInf(st.Condition[0], 1) || !math.IsInf(st.LogSigmaStd[0], 1) {
		t.Errorf("rank-deficient Jacobian: condition %v, log sigma std %v, want +Inf", st.Condition[0], st.LogSigmaStd[0])
	}
}

func TestNetworkCost(t *testing.T) {
	spec := NetworkSpec{Task: TaskClassification, Inputs: 4, Layers: []LayerSpec{
		linearLayer(4, 6, true, nil), actLayer("relu"), normLayer(),
		linearLayer(6, 3, false, nil),
	}}
	net, err := NewNetwork[float64](spec)
	if err != nil {
		t.Fatal(err)
	}
	// 2*4*6 + 6 (bias) + 6 (relu) + 6*6 (norm) + 2*6*3 = 132.
	if got := NetworkFLOPs(net); got != 132 {
		t.Errorf("FLOPs %d, want 132", got)
	}
	// 24 + 6 + 6 + 6 + 18 = 60 stored values.
	if got := NetworkStoredValues(net); got != 60 {
		t.Errorf("stored values %d, want 60", got)
	}
	// A sparse correction stores its indices, frozen, which count as
	// stored but not as parameters.
	sp := NetworkSpec{Task: TaskClassification, Inputs: 4, Layers: []LayerSpec{
		linearLayer(4, 3, false, sumOf(Spec{Family: FamilyLowRank, Rank: 1}, Spec{Family: FamilySparse, NNZ: 2})),
	}}
	snet, err := NewNetwork[float64](sp)
	if err != nil {
		t.Fatal(err)
	}
	if stored, params := NetworkStoredValues(snet), snet.NumParams(); stored <= params {
		t.Errorf("sparse: stored %d, params %d: want the frozen indices counted as stored", stored, params)
	}
	if got := LinearLayers(net); !slices.Equal(got, []int{0, 3}) {
		t.Errorf("LinearLayers %v, want [0 3]", got)
	}
}

// TestCentreRows: Q^T W has the singular values of W with its row mean
// removed, ignores a vector added to every row, and is orthonormal:
// Q^T Q = I, so Q^T (I - 11^T/k) = Q^T.
func TestCentreRows(t *testing.T) {
	rng := rand.New(rand.NewPCG(6, 1))
	k, n := 5, 7
	w := randRows(rng, k, n)
	got := CentreRows(nil, w, k, n)
	// P W, P = I - 11^T/k, has the same nonzero singular values.
	pw := slices.Clone(w)
	for c := range n {
		var m float64
		for r := range k {
			m += w[r*n+c] / float64(k)
		}
		for r := range k {
			pw[r*n+c] -= m
		}
	}
	a := SingularValuesOf(mat.NewDense(k-1, n, got), nil)
	b := SingularValuesOf(mat.NewDense(k, n, pw), nil)
	for i := range a {
		if math.Abs(a[i]-b[i]) > 1e-12*b[0] {
			t.Errorf("singular value %d: %v, want %v", i, a[i], b[i])
		}
	}
	if b[k-1] > 1e-12*b[0] {
		t.Errorf("P W has no zero singular value: %v", b)
	}
	shifted := slices.Clone(w)
	for r := range k {
		for c := range n {
			shifted[r*n+c] += float64(c) - 3
		}
	}
	again := CentreRows(nil, shifted, k, n)
	for i := range got {
		if math.Abs(again[i]-got[i]) > 1e-12 {
			t.Fatalf("a vector added to every row changed entry %d: %v, want %v", i, again[i], got[i])
		}
	}
}

// TestJacobianCentred: the centred view of a linear classifier's
// Jacobian is the centred rows of W2 W1, and adding one vector u to
// every row of the last weight (each logit moves by the same u.h, no
// probability changes) leaves it unchanged to 1e-9, while the uncentred
// view moves.
func TestJacobianCentred(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 3))
	w1 := mat.NewDense(6, 5, randRows(rng, 6, 5))
	w2 := mat.NewDense(4, 6, randRows(rng, 4, 6))
	x := randRows(rng, 3, 5)
	views := []JacobianView{{Centre: true}, {}}
	before := JacobianConditions(linearNet(t, TaskClassification, true, w1, w2), x, 3, views, nil)
	var j mat.Dense
	j.Mul(w2, w1)
	sv := SingularValuesOf(mat.NewDense(3, 5, CentreRows(nil, j.RawMatrix().Data, 4, 5)), nil)
	if want := sv[0] / sv[2]; math.Abs(before[0].Condition[0]-want) > 1e-10*want {
		t.Errorf("centred condition %v, want %v from the centred product", before[0].Condition[0], want)
	}
	u := randRows(rng, 1, 6)
	w2u := mat.DenseCopyOf(w2)
	for r := range 4 {
		for c := range 6 {
			w2u.Set(r, c, w2u.At(r, c)+10*u[c])
		}
	}
	after := JacobianConditions(linearNet(t, TaskClassification, true, w1, w2u), x, 3, views, nil)
	for i := range 3 {
		if rel := math.Abs(after[0].Condition[i]-before[0].Condition[i]) / before[0].Condition[i]; rel > 1e-9 {
			t.Errorf("row %d: centred condition %v -> %v after the shift", i, before[0].Condition[i], after[0].Condition[i])
		}
		if math.Abs(after[0].LogSigmaStd[i]-before[0].LogSigmaStd[i]) > 1e-9 {
			t.Errorf("row %d: log sigma std %v -> %v after the shift", i, before[0].LogSigmaStd[i], after[0].LogSigmaStd[i])
		}
		if math.Abs(after[1].Condition[i]-before[1].Condition[i]) < 1e-3*before[1].Condition[i] {
			t.Errorf("row %d: the uncentred condition did not move (%v): the shift did nothing", i, before[1].Condition[i])
		}
	}
}
