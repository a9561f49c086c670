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

	"github.com/strata-ml/strata/render"
	"github.com/strata-ml/strata/render/rendertest"
	vt "github.com/strata-ml/strata/validation/validationtest"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/gate"
	"github.com/strata-ml/strata/internal/provenance"
	"github.com/strata-ml/strata/validation"
)

// addTrainLogs writes training logs for the candidate and the control to
// dir and names them in v, as validate does.
func addTrainLogs(t *testing.T, dir string, v *validation.Result) {
	t.Helper()
	for _, side := range []struct {
		name string
		in   **provenance.File
	}{{"candidate", &v.Inputs.TrainLog}, {"control", &v.Inputs.ControlTrainLog}} {
		l := &arrowio.TrainLog{Layers: []string{"0"}}
		for s := 1; s <= 40; s++ {
			vl := math.NaN()
			if s%10 == 0 {
				vl = 1 / float64(s)
			}
			l.Rows = append(l.Rows, arrowio.TrainLogRow{Step: int64(s), Epoch: int64((s-1)/10 + 1), Loss: 2 / float64(s), LR: 1e-3,
				GradNorm: 1, LayerGradNorms: []float64{1}, ValidLoss: vl, ValidAccuracy: math.NaN()})
		}
		path := filepath.Join(dir, side.name+"_train_log.arrow")
		if err := arrowio.WriteTrainLog(path, l); err != nil {
			t.Fatal(err)
		}
		in, err := provenance.HashFile(context.Background(), path)
		if err != nil {
			t.Fatal(err)
		}
		*side.in = &in
	}
}

func writeValidation(t *testing.T, dir, name string, v *validation.Result) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := writeJSON(path, v); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestReportOutputs(t *testing.T) {
	dir := t.TempDir()
	v := vt.Full(450, 0.948, -0.006, 0.002)
	addTrainLogs(t, dir, v)
	val := writeValidation(t, dir, "validation.json", v)
	cfg := ReportConfig{
		Validation: val, Out: filepath.Join(dir, "report"),
		DecisionFile: filepath.Join(dir, "decision"), XComFile: filepath.Join(dir, "xcom.json"), MetricsFile: filepath.Join(dir, "metrics.txt"),
	}
	res, err := Report(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The default policy: accuracy within 0.01 at the CI bound, relative
	// sensitivity, params ratio, and the optional control rule.
	if res.Decision != gate.DecisionGo {
		t.Fatalf("decision %s, want go: %s", res.Decision, res.Why)
	}
	files := entries(t, cfg.Out)
	want := []string{"plot-residual-share.svg", "plot-robustness.svg", "plot-sensitivity.svg", "plot-spectra.svg", "plot-training.svg",
		"report.html", "report.json", "report.md"}
	if !slices.Equal(files, want) {
		t.Errorf("outputs %v, want %v", files, want)
	}
	// A second report into the same directory replaces the first.
	if _, err := Report(context.Background(), cfg); err != nil {
		t.Fatalf("second report into %s: %v", cfg.Out, err)
	}

	var back ReportResult
	if err := json.Unmarshal(readFile(t, filepath.Join(cfg.Out, "report.json")), &back); err != nil {
		t.Fatal(err)
	}
	if back.Decision != gate.DecisionGo || len(back.Rules) != 4 || back.Inputs.Validations[0].SHA256 == "" || back.Inputs.Policy.SHA256 == "" {
		t.Errorf("report.json: decision %s, %d rules, inputs %+v", back.Decision, len(back.Rules), back.Inputs)
	}
	for _, r := range back.Rules {
		if r.Metric == "" || r.Sentence == "" || r.Requirement == "" || r.Outcome == "" || r.Bound == "" {
			t.Errorf("rule %+v lacks a field", r)
		}
	}
	if len(back.Metrics) != 5 || back.Metrics[0].Metric != validation.MetricAccuracy || back.Metrics[0].TrainingEffect == nil {
		t.Errorf("metrics table %+v", back.Metrics)
	}

	if got := string(readFile(t, cfg.DecisionFile)); got != "go\n" {
		t.Errorf("decision file %q", got)
	}
	var x XCom
	if err := json.Unmarshal(readFile(t, cfg.XComFile), &x); err != nil {
		t.Fatal(err)
	}
	if x.Decision != gate.DecisionGo || x.ExitCode != 0 || len(x.Rules) != 4 || x.Metrics[validation.MetricAccuracy].Candidate == nil {
		t.Errorf("xcom %+v", x)
	}
	text := rendertest.CheckOpenMetrics(t, readFile(t, cfg.MetricsFile))
	for _, want := range []string{`strata_decision{strata_decision="go"} 1`, `strata_metric{metric="accuracy",model="baseline"} 0.95`, `strata_metric{metric="params",model="candidate"} 450`} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("OpenMetrics text lacks %q", want)
		}
	}

	md := string(readFile(t, filepath.Join(cfg.Out, "report.md")))
	for _, want := range []string{"## Decision: GO", "| **pass** | accuracy vs baseline max_degradation 0.01", "![Singular-value spectra per layer](plot-spectra.svg)"} {
		if !strings.Contains(md, want) {
			t.Errorf("report.md lacks %q", want)
		}
	}
	rendertest.CheckHTML(t, readFile(t, filepath.Join(cfg.Out, "report.html")), "GO", render.PlotIDs)
}

