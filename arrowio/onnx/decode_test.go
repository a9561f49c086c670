package onnx

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/arrowio/onnx/onnxpb"
	"github.com/strata-ml/strata/internal/inputerr"
)

var update = flag.Bool("update", false, "rewrite testdata/fuzz from the test models")

// python is Debian's interpreter, which has python3-onnx, numpy and torch
// (a python3 earlier on PATH may have none of them).
const python = "/usr/bin/python3"

// TestMalformed reads each model of testdata/malformed (written by
// make_fixtures.py) and checks the error: a *arrowio.FormatError naming the
// file and the node or tensor at fault, with the expected text and class.
func TestMalformed(t *testing.T) {
	tests := []struct {
		file string
		kind error // arrowio.ErrFormat or arrowio.ErrUnsupported
		want string
	}{
		{"truncated.onnx", arrowio.ErrFormat, "truncated.onnx: not an ONNX model, or truncated: invalid protobuf"},
		{"garbage.onnx", arrowio.ErrFormat, "garbage.onnx: not an ONNX model, or truncated: invalid protobuf"},
		{"empty.onnx", arrowio.ErrFormat, "empty.onnx: empty: not an ONNX model"},
		{"cycle.onnx", arrowio.ErrFormat, `cycle.onnx: node "r1": is part of a cycle: "r1" -> "add" -> "r1"`},
		{"unsorted.onnx", arrowio.ErrFormat, `unsorted.onnx: node "second": input "a" is the output of node "first", which comes later: the nodes are not in topological order`},
		{"missing_initializer.onnx", arrowio.ErrFormat, `missing_initializer.onnx: node "fc": input "fc.weight" is not a graph input, an initializer or the output of any node (a missing initializer?)`},
		{"opset11.onnx", arrowio.ErrUnsupported, `opset11.onnx: opset_import "ai.onnx": opset 11: strata reads opset 13 and later`},
		{"no_default_opset.onnx", arrowio.ErrFormat, "no_default_opset.onnx: no opset_import for the default domain (ai.onnx)"},
		{"external_data.onnx", arrowio.ErrUnsupported, `external_data.onnx: tensor "fc.weight": its data is stored outside the model, in "weights.bin": strata reads self-contained models only`},
		{"gemm_in_mismatch.onnx", arrowio.ErrFormat, `gemm_in_mismatch.onnx: node "fc": Gemm: B "fc.weight" has shape [3 5], read as [out, in] (transB=1): it takes 5 inputs, but A "x" has shape [2 4]: 4 features`},
		{"matmul_in_mismatch.onnx", arrowio.ErrFormat, `matmul_in_mismatch.onnx: node "mm": MatMul: B "w" has shape [5 3]: it takes 5 inputs, but A "x" has shape [? 7 4]: 4 features`},
		{"conv_channels.onnx", arrowio.ErrFormat, `conv_channels.onnx: node "conv": Conv: W "conv.weight" has shape [4 2 3 3] and group 1: it takes 2 input channels, but X "x" has shape [1 3 8 8]: 3 channels`},
		{"flatten_gemm.onnx", arrowio.ErrFormat, `flatten_gemm.onnx: node "fc": Gemm: B "fc.weight" has shape [3 81], read as [out, in] (transB=1): it takes 81 inputs, but A "f" has shape [1 80]: 80 features`},
		{"raw_size.onnx", arrowio.ErrFormat, `raw_size.onnx: tensor "fc.weight": FLOAT with dims [3 4] needs 48 bytes of raw_data, has 40`},
		{"duplicate_output.onnx", arrowio.ErrFormat, `duplicate_output.onnx: node "r1": output "y" is also an output of node "r0"`},
	}
	files, _ := filepath.Glob(filepath.Join("testdata", "malformed", "*.onnx"))
	if len(files) != len(tests) {
		t.Errorf("%d files in testdata/malformed, %d tests", len(files), len(tests))
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			_, err := Read(filepath.Join("testdata", "malformed", tt.file))
			mustFormatError(t, err)
			if !errors.Is(err, tt.kind) {
				t.Errorf("error %v does not wrap %v", err, tt.kind)
			}
			if !strings.HasPrefix(err.Error(), filepath.Join("testdata", "malformed", tt.want)) {
				t.Errorf("error\n  %v\nwant it to start with\n  testdata/malformed/%s", err, tt.want)
			}
		})
	}
}

