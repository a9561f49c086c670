package compute

import (
	"fmt"
	"math"
)

// Optimiser kinds.
const (
	OptimizerSGD   = "sgd"
	OptimizerAdamW = "adamw"
)

// OptimizerConfig selects and tunes an Optimizer. Values are taken
// literally; start from DefaultOptimizerConfig.
type OptimizerConfig struct {
	// Kind is OptimizerSGD or OptimizerAdamW.
	Kind string `json:"kind"`
	// Momentum of SGD, in [0, 1); 0 is plain SGD. Nesterov is off and
	// there is no dampening (PyTorch's defaults).
	Momentum float64 `json:"momentum"`
	// Beta1, Beta2 and Eps of AdamW.
	Beta1 float64 `json:"beta1"`
	Beta2 float64 `json:"beta2"`
	Eps   float64 `json:"eps"`
	// WeightDecay applies to weights, trunk and correction parameters,
	// never to biases and norm parameters: decoupled for AdamW (p *= 1 -
	// lr wd before the Adam step, as torch.optim.AdamW), added to the
	// gradient for SGD (g += wd p, as torch.optim.SGD).
	WeightDecay float64 `json:"weight_decay"`
}

// DefaultOptimizerConfig returns AdamW with beta1 0.9, beta2 0.999, eps
// 1e-8 and weight decay 0.01 (torch.optim.AdamW's defaults), and SGD
// momentum 0.9 should Kind be switched to SGD.
func DefaultOptimizerConfig() OptimizerConfig {
	return OptimizerConfig{Kind: OptimizerAdamW, Momentum: 0.9, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01}
}

// Validate checks the hyper-parameters; errors wrap ErrSpec.
func (c OptimizerConfig) Validate() error {
	bad := func(name string, v float64, want string) error {
		return fmt.Errorf("%w: optimizer %s %v must be %s", ErrSpec, name, v, want)
	}
	in01 := func(v float64) bool { return v >= 0 && v < 1 }
	switch c.Kind {
	case OptimizerSGD:
		if !in01(c.Momentum) {
			return bad("momentum", c.Momentum, "in [0, 1)")
		}
	case OptimizerAdamW:
		if !in01(c.Beta1) {
			return bad("beta1", c.Beta1, "in [0, 1)")
		}
		if !in01(c.Beta2) {
			return bad("beta2", c.Beta2, "in [0, 1)")
		}
		if !(c.Eps > 0) || math.IsInf(c.Eps, 0) {
			return bad("eps", c.Eps, "positive")
		}
	default:
		return fmt.Errorf("%w: unknown optimizer %q (want %s or %s)", ErrSpec, c.Kind, OptimizerSGD, OptimizerAdamW)
	}
	if !(c.WeightDecay >= 0) || math.IsInf(c.WeightDecay, 0) {
		return bad("weight decay", c.WeightDecay, "finite and >= 0")
	}
	return nil
}

// Optimizer updates a network's parameters from their gradients: SGD with
// momentum or AdamW, with a learning-rate multiplier per parameter tensor.
// Its state (step count, moments, multipliers) round-trips through State
// and SetState, so a run resumed from a checkpoint continues bit for bit.
type Optimizer[T Float] struct {
	cfg  OptimizerConfig
	step int64
	// m is the momentum buffer (SGD) or first moment (AdamW), v the
	// second moment; nil for frozen parameters (and v for SGD).
	m, v  [][]T
	mult  []float64
	decay []bool
	// Bias corrections 1 - beta^step of the current step (AdamW).
	bc1, bc2 float64
}

