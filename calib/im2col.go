package calib

import (
	"fmt"

	"github.com/strata-ml/strata/arrowio/onnx"
)

// patches are the im2col rows of a convolution's input x, [n, c, d_1 ...
// d_s] row-major: one row per example and output position (examples
// first, positions in row-major order), each the c x k_1 x ... x k_s
// values under the kernel, channel first, zero where the kernel hangs over
// the padding. With W the [out, c, k...] weight read as out x (c k...),
// W times a row is the convolution's output at that position (before the
// bias).
type patches struct {
	x         []float32
	n, c      int
	in, out   []int // spatial sizes of x and of the output
	kernel    []int
	stride    []int
	dilation  []int
	padBegin  []int
	perSample int     // output positions per example
	offsets   [][]int // per kernel element (row-major), its offset per dim
}

// newPatches describes the patches of x (shape [n, c, d...]) under a
// kernel of the given size and the node's attributes. It returns an error
// when the shape does not fit the kernel or leaves no output position.
func newPatches(x []float32, shape []int64, kernel []int64, a *onnx.ConvAttrs) (*patches, error) {
	s := len(kernel)
	if len(shape) != s+2 {
		return nil, fmt.Errorf("the convolution's input has shape %v, want [n, c] and %d spatial dims", shape, s)
	}
	p := &patches{x: x, n: int(shape[0]), c: int(shape[1]), perSample: 1}
	for i := range s {
		d, k := int(shape[i+2]), int(kernel[i])
		st, dil := int(a.Strides[i]), int(a.Dilations[i])
		span := (k-1)*dil + 1
		var pb, pe int
		switch a.AutoPad {
		case "VALID":
		case "SAME_UPPER", "SAME_LOWER":
			o := (d + st - 1) / st
			total := max(0, (o-1)*st+span-d)
			pb = total / 2
			if a.AutoPad == "SAME_LOWER" {
				pb = total - total/2
			}
			pe = total - pb
		default:
			pb, pe = int(a.Pads[i]), int(a.Pads[s+i])
		}
		o := (d+pb+pe-span)/st + 1
		if d+pb+pe < span || o < 1 {
			return nil, fmt.Errorf("the convolution's input has shape %v: no output position for kernel %v", shape, kernel)
		}
		p.in, p.out, p.kernel = append(p.in, d), append(p.out, o), append(p.kernel, k)
		p.stride, p.dilation, p.padBegin = append(p.stride, st), append(p.dilation, dil), append(p.padBegin, pb)
		p.perSample *= o
	}
	if len(x) != p.n*p.c*product(p.in) {
		return nil, fmt.Errorf("the convolution's input holds %d values for shape %v", len(x), shape)
	}
	// The kernel elements' offsets, in row-major order over the kernel.
	idx := make([]int, s)
	for range product(p.kernel) {
		off := make([]int, s)
		for i := range s {
			off[i] = idx[i] * p.dilation[i]
		}
		p.offsets = append(p.offsets, off)
		for i := s - 1; i >= 0; i-- {
			idx[i]++
			if idx[i] < p.kernel[i] {
				break
			}
			idx[i] = 0
		}
	}
	return p, nil
}

// width is the length of a row, c x prod(kernel).
func (p *patches) width() int { return p.c * len(p.offsets) }

func (p *patches) rows() int { return p.n * p.perSample }

func (p *patches) row(r int, dst []float64) {
	b, pos := r/p.perSample, r%p.perSample
	s := len(p.out)
	// The output position's coordinates and the input corner under it.
	corner := make([]int, s)
	for i := s - 1; i >= 0; i-- {
		corner[i] = (pos%p.out[i])*p.stride[i] - p.padBegin[i]
		pos /= p.out[i]
	}
	plane := product(p.in)
	k := len(p.offsets)
	for ch := range p.c {
		base := (b*p.c + ch) * plane
		for e, off := range p.offsets {
			at, inside := 0, true
			for i := range s {
				v := corner[i] + off[i]
				if v < 0 || v >= p.in[i] {
					inside = false
					break
				}
				at = at*p.in[i] + v
			}
			v := 0.0
			if inside {
				v = float64(p.x[base+at])
			}
			dst[ch*k+e] = v
		}
	}
}

func product(d []int) int {
	n := 1
	for _, v := range d {
		n *= v
	}
	return n
}
