package calib

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/arrowio/onnx"
	"github.com/strata-ml/strata/compute"
	"github.com/strata-ml/strata/internal/inputerr"
)

// directConv is the convolution of x [n, c, d...] by w [out, c, k...]
// with per-dim pads (begin) and output sizes given, written as the sum
// over channels and kernel elements at each output position: the
// reference the patches are checked against.
func directConv(x []float32, n, c int, in []int, w []float64, out int, kernel, stride, dil, pad, outSize []int) []float64 {
	s := len(in)
	kn := product(kernel)
	pos := product(outSize)
	y := make([]float64, n*out*pos)
	oc := make([]int, s)
	kc := make([]int, s)
	for b := range n {
		for o := range out {
			for p := range pos {
				q := p
				for i := s - 1; i >= 0; i-- {
					oc[i] = q % outSize[i]
					q /= outSize[i]
				}
				var sum float64
				for ch := range c {
					for e := range kn {
						q := e
						for i := s - 1; i >= 0; i-- {
							kc[i] = q % kernel[i]
							q /= kernel[i]
						}
						at, inside := 0, true
						for i := range s {
							v := oc[i]*stride[i] - pad[i] + kc[i]*dil[i]
							if v < 0 || v >= in[i] {
								inside = false
							}
							at = at*in[i] + v
						}
						if inside {
							sum += w[(o*c+ch)*kn+e] * float64(x[(b*c+ch)*product(in)+at])
						}
					}
				}
				y[(b*out+o)*pos+p] = sum
			}
		}
	}
	return y
}

// W times each patch row is the convolution at that position, for 1-D,
// 2-D and 3-D kernels, strides, dilations, explicit and automatic pads.
func TestPatchesAreTheConvolution(t *testing.T) {
	tests := []struct {
		name     string
		in       []int
		kernel   []int64
		attrs    onnx.ConvAttrs
		wantPads []int // begin pads the attributes resolve to
	}{
		{"3x3 pad 1", []int{6, 5}, []int64{3, 3}, onnx.ConvAttrs{Strides: []int64{1, 1}, Dilations: []int64{1, 1}, Pads: []int64{1, 1, 1, 1}, AutoPad: "NOTSET"}, []int{1, 1}},
		{"1x1", []int{4, 4}, []int64{1, 1}, onnx.ConvAttrs{Strides: []int64{1, 1}, Dilations: []int64{1, 1}, Pads: []int64{0, 0, 0, 0}, AutoPad: "NOTSET"}, []int{0, 0}},
		{"strided dilated uneven pads", []int{9, 7}, []int64{3, 2}, onnx.ConvAttrs{Strides: []int64{2, 3}, Dilations: []int64{2, 1}, Pads: []int64{0, 2, 1, 1}, AutoPad: "NOTSET"}, []int{0, 2}},
		{"same upper", []int{7, 6}, []int64{4, 3}, onnx.ConvAttrs{Strides: []int64{2, 1}, Dilations: []int64{1, 1}, Pads: []int64{0, 0, 0, 0}, AutoPad: "SAME_UPPER"}, []int{1, 1}},
		{"same lower", []int{7, 6}, []int64{4, 3}, onnx.ConvAttrs{Strides: []int64{2, 1}, Dilations: []int64{1, 1}, Pads: []int64{0, 0, 0, 0}, AutoPad: "SAME_LOWER"}, []int{2, 1}},
		{"valid", []int{8}, []int64{3}, onnx.ConvAttrs{Strides: []int64{2}, Dilations: []int64{1}, Pads: []int64{3, 3}, AutoPad: "VALID"}, []int{0}},
		{"3-D", []int{3, 4, 5}, []int64{2, 2, 3}, onnx.ConvAttrs{Strides: []int64{1, 2, 1}, Dilations: []int64{1, 1, 2}, Pads: []int64{1, 0, 1, 0, 1, 1}, AutoPad: "NOTSET"}, []int{1, 0, 1}},
	}
	for ti, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(ti), 3))
			n, c, out := 2, 3, 4
			shape := []int64{int64(n), int64(c)}
			for _, d := range tt.in {
				shape = append(shape, int64(d))
			}
			x := make([]float32, n*c*product(tt.in))
			for i := range x {
				x[i] = float32(rng.NormFloat64())
			}
			p, err := newPatches(x, shape, tt.kernel, &tt.attrs)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(p.padBegin, tt.wantPads) {
				t.Errorf("begin pads %v, want %v", p.padBegin, tt.wantPads)
			}
			kernel := make([]int, len(tt.kernel))
			stride, dil := make([]int, len(kernel)), make([]int, len(kernel))
			for i := range kernel {
				kernel[i], stride[i], dil[i] = int(tt.kernel[i]), int(tt.attrs.Strides[i]), int(tt.attrs.Dilations[i])
			}
			in := p.width()
			w := make([]float64, out*in)
			for i := range w {
				w[i] = rng.NormFloat64()
			}
			want := directConv(x, n, c, tt.in, w, out, kernel, stride, dil, p.padBegin, p.out)
			row := make([]float64, in)
			pos := p.perSample
			for r := range p.rows() {
				p.row(r, row)
				b, q := r/pos, r%pos
				for o := range out {
					var got float64
					for j, v := range row {
						got += w[o*in+j] * v
					}
					if d := math.Abs(got - want[(b*out+o)*pos+q]); d > 1e-12 {
						t.Fatalf("row %d output %d: W x = %g, convolution %g", r, o, got, want[(b*out+o)*pos+q])
					}
				}
			}
		})
	}
}