// NewOptimizer returns an optimiser for params (a Network's Params) with
// the learning-rate multiplier mult[i] for params[i]; nil mult means 1 for
// every parameter. Errors wrap ErrSpec.
func NewOptimizer[T Float](cfg OptimizerConfig, params []NetParam[T], mult []float64) (*Optimizer[T], error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if mult != nil && len(mult) != len(params) {
		return nil, fmt.Errorf("%w: %d learning-rate multipliers for %d parameters", ErrSpec, len(mult), len(params))
	}
	o := &Optimizer[T]{
		cfg:   cfg,
		m:     make([][]T, len(params)),
		mult:  make([]float64, len(params)),
		decay: make([]bool, len(params)),
	}
	if cfg.Kind == OptimizerAdamW {
		o.v = make([][]T, len(params))
	}
	for i, p := range params {
		o.mult[i] = 1
		if mult != nil {
			if !(mult[i] > 0) || math.IsInf(mult[i], 0) {
				return nil, fmt.Errorf("%w: learning-rate multiplier %v of %s must be positive", ErrSpec, mult[i], p.Name)
			}
			o.mult[i] = mult[i]
		}
		if p.Frozen {
			continue
		}
		o.decay[i] = p.Role == RoleWeight || p.Role == RoleTrunk || p.Role == RoleCorrection
		if cfg.Kind == OptimizerSGD && cfg.Momentum == 0 {
			continue
		}
		o.m[i] = make([]T, len(p.Data))
		if o.v != nil {
			o.v[i] = make([]T, len(p.Data))
		}
	}
	return o, nil
}

// Config returns the optimiser's configuration.
func (o *Optimizer[T]) Config() OptimizerConfig { return o.cfg }

// Steps returns the number of steps taken.
func (o *Optimizer[T]) Steps() int64 { return o.step }

// Multipliers returns the learning-rate multiplier of each parameter. The
// slice is shared: do not modify it.
func (o *Optimizer[T]) Multipliers() []float64 { return o.mult }

// Step takes one optimisation step on params with gradients grads
// (aligned with params; frozen parameters and nil gradients are skipped)
// and the base learning rate lr.
func (o *Optimizer[T]) Step(params []NetParam[T], grads [][]T, lr float64) {
	if len(params) != len(o.mult) || len(grads) != len(params) {
		panic(ErrShape)
	}
	o.begin()
	for i, p := range params {
		if p.Frozen || grads[i] == nil {
			continue
		}
		o.update(i, p.Data, grads[i], 0, len(p.Data), lr, 1)
	}
}

// begin advances the step count and the bias corrections of the step.
func (o *Optimizer[T]) begin() {
	o.step++
	if o.cfg.Kind == OptimizerAdamW {
		t := float64(o.step)
		o.bc1 = 1 - math.Pow(o.cfg.Beta1, t)
		o.bc2 = 1 - math.Pow(o.cfg.Beta2, t)
	}
}

// update applies the current step to entries [lo, hi) of parameter i
// (data p, gradient g scaled by gscale). Entries are independent, so
// disjoint ranges may be updated concurrently, and the result does not
// depend on how [0, len) is split into ranges.
//
// A float32 optimiser runs the fused float32 kernels adamW32 and sgd32; a
// float64 one computes in float64 below.
func (o *Optimizer[T]) update(i int, p, g []T, lo, hi int, lr, gscale float64) {
	lr *= o.mult[i]
	wd := 0.0
	if o.decay[i] {
		wd = o.cfg.WeightDecay
	}
	if p32, ok := any(p).([]float32); ok {
		g32 := any(g).([]float32)
		m32, _ := any(o.m[i]).([]float32)
		switch o.cfg.Kind {
		case OptimizerAdamW:
			v32 := any(o.v[i]).([]float32)
			adamW32(p32[lo:hi], g32[lo:hi], m32[lo:hi], v32[lo:hi], o.adamCoef32(lr, wd, gscale))
		case OptimizerSGD:
			if m32 != nil {
				m32 = m32[lo:hi]
			}
			sgd32(p32[lo:hi], g32[lo:hi], m32, float32(o.cfg.Momentum), float32(wd), float32(lr), float32(gscale))
		}
		return
	}
	p, g = p[lo:hi], g[lo:hi]
	switch o.cfg.Kind {
	case OptimizerAdamW:
		b1, b2, eps := o.cfg.Beta1, o.cfg.Beta2, o.cfg.Eps
		m, v := o.m[i][lo:hi], o.v[i][lo:hi]
		shrink := 1 - lr*wd
		step := lr / o.bc1
		sq2 := math.Sqrt(o.bc2)
		for j, gj := range g {
			x := float64(gj) * gscale
			mj := b1*float64(m[j]) + (1-b1)*x
			vj := b2*float64(v[j]) + (1-b2)*x*x
			m[j], v[j] = T(mj), T(vj)
			pj := float64(p[j])
			if wd != 0 {
				pj *= shrink
			}
			p[j] = T(pj - step*mj/(math.Sqrt(vj)/sq2+eps))
		}
	case OptimizerSGD:
		mu := o.cfg.Momentum
		var m []T
		if o.m[i] != nil {
			m = o.m[i][lo:hi]
		}
		for j, gj := range g {
			d := float64(gj)*gscale + wd*float64(p[j])
			if m != nil {
				d += mu * float64(m[j])
				m[j] = T(d)
			}
			p[j] = T(float64(p[j]) - lr*d)
		}
	}
}

