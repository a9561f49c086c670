package compute

import (
	"errors"
	"math"
	"slices"
	"testing"
)

// scalarParams returns a weight and a bias of one value each.
func scalarParams(w, b float64) []NetParam[float64] {
	return []NetParam[float64]{
		{Name: "0.weight", Role: RoleWeight, Shape: []int{1}, Data: []float64{w}},
		{Name: "0.bias", Role: RoleBias, Shape: []int{1}, Data: []float64{b}},
	}
}

func closeTo(got, want, tol float64) bool { return math.Abs(got-want) <= tol*max(1, math.Abs(want)) }

func TestOptimizerAdamWTwoSteps(t *testing.T) {
	// lr 0.1, weight decay 0.01, betas (0.9, 0.999), eps 1e-8, p0 = 1,
	// gradients 0.5 then -0.25 (torch.optim.AdamW's update):
	// step 1: p = 1 (1 - 0.001) = 0.999; m = 0.05, v = 0.00025;
	//   m^ = 0.05 / 0.1 = 0.5, v^ = 0.00025 / 0.001 = 0.25;
	//   p = 0.999 - 0.1 * 0.5 / (0.5 + 1e-8) = 0.899000002
	// step 2: p = 0.899000002 * 0.999 = 0.898101001998; m = 0.02,
	//   v = 0.00031225; m^ = 0.02 / 0.19, v^ = 0.00031225 / 0.001999;
	//   p = 0.898101001998 - 0.1 m^ / (sqrt(v^) + 1e-8) = 0.8714672987058463
	// The bias (no weight decay) follows the same Adam steps from 1
	// without the shrink: 1 - 0.1 (1 - 2e-8) = 0.900000002, then
	// 0.900000002 - 0.0266337...
	cfg := OptimizerConfig{Kind: OptimizerAdamW, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01}
	params := scalarParams(1, 1)
	opt, err := NewOptimizer(cfg, params, nil)
	if err != nil {
		t.Fatal(err)
	}
	opt.Step(params, [][]float64{{0.5}, {0.5}}, 0.1)
	if got := params[0].Data[0]; !closeTo(got, 0.899000002, 1e-15) {
		t.Errorf("step 1: weight %.17g, want 0.899000002", got)
	}
	if got := params[1].Data[0]; !closeTo(got, 0.900000002, 1e-15) {
		t.Errorf("step 1: bias %.17g, want 0.900000002 (no weight decay)", got)
	}
	opt.Step(params, [][]float64{{-0.25}, {-0.25}}, 0.1)
	if got := params[0].Data[0]; !closeTo(got, 0.8714672987058463, 1e-15) {
		t.Errorf("step 2: weight %.17g, want 0.8714672987058463", got)
	}
	adam2 := 0.1 * (0.02 / 0.19) / (math.Sqrt(0.00031225/0.001999) + 1e-8)
	if got, want := params[1].Data[0], 0.900000002-adam2; !closeTo(got, want, 1e-15) {
		t.Errorf("step 2: bias %.17g, want %.17g", got, want)
	}
	if opt.Steps() != 2 {
		t.Errorf("Steps = %d, want 2", opt.Steps())
	}
}

