package stages

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"testing"

	"gonum.org/v1/gonum/mat"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/compute"
	"github.com/strata-ml/strata/modelmap"
)

func TestConvertEveryFamily(t *testing.T) {
	dir := t.TempDir()
	in := writeTestModel(t, dir, "dense.arrow", testMLP([]int{16, 32, 24, 5}, 1))
	for _, family := range compute.TrunkFamilies {
		t.Run(family, func(t *testing.T) {
			cfg := DefaultConvertConfig()
			cfg.Model, cfg.Out, cfg.Structure, cfg.ResidualRank = in, filepath.Join(dir, family), family, 2
			cfg.AllowLarger = true // layers this small: every family's S + R is the test
			res, err := Convert(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Layers) != 3 {
				t.Fatalf("converted %d layers, want 3", len(res.Layers))
			}
			orig, err := arrowio.ReadModel(in)
			if err != nil {
				t.Fatal(err)
			}
			conv, err := arrowio.ReadModel(filepath.Join(cfg.Out, "model.arrow"))
			if err != nil {
				t.Fatal(err)
			}
			dense, err := arrowio.ReadModel(filepath.Join(cfg.Out, "model.materialized.arrow"))
			if err != nil {
				t.Fatal(err)
			}
			total := 0
			for _, l := range res.Layers {
				if l.Family != family {
					t.Errorf("layer %s: family %q, want %q", l.Name, l.Family, family)
				}
				w0, _ := orig.Tensor(l.Tensor)
				w1, ok := dense.Tensor(l.Tensor)
				if !ok {
					t.Fatalf("dense copy has no %q", l.Tensor)
				}
				// The reported error is the error of what the files store.
				got := relErr32(w0.Data, w1.Data)
				if math.Abs(got-float64(l.RelativeError)) > 1e-5*max(got, 1e-3) {
					t.Errorf("layer %s: relative_error %v, files give %v", l.Name, l.RelativeError, got)
				}
				if l.Params != l.ParamsTrunk+l.ParamsCorrection {
					t.Errorf("layer %s: params %d != trunk %d + correction %d", l.Name, l.Params, l.ParamsTrunk, l.ParamsCorrection)
				}
				op, err := modelmap.Operator[float64](conv, l.Name, l.Hyperparameters)
				if err != nil {
					t.Fatal(err)
				}
				if n := compute.NumParams(op); n != l.Params {
					t.Errorf("layer %s: convert.json says %d params, model file holds %d", l.Name, l.Params, n)
				}
				total += l.Params
			}
			if total != res.Totals.Params {
				t.Errorf("totals.params %d, layers sum to %d", res.Totals.Params, total)
			}
			if got := dirEntries(t, cfg.Out); len(got) != 3 {
				t.Errorf("output files %v, want model.arrow, model.materialized.arrow, convert.json", got)
			}
		})
	}
}

func relErr32(a, b []float32) float64 {
	var num, den float64
	for i := range a {
		d := float64(a[i]) - float64(b[i])
		num += d * d
		den += float64(a[i]) * float64(a[i])
	}
	return math.Sqrt(num / den)
}

