package render_test

import (
	"strings"
	"testing"

	"github.com/strata-ml/strata/gate"
	"github.com/strata-ml/strata/internal/provenance"
	"github.com/strata-ml/strata/render"
	"github.com/strata-ml/strata/render/rendertest"
	"github.com/strata-ml/strata/validation"
	vt "github.com/strata-ml/strata/validation/validationtest"
)

// judged is the report of one validation judged against the default
// policy.
func judged(t *testing.T, v *validation.Result) *render.Report {
	t.Helper()
	pol, err := gate.LoadPolicy("")
	if err != nil {
		t.Fatal(err)
	}
	g, err := gate.Judge(pol.Input.Path, &pol.Policy, v)
	if err != nil {
		t.Fatal(err)
	}
	in := provenance.File{Path: "validation.json", SHA256: "abc"}
	r := &render.Report{Tool: provenance.Tool{Version: "test"}, Candidates: []gate.Candidate{gate.NewCandidate(v, in, g)},
		Metrics: render.MetricRows(v), HasControl: true, Warnings: []string{"a | warning"}}
	r.Decision, r.Why = gate.Select(r.Candidates, false)
	r.Rules = r.Candidates[0].Rules
	r.Inputs.Validations, r.Inputs.Policy = []provenance.File{in}, pol.Input
	return r
}

// TestHTML: the page of a full validation is one well-formed,
// self-contained document with the decision, every plot inline and the
// inputs.
func TestHTML(t *testing.T) {
	for _, tt := range []struct {
		name  string
		acc   float64
		label string
	}{{"go", 0.948, "GO"}, {"no-go", 0.90, "NO-GO"}} {
		t.Run(tt.name, func(t *testing.T) {
			v := vt.Full(450, tt.acc, tt.acc-0.95-0.004, tt.acc-0.95+0.004)
			r := judged(t, v)
			page, err := render.HTML(r, render.Plots(v, render.TrainLogs{}))
			if err != nil {
				t.Fatal(err)
			}
			// The training curves have no log: a figure with the reason
			// instead of an SVG.
			rendertest.CheckHTML(t, page, tt.label, []string{render.PlotSpectra, render.PlotSensitivity, render.PlotResidual, render.PlotRobustness})
			for _, want := range []string{"<title>strata pilot report: " + tt.label, "validation.json</code>", "not available: validation.json names no training log"} {
				if !strings.Contains(string(page), want) {
					t.Errorf("report.html lacks %q", want)
				}
			}
		})
	}
}

func TestMarkdown(t *testing.T) {
	v := vt.Full(450, 0.948, -0.006, 0.002)
	r := judged(t, v)
	r.Title = "my pilot"
	md := string(render.Markdown(r, render.Plots(v, render.TrainLogs{})))
	for _, want := range []string{
		"# my pilot\n", "## Decision: GO", "| **pass** | accuracy vs baseline max_degradation 0.01 |",
		"| accuracy | higher | 0.95 | 0.955 | 0.948 | -0.002 | [-0.006, +0.002] | -0.007 | [-0.011, -0.003] | +0.005 |",
		"![Singular-value spectra per layer](plot-spectra.svg)", "- Training curves: not available:",
		"- a \\| warning", "_strata test (",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report.md lacks %q:\n%s", want, md)
		}
	}
}

// TestOpenMetrics: the exposition format, and label values escaped.
func TestOpenMetrics(t *testing.T) {
	rows := render.MetricRows(vt.Full(450, 0.948, -0.006, 0.002))
	rows = append(rows, render.MetricRow{Metric: "odd \"key\"\\\n", Baseline: vt.F(1)})
	text := rendertest.CheckOpenMetrics(t, render.OpenMetrics(gate.DecisionInconclusive, map[gate.Outcome]int{gate.OutcomePass: 3, gate.OutcomeInconclusive: 1}, rows))
	for _, want := range []string{
		`strata_decision{strata_decision="inconclusive"} 1`, `strata_decision{strata_decision="go"} 0`,
		`strata_gate_rules{outcome="pass"} 3`, `strata_metric{metric="params",model="candidate"} 450`,
		`strata_metric_delta{metric="accuracy",versus="baseline",bound="ci95_low"} -0.006`,
		`strata_metric{metric="odd \"key\"\\\n",model="baseline"} 1`,
	} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("OpenMetrics text lacks %q", want)
		}
	}
}

// TestMetricRows: MetricKeys order first, any other key after by name,
// and the training effect control - baseline.
func TestMetricRows(t *testing.T) {
	v := vt.Full(450, 0.948, -0.006, 0.002)
	v.Metrics["zz_custom"] = vt.Metric(validation.BetterLower, 1, 2, nil)
	v.Metrics["aa_custom"] = vt.Metric(validation.BetterLower, 1, 2, nil)
	var keys []string
	for _, r := range render.MetricRows(v) {
		keys = append(keys, r.Metric)
	}
	want := "accuracy loss perturbation_sensitivity perturbation_sensitivity_relative params aa_custom zz_custom"
	if got := strings.Join(keys, " "); got != want {
		t.Errorf("rows %s, want %s", got, want)
	}
	acc := render.MetricRows(v)[0]
	base, ctl := 0.95, 0.955
	if acc.TrainingEffect == nil || float64(*acc.TrainingEffect) != ctl-base {
		t.Errorf("training effect %v, want control - baseline", acc.TrainingEffect)
	}
}