func TestOptimizerSGDMomentum(t *testing.T) {
	// torch.optim.SGD, momentum 0.9, weight decay 0.1 (coupled), lr 0.1,
	// gradient 0.5 twice, p0 = 1:
	// step 1: d = 0.5 + 0.1 * 1 = 0.6, buf = 0.6, p = 1 - 0.06 = 0.94
	// step 2: d = 0.5 + 0.094 = 0.594, buf = 0.54 + 0.594 = 1.134,
	//   p = 0.94 - 0.1134 = 0.8266
	// The bias has no decay: buf 0.5 then 0.95, p = 0.95 then 0.855.
	cfg := OptimizerConfig{Kind: OptimizerSGD, Momentum: 0.9, WeightDecay: 0.1}
	params := scalarParams(1, 1)
	opt, err := NewOptimizer(cfg, params, nil)
	if err != nil {
		t.Fatal(err)
	}
	g := [][]float64{{0.5}, {0.5}}
	opt.Step(params, g, 0.1)
	if w, b := params[0].Data[0], params[1].Data[0]; !closeTo(w, 0.94, 1e-15) || !closeTo(b, 0.95, 1e-15) {
		t.Errorf("step 1: weight %.17g bias %.17g, want 0.94 0.95", w, b)
	}
	opt.Step(params, g, 0.1)
	if w, b := params[0].Data[0], params[1].Data[0]; !closeTo(w, 0.8266, 1e-15) || !closeTo(b, 0.855, 1e-15) {
		t.Errorf("step 2: weight %.17g bias %.17g, want 0.8266 0.855", w, b)
	}

	// Plain SGD with a learning-rate multiplier of 2 on the weight.
	params = scalarParams(1, 1)
	plain, err := NewOptimizer(OptimizerConfig{Kind: OptimizerSGD}, params, []float64{2, 1})
	if err != nil {
		t.Fatal(err)
	}
	plain.Step(params, g, 0.1)
	if w, b := params[0].Data[0], params[1].Data[0]; w != 0.9 || b != 0.95 {
		t.Errorf("multiplier 2: weight %v bias %v, want 0.9 0.95", w, b)
	}
}

func TestOptimizerFrozenAndNil(t *testing.T) {
	params := scalarParams(1, 1)
	params[1].Frozen = true
	opt, err := NewOptimizer(DefaultOptimizerConfig(), params, nil)
	if err != nil {
		t.Fatal(err)
	}
	opt.Step(params, [][]float64{nil, {1}}, 0.1)
	if params[0].Data[0] != 1 || params[1].Data[0] != 1 {
		t.Errorf("nil gradient and frozen parameter changed: %v %v", params[0].Data, params[1].Data)
	}
	if st := opt.State(); st.M[1] != nil {
		t.Error("frozen parameter has optimizer state")
	}
}

func TestOptimizerStateResume(t *testing.T) {
	for _, kind := range []string{OptimizerAdamW, OptimizerSGD} {
		cfg := DefaultOptimizerConfig()
		cfg.Kind = kind
		grads := func(step int) [][]float64 {
			return [][]float64{{math.Sin(float64(step))}, {math.Cos(float64(step))}}
		}
		a := scalarParams(1, -1)
		optA, _ := NewOptimizer(cfg, a, []float64{3, 1})
		for s := range 3 {
			optA.Step(a, grads(s), 0.05)
		}
		state := optA.State()
		b := scalarParams(a[0].Data[0], a[1].Data[0])
		optB, _ := NewOptimizer(cfg, b, nil)
		if err := optB.SetState(state); err != nil {
			t.Fatal(err)
		}
		for s := 3; s < 6; s++ {
			optA.Step(a, grads(s), 0.05)
			optB.Step(b, grads(s), 0.05)
		}
		for i := range a {
			if a[i].Data[0] != b[i].Data[0] {
				t.Errorf("%s: resumed %s = %v, uninterrupted %v", kind, a[i].Name, b[i].Data[0], a[i].Data[0])
			}
		}
		// State is a copy.
		state.M[0][0] = 1e9
		if optA.State().M[0][0] == 1e9 {
			t.Errorf("%s: State shares memory", kind)
		}
	}

	adam, _ := NewOptimizer(DefaultOptimizerConfig(), scalarParams(1, 1), nil)
	sgdCfg := DefaultOptimizerConfig()
	sgdCfg.Kind = OptimizerSGD
	sgd, _ := NewOptimizer(sgdCfg, scalarParams(1, 1), nil)
	short := adam.State()
	short.M = short.M[:1]
	bad := []struct {
		name  string
		opt   *Optimizer[float64]
		state OptimizerState[float64]
	}{
		{"kind", adam, sgd.State()},
		{"buffers", adam, short},
		{"multipliers", sgd, OptimizerState[float64]{Kind: OptimizerSGD, M: [][]float64{{0}, {0}}, Multipliers: []float64{1}}},
		{"negative step", sgd, OptimizerState[float64]{Kind: OptimizerSGD, Step: -1, M: [][]float64{{0}, {0}}, Multipliers: []float64{1, 1}}},
	}
	for _, tt := range bad {
		if err := tt.opt.SetState(tt.state); !errors.Is(err, ErrSpec) {
			t.Errorf("%s: SetState err = %v, want ErrSpec", tt.name, err)
		}
	}
}

