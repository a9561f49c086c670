package lowering

import (
	"math"

	"github.com/strata-ml/strata/arrowio/onnx"
	"github.com/strata-ml/strata/arrowio/onnx/onnxpb"
	"github.com/strata-ml/strata/compute"
)

// ConvolutionForm is how the circulant and Toeplitz families, both
// convolutions of the input with their parameter vector, are written in
// ONNX. Both forms store exactly the operator's parameters.
type ConvolutionForm int

const (
	// DFT multiplies spectra: a DFT of the input, a complex product with
	// the spectrum of the kernel (computed from the parameters in the graph,
	// folded to a constant when the runtime loads the model), an inverse
	// DFT. The transforms have a power-of-two length, the one size ONNX
	// Runtime transforms in O(M log M) (any other length takes its O(M^2)
	// DFT): M = the circulant's own N when it is a power of two, else the
	// next power of two >= out + in - 1 (the linear-convolution embedding
	// compute uses too). Needs opset 17.
	DFT ConvolutionForm = iota
	// DirectConv is a 1-D Conv of the input, padded with out - 1 zeros on
	// both sides, by the out + in - 1 diagonals (for a circulant, its
	// wrapped diagonals): O(out (out + in)) per row, no cheaper than the
	// dense layer, but only opset 13.
	DirectConv
)

func (f ConvolutionForm) String() string {
	if f == DirectConv {
		return "conv"
	}
	return "dft"
}

// convolution lowers compute.Circulant and compute.Toeplitz on a flat
// input.
func (lw *lowering) convolution(x string, p part) string {
	out, in := p.op.Shape()
	if p.op.Spec().Family == compute.FamilyCirculant {
		c := lw.weight(p.name, p.param("c"))
		n := max(out, in)
		if lw.form == DFT && isPow2(n) {
			return lw.spectral(x, c, n, in, out)
		}
		// The out x in corner of the circulant is the Toeplitz matrix of
		// its wrapped diagonals d = -(in-1) ... out-1: c[N+d] then c[d].
		t := lw.slice(c, 0, 0, int64(out))
		if in > 1 {
			t = lw.concat(0, lw.slice(c, 0, int64(n-in+1), int64(n)), t)
		}
		return lw.toeplitz(x, t, in, out)
	}
	return lw.toeplitz(x, lw.weight(p.name, p.param("t")), in, out)
}

// toeplitz adds y[:, i] = sum_j t[i - j + in - 1] x[:, j] for the value t
// of length out + in - 1.
func (lw *lowering) toeplitz(x, t string, in, out int) string {
	k := int64(out + in - 1)
	if lw.form == DirectConv {
		// Conv correlates: y[i] = sum_k w[k] xpad[i + k] with xpad = x
		// after out-1 zeros, so w is t reversed.
		w := lw.op("Slice", []string{t, lw.int64s(-1), lw.int64s(math.MinInt64), lw.int64s(0), lw.int64s(-1)})
		y := lw.op("Conv", []string{lw.reshape(x, -1, 1, int64(in)), lw.reshape(w, 1, 1, k)},
			onnx.IntsAttr("pads", int64(out-1), int64(out-1)))
		return lw.reshape(y, -1, int64(out))
	}
	// The circulant embedding of size m: kernel[d mod m] = t[d + in - 1].
	m := nextPow2(int(k))
	kernel := lw.slice(t, 0, int64(in-1), k)
	if pad := int64(m) - k; pad > 0 {
		kernel = lw.padAxis(kernel, 1, 0, pad)
	}
	if in > 1 {
		kernel = lw.concat(0, kernel, lw.slice(t, 0, 0, int64(in-1)))
	}
	return lw.spectral(x, kernel, m, in, out)
}

// spectral adds the first out entries of the circular convolution of the
// kernel value (length m, a power of two) with each row of x zero-padded to
// m: IDFT(DFT(kernel) * DFT(x)). The complex product of X = Xr + i Xi with
// K = Kr + i Ki is Xr [Kr, Ki] + Xi [-Ki, Kr] on the (real, imaginary)
// axis, four elementwise ops.
func (lw *lowering) spectral(x, kernel string, m, in, out int) string {
	lw.need(17)
	dft := func(x, length string, attrs ...*onnxpb.AttributeProto) string {
		if lw.m.Opset("") >= 20 { // DFT-20 takes the axis as an input
			return lw.op("DFT", []string{x, length, lw.scalar64(1)}, attrs...)
		}
		in := []string{x}
		if length != "" {
			in = append(in, length)
		}
		return lw.op("DFT", in, append(attrs, onnx.IntAttr("axis", 1))...)
	}
	xf := dft(lw.reshape(x, -1, int64(in), 1), lw.scalar64(int64(m)))
	kf := lw.reshape(dft(lw.reshape(kernel, 1, int64(m), 1), ""), int64(m), 2)
	kr, ki := lw.slice(kf, 1, 0, 1), lw.slice(kf, 1, 1, 2)
	rot := lw.concat(1, lw.op("Neg", []string{ki}), kr)
	yf := lw.add(lw.op("Mul", []string{lw.slice(xf, 2, 0, 1), kf}), lw.op("Mul", []string{lw.slice(xf, 2, 1, 2), rot}))
	y := dft(yf, "", onnx.IntAttr("inverse", 1))
	real := lw.op("Slice", []string{y, lw.int64s(0, 0), lw.int64s(int64(out), 1), lw.int64s(1, 2)})
	return lw.reshape(real, -1, int64(out))
}

func isPow2(n int) bool { return n > 0 && n&(n-1) == 0 }

func nextPow2(n int) int {
	m := 1
	for m < n {
		m <<= 1
	}
	return m
}