// TestConvertInFamilyIsExact converts weights that lie in the family: the
// stored decomposition reproduces them to float32 rounding.
func TestConvertInFamilyIsExact(t *testing.T) {
	m := testMLP([]int{12, 24, 8}, 2)
	rng := compute.Spec{Family: compute.FamilyLowRank, Rank: 3}
	for i := range m.Tensors {
		tt := &m.Tensors[i]
		if tt.Role != compute.RoleWeight {
			continue
		}
		out, in := int(tt.Shape[0]), int(tt.Shape[1])
		w := mat.NewDense(out, in, nil)
		for j, v := range tt.Data {
			w.RawMatrix().Data[j] = float64(v)
		}
		rng.Out, rng.In = out, in
		op, err := compute.Project(w, rng, 1) // the rank-3 part of the random weight
		if err != nil {
			t.Fatal(err)
		}
		dense := compute.Dense(op).RawMatrix().Data
		for j := range tt.Data {
			tt.Data[j] = float32(dense[j])
		}
	}
	dir := t.TempDir()
	cfg := DefaultConvertConfig()
	cfg.Model = writeTestModel(t, dir, "in.arrow", m)
	cfg.Out, cfg.Structure, cfg.Rank, cfg.Residual = filepath.Join(dir, "out"), compute.FamilyLowRank, 3, "none"
	res, err := Convert(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range res.Layers {
		if l.RelativeError > 1e-6 {
			t.Errorf("layer %s: relative error %g for an in-family weight", l.Name, l.RelativeError)
		}
	}
}

// TestConvertShardsMergeToFullRun checks that converting shards with
// --layers and merging them gives the bytes of one full run.
func TestConvertShardsMergeToFullRun(t *testing.T) {
	for _, ext := range []string{".arrow", ".safetensors"} {
		t.Run(ext, func(t *testing.T) {
			dir := t.TempDir()
			in := writeTestModel(t, dir, "dense"+ext, testMLP([]int{16, 32, 32, 24, 4}, 3))
			run := func(out, layers string) {
				cfg := DefaultConvertConfig()
				cfg.Model, cfg.Out, cfg.Layers, cfg.Seed = in, filepath.Join(dir, out), layers, 7
				if _, err := Convert(context.Background(), cfg); err != nil {
					t.Fatal(err)
				}
			}
			run("full", "")
			run("a", "0,2")
			run("b", "1-1")
			run("c", "3")
			if _, err := Merge(context.Background(), MergeConfig{Out: filepath.Join(dir, "merged"),
				Shards: []string{filepath.Join(dir, "a"), filepath.Join(dir, "b"), filepath.Join(dir, "c")}}); err != nil {
				t.Fatal(err)
			}
			for _, f := range []string{"model.arrow", "model.materialized" + ext} {
				if !bytes.Equal(readFile(t, filepath.Join(dir, "full", f)), readFile(t, filepath.Join(dir, "merged", f))) {
					t.Errorf("%s: merged shards differ from the full run", f)
				}
			}
			var full, merged ConvertResult
			json.Unmarshal(readFile(t, filepath.Join(dir, "full", "convert.json")), &full)
			json.Unmarshal(readFile(t, filepath.Join(dir, "merged", "convert.json")), &merged)
			if full.Totals != merged.Totals || len(full.Layers) != len(merged.Layers) {
				t.Errorf("totals %+v (%d layers) vs merged %+v (%d layers)", full.Totals, len(full.Layers), merged.Totals, len(merged.Layers))
			}
			// A layer converted twice is refused.
			_, err := Merge(context.Background(), MergeConfig{Out: filepath.Join(dir, "dup"),
				Shards: []string{filepath.Join(dir, "a"), filepath.Join(dir, "full")}})
			if !errors.Is(err, ErrInput) {
				t.Errorf("merging overlapping shards: err = %v, want ErrInput", err)
			}
		})
	}
}

func TestConvertDeterministic(t *testing.T) {
	dir := t.TempDir()
	in := writeTestModel(t, dir, "dense.arrow", testMLP([]int{200, 180, 10}, 4))
	var outs [2][]byte
	for i := range outs {
		cfg := DefaultConvertConfig()
		cfg.Model, cfg.Out, cfg.Structure, cfg.Rank, cfg.Seed = in, filepath.Join(dir, string(rune('a'+i))), compute.FamilyLowRank, 20, 3
		if _, err := Convert(context.Background(), cfg); err != nil {
			t.Fatal(err)
		}
		outs[i] = readFile(t, filepath.Join(cfg.Out, "model.arrow"))
	}
	if !bytes.Equal(outs[0], outs[1]) {
		t.Error("same input and seed gave different model.arrow bytes")
	}
}

func TestConvertGenericSafetensors(t *testing.T) {
	dir := t.TempDir()
	ts := []arrowio.Tensor{
		{Name: "encoder.q_proj.weight", Shape: []int64{16, 16}, Data: seq32(256)},
		{Name: "encoder.q_proj.bias", Shape: []int64{16}, Data: seq32(16)},
		{Name: "encoder.norm.scale", Shape: []int64{16}, Data: seq32(16)},
		{Name: "head.weight", Shape: []int64{4, 16}, Data: seq32(64)},
	}
	in := filepath.Join(dir, "ckpt.safetensors")
	if err := arrowio.WriteSafetensors(in, ts, map[string]string{"origin": "test"}); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConvertConfig()
	cfg.Model, cfg.Out, cfg.Include, cfg.Structure = in, filepath.Join(dir, "out"), []string{"encoder.*"}, compute.FamilyToeplitz
	cfg.AllowLarger = true
	res, err := Convert(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Layers) != 1 || res.Layers[0].Name != "encoder.q_proj" {
		t.Fatalf("converted %+v, want only encoder.q_proj", res.Layers)
	}
	sf, err := arrowio.ReadSafetensors(filepath.Join(cfg.Out, "model.materialized.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	if len(sf.Tensors) != 4 || sf.Metadata["origin"] != "test" {
		t.Errorf("dense copy: %d tensors, metadata %v; want 4 tensors and the input's metadata", len(sf.Tensors), sf.Metadata)
	}
	m, err := arrowio.ReadModel(filepath.Join(cfg.Out, "model.arrow"))
	if err != nil {
		t.Fatal(err)
	}
	if m.Arch.Kind != arrowio.ArchGeneric {
		t.Errorf("architecture kind %q, want generic", m.Arch.Kind)
	}
	if _, ok := m.Tensor("head.weight"); !ok {
		t.Error("unselected weight head.weight missing from the converted model")
	}
}

func seq32(n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(math.Sin(float64(i)*1.3)) + float32(i%7)*0.1
	}
	return s
}

func TestConvertBadInput(t *testing.T) {
	dir := t.TempDir()
	good := writeTestModel(t, dir, "good.arrow", testMLP([]int{8, 8, 3}, 5))
	truncated := filepath.Join(dir, "truncated.arrow")
	os.WriteFile(truncated, readFile(t, good)[:100], 0o644)
	notModel := filepath.Join(dir, "x.txt")
	os.WriteFile(notModel, []byte("hello"), 0o644)
	tests := []struct {
		name string
		mod  func(*ConvertConfig)
	}{
		{"glob matches nothing", func(c *ConvertConfig) { c.Include = []string{"nope.*"} }},
		{"unknown structure", func(c *ConvertConfig) { c.Structure = "fourier" }},
		{"bad residual", func(c *ConvertConfig) { c.Residual = "dense" }},
		{"layers out of range", func(c *ConvertConfig) { c.Layers = "0-5" }},
		{"layers malformed", func(c *ConvertConfig) { c.Layers = "a-b" }},
		{"kron factors malformed", func(c *ConvertConfig) { c.KronFactors = "8by8" }},
		{"auto without target", func(c *ConvertConfig) { c.Structure = StructureAuto }},
		{"truncated file", func(c *ConvertConfig) { c.Model = truncated }},
		{"unknown extension", func(c *ConvertConfig) { c.Model = notModel }},
		{"missing file", func(c *ConvertConfig) { c.Model = filepath.Join(dir, "absent.arrow") }},
		{"negative blocks", func(c *ConvertConfig) { c.Structure, c.Blocks = compute.FamilyMonarch, -2 }},
		{"sparse density zero", func(c *ConvertConfig) { c.Residual, c.ResidualDensity = "sparse", 0 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConvertConfig()
			cfg.Model, cfg.Out = good, filepath.Join(dir, "out-"+tt.name)
			tt.mod(&cfg)
			_, err := Convert(context.Background(), cfg)
			if !errors.Is(err, ErrInput) {
				t.Fatalf("err = %v, want ErrInput", err)
			}
			if got := dirEntries(t, cfg.Out); len(got) != 0 {
				t.Errorf("bad input left output %v", got)
			}
		})
	}
}

func TestExportMatchesDenseCopy(t *testing.T) {
	dir := t.TempDir()
	cfg := DefaultConvertConfig()
	cfg.Model = writeTestModel(t, dir, "in.safetensors", testMLP([]int{16, 16, 4}, 6))
	cfg.Out = filepath.Join(dir, "out")
	if _, err := Convert(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	for _, format := range []string{FormatSafetensors, FormatArrow} {
		out := filepath.Join(dir, "export."+format)
		if err := Export(context.Background(), ExportConfig{Model: filepath.Join(cfg.Out, "model.arrow"), Format: format, Out: out}); err != nil {
			t.Fatal(err)
		}
		if format == FormatSafetensors {
			if !bytes.Equal(readFile(t, out), readFile(t, filepath.Join(cfg.Out, "model.materialized.safetensors"))) {
				t.Error("exported safetensors differ from convert's dense copy")
			}
		}
		res, err := Inspect(context.Background(), out, "")
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range res.Layers {
			if l.Structure != nil {
				t.Errorf("exported layer %s still has structure %+v", l.Name, l.Structure)
			}
		}
	}
}

func TestInspectDescribesStructure(t *testing.T) {
	dir := t.TempDir()
	cfg := DefaultConvertConfig()
	cfg.Model = writeTestModel(t, dir, "in.arrow", testMLP([]int{16, 32, 4}, 7))
	cfg.Out = filepath.Join(dir, "out")
	cfg.Structure, cfg.Blocks, cfg.Rank, cfg.ResidualRank, cfg.AllowLarger = compute.FamilyMonarch, 4, 2, 3, true
	if _, err := Convert(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	res, err := Inspect(context.Background(), filepath.Join(cfg.Out, "model.arrow"), "")
	if err != nil {
		t.Fatal(err)
	}
	l := res.Layers[0]
	if l.Structure == nil || l.Structure.Trunk.Family != compute.FamilyMonarch || l.Structure.Correction.Rank != 3 {
		t.Fatalf("layer 0 structure %+v", l.Structure)
	}
	// monarch 32x16 b=4 r=2: 4*2*(32+16) = 384, lowrank 3: 3*(32+16) = 144.
	if l.Params != 384+144 {
		t.Errorf("layer 0 params %d, want %d", l.Params, 384+144)
	}
}
