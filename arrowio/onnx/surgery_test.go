package onnx

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/arrowio/onnx/onnxpb"
)

// pythonCheck runs onnx.checker (full_check: with strict shape inference) on
// each file with Debian's python3-onnx, and checks that python's onnx
// re-serialises each to exactly its bytes. A missing python3-onnx fails.
func pythonCheck(t *testing.T, files ...string) {
	t.Helper()
	script := `
import sys, onnx
for path in sys.argv[1:]:
    data = open(path, "rb").read()
    m = onnx.load_from_string(data)
    onnx.checker.check_model(m, full_check=True)
    assert m.SerializeToString() == data, path + ": python re-serialises it differently"
print("ok")
`
	out, err := exec.Command(python, append([]string{"-c", script}, files...)...).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Fatalf("python3 onnx.checker (needs Debian's python3-onnx): %v\n%s", err, out)
	}
}

// TestRoundTrip decodes every test model and encodes it again: the bytes
// are those python's onnx (or PyTorch's exporter) wrote, and encoding is
// deterministic.
func TestRoundTrip(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.onnx"))
	if len(files) < 10 {
		t.Fatalf("only %d test models", len(files))
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		m, err := Decode(data, f)
		if err != nil {
			t.Fatal(err)
		}
		b, err := m.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, data) {
			t.Errorf("%s: encodes to %d bytes unlike the %d python wrote", f, len(b), len(data))
		}
		again, _ := m.Encode()
		if !bytes.Equal(again, b) {
			t.Errorf("%s: two encodings differ", f)
		}
	}
}

// TestUnknownFieldsKept checks that fields onnx.proto 1.12 does not know
// (written by a newer ONNX) survive a round trip.
func TestUnknownFieldsKept(t *testing.T) {
	data, _ := os.ReadFile(filepath.Join("testdata", "gemm_transb1.onnx"))
	// Field 99 (varint 7) appended to the ModelProto.
	data = append(bytes.Clone(data), 0x98, 0x06, 0x07)
	m, err := Decode(data, "m.onnx")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := m.Encode()
	if !bytes.Equal(b, data) {
		t.Error("an unknown field did not survive the round trip")
	}
}

// lowRank returns the nodes and initializers computing x W^T (+ B) through
// two MatMuls, x U then (x U) V, with U = W^T and V the identity, so the
// result is exactly the original map, and an Add of B if l has a bias; y is
// the output name.
func lowRank(m *Model, l Linear, input, y string) ([]*onnxpb.NodeProto, []*onnxpb.TensorProto) {
	u := make([]float64, l.In*l.Out) // [in, out]
	for o := range l.Out {
		for i := range l.In {
			u[i*l.Out+o] = l.W[o*l.In+i]
		}
	}
	v := make([]float64, l.Out*l.Out)
	for i := range l.Out {
		v[i*l.Out+i] = 1
	}
	uName, vName, h := m.NewName(l.Node+".U"), m.NewName(l.Node+".V"), m.NewName(l.Node+"_h")
	out := y
	if l.B != nil {
		out = m.NewName(l.Node + "_hv")
	}
	nodes := []*onnxpb.NodeProto{
		NewNode("MatMul", m.NewName(l.Node+"_u"), []string{input, uName}, []string{h}),
		NewNode("MatMul", l.Node, []string{h, vName}, []string{out}),
	}
	inits := []*onnxpb.TensorProto{
		Float32Tensor(uName, []int64{int64(l.In), int64(l.Out)}, u),
		Float32Tensor(vName, []int64{int64(l.Out), int64(l.Out)}, v),
	}
	if l.Op == "Conv" {
		// A k x k conv to rank Out, then a 1x1 conv: the low-rank form
		// of a conv, with the original's attributes on the first.
		first := proto.Clone(findNode(m, l.Node)).(*onnxpb.NodeProto)
		first.Name, first.Input, first.Output = nodes[0].Name, []string{input, uName}, []string{h}
		nodes[0] = first
		nodes[1].OpType = proto.String("Conv")
		dims := append([]int64{int64(l.Out), int64(l.In) / prod(l.Kernel)}, l.Kernel...)
		inits[0] = Float32Tensor(uName, dims, l.W)
		inits[1] = Float32Tensor(vName, []int64{int64(l.Out), int64(l.Out), 1, 1}, v)
		if l.B != nil {
			b := m.NewName(l.Node + ".b")
			nodes[1].Input = append(nodes[1].Input, b)
			inits = append(inits, Float32Tensor(b, []int64{int64(l.Out)}, l.B))
		}
		nodes[1].Output[0] = y
		return nodes, inits
	}
	if l.B != nil && l.BiasNode == "" { // a MatMul's bias Add stays as it is
		b := m.NewName(l.Node + ".b")
		nodes = append(nodes, NewNode("Add", m.NewName(l.Node+"_bias"), []string{out, b}, []string{y}))
		inits = append(inits, Float32Tensor(b, []int64{int64(l.Out)}, l.B))
	} else {
		nodes[1].Output[0] = y
	}
	return nodes, inits
}