func mustFormatError(t *testing.T, err error) {
	t.Helper()
	var fe *arrowio.FormatError
	if !errors.As(err, &fe) {
		t.Fatalf("error is %T, not a *arrowio.FormatError: %v", err, err)
	}
	if !errors.Is(err, arrowio.ErrFormat) && !errors.Is(err, arrowio.ErrUnsupported) {
		t.Fatalf("error wraps neither ErrFormat nor ErrUnsupported: %v", err)
	}
}

// TestLimits checks that the size bounds refuse before decoding, and that a
// file of many tiny messages (the largest memory per byte protobuf allows)
// is refused by the element bound.
func TestLimits(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "gemm_transb1.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Decode(data, "m.onnx", WithMaxBytes(int64(len(data)-1)))
	mustFormatError(t, err)
	if !strings.Contains(err.Error(), "larger than the") {
		t.Errorf("WithMaxBytes: %v", err)
	}
	_, err = Read(filepath.Join("testdata", "gemm_transb1.onnx"), WithMaxBytes(int64(len(data)-1)))
	mustFormatError(t, err)
	if _, err := Decode(data, "m.onnx", WithMaxBytes(int64(len(data)))); err != nil {
		t.Errorf("a model of exactly the limit: %v", err)
	}
	// A graph (field 7) of a million empty nodes (field 1): 2 MB of file,
	// some 200 MB once decoded.
	nodes := bytes.Repeat([]byte{0x0a, 0x00}, 1<<20)
	bomb := append([]byte{0x3a}, appendVarint(nil, uint64(len(nodes)))...)
	bomb = append(bomb, nodes...)
	_, err = Decode(bomb, "bomb.onnx", WithMaxElements(1000))
	mustFormatError(t, err)
	if !strings.Contains(err.Error(), "more than 1000 messages and strings") {
		t.Errorf("WithMaxElements: %v", err)
	}
}

func appendVarint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

// TestTensorChecks covers the storage rules of checkTensor that the
// malformed models do not.
func TestTensorChecks(t *testing.T) {
	f32 := int32(onnxpb.TensorProto_FLOAT)
	tests := []struct {
		name string
		t    *onnxpb.TensorProto
		want string // "" for valid
	}{
		{"typed", &onnxpb.TensorProto{Dims: []int64{2}, DataType: &f32, FloatData: []float32{1, 2}}, ""},
		{"empty", &onnxpb.TensorProto{Dims: []int64{0, 3}, DataType: &f32}, ""},
		{"short typed", &onnxpb.TensorProto{Dims: []int64{3}, DataType: &f32, FloatData: []float32{1, 2}}, "needs 3 entries in float_data, has 2"},
		{"wrong field", &onnxpb.TensorProto{Dims: []int64{1}, DataType: &f32, Int64Data: []int64{1}}, "FLOAT values belong in float_data, not int64_data"},
		{"both", &onnxpb.TensorProto{Dims: []int64{1}, DataType: &f32, FloatData: []float32{1}, RawData: []byte{0, 0, 0, 0}}, "both raw_data and a typed data field"},
		{"no type", &onnxpb.TensorProto{Dims: []int64{1}, RawData: []byte{0}}, "data_type is not set"},
		{"negative dim", &onnxpb.TensorProto{Dims: []int64{-1}, DataType: &f32}, "a negative dimension"},
		{"huge zero-size", &onnxpb.TensorProto{Dims: []int64{0, 1 << 40, 1 << 40}, DataType: &f32}, "more than 2^50 elements"},
		{"segment", &onnxpb.TensorProto{DataType: &f32, Segment: &onnxpb.TensorProto_Segment{}}, "segmented tensors are not supported"},
		{"newer type", &onnxpb.TensorProto{Dims: []int64{5}, DataType: proto.Int32(17), RawData: []byte{1}}, ""},
	}
	for _, tt := range tests {
		r := checkTensor(tt.t)
		switch {
		case tt.want == "" && r != nil:
			t.Errorf("%s: %v, want valid", tt.name, r)
		case tt.want != "" && (r == nil || !strings.Contains(r.msg, tt.want)):
			t.Errorf("%s: %v, want %q", tt.name, r, tt.want)
		}
	}
}

