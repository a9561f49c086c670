package validation

import (
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-ml/strata/internal/inputerr"
	"github.com/strata-ml/strata/internal/provenance"
)

func fp(v float64) *NullableFloat { f := NullableFloat(v); return &f }

func TestNullableFloatJSON(t *testing.T) {
	tests := []struct {
		in   float64
		want string
	}{
		{1.5, "1.5"}, {0, "0"}, {-2e-300, "-2e-300"}, {math.NaN(), "null"}, {math.Inf(1), "null"}, {math.Inf(-1), "null"},
	}
	for _, tt := range tests {
		b, err := json.Marshal(NullableFloat(tt.in))
		if err != nil || string(b) != tt.want {
			t.Errorf("Marshal(%v) = %s, %v; want %s", tt.in, b, err, tt.want)
		}
		var back NullableFloat
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		if isFinite(tt.in) && float64(back) != tt.in || !isFinite(tt.in) && !math.IsNaN(float64(back)) {
			t.Errorf("round trip of %v: got %v", tt.in, back)
		}
	}
	if Num(math.Inf(1)) != nil || Num(math.NaN()) != nil || *Num(3) != 3 {
		t.Error("Num must map non-finite values to nil and keep finite ones")
	}
	if Floats(nil) != nil || len(Floats([]float64{1, 2})) != 2 {
		t.Error("Floats")
	}
}

// TestMetricControlFields: with a control the control fields are present
// (null when not computed); without one they are left out.
func TestMetricControlFields(t *testing.T) {
	m := Metric{Better: BetterHigher, Baseline: fp(1), Candidate: fp(2), Delta: fp(1)}
	b, _ := json.Marshal(m)
	if strings.Contains(string(b), "control") {
		t.Errorf("without a control: %s", b)
	}
	m.WithControl = true
	b, _ = json.Marshal(m)
	for _, k := range []string{`"control":null`, `"delta_vs_control":null`, `"relative_delta_vs_control":null`, `"ci95_vs_control":null`} {
		if !strings.Contains(string(b), k) {
			t.Errorf("with a control, %s missing from %s", k, b)
		}
	}
}

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestRead(t *testing.T) {
	good := `{"schema_version": 2, "mode": "models", "metrics": {"accuracy": {"better": "higher", "baseline": 0.9, "candidate": 0.91}, "loss": null}}`
	path := writeFile(t, "validation.json", good)
	v, in, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := provenance.Bytes(path, []byte(good)); in != want {
		t.Errorf("input %+v, want %+v", in, want)
	}
	if _, ok := v.Metrics["loss"]; ok || *v.Metrics["accuracy"].Candidate != 0.91 {
		t.Errorf("metrics %v: a null metric reads as missing", v.Metrics)
	}
	if _, _, err := Read(filepath.Join(t.TempDir(), "missing.json")); !errors.Is(err, inputerr.ErrInput) {
		t.Errorf("a missing file: %v, want bad input", err)
	}
}