// TestReplaceNode replaces every linear map of several test models by a
// two-MatMul subgraph that computes the same map, and checks: onnx.checker
// passes; the Identity and Transpose that fed a replaced weight are gone
// with the weight; every other initializer is byte for byte as it was; and
// the new graph's linear maps compose to the old W.
func TestReplaceNode(t *testing.T) {
	dir := t.TempDir()
	var written []string
	for _, file := range []string{"matmul_transposed.onnx", "passthrough.onnx", "gemm_transb1.onnx", "gemm_transb0.onnx", "matmul3d.onnx", "torch_seq.onnx", "torch_cnn.onnx", "conv3x3.onnx"} {
		t.Run(file, func(t *testing.T) {
			m, err := Read(filepath.Join("testdata", file))
			if err != nil {
				t.Fatal(err)
			}
			before := map[string][]byte{}
			for _, init := range m.Proto.Graph.Initializer {
				before[init.GetName()], _ = proto.Marshal(init)
			}
			linears, _ := m.Linears()
			replaced := map[string]bool{}
			for _, l := range linears {
				n := findNode(m, l.Node)
				nodes, inits := lowRank(m, l, n.Input[0], n.Output[0])
				if err := m.ReplaceNode(l.Node, nodes, inits); err != nil {
					t.Fatalf("replace %s: %v", l.Node, err)
				}
				replaced[l.Weight] = true
				if l.BiasNode == "" {
					replaced[l.Bias] = true // folded into a new initializer
				}
				for _, v := range l.Via {
					if findNode(m, v) != nil {
						t.Errorf("node %s of %s's Via is still there", v, l.Node)
					}
				}
			}
			for _, init := range m.Proto.Graph.Initializer {
				if b, ok := before[init.GetName()]; ok {
					if replaced[init.GetName()] {
						t.Errorf("replaced weight %s is still there", init.GetName())
					}
					got, _ := proto.Marshal(init)
					if !bytes.Equal(got, b) {
						t.Errorf("initializer %s changed", init.GetName())
					}
					delete(before, init.GetName())
				}
			}
			for name := range before {
				if !replaced[name] {
					t.Errorf("initializer %s disappeared", name)
				}
			}
			after, _ := m.Linears()
			checkComposition(t, linears, after, replaced)
			path := filepath.Join(dir, file)
			if err := m.Write(path); err != nil {
				t.Fatal(err)
			}
			written = append(written, path)
		})
	}
	pythonCheck(t, written...)
}