// TestGraphChecks covers graph rules the malformed models do not: subgraph
// scopes, names defined twice, graph outputs, attribute tensors.
func TestGraphChecks(t *testing.T) {
	base := func() *onnxpb.ModelProto {
		m := readProto(t, "gemm_transb1.onnx")
		return m
	}
	tests := []struct {
		name   string
		change func(m *onnxpb.ModelProto)
		want   string
	}{
		{"output undefined", func(m *onnxpb.ModelProto) { m.Graph.Output[0].Name = proto.String("nowhere") },
			`output "nowhere": graph output is not a graph input`},
		{"initializer twice", func(m *onnxpb.ModelProto) {
			m.Graph.Initializer = append(m.Graph.Initializer, m.Graph.Initializer[0])
		}, `tensor "fc.weight": "fc.weight" is defined twice: by an initializer and by an initializer`},
		{"output shadows initializer", func(m *onnxpb.ModelProto) { m.Graph.Node[0].Output[0] = "fc.bias" },
			`node "fc": output "fc.bias" is already defined by an initializer`},
		{"no op", func(m *onnxpb.ModelProto) { m.Graph.Node[0].OpType = nil }, `node "fc": no op_type`},
		{"external constant", func(m *onnxpb.ModelProto) {
			c := NewNode("Constant", "k", nil, []string{"k_out"})
			c.Attribute = []*onnxpb.AttributeProto{{Name: proto.String("value"), Type: onnxpb.AttributeProto_TENSOR.Enum(),
				T: &onnxpb.TensorProto{Name: proto.String("kt"), DataType: proto.Int32(1), DataLocation: onnxpb.TensorProto_EXTERNAL.Enum()}}}
			m.Graph.Node = append([]*onnxpb.NodeProto{c}, m.Graph.Node...)
		}, `node "k": attribute "value": tensor "kt": its data is stored outside the model`},
		{"subgraph reads outer", func(m *onnxpb.ModelProto) {
			m.Graph.Node = append(m.Graph.Node, ifNode("if", "y", "fc.bias"))
		}, ""},
		{"subgraph missing", func(m *onnxpb.ModelProto) {
			m.Graph.Node = append(m.Graph.Node, ifNode("if", "y", "nope"))
		}, `node "if/then_branch/r": input "nope" is not a graph input`},
		{"subgraph shadows", func(m *onnxpb.ModelProto) {
			n := ifNode("if", "y", "fc.bias")
			n.Attribute[0].G.Node[0].Output[0] = "x"
			n.Attribute[0].G.Output[0].Name = proto.String("x")
			m.Graph.Node = append(m.Graph.Node, n)
		}, `node "if/then_branch/r": output "x" is already defined by a graph input`},
		{"duplicate opset", func(m *onnxpb.ModelProto) {
			m.OpsetImport = append(m.OpsetImport, &onnxpb.OperatorSetIdProto{Domain: proto.String("ai.onnx"), Version: proto.Int64(13)})
		}, `opset_import "ai.onnx": imported more than once`},
		{"no ir_version", func(m *onnxpb.ModelProto) { m.IrVersion = nil }, "ir_version is not set"},
		{"bad conv attr", func(m *onnxpb.ModelProto) {
			m.Graph.Node[0].OpType = proto.String("Conv")
			m.Graph.Initializer[0].Dims = []int64{3, 4, 1, 1}
			m.Graph.Node[0].Attribute = []*onnxpb.AttributeProto{IntsAttr("strides", 1)}
		}, `node "fc": Conv: strides has 1 entries, want 2`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := base()
			tt.change(m)
			err := (&Model{Proto: m, File: "m.onnx"}).Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("want valid: %v", err)
				}
				return
			}
			mustFormatError(t, err)
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error\n  %v\nwant it to contain\n  %s", err, tt.want)
			}
		})
	}
}

