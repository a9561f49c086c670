package compute

import (
	"math"
	"math/rand/v2"

	"gonum.org/v1/gonum/mat"
)

// This file holds the model metrics validate compares between a baseline
// and a candidate: the conditioning of the input-output Jacobian, the
// sensitivity to input noise, the robustness to weight noise, the share of
// each layer's output carried by its correction, per-batch gradient norms
// and the cost of a forward pass. Every function takes the network's
// inputs as n rows (row-major) and leaves the network unchanged.
//
// Raw inputs. A model may standardise its inputs before its first layer,
// x_net = (x - mean) / std. Functions that differentiate or perturb with
// respect to the input take scale (the per-feature 1 / std, nil for none):
// their Jacobians are J_net diag(scale) and their perturbations d are
// added to the raw input, so x_net moves by d * scale. With the same
// definition for every model, models with different standardisations are
// compared on the same raw inputs.

// metricChunk bounds the rows of one forward pass inside the metrics.
const metricChunk = 256

// Random streams of the metrics, so that a seed drives each draw
// independently of the others.
const (
	perturbStream  uint64 = 0x9E27_0B5E
	robustnessBase uint64 = 0x90B5_7000_0000_0000
)

// jacobianGroup is the number of rows whose Jacobians are held at once.
const jacobianGroup = 16

// LinearLayers returns the indices (into the network's layers) of its
// linear layers, in forward order. The k-th entry is the layer that
// EffectiveGradNorms and the functions of this file report k-th.
func LinearLayers[T Float](net *Network[T]) []int {
	var idx []int
	for i := range net.layers {
		if net.layers[i].kind == layerLinear {
			idx = append(idx, i)
		}
	}
	return idx
}

// SpectralCondition returns sigma_1 / sigma_k of the singular values sv
// (decreasing) of a rows x cols matrix, or +Inf when the matrix is
// numerically singular: sigma_k <= max(rows, cols) * eps * sigma_1, eps =
// 2^-52, the rank tolerance of LAPACK users and numpy.linalg.matrix_rank
// (below it sigma_k is rounding noise and the ratio means nothing). NaN
// for no values.
func SpectralCondition(sv []float64, rows, cols int) float64 {
	if len(sv) == 0 {
		return math.NaN()
	}
	lo, hi := sv[len(sv)-1], sv[0]
	if lo <= float64(max(rows, cols))*0x1p-52*hi {
		return math.Inf(1)
	}
	return hi / lo
}

// JacobianStats holds, for each input row, summaries of the singular
// values sigma_1 >= ... >= sigma_m, m = min(Outputs, Inputs), of the exact
// Jacobian J of the network's outputs (logits) with respect to the input.
type JacobianStats struct {
	// Condition is sigma_1 / sigma_m, +Inf when J is numerically singular
	// (see SpectralCondition).
	Condition []float64
	// LogSigmaStd is the population standard deviation of log sigma_k
	// over k, +Inf when J is numerically singular.
	LogSigmaStd []float64
}

// JacobianConditions returns the JacobianStats of the n rows of x (n x
// Inputs, in the network's input space) for the Jacobian J_net(x)
// diag(scale) with respect to the raw input (scale nil: J_net itself; see
// the file comment). J_net is computed exactly by backpropagation of every
// output (Network.InputJacobians) and its singular values by an SVD in
// float64. A network with one output has one singular value: condition 1
// (or +Inf when the gradient is 0) and LogSigmaStd 0.
func JacobianConditions[T Float](net *Network[T], x []T, n int, scale []float64, ws *Workspace[T]) JacobianStats {
	in, c := net.Inputs(), net.Outputs()
	checkLen(x, n*in)
	if scale != nil && len(scale) != in {
		panic(ErrShape)
	}
	st := JacobianStats{Condition: make([]float64, n), LogSigmaStd: make([]float64, n)}
	jac := make([]T, min(jacobianGroup, n)*c*in)
	j := mat.NewDense(c, in, nil)
	raw := j.RawMatrix().Data
	sv := make([]float64, min(c, in))
	logs := make([]float64, min(c, in))
	for e0 := 0; e0 < n; e0 += jacobianGroup {
		g := min(jacobianGroup, n-e0)
		net.InputJacobians(jac[:g*c*in], x[e0*in:(e0+g)*in], g, ws)
		for e := range g {
			for k, v := range jac[e*c*in : (e+1)*c*in] {
				raw[k] = float64(v)
				if scale != nil {
					raw[k] *= scale[k%in]
				}
			}
			sv = SingularValuesOf(j, sv)
			r := e0 + e
			st.Condition[r] = SpectralCondition(sv, c, in)
			if math.IsInf(st.Condition[r], 1) {
				st.LogSigmaStd[r] = math.Inf(1)
				continue
			}
			for k, s := range sv {
				logs[k] = math.Log(s)
			}
			st.LogSigmaStd[r] = Std(logs)
		}
	}
	return st
}

