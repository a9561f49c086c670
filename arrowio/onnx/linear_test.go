package onnx

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// expectFile is testdata/expect.json, written by make_fixtures.py: per
// model, the linear maps that PyTorch or numpy says it holds.
type expectFile map[string]struct {
	Linears []struct {
		Node, Op, Weight, Bias string
		BiasNode               string `json:"bias_node"`
		Via                    []string
		Out, In                int
		W, B                   []float64
		X, Y                   *array
	}
	Skipped []struct{ Node, Weight string }
}

type array struct {
	Shape []int
	Data  []float64
}

func readExpect(t *testing.T) expectFile {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "expect.json"))
	if err != nil {
		t.Fatal(err)
	}
	var e expectFile
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatal(err)
	}
	return e
}

// TestLinears checks every linear map found in the test models against the
// script's truth: names, orientation, W and B exactly as stored (alpha and
// beta folded in by numpy), and one forward pass of the node computed by
// numpy or PyTorch from the ONNX operator's definition, reproduced here as
// y = W x + B (a conv by explicit patches).
func TestLinears(t *testing.T) {
	for file, want := range readExpect(t) {
		t.Run(file, func(t *testing.T) {
			m, err := Read(filepath.Join("testdata", file))
			if err != nil {
				t.Fatal(err)
			}
			got, _ := m.Linears()
			if len(got) != len(want.Linears) {
				t.Fatalf("%d linears, want %d: %+v", len(got), len(want.Linears), got)
			}
			for i, w := range want.Linears {
				g := got[i]
				if w.Node != "" { // torch's names are the exporter's: not checked
					if g.Node != w.Node || g.Op != w.Op || g.Weight != w.Weight || g.Bias != w.Bias || g.BiasNode != w.BiasNode || !slices.Equal(g.Via, w.Via) {
						t.Errorf("linear %d: got node %q op %s weight %q bias %q (%q) via %q, want %q %s %q %q (%q) %q",
							i, g.Node, g.Op, g.Weight, g.Bias, g.BiasNode, g.Via, w.Node, w.Op, w.Weight, w.Bias, w.BiasNode, w.Via)
					}
				}
				if g.Out != w.Out || g.In != w.In {
					t.Fatalf("linear %d (%s): %d x %d, want %d x %d", i, g.Node, g.Out, g.In, w.Out, w.In)
				}
				if !slices.Equal(g.W, w.W) {
					t.Errorf("linear %d (%s): W differs from the truth", i, g.Node)
				}
				if !slices.Equal(g.B, w.B) {
					t.Errorf("linear %d (%s): B = %v, want %v", i, g.Node, g.B, w.B)
				}
				if w.X == nil {
					continue
				}
				y := forward(t, g, w.X, w.Y.Shape)
				for j := range y {
					if d := math.Abs(y[j] - w.Y.Data[j]); d > 1e-5*(1+math.Abs(w.Y.Data[j])) {
						t.Fatalf("linear %d (%s): y[%d] = %v, want %v", i, g.Node, j, y[j], w.Y.Data[j])
					}
				}
			}
			if len(want.Skipped) > 0 {
				_, skipped := m.Linears()
				var names []string
				for _, s := range skipped {
					names = append(names, s.Node+":"+s.Weight)
				}
				var wantNames []string
				for _, s := range want.Skipped {
					wantNames = append(wantNames, s.Node+":"+s.Weight)
				}
				if !slices.Equal(names, wantNames) {
					t.Errorf("skipped %v, want %v", names, wantNames)
				}
			}
		})
	}
}

