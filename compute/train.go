package compute

import (
	"fmt"
	"math"
	"runtime"
	"sync"
)

// Learning-rate scaling modes of TrainerConfig.FactorLR.
const (
	// FactorLRAuto applies the structured-muP multipliers (LRMultipliers)
	// to the layers initialised from scratch (Network.FromScratch) and 1
	// to the others (converted or loaded layers).
	FactorLRAuto = "auto"
	// FactorLRMuP applies the multipliers to every layer.
	FactorLRMuP = "mup"
	// FactorLRNone uses the base learning rate for every parameter.
	FactorLRNone = "none"
)

// DefaultShards is the default number of batch shards of a Trainer.
const DefaultShards = 2

// TrainerConfig configures a Trainer.
type TrainerConfig struct {
	Optimizer OptimizerConfig `json:"optimizer"`
	// Shards is the number of contiguous row blocks each batch is split
	// into, each computed on its own goroutine. It is part of the
	// numerical definition of a step (gradients are summed shard by
	// shard), never derived from the CPU count: the same Shards and seed
	// give the same bytes on any machine. 0 means DefaultShards.
	Shards int `json:"shards"`
	// ClipNorm > 0 scales the gradients down to this global norm when
	// they exceed it; 0 disables clipping.
	ClipNorm float64 `json:"clip_norm"`
	// ResidualL2 is lambda of the penalty lambda * sum ||p||^2 over the
	// correction parameters (Network.ResidualPenalty).
	ResidualL2 float64 `json:"residual_l2"`
	// Retract re-projects the trunk of every layer whose family can
	// (Retracter: the orthogonal polar retraction) after each step.
	Retract bool `json:"retract"`
	// FactorLR is FactorLRAuto (also when empty), FactorLRMuP or
	// FactorLRNone.
	FactorLR string `json:"factor_lr"`
}

// DefaultTrainerConfig returns AdamW (DefaultOptimizerConfig), two
// shards, clipping at norm 1, no residual penalty, no retraction and the
// automatic factor learning rates.
func DefaultTrainerConfig() TrainerConfig {
	return TrainerConfig{Optimizer: DefaultOptimizerConfig(), Shards: DefaultShards, ClipNorm: 1, FactorLR: FactorLRAuto}
}

// StepStats reports one training step.
type StepStats struct {
	// Loss is the mean loss over the batch plus the residual penalty.
	Loss float64
	// Penalty is the residual penalty included in Loss.
	Penalty float64
	// GradNorms holds, for each linear layer in order, the norm of the
	// gradient of Loss with respect to the layer's parameters (weight or
	// factors, and bias), before clipping. The slice belongs to the
	// Trainer and is overwritten by the next Step.
	GradNorms []float64
	// GlobalNorm is the norm of the whole gradient before clipping.
	GlobalNorm float64
	// Clipped reports whether the gradient was scaled down to ClipNorm.
	Clipped bool
}

// Trainer runs optimisation steps on a Network. A step shards the batch
// over Shards goroutines (persistent workers, one per shard after the
// first, which runs on the caller's goroutine), each computing the
// gradient of its fixed contiguous block of rows into its own buffers;
// the buffers are then summed in shard order, the residual penalty added,
// the gradient clipped and the optimiser applied, those elementwise phases
// split in fixed chunks over max(Shards, GOMAXPROCS at NewTrainer)
// goroutines (so a single shard still updates on every core). Every
// chunk's result is independent of the goroutine that computes it, so the
// result is a deterministic function of the parameters, the batch and
// Shards, independent of scheduling and GOMAXPROCS.
//
// Once warm (after the first steps have grown the workspaces) Step
// allocates nothing itself. Two things may: gonum's GEMM (the default
// backend), which for products of at least 4 blocks of 64 x 64 outputs
// starts goroutines of its own, and the circulant and toeplitz families,
// which take FFT scratch from a sync.Pool. Retraction allocates too (a
// polar factorisation). With the openblas backend the GEMMs allocate
// nothing; with Shards > 1 a step limits OpenBLAS to one thread per call
// (SetBLASThreads, process-wide) while the shards compute, and restores
// the setting after.
//
// The Trainer owns the network while it lives: do not change the network's
// structure (SetOperator) between steps. A Trainer is not safe for
// concurrent use. Close stops the workers (so does the garbage collector
// for a Trainer no longer referenced).
type Trainer[T Float] struct {
	c *trainerCore[T]
}

