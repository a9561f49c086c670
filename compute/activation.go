package compute

import "math"

// Activation names, the values of LayerSpec.Activation.
const (
	ActReLU     = "relu"
	ActGELU     = "gelu"
	ActTanh     = "tanh"
	ActSigmoid  = "sigmoid"
	ActIdentity = "identity"
)

// Activations lists the activation names in a fixed order.
var Activations = []string{ActReLU, ActGELU, ActTanh, ActSigmoid, ActIdentity}

// activation identifies an elementwise nonlinearity.
type activation uint8

const (
	actIdentity activation = iota
	actReLU
	actGELU
	actTanh
	actSigmoid
)

func parseActivation(name string) (activation, bool) {
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
		for i, v := range x {
			if v <= 0 {
				y[i] = 0 // NaN passes through
			} else {
				y[i] = v
			}
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