func entries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

// TestReportChangedTrainLog: a training log that changed since validate
// read it is left out of the curves with a warning; the gate still judges.
func TestReportChangedTrainLog(t *testing.T) {
	dir := t.TempDir()
	v := vt.Full(450, 0.948, -0.006, 0.002)
	addTrainLogs(t, dir, v)
	val := writeValidation(t, dir, "validation.json", v)
	if err := os.WriteFile(v.Inputs.TrainLog.Path, []byte("changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := Report(context.Background(), ReportConfig{Validation: val, Out: filepath.Join(dir, "out")})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Inputs.TrainLogs) != 1 || !slices.ContainsFunc(res.Warnings, func(w string) bool { return strings.Contains(w, "changed since validate") }) {
		t.Errorf("train logs %v, warnings %v: want the control's log only and a warning", res.Inputs.TrainLogs, res.Warnings)
	}
}

// TestReportSelectBest judges a sweep: the passing candidate with the
// fewest parameters is selected, ties broken by accuracy, and every
// candidate is in the report.
func TestReportSelectBest(t *testing.T) {
	dir := t.TempDir()
	a := writeValidation(t, dir, "a.json", vt.Full(300, 0.90, -0.06, -0.04)) // fewest params, fails accuracy
	b := writeValidation(t, dir, "b.json", vt.Full(500, 0.949, -0.004, 0.002))
	c := writeValidation(t, dir, "c.json", vt.Full(500, 0.951, -0.003, 0.004)) // same params, better accuracy
	d := writeValidation(t, dir, "d.json", vt.Full(700, 0.95, -0.003, 0.003))
	res, err := Report(context.Background(), ReportConfig{SelectBest: []string{a, b, c, d}, Out: filepath.Join(dir, "out")})
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, cand := range res.Candidates {
		order = append(order, filepath.Base(cand.Validation.Path))
	}
	if want := []string{"c.json", "b.json", "d.json", "a.json"}; !slices.Equal(order, want) {
		t.Errorf("ranking %v, want %v", order, want)
	}
	f := res.Featured()
	if res.Decision != gate.DecisionGo || !f.Selected || filepath.Base(f.Validation.Path) != "c.json" {
		t.Errorf("decision %s, featured %s (selected %v): %s", res.Decision, f.Validation.Path, f.Selected, res.Why)
	}
	if !strings.Contains(res.Why, "3 of 4 candidates passed") {
		t.Errorf("why %q", res.Why)
	}
	page := readFile(t, filepath.Join(dir, "out", "report.html"))
	if !bytes.Contains(page, []byte(`id="candidates"`)) || bytes.Count(page, []byte("<details>")) != 3 {
		t.Errorf("report.html does not list every candidate")
	}

	// None passing: no selection; inconclusive beats no-go.
	res, err = Report(context.Background(), ReportConfig{SelectBest: []string{a,
		writeValidation(t, dir, "e.json", vt.Full(400, 0.94, -0.02, 0.005))}, Out: filepath.Join(dir, "none")})
	if err != nil {
		t.Fatal(err)
	}
	if res.Decision != gate.DecisionInconclusive || res.Featured().Selected {
		t.Errorf("decision %s, featured selected %v, want inconclusive and none selected", res.Decision, res.Featured().Selected)
	}
}

// TestReportBadInput: bad input is ErrInput and writes nothing.
func TestReportBadInput(t *testing.T) {
	dir := t.TempDir()
	good := writeValidation(t, dir, "v.json", vt.Full(450, 0.948, -0.006, 0.002))
	notJSON := filepath.Join(dir, "bad.json")
	os.WriteFile(notJSON, []byte("{\n  \"schema_version\": 1,\n  \"metrics\": {\n    \"accuracy\": 7\n  }\n}\n"), 0o644)
	other := filepath.Join(dir, "other.json")
	os.WriteFile(other, []byte(`{"schema_version": 2, "metrics": {}}`), 0o644)
	typo := filepath.Join(dir, "typo.yaml")
	os.WriteFile(typo, []byte("version: 1\nrules:\n  - {metric: accuracy, max_degredation: 0.01}\n"), 0o644)
	tests := []struct {
		name string
		cfg  ReportConfig
		want string
	}{
		{"no out", ReportConfig{Validation: good}, "report: out is required"},
		{"no validation", ReportConfig{}, "report: validation is required"},
		{"missing file", ReportConfig{Validation: filepath.Join(dir, "nope.json")}, "no such file"},
		{"wrong type", ReportConfig{Validation: notJSON}, "bad.json:4: metrics: want an object, got a JSON number"},
		{"no metrics", ReportConfig{Validation: other}, "no metrics"},
		{"typo'd policy", ReportConfig{Validation: good, Policy: typo}, "typo.yaml:3: rules[0].max_degredation: unknown key (did you mean max_degradation?)"},
		{"select-best twice", ReportConfig{SelectBest: []string{good, good}}, "twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := filepath.Join(dir, "out-"+strings.ReplaceAll(tt.name, " ", "-"))
			if tt.name != "no out" {
				tt.cfg.Out = out
			}
			tt.cfg.DecisionFile = filepath.Join(out + "-decision")
			_, err := Report(context.Background(), tt.cfg)
			if !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want bad input containing %q", err, tt.want)
			}
			if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("bad input left %s", out)
			}
			if _, err := os.Stat(tt.cfg.DecisionFile); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("bad input left a decision file")
			}
		})
	}
}