type trainerPhase uint8

const (
	phaseGrad trainerPhase = iota
	phaseReduce
	phaseUpdate
)

// chunkSize is the number of parameter entries of one elementwise task.
const chunkSize = 1 << 14

type paramChunk struct{ p, lo, hi int }

// trainerCore is what the worker goroutines reference, so that an
// abandoned Trainer can be collected and its workers stopped.
type trainerCore[T Float] struct {
	net    *Network[T]
	cfg    TrainerConfig
	opt    *Optimizer[T]
	shards int
	// workers >= shards run the elementwise phases; worker s < shards
	// also computes shard s's gradient.
	workers int
	ws      []*Workspace[T]
	grads   [][][]T // [shard][param], nil for frozen parameters
	losses  []float64

	chunks    []paramChunk
	sums      []float64 // per chunk: sum of squared gradients
	pens      []float64 // per chunk: sum of squared correction values
	layerOf   []int     // per parameter: ordinal of its linear layer, or -1
	gradNorms []float64 // per linear layer
	isCorr    []bool    // per parameter: a trainable correction

	// The current job.
	phase     trainerPhase
	x, target []T
	n         int
	lr        float64
	gscale    float64

	start  []chan struct{}
	done   sync.WaitGroup
	panics []any
	once   sync.Once
	closed bool
}

// NewTrainer returns a trainer of net with the given configuration and a
// fresh optimiser. Errors wrap ErrSpec.
func NewTrainer[T Float](net *Network[T], cfg TrainerConfig) (*Trainer[T], error) {
	if cfg.Shards == 0 {
		cfg.Shards = DefaultShards
	}
	if cfg.Shards < 1 || cfg.Shards > 256 {
		return nil, fmt.Errorf("%w: trainer shards %d must be in [1, 256]", ErrSpec, cfg.Shards)
	}
	if !(cfg.ClipNorm >= 0) || math.IsInf(cfg.ClipNorm, 0) {
		return nil, fmt.Errorf("%w: clip norm %v must be finite and >= 0", ErrSpec, cfg.ClipNorm)
	}
	if !(cfg.ResidualL2 >= 0) || math.IsInf(cfg.ResidualL2, 0) {
		return nil, fmt.Errorf("%w: residual L2 %v must be finite and >= 0", ErrSpec, cfg.ResidualL2)
	}
	params := net.Params()
	var mult []float64
	switch cfg.FactorLR {
	case "", FactorLRAuto:
		cfg.FactorLR = FactorLRAuto
		mult = LRMultipliers(net)
		for i, p := range params {
			if !net.FromScratch(p.Layer) {
				mult[i] = 1
			}
		}
	case FactorLRMuP:
		mult = LRMultipliers(net)
	case FactorLRNone:
	default:
		return nil, fmt.Errorf("%w: factor learning rate %q (want %s, %s or %s)", ErrSpec, cfg.FactorLR, FactorLRAuto, FactorLRMuP, FactorLRNone)
	}
	opt, err := NewOptimizer(cfg.Optimizer, params, mult)
	if err != nil {
		return nil, err
	}
	workers := max(cfg.Shards, min(runtime.GOMAXPROCS(0), 256))
	c := &trainerCore[T]{
		net:     net,
		cfg:     cfg,
		opt:     opt,
		shards:  cfg.Shards,
		workers: workers,
		ws:      make([]*Workspace[T], cfg.Shards),
		grads:   make([][][]T, cfg.Shards),
		losses:  make([]float64, cfg.Shards),
		panics:  make([]any, workers),
		start:   make([]chan struct{}, workers),
		isCorr:  make([]bool, len(params)),
	}
	for s := range c.shards {
		c.ws[s] = NewWorkspace[T]()
		c.ws[s].serial = c.shards > 1
		c.grads[s] = net.NewGrads()
	}
	c.layerOf = make([]int, len(params))
	ordinal := make([]int, net.NumLayers())
	k := 0
	for i := range net.layers {
		ordinal[i] = -1
		if net.layers[i].kind == layerLinear {
			ordinal[i] = k
			k++
		}
	}
	c.gradNorms = make([]float64, k)
	for i, p := range params {
		c.layerOf[i] = ordinal[p.Layer]
		if p.Frozen {
			continue
		}
		c.isCorr[i] = p.Role == RoleCorrection
		for lo := 0; lo < len(p.Data); lo += chunkSize {
			c.chunks = append(c.chunks, paramChunk{p: i, lo: lo, hi: min(lo+chunkSize, len(p.Data))})
		}
	}
	c.sums = make([]float64, len(c.chunks))
	c.pens = make([]float64, len(c.chunks))
	for s := 1; s < c.workers; s++ {
		c.start[s] = make(chan struct{}, 1)
		go c.worker(s)
	}
	t := &Trainer[T]{c: c}
	runtime.AddCleanup(t, func(c *trainerCore[T]) { c.stop() }, c)
	return t, nil
}

