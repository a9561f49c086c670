package compute

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// linearLayer, actLayer and normLayer build LayerSpecs tersely.
func linearLayer(in, out int, bias bool, structure *Spec) LayerSpec {
	return LayerSpec{Kind: KindLinear, In: in, Out: out, Bias: bias, Structure: structure}
}
func actLayer(name Activation) LayerSpec { return LayerSpec{Kind: KindActivation, Activation: name} }
func normLayer() LayerSpec               { return LayerSpec{Kind: KindLayerNorm} }

// sumOf is the structure S + R with a trunk of family s and a correction r.
func sumOf(s, r Spec) *Spec { return &Spec{Family: FamilySum, Trunk: &s, Correction: &r} }

// netRandomized returns a float64 network of spec initialised by
// InitStructured and then perturbed, every trainable parameter by
// N(0, 0.3^2) (layer norm gains around 1), so that no gradient vanishes
// by construction (zero-initialised corrections included).
func netRandomized(t *testing.T, spec NetworkSpec, rng *rand.Rand) *Network[float64] {
	t.Helper()
	net, err := NewNetwork[float64](spec)
	if err != nil {
		t.Fatalf("NewNetwork: %v", err)
	}
	if err := net.InitStructured(rng); err != nil {
		t.Fatalf("InitStructured: %v", err)
	}
	for _, p := range net.Params() {
		if p.Frozen {
			continue
		}
		for j := range p.Data {
			p.Data[j] += 0.3 * rng.NormFloat64()
		}
	}
	return net
}

// netTargets returns n valid random targets for net.
func netTargets(net *Network[float64], n int, rng *rand.Rand) []float64 {
	if net.Task() == TaskClassification {
		t := make([]float64, n)
		for i := range t {
			t[i] = float64(rng.IntN(net.Outputs()))
		}
		return t
	}
	return randSlice(rng, n*net.Outputs())
}

// allActivations is a dense MLP with every activation and a layer norm.
func allActivations(task Task, outputs int) NetworkSpec {
	return NetworkSpec{Task: task, Inputs: 6, Layers: []LayerSpec{
		linearLayer(6, 8, true, nil), actLayer(ActReLU),
		linearLayer(8, 8, true, nil), actLayer(ActGELU), normLayer(),
		linearLayer(8, 7, true, nil), actLayer(ActTanh),
		linearLayer(7, 7, false, nil), actLayer(ActSigmoid),
		linearLayer(7, 5, true, nil), actLayer(ActIdentity),
		linearLayer(5, outputs, true, nil),
	}}
}

// structuredNet has a structured first layer (trunk only), a decomposed
// second layer (trunk + lowrank or sparse correction), a layer norm and a
// dense head. Widths 6 -> 10 -> 10 -> outputs make the divisible families
// pad.
func structuredNet(task Task, outputs int, trunk Spec, correction Spec) NetworkSpec {
	t1 := trunk
	return NetworkSpec{Task: task, Inputs: 6, Layers: []LayerSpec{
		linearLayer(6, 10, true, &t1), actLayer(ActGELU), normLayer(),
		linearLayer(10, 10, true, sumOf(trunk, correction)), actLayer(ActTanh),
		linearLayer(10, outputs, true, nil),
	}}
}

// gradCheckFamilies are the trunk structures the whole-network gradient
// check covers.
var gradCheckFamilies = []Spec{
	{Family: FamilyLowRank, Rank: 3},
	{Family: FamilySparse, NNZ: 20},
	{Family: FamilyMonarch, Blocks: 4, Rank: 2},
	{Family: FamilyBlockDiag, Blocks: 2},
	{Family: FamilyBlockDiag, Blocks: 4},
	{Family: FamilyCirculant},
	{Family: FamilyToeplitz},
	{Family: FamilyKronecker, Rank: 2},
	{Family: FamilyOrthogonal},
	{Family: FamilyDense},
}

