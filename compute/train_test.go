package compute

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
	"time"
)

// separableData returns n examples of d features in classes classes,
// labelled by a random linear teacher argmax(W x) and kept only when the
// best class wins by a margin of 0.5: linearly separable with a margin.
func separableData(rng *rand.Rand, n, d, classes int) (x, y []float32) {
	w := randSlice(rng, classes*d)
	for i := range w {
		w[i] /= math.Sqrt(float64(d))
	}
	score := make([]float64, classes)
	for len(y) < n {
		row := randSlice(rng, d)
		for c := range classes {
			score[c] = dot(w[c*d:(c+1)*d], row)
		}
		best, second := 0, -1
		for c := 1; c < classes; c++ {
			if score[c] > score[best] {
				best, second = c, best
			} else if second < 0 || score[c] > score[second] {
				second = c
			}
		}
		if score[best]-score[second] < 0.5 {
			continue
		}
		for _, v := range row {
			x = append(x, float32(v))
		}
		y = append(y, float32(best))
	}
	return x, y
}

// batcher draws mini-batches from a dataset in a seeded random order,
// epoch after epoch, into reused buffers.
type batcher struct {
	x, y   []float32
	d, tw  int // features and target values per row
	order  []int
	pos    int
	rng    *rand.Rand
	xb, yb []float32
}

func newBatcher(x, y []float32, d, tw, batch int, seed uint64) *batcher {
	n := len(x) / d
	b := &batcher{x: x, y: y, d: d, tw: tw, order: make([]int, n), rng: newRand(seed),
		xb: make([]float32, batch*d), yb: make([]float32, batch*tw)}
	for i := range b.order {
		b.order[i] = i
	}
	b.pos = n
	return b
}

func (b *batcher) next() (x, y []float32) {
	batch := len(b.xb) / b.d
	for r := range batch {
		if b.pos == len(b.order) {
			b.rng.Shuffle(len(b.order), func(i, j int) { b.order[i], b.order[j] = b.order[j], b.order[i] })
			b.pos = 0
		}
		i := b.order[b.pos]
		b.pos++
		copy(b.xb[r*b.d:(r+1)*b.d], b.x[i*b.d:(i+1)*b.d])
		copy(b.yb[r*b.tw:(r+1)*b.tw], b.y[i*b.tw:(i+1)*b.tw])
	}
	return b.xb, b.yb
}

