package stages

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-ml/strata/internal/datasets"
	"github.com/strata-ml/strata/render/number"
	"github.com/strata-ml/strata/validation"
)

// A sweep config's calibration key: true means each seed's training
// data, a file is relative to the config, false none; the data-aware
// candidate's default name says so, so that one sweep compares a
// structure weight-only and data-aware.
func TestLoadSweepConfigCalibration(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sweep.yaml")
	src := `version: 1
data: wine
convert:
  structure: monarch
  blocks: 4
candidates:
  - residual_rank: 4
  - residual_rank: 4
    calibration: true
  - name: own-rows
    residual_rank: 4
    calibration: rows.csv
    calibration_rows: 300
  - structure: auto
    calibration: train
    model_budget: 0.5
  - residual_rank: 2
    calibration: false
`
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadSweepConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct{ name, calibration string }{
		{"monarch-b4-lowrank4", ""},
		{"monarch-b4-lowrank4-calib", "true"},
		{"own-rows", filepath.Join(dir, "rows.csv")},
		{"auto-b4-lowrank8-mb0.5-calib", "train"},
		{"monarch-b4-lowrank2", "false"},
	}
	for i, c := range cfg.Candidates {
		if c.Name != want[i].name || c.Calibration != want[i].calibration {
			t.Errorf("candidate %d: name %q calibration %q, want %q and %q", i, c.Name, c.Calibration, want[i].name, want[i].calibration)
		}
	}
	if c := cfg.Candidates[2]; c.Calibration != want[2].calibration || c.CalibrationRows != 300 {
		t.Errorf("candidate 2: calibration %q rows %d", c.Calibration, c.CalibrationRows)
	}
	for _, tt := range []struct{ in, train, want string }{
		{"true", "t.arrow", "t.arrow"}, {"train", "t.arrow", "t.arrow"}, {"false", "t.arrow", ""}, {"x.csv", "t.arrow", "x.csv"}, {"", "t.arrow", ""},
	} {
		got := ConvertConfig{Calibration: tt.in}.pilotCalibration(tt.train, "y")
		if got.Calibration != tt.want || got.Label != "y" {
			t.Errorf("calibration %q: resolved to %q label %q, want %q and y", tt.in, got.Calibration, got.Label, tt.want)
		}
	}
	c, err := ParseCandidateSpec("calibration=true,structure=auto,model_budget=0.4", DefaultConvertConfig())
	if err != nil || c.Calibration != "true" || c.ModelBudget != 0.4 {
		t.Errorf("--candidate calibration=true,...: %+v, %v", c, err)
	}
}

// A pilot with calibration: true converts data-aware on its own training
// split, with its label column.
func TestPilotCalibration(t *testing.T) {
	dir := t.TempDir()
	train := filepath.Join(dir, "iris.csv")
	if err := datasets.Write("iris", train); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultPilotConfig()
	cfg.Train, cfg.Control, cfg.Seed = train, false, 2
	cfg.Baseline.Init, cfg.Baseline.Epochs, cfg.Baseline.LR, cfg.Finetune.Epochs = "mlp:4-32-32-3:relu", 30, 1e-2, 2
	cfg.Convert.Structure, cfg.Convert.Blocks, cfg.Convert.ResidualRank, cfg.Convert.Calibration = "blockdiag", 2, 2, "true"
	cfg.Validate.Bootstrap = 100
	cfg.Workdir = filepath.Join(dir, "work")
	res, err := Pilot(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := res.Convert.Calibration
	if c == nil || c.Data.Path != res.Data.Train || c.Rows != res.Data.TrainRows {
		t.Fatalf("convert's calibration %+v, want the pilot's %d training rows of %s", c, res.Data.TrainRows, res.Data.Train)
	}
	if len(res.Convert.Layers) == 0 {
		t.Fatal("no layer converted")
	}
	md := string(readFile(t, filepath.Join(cfg.Workdir, "report", "report.md")))
	html := string(readFile(t, filepath.Join(cfg.Workdir, "report", "report.html")))
	if !strings.Contains(md, "## Conversion") || !strings.Contains(html, `id="conversion"`) || res.Report.Inputs.Convert == nil {
		t.Errorf("the report has no conversion section (inputs %+v)", res.Report.Inputs)
	}
	for _, l := range res.Convert.Layers {
		c := l.Calibration
		if c == nil {
			t.Fatalf("%s: no calibration record", l.Name)
		}
		row := fmt.Sprintf("| %s | %s | %d / %d | %s | %s | %s |", l.Name, l.Hyperparameters, l.Params, l.ParamsDense,
			number.Cell(validation.Num(float64(c.WeightOnlyError))), number.Cell(validation.Num(float64(c.DataAwareError))), c.Written)
		if !strings.Contains(md, row) {
			t.Errorf("report.md lacks the row %q", row)
		}
	}
}

// One sweep converts a structure weight-only and data-aware (on each
// seed's training split) and validates both against the same baseline.
func TestSweepComparesCalibration(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a baseline and two fine-tunings")
	}
	dir := t.TempDir()
	cfg := irisSweep(filepath.Join(dir, "sweep"), 1)
	cfg.Seeds, cfg.LRs, cfg.Control, cfg.Finetune.Epochs = []uint64{3}, nil, false, 2
	wo := SweepCandidate{ConvertConfig: ConvertConfig{Structure: "blockdiag", Blocks: 2, Residual: "lowrank", ResidualRank: 2}}
	da := wo
	da.Calibration = "true"
	cfg.Candidates = []SweepCandidate{wo, da}
	res, err := Sweep(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Candidates) != 2 || res.Candidates[1].Name != res.Candidates[0].Name+"-calib" {
		t.Fatalf("candidates %q and %q", res.Candidates[0].Name, res.Candidates[1].Name)
	}
	for i, c := range res.Candidates {
		if len(c.Runs) != 1 || c.Runs[0].Validation == "" {
			t.Fatalf("%s: runs %+v", c.Name, c.Runs)
		}
		var cv ConvertResult
		readJSONFile(t, filepath.Join(cfg.Out, c.Runs[0].Dir, "convert", "convert.json"), &cv)
		train := filepath.Join(cfg.Out, res.Seeds[0].Data.Train)
		switch {
		case i == 0 && cv.Calibration != nil:
			t.Errorf("%s: weight-only candidate calibrated on %s", c.Name, cv.Calibration.Data.Path)
		case i == 1 && (cv.Calibration == nil || cv.Calibration.Data.Path != train):
			t.Errorf("%s: calibration %+v, want the seed's %s", c.Name, cv.Calibration, train)
		}
	}
}

func readJSONFile(t *testing.T, path string, v any) {
	t.Helper()
	if err := json.Unmarshal(readFile(t, path), v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
