package cli_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/strata-ml/strata/stages"
)

// onnxFixtures holds the ONNX models of arrowio/onnx's tests
// (make_fixtures.py), valid ones and malformed/ ones.
const onnxFixtures = "../arrowio/onnx/testdata"

// TestConvertMalformedONNX feeds convert, inspect and export models that
// are not what they claim: each exits 2 (bad input), its message names the
// file and the node (or tensor) at fault, and no output directory or file
// appears.
func TestConvertMalformedONNX(t *testing.T) {
	m := func(name string) string { return filepath.Join(onnxFixtures, "malformed", name) }
	tests := []struct {
		name  string
		model string
		flags []string
		want  []string
	}{
		{"truncated protobuf", m("truncated.onnx"), nil, []string{"truncated.onnx: not an ONNX model, or truncated"}},
		{"cycle", m("cycle.onnx"), nil, []string{`node "r1": is part of a cycle: "r1" -> "add" -> "r1"`}},
		{"missing initializer", m("missing_initializer.onnx"), nil,
			[]string{`node "fc": input "fc.weight" is not a graph input, an initializer or the output of any node (a missing initializer?)`}},
		{"unsupported op in the path of a converted weight", filepath.Join(onnxFixtures, "skipped.onnx"), []string{"--include", "half.float"},
			[]string{`node "via_cast" (MatMul): weight "half.float", which --include names, cannot be converted`, `Cast node`}},
		{"Gemm shapes disagree", m("gemm_in_mismatch.onnx"), nil,
			[]string{`node "fc": Gemm: B "fc.weight" has shape [3 5], read as [out, in] (transB=1): it takes 5 inputs, but A "x" has shape [2 4]`}},
		{"Conv channels disagree", m("conv_channels.onnx"), nil, []string{`node "conv": Conv: W "conv.weight" has shape [4 2 3 3]`}},
		{"MatMul shapes disagree", m("matmul_in_mismatch.onnx"), nil, []string{`node "mm": MatMul: B "w" has shape [5 3]`}},
		{"external data", m("external_data.onnx"), nil, []string{`tensor "fc.weight": its data is stored outside the model`}},
		{"opset 11", m("opset11.onnx"), nil, []string{"opset 11: strata reads opset 13 and later"}},
		{"weight layout on a graph", filepath.Join(onnxFixtures, "gemm_transb1.onnx"), []string{"--weight-layout", "in-out"},
			[]string{"an ONNX graph states each weight's layout"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			out := filepath.Join(dir, "out")
			r := run(t, append([]string{"convert", "--model", tt.model, "--out", out}, tt.flags...)...)
			if r.code != 2 {
				t.Fatalf("convert: exit %d, want 2\n%s", r.code, r.stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("convert: stderr %q does not contain %q", r.stderr, w)
				}
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("convert wrote %s (%v)", out, err)
			}
			if tt.flags != nil {
				return // a valid model refused for the flags it was given
			}
			for _, args := range [][]string{
				{"inspect", tt.model},
				{"export", "--model", tt.model, "--format", "onnx", "--out", filepath.Join(dir, "dense.onnx")},
			} {
				r := run(t, args...)
				if r.code != 2 || !strings.Contains(r.stderr, tt.want[0]) {
					t.Errorf("%s: exit %d, stderr %q; want 2 and %q", args[0], r.code, r.stderr, tt.want[0])
				}
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("inspect or export left %v", entries)
			}
		})
	}
}