// Close stops the worker goroutines. The Trainer must not be used after.
func (t *Trainer[T]) Close() { t.c.stop() }

func (c *trainerCore[T]) stop() {
	c.once.Do(func() {
		c.closed = true
		for _, ch := range c.start[1:] {
			close(ch)
		}
	})
}

// Network returns the network being trained.
func (t *Trainer[T]) Network() *Network[T] { return t.c.net }

// Optimizer returns the optimiser, whose State and SetState checkpoint
// and restore a run.
func (t *Trainer[T]) Optimizer() *Optimizer[T] { return t.c.opt }

// Config returns the configuration, with defaults resolved.
func (t *Trainer[T]) Config() TrainerConfig { return t.c.cfg }

// Step takes one optimisation step on the batch x (n x Inputs, n >= 1)
// with targets target (see Network.Loss) and the base learning rate lr:
// the mean-loss gradient plus the residual penalty's, clipped to the
// global norm ClipNorm, applied by the optimiser with each parameter's
// multiplier, then the retraction when enabled. Invalid targets return an
// error wrapping ErrTarget, and a loss or gradient that is not finite one
// wrapping ErrNotFinite, and a negative or non-finite lr one wrapping
// ErrSpec; in these cases the parameters and the optimiser are left
// unchanged. A retraction error is returned after the update.
func (t *Trainer[T]) Step(x, target []T, n int, lr float64) (StepStats, error) {
	c := t.c
	// The cleanup that stops the workers must not run while a step is
	// using them.
	defer runtime.KeepAlive(t)
	if c.closed {
		panic("compute: Trainer.Step after Close")
	}
	net := c.net
	if n < 1 {
		panic(ErrShape)
	}
	checkLen(x, n*net.Inputs())
	if !(lr >= 0) || math.IsInf(lr, 0) {
		return StepStats{}, fmt.Errorf("%w: learning rate %v must be finite and >= 0", ErrSpec, lr)
	}
	if err := net.CheckTargets(target, n); err != nil {
		return StepStats{}, err
	}
	c.x, c.target, c.n = x, target, n
	if c.shards > 1 {
		// Each shard's GEMMs run on its own goroutine: a multi-threaded
		// BLAS (OpenBLAS) would put two threads on each core.
		enterSerialBLAS()
		defer exitSerialBLAS()
	}
	c.run(phaseGrad)
	c.x, c.target = nil, nil
	var st StepStats
	for _, l := range c.losses {
		st.Loss += l
	}

	c.run(phaseReduce)
	clear(c.gradNorms)
	var total, pen float64
	for k, ch := range c.chunks {
		total += c.sums[k]
		pen += c.pens[k]
		if l := c.layerOf[ch.p]; l >= 0 {
			c.gradNorms[l] += c.sums[k]
		}
	}
	for l, v := range c.gradNorms {
		c.gradNorms[l] = math.Sqrt(v)
	}
	st.Penalty = c.cfg.ResidualL2 * pen
	st.Loss += st.Penalty
	st.GlobalNorm = math.Sqrt(total)
	st.GradNorms = c.gradNorms
	if !isFinite(st.Loss) || !isFinite(st.GlobalNorm) {
		return st, fmt.Errorf("%w: training step %d: loss %v, gradient norm %v", ErrNotFinite, c.opt.step+1, st.Loss, st.GlobalNorm)
	}

	c.gscale = 1
	if c.cfg.ClipNorm > 0 && st.GlobalNorm > c.cfg.ClipNorm {
		c.gscale = c.cfg.ClipNorm / st.GlobalNorm
		st.Clipped = true
	}
	c.lr = lr
	c.opt.begin()
	c.run(phaseUpdate)
	if c.cfg.Retract {
		if err := net.Retract(); err != nil {
			return st, err
		}
	}
	return st, nil
}

