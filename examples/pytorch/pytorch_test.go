package pytorch_test

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/compute"
	"github.com/strata-ml/strata/internal/datasets"
	"github.com/strata-ml/strata/internal/testbin"
	"github.com/strata-ml/strata/modelmap"
)

// python returns the first of $TORCH_PY, Debian's /usr/bin/python3 and
// python3 on PATH that imports torch, or skips the test (fails it when CI
// is set: .ci/run installs Debian's python3-torch).
func python(t *testing.T) string {
	t.Helper()
	var tried []string
	for _, py := range []string{os.Getenv("TORCH_PY"), "/usr/bin/python3", "python3"} {
		if py == "" {
			continue
		}
		tried = append(tried, py)
		if exec.Command(py, "-c", "import torch").Run() == nil {
			return py
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("no python3 with torch among %v; CI needs Debian's python3-torch (.ci/run installs it)", tried)
	}
	t.Skipf("no python3 with torch among %v", tried)
	return ""
}

func run(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %v: %v\n%s", filepath.Base(name), args, err, stderr.String())
	}
	return stdout.Bytes()
}

// TestStrataTorchForward trains a small dense MLP (13 wine features,
// gelu, layer norms, standardised inputs) with strata, converts it to
// every trunk family (widths 13, 18, 10, 3 make monarch, blockdiag and
// kronecker pad; blockdiag gets a sparse residual, toeplitz none (a zero
// correction), the rest lowrank; the lowrank model keeps a dense layer),
// exports the factors, and checks that strata_torch.py's module computes
// strata's forward to 1e-5 (relative to max(1, |y|)) in float64 and
// float32, that its state_dict names are the file's tensor names, that a
// save/load round trip is exact and that SGD steps lower a toy loss.
func TestStrataTorchForward(t *testing.T) {
	py := python(t)
	dir := t.TempDir()
	strata, err := testbin.Path()
	if err != nil {
		t.Fatal(err)
	}
	train := filepath.Join(dir, "wine.arrow")
	if err := datasets.Write("wine", train); err != nil {
		t.Fatal(err)
	}
	run(t, strata, "finetune", "--init", "mlp:13-18-10-3:gelu+ln", "--train", train,
		"--epochs", "2", "--seed", "3", "--out", filepath.Join(dir, "dense"))
	dense := filepath.Join(dir, "dense", "model.arrow")

	wine, err := datasets.Wine()
	if err != nil {
		t.Fatal(err)
	}
	const n = 24
	x := make([][]float64, n)
	for i := range x {
		r := i * (wine.N / n)
		x[i] = wine.X[r*wine.D : (r+1)*wine.D]
	}
	inputs := filepath.Join(dir, "inputs.json")
	b, _ := json.Marshal(map[string]any{"x": x})
	if err := os.WriteFile(inputs, b, 0o644); err != nil {
		t.Fatal(err)
	}

	lr := []string{"--residual", "lowrank", "--residual-rank", "2"}
	cases := []struct {
		family string
		flags  []string
	}{
		{"orthogonal", lr},
		{"monarch", append([]string{"--blocks", "3", "--rank", "1"}, lr...)},
		{"kronecker", append([]string{"--kron-factors", "3x4", "--rank", "2"}, lr...)},
		{"blockdiag", []string{"--blocks", "3", "--residual", "sparse", "--residual-density", "0.1"}},
		{"circulant", lr},
		{"toeplitz", []string{"--residual", "none"}},
		// The last layer stays dense: an undecomposed weight in the file.
		{"lowrank", append([]string{"--rank", "2", "--exclude", "6.weight"}, lr...)},
	}
	for _, c := range cases {
		t.Run(c.family, func(t *testing.T) {
			out := filepath.Join(dir, c.family)
			args := append([]string{"convert", "--model", dense, "--out", out, "--structure", c.family}, c.flags...)
			run(t, strata, args...)
			model := filepath.Join(out, "model.arrow")
			factors := filepath.Join(out, "factors.safetensors")
			run(t, strata, "export", "--model", model, "--factors", "--format", "safetensors", "--out", factors)

			want := strataForward(t, model, x)
			var got struct {
				Y64, Y32  [][]float64
				KeysMatch bool `json:"keys_match"`
				Roundtrip bool
				Losses    []float64
				NoGrad    []string `json:"no_grad"`
				Torch     string
			}
			if err := json.Unmarshal(run(t, py, "check_forward.py", factors, inputs), &got); err != nil {
				t.Fatal(err)
			}
			e64, e32 := relErr(got.Y64, want), relErr(got.Y32, want)
			t.Logf("%s (torch %s): max error float64 %.2g, float32 %.2g; SGD losses %.4g", c.family, got.Torch, e64, e32, got.Losses)
			if e64 > 1e-5 || e32 > 1e-5 {
				t.Errorf("forward differs from strata's: float64 %.3g, float32 %.3g (want <= 1e-5)", e64, e32)
			}
			if !got.KeysMatch {
				t.Error("state_dict names or values differ from the file's tensors")
			}
			if !got.Roundtrip {
				t.Error("save_safetensors + build_model changed the outputs")
			}
			if len(got.NoGrad) > 0 {
				t.Errorf("parameters without a gradient: %v", got.NoGrad)
			}
			if len(got.Losses) < 2 || !(got.Losses[len(got.Losses)-1] < got.Losses[0]) {
				t.Errorf("SGD did not lower the loss: %v", got.Losses)
			}
		})
	}
}

// strataForward is strata's own forward of a model file on raw inputs:
// the architecture's standardisation, then the network in float64.
func strataForward(t *testing.T, path string, x [][]float64) [][]float64 {
	t.Helper()
	m, err := arrowio.ReadModel(path)
	if err != nil {
		t.Fatal(err)
	}
	ds := &arrowio.Dataset{N: len(x), D: len(x[0]), Y: make([]float64, len(x))}
	for _, r := range x {
		ds.X = append(ds.X, r...)
	}
	ds, err = modelmap.Standardize(ds, &m.Arch)
	if err != nil {
		t.Fatal(err)
	}
	net, err := modelmap.Network[float64](m)
	if err != nil {
		t.Fatal(err)
	}
	out := net.Outputs()
	y := make([]float64, ds.N*out)
	net.Forward(y, ds.X, ds.N, compute.NewWorkspace[float64]())
	rows := make([][]float64, ds.N)
	for i := range rows {
		rows[i] = y[i*out : (i+1)*out]
	}
	return rows
}

// relErr is max |got - want| / max(1, max |want|).
func relErr(got, want [][]float64) float64 {
	if len(got) != len(want) {
		return math.Inf(1)
	}
	scale, e := 1.0, 0.0
	for i := range want {
		if len(got[i]) != len(want[i]) {
			return math.Inf(1)
		}
		for j, w := range want[i] {
			scale = max(scale, math.Abs(w))
			e = max(e, math.Abs(got[i][j]-w))
		}
	}
	return e / scale
}