func TestOptimizerConfigValidate(t *testing.T) {
	mod := func(f func(c *OptimizerConfig)) OptimizerConfig {
		c := DefaultOptimizerConfig()
		f(&c)
		return c
	}
	tests := []struct {
		name string
		cfg  OptimizerConfig
	}{
		{"kind", mod(func(c *OptimizerConfig) { c.Kind = "lion" })},
		{"beta1", mod(func(c *OptimizerConfig) { c.Beta1 = 1 })},
		{"beta2", mod(func(c *OptimizerConfig) { c.Beta2 = -0.1 })},
		{"eps", mod(func(c *OptimizerConfig) { c.Eps = 0 })},
		{"decay", mod(func(c *OptimizerConfig) { c.WeightDecay = math.NaN() })},
		{"momentum", mod(func(c *OptimizerConfig) { c.Kind, c.Momentum = OptimizerSGD, 1.5 })},
	}
	for _, tt := range tests {
		if err := tt.cfg.Validate(); !errors.Is(err, ErrSpec) {
			t.Errorf("%s: err = %v, want ErrSpec", tt.name, err)
		}
	}
	if _, err := NewOptimizer(DefaultOptimizerConfig(), scalarParams(1, 1), []float64{1, 0}); !errors.Is(err, ErrSpec) {
		t.Errorf("zero multiplier: err = %v", err)
	}
}

func TestLRSchedule(t *testing.T) {
	tests := []struct {
		step, total, warmup int
		want                float64
	}{
		{0, 100, 10, 0}, // warm-up starts from 0
		{5, 100, 10, 0.5},
		{10, 100, 10, 1},
		{55, 100, 10, 0.5}, // half-way through the cosine
		{25, 100, 10, 0.5 * (1 + math.Cos(math.Pi/6))},     // p = 15/90
		{99, 100, 10, 0.5 * (1 + math.Cos(math.Pi*89/90))}, // last step
		{100, 100, 10, 0},
		{150, 100, 10, 0},
		{-1, 100, 10, 0},
		{0, 100, 0, 1},
		{50, 100, 0, 0.5},
	}
	for _, tt := range tests {
		if got := LR(tt.step, tt.total, tt.warmup, 1); !closeTo(got, tt.want, 1e-15) {
			t.Errorf("LR(%d, %d, %d, 1) = %.17g, want %.17g", tt.step, tt.total, tt.warmup, got, tt.want)
		}
	}
	if got := LR(10, 100, 10, 3e-4); got != 3e-4 {
		t.Errorf("LR scales with base: %v", got)
	}
}

func TestClipGlobalNorm(t *testing.T) {
	g := [][]float64{{3}, nil, {0, 4}}
	if n := ClipGlobalNorm(g, 1); n != 5 {
		t.Errorf("norm before clipping %v, want 5", n)
	}
	if got := GlobalNorm(g); !closeTo(got, 1, 1e-15) {
		t.Errorf("clipped norm %.17g, want 1", got)
	}
	if !closeTo(g[0][0], 0.6, 1e-15) || !closeTo(g[2][1], 0.8, 1e-15) {
		t.Errorf("clipped gradients %v, want direction kept", g)
	}
	small := [][]float64{{0.1, 0.2}}
	ClipGlobalNorm(small, 1)
	if !slices.Equal(small[0], []float64{0.1, 0.2}) {
		t.Errorf("gradient below the max norm changed: %v", small[0])
	}
}