// checkComposition checks that for each replaced linear of before, after
// holds its two factors (named by lowRank) and that they multiply back to
// the original W.
func checkComposition(t *testing.T, before, after []Linear, replaced map[string]bool) {
	t.Helper()
	byNode := map[string]Linear{}
	for _, l := range after {
		byNode[l.Node] = l
	}
	for _, l := range before {
		if !replaced[l.Weight] {
			continue
		}
		v, ok := byNode[l.Node]
		u, ok2 := byNode[l.Node+"_u"]
		if !ok || !ok2 {
			t.Fatalf("%s: the factors are not linear maps of the new graph", l.Node)
		}
		// W = Wv Wu: (out x out) (out x in).
		for o := range l.Out {
			for i := range l.In {
				s := 0.0
				for k := range l.Out {
					s += v.W[o*v.In+k] * u.W[k*u.In+i]
				}
				if s != float64(float32(l.W[o*l.In+i])) {
					t.Fatalf("%s: W[%d][%d] = %v after, %v before", l.Node, o, i, s, l.W[o*l.In+i])
				}
			}
		}
		if !slices.Equal(v.B, f32(l.B)) {
			t.Errorf("%s: bias %v after, %v before", l.Node, v.B, l.B)
		}
		if l.BiasNode != "" && v.BiasNode != l.BiasNode {
			t.Errorf("%s: the bias Add %q no longer follows the node", l.Node, l.BiasNode)
		}
	}
}

func prod(dims []int64) int64 {
	p := int64(1)
	for _, d := range dims {
		p *= d
	}
	return p
}

// f32 rounds x to float32 values.
func f32(x []float64) []float64 {
	if x == nil {
		return nil
	}
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = float64(float32(v))
	}
	return out
}

func findNode(m *Model, name string) *onnxpb.NodeProto {
	for _, n := range m.Proto.Graph.Node {
		if n.GetName() == name {
			return n
		}
	}
	return nil
}