// adamCoef32 holds the float32 coefficients of one AdamW step of one
// parameter, derived in float64 and rounded once.
type adamCoef32 struct {
	b1, c1 float32 // beta1, 1 - beta1
	b2, c2 float32 // beta2, 1 - beta2
	gscale float32 // gradient scale (clipping), 1 when not clipping
	shrink float32 // 1 - lr wd: decoupled weight decay, 1 without decay
	step   float32 // lr / (1 - beta1^t)
	isq2   float32 // 1 / sqrt(1 - beta2^t)
	eps    float32
}

// adamCoef32 returns the coefficients of the current step (begin has run)
// for a parameter with learning rate lr (multiplier applied) and weight
// decay wd.
func (o *Optimizer[T]) adamCoef32(lr, wd, gscale float64) adamCoef32 {
	return adamCoef32{
		b1: float32(o.cfg.Beta1), c1: float32(1 - o.cfg.Beta1),
		b2: float32(o.cfg.Beta2), c2: float32(1 - o.cfg.Beta2),
		gscale: float32(gscale),
		shrink: float32(1 - lr*wd),
		step:   float32(lr / o.bc1),
		isq2:   float32(1 / math.Sqrt(o.bc2)),
		eps:    float32(o.cfg.Eps),
	}
}

// sgd32 applies one SGD step to every entry j in float32 arithmetic:
// d = g gscale + wd p, then with momentum (m non-nil) d += mu m and m = d,
// then p -= lr d. As adamW32, it never fuses a multiply-add.
func sgd32(p, g, m []float32, mu, wd, lr, gscale float32) {
	n := len(p)
	g = g[:n]
	if m == nil {
		for j := range p {
			d := float32(g[j]*gscale) + float32(wd*p[j])
			p[j] -= float32(lr * d)
		}
		return
	}
	m = m[:n]
	for j := range p {
		d := float32(g[j]*gscale) + float32(wd*p[j])
		d += float32(mu * m[j])
		m[j] = d
		p[j] -= float32(lr * d)
	}
}

// OptimizerState is an Optimizer's state as plain values, for checkpoints.
type OptimizerState[T Float] struct {
	Kind string `json:"kind"`
	// Step is the number of steps taken.
	Step int64 `json:"step"`
	// M holds the SGD momentum buffers or the AdamW first moments, V the
	// AdamW second moments (nil for SGD); both are aligned with the
	// network's Params, with nil entries for frozen parameters (and for
	// every parameter of SGD without momentum).
	M [][]T `json:"m"`
	V [][]T `json:"v,omitempty"`
	// Multipliers are the per-parameter learning-rate multipliers.
	Multipliers []float64 `json:"multipliers"`
}

// State returns a copy of the optimiser's state.
func (o *Optimizer[T]) State() OptimizerState[T] {
	cp := func(src [][]T) [][]T {
		if src == nil {
			return nil
		}
		dst := make([][]T, len(src))
		for i, s := range src {
			if s != nil {
				dst[i] = append([]T(nil), s...)
			}
		}
		return dst
	}
	return OptimizerState[T]{
		Kind:        o.cfg.Kind,
		Step:        o.step,
		M:           cp(o.m),
		V:           cp(o.v),
		Multipliers: append([]float64(nil), o.mult...),
	}
}

