package pytorch_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/strata-ml/strata/internal/testbin"
	"github.com/strata-ml/strata/internal/testmodels"
	"github.com/strata-ml/strata/stages"
)

// applied is what check_apply.py reports of one model.
type applied struct {
	Swapped []string
	Modules []string
	RelDiff float64  `json:"rel_diff"`
	NoGrad  []string `json:"no_grad"`
	ONNX    string
	Logits  string
	Torch   string
	// Converted are the layers strata convert decomposed; Input is the
	// model's evaluation input.
	Converted []string         `json:"-"`
	Input     testmodels.Array `json:"-"`
}

// applyCases are the models of internal/testmodels strata_torch.apply is
// checked on, with the convert flags of each: the CNN with its 3x3
// convolutions low-rank (conv1 and conv2 go through the two-convolution
// form, conv3 through the patches), the transformer without its
// attention, whose nn.MultiheadAttention reads its projection weights
// directly. --allow-larger converts the small layers too, so that every
// kind of layer is swapped.
var applyCases = []struct {
	name  string
	flags []string
}{
	{"cnn", []string{"--conv-structure", "lowrank", "--allow-larger"}},
	{"transformer", []string{"--exclude", "encoder.self_attn.*", "--allow-larger"}},
}

var applyRuns struct {
	once sync.Once
	dir  string
	runs map[string]*applied
}

// TestMain removes what the apply runs wrote.
func TestMain(m *testing.M) {
	code := m.Run()
	if applyRuns.dir != "" {
		os.RemoveAll(applyRuns.dir)
	}
	os.Exit(code)
}

// runApply converts each model's safetensors checkpoint with the strata
// binary, exports the factors, and runs check_apply.py on them, once for
// every test of the package.
func runApply(t *testing.T) map[string]*applied {
	t.Helper()
	py := python(t)
	set := testmodels.Build(t)
	strata, err := testbin.Path()
	if err != nil {
		t.Fatal(err)
	}
	applyRuns.once.Do(func() {
		dir, err := os.MkdirTemp("", "strata-apply")
		if err != nil {
			t.Fatal(err)
		}
		applyRuns.dir, applyRuns.runs = dir, map[string]*applied{}
		models := map[string]*testmodels.Model{"cnn": set.CNN, "transformer": set.Transformer}
		for _, c := range applyCases {
			m := models[c.name]
			out := filepath.Join(dir, c.name)
			run(t, strata, append([]string{"convert", "--model", m.Safetensors, "--out", out}, c.flags...)...)
			factors := filepath.Join(out, "factors.safetensors")
			run(t, strata, "export", "--model", filepath.Join(out, "model.arrow"), "--factors", "--format", "safetensors", "--out", factors)
			var a applied
			if err := json.Unmarshal(run(t, py, "check_apply.py", set.Dir, c.name, m.Safetensors,
				filepath.Join(out, stages.MaterializedName(stages.FormatSafetensors)), factors, filepath.Join(out, "applied")), &a); err != nil {
				t.Fatal(err)
			}
			var res stages.ConvertResult
			b, err := os.ReadFile(filepath.Join(out, "convert.json"))
			if err != nil || json.Unmarshal(b, &res) != nil {
				t.Fatalf("convert.json: %v", err)
			}
			for _, l := range res.Layers {
				a.Converted = append(a.Converted, l.Name)
			}
			a.Input = m.Input
			applyRuns.runs[c.name] = &a
		}
	})
	if applyRuns.runs == nil || len(applyRuns.runs) != len(applyCases) {
		t.Fatal("the apply runs failed in an earlier test")
	}
	return applyRuns.runs
}

// TestApply checks strata_torch.apply on a CNN and a transformer encoder
// trained in PyTorch: it swaps exactly the layers strata converted (every
// nn.Linear and nn.Conv2d asked), the swapped module computes what the
// module with strata's model.materialized.safetensors loaded computes, to
// 1e-5 relative in float32 (eval mode under torch.no_grad, where
// nn.TransformerEncoderLayer would otherwise take its fused path), a
// backward pass reaches every factor, and torch.onnx.export of the swapped
// module writes a model strata reads.
func TestApply(t *testing.T) {
	runs := runApply(t)
	for _, c := range applyCases {
		t.Run(c.name, func(t *testing.T) {
			a := runs[c.name]
			t.Logf("torch %s: swapped %v as %v; logits within %.2g of the materialised model's", a.Torch, a.Swapped, a.Modules, a.RelDiff)
			swapped, converted := slices.Sorted(slices.Values(a.Swapped)), slices.Sorted(slices.Values(a.Converted))
			if len(swapped) == 0 || !slices.Equal(swapped, converted) {
				t.Errorf("apply swapped %v, strata converted %v", swapped, converted)
			}
			if a.RelDiff > 1e-5 {
				t.Errorf("the applied model's logits differ from the materialised model's by %.3g relative, want <= 1e-5", a.RelDiff)
			}
			if len(a.NoGrad) > 0 {
				t.Errorf("factors without a finite gradient: %v", a.NoGrad)
			}
			strata, err := testbin.Path()
			if err != nil {
				t.Fatal(err)
			}
			run(t, strata, "inspect", a.ONNX)
		})
	}
}

// TestApplyRefuses checks that apply refuses, before changing the model,
// what it cannot swap: the transformer converted whole has its attention's
// in_proj_weight decomposed, which nn.MultiheadAttention reads directly.
func TestApplyRefuses(t *testing.T) {
	py := python(t)
	set := testmodels.Build(t)
	strata, err := testbin.Path()
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	run(t, strata, "convert", "--model", set.Transformer.Safetensors, "--out", out, "--allow-larger")
	factors := filepath.Join(out, "factors.safetensors")
	run(t, strata, "export", "--model", filepath.Join(out, "model.arrow"), "--factors", "--format", "safetensors", "--out", factors)
	const script = `
import sys
sys.path.insert(0, sys.argv[1]); sys.path.insert(0, ".")
import torch, make_models, strata_torch as st
m = make_models.Transformer()
before = {k: v.clone() for k, v in m.state_dict().items()}
try:
    st.apply(m, sys.argv[2])
    print("applied")
except ValueError as e:
    same = all(torch.equal(before[k], v) for k, v in m.state_dict().items()) and len(before) == len(m.state_dict())
    print("refused", "unchanged" if same else "changed", e)
`
	got := string(run(t, py, "-c", script, set.Dir, factors))
	if !strings.HasPrefix(got, "refused unchanged") || !strings.Contains(got, "--exclude '*.self_attn.*'") {
		t.Errorf("apply of an attention's projections: %s", got)
	}
}