// TestReplaceNodeOrder checks that a new node reading a value computed later
// in the graph moves after its producer, and nothing else moves.
func TestReplaceNodeOrder(t *testing.T) {
	m := chain(t)
	// b = a + c, where c is computed after b's old place.
	err := m.ReplaceNode("B", []*onnxpb.NodeProto{NewNode("Add", "B", []string{"a", "c"}, []string{"b"})}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, n := range m.Proto.Graph.Node {
		order = append(order, n.GetName())
	}
	if want := []string{"A", "C", "B", "D"}; !slices.Equal(order, want) {
		t.Errorf("order %v, want %v", order, want)
	}
}

// chain is x -> A: Relu -> a -> B: Relu -> b; x -> C: Relu -> c; D: Add(b, c) -> y.
func chain(t *testing.T) *Model {
	t.Helper()
	f := onnxpb.TensorProto_FLOAT
	vi := func(name string) *onnxpb.ValueInfoProto {
		return &onnxpb.ValueInfoProto{Name: proto.String(name), Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
			TensorType: &onnxpb.TypeProto_Tensor{ElemType: proto.Int32(int32(f)), Shape: &onnxpb.TensorShapeProto{
				Dim: []*onnxpb.TensorShapeProto_Dimension{{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: 2}}}}}}}}
	}
	pb := &onnxpb.ModelProto{IrVersion: proto.Int64(7),
		OpsetImport: []*onnxpb.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(13)}},
		Graph: &onnxpb.GraphProto{Name: proto.String("chain"),
			Node: []*onnxpb.NodeProto{
				NewNode("Relu", "A", []string{"x"}, []string{"a"}),
				NewNode("Relu", "B", []string{"a"}, []string{"b"}),
				NewNode("Relu", "C", []string{"x"}, []string{"c"}),
				NewNode("Add", "D", []string{"b", "c"}, []string{"y"}),
			},
			Input: []*onnxpb.ValueInfoProto{vi("x")}, Output: []*onnxpb.ValueInfoProto{vi("y")},
			ValueInfo: []*onnxpb.ValueInfoProto{vi("b")}}}
	m := &Model{Proto: pb, File: "chain.onnx"}
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestReplaceNodeErrors checks that a replacement that would break the graph
// fails with ErrReplace and leaves the model exactly as it was.
func TestReplaceNodeErrors(t *testing.T) {
	relu := func(name, in, out string) *onnxpb.NodeProto {
		return NewNode("Relu", name, []string{in}, []string{out})
	}
	tests := []struct {
		name   string
		target string
		nodes  []*onnxpb.NodeProto
		inits  []*onnxpb.TensorProto
		want   string
	}{
		{"no such node", "Z", nil, nil, "no such node"},
		{"output dropped", "B", []*onnxpb.NodeProto{relu("B", "a", "b2")}, nil, `its output "b" is still read (by nodes "D"`},
		{"cycle", "B", []*onnxpb.NodeProto{NewNode("Add", "B", []string{"a", "y"}, []string{"b"})}, nil, "the new nodes make a cycle"},
		{"name taken", "B", []*onnxpb.NodeProto{relu("C", "a", "b")}, nil, `a new node must have a name of its own, not "C"`},
		{"unnamed", "B", []*onnxpb.NodeProto{relu("", "a", "b")}, nil, `a new node must have a name of its own, not ""`},
		{"same name twice", "B", []*onnxpb.NodeProto{relu("B", "a", "t"), relu("B", "t", "b")}, nil, `two new nodes are named "B"`},
		{"initializer clash", "B", []*onnxpb.NodeProto{relu("B", "a", "b")}, []*onnxpb.TensorProto{Float32Tensor("c", []int64{1}, []float64{1})},
			`the new initializer "c" has the name of an existing value`},
		{"value defined twice", "B", []*onnxpb.NodeProto{relu("B", "a", "b"), relu("B2", "a", "c")}, nil, `output "c" is also an output of node "B2"`},
		{"missing input", "B", []*onnxpb.NodeProto{relu("B", "nowhere", "b")}, nil, `input "nowhere" is not a graph input`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := chain(t)
			before := proto.Clone(m.Proto)
			err := m.ReplaceNode(tt.target, tt.nodes, tt.inits)
			if !errors.Is(err, ErrReplace) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want ErrReplace with %q", err, tt.want)
			}
			if !proto.Equal(m.Proto, before) {
				t.Error("the model changed")
			}
		})
	}
	// A validation failure carries the FormatError too.
	m := chain(t)
	err := m.ReplaceNode("B", []*onnxpb.NodeProto{relu("B", "nowhere", "b")}, nil)
	var fe *arrowio.FormatError
	if !errors.As(err, &fe) || fe.Field != "B" {
		t.Errorf("error %v: want a *arrowio.FormatError about node B", err)
	}
}

