package stages

import (
	"bytes"
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-ml/strata/internal/yamlstrict"
	"github.com/strata-ml/strata/validation"
)

// irisSweep is a small sweep on the embedded iris data: two candidates,
// two seeds, two learning rates (one of them the fine-tuning's own).
func irisSweep(out string, jobs int) SweepConfig {
	cfg := DefaultSweepConfig()
	cfg.Data, cfg.Out, cfg.Jobs = "iris", out, jobs
	cfg.Baseline.Init, cfg.Baseline.Epochs, cfg.Baseline.LR = "mlp:4-16-16-3:relu", 30, 3e-3
	cfg.Finetune.Epochs, cfg.Finetune.LR = 4, 1e-3
	cfg.Validate.Bootstrap, cfg.Validate.LatencyRuns = 200, 3
	cfg.Seeds = []uint64{3, 1}
	cfg.LRs = []float64{1e-3, 3e-2}
	cfg.Candidates = []SweepCandidate{
		{Name: "monarch", ConvertConfig: ConvertConfig{Structure: "monarch", Blocks: 4, Residual: "lowrank", ResidualRank: 2}},
		{ConvertConfig: ConvertConfig{Structure: "orthogonal", Residual: "none"}, Retract: new(true)},
	}
	return cfg
}

// TestSweep runs a sweep and checks what its files say against what they
// are computed from: every run has a validation.json with lr_robustness,
// the learning-rate run at the fine-tuning's own rate reproduces the
// candidate's (and the control's) accuracy, the aggregates are the mean
// and spread of the runs' values, and more jobs give the same bytes.
func TestSweep(t *testing.T) {
	if testing.Short() {
		t.Skip("trains 2 baselines and 20 fine-tunings")
	}
	dir := t.TempDir()
	one := filepath.Join(dir, "one")
	res, err := Sweep(context.Background(), irisSweep(one, 1))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Candidates) != 2 || res.Candidates[1].Name != "orthogonal-retract-none" {
		t.Fatalf("candidates %+v", res.Candidates)
	}
	for _, c := range res.Candidates {
		if len(c.Runs) != 2 || c.Runs[0].Seed != 3 || c.Runs[1].Seed != 1 {
			t.Fatalf("%s: runs %+v", c.Name, c.Runs)
		}
		var deltas []float64
		for i, run := range c.Runs {
			v, _ := readValidation(t, filepath.Dir(filepath.Join(one, run.Validation)))
			acc := v.Metrics[validation.MetricAccuracy]
			deltas = append(deltas, float64(*acc.Delta))
			// 38 test rows are one gradient batch of 64: too few units
			// for an interval.
			if g := v.Metrics[validation.MetricGradNormRatio]; g.CI95 != nil || !strings.Contains(g.CIReason, "1 evaluation batches, fewer than the 20 units") {
				t.Errorf("grad_norm_ratio over one batch: interval %v (%q)", g.CI95, g.CIReason)
			}
			lr := v.Metrics[validation.MetricLRRobustness]
			if lr.Candidate == nil || lr.Baseline == nil || lr.Control == nil || len(lr.Parts) != 5 {
				t.Fatalf("%s seed %d: lr_robustness %+v", c.Name, run.Seed, lr)
			}
			// The run at lr 1e-3 is the fine-tuning itself (and the
			// dense one the control): scored, not trained again, by
			// another path than validate's.
			if filepath.Base(run.LR[0].Dir) != "finetune" || filepath.Base(res.Seeds[i].DenseLR[0].Dir) != "control" ||
				filepath.Base(run.LR[1].Dir) != "lr-0.03" {
				t.Errorf("%s seed %d: lr run dirs %s, %s, dense %s", c.Name, run.Seed, run.LR[0].Dir, run.LR[1].Dir, res.Seeds[i].DenseLR[0].Dir)
			}
			if got, want := *run.LR[0].Accuracy, *acc.Candidate; got != want {
				t.Errorf("%s seed %d: lr-sweep accuracy at the fine-tuning's rate %v, validate's %v", c.Name, run.Seed, got, want)
			}
			if got, want := *res.Seeds[i].DenseLR[0].Accuracy, *acc.Control; got != want {
				t.Errorf("seed %d: dense lr-sweep accuracy %v, the control's %v", run.Seed, got, want)
			}
			worst := math.Min(float64(*run.LR[0].Accuracy), float64(*run.LR[1].Accuracy))
			if run.LR[1].Loss == nil {
				worst = 0
			}
			if float64(*lr.Candidate) != worst {
				t.Errorf("%s seed %d: worst accuracy %v, want %v", c.Name, run.Seed, *lr.Candidate, worst)
			}
		}
		m := c.Metrics.Get(validation.MetricAccuracy)
		mean := (deltas[0] + deltas[1]) / 2
		sd := math.Abs(deltas[0]-deltas[1]) / math.Sqrt2
		if m.Delta == nil || math.Abs(float64(m.Delta.Mean)-mean) > 1e-12 || math.Abs(float64(*m.Delta.SD)-sd) > 1e-12 || m.Runs != 2 {
			t.Errorf("%s: accuracy delta %+v, want mean %v sd %v", c.Name, m.Delta, mean, sd)
		}
		if m.CIHalfWidth == nil || c.Metrics.Get(validation.MetricGradNormRatio).CIHalfWidth != nil || c.Metrics.Get(validation.MetricParams).CIHalfWidth != nil {
			t.Errorf("%s: ci_half_width accuracy %v, grad_norm_ratio %v, params %v: want a value, null, null", c.Name,
				fv(m.CIHalfWidth), fv(c.Metrics.Get(validation.MetricGradNormRatio).CIHalfWidth), fv(c.Metrics.Get(validation.MetricParams).CIHalfWidth))
		}
		if c.Metrics.Get(validation.MetricLRRobustness+".range") == nil || c.Metrics.Get(validation.MetricPerturbationSensitivity+".noise=0.05") == nil {
			t.Errorf("%s: parts missing from the aggregates", c.Name)
		}
	}
	md := readFile(t, filepath.Join(one, "sweep.md"))
	for _, want := range []string{"| monarch |", "## orthogonal-retract-none", "| lr_robustness.range |"} {
		if !bytes.Contains(md, []byte(want)) {
			t.Errorf("sweep.md lacks %q", want)
		}
	}

	// report --select-best on the sweep's directory judges each
	// candidate over its seeds, as sweep.json did.
	rep, err := Report(context.Background(), ReportConfig{SelectBest: []string{one}, Out: filepath.Join(dir, "report")})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Candidates) != 2 || len(rep.Inputs.Validations) != 4 {
		t.Fatalf("report: %d candidates from %d files, want 2 from 4", len(rep.Candidates), len(rep.Inputs.Validations))
	}
	for _, rc := range rep.Candidates {
		var want *SweepCandidateResult
		for i := range res.Candidates {
			if res.Candidates[i].Name == rc.Name {
				want = &res.Candidates[i]
			}
		}
		if want == nil || rc.Decision != want.Decision {
			t.Errorf("report candidate %s: decision %s, sweep.json %+v", rc.Name, rc.Decision, want)
		}
	}

	two := filepath.Join(dir, "two")
	if _, err := Sweep(context.Background(), irisSweep(two, 3)); err != nil {
		t.Fatal(err)
	}
	for _, run := range res.Candidates[0].Runs {
		a := withoutVarying(t, readFile(t, filepath.Join(one, run.Validation)))
		b := withoutVarying(t, readFile(t, filepath.Join(two, run.Validation)))
		a = bytes.ReplaceAll(a, []byte(one), []byte(two))
		if !bytes.Equal(a, b) {
			t.Errorf("%s: validation.json differs between 1 and 3 jobs", run.Validation)
		}
	}
}

