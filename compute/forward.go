package compute

import (
	"math"
	"math/rand/v2"
)

// ForwardFunc is a model's forward pass on n rows: it sets y (n x
// outputs, row-major) from x (n x inputs). It lets the forward-only
// metrics (PerturbationSensitivityOf, CentralJacobian) run any model: a
// Network, or a model run by another runtime. An error ends the metric.
type ForwardFunc func(y, x []float64, n int) error

// NetworkForward returns the forward pass of net in float64 (converted to
// and from T), using ws.
func NetworkForward[T Float](net *Network[T], ws *Workspace[T]) ForwardFunc {
	return func(y, x []float64, n int) error {
		in, c := net.Inputs(), net.Outputs()
		checkLen(x, n*in)
		checkLen(y, n*c)
		xt := make([]T, n*in)
		for i, v := range x {
			xt[i] = T(v)
		}
		yt := make([]T, n*c)
		for r0 := 0; r0 < n; r0 += metricChunk {
			g := min(metricChunk, n-r0)
			net.Forward(yt[r0*c:(r0+g)*c], xt[r0*in:(r0+g)*in], g, ws)
		}
		for i, v := range yt {
			y[i] = float64(v)
		}
		return nil
	}
}

// PerturbationSensitivityOf measures how the outputs of the model f (in
// inputs, c outputs) move under Gaussian input noise. For each row i of x
// (n x in, in the model's input space) it draws z_i ~ N(0, I) and sets the
// raw perturbation d_i = level * sigma * z_i (elementwise: sigma holds the
// per-feature noise scale, typically the feature's standard deviation in
// the data, so level is the noise as a share of it). The model sees x_i +
// d_i * scale (scale nil: 1; see the file comment of metrics.go). The z_i
// are drawn in row order from the PCG stream (seed, a fixed stream), so the
// same seed, n and in give every model the same noise. f runs on chunks of
// at most 256 rows.
func PerturbationSensitivityOf(f ForwardFunc, in, c int, x []float64, n int, sigma, scale []float64, level float64, seed uint64) (Perturbation, error) {
	ps, err := PerturbationSensitivitiesOf(f, in, c, x, nil, n, sigma, scale, []float64{level}, seed)
	if err != nil {
		return Perturbation{}, err
	}
	return ps[0], nil
}

// PerturbationSensitivitiesOf is PerturbationSensitivityOf at each of the
// noise levels, with the same z_i for every level (each level's result
// is the one PerturbationSensitivityOf gives alone, bit for bit): the
// noise is drawn once per chunk of rows for all the levels, and f(x) too
// unless clean holds it already (n x c, as f computes it on the chunks of
// at most 256 rows from row 0 that this function runs; nil: computed).
func PerturbationSensitivitiesOf(f ForwardFunc, in, c int, x, clean []float64, n int, sigma, scale []float64, levels []float64, seed uint64) ([]Perturbation, error) {
	checkLen(x, n*in)
	if len(sigma) != in || (scale != nil && len(scale) != in) || (clean != nil && len(clean) != n*c) {
		panic(ErrShape)
	}
	ps := make([]Perturbation, len(levels))
	for i := range ps {
		ps[i] = Perturbation{Ratio: make([]float64, n), Output: make([]float64, n), Flipped: make([]float64, n)}
	}
	rng := rand.New(rand.NewPCG(seed, perturbStream))
	m := min(metricChunk, n)
	z := make([]float64, m*in)
	xn := make([]float64, m*in)
	dn := make([]float64, m)
	y0 := make([]float64, m*c)
	y1 := make([]float64, m*c)
	for r0 := 0; r0 < n; r0 += metricChunk {
		g := min(metricChunk, n-r0)
		xs := x[r0*in : (r0+g)*in]
		for i := range z[:g*in] {
			z[i] = rng.NormFloat64()
		}
		a0 := y0[:g*c]
		if clean != nil {
			a0 = clean[r0*c : (r0+g)*c]
		} else if err := f(a0, xs, g); err != nil {
			return nil, err
		}
		for li, level := range levels {
			p := &ps[li]
			for e := range g {
				var s float64
				for k := range in {
					d := level * sigma[k] * z[e*in+k]
					s += d * d
					if scale != nil {
						d *= scale[k]
					}
					xn[e*in+k] = xs[e*in+k] + d
				}
				dn[e] = math.Sqrt(s)
			}
			if err := f(y1[:g*c], xn[:g*in], g); err != nil {
				return nil, err
			}
			for e := range g {
				a, b := a0[e*c:(e+1)*c], y1[e*c:(e+1)*c]
				var num, den float64
				for k := range c {
					d := b[k] - a[k]
					num += d * d
					den += a[k] * a[k]
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
	}
	return ps, nil
}

// CentralJacobian estimates the Jacobian (c x in, row-major) of the model
// f at the input row x (in values) by finite differences with steps h
// (per input), all 2 in + 1 evaluations in one call of f: central is
// column j = (f(x + h_j e_j) - f(x - h_j e_j)) / (2 h_j), forward and
// backward the one-sided (f(x + h_j e_j) - f(x)) / h_j and (f(x) - f(x -
// h_j e_j)) / h_j. For a smooth model central has a truncation error
// O(h^2 |f”'|) and a rounding error O(u |f| / h) for a model computing
// with unit roundoff u (h near u^(1/3) times the input's scale balances
// them: 4.9e-3 for float32), and forward and backward differ by
// O(h |f”|). A kink of the model (ReLU, max-pool) within h of x makes
// them differ by the jump of the slope, and central an average of the two
// sides: only where forward and backward agree is central the derivative.
// round, when not nil, is applied to every input value f receives (a
// float32 model: the value it will compute with), and the steps are the
// differences of the rounded values.
func CentralJacobian(f ForwardFunc, in, c int, x, h []float64, round func(float64) float64) (central, forward, backward []float64, err error) {
	checkLen(x, in)
	checkLen(h, in)
	xs := make([]float64, (2*in+1)*in)
	base := xs[2*in*in:]
	copy(base, x)
	for j := range in {
		plus, minus := xs[2*j*in:(2*j+1)*in], xs[(2*j+1)*in:(2*j+2)*in]
		copy(plus, x)
		copy(minus, x)
		plus[j] += h[j]
		minus[j] -= h[j]
	}
	if round != nil {
		for k := range xs {
			xs[k] = round(xs[k])
		}
	}
	y := make([]float64, (2*in+1)*c)
	if err := f(y, xs, 2*in+1); err != nil {
		return nil, nil, nil, err
	}
	y0 := y[2*in*c:]
	central, forward, backward = make([]float64, c*in), make([]float64, c*in), make([]float64, c*in)
	for j := range in {
		// The steps as the model saw them.
		up, down := xs[2*j*in+j]-base[j], base[j]-xs[(2*j+1)*in+j]
		for k := range c {
			yp, ym := y[2*j*c+k], y[(2*j+1)*c+k]
			central[k*in+j] = (yp - ym) / (up + down)
			forward[k*in+j] = (yp - y0[k]) / up
			backward[k*in+j] = (y0[k] - ym) / down
		}
	}
	return central, forward, backward, nil
}