// TestReplaceInitializerInPlace checks that an initializer read only by the
// replaced node can be given new values under its name, in its place.
func TestReplaceInitializerInPlace(t *testing.T) {
	m, err := Read(filepath.Join("testdata", "gemm_transb1.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	n := proto.Clone(findNode(m, "fc")).(*onnxpb.NodeProto)
	bias := Float32Tensor("fc.bias", []int64{3}, []float64{1, 2, 3})
	if err := m.ReplaceNode("fc", []*onnxpb.NodeProto{n}, []*onnxpb.TensorProto{bias}); err != nil {
		t.Fatal(err)
	}
	if names := initNames(m); !slices.Equal(names, []string{"fc.weight", "fc.bias"}) {
		t.Errorf("initializers %v", names)
	}
	ls, _ := m.Linears()
	if !slices.Equal(ls[0].B, []float64{2, 4, 6}) { // beta = 2
		t.Errorf("B = %v, want [2 4 6]", ls[0].B)
	}
	// fc.weight is read by the new node too: replacing it is refused when
	// another node would keep reading the old values.
	other := NewNode("Relu", "other", []string{"fc.weight"}, []string{"w_relu"})
	m.Proto.Graph.Node = append(m.Proto.Graph.Node, other)
	err = m.ReplaceNode("fc", []*onnxpb.NodeProto{n}, []*onnxpb.TensorProto{Float32Tensor("fc.weight", []int64{3, 4}, make([]float64, 12))})
	if !errors.Is(err, ErrReplace) || !strings.Contains(err.Error(), "would replace one that other nodes or the graph read") {
		t.Errorf("error %v", err)
	}
}

func initNames(m *Model) []string {
	var names []string
	for _, t := range m.Proto.Graph.Initializer {
		names = append(names, t.GetName())
	}
	return names
}

func TestNewName(t *testing.T) {
	m := chain(t)
	got := []string{m.NewName("A"), m.NewName("A"), m.NewName("fresh"), m.NewName("fresh"), m.NewName("x"), m.NewName("")}
	want := []string{"A_1", "A_2", "fresh", "fresh_1", "x_1", "_1"}
	if !slices.Equal(got, want) {
		t.Errorf("NewName: %v, want %v", got, want)
	}
	m.Proto.Graph.Node[2].Name = nil
	if n := m.NameNodes(); n != 1 || m.Proto.Graph.Node[2].GetName() != "Relu" {
		t.Errorf("NameNodes named %d, node 2 is %q; want 1, Relu", n, m.Proto.Graph.Node[2].GetName())
	}
}

func TestOpset(t *testing.T) {
	m := chain(t)
	if v := m.Opset("ai.onnx"); v != 13 {
		t.Errorf("Opset(ai.onnx) = %d", v)
	}
	m.SetOpset("", 17)
	m.SetOpset("com.strata", 1)
	if m.Opset("") != 17 || m.Opset("com.strata") != 1 || len(m.Proto.OpsetImport) != 2 {
		t.Errorf("opsets %v", m.Proto.OpsetImport)
	}
}

// TestTensorConstructors checks that Float32Tensor and Int64Tensor write
// what Floats (and python's numpy_helper) read back.
func TestTensorConstructors(t *testing.T) {
	vals := []float64{1.5, -2, 0.1, 3e-8}
	f, err := Floats(Float32Tensor("w", []int64{2, 2}, vals))
	if err != nil {
		t.Fatal(err)
	}
	for i := range vals {
		if f[i] != float64(float32(vals[i])) {
			t.Errorf("Floats[%d] = %v, want %v", i, f[i], float32(vals[i]))
		}
	}
	if _, err := Floats(Int64Tensor("s", []int64{2}, []int64{2, -1})); !errors.Is(err, arrowio.ErrUnsupported) {
		t.Errorf("Floats of an INT64 tensor: %v, want ErrUnsupported", err)
	}
	defer func() {
		if recover() == nil {
			t.Error("Float32Tensor with too few values did not panic")
		}
	}()
	Float32Tensor("w", []int64{3}, vals)
}

// TestReplaceNodePrunes checks that a node left unread by a replacement goes,
// with its value_info, and that value_info of surviving values stays.
func TestReplaceNodePrunes(t *testing.T) {
	m := chain(t)
	a := proto.Clone(m.Proto.Graph.ValueInfo[0]).(*onnxpb.ValueInfoProto)
	a.Name = proto.String("a")
	m.Proto.Graph.ValueInfo = append(m.Proto.Graph.ValueInfo, a)
	// b = relu(x): A, which computed a for B alone, is now dead.
	if err := m.ReplaceNode("B", []*onnxpb.NodeProto{NewNode("Relu", "B", []string{"x"}, []string{"b"})}, nil); err != nil {
		t.Fatal(err)
	}
	var order, info []string
	for _, n := range m.Proto.Graph.Node {
		order = append(order, n.GetName())
	}
	for _, vi := range m.Proto.Graph.ValueInfo {
		info = append(info, vi.GetName())
	}
	if !slices.Equal(order, []string{"B", "C", "D"}) || !slices.Equal(info, []string{"b"}) {
		t.Errorf("nodes %v, value_info %v; want [B C D], [b]", order, info)
	}
}