func TestPatchesRefuseShapes(t *testing.T) {
	a := onnx.ConvAttrs{Strides: []int64{1, 1}, Dilations: []int64{1, 1}, Pads: []int64{0, 0, 0, 0}, AutoPad: "NOTSET"}
	for _, shape := range [][]int64{{1, 2, 4}, {1, 2, 2, 2}} {
		x := make([]float32, product64(shape))
		if _, err := newPatches(x, shape, []int64{3, 3}, &a); err == nil {
			t.Errorf("shape %v accepted for a 3x3 kernel", shape)
		}
	}
}

func TestGroups(t *testing.T) {
	caps := Caps{HeldRows: 1, HeldValues: 1 << 30}
	tests := []struct {
		ins    []int
		budget int
		want   [][]int
	}{
		{[]int{10, 10, 10}, 8 * 3 * 310, [][]int{{0, 1, 2}}},
		{[]int{10, 10, 10}, 8 * 2 * 310, [][]int{{0, 1}, {2}}},
		{[]int{10, 100, 10}, 8 * 2 * 310, [][]int{{0}, {1}, {2}}},
	}
	for _, tt := range tests {
		got := Groups(tt.ins, caps, tt.budget)
		if len(got) != len(tt.want) {
			t.Errorf("Groups(%v, %d) = %v, want %v", tt.ins, tt.budget, got, tt.want)
			continue
		}
		for i := range got {
			if !slices.Equal(got[i], tt.want[i]) {
				t.Errorf("Groups(%v, %d) = %v, want %v", tt.ins, tt.budget, got, tt.want)
			}
		}
	}
}

// testMLP is a 6-12-8-3 classifier with GELU, seeded weights and a
// recorded standardisation.
func testMLP(seed uint64) *arrowio.Model {
	rng := rand.New(rand.NewPCG(seed, 1))
	sizes := []int{6, 12, 8, 3}
	m := &arrowio.Model{Arch: arrowio.Architecture{FormatVersion: 1, Kind: arrowio.ArchMLP, Task: compute.TaskClassification, Inputs: 6,
		Standardization: &arrowio.Standardization{Mean: []float64{1, -2, 0, 3, 0.5, 0}, Std: []float64{2, 0.5, 1, 4, 1, 3}}}}
	for i := 0; i+1 < len(sizes); i++ {
		in, out := sizes[i], sizes[i+1]
		name := "fc" + strconv.Itoa(i)
		m.Arch.Layers = append(m.Arch.Layers, arrowio.Layer{Name: name, Kind: compute.KindLinear, In: in, Out: out, Bias: true})
		w, b := make([]float32, out*in), make([]float32, out)
		for j := range w {
			w[j] = float32(rng.NormFloat64() / math.Sqrt(float64(in)))
		}
		for j := range b {
			b[j] = float32(rng.NormFloat64() * 0.1)
		}
		m.Tensors = append(m.Tensors,
			arrowio.Tensor{Name: name + ".weight", Role: compute.RoleWeight, Shape: []int64{int64(out), int64(in)}, Data: w},
			arrowio.Tensor{Name: name + ".bias", Role: compute.RoleBias, Shape: []int64{int64(out)}, Data: b})
		if i+2 < len(sizes) {
			m.Arch.Layers = append(m.Arch.Layers, arrowio.Layer{Name: "act" + strconv.Itoa(i), Kind: compute.KindActivation, Activation: "gelu"})
		}
	}
	return m
}

