package main

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/strata-ml/strata/stages"
	"github.com/strata-ml/strata/validation"
)

func cand(name string, cv stages.ConvertConfig) stages.SweepCandidateResult {
	return stages.SweepCandidateResult{Name: name, Convert: cv}
}

var (
	monarch4  = stages.ConvertConfig{Structure: "monarch", Blocks: 4, Residual: "lowrank", ResidualRank: 4}
	monarchC  = stages.ConvertConfig{Structure: "monarch", Blocks: 4, Residual: "lowrank", ResidualRank: 4, Calibration: "train", CalibrationFit: "residual"}
	lowrank64 = stages.ConvertConfig{Structure: "lowrank", Rank: 64, Blocks: 4, Residual: "lowrank", ResidualRank: 4}
	lowrank16 = stages.ConvertConfig{Structure: "lowrank", Rank: 16, Residual: "lowrank", ResidualRank: 4}
	budget25  = stages.ConvertConfig{Structure: "auto", ParamBudget: 0.25, Residual: "lowrank", ResidualRank: 4}
	budget50  = stages.ConvertConfig{Structure: "auto", ParamBudget: 0.5, Residual: "lowrank", ResidualRank: 8}
)

func setOf(name string, rows int, cs ...stages.SweepCandidateResult) *dataSet {
	res := &stages.SweepResult{Candidates: cs, Seeds: []stages.SweepSeed{{Data: stages.PilotData{TrainRows: rows}}}}
	res.Config.Control = true
	return &dataSet{Name: name, Res: res}
}

// TestRows checks data sets are put side by side by conversion: the same
// structure and residual share a row whatever the low-rank trunk's rank,
// a data-aware conversion and each budget get rows of their own, a data
// set that did not try a row has -1 there, and check refuses two
// candidates of one data set in one row.
func TestRows(t *testing.T) {
	d := &doc{Sets: []*dataSet{
		setOf("small", 100, cand("monarch-b4-res4", monarch4), cand("lowrank-r64-res4", lowrank64)),
		setOf("large", 20000, cand("lowrank-r16-res4", lowrank16), cand("monarch-b4-res4", monarch4),
			cand("monarch-b4-res4-calib", monarchC), cand("budget25", budget25), cand("budget50", budget50)),
		setOf("cnn", 0, cand("monarch-b4-res4", monarch4)),
	}}
	if err := d.check(); err != nil {
		t.Fatal(err)
	}
	rows := d.rows()
	want := []struct {
		name string
		at   []int
	}{
		{"monarch-b4-res4", []int{0, 1, 0}},
		{"lowrank-r64-res4 / lowrank-r16-res4", []int{1, 0, -1}},
		{"monarch-b4-res4-calib", []int{-1, 2, -1}},
		{"budget25", []int{-1, 3, -1}},
		{"budget50", []int{-1, 4, -1}},
	}
	if len(rows) != len(want) {
		t.Fatalf("%d rows, want %d", len(rows), len(want))
	}
	for i, w := range want {
		if got := rows[i].name(d); got != w.name || !slices.Equal(rows[i].At, w.at) {
			t.Errorf("row %d: %s at %v, want %s at %v", i, got, rows[i].At, w.name, w.at)
		}
	}

	d.Sets[1].Res.Candidates = append(d.Sets[1].Res.Candidates, cand("budget25-again", budget25))
	if err := d.check(); err == nil || !strings.Contains(err.Error(), "budget25 and budget25-again") {
		t.Errorf("two candidates in one row: %v", err)
	}
}

// TestRenderChange checks the closing note's comparison on crafted
// verdicts: data sets of at least largeRows rows and PyTorch runs count
// as large, each group's pairs are tallied on their own, and a document
// of one group has no comparison.
func TestRenderChange(t *testing.T) {
	accuracy := func(mean float64, worse int) validation.Aggregates {
		s := &validation.Spread{N: 3, Mean: validation.NullableFloat(mean)}
		return validation.Aggregates{{Metric: validation.MetricAccuracy, Better: validation.BetterHigher, Delta: s, DeltaVsControl: s,
			WorseRuns: worse, WorseRunsVsControl: worse, Runs: 3}}
	}
	keep, lose := cand("monarch-b4-res4", monarch4), cand("lowrank-r16-res4", lowrank16)
	keep.Metrics, lose.Metrics = accuracy(0, 0), accuracy(-0.05, 3)
	small := setOf("digits", 1797, keep, lose)
	large := setOf("mnist", 12000, lose)
	torch := setOf("mnist-cnn", 0, keep)
	torch.Torch = &torchRun{}
	for _, c := range []struct {
		ds   *dataSet
		want bool
	}{{small, false}, {large, true}, {torch, true}} {
		if got := c.ds.large(); got != c.want {
			t.Errorf("%s: large %v, want %v", c.ds.Name, got, c.want)
		}
	}

	var b bytes.Buffer
	renderChange(&b, &doc{Sets: []*dataSet{small, large, torch}})
	text := b.String()
	for _, want := range []string{
		"on mnist and mnist-cnn, S + R kept accuracy for 1 of 2 pairs against the baseline and 1 of 2 against the control (on digits: 1 of 2 and 1 of 2), and lost it for 1 of 2 and 1 of 2 (1 of 2 and 1 of 2)",
		"gradient conditioning held for 0 of 2 / 0 of 2",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("no %q in:\n%s", want, text)
		}
	}
	b.Reset()
	renderChange(&b, &doc{Sets: []*dataSet{small}})
	if b.Len() != 0 {
		t.Errorf("one group: %q", b.String())
	}
}

// TestMNISTConfig checks mnist.yaml loads and keeps what the document
// claims of it: three seeds, a control, a learning-rate sweep, an MLP of
// width at least 1024, each data-aware candidate beside the weight-only
// one of the same structure, and budgets of 25%, 50% and 75%.
func TestMNISTConfig(t *testing.T) {
	cfg, err := stages.LoadSweepConfig("mnist.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Control || len(cfg.Seeds) != 3 || len(cfg.LRs) < 3 || cfg.Baseline.Init != "mlp:784-1024-1024-10:relu" {
		t.Errorf("control %v, seeds %v, lrs %v, init %q", cfg.Control, cfg.Seeds, cfg.LRs, cfg.Baseline.Init)
	}
	var budgets []float64
	weightOnly := map[string]bool{}
	for _, c := range cfg.Candidates {
		if c.ParamBudget > 0 {
			budgets = append(budgets, c.ParamBudget)
		}
		if c.Calibration == "" && c.Structure != "auto" {
			weightOnly[c.Structure+string(c.Residual)] = true
		}
	}
	for _, c := range cfg.Candidates {
		if c.Calibration != "" && !weightOnly[c.Structure+string(c.Residual)] {
			t.Errorf("%s: data-aware without its weight-only twin", c.Name)
		}
	}
	if !slices.Equal(budgets, []float64{0.25, 0.5, 0.75}) {
		t.Errorf("budgets %v", budgets)
	}
}