// readConvertJSON reads convert.json of an output directory.
func readConvertJSON(t *testing.T, dir string) *stages.ConvertResult {
	t.Helper()
	var res stages.ConvertResult
	b, err := os.ReadFile(filepath.Join(dir, "convert.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	return &res
}

// TestConvertONNXOutputs converts an ONNX model whose weights are stored
// every way convert reads them (Gemm [out, in] with alpha and beta, Gemm
// [in, out], MatMul [in, out] with its bias Add, MatMul behind a
// Transpose, Conv 1x1 and 3x3) and checks the outputs: the named files
// and no others, the input kept byte for byte, every selected weight that
// the graph forbids listed with its reason, and the report and the
// factors agreeing. Then inspect describes the structured model, export
// --factors re-emits model.arrow byte for byte from model.onnx alone, and
// export --format onnx materialises it.
func TestConvertONNXOutputs(t *testing.T) {
	dir := t.TempDir()
	for _, fixture := range []string{"gemm_transb1.onnx", "gemm_transb0.onnx", "matmul3d.onnx", "matmul_transposed.onnx", "conv1x1.onnx", "conv3x3.onnx", "skipped.onnx"} {
		t.Run(fixture, func(t *testing.T) {
			in := filepath.Join(onnxFixtures, fixture)
			out := filepath.Join(dir, fixture)
			r := run(t, "convert", "--model", in, "--out", out, "--structure", "lowrank", "--rank", "1", "--residual-rank", "1", "--allow-larger")
			if r.code != 0 {
				t.Fatalf("convert: exit %d\n%s", r.code, r.stderr)
			}
			entries, _ := os.ReadDir(out)
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			want := []string{"convert.json", "model.arrow", "model.input.onnx", "model.materialized.onnx", "model.onnx"}
			if !slices.Equal(names, want) {
				t.Errorf("outputs %v, want %v", names, want)
			}
			if !bytes.Equal(readBytes(t, in), readBytes(t, filepath.Join(out, "model.input.onnx"))) {
				t.Error("model.input.onnx is not the input byte for byte")
			}
			res := readConvertJSON(t, out)
			if res.Format != "onnx" || res.Outputs.Model != "model.onnx" || res.Outputs.Factors != "model.arrow" ||
				res.Outputs.Materialized != "model.materialized.onnx" || res.Outputs.Input != "model.input.onnx" {
				t.Errorf("format %q, outputs %+v", res.Format, res.Outputs)
			}
			if len(res.Layers) == 0 && fixture != "skipped.onnx" {
				t.Fatal("no layer converted")
			}
			for _, s := range res.Skipped {
				if s.Code != stages.SkipGraph || s.Node == "" || s.Reason == "" {
					t.Errorf("skipped %+v: want the graph's reason and the node", s)
				}
			}
			if fixture == "skipped.onnx" && len(res.Skipped) < 5 {
				t.Errorf("skipped.onnx: %d weights listed as kept dense, want its 5 that cannot be converted: %+v", len(res.Skipped), res.Skipped)
			}

			// inspect sees the structure convert recorded.
			var ins stages.InspectResult
			r = run(t, "inspect", "--json", filepath.Join(out, "model.onnx"))
			if r.code != 0 || json.Unmarshal([]byte(r.stdout), &ins) != nil {
				t.Fatalf("inspect: exit %d\n%s", r.code, r.stderr)
			}
			if ins.Kind != "structured onnx" || ins.ONNX == nil || ins.ONNX.Structure == nil || len(ins.ONNX.Structure.Layers) != len(res.Layers) {
				t.Fatalf("inspect: kind %q, onnx %+v", ins.Kind, ins.ONNX)
			}
			for _, l := range ins.ONNX.Linears {
				if slices.ContainsFunc(res.Layers, func(c stages.ConvertedLayer) bool { return c.Node == l.Node }) {
					t.Errorf("inspect lists the lowered node %q as a dense linear", l.Node)
				}
			}

			// export re-emits the factors from model.onnx alone, and
			// materialises it.
			factors := filepath.Join(dir, fixture+".factors.arrow")
			if r := run(t, "export", "--model", filepath.Join(out, "model.onnx"), "--factors", "--format", "arrow", "--out", factors); r.code != 0 {
				t.Fatalf("export --factors: exit %d\n%s", r.code, r.stderr)
			}
			if !bytes.Equal(readBytes(t, factors), readBytes(t, filepath.Join(out, "model.arrow"))) {
				t.Error("export --factors of model.onnx differs from convert's model.arrow")
			}
			dense := filepath.Join(dir, fixture+".dense.onnx")
			if r := run(t, "export", "--model", filepath.Join(out, "model.onnx"), "--format", "onnx", "--out", dense); r.code != 0 {
				t.Fatalf("export --format onnx: exit %d\n%s", r.code, r.stderr)
			}
			var plain stages.InspectResult
			r = run(t, "inspect", "--json", dense)
			if r.code != 0 || json.Unmarshal([]byte(r.stdout), &plain) != nil || plain.Kind != "onnx" || plain.ONNX.Structure != nil {
				t.Errorf("inspect of the exported model: exit %d, kind %q\n%s", r.code, plain.Kind, r.stderr)
			}
			if len(plain.ONNX.Linears) != len(ins.ONNX.Linears)+len(res.Layers) {
				t.Errorf("the exported model has %d dense linears, want %d", len(plain.ONNX.Linears), len(ins.ONNX.Linears)+len(res.Layers))
			}
		})
	}
}

// TestShardedONNXConvertAndMerge converts an ONNX model in shards of its
// layers and merges them: every output is the full run's byte for byte.
func TestShardedONNXConvertAndMerge(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(onnxFixtures, "torch_mlp.onnx")
	for _, shard := range []struct{ dir, layers string }{{"full", ""}, {"s0", "0"}, {"s1", "1"}} {
		args := []string{"convert", "--model", in, "--out", filepath.Join(dir, shard.dir), "--structure", "lowrank", "--rank", "1", "--residual-rank", "1", "--allow-larger", "--seed", "3"}
		if shard.layers != "" {
			args = append(args, "--layers", shard.layers)
		}
		if r := run(t, args...); r.code != 0 {
			t.Fatalf("convert %s: exit %d\n%s", shard.dir, r.code, r.stderr)
		}
	}
	if r := run(t, "merge", "--out", filepath.Join(dir, "merged"), filepath.Join(dir, "s1"), filepath.Join(dir, "s0")); r.code != 0 {
		t.Fatalf("merge: exit %d\n%s", r.code, r.stderr)
	}
	for _, f := range []string{"model.onnx", "model.arrow", "model.materialized.onnx", "model.input.onnx"} {
		if !bytes.Equal(readBytes(t, filepath.Join(dir, "full", f)), readBytes(t, filepath.Join(dir, "merged", f))) {
			t.Errorf("%s: the merged shards differ from the full run", f)
		}
	}
	full, merged := readConvertJSON(t, filepath.Join(dir, "full")), readConvertJSON(t, filepath.Join(dir, "merged"))
	if full.Totals != merged.Totals || len(merged.Layers) != 2 || merged.Layers[0].Name != full.Layers[0].Name {
		t.Errorf("merged report: totals %+v layers %d, full run %+v", merged.Totals, len(merged.Layers), full.Totals)
	}
}