// randomExamples returns n rows of d features and labels in [0, c).
func randomExamples(rng *rand.Rand, n, d, c int) Examples {
	ex := Examples{X: make([]float64, n*d), Y: make([]float64, n), N: n, D: d}
	for i := range ex.X {
		ex.X[i] = 3*rng.NormFloat64() + 1
	}
	for i := range ex.Y {
		ex.Y[i] = float64(rng.IntN(c))
	}
	return ex
}

// The MLP runner's rows are each layer's input as the model computes it
// from the standardised examples: W x + b of the first layer's rows is
// the first layer's output, and of a later layer's its output; held-out
// rows come from the held-out examples alone, the fit rows' Gram matches.
func TestMLPRowsAreLayerInputs(t *testing.T) {
	m := testMLP(1)
	rng := rand.New(rand.NewPCG(2, 2))
	set := Set{Fit: randomExamples(rng, 70, 6, 3), Held: randomExamples(rng, 90, 6, 3)}
	r, err := NewMLP(m, []string{"fc0.weight", "fc1.weight", "fc2.weight"}, set)
	if err != nil {
		t.Fatal(err)
	}
	acts, err := r.Collect(context.Background(), []int{0, 1, 2}, Caps{})
	if err != nil {
		t.Fatal(err)
	}
	net, err := mlpNetwork(m)
	if err != nil {
		t.Fatal(err)
	}
	for part, ex := range []Examples{set.Fit, set.Held} {
		x := slices.Clone(ex.X)
		st := m.Arch.Standardization
		compute.Standardize(x, x, ex.N, ex.D, st.Mean, st.Std)
		spec := net.Spec()
		outs := make([][]float64, len(spec.Layers))
		for l := range outs {
			outs[l] = make([]float64, ex.N*width(spec, l))
		}
		net.ForwardLayers(outs, x, ex.N, compute.NewWorkspace[float64]())
		inputs := [][]float64{x, outs[1], outs[3]}
		for i, a := range acts {
			if part == 1 {
				if a.HeldRows != ex.N || a.HeldSeen != ex.N {
					t.Fatalf("layer %d: %d held rows of %d seen, want %d", i, a.HeldRows, a.HeldSeen, ex.N)
				}
				if d := maxDiff(a.Held, inputs[i]); d > 1e-12 {
					t.Errorf("layer %d: held rows differ from its inputs by %g", i, d)
				}
				continue
			}
			if a.Gram.Rows() != ex.N || a.FitSeen != ex.N {
				t.Fatalf("layer %d: %d fit rows, want %d", i, a.Gram.Rows(), ex.N)
			}
			sameGram(t, fmt.Sprintf("layer %d", i), a.Gram, inputs[i], ex.N, a.In)
			// The folds are the even and the odd examples.
			var even, odd []float64
			for r := range ex.N {
				row := inputs[i][r*a.In : (r+1)*a.In]
				if r%2 == 0 {
					even = append(even, row...)
				} else {
					odd = append(odd, row...)
				}
			}
			sameGram(t, fmt.Sprintf("layer %d fold 0", i), a.Folds[0], even, (ex.N+1)/2, a.In)
			sameGram(t, fmt.Sprintf("layer %d fold 1", i), a.Folds[1], odd, ex.N/2, a.In)
		}
	}
}

// sameGram checks that g holds the second moment of the n rows x.
func sameGram(t *testing.T, what string, g *compute.Gram, x []float64, n, in int) {
	t.Helper()
	want := compute.NewGram(in)
	if err := want.Add(x, n); err != nil {
		t.Fatal(err)
	}
	if g.Rows() != n {
		t.Fatalf("%s: %d rows, want %d", what, g.Rows(), n)
	}
	cw, _ := want.Calibration(0)
	cg, _ := g.Calibration(0)
	if d := maxDiff(cg.SecondMoment().RawSymmetric().Data, cw.SecondMoment().RawSymmetric().Data); d > 1e-12 {
		t.Errorf("%s: Gram differs by %g", what, d)
	}
}