// TestParseImpossible: a validation.json that Validate cannot have
// written is bad input naming the field, never judged.
func TestParseImpossible(t *testing.T) {
	doc := func(metric string) string {
		return `{"schema_version": 2, "mode": "models", "task": "classification", "metrics": {` + metric + `}}`
	}
	acc := func(fields string) string {
		return doc(`"accuracy": {"better": "higher", "baseline": 0.9, "candidate": 0.91` + fields + `}`)
	}
	tests := []struct {
		name, body, want string
	}{
		{"syntax", "{\n\"schema_version\": 2,\n]", "validation.json:3: not valid JSON"},
		{"type", "{\n\"schema_version\": \"one\"}", `validation.json:2: schema_version: want a number, got a JSON string`},
		{"an older version", `{"schema_version": 1, "metrics": {"accuracy": {}}}`, "schema_version 1: this strata reads validation.json version 2"},
		{"a newer version", `{"schema_version": 3, "metrics": {"accuracy": {}}}`, "schema_version 3"},
		{"no metrics", `{"schema_version": 2, "mode": "models"}`, "no metrics"},
		{"unknown top-level key", `{"schema_version": 2, "mode": "models", "verdict": "go", "metrics": {}}`, `unknown key "verdict"`},
		{"unknown metric field", acc(`, "confidence": 0.99`), `unknown key "confidence"`},
		{"two documents", acc(``) + ` {}`, "more than one JSON value"},
		{"unknown metric", doc(`"accuracy": {"better": "higher"}, "acuracy": {"better": "higher"}`), "metrics.acuracy: unknown metric"},
		{"unknown mode", `{"schema_version": 2, "mode": "remote", "metrics": {"accuracy": {"better": "higher"}}}`, `mode "remote"`},
		{"unknown better", doc(`"accuracy": {"better": "up"}`), `metrics.accuracy.better "up"`},
		{"accuracy 2.5", doc(`"accuracy": {"better": "higher", "baseline": 0.9, "candidate": 2.5, "delta": 1.6}`), "metrics.accuracy.candidate 2.5: outside the range [0, 1]"},
		{"condition below 1", doc(`"jacobian_condition": {"better": "lower", "baseline": 0.5, "candidate": 3}`), "metrics.jacobian_condition.baseline 0.5"},
		{"negative params", doc(`"params": {"better": "lower", "baseline": -4, "candidate": 3}`), "metrics.params.baseline -4"},
		{"delta of 1e308", acc(`, "delta": 1e308`), "metrics.accuracy.delta 1e+308: want candidate - baseline"},
		{"delta without a candidate", doc(`"loss": {"better": "lower", "baseline": 0.3, "delta": -0.1}`), "a delta needs both"},
		{"inverted interval", acc(`, "delta": 0.01, "ci95": [0.03, -0.01]`), "metrics.accuracy.ci95 [0.03, -0.01]: inverted"},
		{"half-null interval", acc(`, "delta": 0.01, "ci95": [null, 0.02]`), "one end is null"},
		{"interval beyond the range", acc(`, "delta": 0.01, "ci95": [-0.5, 1.5]`), "cannot be there"},
		{"interval without a delta", acc(`, "ci95": [-0.01, 0.02]`), "metrics.accuracy.delta is null but its interval"},
		{"wrong relative delta", doc(`"loss": {"better": "lower", "baseline": 0.5, "candidate": 0.4, "delta": -0.1, "relative_delta": 0.2}`), "relative_delta 0.2"},
		{"p-value above 1", acc(`, "delta": 0.01, "p_value": 1.5`), "metrics.accuracy.p_value 1.5"},
		{"bad part", doc(`"loss": {"better": "lower", "parts": [{"better": "sideways"}]}`), "metrics.loss.parts[0].better"},
		{"control delta", doc(`"loss": {"better": "lower", "baseline": 0.5, "candidate": 0.4, "control": 0.45, "delta_vs_control": 3}`), "metrics.loss.delta_vs_control 3: want candidate - control"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := Read(writeFile(t, "validation.json", tt.body))
			if !errors.Is(err, inputerr.ErrInput) || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "validation.json") {
				t.Errorf("got %v, want bad input naming the file and containing %q", err, tt.want)
			}
		})
	}
}

// FuzzParse: no input makes Parse panic, and what it accepts survives a
// round trip through the writer's encoding.
func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"schema_version": 2, "mode": "models", "metrics": {"accuracy": {"better": "higher", "baseline": 0.9, "candidate": 0.91, "delta": 0.01, "ci95": [-0.01, 0.03]}}}`))
	f.Add([]byte(`{"schema_version": 2, "mode": "logits", "task": "regression", "metrics": {"loss": {"better": "lower", "baseline": 0.3, "candidate": 0.2, "delta": -0.1, "parts": [{"name": "x", "better": "lower"}]}}}`))
	f.Add([]byte(`{"schema_version": 2, "metrics": {"accuracy": null}}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := Parse(b, "fuzz.json")
		if err != nil {
			if !errors.Is(err, inputerr.ErrInput) {
				t.Fatalf("error %v is not bad input", err)
			}
			return
		}
		out, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("marshal what Parse accepted: %v", err)
		}
		if _, err := Parse(out, "again.json"); err != nil {
			t.Fatalf("Parse refuses its own output: %v\n%s", err, out)
		}
	})
}

func TestDescribe(t *testing.T) {
	v := &Result{
		Layers: []Layer{
			{Name: "0", Family: "monarch", Structure: "monarch b=4 r=4 + lowrank r=4"},
			{Name: "2", Family: "dense"},
			{Name: "4", Family: "monarch", Structure: "monarch b=2 r=1 + lowrank r=4"},
		},
		Metrics: map[string]*Metric{MetricParams: {Baseline: fp(1000), Candidate: fp(550)}},
	}
	sum, detail := v.Describe()
	if want := "monarch + lowrank residual on 2 of 3 layers, 55% of the baseline's parameters"; sum != want {
		t.Errorf("summary %q, want %q", sum, want)
	}
	if want := "0: monarch b=4 r=4 + lowrank r=4; 2: dense; 4: monarch b=2 r=1 + lowrank r=4"; detail != want {
		t.Errorf("detail %q, want %q", detail, want)
	}
	if s, _ := (&Result{Mode: ModeLogits}).Describe(); s != "logits computed elsewhere" {
		t.Errorf("logits mode: %q", s)
	}
}

