package compute

import (
	"math"
	"slices"

	"gonum.org/v1/gonum/mat"
)

// This file holds the model metrics validate compares between a baseline
// and a candidate: the conditioning of the input-output Jacobian, the
// sensitivity to input noise, the robustness to weight noise, the share of
// each layer's output carried by its correction, per-batch gradient norms
// and the cost of a forward pass. Every function takes the network's
// inputs as n rows (row-major) and leaves the network unchanged.
//
// Input coordinates. A model may standardise its inputs before its first
// layer, x_net = (x - mean) / std. The perturbation functions take scale
// (the per-feature 1 / std, nil for none) and add their noise d to the raw
// input, so x_net moves by d * scale: models with different
// standardisations see the same raw noise. The Jacobian functions take a
// JacobianView whose ColumnScale says in which coordinates the derivative
// is taken (validate takes it on the standardised input).

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

// Machine epsilons of the precisions a matrix's values are held in: the
// rank tolerance of SpectralConditionAt.
const (
	Float64Eps = 0x1p-52
	Float32Eps = 0x1p-23
)

// SpectralCondition is SpectralConditionAt with Float64Eps: the rank
// tolerance of a matrix computed in float64.
func SpectralCondition(sv []float64, rows, cols int) float64 {
	return SpectralConditionAt(sv, rows, cols, Float64Eps)
}

// SpectralConditionAt returns sigma_1 / sigma_k of the singular values sv
// (decreasing) of a rows x cols matrix whose values are held to precision
// eps (Float32Eps for weights stored as float32), or +Inf when the matrix
// is numerically singular at that precision: sigma_k <= max(rows, cols)
// eps sigma_1, the rank tolerance of LAPACK users and
// numpy.linalg.matrix_rank (below it sigma_k is rounding noise of the
// stored values and the ratio means nothing: the same weights rounded to
// float32 would give any value there). NaN for no values.
func SpectralConditionAt(sv []float64, rows, cols int, eps float64) float64 {
	if len(sv) == 0 {
		return math.NaN()
	}
	lo, hi := sv[len(sv)-1], sv[0]
	if lo <= float64(max(rows, cols))*eps*hi {
		return math.Inf(1)
	}
	return hi / lo
}

// CentreRows returns Q^T W ((k-1) x n, row-major, in dst when it has
// room) for W k x n (row-major) and Q the k x (k-1) Helmert basis of the
// vectors orthogonal to the all-ones vector: row j-1 of the result is
// (W_0 + ... + W_{j-1} - j W_j) / sqrt(j (j+1)), j = 1..k-1. Q^T W has the
// singular values of P W, P = I - 1 1^T / k, the rows of W with their mean
// removed: what W does to the outputs up to a shift common to all of them
// (a classifier's logits up to the shift no softmax sees). Adding one
// vector to every row of W leaves it unchanged. k must be >= 2.
func CentreRows(dst, w []float64, k, n int) []float64 {
	if k < 2 || len(w) != k*n {
		panic(ErrShape)
	}
	if cap(dst) < (k-1)*n {
		dst = make([]float64, (k-1)*n)
	}
	dst = dst[:(k-1)*n]
	sum := make([]float64, n)
	for j := 1; j < k; j++ {
		for c := range n {
			sum[c] += w[(j-1)*n+c]
		}
		f := 1 / math.Sqrt(float64(j*(j+1)))
		row := dst[(j-1)*n : j*n]
		for c := range n {
			row[c] = (sum[c] - float64(j)*w[j*n+c]) * f
		}
	}
	return dst
}

// CentredSingularValues returns the singular values (decreasing, k - 1 of
// them at most) of the centred rows Q^T W (CentreRows) of w (k x n).
func CentredSingularValues(w []float64, k, n int) []float64 {
	return SingularValuesOf(mat.NewDense(k-1, n, CentreRows(nil, w, k, n)), nil)
}

// JacobianStats holds, for each input row, summaries of the singular
// values sigma_1 >= ... >= sigma_m of a view of the exact Jacobian J of
// the network's outputs (logits) with respect to its input (see
// JacobianView).
type JacobianStats struct {
	// Condition is sigma_1 / sigma_m, +Inf when the view is numerically
	// singular (see SpectralCondition).
	Condition []float64
	// LogSigmaStd is the population standard deviation of log sigma_k
	// over k, +Inf when the view is numerically singular.
	LogSigmaStd []float64
}

// JacobianView says which matrix of a Jacobian J (Outputs x Inputs, the
// network's input space) is summarised: Q^T J diag(ColumnScale) when
// Centre is set (the outputs up to a common shift, see CentreRows: K - 1
// singular values for K outputs), J diag(ColumnScale) otherwise.
// ColumnScale is d x_net / d u for the input coordinates u the condition
// is taken in: the model's 1/std for the raw input, the data's std for
// the standardised input of a model without standardisation; nil is 1.
type JacobianView struct {
	ColumnScale []float64
	Centre      bool
}