// TestReportTrainLogOverride moves the candidate's training log after
// validate ran: from the recorded path it is gone (a warning, no curve),
// through the override it is read, and a different file given as the
// override is refused for its SHA-256.
func TestReportTrainLogOverride(t *testing.T) {
	dir := t.TempDir()
	v := vt.Full(450, 0.948, -0.006, 0.002)
	addTrainLogs(t, dir, v)
	val := writeValidation(t, dir, "validation.json", v)
	moved := filepath.Join(t.TempDir(), "train_log.arrow")
	if err := os.Rename(v.Inputs.TrainLog.Path, moved); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "other.arrow")
	if err := os.WriteFile(other, []byte("not the log"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, override string
		logs           int
		warning        string
	}{
		{"recorded path gone", "", 1, "candidate_train_log.arrow"},
		{"override file", moved, 2, ""},
		{"override directory", filepath.Dir(moved), 2, ""},
		{"override with another file", other, 1, "changed since validate"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := Report(context.Background(), ReportConfig{Validation: val, Out: filepath.Join(dir, fmt.Sprint("out", i)), TrainLog: tt.override})
			if err != nil {
				t.Fatal(err)
			}
			warned := slices.ContainsFunc(res.Warnings, func(w string) bool { return tt.warning != "" && strings.Contains(w, tt.warning) })
			if len(res.Inputs.TrainLogs) != tt.logs || warned != (tt.warning != "") {
				t.Errorf("train logs read %v, warnings %v; want %d logs and a warning containing %q", res.Inputs.TrainLogs, res.Warnings, tt.logs, tt.warning)
			}
		})
	}
}
