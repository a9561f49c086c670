package stages

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/compute"
	"github.com/strata-ml/strata/modelmap"
	"github.com/strata-ml/strata/validation"
)

// validateFiles are the models and data of the digits validation tests.
type validateFiles struct {
	dir, train, test          string
	dense, candidate, control string // model files
	candidateOut, controlOut  string // their finetune directories
}

// digitsModels trains a small dense baseline on a digits split, converts
// it (monarch + low-rank residual) and fine-tunes the result for a few
// epochs, and fine-tunes the dense baseline for the same epochs as the
// equal-budget control.
func digitsModels(t *testing.T) validateFiles {
	t.Helper()
	dir := t.TempDir()
	f := validateFiles{dir: dir}
	f.train, f.test, _ = digitsSplit(t, dir)
	run := func(cfg FinetuneConfig) {
		t.Helper()
		cfg.Train, cfg.Seed = f.train, 1
		if _, err := Finetune(context.Background(), cfg); err != nil {
			t.Fatal(err)
		}
	}
	cfg := DefaultFinetuneConfig()
	cfg.Init, cfg.Out, cfg.Epochs = "mlp:64-64-64-10:relu", filepath.Join(dir, "dense"), 10
	run(cfg)
	f.dense = filepath.Join(cfg.Out, "model.arrow")

	ccfg := DefaultConvertConfig()
	ccfg.Model, ccfg.Out = f.dense, filepath.Join(dir, "converted")
	ccfg.AllowLarger = true // the 10 x 64 head's S + R is larger than it
	if _, err := Convert(context.Background(), ccfg); err != nil {
		t.Fatal(err)
	}
	cfg = DefaultFinetuneConfig()
	cfg.Model, cfg.Out, cfg.Epochs = filepath.Join(ccfg.Out, "model.arrow"), filepath.Join(dir, "candidate"), 4
	run(cfg)
	f.candidate, f.candidateOut = filepath.Join(cfg.Out, "model.arrow"), cfg.Out

	cfg.Model, cfg.Out = f.dense, filepath.Join(dir, "control")
	run(cfg)
	f.control, f.controlOut = filepath.Join(cfg.Out, "model.arrow"), cfg.Out
	return f
}

// fv formats a nullable value.
func fv(f *validation.NullableFloat) string {
	if f == nil {
		return "null"
	}
	return fmt.Sprint(float64(*f))
}

// readValidation reads validation.json from dir.
func readValidation(t *testing.T, dir string) (*validation.Result, []byte) {
	t.Helper()
	b := readFile(t, filepath.Join(dir, "validation.json"))
	var res validation.Result
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	return &res, b
}

