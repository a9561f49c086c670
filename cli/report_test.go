package cli_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// validationJSON writes a crafted validation.json with the given metrics
// (each `"key": {...}`), as validate writes it, with a control model when
// control is set.
func validationJSON(t *testing.T, dir, name string, control bool, metrics ...string) string {
	t.Helper()
	ctl := ""
	if control {
		ctl = `, "control": {"path": "control/model.arrow", "sha256": "cc"}`
	}
	doc := `{
  "schema_version": 2,
  "mode": "models",
  "task": "classification",
  "n_examples": 450,
  "inputs": {
    "data": {"path": "test.arrow", "sha256": "dd"},
    "baseline": {"path": "baseline/model.arrow", "sha256": "bb"},
    "candidate": {"path": "finetune/model.arrow", "sha256": "aa"}` + ctl + `
  },
  "metrics": {
    ` + strings.Join(metrics, ",\n    ") + `
  },
  "layers": [],
  "warnings": []
}
`
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// m renders a metric: better, baseline and candidate (null for nil),
// delta = candidate - baseline, and a delta interval (null for none).
func m(key, better string, base, cand any, ci string) string {
	js := func(v any) string {
		if v == nil {
			return "null"
		}
		b, _ := json.Marshal(v)
		return string(b)
	}
	delta := "null"
	if b, ok := base.(float64); ok {
		if c, ok := cand.(float64); ok {
			delta = js(c - b)
		}
	}
	if ci == "" {
		ci = "null"
	}
	reason := ""
	if cand == nil {
		reason = `, "reason": "candidate: not finite"`
	}
	return `"` + key + `": {"better": "` + better + `", "baseline": ` + js(base) + `, "candidate": ` + js(cand) +
		`, "delta": ` + delta + `, "ci95": ` + ci + reason + `}`
}

// TestReportGate runs `strata report` on crafted validation.json x policy
// pairs and checks the decision it writes and its exit code (PRODUCT.md
// sections 5 and 6).
func TestReportGate(t *testing.T) {
	dir := t.TempDir()
	policy := func(name, rules string) string {
		path := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(path, []byte("version: 1\nrules:\n"+rules), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	margin := policy("margin", "  - {metric: accuracy, max_degradation: 0.005}\n")
	acc := func(name string, cand float64, ci string) string {
		return validationJSON(t, dir, name+".json", false, m("accuracy", "higher", 0.95, cand, ci))
	}
	pass := acc("pass", 0.949, "[-0.004, 0.002]")
	fail := acc("fail", 0.93, "[-0.03, -0.01]")
	straddle := acc("straddle", 0.948, "[-0.009, 0.004]")
	nan := validationJSON(t, dir, "nan.json", false, m("accuracy", "higher", 0.95, nil, ""))
	zero := validationJSON(t, dir, "zero.json", false,
		m("prediction_flip_rate", "lower", 0.0, 0.0, "[0, 0]"), m("params", "lower", 1000.0, 450.0, "[-550, -550]"),
		m("latency_ms", "lower", 1.0, 1.2, "[0.1, 0.3]"), m("residual_share", "reported", nil, 0.2, ""))
	zeroWorse := validationJSON(t, dir, "zero-worse.json", false, m("prediction_flip_rate", "lower", 0.0, 0.02, "[0.01, 0.03]"))
	sens := validationJSON(t, dir, "sens.json", false, m("perturbation_sensitivity", "lower", 0.5, 0.45, "[-0.07, -0.03]"))
	withControl := validationJSON(t, dir, "control.json", true,
		`"accuracy": {"better": "higher", "baseline": 0.9, "candidate": 0.95, "delta": 0.05, "ci95": [0.03, 0.07], "control": 0.951, "delta_vs_control": -0.001, "ci95_vs_control": [-0.004, 0.002]}`)
	notJSON := filepath.Join(dir, "not.json")
	os.WriteFile(notJSON, []byte("{\"schema_version\": 2,\n \"metrics\": {\n"), 0o644)
	// Files validate cannot have written: judged, each would be a GO.
	impossible := func(name, metric string) string { return validationJSON(t, dir, name+".json", false, metric) }
	acc25 := impossible("acc25", `"accuracy": {"better": "higher", "baseline": 0.95, "candidate": 2.5, "delta": 1.55, "ci95": [1.5, 1.6]}`)
	inverted := impossible("inverted", `"accuracy": {"better": "higher", "baseline": 0.95, "candidate": 0.96, "delta": 0.01, "ci95": [0.02, -0.01]}`)
	hugeDelta := impossible("huge-delta", `"accuracy": {"better": "higher", "baseline": 0.95, "candidate": 0.96, "delta": 1e308}`)
	oldVersion := filepath.Join(dir, "old-version.json")
	os.WriteFile(oldVersion, []byte(strings.Replace(string(readBytes(t, pass)), `"schema_version": 2`, `"schema_version": 1`, 1)), 0o644)
	extraKey := filepath.Join(dir, "extra-key.json")
	os.WriteFile(extraKey, []byte(strings.Replace(string(readBytes(t, pass)), `"mode": "models",`, `"mode": "models", "decision": "go",`, 1)), 0o644)

	tests := []struct {
		name       string
		validation string
		policy     string
		extra      []string
		decision   string // "" for bad input: no decision file
		code       int
		stderr     string
	}{
		{"pass at the CI bound", pass, margin, nil, "go", 0, ""},
		{"fail even at the favourable bound", fail, margin, nil, "no-go", 3, ""},
		{"straddling CI", straddle, margin, nil, "inconclusive", 4, ""},
		{"straddling CI --no-fail", straddle, margin, []string{"--no-fail"}, "inconclusive", 0, ""},
		{"fail --no-fail", fail, margin, []string{"--no-fail"}, "no-go", 0, ""},
		{"NaN candidate", nan, margin, nil, "no-go", 3, ""},
		{"missing metric", pass, policy("missing", "  - {metric: loss, max_degradation: 0.1}\n"), nil, "no-go", 3, ""},
		{"optional missing metric", pass, policy("optional", "  - {metric: accuracy, max_degradation: 0.005}\n  - {metric: loss, max_degradation: 0.1, optional: true}\n"), nil, "go", 0, ""},
		{"optional NaN metric: nothing judged", nan, policy("optional-nan", "  - {metric: accuracy, max_degradation: 0.005, optional: true}\n"), nil, "inconclusive", 4, ""},
		{"zero baseline, zero candidate", zero, policy("zero", "  - {metric: prediction_flip_rate, max_relative_change: 0.0}\n"), nil, "go", 0, ""},
		{"zero baseline, worse candidate", zeroWorse, policy("zero-worse", "  - {metric: prediction_flip_rate, max_relative_change: 1.0}\n"), nil, "no-go", 3, ""},
		{"min_value", pass, policy("min", "  - {metric: accuracy, min_value: 0.94}\n"), nil, "go", 0, ""},
		{"max_value", zero, policy("max", "  - {metric: latency_ms, max_value: 1.1}\n"), nil, "no-go", 3, ""},
		{"max_relative_change", sens, policy("rel", "  - {metric: perturbation_sensitivity, max_relative_change: 0.0}\n"), nil, "go", 0, ""},
		{"max_ratio pass", zero, policy("ratio", "  - {metric: params, max_ratio: 0.5}\n"), nil, "go", 0, ""},
		{"max_ratio fail", zero, policy("ratio-fail", "  - {metric: params, max_ratio: 0.4}\n"), nil, "no-go", 3, ""},
		{"versus control", withControl, policy("vs-control", "  - {metric: accuracy, versus: control, max_degradation: 0.005}\n"), nil, "go", 0, ""},
		{"versus control without one", pass, policy("no-control", "  - {metric: accuracy, versus: control, max_degradation: 0.005}\n"), nil, "no-go", 3, ""},
		{"fail beats inconclusive", straddle, policy("both", "  - {metric: accuracy, max_degradation: 0.005}\n  - {metric: accuracy, min_value: 0.99}\n"), nil, "no-go", 3, ""},
		{"typo'd key", pass, policy("typo", "  - metric: accuracy\n    max_degredation: 0.005\n"), nil, "", 2,
			"typo.yaml:4: rules[0].max_degredation: unknown key (did you mean max_degradation?)"},
		{"unknown metric", pass, policy("unknown", "  - {metric: accuracy, min_value: 0.9}\n  - {metric: acuracy, min_value: 0.9}\n"), nil, "", 2,
			`unknown.yaml:4: rules[1].metric: unknown metric "acuracy"`},
		{"wrong type", pass, policy("type", "  - metric: accuracy\n    min_value: high\n"), nil, "", 2, `type.yaml:4: rules[0].min_value: want a number, got "high"`},
		{"direction needed", zero, policy("direction", "  - {metric: residual_share, max_relative_change: 0.1}\n"), nil, "", 2, "direction.yaml:3: rules[0]: residual_share is \"reported\""},
		{"validation not JSON", notJSON, margin, nil, "", 2, "not valid JSON"},
		{"no fail hides no bad input", notJSON, margin, []string{"--no-fail"}, "", 2, "not valid JSON"},
		{"accuracy 2.5", acc25, margin, nil, "", 2, "metrics.accuracy.candidate 2.5: outside the range [0, 1]"},
		{"inverted interval", inverted, margin, nil, "", 2, "metrics.accuracy.ci95 [0.02, -0.01]: inverted"},
		{"delta 1e308", hugeDelta, margin, []string{"--no-fail"}, "", 2, "metrics.accuracy.delta 1e+308: want candidate - baseline"},
		{"unknown format version", oldVersion, margin, nil, "", 2, "schema_version 1: this strata reads validation.json version 2"},
		{"unknown top-level key", extraKey, margin, nil, "", 2, `unknown key "decision"`},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := filepath.Join(dir, "out", strings.ReplaceAll(tt.name, " ", "-"))
			decision := filepath.Join(dir, "decision", tt.name)
			os.MkdirAll(filepath.Dir(decision), 0o755)
			args := append([]string{"report", "--validation", tt.validation, "--policy", tt.policy, "--out", out,
				"--decision-file", decision, "--log-format", "json"}, tt.extra...)
			r := run(t, args...)
			if r.code != tt.code {
				t.Errorf("case %d: exit %d, want %d\n%s", i, r.code, tt.code, r.stderr)
			}
			if r.stdout != "" {
				t.Errorf("stdout %q, want nothing", r.stdout)
			}
			if !strings.Contains(r.stderr, tt.stderr) {
				t.Errorf("stderr %q does not contain %q", r.stderr, tt.stderr)
			}
			got, err := os.ReadFile(decision)
			switch {
			case tt.decision == "" && err == nil:
				t.Errorf("bad input wrote a decision %q", got)
			case tt.decision == "":
				if _, err := os.Stat(out); err == nil {
					t.Errorf("bad input left %s", out)
				}
			case string(got) != tt.decision+"\n":
				t.Errorf("decision file %q (%v), want %q", got, err, tt.decision)
			}
		})
	}
}

// TestReportOrchestratorFiles checks the XCom summary and the OpenMetrics
// file a pipeline reads, and --select-best with arguments after the flag.
func TestReportOrchestratorFiles(t *testing.T) {
	dir := t.TempDir()
	a := validationJSON(t, dir, "a.json", false, m("accuracy", "higher", 0.95, 0.949, "[-0.004, 0.002]"), m("params", "lower", 1000.0, 400.0, "[-600, -600]"))
	b := validationJSON(t, dir, "b.json", false, m("accuracy", "higher", 0.95, 0.951, "[-0.002, 0.004]"), m("params", "lower", 1000.0, 300.0, "[-700, -700]"))
	c := validationJSON(t, dir, "c.json", false, m("accuracy", "higher", 0.95, 0.90, "[-0.06, -0.04]"), m("params", "lower", 1000.0, 100.0, "[-900, -900]"))
	pol := filepath.Join(dir, "p.yaml")
	os.WriteFile(pol, []byte("version: 1\nrules:\n  - {metric: accuracy, max_degradation: 0.005}\n  - {metric: params, max_ratio: 0.5}\n"), 0o644)
	xcom, metrics := filepath.Join(dir, "xcom.json"), filepath.Join(dir, "metrics.txt")
	out := filepath.Join(dir, "out")
	r := run(t, "report", "--policy", pol, "--out", out, "--xcom-file", xcom, "--metrics-file", metrics, "--select-best", a, b, c)
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	var x struct {
		Decision string `json:"decision"`
		ExitCode int    `json:"exit_code"`
		Why      string `json:"why"`
		Rules    []struct {
			Outcome string `json:"outcome"`
		} `json:"rules"`
		Validation struct {
			Path string `json:"path"`
		} `json:"validation"`
	}
	if err := json.Unmarshal(readBytes(t, xcom), &x); err != nil {
		t.Fatal(err)
	}
	if x.Decision != "go" || x.ExitCode != 0 || len(x.Rules) != 2 || x.Validation.Path != b {
		t.Errorf("xcom %+v: want go, selecting %s", x, b)
	}
	om := string(readBytes(t, metrics))
	for _, want := range []string{"# TYPE strata_decision stateset\n", `strata_decision{strata_decision="go"} 1`, `strata_metric{metric="params",model="candidate"} 300`, "# EOF\n"} {
		if !strings.Contains(om, want) {
			t.Errorf("metrics file lacks %q:\n%s", want, om)
		}
	}
	if r := run(t, "report", "--policy", pol, "--out", out, a); r.code != 2 || !strings.Contains(r.stderr, "no positional arguments") {
		t.Errorf("a positional argument without --select-best: exit %d\n%s", r.code, r.stderr)
	}
}
