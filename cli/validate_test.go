package cli_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-ml/strata/arrowio"
)

// writeEvalData writes n rows of d features with labels in [0, classes).
func writeEvalData(t *testing.T, path string, n, d, classes int) {
	t.Helper()
	ds := &arrowio.Dataset{N: n, D: d, X: make([]float64, n*d), Y: make([]float64, n)}
	for i := range ds.X {
		ds.X[i] = float64((i*7)%11) - 5
	}
	for i := range ds.Y {
		ds.Y[i] = float64(i % classes)
	}
	if err := arrowio.WriteDataset(path, ds); err != nil {
		t.Fatal(err)
	}
}

// TestValidateCLI runs validate on the fixture model against itself:
// exit 0, nothing on stdout, and a validation.json with every metric,
// each delta 0.
func TestValidateCLI(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data.parquet")
	writeEvalData(t, data, 40, 16, 4)
	out := filepath.Join(dir, "val")
	r := run(t, "validate", "--baseline", fixtureArrow, "--candidate", fixtureSafe, "--data", data, "--out", out,
		"--bootstrap", "100", "--noise", "0.02,0.2", "--log-format", "json")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if r.stdout != "" {
		t.Errorf("validate wrote to stdout: %q", r.stdout)
	}
	b, err := os.ReadFile(filepath.Join(out, "validation.json"))
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		NExamples int `json:"n_examples"`
		Config    struct {
			Noise []float64 `json:"noise"`
		} `json:"config"`
		Metrics map[string]struct {
			Baseline *float64 `json:"baseline"`
			Delta    *float64 `json:"delta"`
			Reason   string   `json:"reason"`
		} `json:"metrics"`
	}
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	if res.NExamples != 40 || len(res.Config.Noise) != 2 {
		t.Errorf("n_examples %d, noise %v", res.NExamples, res.Config.Noise)
	}
	for _, key := range []string{"accuracy", "loss", "jacobian_condition", "grad_norm_ratio", "layer_condition",
		"perturbation_sensitivity", "perturbation_sensitivity_relative", "prediction_flip_rate", "layer_robustness",
		"residual_share", "params", "flops", "bytes", "latency_ms", "training_stability"} {
		m, ok := res.Metrics[key]
		if !ok {
			t.Errorf("metric %s missing", key)
			continue
		}
		if key == "residual_share" || key == "training_stability" {
			if m.Baseline != nil || m.Reason == "" {
				t.Errorf("%s: want null with a reason, got %+v", key, m)
			}
			continue
		}
		// The Arrow fixture and its safetensors copy are the same model.
		if key != "latency_ms" && (m.Delta == nil || *m.Delta != 0) {
			t.Errorf("%s: delta %v, want 0 (%s)", key, m.Delta, m.Reason)
		}
	}
}

// TestValidateCLIBadInput: bad input exits 2 and writes nothing.
func TestValidateCLIBadInput(t *testing.T) {
	dir := t.TempDir()
	narrow := filepath.Join(dir, "narrow.arrow")
	writeEvalData(t, narrow, 10, 8, 4)
	out := filepath.Join(dir, "out")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"data of another width", []string{"--baseline", fixtureArrow, "--candidate", fixtureArrow, "--data", narrow}, "the model takes 16"},
		{"no candidate", []string{"--baseline", fixtureArrow, "--data", narrow}, "--candidate"},
		{"bad noise", []string{"--baseline", fixtureArrow, "--candidate", fixtureArrow, "--data", narrow, "--noise", "0,0.1"}, "--noise"},
		{"positional", []string{"--baseline", fixtureArrow, "x"}, "positional"},
		{"logits mismatch", []string{"--baseline-logits", narrow, "--candidate-logits", fixtureArrow, "--data", narrow}, "mlp-16-32-24-4.arrow"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := run(t, append([]string{"validate", "--out", out}, tt.args...)...)
			if r.code != 2 {
				t.Errorf("exit %d, want 2; stderr %s", r.code, r.stderr)
			}
			if !strings.Contains(r.stderr, tt.want) {
				t.Errorf("stderr %q does not contain %q", r.stderr, tt.want)
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("a failed run created %s", out)
			}
		})
	}
}
