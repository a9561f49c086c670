package stages

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/gate"
	"github.com/strata-ml/strata/internal/datasets"
	"github.com/strata-ml/strata/internal/inputerr"
	"github.com/strata-ml/strata/internal/yamlstrict"
	"github.com/strata-ml/strata/render"
	"github.com/strata-ml/strata/render/rendertest"
	"github.com/strata-ml/strata/validation"
)

// TestPilotDemo runs `strata pilot --demo`'s configuration end to end
// (fewer epochs and resamples under -short) and checks that every stage
// wrote its files in its own directory, that the control was trained and
// validated, and that the report is complete.
func TestPilotDemo(t *testing.T) {
	cfg := DemoPilotConfig()
	if testing.Short() {
		cfg.Baseline.Epochs, cfg.Finetune.Epochs, cfg.Validate.Bootstrap = 8, 3, 200
	}
	cfg.Workdir = t.TempDir()
	start := time.Now()
	res, err := Pilot(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("demo: %s in %.1fs: %s", res.Decision.Label(), time.Since(start).Seconds(), res.Why)
	want := map[string][]string{
		"data":     {"test.arrow", "train.arrow"},
		"baseline": {"finetune.json", "model.arrow", "model.materialized.arrow", "train_log.arrow"},
		"convert":  {"convert.json", "model.arrow", "model.materialized.arrow"},
		"finetune": {"finetune.json", "model.arrow", "model.materialized.arrow", "train_log.arrow"},
		"control":  {"finetune.json", "model.arrow", "model.materialized.arrow", "train_log.arrow"},
		"validate": {"validation.json"},
		"report": {"plot-residual-share.svg", "plot-robustness.svg", "plot-sensitivity.svg", "plot-spectra.svg", "plot-training.svg",
			"report.html", "report.json", "report.md"},
	}
	for d, files := range want {
		if got := entries(t, filepath.Join(cfg.Workdir, d)); !slices.Equal(got, files) {
			t.Errorf("%s holds %v, want %v", d, got, files)
		}
	}
	var stages []string
	for _, s := range res.Stages {
		stages = append(stages, s.Name)
	}
	if !slices.Equal(stages, []string{"data", "baseline", "convert", "finetune", "control", "validate", "report"}) {
		t.Errorf("stages %v", stages)
	}
	if res.Validation.Inputs.Control == nil || !res.Report.HasControl {
		t.Error("the control was not validated")
	}
	if res.Finetune.Steps != res.Control.Steps {
		t.Errorf("the control trained %d steps, the candidate %d: not the same budget", res.Control.Steps, res.Finetune.Steps)
	}
	if res.Data.TrainRows+res.Data.TestRows != 1797 || res.Data.TestRows != 449 {
		t.Errorf("split %d / %d rows, want 1348 / 449", res.Data.TrainRows, res.Data.TestRows)
	}
	var pj PilotResult
	if err := json.Unmarshal(readFile(t, filepath.Join(cfg.Workdir, "pilot.json")), &pj); err != nil {
		t.Fatal(err)
	}
	if pj.Decision != res.Decision || pj.ReportHTML != res.ReportHTML {
		t.Errorf("pilot.json: decision %s report %s", pj.Decision, pj.ReportHTML)
	}
	rendertest.CheckHTML(t, readFile(t, res.ReportHTML), res.Decision.Label(), render.PlotIDs)
}

// TestPilotFilesNoControl pilots from data files with a held-out test
// share and no control: no control directory, and the report compares
// the candidate with the baseline only.
func TestPilotFilesNoControl(t *testing.T) {
	dir := t.TempDir()
	train := filepath.Join(dir, "iris.csv")
	if err := datasets.Write("iris", train); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultPilotConfig()
	cfg.Train, cfg.Control, cfg.Seed = train, false, 2
	cfg.Baseline.Epochs, cfg.Baseline.LR, cfg.Finetune.Epochs = 30, 1e-2, 5
	cfg.Convert.Structure, cfg.Convert.Blocks = "blockdiag", 2
	cfg.Validate.Bootstrap = 200
	cfg.Workdir = filepath.Join(dir, "work")
	res, err := Pilot(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Control != nil || res.Report.HasControl {
		t.Error("control: false still trained or reported a control")
	}
	if got := entries(t, cfg.Workdir); slices.Contains(got, "control") {
		t.Errorf("workdir %v has a control directory", got)
	}
	if res.Baseline.Config.Init != "mlp:4-128-128-3:relu" {
		t.Errorf("default baseline %q, want mlp:4-128-128-3:relu", res.Baseline.Config.Init)
	}
	// The default policy's control rule fails loudly without a control,
	// saying how to get one: the pilot is NO-GO whatever the rest says.
	found := false
	for _, r := range res.Report.Rules {
		if r.Versus == gate.VersusControl {
			found = true
			if r.Outcome != gate.OutcomeFail || !strings.Contains(r.Sentence, "give validate --control") {
				t.Errorf("control rule without a control: %s %q, want a fail saying how to get one", r.Outcome, r.Sentence)
			}
		}
	}
	if !found || res.Report.Decision != gate.DecisionNoGo {
		t.Errorf("decision %s (control rule found: %v), want NO-GO from the control rule", res.Report.Decision, found)
	}
}

func TestLoadPilotConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(src string) string {
		path := filepath.Join(dir, "pilot.yaml")
		if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	cfg, err := LoadPilotConfig(write(`version: 1
train: data/train.arrow
test: /abs/test.arrow
convert:
  structure: blockdiag
  blocks: 2
finetune:
  epochs: 3
baseline:
  init: mlp:4-8-3
  epochs: 5
control: false
validate:
  noise: [0.1]
`))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Train != filepath.Join(dir, "data", "train.arrow") || cfg.Test != "/abs/test.arrow" {
		t.Errorf("paths %q %q: want the train path resolved against the config's directory", cfg.Train, cfg.Test)
	}
	if cfg.Convert.Structure != "blockdiag" || cfg.Convert.Blocks != 2 || cfg.Convert.Residual != "lowrank" {
		t.Errorf("convert %+v: want blockdiag b=2 and the default residual", cfg.Convert)
	}
	if cfg.Finetune.Epochs != 3 || cfg.Baseline.Epochs != 5 || cfg.Finetune.BatchSize != DefaultFinetuneConfig().BatchSize || cfg.Control {
		t.Errorf("training %+v / %+v control %v", cfg.Finetune, cfg.Baseline, cfg.Control)
	}
	if len(cfg.Validate.Noise) != 1 || cfg.Validate.Bootstrap != validation.DefaultConfig().Bootstrap {
		t.Errorf("validate %+v", cfg.Validate)
	}

	ex, err := LoadPilotConfig(filepath.Join("..", "examples", "pilot", "pilot.yaml"))
	if err != nil {
		t.Fatalf("examples/pilot/pilot.yaml: %v", err)
	}
	if ex.Data != "digits" || ex.Convert.Structure != "monarch" || !ex.Control {
		t.Errorf("examples/pilot/pilot.yaml read as %+v", ex)
	}
	if _, err := gate.LoadPolicy(ex.Policy); err != nil {
		t.Errorf("the example's policy: %v", err)
	}

	errs := []struct {
		src  string
		line int
		want string
	}{
		{"version: 1\ndata: digits\nfinetune:\n  epoch: 3\n", 4, "finetune.epoch: unknown key (did you mean epochs?)"},
		{"version: 1\ndata: digits\nbaseline:\n  epochs: ten\n", 4, `baseline.epochs: want a whole number, got "ten"`},
		{"version: 1\ndata: mnist\n", 2, `data: "mnist": want one of digits, wine, iris`},
		{"version: 1\ndata: digits\ntrain: x.arrow\n", 2, "not both"},
		{"version: 1\nlabel: y\n", 0, "train: no data"},
		{"version: 3\ndata: digits\n", 1, "version: 3: want 1"},
	}
	for _, e := range errs {
		_, err := LoadPilotConfig(write(e.src))
		var ce *yamlstrict.ConfigError
		if !errors.As(err, &ce) || ce.Line != e.line || !strings.Contains(err.Error(), e.want) || !errors.Is(err, inputerr.ErrInput) {
			t.Errorf("%q: err = %v, want line %d and %q", e.src, err, e.line, e.want)
		}
	}
}

// TestLogitsModePilotDemo is the logits-mode pilot of the digits demo:
// the demo's baseline, candidate and control give their logits on the
// test rows as safetensors (as a PyTorch team would save them), validate
// compares the logits with the parameter counts given, and the default
// policy decides: GO or NO-GO on values, never an automatic NO-GO from a
// metric the logits mode cannot have (those rules are not applicable).
func TestLogitsModePilotDemo(t *testing.T) {
	cfg := DemoPilotConfig()
	cfg.Workdir = t.TempDir()
	res, err := Pilot(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	test := filepath.Join(cfg.Workdir, "data", "test.arrow")
	ds := mustReadData(t, test)
	logits := func(model string) (string, int64) {
		t.Helper()
		m, err := loadValModel(context.Background(), model, "", "")
		if err != nil {
			t.Fatal(err)
		}
		if err := m.prepare(ds); err != nil {
			t.Fatal(err)
		}
		z, err := m.outputsOf(ds.N)
		if err != nil {
			t.Fatal(err)
		}
		data := make([]float32, len(z))
		for i, v := range z {
			data[i] = float32(v)
		}
		path := strings.TrimSuffix(model, ".arrow") + ".logits.safetensors"
		if err := arrowio.WriteSafetensors(path, []arrowio.Tensor{{Name: "logits", Shape: []int64{int64(ds.N), int64(m.outputs)}, Data: data}}, nil); err != nil {
			t.Fatal(err)
		}
		params, _, _, _ := m.cost()
		return path, int64(params)
	}
	vcfg := validation.DefaultConfig()
	vcfg.BaselineLogits, vcfg.BaselineParams = logits(res.BaselineModel)
	vcfg.CandidateLogits, vcfg.CandidateParams = logits(filepath.Join(cfg.Workdir, "finetune", "model.arrow"))
	vcfg.ControlLogits, vcfg.ControlParams = logits(filepath.Join(cfg.Workdir, "control", "model.arrow"))
	vcfg.Data, vcfg.Out, vcfg.Bootstrap = test, filepath.Join(cfg.Workdir, "logits-validate"), 500
	if _, err := Validate(context.Background(), vcfg); err != nil {
		t.Fatal(err)
	}
	rep, err := Report(context.Background(), ReportConfig{Validation: filepath.Join(vcfg.Out, validation.FileName), Out: filepath.Join(cfg.Workdir, "logits-report")})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("logits-mode pilot: %s", rep.Why)
	if rep.Decision != gate.DecisionGo && rep.Decision != gate.DecisionNoGo {
		t.Errorf("decision %s, want GO or NO-GO", rep.Decision)
	}
	// The model files beside the logits give the same parameter counts,
	// and the weights' own metrics.
	vcfg2 := vcfg
	vcfg2.Baseline, vcfg2.Candidate, vcfg2.Control = res.BaselineModel, filepath.Join(cfg.Workdir, "finetune", "model.arrow"), filepath.Join(cfg.Workdir, "control", "model.arrow")
	vcfg2.BaselineParams, vcfg2.CandidateParams, vcfg2.ControlParams = 0, 0, 0
	vcfg2.Out = filepath.Join(cfg.Workdir, "logits-validate-models")
	beside, err := Validate(context.Background(), vcfg2)
	if err != nil {
		t.Fatal(err)
	}
	p := beside.Metrics[validation.MetricParams]
	if p.Candidate == nil || int64(*p.Candidate) != vcfg.CandidateParams || int64(*p.Baseline) != vcfg.BaselineParams {
		t.Errorf("params from the model files %s / %s, given %d / %d", fv(p.Baseline), fv(p.Candidate), vcfg.BaselineParams, vcfg.CandidateParams)
	}
	if lc := beside.Metrics[validation.MetricLayerCondition]; lc.Candidate == nil || len(beside.Layers) != 3 || beside.Metrics[validation.MetricJacobianCondition].Baseline != nil {
		t.Errorf("logits mode with model files: layer_condition %s, %d layers, jacobian %s", fv(lc.Candidate), len(beside.Layers), fv(beside.Metrics[validation.MetricJacobianCondition].Baseline))
	}
	for _, r := range rep.Rules {
		switch {
		case r.Metric == validation.MetricPerturbationSensitivityRelative:
			if r.Outcome != gate.OutcomeNotApplicable || !strings.Contains(r.Sentence, "logits mode") {
				t.Errorf("%s: %s, want not applicable in the logits mode: %s", r.Rule, r.Outcome, r.Sentence)
			}
		case r.Outcome == gate.OutcomeFail && r.Value == nil:
			t.Errorf("%s failed without a value: %s", r.Rule, r.Sentence)
		case r.Outcome == gate.OutcomeNotApplicable:
			t.Errorf("%s not applicable: %s", r.Rule, r.Sentence)
		}
	}
}

// TestExamplePilotGO runs the complete example, examples/pilot/pilot.yaml,
// as the docs show it: a Monarch + low-rank candidate on the digits data
// that the default policy passes.
func TestExamplePilotGO(t *testing.T) {
	cfg, err := LoadPilotConfig(filepath.Join("..", "examples", "pilot", "pilot.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Workdir = t.TempDir()
	res, err := Pilot(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Decision != gate.DecisionGo {
		t.Errorf("examples/pilot/pilot.yaml: %s, want the GO its comments promise: %s", res.Decision.Label(), res.Why)
	}
}
