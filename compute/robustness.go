package compute

import (
	"math"
	"math/rand/v2"
)

// LayerRobustness measures how much the task score drops when one linear
// layer's effective weight W = S + R is perturbed: for each linear layer
// (in the order of LinearLayers) and each of draws draws, W is replaced by
// the dense W + E with E = eps ||W||_F G / ||G||_F, G a matrix of
// independent standard normals, the bias kept. drops[k][e] is the mean
// over the draws of example e's score drop, clean minus perturbed, the
// score of an example being 1 when its first largest logit is its class
// (else 0) for a classifier, minus its squared error averaged over the
// outputs for a regressor; the mean over the examples is the drop of
// Score. A classifier's drops are multiples of 1/draws, so the layer's
// mean drop resolves 1/(n draws). G is drawn from the PCG stream (seed, a
// stream of the layer's position k and the draw r), so networks whose
// layers have the same shapes get the same directions. clean, when not
// nil, holds the network's outputs on x (n x Outputs) as Forward gives
// them on chunks of 256 rows from row 0 (NetworkForward's): the clean
// scores are taken from it instead of another forward pass. net is not
// modified (the perturbed layers live in a copy). Errors wrap ErrTarget.
//
// Cost. The layers before the perturbed one see the same inputs in every
// draw, so their outputs are computed once (a clean pass that keeps every
// linear layer's input, for up to robustnessCache values at a time) and
// each draw runs the network from the perturbed layer on, on chunks of
// 256 rows as Forward would: the result has the bits of a full forward
// per draw. A float64 classifier's perturbed passes run in float32
// (robustnessMixed), each example whose float32 logits are near a tie
// re-decided in float64: the scores are float64's.
func LayerRobustness[T Float](net *Network[T], x, target, clean []T, n int, eps float64, draws int, seed uint64, ws *Workspace[T]) (drops [][]float64, err error) {
	return layerRobustness(net, x, target, clean, n, eps, draws, seed, ws, true)
}

// layerRobustness is LayerRobustness; without mixed every pass runs in T.
func layerRobustness[T Float](net *Network[T], x, target, clean []T, n int, eps float64, draws int, seed uint64, ws *Workspace[T], mixed bool) (drops [][]float64, err error) {
	checkLen(x, n*net.Inputs())
	if clean != nil {
		checkLen(clean, n*net.Outputs())
	}
	if err := net.CheckTargets(target, n); err != nil {
		return nil, err
	}
	lin := LinearLayers(net)
	drops = make([][]float64, len(lin))
	for k := range drops {
		drops[k] = make([]float64, n)
	}
	tw, c := 1, net.Outputs() // target values and outputs per row
	if net.spec.Task == TaskRegression {
		tw = c
	}
	saved := 0 // values of the linear layers' inputs per row
	for _, l := range lin {
		saved += net.layers[l].in
	}
	block := max(metricChunk, robustnessCache/max(saved, 1)/metricChunk*metricChunk)
	in := net.Inputs()
	rb := &robustness[T]{work: CloneNetwork(net), lin: lin, eps: eps, draws: draws, seed: seed, ws: ws}
	if n64, ok := any(net).(*Network[float64]); ok && mixed && net.spec.Task == TaskClassification {
		rb.mixed = newRobustnessMixed(n64)
	}
	for b0 := 0; b0 < n; b0 += block {
		bn := min(block, n-b0)
		var cb []T
		if clean != nil {
			cb = clean[b0*c : (b0+bn)*c]
		}
		rb.block(x[b0*in:(b0+bn)*in], target[b0*tw:(b0+bn)*tw], cb, bn, drops, b0)
	}
	for _, row := range drops {
		for e := range row {
			row[e] /= float64(max(draws, 1))
		}
	}
	return drops, nil
}

// robustnessCache bounds the values of the clean pass LayerRobustness
// keeps at once (the inputs of every linear layer for a block of rows):
// 64 MiB in float64 (a variable for the tests).
var robustnessCache = 1 << 23

// robustness is one LayerRobustness call.
type robustness[T Float] struct {
	// work is a copy of the network whose linear layers lin are perturbed
	// one at a time and restored.
	work  *Network[T]
	lin   []int
	eps   float64
	draws int
	seed  uint64
	ws    *Workspace[T]
	mixed *robustnessMixed // nil: every pass in T
}

