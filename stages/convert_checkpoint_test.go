package stages

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/compute"
	"github.com/strata-ml/strata/internal/testmodels"
	"github.com/strata-ml/strata/modelmap"
)

// storedTensor is one tensor of a safetensors file as its bytes are.
type storedTensor struct {
	dtype string
	shape []int64
	data  []byte
}

// safetensorsBytes returns every tensor of a safetensors file with the
// bytes the file holds for it, read from the header's offsets.
func safetensorsBytes(t *testing.T, path string) map[string]storedTensor {
	t.Helper()
	raw := readFile(t, path)
	n := binary.LittleEndian.Uint64(raw)
	var header map[string]json.RawMessage
	if err := json.Unmarshal(raw[8:8+n], &header); err != nil {
		t.Fatal(err)
	}
	out := map[string]storedTensor{}
	for name, h := range header {
		if name == "__metadata__" {
			continue
		}
		var e struct {
			DType   string  `json:"dtype"`
			Shape   []int64 `json:"shape"`
			Offsets [2]int  `json:"data_offsets"`
		}
		if err := json.Unmarshal(h, &e); err != nil {
			t.Fatal(err)
		}
		out[name] = storedTensor{e.DType, e.Shape, raw[8+int(n)+e.Offsets[0] : 8+int(n)+e.Offsets[1]]}
	}
	return out
}