// checkNetworkGradients compares LossGrad + ResidualPenalty against
// central finite differences of Loss + penalty for sampled entries of
// every trainable parameter: |fd - g| <= tolGrad * max(max |g| of the
// tensor, 1e-3).
func checkNetworkGradients(t *testing.T, net *Network[float64], lambda float64, rng *rand.Rand) {
	t.Helper()
	const n = 7
	x := randSlice(rng, n*net.Inputs())
	target := netTargets(net, n, rng)
	ws := NewWorkspace[float64]()
	objective := func() float64 {
		l, err := net.Loss(x, target, n, ws)
		if err != nil {
			t.Fatal(err)
		}
		return l + net.ResidualPenalty(lambda, nil)
	}
	grads := net.NewGrads()
	loss, err := net.LossGrad(x, target, n, grads, ws)
	if err != nil {
		t.Fatal(err)
	}
	loss += net.ResidualPenalty(lambda, grads)
	if got := objective(); math.Abs(got-loss) > 1e-12*max(1, math.Abs(loss)) {
		t.Errorf("LossGrad loss %v, Loss %v", loss, got)
	}
	for i, p := range net.Params() {
		if p.Frozen {
			if grads[i] != nil {
				t.Errorf("%s: frozen parameter has a gradient buffer", p.Name)
			}
			continue
		}
		var gmax float64
		for _, v := range grads[i] {
			gmax = max(gmax, math.Abs(v))
		}
		for _, j := range sampleIndices(rng, len(p.Data), 8) {
			orig := p.Data[j]
			h := 1e-6 * max(1, math.Abs(orig))
			p.Data[j] = orig + h
			lp := objective()
			p.Data[j] = orig - h
			lm := objective()
			p.Data[j] = orig
			fd := (lp - lm) / (2 * h)
			if d := math.Abs(fd-grads[i][j]) / max(gmax, 1e-3); d > tolGrad {
				t.Errorf("%s[%d] (%s): gradient %v, finite difference %v (rel %g > %g)", p.Name, j, p.Role, grads[i][j], fd, d, tolGrad)
			}
		}
	}
}

func TestNetworkGradients(t *testing.T) {
	type tc struct {
		name   string
		spec   NetworkSpec
		lambda float64
	}
	tests := []tc{
		{"dense all activations classification", allActivations(TaskClassification, 4), 0},
		{"dense all activations regression", allActivations(TaskRegression, 3), 0},
	}
	for _, f := range gradCheckFamilies {
		name := f.Family
		if f.Blocks > 0 {
			name += fmt.Sprintf("_b%d", f.Blocks)
		}
		tests = append(tests,
			tc{name + "+lowrank classification", structuredNet(TaskClassification, 3, f, Spec{Family: FamilyLowRank, Rank: 2}), 0.05},
			tc{name + "+sparse regression", structuredNet(TaskRegression, 2, f, Spec{Family: FamilySparse, NNZ: 9}), 0.05})
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rng := newRand(uint64(1000 + i))
			net := netRandomized(t, tt.spec, rng)
			checkNetworkGradients(t, net, tt.lambda, rng)
		})
	}
}

func TestNetworkInputGradient(t *testing.T) {
	specs := []NetworkSpec{
		allActivations(TaskClassification, 4),
		structuredNet(TaskRegression, 3, Spec{Family: FamilyMonarch, Blocks: 4, Rank: 2}, Spec{Family: FamilyLowRank, Rank: 2}),
		structuredNet(TaskClassification, 3, Spec{Family: FamilyCirculant}, Spec{Family: FamilySparse, NNZ: 9}),
	}
	for si, spec := range specs {
		rng := newRand(uint64(77 + si))
		net := netRandomized(t, spec, rng)
		const n = 4
		in, out := net.Inputs(), net.Outputs()
		x := randSlice(rng, n*in)
		c := randSlice(rng, n*out)
		ws := NewWorkspace[float64]()
		dx := make([]float64, n*in)
		grads := net.NewGrads()
		net.Backprop(dx, x, c, n, grads, ws)
		y := make([]float64, n*out)
		f := func() float64 { net.Forward(y, x, n, ws); return dot(y, c) }
		var dmax float64
		for _, v := range dx {
			dmax = max(dmax, math.Abs(v))
		}
		for j := range x {
			orig := x[j]
			h := 1e-6 * max(1, math.Abs(orig))
			x[j] = orig + h
			fp := f()
			x[j] = orig - h
			fm := f()
			x[j] = orig
			fd := (fp - fm) / (2 * h)
			if d := math.Abs(fd-dx[j]) / dmax; d > tolGrad {
				t.Errorf("spec %d: dx[%d] = %v, finite difference %v (rel %g)", si, j, dx[j], fd, d)
			}
		}
		// Backprop's parameter gradients are those of <f(x), c>: one spot check
		// on the first parameter.
		p := net.Params()[0]
		orig := p.Data[0]
		p.Data[0] = orig + 1e-6
		fp := f()
		p.Data[0] = orig - 1e-6
		fm := f()
		p.Data[0] = orig
		if fd := (fp - fm) / 2e-6; math.Abs(fd-grads[0][0]) > 1e-6*max(1, math.Abs(fd)) {
			t.Errorf("spec %d: Backprop param grad %v, finite difference %v", si, grads[0][0], fd)
		}

		// InputJacobians: row k of example e is Backprop with e_k.
		jac := make([]float64, n*out*in)
		net.InputJacobians(jac, x, n, ws)
		for k := range out {
			ek := make([]float64, n*out)
			for e := range n {
				ek[e*out+k] = 1
			}
			net.Backprop(dx, x, ek, n, nil, ws)
			for e := range n {
				got := jac[(e*out+k)*in : (e*out+k+1)*in]
				if d := relDiff(got, dx[e*in:(e+1)*in]); d > 1e-12 {
					t.Errorf("spec %d: Jacobian row %d of example %d differs from Backprop by %g", si, k, e, d)
				}
			}
		}
	}
}