func mlpNetwork(m *arrowio.Model) (*compute.Network[float64], error) {
	r, err := NewMLP(m, nil, Set{Fit: Examples{D: 6}, Held: Examples{D: 6}})
	if err != nil {
		return nil, err
	}
	return r.(*mlp).net, nil
}

func maxDiff(a, b []float64) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	var d float64
	for i := range a {
		d = max(d, math.Abs(a[i]-b[i]))
	}
	return d
}

// Loss is the network's own loss on the standardised held-out examples;
// a swap changes it and is undone after: the next Loss is the baseline's.
func TestMLPLossSwapsAndRestores(t *testing.T) {
	m := testMLP(3)
	rng := rand.New(rand.NewPCG(4, 4))
	set := Set{Fit: randomExamples(rng, 30, 6, 3), Held: randomExamples(rng, 50, 6, 3)}
	r, err := NewMLP(m, []string{"fc1.weight"}, set)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	base, err := r.Loss(ctx)
	if err != nil {
		t.Fatal(err)
	}
	net, _ := mlpNetwork(m)
	x := slices.Clone(set.Held.X)
	st := m.Arch.Standardization
	compute.Standardize(x, x, set.Held.N, 6, st.Mean, st.Std)
	want, err := net.Loss(x, set.Held.Y, set.Held.N, compute.NewWorkspace[float64]())
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(base-want) > 1e-12 {
		t.Errorf("baseline loss %g, the network's %g", base, want)
	}
	zero := compute.Convert[float32](compute.NewDenseOp(8, 12, make([]float64, 96)))
	swapped, err := r.Loss(ctx, Swap{Layer: 0, Op: zero})
	if err != nil {
		t.Fatal(err)
	}
	if swapped == base {
		t.Error("zeroing a layer did not change the loss")
	}
	again, err := r.Loss(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if again != base {
		t.Errorf("loss %g after a swap, %g before", again, base)
	}
	bad := set
	bad.Held.Y = slices.Clone(set.Held.Y)
	bad.Held.Y[7] = 3
	rb, err := NewMLP(m, nil, bad)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rb.Loss(ctx); !errors.Is(err, inputerr.ErrInput) {
		t.Errorf("label 3 of a 3-class model: %v, want bad input", err)
	}
}

// Caps bound the rows: a layer that sees more keeps a seeded sample of
// about the cap (never more), the same one on every run.
func TestCapsSample(t *testing.T) {
	m := testMLP(5)
	rng := rand.New(rand.NewPCG(6, 6))
	set := Set{Fit: randomExamples(rng, 1000, 6, 3), Held: randomExamples(rng, 500, 6, 3)}
	r, err := NewMLP(m, []string{"fc0.weight"}, set)
	if err != nil {
		t.Fatal(err)
	}
	caps := Caps{FitRows: 200, HeldRows: 100, Seed: 9}
	a, err := r.Collect(context.Background(), []int{0}, caps)
	if err != nil {
		t.Fatal(err)
	}
	b, err := r.Collect(context.Background(), []int{0}, caps)
	if err != nil {
		t.Fatal(err)
	}
	fit, held := a[0].Gram.Rows(), a[0].HeldRows
	if fit > 200 || fit < 150 || held > 100 || held < 70 {
		t.Errorf("kept %d fit and %d held rows, want about 200 and 100 and no more", fit, held)
	}
	if !slices.Equal(a[0].Held, b[0].Held) || b[0].Gram.Rows() != fit {
		t.Error("two runs kept different rows")
	}
	if a[0].FitSeen != 1000 || a[0].HeldSeen != 500 {
		t.Errorf("seen %d and %d rows, want 1000 and 500", a[0].FitSeen, a[0].HeldSeen)
	}
}

func TestMLPRefuses(t *testing.T) {
	m := testMLP(7)
	rng := rand.New(rand.NewPCG(8, 8))
	wide := Set{Fit: randomExamples(rng, 4, 7, 3), Held: randomExamples(rng, 4, 7, 3)}
	if _, err := NewMLP(m, nil, wide); !errors.Is(err, inputerr.ErrInput) {
		t.Errorf("7 features for 6 inputs: %v, want bad input", err)
	}
	ok := Set{Fit: randomExamples(rng, 4, 6, 3), Held: randomExamples(rng, 4, 6, 3)}
	if _, err := NewMLP(m, []string{"act0.weight"}, ok); !errors.Is(err, inputerr.ErrInput) {
		t.Errorf("an unknown weight: %v, want bad input", err)
	}
}