// Perturbation holds per-row results of PerturbationSensitivity.
type Perturbation struct {
	// Ratio is ||f(x+d) - f(x)|| / ||d|| (Euclidean norms; NaN when d is
	// 0, which happens only when every sigma is 0).
	Ratio []float64
	// Output is ||f(x)||.
	Output []float64
	// Flipped is 1 when the index of the largest output of f(x+d)
	// differs from that of f(x) (the first one on ties), else 0; always 0
	// for a network with one output.
	Flipped []float64
}

// PerturbationSensitivity measures how the outputs f of the network move
// under Gaussian input noise. For each row i of x (n x Inputs, in the
// network's input space) it draws z_i ~ N(0, I) and sets the raw
// perturbation d_i = level * sigma * z_i (elementwise: sigma holds the
// per-feature noise scale, typically the feature's standard deviation in
// the data, so level is the noise as a share of it). The network sees
// x_i + d_i * scale (scale nil: 1; see the file comment). The z_i are drawn
// in row order from the PCG stream (seed, a fixed stream), so the same
// seed, n and Inputs give every network the same noise.
func PerturbationSensitivity[T Float](net *Network[T], x []T, n int, sigma, scale []float64, level float64, seed uint64, ws *Workspace[T]) Perturbation {
	in, c := net.Inputs(), net.Outputs()
	checkLen(x, n*in)
	if len(sigma) != in || (scale != nil && len(scale) != in) {
		panic(ErrShape)
	}
	p := Perturbation{Ratio: make([]float64, n), Output: make([]float64, n), Flipped: make([]float64, n)}
	rng := rand.New(rand.NewPCG(seed, perturbStream))
	m := min(metricChunk, n)
	xn := make([]T, m*in)
	dn := make([]float64, m)
	y0 := make([]T, m*c)
	y1 := make([]T, m*c)
	for r0 := 0; r0 < n; r0 += metricChunk {
		g := min(metricChunk, n-r0)
		xs := x[r0*in : (r0+g)*in]
		for e := range g {
			var s float64
			for k := range in {
				d := level * sigma[k] * rng.NormFloat64()
				s += d * d
				if scale != nil {
					d *= scale[k]
				}
				xn[e*in+k] = T(float64(xs[e*in+k]) + d)
			}
			dn[e] = math.Sqrt(s)
		}
		net.Forward(y0[:g*c], xs, g, ws)
		net.Forward(y1[:g*c], xn[:g*in], g, ws)
		for e := range g {
			a, b := y0[e*c:(e+1)*c], y1[e*c:(e+1)*c]
			var num, den float64
			for k := range c {
				d := float64(b[k]) - float64(a[k])
				num += d * d
				den += float64(a[k]) * float64(a[k])
			}
			r := r0 + e
			p.Output[r] = math.Sqrt(den)
			if dn[e] == 0 {
				p.Ratio[r] = math.NaN()
			} else {
				p.Ratio[r] = math.Sqrt(num) / dn[e]
			}
			if c > 1 && argmax(a) != argmax(b) {
				p.Flipped[r] = 1
			}
		}
	}
	return p
}

// argmax returns the index of the first largest value of v (NaN never
// wins).
func argmax[T Float](v []T) int {
	k := 0
	for j, x := range v {
		if x > v[k] || (v[k] != v[k] && x == x) {
			k = j
		}
	}
	return k
}