// TestPlots: a full validation draws every plot but the training curves
// (no log); a logits-mode validation draws none and says why. Nothing
// panics.
func TestPlots(t *testing.T) {
	for _, p := range render.Plots(vt.Full(450, 0.948, -0.006, 0.002), render.TrainLogs{}) {
		if drawn := p.SVG != nil; drawn != (p.ID != render.PlotTraining) || (!drawn && p.Missing == "") {
			t.Errorf("%s: drawn %v, missing %q", p.ID, drawn, p.Missing)
		}
	}
	logits := vt.Result(false, map[string]*validation.Metric{validation.MetricAccuracy: vt.Metric(validation.BetterHigher, 0.9, 0.9, nil)})
	logits.Mode, logits.LayersReason = validation.ModeLogits, "logits mode: no model to run"
	ps := render.Plots(logits, render.TrainLogs{})
	if len(ps) != len(render.PlotIDs) {
		t.Fatalf("%d plots, want %d", len(ps), len(render.PlotIDs))
	}
	for i, p := range ps {
		if p.ID != render.PlotIDs[i] || p.SVG != nil || p.Missing == "" {
			t.Errorf("plot %d: %s drawn %v, missing %q", i, p.ID, p.SVG != nil, p.Missing)
		}
	}
}

func TestSweepMarkdown(t *testing.T) {
	runs := []*validation.Result{vt.Full(450, 0.948, -0.006, 0.002), vt.Full(460, 0.946, -0.008, 0.0)}
	s := &render.Sweep{
		Seeds: []uint64{0, 1}, LRs: []float64{1e-3, 1e-2}, Data: "embedded iris data", Baseline: "dense mlp:4-32-3 trained per seed", Policy: "default.yaml",
		Candidates: []render.SweepCandidate{{Name: "monarch-b4", Structure: "monarch on 3 of 3 layers", Decisions: []gate.Decision{gate.DecisionGo, gate.DecisionNoGo},
			Decision: gate.DecisionNoGo, Metrics: validation.AggregateSeeds(runs)}},
	}
	md := string(render.SweepMarkdown(s))
	for _, want := range []string{
		"1 candidates x 2 seeds (0, 1), learning rates 0.001, 0.01. Data: embedded iris data. Baseline: dense mlp:4-32-3 trained per seed. Policy: default.yaml.",
		"| monarch-b4 | monarch on 3 of 3 layers | GO NO-GO | 0.455 ± 0.0071 | -0.003 ± 0.0014 [0 / 0] | - | 0.9 ± 0 [2 / 0] | - |",
		"| accuracy | 0.95 ± 0 | 0.947 ± 0.0014 | -0.003 ± 0.0014 [0 / 0] | 0.004 | 0.955 ± 0 | -0.008 ± 0.0014 [0 / 2] |",
		"## monarch-b4\n\nmonarch on 3 of 3 layers; decision NO-GO.",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("sweep.md lacks %q:\n%s", want, md)
		}
	}
}

// TestRegressions: a metric got worse when its whole interval lies on the
// worse side of 0 (a count's interval is its delta), or, without an
// interval, when its value is worse; against the baseline and the control
// alike, with the rules that cover it, whether any does or not.
func TestRegressions(t *testing.T) {
	ms := map[string]*validation.Metric{
		validation.MetricAccuracy:          vt.WithControl(vt.Metric(validation.BetterHigher, 0.95, 0.93, vt.CI(-0.03, -0.01)), 0.92, vt.CI(-0.005, 0.03)),
		validation.MetricLoss:              vt.Metric(validation.BetterLower, 0.2, 0.25, vt.CI(-0.01, 0.1)),
		validation.MetricJacobianCondition: vt.Metric(validation.BetterLower, 10, 17.5, vt.CI(5, 9)),
		validation.MetricLayerCondition:    vt.Metric(validation.BetterLower, 500, 9000, nil),
		validation.MetricParams:            vt.Metric(validation.BetterLower, 1000, 450, vt.CI(-550, -550)),
		validation.MetricBytes:             vt.Metric(validation.BetterLower, 4000, 4400, vt.CI(400, 400)),
		validation.MetricResidualShare:     vt.Metric(validation.BetterReported, 0, 0.3, nil),
	}
	ms[validation.MetricLoss].WithControl = true
	r := judged(t, vt.Result(true, ms))
	r.Regressions = render.Regressions(r.Metrics, r.Rules)
	var got []string
	for _, g := range r.Regressions {
		got = append(got, g.Metric+"/"+g.Versus+"/"+g.Basis)
	}
	want := []string{"accuracy/baseline/ci95", "jacobian_condition/baseline/ci95", "layer_condition/baseline/point", "bytes/baseline/ci95"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("regressions %v, want %v", got, want)
	}
	acc, jac := r.Regressions[0], r.Regressions[1]
	if len(acc.Rules) != 1 || !strings.Contains(acc.Sentence(), "judged by accuracy vs baseline max_degradation 0.01") {
		t.Errorf("accuracy: rules %v, sentence %q", acc.Rules, acc.Sentence())
	}
	if s := jac.Sentence(); len(jac.Rules) != 0 || !strings.Contains(s, "10 -> 17.5 (+75%), 95% CI of the delta [+5, +9]; lower is better; no rule covers it") {
		t.Errorf("jacobian_condition: %q", s)
	}
	md := string(render.Markdown(r, nil))
	page, err := render.HTML(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"## Regressions\n\n4 metrics got worse", "- **layer_condition vs baseline: 500 -> 9000 (+1700%), no interval (the point value)"} {
		if !strings.Contains(md, want) {
			t.Errorf("report.md lacks %q", want)
		}
	}
	if !strings.Contains(string(page), `<section id="regressions" class="regressions">`) || !strings.Contains(string(page), "Regressions: 4 metrics got worse") {
		t.Error("report.html lacks the regressions section")
	}
}