// withoutVarying returns the JSON b with the fields of VaryingFields
// removed, re-encoded canonically.
func withoutVarying(t *testing.T, b []byte) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, f := range validation.VaryingFields {
		path := strings.Split(f, ".")
		obj := m
		for _, p := range path[:len(path)-1] {
			obj = obj[p].(map[string]any)
		}
		if _, ok := obj[path[len(path)-1]]; !ok {
			t.Fatalf("varying field %s is missing", f)
		}
		delete(obj, path[len(path)-1])
	}
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestValidateDigits validates the fine-tuned monarch + low-rank candidate
// against its dense baseline and the equal-budget control: every metric
// key is present, every model metric has a value for each model (or a
// reason), the control fields are there, the layers carry their spectra,
// and a second run gives the same file except the wall-clock fields.
func TestValidateDigits(t *testing.T) {
	f := digitsModels(t)
	cfg := validation.DefaultConfig()
	cfg.Baseline, cfg.Candidate, cfg.Control = f.dense, f.candidate, f.control
	cfg.Data, cfg.Out, cfg.Seed = f.test, filepath.Join(f.dir, "val"), 7
	cfg.TrainLog, cfg.ControlTrainLog = f.candidateOut, f.controlOut
	if _, err := Validate(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	res, first := readValidation(t, cfg.Out)
	if res.Mode != validation.ModeModels || res.Task != compute.TaskClassification || res.NExamples != 449 || res.OutputWidth != 10 {
		t.Errorf("mode %s task %s n %d outputs %d", res.Mode, res.Task, res.NExamples, res.OutputWidth)
	}
	if res.Inputs.Baseline == nil || res.Inputs.Candidate == nil || res.Inputs.Control == nil || res.Inputs.TrainLog == nil || len(res.Inputs.Data.SHA256) != 64 {
		t.Errorf("inputs %+v", res.Inputs)
	}
	raw := map[string]map[string]json.RawMessage{}
	var top struct {
		Metrics map[string]map[string]json.RawMessage `json:"metrics"`
	}
	if err := json.Unmarshal(first, &top); err != nil {
		t.Fatal(err)
	}
	raw = top.Metrics
	for _, key := range validation.MetricKeys {
		m, ok := res.Metrics[key]
		if !ok {
			t.Errorf("metric %s missing", key)
			continue
		}
		for _, field := range []string{"baseline", "candidate", "delta", "ci95", "control", "delta_vs_control", "ci95_vs_control"} {
			if _, ok := raw[key][field]; !ok {
				t.Errorf("%s: field %s missing from the JSON", key, field)
			}
		}
		if m.Better == "" {
			t.Errorf("%s: no direction", key)
		}
		switch key {
		case validation.MetricResidualShare:
			// Only the candidate is decomposed.
			if m.Baseline != nil || m.Control != nil || m.Candidate == nil || !strings.Contains(m.Reason, "dense model") {
				t.Errorf("residual_share: %+v", m)
			}
			continue
		case validation.MetricLRRobustness:
			if m.Baseline != nil || !strings.Contains(m.Reason, "no learning-rate sweep") {
				t.Errorf("lr_robustness without a sweep: %v (%q)", fv(m.Baseline), m.Reason)
			}
			continue
		case validation.MetricTrainingStability:
			// No baseline log given.
			if m.Baseline != nil || m.Candidate == nil || m.Control == nil || !strings.Contains(m.Reason, "--baseline-train-log") {
				t.Errorf("training_stability: reason %q", m.Reason)
			}
			continue
		}
		if m.Baseline == nil || m.Candidate == nil || m.Control == nil || m.Delta == nil || m.DeltaVsControl == nil {
			t.Errorf("%s: null values (reason %q)", key, m.Reason)
		}
		if m.CI95 == nil && m.CIReason == "" {
			t.Errorf("%s: no interval and no reason", key)
		}
		if m.CI95 != nil && !(m.CI95[0] <= *m.Delta && *m.Delta <= m.CI95[1]) && key != validation.MetricLatencyMS {
			t.Logf("%s: delta %v outside its interval %v (possible, but unusual)", key, *m.Delta, *m.CI95)
		}
	}
	acc := res.Metrics[validation.MetricAccuracy]
	if acc.PValue == nil || acc.PValueVsControl == nil {
		t.Error("accuracy: no McNemar p-value")
	}
	if got := res.Metrics[validation.MetricParams]; *got.Candidate >= *got.Baseline {
		t.Errorf("params: candidate %v, baseline %v: the decomposed model should be smaller", *got.Candidate, *got.Baseline)
	}
	if ps := res.Metrics[validation.MetricPerturbationSensitivity].Parts; len(ps) != 3 || ps[1].Noise != 0.05 {
		t.Errorf("perturbation parts %+v", ps)
	}
	if len(res.Layers) != 3 {
		t.Fatalf("%d layers, want 3", len(res.Layers))
	}
	for _, l := range res.Layers {
		if l.Family != compute.FamilyMonarch || l.ResidualShare.Candidate == nil || l.TrunkCondition.Candidate == nil {
			t.Errorf("layer %s: %+v", l.Name, l)
		}
		// The layer writing the logits is taken on its centred rows: one
		// singular value fewer.
		k := min(l.Shape[0], l.Shape[1])
		if l.Name == "4" {
			k = min(l.Shape[0]-1, l.Shape[1])
		}
		if len(l.SingularValues.Baseline) != k || len(l.SingularValues.Candidate) != k || len(l.SingularValues.Control) != k || len(l.SingularValues.CandidateTrunk) != k {
			t.Errorf("layer %s: spectra of %d, %d, %d values, want %d", l.Name, len(l.SingularValues.Baseline), len(l.SingularValues.Candidate), len(l.SingularValues.Control), k)
		}
	}
	t.Logf("accuracy %.4f -> %.4f (control %.4f), perturbation_sensitivity %.4f -> %.4f (control %.4f), jacobian_condition %.1f -> %.1f (control %.1f)",
		*acc.Baseline, *acc.Candidate, *acc.Control,
		*res.Metrics[validation.MetricPerturbationSensitivity].Baseline, *res.Metrics[validation.MetricPerturbationSensitivity].Candidate, *res.Metrics[validation.MetricPerturbationSensitivity].Control,
		*res.Metrics[validation.MetricJacobianCondition].Baseline, *res.Metrics[validation.MetricJacobianCondition].Candidate, *res.Metrics[validation.MetricJacobianCondition].Control)

	// Determinism: the same inputs and seed give the same file, but for
	// the wall-clock fields.
	if _, err := Validate(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	_, second := readValidation(t, cfg.Out)
	if !bytes.Equal(withoutVarying(t, first), withoutVarying(t, second)) {
		t.Error("two runs with the same inputs and seed differ outside the wall-clock fields")
	}
	if got := dirEntries(t, cfg.Out); !slices.Equal(got, []string{"validation.json"}) {
		t.Errorf("outputs %v", got)
	}
}

// TestValidateSelf validates the dense baseline against itself (as
// candidate and as control): every delta is exactly 0 and every interval
// [0, 0], except the wall-clock latency.
func TestValidateSelf(t *testing.T) {
	dir := t.TempDir()
	_, test, _ := digitsSplit(t, dir)
	cfg := DefaultFinetuneConfig()
	cfg.Init, cfg.Train, cfg.Out, cfg.Epochs, cfg.Seed = "mlp:64-32-32-10:tanh+ln", test, filepath.Join(dir, "dense"), 3, 2
	if _, err := Finetune(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	model := filepath.Join(cfg.Out, "model.arrow")
	vcfg := validation.DefaultConfig()
	vcfg.Baseline, vcfg.Candidate, vcfg.Control = model, model, model
	vcfg.Data, vcfg.Out = test, filepath.Join(dir, "val")
	vcfg.TrainLog, vcfg.BaselineTrainLog, vcfg.ControlTrainLog = cfg.Out, cfg.Out, cfg.Out
	// The same runs on both sides of the learning-rate sweep, scored by
	// the sweep's own scorer.
	_, acc, loss, err := scoreModelFile(context.Background(), model, "", mustReadData(t, test))
	if err != nil {
		t.Fatal(err)
	}
	runs := []LRRun{{LR: 1e-3, Accuracy: acc, Loss: loss}, {LR: 1e-2, Accuracy: validation.Num(0.5), Loss: validation.Num(2)}}
	sweep, err := json.Marshal(LRSweepFile{SchemaVersion: LRSweepSchemaVersion, Task: "classification", Dense: runs, Candidate: runs})
	if err != nil {
		t.Fatal(err)
	}
	vcfg.LRSweep = filepath.Join(dir, "lr_sweep.json")
	if err := os.WriteFile(vcfg.LRSweep, sweep, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Validate(context.Background(), vcfg); err != nil {
		t.Fatal(err)
	}
	res, _ := readValidation(t, vcfg.Out)
	var check func(name string, m *validation.Metric)
	check = func(name string, m *validation.Metric) {
		if name == validation.MetricLatencyMS {
			return
		}
		if name != validation.MetricResidualShare && (m.Delta == nil || m.DeltaVsControl == nil) {
			t.Errorf("%s: no delta (reason %q)", name, m.Reason)
		}
		for _, d := range []*validation.NullableFloat{m.Delta, m.DeltaVsControl} {
			if d != nil && *d != 0 {
				t.Errorf("%s: delta %v, want exactly 0", name, *d)
			}
		}
		for _, ci := range []*validation.Interval{m.CI95, m.CI95VsControl} {
			if ci != nil && (ci[0] != 0 || ci[1] != 0) {
				t.Errorf("%s: interval %v, want [0, 0]", name, *ci)
			}
		}
		for _, p := range m.Parts {
			check(name+"/"+p.Name, p)
		}
	}
	for _, key := range validation.MetricKeys {
		check(key, res.Metrics[key])
	}
	if p := res.Metrics[validation.MetricAccuracy].PValue; p == nil || *p != 1 {
		t.Errorf("McNemar p-value %s, want 1", fv(p))
	}
	for _, l := range res.Layers {
		for _, lv := range []validation.LayerValues{l.LayerCondition, l.RobustnessDrop, l.GradNorm} {
			if lv.Baseline == nil || lv.Candidate == nil || *lv.Baseline != *lv.Candidate {
				t.Errorf("layer %s: %+v", l.Name, lv)
			}
		}
	}
}

// TestValidateEveryFamily converts the digits baseline to every trunk
// family and checks that validation.json is complete for each: a value
// for every model metric of both models (residual share: the candidate's),
// or null with the reason for a singular candidate.
func TestValidateEveryFamily(t *testing.T) {
	dir := t.TempDir()
	train, test, _ := digitsSplit(t, dir)
	cfg := DefaultFinetuneConfig()
	cfg.Init, cfg.Train, cfg.Out, cfg.Epochs, cfg.Seed = "mlp:64-64-64-10:relu", train, filepath.Join(dir, "dense"), 5, 1
	if _, err := Finetune(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	dense := filepath.Join(cfg.Out, "model.arrow")
	for _, family := range compute.TrunkFamilies {
		t.Run(family, func(t *testing.T) {
			ccfg := DefaultConvertConfig()
			ccfg.Model, ccfg.Out, ccfg.Structure = dense, filepath.Join(dir, family), family
			ccfg.AllowLarger = true // every layer decomposed, the 10 x 64 head too
			if _, err := Convert(context.Background(), ccfg); err != nil {
				t.Fatal(err)
			}
			vcfg := validation.DefaultConfig()
			vcfg.Baseline, vcfg.Candidate = dense, filepath.Join(ccfg.Out, "model.arrow")
			vcfg.Data, vcfg.Out, vcfg.Bootstrap, vcfg.LatencyRuns = test, filepath.Join(dir, "val-"+family), 200, 5
			res, err := Validate(context.Background(), vcfg)
			if err != nil {
				t.Fatal(err)
			}
			for _, key := range validation.MetricKeys {
				m := res.Metrics[key]
				switch key {
				case validation.MetricTrainingStability, validation.MetricLRRobustness:
					continue
				case validation.MetricResidualShare:
					if m.Candidate == nil {
						t.Errorf("%s: candidate null (%s)", key, m.Reason)
					}
					continue
				}
				if m.Baseline == nil {
					t.Errorf("%s: baseline null (%s)", key, m.Reason)
				}
				// A low-rank trunk of rank 8 + 8 in a 64 x 64 layer is
				// singular: its conditions are null with that reason.
				if (m.Candidate == nil || m.Delta == nil) && !strings.Contains(m.Reason, "numerically singular") {
					t.Errorf("%s: candidate null (%s)", key, m.Reason)
				}
			}
			for _, l := range res.Layers {
				if l.Family != family {
					t.Errorf("layer %s: family %s", l.Name, l.Family)
				}
			}
		})
	}
}

// writeLogits writes per-example outputs as a dataset file (features =
// the outputs, label column = the data's labels).
func writeLogits(t *testing.T, path string, z [][]float64, y []float64) {
	t.Helper()
	ds := &arrowio.Dataset{N: len(z), D: len(z[0]), Y: y}
	for _, row := range z {
		ds.X = append(ds.X, row...)
	}
	if err := arrowio.WriteDataset(path, ds); err != nil {
		t.Fatal(err)
	}
}

// TestValidateLogits compares hand-made logits of 20 examples of 3
// classes: the baseline gets rows 0-9 right, the candidate every row.
// Hand-computed: accuracy 0.5 and 1, delta 0.5; McNemar with 10
// discordant pairs all for the candidate: p = 2 / 2^10; the loss of a
// right row log(e^2 + 2) - 2, of a wrong one log(e^2 + 2). The bootstrap
// delta is the share of resampled rows among rows 10-19, X / 20 with X ~
// Binomial(20, 1/2), whose 2.5% and 97.5% quantiles are 6/20 and 14/20
// (P(X <= 5) = 0.0207 < 0.025 < P(X <= 6) = 0.0577, and symmetrically).
// With 20000 resamples the percentile interval is [0.30, 0.70] for any
// seed but with negligible probability (the counts below 6 and above 14
// are about 414 each, sd 20, and would have to pass 499).
func TestValidateLogits(t *testing.T) {
	dir := t.TempDir()
	const n = 20
	y := make([]float64, n)
	base := make([][]float64, n)
	cand := make([][]float64, n)
	for i := range n {
		y[i] = float64(i % 3)
		right := []float64{0, 0, 0}
		right[i%3] = 2
		wrong := []float64{0, 0, 0}
		wrong[(i+1)%3] = 2
		cand[i] = right
		base[i] = right
		if i >= 10 {
			base[i] = wrong
		}
	}
	data := filepath.Join(dir, "data.csv")
	feat := &arrowio.Dataset{N: n, D: 2, Y: y, X: make([]float64, 2*n)}
	if err := arrowio.WriteDataset(data, feat); err != nil {
		t.Fatal(err)
	}
	bl, cl := filepath.Join(dir, "base.arrow"), filepath.Join(dir, "cand.parquet")
	writeLogits(t, bl, base, y)
	writeLogits(t, cl, cand, y)

	cfg := validation.DefaultConfig()
	cfg.BaselineLogits, cfg.CandidateLogits, cfg.Data, cfg.Out = bl, cl, data, filepath.Join(dir, "val")
	cfg.Bootstrap = 20000
	if _, err := Validate(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	res, _ := readValidation(t, cfg.Out)
	if res.Mode != validation.ModeLogits || res.Task != compute.TaskClassification || res.OutputWidth != 3 {
		t.Errorf("mode %s task %s outputs %d", res.Mode, res.Task, res.OutputWidth)
	}
	acc := res.Metrics[validation.MetricAccuracy]
	near := func(what string, got *validation.NullableFloat, want float64) {
		t.Helper()
		if got == nil {
			t.Errorf("%s: got null, want %v", what, want)
		} else if math.Abs(float64(*got)-want) > 1e-12 {
			t.Errorf("%s: got %v, want %v", what, float64(*got), want)
		}
	}
	near("baseline accuracy", acc.Baseline, 0.5)
	near("candidate accuracy", acc.Candidate, 1)
	near("delta", acc.Delta, 0.5)
	near("relative delta", acc.RelativeDelta, 1)
	near("p-value", acc.PValue, 2.0/1024)
	if acc.CI95 == nil {
		t.Fatalf("no interval: %s", acc.CIReason)
	}
	near("interval low", &acc.CI95[0], 0.30)
	near("interval high", &acc.CI95[1], 0.70)
	lse := math.Log(math.Exp(2) + 2)
	loss := res.Metrics[validation.MetricLoss]
	near("baseline loss", loss.Baseline, (10*(lse-2)+10*lse)/20)
	near("candidate loss", loss.Candidate, lse-2)
	for _, key := range []string{validation.MetricJacobianCondition, validation.MetricPerturbationSensitivity, validation.MetricParams, validation.MetricLatencyMS} {
		m := res.Metrics[key]
		if m.Baseline != nil || m.Candidate != nil || !strings.Contains(m.Reason, "logits mode") {
			t.Errorf("%s: %+v, want null with the logits-mode reason", key, m)
		}
	}
	if len(res.Layers) != 0 || res.LayersReason == "" {
		t.Errorf("layers %v, reason %q", res.Layers, res.LayersReason)
	}

	// Logits whose labels do not follow the data, or of another length,
	// are refused.
	shuffled := slices.Clone(y)
	shuffled[0], shuffled[1] = shuffled[1], shuffled[0]
	bad := filepath.Join(dir, "bad.arrow")
	writeLogits(t, bad, cand, shuffled)
	cfg.CandidateLogits, cfg.Out = bad, filepath.Join(dir, "val-bad")
	if _, err := Validate(context.Background(), cfg); !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), "row 0") {
		t.Errorf("shuffled labels: got %v, want an input error naming row 0", err)
	}
	short := filepath.Join(dir, "short.arrow")
	writeLogits(t, short, cand[:5], y[:5])
	cfg.CandidateLogits = short
	if _, err := Validate(context.Background(), cfg); !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), "5 rows") {
		t.Errorf("short logits: got %v, want an input error", err)
	}
	if entries := dirEntries(t, cfg.Out); entries != nil {
		t.Errorf("a failed run wrote %v", entries)
	}
}

func TestValidateBadInput(t *testing.T) {
	dir := t.TempDir()
	m4 := writeTestModel(t, dir, "m4.arrow", testMLP([]int{16, 32, 4}, 1))
	m5 := writeTestModel(t, dir, "m5.arrow", testMLP([]int{16, 32, 5}, 2))
	m8 := writeTestModel(t, dir, "m8.arrow", testMLP([]int{8, 32, 4}, 3))
	reg := testMLP([]int{16, 8, 1}, 4)
	reg.Arch.Task = compute.TaskRegression
	mreg := writeTestModel(t, dir, "reg.arrow", reg)
	// An nn.Sequential checkpoint without strata's metadata does not say
	// its activation.
	bare := filepath.Join(dir, "bare.safetensors")
	ts, _ := arrowio.SequentialTensors(testMLP([]int{16, 32, 4}, 1))
	if err := arrowio.WriteSafetensors(bare, ts, nil); err != nil {
		t.Fatal(err)
	}
	ds := &arrowio.Dataset{N: 12, D: 16, X: make([]float64, 12*16), Y: make([]float64, 12)}
	for i := range ds.X {
		ds.X[i] = float64(i%7) - 3
	}
	for i := range ds.Y {
		ds.Y[i] = float64(i % 4)
	}
	data := filepath.Join(dir, "data.arrow")
	if err := arrowio.WriteDataset(data, ds); err != nil {
		t.Fatal(err)
	}
	ds.Y[3] = 9
	badLabels := filepath.Join(dir, "badlabels.arrow")
	if err := arrowio.WriteDataset(badLabels, ds); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		mod  func(*validation.Config)
		want string
	}{
		{"no data", func(c *validation.Config) { c.Data = "" }, "validate: data is required"},
		{"no candidate", func(c *validation.Config) { c.Candidate = "" }, "candidate are required"},
		{"half the logits", func(c *validation.Config) { c.BaselineLogits = data }, "logits mode needs baseline_logits and candidate_logits"},
		{"params in the models mode", func(c *validation.Config) { c.ControlParams = 10 }, "for the logits mode"},
		{"params beside a model", func(c *validation.Config) { c.BaselineLogits, c.CandidateLogits, c.CandidateParams = data, data, 10 },
			"candidate_params and candidate both"},
		{"other outputs", func(c *validation.Config) { c.Candidate = m5 }, "4 outputs, the candidate 5"},
		{"other inputs", func(c *validation.Config) { c.Control = m8 }, "m8.arrow: the data has 16 features, the model takes 8"},
		{"other task", func(c *validation.Config) { c.Candidate = mreg }, "regression"},
		{"data width", func(c *validation.Config) { c.Baseline, c.Candidate = m8, m8 }, "16 features, the model takes 8"},
		{"label out of range", func(c *validation.Config) { c.Data = badLabels }, "row 3: label 9"},
		{"missing model", func(c *validation.Config) { c.Candidate = filepath.Join(dir, "absent.arrow") }, "absent.arrow"},
		{"bad noise", func(c *validation.Config) { c.Noise = []float64{0.1, -1} }, "noise [0.1 -1]"},
		{"repeated noise", func(c *validation.Config) { c.Noise = []float64{0.1, 0.1} }, "noise [0.1 0.1]"},
		{"bad eps", func(c *validation.Config) { c.RobustnessEps = math.NaN() }, "robustness_eps NaN"},
		{"task with models", func(c *validation.Config) { c.Task = "regression" }, "validate: task applies"},
		{"missing train log", func(c *validation.Config) { c.TrainLog = filepath.Join(dir, "nolog") }, "nolog"},
		{"no activation", func(c *validation.Config) { c.Candidate = bare }, "bare.safetensors: an nn.Sequential checkpoint without strata.architecture metadata does not say its activation: give activation"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := validation.DefaultConfig()
			cfg.Baseline, cfg.Candidate, cfg.Data, cfg.Out = m4, m4, data, filepath.Join(dir, "out-"+tt.name)
			tt.mod(&cfg)
			_, err := Validate(context.Background(), cfg)
			if !errors.Is(err, ErrInput) {
				t.Fatalf("got %v, want an input error", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
			if _, err := os.Stat(cfg.Out); !os.IsNotExist(err) {
				t.Errorf("a failed run created %s", cfg.Out)
			}
		})
	}
	// The small random models themselves validate (no layer norm, ReLU),
	// and so does the bare checkpoint given its activation: it is m4.
	cfg := validation.DefaultConfig()
	cfg.Baseline, cfg.Candidate, cfg.Data, cfg.Out, cfg.Bootstrap = m4, bare, data, filepath.Join(dir, "ok"), 50
	cfg.Activation = compute.ActReLU
	res, err := Validate(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if d := res.Metrics[validation.MetricLoss].Delta; d == nil || *d != 0 {
		t.Errorf("the bare checkpoint run as ReLU differs from its Arrow twin: loss delta %s", fv(d))
	}
}

// TestValidateRegression: a regressor has no accuracy and no prediction
// to flip (null with the reason), its loss is the MSE, and the model
// metrics are computed as for a classifier.
func TestValidateRegression(t *testing.T) {
	dir := t.TempDir()
	m := testMLP([]int{6, 12, 1}, 5)
	m.Arch.Task = compute.TaskRegression
	base := writeTestModel(t, dir, "reg.arrow", m)
	ccfg := DefaultConvertConfig()
	ccfg.Model, ccfg.Out, ccfg.Structure, ccfg.Blocks = base, filepath.Join(dir, "conv"), compute.FamilyBlockDiag, 2
	if _, err := Convert(context.Background(), ccfg); err != nil {
		t.Fatal(err)
	}
	ds := &arrowio.Dataset{N: 50, D: 6, X: make([]float64, 300), Y: make([]float64, 50)}
	for i := range ds.X {
		ds.X[i] = math.Sin(float64(i))
	}
	for i := range ds.Y {
		ds.Y[i] = math.Cos(float64(i))
	}
	data := filepath.Join(dir, "data.arrow")
	if err := arrowio.WriteDataset(data, ds); err != nil {
		t.Fatal(err)
	}
	cfg := validation.DefaultConfig()
	cfg.Baseline, cfg.Candidate, cfg.Data, cfg.Out = base, filepath.Join(ccfg.Out, "model.arrow"), data, filepath.Join(dir, "val")
	res, err := Validate(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Task != compute.TaskRegression {
		t.Errorf("task %s", res.Task)
	}
	for _, key := range []string{validation.MetricAccuracy, validation.MetricPredictionFlipRate} {
		if m := res.Metrics[key]; m.Baseline != nil || m.Candidate != nil || m.Reason == "" {
			t.Errorf("%s: %+v, want null with a reason", key, m)
		}
	}
	// The loss is the MSE of the baseline's predictions, computed here on
	// the data as stored (float32 features).
	if ds, err = arrowio.ReadDataset(data); err != nil {
		t.Fatal(err)
	}
	lm, err := arrowio.ReadModel(base)
	if err != nil {
		t.Fatal(err)
	}
	net, err := modelmap.Network[float64](lm)
	if err != nil {
		t.Fatal(err)
	}
	y := make([]float64, ds.N)
	net.Forward(y, ds.X, ds.N, nil)
	var mse float64
	for i, v := range y {
		mse += (v - ds.Y[i]) * (v - ds.Y[i]) / float64(ds.N)
	}
	if got := res.Metrics[validation.MetricLoss].Baseline; got == nil {
		t.Errorf("loss null, want the MSE %v", mse)
	} else if math.Abs(float64(*got)-mse) > 1e-12 {
		t.Errorf("loss %v, want the MSE %v", float64(*got), mse)
	}
	for _, key := range []string{validation.MetricJacobianCondition, validation.MetricPerturbationSensitivity, validation.MetricLayerRobustness, validation.MetricGradNormRatio} {
		if m := res.Metrics[key]; m.Baseline == nil || m.Candidate == nil {
			t.Errorf("%s: null (%s)", key, m.Reason)
		}
	}
	// One output: the Jacobian is a row, its condition 1.
	if c := res.Metrics[validation.MetricJacobianCondition].Baseline; c == nil || math.Abs(float64(*c)-1) > 1e-12 {
		t.Errorf("jacobian condition of a single-output model %s, want 1", fv(c))
	}
}

// mustReadData reads a dataset file with the label column "label".
func mustReadData(t *testing.T, path string) *arrowio.Dataset {
	t.Helper()
	ds, _, err := readData(context.Background(), path, "label")
	if err != nil {
		t.Fatal(err)
	}
	return ds
}