// Score returns the network's task score on x (n x Inputs) and target
// (see Loss): the accuracy for a classifier (the first largest logit
// counts as the prediction), minus the mean squared error for a regressor,
// so that higher is better for both. Errors wrap ErrTarget.
func Score[T Float](net *Network[T], x, target []T, n int, ws *Workspace[T]) (float64, error) {
	checkLen(x, n*net.Inputs())
	if err := net.CheckTargets(target, n); err != nil {
		return 0, err
	}
	return score(net, x, target, n, ws), nil
}

func score[T Float](net *Network[T], x, target []T, n int, ws *Workspace[T]) float64 {
	in, c := net.Inputs(), net.Outputs()
	if n == 0 {
		return math.NaN()
	}
	y := make([]T, min(metricChunk, n)*c)
	var s float64
	for r0 := 0; r0 < n; r0 += metricChunk {
		g := min(metricChunk, n-r0)
		net.Forward(y[:g*c], x[r0*in:(r0+g)*in], g, ws)
		for e := range g {
			yr := y[e*c : (e+1)*c]
			if net.spec.Task == TaskClassification {
				if argmax(yr) == int(target[r0+e]) {
					s++
				}
				continue
			}
			for k, v := range yr {
				d := float64(v) - float64(target[(r0+e)*c+k])
				s -= d * d / float64(c)
			}
		}
	}
	return s / float64(n)
}

// LayerRobustness measures how much the task score (Score: accuracy, or
// minus the MSE) drops when one linear layer's effective weight W = S + R
// is perturbed: for each linear layer (in the order of LinearLayers) and
// each of draws draws, W is replaced by the dense W + E with E = eps
// ||W||_F G / ||G||_F, G a matrix of independent standard normals, the bias
// kept, and drops[k][r] = Score(clean) - Score(perturbed). G is drawn from
// the PCG stream (seed, a stream of the layer's position k and the draw r),
// so networks whose layers have the same shapes get the same directions.
// net is not modified (the perturbed layers live in a copy). Errors wrap
// ErrTarget.
func LayerRobustness[T Float](net *Network[T], x, target []T, n int, eps float64, draws int, seed uint64, ws *Workspace[T]) (drops [][]float64, err error) {
	checkLen(x, n*net.Inputs())
	if err := net.CheckTargets(target, n); err != nil {
		return nil, err
	}
	clean := score(net, x, target, n, ws)
	work := CloneNetwork(net)
	for k, l := range LinearLayers(work) {
		orig := work.Operator(l)
		out, in := orig.Shape()
		w := make([]float64, out*in)
		orig.DenseTo(w)
		wn := math.Sqrt(dot(w, w))
		g := make([]float64, out*in)
		pert := make([]T, out*in)
		row := make([]float64, draws)
		for r := range draws {
			rng := rand.New(rand.NewPCG(seed, robustnessBase|uint64(k)<<20|uint64(r)))
			for i := range g {
				g[i] = rng.NormFloat64()
			}
			s := 0.0
			if gn := math.Sqrt(dot(g, g)); gn > 0 {
				s = eps * wn / gn
			}
			for i := range w {
				pert[i] = T(w[i] + s*g[i])
			}
			if err := work.SetOperator(l, NewDenseOp(out, in, pert)); err != nil {
				panic(err) // same shape: cannot fail
			}
			row[r] = clean - score(work, x, target, n, ws)
		}
		if err := work.SetOperator(l, orig); err != nil {
			panic(err)
		}
		drops = append(drops, row)
	}
	return drops, nil
}