// block adds, for the bn rows x of one block (rows b0... of the data),
// the sums over the draws of each example's score drop into
// drops[k][b0+e]. clean holds the block's outputs (nil: computed).
func (rb *robustness[T]) block(x, target, clean []T, bn int, drops [][]float64, b0 int) {
	work, ws := rb.work, rb.ws
	c, in := work.Outputs(), work.Inputs()
	tw := len(target) / max(bn, 1)
	m := min(metricChunk, max(bn, 1))
	y := make([]T, m*c)
	// The clean pass: every linear layer's input and each example's score.
	if clean == nil {
		clean = make([]T, bn*c)
		for r0 := 0; r0 < bn; r0 += metricChunk {
			g := min(metricChunk, bn-r0)
			work.Forward(clean[r0*c:(r0+g)*c], x[r0*in:(r0+g)*in], g, ws)
		}
	}
	cleanScore := make([]float64, bn)
	scoreRows(cleanScore, work, clean, target)
	var acts [][]T
	if rb.mixed != nil {
		rb.mixed.clean(any(x).([]float64), any(clean).([]float64), bn, rb.lin)
	} else {
		acts = layerInputs(work, rb.lin, x, bn, ws)
	}
	pert := make([]float64, m)
	for k, l := range rb.lin {
		orig := work.Operator(l)
		out, win := orig.Shape()
		ln := newLayerNoise(orig)
		noisy := make([]T, out*win)
		row := drops[k][b0 : b0+bn]
		for r := range rb.draws {
			noisyWeight(noisy, ln, rb.eps, rb.seed, k, r)
			if err := work.SetOperator(l, NewDenseOp(out, win, noisy)); err != nil {
				panic(err) // same shape: cannot fail
			}
			if rb.mixed != nil {
				rb.mixed.perturbed(pert, any(work).(*Network[float64]), l, k, any(noisy).([]float64), any(x).([]float64), any(target).([]float64), bn, cleanScore, row)
				continue
			}
			for r0 := 0; r0 < bn; r0 += metricChunk {
				m := min(metricChunk, bn-r0)
				work.forwardFrom(l, y[:m*c], acts[k][r0*win:(r0+m)*win], m, ws, nil)
				scoreRows(pert[:m], work, y[:m*c], target[r0*tw:(r0+m)*tw])
				for e := range m {
					row[r0+e] += cleanScore[r0+e] - pert[e]
				}
			}
		}
		if err := work.SetOperator(l, orig); err != nil {
			panic(err)
		}
	}
}

// layerNoise draws the perturbed weights of one linear layer (see
// LayerRobustness).
type layerNoise struct {
	w, g []float64 // W (out x in, row-major) and the last draw's G
	wn   float64   // ||W||_F
}

func newLayerNoise[T Float](op Operator[T]) *layerNoise {
	out, in := op.Shape()
	w := make([]float64, out*in)
	op.DenseTo(w)
	return &layerNoise{w: w, g: make([]float64, out*in), wn: math.Sqrt(dot(w, w))}
}

// noisyWeight sets dst to W + E of draw r for the k-th linear layer: G
// from the PCG stream (seed, a stream of k and r), E = eps ||W||_F G /
// ||G||_F (0 for a zero G), each value W + E rounded to T once.
func noisyWeight[T Float](dst []T, ln *layerNoise, eps float64, seed uint64, k, r int) {
	rng := rand.New(rand.NewPCG(seed, robustnessBase|uint64(k)<<20|uint64(r)))
	for i := range ln.g {
		ln.g[i] = rng.NormFloat64()
	}
	s := 0.0
	if gn := math.Sqrt(dot(ln.g, ln.g)); gn > 0 {
		s = eps * ln.wn / gn
	}
	for i, w := range ln.w {
		dst[i] = T(w + s*ln.g[i])
	}
}

// layerInputs runs net on the bn rows x in chunks of metricChunk rows, as
// Forward does, and returns the input of each linear layer lin[k] (bn
// rows each).
func layerInputs[T Float](net *Network[T], lin []int, x []T, bn int, ws *Workspace[T]) [][]T {
	acts := make([][]T, len(lin))
	pos := map[int]int{}
	for k, l := range lin {
		acts[k] = make([]T, bn*net.layers[l].in)
		pos[l] = k
	}
	c, in := net.Outputs(), net.Inputs()
	y := make([]T, min(metricChunk, max(bn, 1))*c)
	for r0 := 0; r0 < bn; r0 += metricChunk {
		g := min(metricChunk, bn-r0)
		net.forwardFrom(0, y[:g*c], x[r0*in:(r0+g)*in], g, ws, func(l int, u []T) {
			if k, ok := pos[l]; ok {
				w := net.layers[l].in
				copy(acts[k][r0*w:(r0+g)*w], u)
			}
		})
	}
	return acts
}

// robustnessMixed runs the perturbed passes of a float64 classifier in
// float32 and keeps float64's scores. A float32 pass decides an example
// (its first largest logit) when the gap between its largest and its
// second largest logit exceeds tau = 32 delta + 2^-12 max_j |z_j|, with
// delta the largest difference between the float32 and the float64 clean
// logits of the block: a float32 logit then lies within tau / 2 of the
// float64 one by a margin of 16 times the error seen on the clean pass
// (the perturbed weights have the clean ones' scale, E being a tenth of
// W at the default eps) plus a relative 2^-13, about 1000 float32
// roundings, so both passes rank the two logits alike. Any other example
// (a near tie, a non-finite logit) is re-run in float64 from the network's
// input with the same perturbed weights. So the scores are float64's,
// unless a float64 pass itself ties within its own rounding, where the
// row order of its GEMMs may decide.
type robustnessMixed struct {
	net32 *Network[float32]
	ws32  *Workspace[float32]
	ws64  *Workspace[float64]
	// x32 is the block's input, acts32[k] the float32 input of linear
	// layer k on it; delta the clean passes' largest logit difference.
	x32    []float32
	acts32 [][]float32
	delta  float64
	noisy  []float32
}