// JacobianSummary returns the condition and the std of the log singular
// values (JacobianStats) of view v of one Jacobian j (c x in, row-major;
// float64 values, whose rank tolerance is Float64Eps). A view with one
// row has condition 1 (or +Inf when it is 0) and log std 0. j is not
// modified.
func JacobianSummary(j []float64, c, in int, v JacobianView) (cond, logStd float64) {
	if len(j) != c*in || (v.ColumnScale != nil && len(v.ColumnScale) != in) || (v.Centre && c < 2) {
		panic(ErrShape)
	}
	m := slices.Clone(j)
	if v.ColumnScale != nil {
		for k := range m {
			m[k] *= v.ColumnScale[k%in]
		}
	}
	rows := c
	if v.Centre {
		m = CentreRows(nil, m, c, in)
		rows = c - 1
	}
	sv := SingularValuesOf(mat.NewDense(rows, in, m), nil)
	cond = SpectralCondition(sv, rows, in)
	if math.IsInf(cond, 1) {
		return cond, math.Inf(1)
	}
	logs := make([]float64, len(sv))
	for k, s := range sv {
		logs[k] = math.Log(s)
	}
	return cond, Std(logs)
}

// JacobianConditions returns, for each view, the JacobianStats of the n
// rows of x (n x Inputs, in the network's input space). J is computed
// once per row, exactly, by backpropagation of every output
// (Network.InputJacobians), and each view's singular values by an SVD in
// float64 (JacobianSummary).
func JacobianConditions[T Float](net *Network[T], x []T, n int, views []JacobianView, ws *Workspace[T]) []JacobianStats {
	in, c := net.Inputs(), net.Outputs()
	checkLen(x, n*in)
	st := make([]JacobianStats, len(views))
	for v := range views {
		st[v] = JacobianStats{Condition: make([]float64, n), LogSigmaStd: make([]float64, n)}
	}
	jac := make([]T, min(jacobianGroup, n)*c*in)
	raw := make([]float64, c*in)
	for e0 := 0; e0 < n; e0 += jacobianGroup {
		g := min(jacobianGroup, n-e0)
		net.InputJacobians(jac[:g*c*in], x[e0*in:(e0+g)*in], g, ws)
		for e := range g {
			for k, v := range jac[e*c*in : (e+1)*c*in] {
				raw[k] = float64(v)
			}
			for v, view := range views {
				st[v].Condition[e0+e], st[v].LogSigmaStd[e0+e] = JacobianSummary(raw, c, in, view)
			}
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

// PerturbationSensitivity is PerturbationSensitivityOf the network's
// forward pass (x in the network's input space, see the file comment).
func PerturbationSensitivity[T Float](net *Network[T], x []T, n int, sigma, scale []float64, level float64, seed uint64, ws *Workspace[T]) Perturbation {
	checkLen(x, n*net.Inputs())
	x64 := make([]float64, len(x))
	for i, v := range x {
		x64[i] = float64(v)
	}
	p, err := PerturbationSensitivityOf(NetworkForward(net, ws), net.Inputs(), net.Outputs(), x64, n, sigma, scale, level, seed)
	if err != nil {
		panic(err) // a network's forward pass does not fail
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
	return Mean(exampleScores(nil, net, x, target, n, ws))
}

// exampleScores sets dst (allocated when short) to each example's score
// (see LayerRobustness).
func exampleScores[T Float](dst []float64, net *Network[T], x, target []T, n int, ws *Workspace[T]) []float64 {
	in, c := net.Inputs(), net.Outputs()
	if cap(dst) < n {
		dst = make([]float64, n)
	}
	dst = dst[:n]
	tw := 1
	if net.spec.Task == TaskRegression {
		tw = c
	}
	y := make([]T, min(metricChunk, max(n, 1))*c)
	for r0 := 0; r0 < n; r0 += metricChunk {
		g := min(metricChunk, n-r0)
		net.Forward(y[:g*c], x[r0*in:(r0+g)*in], g, ws)
		scoreRows(dst[r0:r0+g], net, y[:g*c], target[r0*tw:(r0+g)*tw])
	}
	return dst
}

// scoreRows sets dst[e] to the score of the outputs y (len(dst) rows) for
// their targets (see LayerRobustness).
func scoreRows[T Float](dst []float64, net *Network[T], y, target []T) {
	c := net.Outputs()
	for e := range dst {
		yr := y[e*c : (e+1)*c]
		if net.spec.Task == TaskClassification {
			dst[e] = 0
			if argmax(yr) == int(target[e]) {
				dst[e] = 1
			}
			continue
		}
		var se float64
		for k, v := range yr {
			d := float64(v) - float64(target[e*c+k])
			se += d * d
		}
		dst[e] = -se / float64(c)
	}
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