func TestSoftmaxCrossEntropyStable(t *testing.T) {
	tests := []struct {
		logits []float64
		label  int
		want   float64 // logsumexp(z) - z[label], analytic
	}{
		// exp(-1e4) underflows to 0, so logsumexp = 1e4 exactly.
		{[]float64{1e4, 0, -1e4}, 0, 0},
		{[]float64{1e4, 0, -1e4}, 1, 1e4},
		{[]float64{1e4, 0, -1e4}, 2, 2e4},
		{[]float64{1e4, 1e4}, 1, math.Ln2},
		{[]float64{-1e4, -1e4, -1e4}, 2, math.Log(3)},
		{[]float64{1, 2, 3}, 0, math.Log(math.Exp(1)+math.Exp(2)+math.Exp(3)) - 1},
	}
	for _, tt := range tests {
		c := len(tt.logits)
		d := make([]float64, c)
		got := softmaxCrossEntropy(d, tt.logits, []float64{float64(tt.label)}, 1, c, 1)
		if math.IsNaN(got) || math.IsInf(got, 0) || math.Abs(got-tt.want) > 1e-12*max(1, tt.want) {
			t.Errorf("logits %v label %d: loss %v, want %v", tt.logits, tt.label, got, tt.want)
		}
		var s float64
		for _, v := range d {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				t.Errorf("logits %v: gradient %v not finite", tt.logits, d)
			}
			s += v
		}
		if math.Abs(s) > 1e-12 {
			t.Errorf("logits %v: gradient sums to %v, want 0", tt.logits, s)
		}
	}

	// The same through a float32 network whose logits are +-1e4.
	net, err := NewNetwork[float32](NetworkSpec{Task: TaskClassification, Inputs: 2, Layers: []LayerSpec{linearLayer(2, 2, false, nil)}})
	if err != nil {
		t.Fatal(err)
	}
	copy(net.Params()[0].Data, []float32{1e4, 0, 0, -1e4})
	loss, err := net.Loss([]float32{1, 1}, []float32{1}, 1, nil)
	if err != nil || loss != 2e4 {
		t.Errorf("float32 network with logits (1e4, -1e4), label 1: loss %v, %v; want 20000", loss, err)
	}
}

func TestMeanSquaredError(t *testing.T) {
	// Predictions y = x (identity weight), targets t: MSE averages over
	// 2 rows x 2 outputs: ((1-0)^2 + (2-4)^2 + (3-3)^2 + (4-1)^2) / 4 = 14/4.
	net, err := NewNetwork[float64](NetworkSpec{Task: TaskRegression, Inputs: 2, Layers: []LayerSpec{linearLayer(2, 2, false, nil)}})
	if err != nil {
		t.Fatal(err)
	}
	copy(net.Params()[0].Data, []float64{1, 0, 0, 1})
	got, err := net.Loss([]float64{1, 2, 3, 4}, []float64{0, 4, 3, 1}, 2, nil)
	if err != nil || got != 3.5 {
		t.Errorf("MSE = %v, %v; want 3.5", got, err)
	}
}