// ifNode returns an If node called name whose branches each apply a Relu
// to the value read and output y.
func ifNode(name, cond, read string) *onnxpb.NodeProto {
	branch := func() *onnxpb.GraphProto {
		return &onnxpb.GraphProto{Name: proto.String("b"), Node: []*onnxpb.NodeProto{NewNode("Relu", "r", []string{read}, []string{name + "_r"})},
			Output: []*onnxpb.ValueInfoProto{{Name: proto.String(name + "_r")}}}
	}
	n := NewNode("If", name, []string{cond}, []string{name + "_out"})
	n.Attribute = []*onnxpb.AttributeProto{
		{Name: proto.String("then_branch"), Type: onnxpb.AttributeProto_GRAPH.Enum(), G: branch()},
		{Name: proto.String("else_branch"), Type: onnxpb.AttributeProto_GRAPH.Enum(), G: branch()},
	}
	return n
}

func readProto(t *testing.T, file string) *onnxpb.ModelProto {
	t.Helper()
	m, err := Read(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	return m.Proto
}

// fuzzSeeds are the test models, valid and malformed.
func fuzzSeeds(t testing.TB) [][]byte {
	valid, _ := filepath.Glob(filepath.Join("testdata", "*.onnx"))
	bad, _ := filepath.Glob(filepath.Join("testdata", "malformed", "*.onnx"))
	var seeds [][]byte
	for _, f := range append(valid, bad...) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		seeds = append(seeds, b)
	}
	return seeds
}

// FuzzDecode feeds arbitrary bytes to Decode. Its seed corpus,
// testdata/fuzz/FuzzDecode, holds the test models (TestFuzzSeeds -update
// rewrites it). A model that decodes must find its linear maps without
// panicking and re-encode to bytes that decode to an equal model.
func FuzzDecode(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Decode(data, "fuzz.onnx", WithMaxElements(1<<16))
		if err != nil {
			mustFormatError(t, err)
			return
		}
		m.Linears()
		b, err := m.Encode()
		if err != nil {
			t.Fatalf("encode: %v", err)
		}
		again, err := Decode(b, "again.onnx")
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if !proto.Equal(again.Proto, m.Proto) {
			t.Fatal("re-decoded model differs")
		}
	})
}

// TestFuzzSeeds checks that testdata/fuzz/FuzzDecode holds exactly the test
// models; with -update it rewrites it.
func TestFuzzSeeds(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzDecode")
	want := map[string]string{}
	for i, s := range fuzzSeeds(t) {
		want[fmt.Sprintf("seed-%02d", i)] = "go test fuzz v1\n[]byte(" + strconv.Quote(string(s)) + ")\n"
	}
	if *update {
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, body := range want {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(want) {
		t.Fatalf("%s has %d seeds, want %d: run go test -run TestFuzzSeeds -update", dir, len(entries), len(want))
	}
	for name, body := range want {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || string(got) != body {
			t.Fatalf("%s/%s is stale (%v): run go test -run TestFuzzSeeds -update", dir, name, err)
		}
	}
}

// TestFixturesFresh reruns make_fixtures.py into a temporary folder and
// checks that it writes exactly the committed files: the script is
// deterministic and the models are what it says.
func TestFixturesFresh(t *testing.T) {
	tmp := t.TempDir()
	cmd := exec.Command(python, filepath.Join("testdata", "make_fixtures.py"), tmp)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make_fixtures.py (needs Debian's python3-onnx, python3-numpy, python3-torch): %v\n%s", err, out)
	}
	err := filepath.WalkDir(tmp, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(tmp, path)
		got, _ := os.ReadFile(path)
		want, err := os.ReadFile(filepath.Join("testdata", rel))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("testdata/%s differs from what make_fixtures.py writes (%v): rerun it", rel, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Read refuses a named pipe as bad input at once: opening one with no
// writer would block for ever, and reading it has no size to bound.
func TestReadRefusesPipe(t *testing.T) {
	path := filepath.Join(t.TempDir(), "model.onnx")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := Read(path); done <- err }()
	select {
	case err := <-done:
		if !errors.Is(err, inputerr.ErrInput) || !strings.Contains(err.Error(), "named pipe") {
			t.Errorf("Read of a pipe: %v, want bad input naming the pipe", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read of a named pipe with no writer still waiting after 5 s")
	}
}