// trainFor trains a fresh float32 network of spec, initialised from seed,
// for steps steps of batch rows drawn from (x, y), with the warm-up +
// cosine schedule from base, and returns it.
func trainFor(t testing.TB, spec NetworkSpec, cfg TrainerConfig, seed uint64, x, y []float32, batch, steps int, base float64) *Network[float32] {
	t.Helper()
	net, err := NewNetwork[float32](spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := net.InitStructured(newRand(seed)); err != nil {
		t.Fatal(err)
	}
	tr, err := NewTrainer(net, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	tw := 1
	if spec.Task == TaskRegression {
		tw = net.Outputs()
	}
	b := newBatcher(x, y, spec.Inputs, tw, batch, seed+1)
	for s := range steps {
		xb, yb := b.next()
		if _, err := tr.Step(xb, yb, batch, LR(s, steps, steps/10, base)); err != nil {
			t.Fatalf("step %d: %v", s, err)
		}
	}
	return net
}

// accuracy returns the share of rows of x whose argmax output is y.
func accuracy(net *Network[float32], x, y []float32) float64 {
	n := len(y)
	c := net.Outputs()
	out := make([]float32, n*c)
	net.Forward(out, x, n, nil)
	right := 0
	for r := range n {
		row := out[r*c : (r+1)*c]
		best := 0
		for j, v := range row {
			if v > row[best] {
				best = j
			}
		}
		if best == int(y[r]) {
			right++
		}
	}
	return float64(right) / float64(n)
}

// paramBits returns every parameter value of net, in order.
func paramBits(net *Network[float32]) []float32 {
	var all []float32
	for _, p := range net.Params() {
		all = append(all, p.Data...)
	}
	return all
}

func mlp2(d, hidden, classes int) NetworkSpec {
	return NetworkSpec{Task: TaskClassification, Inputs: d, Layers: []LayerSpec{
		linearLayer(d, hidden, true, nil), actLayer(ActReLU), linearLayer(hidden, classes, true, nil),
	}}
}

func TestTrainSeparable(t *testing.T) {
	x, y := separableData(newRand(21), 600, 10, 3)
	cfg := DefaultTrainerConfig()
	cfg.Optimizer.WeightDecay = 0
	net := trainFor(t, mlp2(10, 32, 3), cfg, 5, x, y, 64, 300, 0.01)
	if acc := accuracy(net, x, y); acc < 0.98 {
		t.Errorf("train accuracy %.4f after 300 steps, want >= 0.98", acc)
	}
}

// structuredSpec is a small decomposed MLP used by the determinism tests.
func structuredSpec() NetworkSpec {
	return NetworkSpec{Task: TaskClassification, Inputs: 12, Layers: []LayerSpec{
		linearLayer(12, 32, true, nil), actLayer(ActGELU), normLayer(),
		linearLayer(32, 32, true, sumOf(Spec{Family: FamilyMonarch, Blocks: 4, Rank: 2}, Spec{Family: FamilyLowRank, Rank: 2})),
		actLayer(ActReLU),
		linearLayer(32, 4, true, nil),
	}}
}

func TestTrainDeterminism(t *testing.T) {
	x, y := separableData(newRand(22), 256, 12, 4)
	spec := structuredSpec()
	run := func(shards int, seed uint64) []float32 {
		cfg := DefaultTrainerConfig()
		cfg.Shards = shards
		cfg.ResidualL2 = 1e-3
		return paramBits(trainFor(t, spec, cfg, seed, x, y, 48, 20, 0.01))
	}
	a, b := run(2, 1), run(2, 1)
	if d := bitDiffs(a, b); d != 0 {
		t.Errorf("same seed, 2 shards: %d of %d parameters differ", d, len(a))
	}
	prev := runtime.GOMAXPROCS(1)
	c := run(2, 1)
	runtime.GOMAXPROCS(prev)
	if d := bitDiffs(a, c); d != 0 {
		t.Errorf("GOMAXPROCS 1 vs %d: %d of %d parameters differ", prev, d, len(a))
	}
	one, one2 := run(1, 1), run(1, 1)
	if d := bitDiffs(one, one2); d != 0 {
		t.Errorf("same seed, 1 shard: %d parameters differ", d)
	}
	// The elementwise phases run on max(Shards, GOMAXPROCS) workers.
	for _, procs := range []int{1, 4} {
		prev := runtime.GOMAXPROCS(procs)
		other := run(1, 1)
		runtime.GOMAXPROCS(prev)
		if d := bitDiffs(one, other); d != 0 {
			t.Errorf("1 shard, GOMAXPROCS %d vs %d: %d of %d parameters differ", procs, prev, d, len(one))
		}
	}
	// One shard vs two: the same sums in a different order, so equal to
	// float32 rounding, amplified a little by 20 steps.
	var num, den float64
	for i := range a {
		num = max(num, math.Abs(float64(a[i]-one[i])))
		den = max(den, math.Abs(float64(a[i])))
	}
	if num/den > 1e-5 {
		t.Errorf("1 vs 2 shards: max rel diff %g > 1e-5", num/den)
	}
	if d := bitDiffs(a, run(2, 2)); d == 0 {
		t.Error("a different seed gave identical parameters")
	}
}

func bitDiffs(a, b []float32) int {
	n := 0
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			n++
		}
	}
	return n
}