// ResidualShares returns, for each linear layer in the order of
// LinearLayers whose operator is a Sum S + R, the share of its output
// carried by the correction on each row u of its input:
// ||R u|| / (||S u|| + ||R u||) (0 for a zero correction), and NaN for a
// row where both norms are 0. The entry of a layer of any other operator
// (dense, or a bare structured family) is nil. x holds n rows of the
// network's inputs.
func ResidualShares[T Float](net *Network[T], x []T, n int, ws *Workspace[T]) [][]float64 {
	checkLen(x, n*net.Inputs())
	lin := LinearLayers(net)
	shares := make([][]float64, len(lin))
	sums := make([]*Sum[T], len(lin))
	found := false
	for k, l := range lin {
		if s, ok := net.layers[l].op.(*Sum[T]); ok {
			sums[k] = s
			shares[k] = make([]float64, n)
			found = true
		}
	}
	if !found || n == 0 {
		return shares
	}
	m := min(metricChunk, n)
	outs := make([][]T, len(net.layers))
	for l := range outs {
		outs[l] = make([]T, m*net.layers[l].out)
	}
	for r0 := 0; r0 < n; r0 += metricChunk {
		g := min(metricChunk, n-r0)
		xs := x[r0*net.Inputs() : (r0+g)*net.Inputs()]
		for l := range outs {
			outs[l] = outs[l][:g*net.layers[l].out]
		}
		net.ForwardLayers(outs, xs, g, ws)
		for k, l := range lin {
			s := sums[k]
			if s == nil {
				continue
			}
			u := xs
			if l > 0 {
				u = outs[l-1]
			}
			out, _ := s.Shape()
			ys := make([]T, g*out)
			yr := make([]T, g*out)
			s.Trunk().Apply(ys, u, g, ws)
			s.Correction().Apply(yr, u, g, ws)
			for e := range g {
				a := math.Sqrt(dot(ys[e*out:(e+1)*out], ys[e*out:(e+1)*out]))
				b := math.Sqrt(dot(yr[e*out:(e+1)*out], yr[e*out:(e+1)*out]))
				v := math.NaN()
				if a+b > 0 {
					v = b / (a + b)
				}
				shares[k][r0+e] = v
			}
		}
	}
	return shares
}

// GradNormBatches splits the n rows of x and target into nb =
// max(1, round(n / batch)) consecutive batches of near-equal size (the
// first n mod nb batches one row larger) and returns, for each batch, the
// norms of the gradients of its mean loss with respect to every linear
// layer's effective weight (EffectiveGradNorms), and the batch sizes.
// Errors wrap ErrTarget.
func GradNormBatches[T Float](net *Network[T], x, target []T, n, batch int, ws *Workspace[T]) (norms [][]float64, sizes []int, err error) {
	checkLen(x, n*net.Inputs())
	if batch < 1 {
		panic(ErrShape)
	}
	if err := net.CheckTargets(target, n); err != nil {
		return nil, nil, err
	}
	if n == 0 {
		return nil, nil, nil
	}
	nb := max(1, int(math.Round(float64(n)/float64(batch))))
	nb = min(nb, n)
	in := net.Inputs()
	tw := 1
	if net.spec.Task == TaskRegression {
		tw = net.Outputs()
	}
	lo := 0
	for b := range nb {
		size := n / nb
		if b < n%nb {
			size++
		}
		g, err := net.EffectiveGradNorms(nil, x[lo*in:(lo+size)*in], target[lo*tw:(lo+size)*tw], size, ws)
		if err != nil {
			return nil, nil, err
		}
		norms = append(norms, g)
		sizes = append(sizes, size)
		lo += size
	}
	return norms, sizes, nil
}

// NormRatio returns max(v) / min(v): 1 for equal values, +Inf when the
// minimum is 0 and the maximum is not, NaN for an empty v or all zeros.
func NormRatio(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	lo, hi := v[0], v[0]
	for _, x := range v[1:] {
		lo, hi = min(lo, x), max(hi, x)
	}
	if hi == 0 {
		return math.NaN()
	}
	return hi / lo
}

// Layer-norm FLOPs per element in NetworkFLOPs: the mean (1), the centred
// square (2), the normalisation (1), the gain and shift (2).
const layerNormFLOPs = 6

// NetworkFLOPs returns the floating-point operations of one forward pass
// per input row: each linear operator's FLOPs (Operator.FLOPs, a
// multiply-add counted as two), plus Out for its bias, plus the width of
// every activation (one operation per element, whatever the function),
// plus 6 per element of every layer norm (mean, centred square,
// normalisation, gain and shift). Softmax and loss are not counted.
func NetworkFLOPs[T Float](net *Network[T]) int {
	f := 0
	for _, l := range net.layers {
		switch l.kind {
		case layerLinear:
			f += l.op.FLOPs()
			if l.bias != nil {
				f += l.out
			}
		case layerActivation:
			f += l.out
		case layerNorm:
			f += layerNormFLOPs * l.out
		}
	}
	return f
}

// NetworkStoredValues returns the number of scalars the network stores: every
// parameter, frozen state (sparse indices) included.
func NetworkStoredValues[T Float](net *Network[T]) int {
	s := 0
	for _, p := range net.params {
		s += len(p.Data)
	}
	return s
}