func TestNetworkSpecValidate(t *testing.T) {
	ok := allActivations(TaskClassification, 3)
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid spec: %v", err)
	}
	mod := func(f func(s *NetworkSpec)) NetworkSpec {
		s := allActivations(TaskClassification, 3)
		s.Layers = slices.Clone(s.Layers)
		f(&s)
		return s
	}
	tests := []struct {
		name string
		spec NetworkSpec
		want string // substring of the message
	}{
		{"task", mod(func(s *NetworkSpec) { s.Task = "ranking" }), "task"},
		{"inputs", mod(func(s *NetworkSpec) { s.Inputs = 0 }), "inputs"},
		{"chain", mod(func(s *NetworkSpec) { s.Layers[2].In = 9 }), "layer 2"},
		{"zero out", mod(func(s *NetworkSpec) { s.Layers[0].Out = 0 }), "layer 0"},
		{"activation", mod(func(s *NetworkSpec) { s.Layers[1].Activation = "swish" }), "layer 1"},
		{"kind", mod(func(s *NetworkSpec) { s.Layers[4].Kind = "dropout" }), "layer 4"},
		{"norm width", mod(func(s *NetworkSpec) { s.Layers[4].In = 3 }), "layer 4"},
		{"one class", mod(func(s *NetworkSpec) { s.Layers[11].Out = 1 }), "at least 2"},
		{"no linear", NetworkSpec{Task: TaskRegression, Inputs: 3, Layers: []LayerSpec{actLayer(ActReLU)}}, "linear"},
		{"structure shape", mod(func(s *NetworkSpec) {
			s.Layers[2].Structure = &Spec{Family: FamilyLowRank, Out: 5, Rank: 2}
		}), "layer 2"},
		{"structure rank", mod(func(s *NetworkSpec) { s.Layers[2].Structure = &Spec{Family: FamilyLowRank, Rank: 0} }), "layer 2"},
		{"unknown family", mod(func(s *NetworkSpec) { s.Layers[2].Structure = &Spec{Family: "fourier"} }), "layer 2"},
		{"duplicate name", mod(func(s *NetworkSpec) { s.Layers[3].Name = "0" }), "layer 3"},
		{"dotted name", mod(func(s *NetworkSpec) { s.Layers[3].Name = "a.b" }), "layer 3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.spec.Validate()
			if !errors.Is(err, ErrSpec) {
				t.Fatalf("err = %v, want ErrSpec", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %q, want it to mention %q", err, tt.want)
			}
			if _, err := NewNetwork[float32](tt.spec); !errors.Is(err, ErrSpec) {
				t.Errorf("NewNetwork: err = %v, want ErrSpec", err)
			}
		})
	}
}

func TestNetworkParamNames(t *testing.T) {
	mon := Spec{Family: FamilyMonarch, Blocks: 2, Rank: 2}
	spec := NetworkSpec{Task: TaskClassification, Inputs: 4, Layers: []LayerSpec{
		linearLayer(4, 8, true, nil),
		actLayer(ActReLU),
		normLayer(),
		linearLayer(8, 8, true, sumOf(mon, Spec{Family: FamilyLowRank, Rank: 1})),
		{Kind: KindActivation, Activation: ActGELU, Name: "act"},
		{Kind: KindLinear, In: 8, Out: 8, Name: "proj", Structure: &Spec{Family: FamilyOrthogonal}},
		linearLayer(8, 3, false, sumOf(Spec{Family: FamilyDense}, Spec{Family: FamilySparse, NNZ: 2})),
	}}
	net, err := NewNetwork[float32](spec)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"0.weight weight [8 4]", "0.bias bias [8]",
		"2.weight norm [8]", "2.bias norm [8]",
		"3.trunk.L trunk [2 4 4]", "3.trunk.R trunk [2 4 4]", "3.correction.U correction [8 1]", "3.correction.V correction [8 1]", "3.bias bias [8]",
		"proj.Q trunk [8 8]", "proj.scale trunk [1]",
		"6.trunk.W trunk [3 8]", "6.correction.values correction [2]", "6.correction.rows correction [2] frozen", "6.correction.cols correction [2] frozen",
	}
	var got []string
	for _, p := range net.Params() {
		s := fmt.Sprintf("%s %s %v", p.Name, p.Role, p.Shape)
		if p.Frozen {
			s += " frozen"
		}
		got = append(got, s)
		if n := len(p.Data); n != prod(p.Shape) {
			t.Errorf("%s: %d values for shape %v", p.Name, n, p.Shape)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("params:\n got %q\nwant %q", got, want)
	}
	// The spec round-trips with resolved structures.
	re, err := NewNetwork[float64](net.Spec())
	if err != nil {
		t.Fatal(err)
	}
	if len(re.Params()) != len(net.Params()) {
		t.Errorf("rebuilt network has %d params, want %d", len(re.Params()), len(net.Params()))
	}
	if s := net.Spec().Layers[3].Structure; s == nil || s.Trunk.Out != 8 || s.Correction.Rank != 1 {
		t.Errorf("resolved structure of layer 3: %+v", s)
	}
}