// TestConvertCheckpointPassThrough converts the PyTorch checkpoint of
// internal/testmodels that holds BatchNorm (with its int64
// num_batches_tracked), two embedding tables and an int64 position_ids
// buffer, and checks that every tensor convert does not decompose comes
// out byte for byte, with its dtype and shape: in the dense copy
// model.materialized.safetensors and in model.arrow (integer tensors as
// raw bytes, float32 bit for bit).
func TestConvertCheckpointPassThrough(t *testing.T) {
	set := testmodels.Build(t)
	cfg := DefaultConvertConfig()
	cfg.Model, cfg.Out = set.Checkpoint.Safetensors, filepath.Join(t.TempDir(), "out")
	res, err := Convert(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	converted := map[string]bool{}
	for _, l := range res.Layers {
		converted[l.Tensor] = true
	}
	if !converted["fc.weight"] {
		t.Fatalf("fc.weight (64 x 256) not converted: layers %+v, kept dense %+v", res.Layers, res.Skipped)
	}
	in := safetensorsBytes(t, set.Checkpoint.Safetensors)
	out := safetensorsBytes(t, filepath.Join(cfg.Out, res.Outputs.Materialized))
	m, err := arrowio.ReadModel(filepath.Join(cfg.Out, res.Outputs.Factors))
	if err != nil {
		t.Fatal(err)
	}
	ints := 0
	for name, w := range in {
		g, ok := out[name]
		if !ok || g.dtype != w.dtype || !slices.Equal(g.shape, w.shape) {
			t.Errorf("%s: dense copy has %s %v (present %v), the input %s %v", name, g.dtype, g.shape, ok, w.dtype, w.shape)
			continue
		}
		if converted[name] {
			continue
		}
		if !bytes.Equal(g.data, w.data) {
			t.Errorf("%s: the dense copy's bytes differ from the input's", name)
		}
		a, ok := m.Tensor(name)
		switch {
		case !ok:
			t.Errorf("%s: missing from model.arrow", name)
		case w.dtype == "F32":
			if a.IsRaw() || !bytes.Equal(float32Bytes(a.Data), w.data) {
				t.Errorf("%s: model.arrow's values differ from the input's", name)
			}
		default:
			ints++
			if a.DType != w.dtype || !bytes.Equal(a.Raw, w.data) {
				t.Errorf("%s: model.arrow holds %s %d bytes, the input %s %d bytes", name, a.DType, len(a.Raw), w.dtype, len(w.data))
			}
		}
	}
	if ints != 2 {
		t.Errorf("%d integer tensors passed through, want 2 (bn.num_batches_tracked, position_ids)", ints)
	}
	if m.Version() != 2 {
		t.Errorf("model.arrow is format version %d, want 2 (raw tensors)", m.Version())
	}
}

func float32Bytes(v []float32) []byte {
	b := make([]byte, 0, 4*len(v))
	for _, x := range v {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
	}
	return b
}

// TestConvertWeightStorage converts a generic checkpoint whose weights
// are stored three ways and checks that each comes back as itself: a
// weight named linear_77.w_0 (no ".weight"), a Conv1D weight [in, out]
// (recognised from its bias, or forced by --weight-layout), and a 3x3
// convolution [out, c, 3, 3] read as out x (c 3 3). At full rank the
// factors are exact, so the dense copy must hold the input's values under
// the input's names and shapes, and the operator in model.arrow must
// compute the module's own map: y = x W for the Conv1D.
func TestConvertWeightStorage(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	rnd := func(name string, shape ...int64) arrowio.Tensor {
		t := arrowio.Tensor{Name: name, Shape: shape, Data: make([]float32, 1)}
		n := 1
		for _, d := range shape {
			n *= int(d)
		}
		t.Data = make([]float32, n)
		for i := range t.Data {
			t.Data[i] = float32(rng.NormFloat64())
		}
		return t
	}
	ts := []arrowio.Tensor{
		rnd("linear_77.w_0", 5, 4),
		rnd("h.0.attn.c_attn.weight", 4, 6), rnd("h.0.attn.c_attn.bias", 6),
		rnd("conv.weight", 6, 2, 3, 3), rnd("conv.bias", 6),
	}
	dir := t.TempDir()
	in := filepath.Join(dir, "ckpt.safetensors")
	if err := arrowio.WriteSafetensors(in, ts, nil); err != nil {
		t.Fatal(err)
	}
	for _, layout := range []string{WeightLayoutAuto, WeightLayoutInOut} {
		t.Run(layout, func(t *testing.T) {
			cfg := DefaultConvertConfig()
			cfg.Model, cfg.Out, cfg.WeightLayout = in, filepath.Join(dir, layout), layout
			cfg.Structure, cfg.Rank, cfg.Residual, cfg.AllowLarger = compute.FamilyLowRank, 6, compute.ResidualNone, true
			if layout == WeightLayoutInOut {
				cfg.Include = []string{"h.*"}
			}
			res, err := Convert(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]struct {
				shape  [2]int
				layout string
				kernel []int64
			}{
				"linear_77.w_0":          {[2]int{5, 4}, "", nil},
				"h.0.attn.c_attn.weight": {[2]int{6, 4}, arrowio.LayoutInOut, nil},
				"conv.weight":            {[2]int{6, 18}, "", []int64{3, 3}},
			}
			if layout == WeightLayoutInOut && len(res.Layers) != 1 {
				t.Fatalf("converted %d layers, want h.0.attn.c_attn only", len(res.Layers))
			}
			for _, l := range res.Layers {
				w := want[l.Tensor]
				if l.Shape != w.shape || l.Layout != w.layout || !slices.Equal(l.Kernel, w.kernel) || l.RelativeError > 1e-6 {
					t.Errorf("layer %s: W %v layout %q kernel %v error %g; want %v %q %v and exact", l.Name, l.Shape, l.Layout, l.Kernel, l.RelativeError, w.shape, w.layout, w.kernel)
				}
			}
			dense := safetensorsBytes(t, filepath.Join(cfg.Out, res.Outputs.Materialized))
			sf, err := arrowio.ReadSafetensors(filepath.Join(cfg.Out, res.Outputs.Materialized))
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range ts {
				g, ok := dense[w.Name]
				if !ok || g.dtype != "F32" || !slices.Equal(g.shape, w.Shape) {
					t.Errorf("%s: the dense copy holds %s %v (present %v), want F32 %v", w.Name, g.dtype, g.shape, ok, w.Shape)
					continue
				}
				got, _ := modelTensor(sf.Tensors, w.Name)
				if d := maxAbsDiff(got.Data, w.Data); d > 1e-5 {
					t.Errorf("%s: the dense copy differs from the input by %g", w.Name, d)
				}
			}
			// The Conv1D's operator computes y = x W_stored.
			m, err := arrowio.ReadModel(filepath.Join(cfg.Out, res.Outputs.Factors))
			if err != nil {
				t.Fatal(err)
			}
			op, err := modelmap.Operator[float64](m, "h.0.attn.c_attn", res.Layers[slices.IndexFunc(res.Layers, func(l ConvertedLayer) bool { return l.Name == "h.0.attn.c_attn" })].Hyperparameters)
			if err != nil {
				t.Fatal(err)
			}
			x := []float64{0.5, -1, 2, 0.25}
			y := make([]float64, 6)
			op.Apply(y, x, 1, compute.NewWorkspace[float64]())
			for j := range 6 {
				var want float64
				for i := range 4 {
					want += x[i] * float64(ts[1].Data[i*6+j])
				}
				if math.Abs(y[j]-want) > 1e-5 {
					t.Errorf("Conv1D y[%d] = %g, x W gives %g", j, y[j], want)
				}
			}
		})
	}
	// An MLP's weights are [out, in]: --weight-layout in-out is refused.
	cfg := DefaultConvertConfig()
	cfg.Model, cfg.Out, cfg.WeightLayout = writeTestModel(t, dir, "mlp.arrow", testMLP([]int{4, 8, 2}, 1)), filepath.Join(dir, "mlp"), WeightLayoutInOut
	if _, err := Convert(context.Background(), cfg); !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), "MLP") {
		t.Errorf("in-out on an MLP: %v, want ErrInput", err)
	}
}