// TestAggregateSeeds checks the aggregation over three seeds against
// values worked out by hand: mean, sample standard deviation, ratios, the
// mean interval half width (exact metrics have none) and the seeds whose
// interval excludes 0 either way.
func TestAggregateSeeds(t *testing.T) {
	run := func(base, cand, lo, hi float64) *Result {
		d := cand - base
		return &Result{Metrics: map[string]*Metric{
			MetricAccuracy: {Better: BetterHigher, Baseline: fp(base), Candidate: fp(cand), Delta: fp(d),
				CI95: &Interval{NullableFloat(lo), NullableFloat(hi)}, CIReason: "paired bootstrap"},
			MetricParams: {Better: BetterLower, Baseline: fp(100), Candidate: fp(50), Delta: fp(-50),
				CI95: &Interval{-50, -50}, CIReason: ExactCIPrefix + "a count, no sampling"},
		}}
	}
	aggs := AggregateSeeds([]*Result{run(0.9, 0.92, 0.01, 0.03), run(0.9, 0.89, -0.02, 0.0), run(0.8, 0.8, -0.01, 0.01)})
	acc := aggs.Get(MetricAccuracy)
	if acc == nil || acc.Runs != 3 {
		t.Fatalf("accuracy aggregate %+v", acc)
	}
	const tol = 1e-12
	close := func(name string, got NullableFloat, want float64) {
		t.Helper()
		if math.Abs(float64(got)-want) > tol {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	close("baseline mean", acc.Baseline.Mean, (0.9+0.9+0.8)/3)
	close("delta mean", acc.Delta.Mean, (0.02-0.01+0)/3)
	// Sample sd of the deltas 0.02, -0.01, 0: mean 1/300, sum of squares
	// (0.02-m)^2 + (-0.01-m)^2 + m^2.
	m := 0.01 / 3
	close("delta sd", *acc.Delta.SD, math.Sqrt(((0.02-m)*(0.02-m)+(-0.01-m)*(-0.01-m)+m*m)/2))
	close("delta min", acc.Delta.Min, -0.01)
	close("ratio mean", acc.Ratio.Mean, (0.92/0.9+0.89/0.9+1)/3)
	close("ci half width", *acc.CIHalfWidth, (0.01+0.01+0.01)/3)
	if acc.BetterRuns != 1 || acc.WorseRuns != 0 {
		t.Errorf("better/worse runs %d/%d, want 1/0 (only the first interval excludes 0)", acc.BetterRuns, acc.WorseRuns)
	}
	params := aggs.Get(MetricParams)
	if params.CIHalfWidth != nil || params.BetterRuns != 3 || params.Delta.SD == nil || *params.Delta.SD != 0 {
		t.Errorf("params aggregate %+v: an exact metric has no half width; fewer parameters is better on every seed", params)
	}
	if aggs.Get("flops") != nil {
		t.Error("a metric no run has must not be aggregated")
	}
}

func TestConfigCheck(t *testing.T) {
	ok := DefaultConfig()
	ok.Baseline, ok.Candidate, ok.Data, ok.Out = "b.arrow", "c.arrow", "d.arrow", "out"
	if err := ok.Check(); err != nil {
		t.Fatalf("a complete config: %v", err)
	}
	tests := []struct {
		name string
		edit func(c *Config)
		want string
	}{
		{"half the logits", func(c *Config) { c.BaselineLogits = "l.arrow" }, "logits mode needs baseline_logits and candidate_logits"},
		{"params and a model", func(c *Config) { c.BaselineLogits, c.CandidateLogits, c.CandidateParams = "b.arrow", "c.arrow", 5 }, "keep one"},
		{"negative params", func(c *Config) {
			c.Candidate = ""
			c.BaselineLogits, c.CandidateLogits, c.CandidateParams = "b.arrow", "c.arrow", -5
		}, "want a count"},
		{"no candidate", func(c *Config) { c.Candidate = "" }, "baseline and candidate are required"},
		{"no data", func(c *Config) { c.Data = "" }, "data is required"},
		{"task with models", func(c *Config) { c.Task = "regression" }, "task applies to the logits mode and ONNX models only"},
		{"noise", func(c *Config) { c.Noise = []float64{0.1, 0.1} }, "distinct positive levels"},
		{"eps", func(c *Config) { c.RobustnessEps = math.Inf(1) }, "robustness_eps +Inf"},
		{"spike window", func(c *Config) { c.SpikeWindow = 4 }, "spike_window 4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			c.Noise = append([]float64(nil), ok.Noise...)
			tt.edit(&c)
			err := c.Check()
			if !errors.Is(err, inputerr.ErrInput) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want bad input containing %q", err, tt.want)
			}
		})
	}
}