func newRobustnessMixed(net *Network[float64]) *robustnessMixed {
	return &robustnessMixed{net32: ConvertNetwork[float32](net), ws32: NewWorkspace[float32](), ws64: NewWorkspace[float64]()}
}

// clean runs the float32 clean pass on the bn rows x whose float64
// outputs are clean64, keeping every linear layer's input and the
// largest logit difference.
func (mx *robustnessMixed) clean(x, clean64 []float64, bn int, lin []int) {
	mx.x32 = convertSlice(mx.x32, x)
	mx.acts32 = layerInputs(mx.net32, lin, mx.x32, bn, mx.ws32)
	c, in := mx.net32.Outputs(), mx.net32.Inputs()
	y := make([]float32, min(metricChunk, max(bn, 1))*c)
	mx.delta = 0
	for r0 := 0; r0 < bn; r0 += metricChunk {
		g := min(metricChunk, bn-r0)
		mx.net32.Forward(y[:g*c], mx.x32[r0*in:(r0+g)*in], g, mx.ws32)
		for i, v := range y[:g*c] {
			d := math.Abs(float64(v) - clean64[r0*c+i])
			if !(d <= mx.delta) { // a NaN too
				mx.delta = d
			}
		}
	}
	if math.IsNaN(mx.delta) {
		mx.delta = math.Inf(1)
	}
}

// perturbed scores the block with linear layer l (the k-th) perturbed
// to noisy64 (net64 has it set, and its other layers are clean) and adds
// each example's drop to row: float32 passes from layer l on, float64
// re-runs for the rows they do not decide.
func (mx *robustnessMixed) perturbed(pert []float64, net64 *Network[float64], l, k int, noisy64, x, target []float64, bn int, cleanScore, row []float64) {
	out, win := net64.layers[l].out, net64.layers[l].in
	mx.noisy = convertSlice(mx.noisy, noisy64)
	orig := mx.net32.Operator(l)
	if err := mx.net32.SetOperator(l, NewDenseOp(out, win, mx.noisy)); err != nil {
		panic(err)
	}
	defer func() {
		if err := mx.net32.SetOperator(l, orig); err != nil {
			panic(err)
		}
	}()
	c, in := net64.Outputs(), net64.Inputs()
	m := min(metricChunk, max(bn, 1))
	y := make([]float32, m*c)
	var redo []int
	for r0 := 0; r0 < bn; r0 += metricChunk {
		g := min(metricChunk, bn-r0)
		mx.net32.forwardFrom(l, y[:g*c], mx.acts32[k][r0*win:(r0+g)*win], g, mx.ws32, nil)
		for e := range g {
			arg, ok := decide32(y[e*c:(e+1)*c], mx.delta)
			if !ok {
				redo = append(redo, r0+e)
				continue
			}
			pert[e] = 0
			if arg == int(target[r0+e]) {
				pert[e] = 1
			}
		}
		// Re-run the undecided rows of this chunk in float64.
		if len(redo) > 0 {
			xg := make([]float64, len(redo)*in)
			for j, i := range redo {
				copy(xg[j*in:(j+1)*in], x[i*in:(i+1)*in])
			}
			yg := make([]float64, len(redo)*c)
			net64.Forward(yg, xg, len(redo), mx.ws64)
			for j, i := range redo {
				pert[i-r0] = 0
				if argmax(yg[j*c:(j+1)*c]) == int(target[i]) {
					pert[i-r0] = 1
				}
			}
			redo = redo[:0]
		}
		for e := range g {
			row[r0+e] += cleanScore[r0+e] - pert[e]
		}
	}
}

// decide32 returns the index of the first largest of the float32 logits
// z and whether it is certain to be float64's too (see robustnessMixed):
// every logit finite and the gap to the second largest above
// 32 delta + 2^-12 max_j |z_j|.
func decide32(z []float32, delta float64) (int, bool) {
	top, scale := 0, 0.0
	for j, v := range z {
		f := float64(v)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return 0, false
		}
		scale = max(scale, math.Abs(f))
		if v > z[top] {
			top = j
		}
	}
	second := math.Inf(-1)
	for j, v := range z {
		if j != top {
			second = max(second, float64(v))
		}
	}
	return top, float64(z[top])-second > 32*delta+0x1p-12*scale
}

// convertSlice returns src converted to U, in dst when it has room.
func convertSlice[U, T Float](dst []U, src []T) []U {
	if cap(dst) < len(src) {
		dst = make([]U, len(src))
	}
	dst = dst[:len(src)]
	for i, v := range src {
		dst[i] = U(v)
	}
	return dst
}