func modelTensor(ts []arrowio.Tensor, name string) (arrowio.Tensor, bool) {
	for _, t := range ts {
		if t.Name == name {
			return t, true
		}
	}
	return arrowio.Tensor{}, false
}

func maxAbsDiff(a, b []float32) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	d := 0.0
	for i := range a {
		d = max(d, math.Abs(float64(a[i])-float64(b[i])))
	}
	return d
}

// TestConvertKeepsLayersDense checks the two reasons a selected weight
// stays dense, each listed in convert.json: a convolution with a kernel,
// which only a low-rank structure factors (--conv-structure lowrank
// converts it), and an S + R that would not be smaller than the dense
// weight (--allow-larger converts it). Counting every parameter, no
// output is larger than its input unless asked.
func TestConvertKeepsLayersDense(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 8))
	randT := func(name string, shape ...int64) arrowio.Tensor {
		n := int64(1)
		for _, d := range shape {
			n *= d
		}
		t := arrowio.Tensor{Name: name, Shape: shape, Data: make([]float32, n)}
		for i := range t.Data {
			t.Data[i] = float32(rng.NormFloat64())
		}
		return t
	}
	dir := t.TempDir()
	in := filepath.Join(dir, "ckpt.safetensors")
	ts := []arrowio.Tensor{randT("conv.weight", 32, 16, 3, 3), randT("small.weight", 8, 8), randT("big.weight", 64, 64)}
	if err := arrowio.WriteSafetensors(in, ts, nil); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		mod       func(*ConvertConfig)
		converted []string
		skipped   map[string]string // tensor -> code
	}{
		{"defaults", func(*ConvertConfig) {}, []string{"big.weight"},
			map[string]string{"conv.weight": SkipKernel, "small.weight": SkipLarger}},
		{"conv structure lowrank", func(c *ConvertConfig) { c.ConvStructure = compute.FamilyLowRank }, []string{"conv.weight", "big.weight"},
			map[string]string{"small.weight": SkipLarger}},
		{"structure lowrank covers convolutions", func(c *ConvertConfig) { c.Structure = compute.FamilyLowRank }, []string{"conv.weight", "big.weight"},
			map[string]string{"small.weight": SkipLarger}},
		{"allow larger", func(c *ConvertConfig) { c.AllowLarger = true }, []string{"small.weight", "big.weight"},
			map[string]string{"conv.weight": SkipKernel}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConvertConfig()
			cfg.Model, cfg.Out = in, filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-"))
			tt.mod(&cfg)
			res, err := Convert(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, l := range res.Layers {
				got = append(got, l.Tensor)
				if l.Params >= l.ParamsDense && !cfg.AllowLarger {
					t.Errorf("layer %s: %d parameters for a dense %d, converted without --allow-larger", l.Name, l.Params, l.ParamsDense)
				}
			}
			if !slices.Equal(got, tt.converted) {
				t.Errorf("converted %v, want %v", got, tt.converted)
			}
			if len(res.Skipped) != len(tt.skipped) {
				t.Errorf("kept dense %+v, want %v", res.Skipped, tt.skipped)
			}
			for _, s := range res.Skipped {
				if tt.skipped[s.Tensor] != s.Code || s.Reason == "" {
					t.Errorf("kept dense %s: code %q (%s), want %q", s.Tensor, s.Code, s.Reason, tt.skipped[s.Tensor])
				}
				if s.Code == SkipLarger && s.Params < s.ParamsDense {
					t.Errorf("kept dense %s: %d parameters < dense %d", s.Tensor, s.Params, s.ParamsDense)
				}
			}
			if !cfg.AllowLarger && res.Totals.Params >= res.Totals.ParamsDense {
				t.Errorf("totals %+v: not smaller", res.Totals)
			}
		})
	}
}