// forward applies l to x the way the ONNX node does: on the last axis for
// Gemm and MatMul, as a 2-D convolution for Conv. The output has shape
// outShape.
func forward(t *testing.T, l Linear, x *array, outShape []int) []float64 {
	t.Helper()
	n := 1
	for _, d := range outShape {
		n *= d
	}
	y := make([]float64, n)
	bias := func(o int) float64 {
		if l.B == nil {
			return 0
		}
		return l.B[o]
	}
	if l.Op != "Conv" {
		for r := range len(x.Data) / l.In {
			for o := range l.Out {
				s := bias(o)
				for c := range l.In {
					s += l.W[o*l.In+c] * x.Data[r*l.In+c]
				}
				y[r*l.Out+o] = s
			}
		}
		return y
	}
	if len(l.Kernel) != 2 {
		t.Fatalf("forward: only 2-D convs, kernel %v", l.Kernel)
	}
	cin, h, w := x.Shape[1], x.Shape[2], x.Shape[3]
	kh, kw := int(l.Kernel[0]), int(l.Kernel[1])
	oh, ow := outShape[2], outShape[3]
	c := l.Conv
	for b := range x.Shape[0] {
		for o := range l.Out {
			for i := range oh {
				for j := range ow {
					s := bias(o)
					for ch := range cin {
						for p := range kh {
							for q := range kw {
								r := i*int(c.Strides[0]) - int(c.Pads[0]) + p*int(c.Dilations[0])
								col := j*int(c.Strides[1]) - int(c.Pads[1]) + q*int(c.Dilations[1])
								if r < 0 || r >= h || col < 0 || col >= w {
									continue
								}
								s += l.W[o*l.In+(ch*kh+p)*kw+q] * x.Data[((b*cin+ch)*h+r)*w+col]
							}
						}
					}
					y[((b*l.Out+o)*oh+i)*ow+j] = s
				}
			}
		}
	}
	return y
}

// TestLinearsDetails pins what TestLinears does not: layouts, Gemm's
// attributes, conv attributes, pointwise, and the reasons of skipped
// weights.
func TestLinearsDetails(t *testing.T) {
	linears := func(file string) ([]Linear, []Skipped) {
		m, err := Read(filepath.Join("testdata", file))
		if err != nil {
			t.Fatal(err)
		}
		return m.Linears()
	}
	ls, _ := linears("gemm_transb0.onnx")
	if ls[0].Layout != InOut || ls[1].Layout != OutIn || ls[0].Alpha != 1.5 || ls[0].Beta != 0.25 {
		t.Errorf("gemm_transb0: layouts %v %v, alpha %v beta %v; want in-out, out-in, 1.5, 0.25", ls[0].Layout, ls[1].Layout, ls[0].Alpha, ls[0].Beta)
	}
	ls, _ = linears("matmul_transposed.onnx")
	if ls[0].Layout != OutIn || ls[1].Layout != OutIn {
		t.Errorf("matmul_transposed: layouts %v %v, want out-in (a transposed [in, out])", ls[0].Layout, ls[1].Layout)
	}
	ls, _ = linears("conv3x3.onnx")
	c := ls[0].Conv
	if ls[0].Pointwise || !slices.Equal(ls[0].Kernel, []int64{3, 3}) || !slices.Equal(c.Strides, []int64{2, 2}) ||
		!slices.Equal(c.Pads, []int64{1, 1, 1, 1}) || !slices.Equal(ls[1].Conv.Dilations, []int64{2, 2}) || c.AutoPad != "NOTSET" {
		t.Errorf("conv3x3: %+v %+v", ls[0], *c)
	}
	ls, _ = linears("conv1x1.onnx")
	if !ls[0].Pointwise || ls[0].In != 3 || ls[0].Out != 6 {
		t.Errorf("conv1x1: pointwise %v, %d x %d; want true, 6 x 3", ls[0].Pointwise, ls[0].Out, ls[0].In)
	}
	_, skipped := linears("skipped.onnx")
	reasons := map[string]string{
		"dw":       "group=3",
		"tied_a":   `read by nodes "tied_a", "tied_b" (tied weights)`,
		"tied_b":   "tied weights",
		"trans_a":  "transA=1",
		"via_cast": `through Cast node "cast"`,
		"left":     "left operand",
	}
	for _, s := range skipped {
		if !strings.Contains(s.Reason, reasons[s.Node]) {
			t.Errorf("skipped %s: reason %q, want it to contain %q", s.Node, s.Reason, reasons[s.Node])
		}
	}
}