// SetState replaces the optimiser's state by s, which must come from an
// optimiser of the same kind over the same parameters. Errors wrap ErrSpec
// and leave the optimiser unchanged.
func (o *Optimizer[T]) SetState(s OptimizerState[T]) error {
	if s.Kind != o.cfg.Kind {
		return fmt.Errorf("%w: optimizer state of kind %q, optimizer is %q", ErrSpec, s.Kind, o.cfg.Kind)
	}
	if s.Step < 0 {
		return fmt.Errorf("%w: optimizer state step %d is negative", ErrSpec, s.Step)
	}
	if len(s.Multipliers) != len(o.mult) {
		return fmt.Errorf("%w: optimizer state has %d multipliers, want %d", ErrSpec, len(s.Multipliers), len(o.mult))
	}
	match := func(name string, dst, src [][]T) error {
		if dst == nil {
			if src != nil {
				return fmt.Errorf("%w: optimizer state has %s buffers this optimizer does not use", ErrSpec, name)
			}
			return nil
		}
		if len(src) != len(dst) {
			return fmt.Errorf("%w: optimizer state has %d %s buffers, want %d", ErrSpec, len(src), name, len(dst))
		}
		for i := range dst {
			if len(src[i]) != len(dst[i]) {
				return fmt.Errorf("%w: optimizer state %s buffer %d has %d values, want %d", ErrSpec, name, i, len(src[i]), len(dst[i]))
			}
		}
		return nil
	}
	if err := match("m", o.m, s.M); err != nil {
		return err
	}
	if err := match("v", o.v, s.V); err != nil {
		return err
	}
	for i, v := range s.Multipliers {
		if !(v > 0) || math.IsInf(v, 0) {
			return fmt.Errorf("%w: optimizer state multiplier %d is %v", ErrSpec, i, v)
		}
	}
	for i := range o.m {
		copy(o.m[i], s.M[i])
	}
	for i := range o.v {
		copy(o.v[i], s.V[i])
	}
	copy(o.mult, s.Multipliers)
	o.step = s.Step
	return nil
}

// LR is the warm-up + cosine schedule: base * step / warmup for step <
// warmup (linear from 0), then base * (1 + cos(pi p)) / 2 with p = (step -
// warmup) / (total - warmup), decaying to 0 at step total; 0 from then
// on. It is the schedule of Hugging Face's
// get_cosine_schedule_with_warmup (with its default half cycle), whose
// first warm-up step has learning rate 0. Steps count from 0.
func LR(step, total, warmup int, base float64) float64 {
	if step < 0 || step >= total {
		return 0
	}
	if step < warmup {
		return base * float64(step) / float64(warmup)
	}
	p := float64(step-warmup) / float64(max(1, total-warmup))
	return base * 0.5 * (1 + math.Cos(math.Pi*p))
}

// GlobalNorm returns the Euclidean norm of all the gradients together,
// accumulated in float64 (nil entries are skipped).
func GlobalNorm[T Float](grads [][]T) float64 {
	var s float64
	for _, g := range grads {
		s += dot(g, g)
	}
	return math.Sqrt(s)
}

// ClipGlobalNorm scales every gradient by maxNorm / norm when their global
// norm exceeds maxNorm (> 0), so that it becomes maxNorm, and returns the
// norm before clipping (as torch.nn.utils.clip_grad_norm_, without its
// 1e-6 in the denominator).
func ClipGlobalNorm[T Float](grads [][]T, maxNorm float64) float64 {
	norm := GlobalNorm(grads)
	if maxNorm > 0 && norm > maxNorm {
		c := maxNorm / norm
		for _, g := range grads {
			for j, v := range g {
				g[j] = T(float64(v) * c)
			}
		}
	}
	return norm
}