func prod(s []int) int {
	n := 1
	for _, v := range s {
		n *= v
	}
	return n
}

func TestNetworkSetOperator(t *testing.T) {
	rng := newRand(11)
	spec := NetworkSpec{Task: TaskRegression, Inputs: 6, Layers: []LayerSpec{
		linearLayer(6, 12, true, nil), actLayer(ActTanh), linearLayer(12, 2, true, nil),
	}}
	net := netRandomized(t, spec, rng)
	x := randSlice(rng, 3*6)
	before := make([]float64, 3*2)
	net.Forward(before, x, 3, nil)

	// Convert layer 0 exactly: lowrank 3 + lowrank 3 residual of a 12x6
	// matrix of rank <= 6 reproduces it.
	w := Dense(net.Operator(0))
	sum, err := Decompose(w, Spec{Family: FamilyLowRank, Rank: 3}, Residual{Kind: "lowrank", Rank: 3}, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := net.SetOperator(0, sum); err != nil {
		t.Fatal(err)
	}
	after := make([]float64, 3*2)
	net.Forward(after, x, 3, nil)
	if d := relDiff(after, before); d > 1e-10 {
		t.Errorf("forward changed by %g after an exact conversion", d)
	}
	if got := net.Params()[0].Name; got != "0.trunk.U" {
		t.Errorf("first param after conversion is %q, want 0.trunk.U", got)
	}
	if s := net.Spec().Layers[0].Structure; s == nil || s.Family != FamilySum {
		t.Errorf("spec structure after conversion: %+v", s)
	}
	if err := net.SetOperator(0, NewDenseOp[float64](5, 6, nil)); !errors.Is(err, ErrSpec) {
		t.Errorf("wrong shape: err = %v", err)
	}
	if err := net.SetOperator(1, NewDenseOp[float64](12, 12, nil)); !errors.Is(err, ErrSpec) {
		t.Errorf("activation layer: err = %v", err)
	}
}

func TestNetworkConvertAndForwardLayers(t *testing.T) {
	rng := newRand(12)
	spec := structuredNet(TaskClassification, 3, Spec{Family: FamilyMonarch, Blocks: 4, Rank: 2}, Spec{Family: FamilyLowRank, Rank: 2})
	net := netRandomized(t, spec, rng)
	const n = 5
	x := randSlice(rng, n*net.Inputs())
	y := make([]float64, n*net.Outputs())
	net.Forward(y, x, n, nil)

	outs := make([][]float64, net.NumLayers())
	for l, w := range net.widths[1:] {
		outs[l] = make([]float64, n*w)
	}
	net.ForwardLayers(outs, x, n, NewWorkspace[float64]())
	if !slices.Equal(outs[len(outs)-1], y) {
		t.Errorf("ForwardLayers last output differs from Forward")
	}

	n32 := ConvertNetwork[float32](net)
	x32 := make([]float32, len(x))
	for i, v := range x {
		x32[i] = float32(v)
	}
	y32 := make([]float32, len(y))
	n32.Forward(y32, x32, n, nil)
	back := make([]float64, len(y))
	for i, v := range y32 {
		back[i] = float64(v)
	}
	if d := relDiff(back, y); d > tolFloat32 {
		t.Errorf("float32 forward vs float64: rel diff %g", d)
	}
	cl := CloneNetwork(net)
	cl.Params()[0].Data[0] += 1
	if net.Params()[0].Data[0] == cl.Params()[0].Data[0] {
		t.Error("CloneNetwork shares storage")
	}
}

// TestEffectiveGradNorms compares the effective-W gradient norms with the
// weight gradients of the network made dense, on a batch of 6 rows
// (every norm from dY^T X) and of 2 (every norm from the Gram matrices:
// 2 (out + in) < out in for each layer).
func TestEffectiveGradNorms(t *testing.T) {
	for _, n := range []int{6, 2} {
		effectiveGradNormsOn(t, n)
	}
}

func effectiveGradNormsOn(t *testing.T, n int) {
	rng := newRand(13)
	spec := structuredNet(TaskClassification, 3, Spec{Family: FamilyKronecker, Rank: 2}, Spec{Family: FamilySparse, NNZ: 9})
	net := netRandomized(t, spec, rng)
	x := randSlice(rng, n*net.Inputs())
	target := netTargets(net, n, rng)
	got, err := net.EffectiveGradNorms(nil, x, target, n, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The same network with every linear layer materialised as dense:
	// its weight gradients are the effective-W gradients.
	dense := CloneNetwork(net)
	for i := range dense.NumLayers() {
		if op := dense.Operator(i); op != nil {
			out, in := op.Shape()
			w := make([]float64, out*in)
			op.DenseTo(w)
			if err := dense.SetOperator(i, NewDenseOp(out, in, w)); err != nil {
				t.Fatal(err)
			}
		}
	}
	grads := dense.NewGrads()
	if _, err := dense.LossGrad(x, target, n, grads, nil); err != nil {
		t.Fatal(err)
	}
	var want []float64
	for i, p := range dense.Params() {
		if p.Role == RoleWeight {
			want = append(want, math.Sqrt(dot(grads[i], grads[i])))
		}
	}
	if d := relDiff(got, want); d > 1e-10 {
		t.Errorf("batch of %d: effective gradient norms %v, dense weight gradient norms %v", n, got, want)
	}
}

func TestCheckTargets(t *testing.T) {
	cls, _ := NewNetwork[float32](NetworkSpec{Task: TaskClassification, Inputs: 2, Layers: []LayerSpec{linearLayer(2, 3, false, nil)}})
	reg, _ := NewNetwork[float32](NetworkSpec{Task: TaskRegression, Inputs: 2, Layers: []LayerSpec{linearLayer(2, 2, false, nil)}})
	nan := float32(math.NaN())
	tests := []struct {
		name   string
		net    *Network[float32]
		target []float32
		n      int
		ok     bool
	}{
		{"classes ok", cls, []float32{0, 2, 1}, 3, true},
		{"class too big", cls, []float32{0, 3}, 2, false},
		{"class negative", cls, []float32{-1}, 1, false},
		{"class fraction", cls, []float32{1.5}, 1, false},
		{"class nan", cls, []float32{nan}, 1, false},
		{"too few", cls, []float32{0}, 2, false},
		{"regression ok", reg, []float32{1, 2, 3, 4}, 2, true},
		{"regression nan", reg, []float32{1, nan}, 1, false},
		{"regression short", reg, []float32{1, 2, 3}, 2, false},
	}
	for _, tt := range tests {
		err := tt.net.CheckTargets(tt.target, tt.n)
		if (err == nil) != tt.ok || (err != nil && !errors.Is(err, ErrTarget)) {
			t.Errorf("%s: err = %v, want ok %v", tt.name, err, tt.ok)
		}
	}
	if _, err := cls.LossGrad([]float32{1, 2}, []float32{7}, 1, cls.NewGrads(), nil); !errors.Is(err, ErrTarget) {
		t.Errorf("LossGrad with a bad class: err = %v", err)
	}
}

func TestInitStructuredVariance(t *testing.T) {
	// Every family's initial layer gives outputs of variance ~1/3 for
	// unit-variance inputs, as nn.Linear's U(-1/sqrt(in), 1/sqrt(in)).
	const n = 512
	tests := []struct {
		out, in int
		s       Spec
	}{
		{256, 256, Spec{Family: FamilyDense}},
		{256, 256, Spec{Family: FamilyLowRank, Rank: 32}},
		{256, 128, Spec{Family: FamilyMonarch, Blocks: 4, Rank: 8}},
		{256, 256, Spec{Family: FamilyBlockDiag, Blocks: 4}},
		{256, 256, Spec{Family: FamilyCirculant}},
		{200, 256, Spec{Family: FamilyToeplitz}},
		{256, 256, Spec{Family: FamilyKronecker, Rank: 2}},
		{256, 128, Spec{Family: FamilyOrthogonal}},
		{128, 256, Spec{Family: FamilyOrthogonal}},
		{256, 256, Spec{Family: FamilySparse, NNZ: 256 * 24}},
		{256, 256, *sumOf(Spec{Family: FamilyMonarch, Blocks: 4, Rank: 16}, Spec{Family: FamilyLowRank, Rank: 4})},
	}
	for i, tt := range tests {
		t.Run(fmt.Sprintf("%s_%dx%d", tt.s.Family, tt.out, tt.in), func(t *testing.T) {
			s := tt.s
			spec := NetworkSpec{Task: TaskRegression, Inputs: tt.in, Layers: []LayerSpec{linearLayer(tt.in, tt.out, false, &s)}}
			net, err := NewNetwork[float64](spec)
			if err != nil {
				t.Fatal(err)
			}
			rng := newRand(uint64(300 + i))
			if err := net.InitStructured(rng); err != nil {
				t.Fatal(err)
			}
			x := randSlice(rng, n*tt.in)
			y := make([]float64, n*tt.out)
			net.Forward(y, x, n, nil)
			v := dot(y, y) / float64(len(y))
			if math.Abs(v-1.0/3) > 0.05 {
				t.Errorf("output variance %.4f, want 1/3 (+-0.05)", v)
			}
			if sum, ok := net.Operator(0).(*Sum[float64]); ok {
				if NumParams(sum.Correction()) > 0 && FrobeniusNorm(Dense(sum.Correction())) != 0 {
					t.Error("correction does not start at zero")
				}
			}
			if !net.FromScratch(0) {
				t.Error("FromScratch(0) = false after InitStructured")
			}
		})
	}
}

func TestLRMultipliers(t *testing.T) {
	spec := NetworkSpec{Task: TaskClassification, Inputs: 64, Layers: []LayerSpec{
		linearLayer(64, 64, true, sumOf(Spec{Family: FamilyMonarch, Blocks: 4, Rank: 2}, Spec{Family: FamilyLowRank, Rank: 8})),
		normLayer(),
		linearLayer(64, 64, false, &Spec{Family: FamilyBlockDiag, Blocks: 8}),
		linearLayer(64, 64, false, &Spec{Family: FamilyKronecker, Rank: 2}),
		linearLayer(64, 64, false, sumOf(Spec{Family: FamilyCirculant}, Spec{Family: FamilySparse, NNZ: 128})),
		linearLayer(64, 64, false, &Spec{Family: FamilyOrthogonal}),
		linearLayer(64, 10, true, nil),
	}}
	net, err := NewNetwork[float32](spec)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{
		"0.trunk.L": 64.0 / 8, "0.trunk.R": 64.0 / 16, // L fan-in b r = 8, R fan-in in/b = 16
		"0.correction.U": 64.0 / 8, "0.correction.V": 1, "0.bias": 1,
		"1.weight": 1, "1.bias": 1,
		"2.D":       8,         // fan-in in/b = 8
		"3.A":       64.0 / 16, // fan-in r n1 = 2 * 8
		"3.B":       64.0 / 8,  // fan-in n2 = 8
		"4.trunk.c": 1, "4.correction.values": 64 * 64 / 128.0, "4.correction.rows": 1, "4.correction.cols": 1,
		"5.Q": 1, "5.scale": 1,
		"6.weight": 1, "6.bias": 1,
	}
	mult := LRMultipliers(net)
	for i, p := range net.Params() {
		w, ok := want[p.Name]
		if !ok {
			t.Errorf("unexpected parameter %s", p.Name)
			continue
		}
		if mult[i] != w {
			t.Errorf("%s: multiplier %v, want %v", p.Name, mult[i], w)
		}
	}
}
