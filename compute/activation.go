package compute

import "math"

// activation identifies an elementwise nonlinearity.
type activation uint8

const (
	actIdentity activation = iota
	actReLU
	actGELU
	actTanh
	actSigmoid
)

func parseActivation(name Activation) (activation, bool) {
	switch name {
	case ActReLU:
		return actReLU, true
	case ActGELU:
		return actGELU, true
	case ActTanh:
		return actTanh, true
	case ActSigmoid:
		return actSigmoid, true
	case ActIdentity:
		return actIdentity, true
	}
	return 0, false
}

// invSqrt2 and invSqrt2Pi are 1/sqrt(2) and 1/sqrt(2 pi).
const (
	invSqrt2   = 0.70710678118654752440084436210484903928483593768847
	invSqrt2Pi = 0.39894228040143267793994605993438186847585863116493
)

// gelu is the exact GELU, x Phi(x) = x (1 + erf(x / sqrt 2)) / 2 (not the
// tanh approximation).
func gelu(x float64) float64 { return 0.5 * x * (1 + math.Erf(x*invSqrt2)) }

// geluGrad is d/dx x Phi(x) = Phi(x) + x phi(x).
func geluGrad(x float64) float64 {
	return 0.5*(1+math.Erf(x*invSqrt2)) + x*invSqrt2Pi*math.Exp(-0.5*x*x)
}

// sigmoid is 1 / (1 + e^-x), evaluated without overflow for either sign.
func sigmoid(x float64) float64 {
	if x >= 0 {
		return 1 / (1 + math.Exp(-x))
	}
	e := math.Exp(x)
	return e / (1 + e)
}

// activate sets y[i] = f(x[i]) for i < len(y); y and x may be the same
// slice.
func activate[T Float](a activation, y, x []T) {
	x = x[:len(y)]
	switch a {
	case actIdentity:
		copy(y, x)
	case actReLU:
		// max is branch-free (a data-dependent branch mispredicts half the
		// time) and gives +0 for -0 and NaN for NaN, as v <= 0 ? 0 : v.
		for i, v := range x {
			y[i] = max(v, 0)
		}
	case actGELU:
		for i, v := range x {
			y[i] = T(gelu(float64(v)))
		}
	case actTanh:
		for i, v := range x {
			y[i] = T(math.Tanh(float64(v)))
		}
	case actSigmoid:
		for i, v := range x {
			y[i] = T(sigmoid(float64(v)))
		}
	}
}

// activateBackward multiplies the cotangent d in place by f'(x), where x
// is the activation's input and y = f(x) its output (relu and gelu read
// x, tanh and sigmoid read y), and writes the result to dst (which may be
// d itself).
func activateBackward[T Float](a activation, dst, d, x, y []T) {
	d = d[:len(dst)]
	switch a {
	case actIdentity:
		copy(dst, d)
	case actReLU:
		if dst32, ok := any(dst).([]float32); ok {
			reluBackward32(dst32, any(d).([]float32), any(x).([]float32))
			return
		}
		for i, v := range d {
			if x[i] <= 0 {
				dst[i] = 0
			} else {
				dst[i] = v
			}
		}
	case actGELU:
		for i, v := range d {
			dst[i] = T(float64(v) * geluGrad(float64(x[i])))
		}
	case actTanh:
		for i, v := range d {
			t := float64(y[i])
			dst[i] = T(float64(v) * (1 - t*t))
		}
	case actSigmoid:
		for i, v := range d {
			s := float64(y[i])
			dst[i] = T(float64(v) * s * (1 - s))
		}
	}
}

// reluBackward32 sets dst[i] = x[i] <= 0 ? 0 : d[i] (so d[i] for a NaN
// x[i]) without a data-dependent branch: it keeps d[i]'s bits under a mask
// that is all ones exactly when x[i] is positive (bits 1 to 0x7fffffff:
// positive non-zero, +Inf, positive NaNs) or a negative NaN (bits above
// 0xff800000, -Inf).
func reluBackward32(dst, d, x []float32) {
	d, x = d[:len(dst)], x[:len(dst)]
	for i, v := range d {
		xb := math.Float32bits(x[i])
		keep := b2u32(xb-1 < 0x7fffffff) | b2u32(xb > 0xff800000)
		dst[i] = math.Float32frombits(math.Float32bits(v) & -keep)
	}
}

// b2u32 is 1 for true and 0 for false; the compiler makes it a SETcc.
func b2u32(b bool) uint32 {
	if b {
		return 1
	}
	return 0
}