func isFinite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// run executes phase on every worker, worker 0 on the calling goroutine,
// and re-raises there the first panic of a worker.
func (c *trainerCore[T]) run(phase trainerPhase) {
	c.phase = phase
	c.done.Add(c.workers - 1)
	for s := 1; s < c.workers; s++ {
		c.start[s] <- struct{}{}
	}
	c.work(0)
	c.done.Wait()
	for _, p := range c.panics {
		if p != nil {
			clear(c.panics)
			panic(p)
		}
	}
}

func (c *trainerCore[T]) worker(s int) {
	for range c.start[s] {
		c.work(s)
		c.done.Done()
	}
}

// work runs the current phase's share of worker s.
func (c *trainerCore[T]) work(s int) {
	defer func() {
		if r := recover(); r != nil {
			c.panics[s] = r
		}
	}()
	switch c.phase {
	case phaseGrad:
		if s < c.shards {
			c.gradShard(s)
		}
	case phaseReduce:
		for k := s; k < len(c.chunks); k += c.workers {
			c.reduceChunk(k)
		}
	case phaseUpdate:
		params := c.net.params
		g0 := c.grads[0]
		for k := s; k < len(c.chunks); k += c.workers {
			ch := c.chunks[k]
			c.opt.update(ch.p, params[ch.p].Data, g0[ch.p], ch.lo, ch.hi, c.lr, c.gscale)
		}
	}
}

// gradShard computes shard s's rows' contribution to the mean loss and
// its gradient.
func (c *trainerCore[T]) gradShard(s int) {
	for _, g := range c.grads[s] {
		clear(g)
	}
	c.losses[s] = 0
	lo, hi := s*c.n/c.shards, (s+1)*c.n/c.shards
	if hi == lo {
		return
	}
	net := c.net
	in := net.Inputs()
	tw := 1 // target values per row
	if net.spec.Task == TaskRegression {
		tw = net.Outputs()
	}
	c.losses[s] = net.lossGrad(c.x[lo*in:hi*in], c.target[lo*tw:hi*tw], hi-lo, c.n, c.grads[s], c.ws[s])
}

// reduceChunk sums the shards' gradients of chunk k into shard 0's, in
// shard order, adds the residual penalty's gradient, and records the
// chunk's squared gradient norm and penalty. Without a penalty the last
// addition and the sum of squares are one pass.
func (c *trainerCore[T]) reduceChunk(k int) {
	ch := c.chunks[k]
	g := c.grads[0][ch.p][ch.lo:ch.hi]
	shardGrad := func(s int) []T { return c.grads[s][ch.p][ch.lo:ch.hi] }
	for s := 1; s < c.shards-1; s++ {
		addInto(g, shardGrad(s))
	}
	c.pens[k] = 0
	lambda := c.cfg.ResidualL2
	if lambda == 0 || !c.isCorr[ch.p] {
		var last []T
		if c.shards > 1 {
			last = shardGrad(c.shards - 1)
		}
		c.sums[k] = addSumSquares(g, last)
		return
	}
	if c.shards > 1 {
		addInto(g, shardGrad(c.shards-1))
	}
	p := c.net.params[ch.p].Data[ch.lo:ch.hi]
	c.pens[k] = sumSquares(p)
	for j, v := range p {
		g[j] += T(2 * lambda * float64(v))
	}
	c.sums[k] = sumSquares(g)
}

// addInto adds src into dst entry by entry.
func addInto[T Float](dst, src []T) {
	src = src[:len(dst)]
	for j, v := range src {
		dst[j] += v
	}
}

// sumSquares returns the sum of x[j]^2 accumulated in float64: for
// float32 by sumSquares32's definition (eight partial sums), for float64
// in order.
func sumSquares[T Float](x []T) float64 {
	if x32, ok := any(x).([]float32); ok {
		return sumSquares32(x32)
	}
	return dot(x, x)
}

// addSumSquares adds src (nil: nothing) into dst and returns
// sumSquares(dst).
func addSumSquares[T Float](dst, src []T) float64 {
	if d32, ok := any(dst).([]float32); ok {
		return addSumSquares32(d32, any(src).([]float32))
	}
	if src != nil {
		addInto(dst, src)
	}
	return dot(dst, dst)
}
