package stages

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/compute"
	"github.com/strata-ml/strata/validation"
)

func TestParseLRs(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []float64
		err  string
	}{
		{"1e-3,3e-4, 1e-2", []float64{3e-4, 1e-3, 1e-2}, ""},
		{"0.1", nil, "at least 2"},
		{"0.1,0.1", nil, "twice"},
		{"0.1,-1", nil, "> 0"},
		{"0.1,inf", nil, "finite"},
		{"0.1,x", nil, "not a number"},
	} {
		got, err := ParseLRs(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: got %v, want an error containing %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || len(got) != len(tc.want) {
			t.Fatalf("%q: %v, %v", tc.in, got, err)
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("%q: got %v, want %v", tc.in, got, tc.want)
			}
		}
	}
}

// TestValidateLRRobustness turns a crafted lr_sweep.json into
// lr_robustness: the worst accuracy over the learning rates (a diverged
// run scores 0), the range, each rate's values, and refuses sweeps that do
// not fit.
func TestValidateLRRobustness(t *testing.T) {
	dir := t.TempDir()
	const n = 12
	y := make([]float64, n)
	z := make([][]float64, n)
	for i := range n {
		y[i] = float64(i % 2)
		z[i] = []float64{0, 0}
		z[i][i%2] = 1
	}
	data := filepath.Join(dir, "data.csv")
	if err := arrowio.WriteDataset(data, &arrowio.Dataset{N: n, D: 1, Y: y, X: make([]float64, n)}); err != nil {
		t.Fatal(err)
	}
	logits := filepath.Join(dir, "logits.arrow")
	writeLogits(t, logits, z, y)
	f := func(v float64) *validation.NullableFloat { return validation.Num(v) }
	sweep := LRSweepFile{
		SchemaVersion: LRSweepSchemaVersion, Task: compute.TaskClassification,
		Dense: []LRRun{
			{LR: 1e-3, Accuracy: f(0.9), Loss: f(0.3)},
			{LR: 1e-2, Accuracy: f(0.5), Loss: f(1.1)},
			{LR: 1e-1, Accuracy: f(0.1), Loss: nil}, // diverged
		},
		Candidate: []LRRun{
			{LR: 1e-3, Accuracy: f(0.85), Loss: f(0.4)},
			{LR: 1e-2, Accuracy: f(0.8), Loss: f(0.5)},
			{LR: 1e-1, Accuracy: f(0.7), Loss: f(0.9)},
		},
	}
	write := func(name string, v any) string {
		t.Helper()
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cfg := validation.DefaultConfig()
	cfg.BaselineLogits, cfg.CandidateLogits, cfg.ControlLogits, cfg.Data = logits, logits, logits, data
	cfg.Out, cfg.LRSweep, cfg.Bootstrap = filepath.Join(dir, "val"), write("lr_sweep.json", sweep), 50
	res, err := Validate(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	m := res.Metrics[validation.MetricLRRobustness]
	near := func(what string, got *validation.NullableFloat, want float64) {
		t.Helper()
		if got == nil {
			t.Errorf("%s: null, want %v", what, want)
		} else if math.Abs(float64(*got)-want) > 1e-12 {
			t.Errorf("%s: got %v, want %v", what, float64(*got), want)
		}
	}
	if m.Better != validation.BetterHigher {
		t.Errorf("better %q", m.Better)
	}
	// The diverged dense run scores 0 even though its logits gave 0.1.
	near("baseline worst", m.Baseline, 0)
	near("control worst", m.Control, 0)
	near("candidate worst", m.Candidate, 0.7)
	near("delta", m.Delta, 0.7)
	near("delta vs control", m.DeltaVsControl, 0.7)
	if m.CI95 != nil || m.CIReason == "" {
		t.Errorf("interval %v (%q): want none, with the reason", m.CI95, m.CIReason)
	}
	parts := map[string]*validation.Metric{}
	for _, p := range m.Parts {
		parts[p.Name] = p
	}
	near("baseline range", parts["range"].Baseline, 0.9)
	near("candidate range", parts["range"].Candidate, 0.15)
	near("accuracy@lr=0.01 candidate", parts["accuracy@lr=0.01"].Candidate, 0.8)
	near("loss@lr=0.001 baseline", parts["loss@lr=0.001"].Baseline, 0.3)
	if p := parts["loss@lr=0.1"]; p.Baseline != nil || !strings.Contains(p.Reason, "diverged") {
		t.Errorf("diverged loss: %v (%q)", fv(p.Baseline), p.Reason)
	}
	if res.Inputs.LRSweep == nil || res.Inputs.LRSweep.SHA256 == "" {
		t.Errorf("inputs.lr_sweep %v", res.Inputs.LRSweep)
	}

	// Without a sweep the metric is null with the reason.
	cfg.LRSweep, cfg.Out = "", filepath.Join(dir, "val-none")
	res, err = Validate(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if m := res.Metrics[validation.MetricLRRobustness]; m.Baseline != nil || !strings.Contains(m.Reason, "no learning-rate sweep") {
		t.Errorf("no sweep: %v (%q)", fv(m.Baseline), m.Reason)
	}

	// Sweeps that do not fit are bad input naming the file and field.
	mismatch := sweep
	mismatch.Candidate = sweep.Candidate[:2]
	regression := sweep
	regression.Task = compute.TaskRegression
	one := sweep
	one.Dense, one.Candidate = sweep.Dense[:1], sweep.Candidate[:1]
	for _, tc := range []struct {
		name string
		file any
		want string
	}{
		{"mismatch", mismatch, "candidate"},
		{"task", regression, "task"},
		{"one rate", one, "at least 2"},
		{"unknown field", map[string]any{"schema_version": 1, "task": "classification", "dense": []any{}, "candidate": []any{}, "extra": 1}, "extra"},
		{"version", map[string]any{"schema_version": 9}, "schema_version"},
	} {
		cfg.LRSweep, cfg.Out = write(tc.name+".json", tc.file), filepath.Join(dir, "bad-"+tc.name)
		_, err := Validate(context.Background(), cfg)
		if !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), cfg.LRSweep) {
			t.Errorf("%s: got %v, want an input error naming the file and %q", tc.name, err, tc.want)
		}
		if _, err := os.Stat(cfg.Out); err == nil {
			t.Errorf("%s: wrote %s", tc.name, cfg.Out)
		}
	}
}