func TestTrainResumeBitIdentical(t *testing.T) {
	x, y := separableData(newRand(23), 200, 12, 4)
	spec := structuredSpec()
	cfg := DefaultTrainerConfig()
	const steps, cut, batch = 12, 5, 40
	lr := func(s int) float64 { return LR(s, steps, 2, 0.01) }

	net, _ := NewNetwork[float32](spec)
	if err := net.InitStructured(newRand(3)); err != nil {
		t.Fatal(err)
	}
	tr, err := NewTrainer(net, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	bt := newBatcher(x, y, 12, 1, batch, 4)
	var batches [][2][]float32
	for range steps {
		xb, yb := bt.next()
		batches = append(batches, [2][]float32{append([]float32(nil), xb...), append([]float32(nil), yb...)})
	}
	var ckParams []float32
	var ckState OptimizerState[float32]
	for s := range steps {
		if s == cut {
			ckParams = paramBits(net)
			ckState = tr.Optimizer().State()
		}
		if _, err := tr.Step(batches[s][0], batches[s][1], batch, lr(s)); err != nil {
			t.Fatal(err)
		}
	}

	// Resume from the checkpoint into a network loaded from values (not
	// initialised from scratch, so the multipliers come from the state).
	re, _ := NewNetwork[float32](spec)
	off := 0
	for _, p := range re.Params() {
		off += copy(p.Data, ckParams[off:off+len(p.Data)])
	}
	tr2, err := NewTrainer(re, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer tr2.Close()
	if err := tr2.Optimizer().SetState(ckState); err != nil {
		t.Fatal(err)
	}
	for s := cut; s < steps; s++ {
		if _, err := tr2.Step(batches[s][0], batches[s][1], batch, lr(s)); err != nil {
			t.Fatal(err)
		}
	}
	if d := bitDiffs(paramBits(net), paramBits(re)); d != 0 {
		t.Errorf("resumed run: %d parameters differ from the uninterrupted run", d)
	}
}

func TestTrainerStepMatchesLossGrad(t *testing.T) {
	// With SGD (lr 1, no momentum, no decay, no clipping) a step moves the
	// parameters by exactly minus the gradient, so the sharded reduction
	// and the penalty can be checked against LossGrad + ResidualPenalty.
	rng := newRand(31)
	spec := structuredNet(TaskRegression, 3, Spec{Family: FamilyToeplitz}, Spec{Family: FamilyLowRank, Rank: 2})
	for _, shards := range []int{1, 3} {
		net := netRandomized(t, spec, rng)
		const n = 11
		x := randSlice(rng, n*net.Inputs())
		target := netTargets(net, n, rng)
		grads := net.NewGrads()
		loss, err := net.LossGrad(x, target, n, grads, nil)
		if err != nil {
			t.Fatal(err)
		}
		const lambda = 0.1
		loss += net.ResidualPenalty(lambda, grads)
		before := CloneNetwork(net)

		cfg := TrainerConfig{Optimizer: OptimizerConfig{Kind: OptimizerSGD}, Shards: shards, ResidualL2: lambda, FactorLR: FactorLRNone}
		tr, err := NewTrainer(net, cfg)
		if err != nil {
			t.Fatal(err)
		}
		st, err := tr.Step(x, target, n, 1)
		tr.Close()
		if err != nil {
			t.Fatal(err)
		}
		if !closeTo(st.Loss, loss, 1e-12) {
			t.Errorf("shards %d: step loss %v, LossGrad + penalty %v", shards, st.Loss, loss)
		}
		if !closeTo(st.GlobalNorm, GlobalNorm(grads), 1e-12) {
			t.Errorf("shards %d: global norm %v, want %v", shards, st.GlobalNorm, GlobalNorm(grads))
		}
		layerSq := map[int]float64{}
		for i, p := range net.Params() {
			if grads[i] == nil {
				continue
			}
			layerSq[p.Layer] += dot(grads[i], grads[i])
			delta := make([]float64, len(p.Data))
			for j := range delta {
				delta[j] = before.Params()[i].Data[j] - p.Data[j]
			}
			if d := relDiff(delta, grads[i]); d > 1e-12 {
				t.Errorf("shards %d: %s moved by %g relative to its gradient", shards, p.Name, d)
			}
		}
		k := 0
		for i := range net.NumLayers() {
			if net.Operator(i) == nil {
				continue
			}
			if want := math.Sqrt(layerSq[i]); !closeTo(st.GradNorms[k], want, 1e-12) {
				t.Errorf("shards %d: layer %d gradient norm %v, want %v", shards, i, st.GradNorms[k], want)
			}
			k++
		}
	}
}

func TestTrainerClipping(t *testing.T) {
	rng := newRand(32)
	net := netRandomized(t, allActivations(TaskClassification, 3), rng)
	before := CloneNetwork(net)
	x := randSlice(rng, 8*net.Inputs())
	target := netTargets(net, 8, rng)
	tr, err := NewTrainer(net, TrainerConfig{Optimizer: OptimizerConfig{Kind: OptimizerSGD}, ClipNorm: 1e-3, FactorLR: FactorLRNone})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	st, err := tr.Step(x, target, 8, 1)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Clipped || st.GlobalNorm <= 1e-3 {
		t.Fatalf("not clipped: %+v", st)
	}
	var sq float64
	for i, p := range net.Params() {
		for j, v := range p.Data {
			d := before.Params()[i].Data[j] - v
			sq += d * d
		}
	}
	if got := math.Sqrt(sq); !closeTo(got, 1e-3, 1e-12) {
		t.Errorf("clipped update norm %.17g, want exactly 1e-3", got)
	}
}

func TestTrainerRetraction(t *testing.T) {
	spec := NetworkSpec{Task: TaskClassification, Inputs: 8, Layers: []LayerSpec{
		linearLayer(8, 8, true, sumOf(Spec{Family: FamilyOrthogonal}, Spec{Family: FamilyLowRank, Rank: 1})),
		actLayer(ActTanh), linearLayer(8, 3, true, nil),
	}}
	for _, retract := range []bool{false, true} {
		rng := newRand(33)
		net, err := NewNetwork[float64](spec)
		if err != nil {
			t.Fatal(err)
		}
		if err := net.InitStructured(rng); err != nil {
			t.Fatal(err)
		}
		cfg := DefaultTrainerConfig()
		cfg.Retract = retract
		tr, err := NewTrainer(net, cfg)
		if err != nil {
			t.Fatal(err)
		}
		x := randSlice(rng, 16*8)
		target := netTargets(net, 16, rng)
		for range 3 {
			if _, err := tr.Step(x, target, 16, 0.05); err != nil {
				t.Fatal(err)
			}
		}
		tr.Close()
		q := net.Params()[0]
		if q.Name != "0.trunk.Q" {
			t.Fatalf("first parameter %s", q.Name)
		}
		var off float64 // ||Q^T Q - I||_F
		for i := range 8 {
			for j := range 8 {
				var s float64
				for r := range 8 {
					s += q.Data[r*8+i] * q.Data[r*8+j]
				}
				if i == j {
					s--
				}
				off += s * s
			}
		}
		off = math.Sqrt(off)
		if retract && off > 1e-10 {
			t.Errorf("with retraction: ||Q^T Q - I|| = %g", off)
		}
		if !retract && off < 1e-4 {
			t.Errorf("without retraction Q stayed orthogonal (%g): the test does not move it", off)
		}
	}
}

func TestTrainerRejects(t *testing.T) {
	rng := newRand(34)
	net := netRandomized(t, mlp2(4, 8, 3), rng)
	tr, err := NewTrainer(net, DefaultTrainerConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	before := CloneNetwork(net)
	x := randSlice(rng, 2*4)
	if _, err := tr.Step(x, []float64{0, 3}, 2, 0.1); !errors.Is(err, ErrTarget) {
		t.Errorf("class 3 of 3: err = %v, want ErrTarget", err)
	}
	x[0] = math.NaN()
	if _, err := tr.Step(x, []float64{0, 1}, 2, 0.1); !errors.Is(err, ErrNotFinite) {
		t.Errorf("NaN input: err = %v, want ErrNotFinite", err)
	}
	for i, p := range net.Params() {
		if d := relDiff(p.Data, before.Params()[i].Data); d != 0 {
			t.Errorf("%s changed by a rejected step", p.Name)
		}
	}
	if tr.Optimizer().Steps() != 0 {
		t.Errorf("optimizer counted %d steps", tr.Optimizer().Steps())
	}

	bad := []TrainerConfig{
		{Optimizer: DefaultOptimizerConfig(), Shards: -1},
		{Optimizer: DefaultOptimizerConfig(), ClipNorm: -1},
		{Optimizer: DefaultOptimizerConfig(), ResidualL2: math.Inf(1)},
		{Optimizer: DefaultOptimizerConfig(), FactorLR: "fast"},
		{Optimizer: OptimizerConfig{Kind: "adam"}},
	}
	for i, cfg := range bad {
		if _, err := NewTrainer(net, cfg); !errors.Is(err, ErrSpec) {
			t.Errorf("config %d: err = %v, want ErrSpec", i, err)
		}
	}

	// A batch smaller than the shard count leaves shards empty.
	one := CloneNetwork(before)
	two := CloneNetwork(before)
	for shards, n := range map[int]*Network[float64]{1: one, 2: two} {
		tr, _ := NewTrainer(n, TrainerConfig{Optimizer: DefaultOptimizerConfig(), Shards: shards})
		if _, err := tr.Step(x[4:], []float64{1}, 1, 0.1); err != nil {
			t.Fatal(err)
		}
		tr.Close()
	}
	for i, p := range one.Params() {
		if d := relDiff(p.Data, two.Params()[i].Data); d != 0 {
			t.Errorf("one row: %s differs between 1 and 2 shards", p.Name)
		}
	}
}

func TestTrainerFactorLR(t *testing.T) {
	spec := NetworkSpec{Task: TaskRegression, Inputs: 16, Layers: []LayerSpec{
		linearLayer(16, 16, true, sumOf(Spec{Family: FamilyBlockDiag, Blocks: 4}, Spec{Family: FamilyLowRank, Rank: 2})),
		linearLayer(16, 2, true, &Spec{Family: FamilyBlockDiag, Blocks: 2}),
	}}
	net, _ := NewNetwork[float32](spec)
	if err := net.InitLayer(0, newRand(1)); err != nil { // layer 1 counts as converted
		t.Fatal(err)
	}
	tests := []struct {
		mode string
		want []float64 // 0.trunk.D, 0.correction.U, 0.correction.V, 0.bias, 1.D, 1.bias
	}{
		{FactorLRAuto, []float64{4, 8, 1, 1, 1, 1}},
		{FactorLRMuP, []float64{4, 8, 1, 1, 2, 1}},
		{FactorLRNone, []float64{1, 1, 1, 1, 1, 1}},
	}
	for _, tt := range tests {
		cfg := DefaultTrainerConfig()
		cfg.FactorLR = tt.mode
		tr, err := NewTrainer(net, cfg)
		if err != nil {
			t.Fatal(err)
		}
		got := tr.Optimizer().Multipliers()
		tr.Close()
		if fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("%s: multipliers %v, want %v", tt.mode, got, tt.want)
		}
	}
}

func TestTrainStepAllocations(t *testing.T) {
	// Widths and shard sizes keep every GEMM below gonum's parallel
	// threshold (4 blocks of 64 x 64), whose goroutines allocate. (The
	// kronecker family runs GEMMs over n*m2 columns, which cross it even
	// for small layers, so it is left out.)
	specs := map[string]NetworkSpec{
		"dense": mlp2(12, 48, 4),
		"structured": {Task: TaskClassification, Inputs: 12, Layers: []LayerSpec{
			linearLayer(12, 32, true, nil), actLayer(ActGELU), normLayer(),
			linearLayer(32, 32, true, sumOf(Spec{Family: FamilyMonarch, Blocks: 4, Rank: 2}, Spec{Family: FamilyLowRank, Rank: 2})),
			actLayer(ActSigmoid),
			linearLayer(32, 32, false, sumOf(Spec{Family: FamilyBlockDiag, Blocks: 2}, Spec{Family: FamilySparse, NNZ: 16})),
			linearLayer(32, 4, true, nil),
		}},
	}
	for name, spec := range specs {
		t.Run(name, func(t *testing.T) {
			x, y := separableData(newRand(24), 64, 12, 4)
			net, _ := NewNetwork[float32](spec)
			if err := net.InitStructured(newRand(1)); err != nil {
				t.Fatal(err)
			}
			cfg := DefaultTrainerConfig()
			cfg.ResidualL2 = 1e-3
			tr, err := NewTrainer(net, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close()
			step := func() {
				if _, err := tr.Step(x, y, 64, 1e-3); err != nil {
					t.Fatal(err)
				}
			}
			for range 5 {
				step()
			}
			if a := testing.AllocsPerRun(20, step); a != 0 {
				t.Errorf("warm Step: %v allocations per run, want 0", a)
			}
		})
	}
}

// BenchmarkTrainStep measures one AdamW step (float32, batch 128, two
// shards, clipping on) of an MLP in -> h -> h -> 10 with ReLUs, the hidden
// h x h layer dense or structured.
func BenchmarkTrainStep(b *testing.B) {
	const batch, in, classes = 128, 64, 10
	for _, h := range []int{512, 2048} {
		for _, c := range []struct {
			name string
			s    *Spec
		}{
			{"dense", nil},
			{"monarch_b4", &Spec{Family: FamilyMonarch, Blocks: 4, Rank: h / 16}},
			{"monarch_b4+lowrank16", sumOf(Spec{Family: FamilyMonarch, Blocks: 4, Rank: h / 16}, Spec{Family: FamilyLowRank, Rank: 16})},
		} {
			b.Run(fmt.Sprintf("%d-%d-%d-%d/%s", in, h, h, classes, c.name), func(b *testing.B) {
				spec := NetworkSpec{Task: TaskClassification, Inputs: in, Layers: []LayerSpec{
					linearLayer(in, h, true, nil), actLayer(ActReLU),
					linearLayer(h, h, true, c.s), actLayer(ActReLU),
					linearLayer(h, classes, true, nil),
				}}
				benchTrain(b, spec, DefaultTrainerConfig(), batch, classes)
			})
		}
	}
}

func TestTrainerStopsWorkers(t *testing.T) {
	net, _ := NewNetwork[float32](mlp2(4, 8, 3))
	// workers counts the goroutines running a trainer's worker loop (by
	// their stacks: other tests' goroutines may come and go meanwhile).
	workers := func() int {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		return strings.Count(string(buf), ").worker(")
	}
	waitFor := func(want int) int {
		var n int
		for range 200 {
			runtime.GC()
			if n = workers(); n <= want {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		return n
	}
	base := waitFor(0)
	tr, err := NewTrainer(net, TrainerConfig{Optimizer: DefaultOptimizerConfig(), Shards: 4})
	if err != nil {
		t.Fatal(err)
	}
	// Started goroutines show the worker in their stacks once scheduled.
	n := workers()
	for i := 0; i < 200 && n < base+3; i++ {
		time.Sleep(5 * time.Millisecond)
		n = workers()
	}
	if n != base+3 {
		t.Fatalf("%d worker goroutines with a 4-shard trainer, want %d", n, base+3)
	}
	tr.Close()
	if n := waitFor(base); n > base {
		t.Errorf("after Close: %d worker goroutines, want %d", n, base)
	}
	// An abandoned trainer's workers stop once it is collected.
	func() {
		if _, err := NewTrainer(net, TrainerConfig{Optimizer: DefaultOptimizerConfig(), Shards: 4}); err != nil {
			t.Fatal(err)
		}
	}()
	if n := waitFor(base); n > base {
		t.Errorf("after dropping a trainer: %d worker goroutines, want %d", n, base)
	}
}

// ExampleTrainer trains a small decomposed classifier and lists its
// parameters by the names a model file uses.
func ExampleTrainer() {
	spec := NetworkSpec{Task: TaskClassification, Inputs: 8, Layers: []LayerSpec{
		{Kind: KindLinear, In: 8, Out: 16, Bias: true},
		{Kind: KindActivation, Activation: ActGELU},
		{Kind: KindLinear, In: 16, Out: 16, Bias: true, Structure: &Spec{
			Family:     FamilySum,
			Trunk:      &Spec{Family: FamilyMonarch, Blocks: 4, Rank: 1},
			Correction: &Spec{Family: FamilyLowRank, Rank: 2},
		}},
		{Kind: KindActivation, Activation: ActReLU},
		{Kind: KindLinear, In: 16, Out: 2, Bias: true},
	}}
	net, err := NewNetwork[float32](spec)
	if err != nil {
		panic(err)
	}
	if err := net.InitStructured(rand.New(rand.NewPCG(1, 2))); err != nil {
		panic(err)
	}
	tr, err := NewTrainer(net, DefaultTrainerConfig())
	if err != nil {
		panic(err)
	}
	defer tr.Close()

	// Two classes: the sign of the first feature.
	x := make([]float32, 64*8)
	y := make([]float32, 64)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	for r := range y {
		if x[r*8] > 0 {
			y[r] = 1
		}
	}
	const steps = 200
	for s := range steps {
		if _, err := tr.Step(x, y, 64, LR(s, steps, 20, 0.01)); err != nil {
			panic(err)
		}
	}
	for _, p := range net.Params() {
		fmt.Println(p.Name, p.Role, p.Shape)
	}
	fmt.Println("train accuracy >= 0.95:", accuracy(net, x, y) >= 0.95)
	// Output:
	// 0.weight weight [16 8]
	// 0.bias bias [16]
	// 2.trunk.L trunk [4 4 4]
	// 2.trunk.R trunk [4 4 4]
	// 2.correction.U correction [16 2]
	// 2.correction.V correction [16 2]
	// 2.bias bias [16]
	// 4.weight weight [2 16]
	// 4.bias bias [2]
	// train accuracy >= 0.95: true
}

// benchTrain measures trainer steps of a freshly initialised float32
// network on a fixed random batch and reports samples/s and params.
func benchTrain(b *testing.B, spec NetworkSpec, cfg TrainerConfig, batch, classes int) {
	net, err := NewNetwork[float32](spec)
	if err != nil {
		b.Fatal(err)
	}
	if err := net.InitStructured(newRand(1)); err != nil {
		b.Fatal(err)
	}
	tr, err := NewTrainer(net, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer tr.Close()
	x := randSlice32(batch * spec.Inputs)
	y := make([]float32, batch)
	for i := range y {
		y[i] = float32(i % classes)
	}
	b.ReportAllocs()
	start := time.Now()
	for b.Loop() {
		if _, err := tr.Step(x, y, batch, 1e-3); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*batch)/time.Since(start).Seconds(), "samples/s")
	b.ReportMetric(float64(net.NumParams()), "params")
}