// TestConvertAutoMissed asks auto for a target no candidate meets: the
// layers are named in convert.json's auto_missed and in MissedTarget's
// error (bad input: the same model and target miss again), and a pilot
// with that convert stops at its convert stage with the message.
func TestConvertAutoMissed(t *testing.T) {
	dir := t.TempDir()
	cfg := DefaultConvertConfig()
	// No candidate of auto reaches a random 64 x 64 weight to 1e-9 (the
	// small 64 x 16 and 4 x 64 layers may be reached exactly).
	cfg.Model = writeTestModel(t, dir, "in.arrow", testMLP([]int{16, 64, 64, 4}, 9))
	cfg.Out, cfg.Structure, cfg.TargetError, cfg.AllowLarger = filepath.Join(dir, "out"), StructureAuto, 1e-9, true
	res, err := Convert(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(res.AutoMissed, "2") {
		t.Errorf("auto_missed %v, want the 64 x 64 layer 2 in it", res.AutoMissed)
	}
	err = res.MissedTarget()
	if !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), "structure auto missed target_error 1e-09 on") ||
		!strings.Contains(err.Error(), strings.Join(res.AutoMissed, ", ")) {
		t.Errorf("MissedTarget: %v", err)
	}
	var written ConvertResult
	if err := json.Unmarshal(readFile(t, filepath.Join(cfg.Out, "convert.json")), &written); err != nil || !slices.Equal(written.AutoMissed, res.AutoMissed) {
		t.Errorf("convert.json auto_missed %v (%v)", written.AutoMissed, err)
	}
	cfg.TargetError = 0.9
	if res, err := Convert(context.Background(), cfg); err != nil || res.MissedTarget() != nil {
		t.Errorf("a target auto meets: %v, %v", err, res.MissedTarget())
	}

	pc := DefaultPilotConfig()
	pc.Workdir, pc.Data, pc.Model = filepath.Join(dir, "pilot"), "iris", writeTestModel(t, dir, "iris.arrow", testMLP([]int{4, 64, 64, 3}, 2))
	pc.Convert.Structure, pc.Convert.TargetError = StructureAuto, 1e-9
	_, err = Pilot(context.Background(), pc)
	if !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), "convert stage: structure auto missed target_error 1e-09") {
		t.Errorf("pilot with an unreachable target: %v", err)
	}
	if _, err := os.Stat(filepath.Join(pc.Workdir, "finetune")); !os.IsNotExist(err) {
		t.Errorf("the pilot went on to fine-tune (%v)", err)
	}
}