func TestSweepBadInput(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		edit func(*SweepConfig)
		want string
	}{
		{"no candidates", func(c *SweepConfig) { c.Candidates = nil }, "no candidates"},
		{"same name", func(c *SweepConfig) { c.Candidates[1].Name = "monarch" }, "names two candidates"},
		{"bad name", func(c *SweepConfig) { c.Candidates[0].Name = "a/b" }, "candidates[0].name"},
		{"bad structure", func(c *SweepConfig) { c.Candidates[1].Structure = "fractal" }, "candidates[1]"},
		{"one lr", func(c *SweepConfig) { c.LRs = []float64{1e-3} }, "lrs"},
		{"seed twice", func(c *SweepConfig) { c.Seeds = []uint64{1, 1} }, "seeds"},
		{"jobs", func(c *SweepConfig) { c.Jobs = -1 }, "jobs"},
		{"no model file", func(c *SweepConfig) { c.Model = filepath.Join(dir, "missing.arrow") }, "missing.arrow"},
		{"policy", func(c *SweepConfig) { c.Policy = filepath.Join(dir, "missing.yaml") }, "missing.yaml"},
		{"train file", func(c *SweepConfig) { c.Data, c.Train = "", filepath.Join(dir, "missing.csv") }, "missing.csv"},
	} {
		out := filepath.Join(dir, tc.name)
		cfg := irisSweep(out, 1)
		tc.edit(&cfg)
		_, err := Sweep(context.Background(), cfg)
		if !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an input error containing %q", tc.name, err, tc.want)
		}
		if _, err := os.Stat(out); err == nil {
			t.Errorf("%s: created %s", tc.name, out)
		}
	}
}

