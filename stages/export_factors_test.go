package stages

import (
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
	"testing"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/compute"
	"github.com/strata-ml/strata/modelmap"
)

// TestExportFactors converts a model (monarch trunk on widths b does not
// divide, lowrank correction), exports it with --factors and checks that
// the safetensors file holds exactly the model file's tensors, bit for
// bit, with its architecture in __metadata__; --format arrow gives the
// model file again; and the export loads back as the same model.
func TestExportFactors(t *testing.T) {
	dir := t.TempDir()
	in := writeTestModel(t, dir, "dense.arrow", testMLP([]int{13, 18, 10, 3}, 7))
	cfg := DefaultConvertConfig()
	cfg.Model, cfg.Out, cfg.Structure, cfg.Blocks, cfg.ResidualRank = in, filepath.Join(dir, "conv"), "monarch", 2, 2
	cfg.Exclude, cfg.AllowLarger = []string{"4.weight"}, true
	if _, err := Convert(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	modelPath := filepath.Join(cfg.Out, "model.arrow")
	want, err := arrowio.ReadModel(modelPath)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "factors.safetensors")
	if err := Export(context.Background(), ExportConfig{Model: modelPath, Format: FormatSafetensors, Out: out, Factors: true}); err != nil {
		t.Fatal(err)
	}
	sf, err := arrowio.ReadSafetensors(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(sf.Tensors) != len(want.Tensors) {
		t.Fatalf("%d tensors, the model file has %d", len(sf.Tensors), len(want.Tensors))
	}
	parts := 0
	for _, w := range want.Tensors {
		if w.Role == compute.RoleTrunk || w.Role == compute.RoleCorrection {
			parts++
		}
		i := slices.IndexFunc(sf.Tensors, func(t arrowio.Tensor) bool { return t.Name == w.Name })
		if i < 0 {
			t.Fatalf("no tensor %q", w.Name)
		}
		g := sf.Tensors[i]
		if sf.DTypes[g.Name] != "F32" || !slices.Equal(g.Shape, w.Shape) || !slices.Equal(g.Data, w.Data) {
			t.Errorf("tensor %q: %s %v differs from the model file's %v", g.Name, sf.DTypes[g.Name], g.Shape, w.Shape)
		}
	}
	if parts == 0 {
		t.Fatal("the converted model has no factors")
	}
	if sf.Metadata[MetaFactorsFormatVersion] != "1" {
		t.Errorf("%s = %q, want 1", MetaFactorsFormatVersion, sf.Metadata[MetaFactorsFormatVersion])
	}
	var arch arrowio.Architecture
	if err := json.Unmarshal([]byte(sf.Metadata[arrowio.MetaArchitecture]), &arch); err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal(arch)
	b, _ := json.Marshal(want.Arch)
	if string(a) != string(b) {
		t.Errorf("architecture\n%s\nwant\n%s", a, b)
	}
	// The export is a model strata reads back: the same network.
	lm, err := loadModel(context.Background(), out, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := modelmap.Network[float64](lm.model); err != nil {
		t.Fatalf("the export does not load as a network: %v", err)
	}

	outArrow := filepath.Join(dir, "factors.arrow")
	if err := Export(context.Background(), ExportConfig{Model: modelPath, Format: FormatArrow, Out: outArrow, Factors: true}); err != nil {
		t.Fatal(err)
	}
	got, err := arrowio.ReadModel(outArrow)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Tensors) != len(want.Tensors) {
		t.Fatalf("arrow: %d tensors, want %d", len(got.Tensors), len(want.Tensors))
	}
	for i, w := range want.Tensors {
		if g := got.Tensors[i]; g.Name != w.Name || g.Role != w.Role || !slices.Equal(g.Data, w.Data) {
			t.Errorf("arrow: tensor %d %q differs from the model file's %q", i, g.Name, w.Name)
		}
	}
}