// TestLoadSweepConfig reads a sweep config: candidates inherit the
// convert keys they leave out, names are derived, and unknown keys are
// refused with their line.
func TestLoadSweepConfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sweep.yaml")
	src := `version: 1
data: wine
convert:
  structure: monarch
  blocks: 8
  residual_rank: 4
candidates:
  - name: m8
  - structure: lowrank
    rank: 3
    residual: none
  - structure: orthogonal
    retract: false
lrs: [0.01, 0.001]
seeds: [0, 1]
jobs: 2
`
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadSweepConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Candidates
	if len(c) != 3 || c[0].Structure != "monarch" || c[0].Blocks != 8 || c[0].ResidualRank != 4 || c[0].Residual != "lowrank" {
		t.Errorf("candidate 0 %+v: want the sweep's convert keys", c[0])
	}
	if c[1].Name != "lowrank-b8-r3-none" || c[1].Residual != "none" {
		t.Errorf("candidate 1 %+v", c[1])
	}
	if c[2].Retract == nil || *c[2].Retract || c[2].Name != "orthogonal-b8-lowrank4" {
		t.Errorf("candidate 2 %+v (name %s)", c[2], c[2].Name)
	}
	if cfg.LRs[0] != 0.001 || len(cfg.Seeds) != 2 || cfg.Jobs != 2 {
		t.Errorf("lrs %v seeds %v jobs %d", cfg.LRs, cfg.Seeds, cfg.Jobs)
	}
	bad := strings.Replace(src, "    rank: 3", "    rnak: 3", 1)
	if err := os.WriteFile(path, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = LoadSweepConfig(path)
	var ce *yamlstrict.ConfigError
	if !errors.As(err, &ce) || ce.Line != 10 || !strings.Contains(err.Error(), "rnak") {
		t.Errorf("typo: got %v, want a yamlstrict.ConfigError at line 10", err)
	}
}

func TestParseCandidateSpec(t *testing.T) {
	base := ConvertConfig{Structure: "monarch", Blocks: 4, Residual: "lowrank", ResidualRank: 8}
	c, err := ParseCandidateSpec("name=k2,structure=kronecker,rank=2,residual_rank=4,retract=true", base)
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "k2" || c.Structure != "kronecker" || c.Rank != 2 || c.ResidualRank != 4 || c.Blocks != 4 || c.Retract == nil || !*c.Retract {
		t.Errorf("got %+v", c)
	}
	for _, bad := range []string{"blocks=x", "colour=red", "structure", "rank=1,rank=2"} {
		if _, err := ParseCandidateSpec(bad, base); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// TestSweepFailedCandidate sweeps a candidate whose --structure auto
// cannot meet its target beside one that converts: the sweep completes,
// the failed candidate is NO-GO at every seed with the reason and no
// validation, and report --select-best judges the other one only, saying
// why.
func TestSweepFailedCandidate(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a baseline, a control and a fine-tuning")
	}
	dir := t.TempDir()
	cfg := irisSweep(filepath.Join(dir, "sweep"), 1)
	cfg.Baseline.Init = "mlp:4-64-64-3:relu"
	cfg.Seeds, cfg.LRs = []uint64{3}, []float64{1e-3, 3e-2}
	cfg.Candidates = []SweepCandidate{
		cfg.Candidates[0],
		{Name: "unreachable", ConvertConfig: ConvertConfig{Structure: StructureAuto, TargetError: 1e-9, Residual: "lowrank"}},
	}
	res, err := Sweep(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	failed := res.Candidates[1]
	if failed.Decision != "no-go" || len(failed.Runs) != 1 || failed.Runs[0].Validation != "" ||
		!strings.Contains(failed.Runs[0].Failed, "structure auto missed target_error 1e-09") || !strings.Contains(failed.Runs[0].Why, failed.Runs[0].Failed) {
		t.Fatalf("the failed candidate: %+v", failed)
	}
	if _, err := os.Stat(filepath.Join(dir, "sweep", "seed-3", "unreachable", "finetune")); !os.IsNotExist(err) {
		t.Errorf("the failed candidate was fine-tuned (%v)", err)
	}
	if res.Candidates[0].Runs[0].Validation == "" {
		t.Fatalf("the other candidate was not validated: %+v", res.Candidates[0])
	}
	md := readFile(t, filepath.Join(dir, "sweep", "sweep.md"))
	if !bytes.Contains(md, []byte("unreachable")) {
		t.Error("sweep.md does not show the failed candidate")
	}
	rep, err := Report(context.Background(), ReportConfig{SelectBest: []string{filepath.Join(dir, "sweep")}, Out: filepath.Join(dir, "report")})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Candidates) != 1 || !strings.Contains(strings.Join(rep.Warnings, "\n"), `candidate "unreachable" failed at seed 3`) {
		t.Errorf("report: %d candidates, warnings %q", len(rep.Candidates), rep.Warnings)
	}
}
