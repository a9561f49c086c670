package gate

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/strata-ml/strata/internal/inputerr"
	"github.com/strata-ml/strata/internal/limits"
	"github.com/strata-ml/strata/internal/provenance"
	"github.com/strata-ml/strata/internal/yamlstrict"
	"github.com/strata-ml/strata/manifests/policy"
	"github.com/strata-ml/strata/validation"
)

func TestParsePolicy(t *testing.T) {
	p, err := ParsePolicy("p.yaml", []byte(`version: 1
rules:
  - {metric: accuracy, direction: higher, max_degradation: 0.005}   # non-inferiority margin
  - {metric: perturbation_sensitivity, direction: lower, max_relative_change: 0.0}
  - {metric: params, direction: lower, max_ratio: 0.6}
  - metric: accuracy
    min_value: 0.90
  - {metric: accuracy, versus: control, max_degradation: 0.01, required: true}
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Rules) != 5 {
		t.Fatalf("%d rules, want 5", len(p.Rules))
	}
	wantLines := []int{3, 4, 5, 6, 8}
	for i, r := range p.Rules {
		if r.Line != wantLines[i] {
			t.Errorf("rule %d at line %d, want %d", i, r.Line, wantLines[i])
		}
	}
	if k, v := p.Rules[3].Bound(); k != BoundMinValue || v != 0.9 {
		t.Errorf("rule 3 bound %s %v, want min_value 0.9", k, v)
	}
	if r := p.Rules[4]; r.versus() != VersusControl || !r.Required {
		t.Errorf("rule 4: versus %s required %v", r.versus(), r.Required)
	}
	if p.Rules[0].versus() != VersusBaseline {
		t.Errorf("versus defaults to %q", p.Rules[0].versus())
	}
}

// TestParsePolicyErrors: every mistake names the file, the line and the
// key, and is bad input.
func TestParsePolicyErrors(t *testing.T) {
	tests := []struct {
		name, src string
		line      int
		want      string
	}{
		{"typo'd key", "version: 1\nrules:\n  - metric: accuracy\n    max_degredation: 0.01\n", 4,
			"rules[0].max_degredation: unknown key (did you mean max_degradation?)"},
		{"unknown top-level key", "version: 1\nrule:\n  - {metric: accuracy, min_value: 0.5}\n", 2, "rule: unknown key (did you mean rules?)"},
		{"unknown metric", "version: 1\nrules:\n  - {metric: accuracy, min_value: 0.5}\n  - {metric: acuracy, min_value: 0.5}\n", 4,
			`rules[1].metric: unknown metric "acuracy" (did you mean accuracy?)`},
		{"wrong type", "version: 1\nrules:\n  - metric: accuracy\n    max_degradation: half a point\n", 4,
			`rules[0].max_degradation: want a number, got "half a point"`},
		{"a list for a number", "version: 1\nrules:\n  - {metric: accuracy, min_value: [1, 2]}\n", 3, "rules[0].min_value: want a number, got a list"},
		{"optional control rule", "version: 1\nrules:\n  - {metric: accuracy, min_value: 0.5}\n  - metric: accuracy\n    versus: control\n    max_degradation: 0.01\n    optional: true\n", 7,
			"rules[1].optional: a versus: control rule cannot be optional"},
		{"optional and required", "version: 1\nrules:\n  - {metric: loss, max_value: 1, optional: true, required: true}\n", 3, "optional and required at once"},
		{"optional not a bool", "version: 1\nrules:\n  - {metric: accuracy, min_value: 0.5, optional: maybe}\n", 3, "rules[0].optional: want true or false"},
		{"rules not a list", "version: 1\nrules: {metric: accuracy}\n", 2, "rules: want a list, got a mapping"},
		{"non-finite bound", "version: 1\nrules:\n  - {metric: accuracy, min_value: .nan}\n", 3, "want a finite number"},
		{"two bounds", "version: 1\nrules:\n  - metric: accuracy\n    min_value: 0.5\n    max_degradation: 0.01\n", 5,
			"rules[0].max_degradation: the rule already has min_value; write one rule per bound"},
		{"no bound", "version: 1\nrules:\n  - metric: accuracy\n", 3, "rules[0]: no bound"},
		{"no metric", "version: 1\nrules:\n  - min_value: 0.5\n", 3, "rules[0]: no metric"},
		{"bad direction", "version: 1\nrules:\n  - {metric: loss, direction: down, max_degradation: 0.1}\n", 3, `rules[0].direction: "down": want higher or lower`},
		{"bad versus", "version: 1\nrules:\n  - {metric: loss, versus: dense, max_degradation: 0.1}\n", 3, `rules[0].versus: "dense": want baseline or control`},
		{"negative margin", "version: 1\nrules:\n  - {metric: loss, max_degradation: -0.1}\n", 3, "a margin is >= 0"},
		{"zero ratio", "version: 1\nrules:\n  - {metric: params, max_ratio: 0}\n", 3, "want a ratio > 0"},
		{"duplicate key", "version: 1\nrules:\n  - metric: loss\n    metric: accuracy\n    min_value: 1\n", 4, "rules[0].metric: duplicate key (first at line 3)"},
		{"version 2", "version: 2\nrules:\n  - {metric: loss, max_value: 1}\n", 1, "version: 2: want 1"},
		{"no version", "rules:\n  - {metric: loss, max_value: 1}\n", 0, "version: missing"},
		{"no rules", "version: 1\nrules: []\n", 2, "the policy has no rules"},
		{"not YAML", "version: 1\nrules:\n  - {metric: loss\n", 2, "not valid YAML"},
		{"empty", "", 0, "the file is empty"},
		{"two documents", "version: 1\nrules:\n  - {metric: loss, max_value: 1}\n---\nversion: 1\n", 4, "more than one YAML document"},
		{"too many rules", "version: 1\nrules:\n" + strings.Repeat("  - {metric: loss, max_value: 1}\n", limits.PolicyRules+1), 2,
			fmt.Sprintf("%d rules: over the limit of %s", limits.PolicyRules+1, limits.Count(limits.PolicyRules))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParsePolicy("policy.yaml", []byte(tt.src))
			var ce *yamlstrict.ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v, want a *yamlstrict.ConfigError", err)
			}
			if !errors.Is(err, inputerr.ErrInput) {
				t.Errorf("err is not ErrInput")
			}
			if ce.Line != tt.line {
				t.Errorf("line %d, want %d (%v)", ce.Line, tt.line, err)
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "policy.yaml") {
				t.Errorf("error %q does not name the file and contain %q", err, tt.want)
			}
		})
	}
}

// TestDefaultPolicy: the embedded default policy is the file in
// manifests/policy and parses.
func TestDefaultPolicy(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "manifests", "policy", "default.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != string(policy.Default) {
		t.Fatal("the embedded default policy differs from manifests/policy/default.yaml")
	}
	p, err := LoadPolicy("")
	if err != nil {
		t.Fatal(err)
	}
	if p.Input.Path != policy.DefaultName || p.Input.SHA256 != provenance.Bytes("", b).SHA256 || len(p.Rules) == 0 {
		t.Errorf("default policy input %+v with %d rules", p.Input, len(p.Rules))
	}
}

// FuzzParsePolicy: any bytes give a policy every rule of which has a
// known metric and exactly one bound, or a bad-input *yamlstrict.ConfigError
// naming the file; never a panic.
func FuzzParsePolicy(f *testing.F) {
	f.Add([]byte(policy.Default))
	for _, s := range []string{
		"version: 1\nrules:\n  - {metric: accuracy, min_value: 0.9}\n",
		"version: 1\nrules: [{metric: params, max_ratio: 0.5, versus: control, optional: true}]\n",
		"version: 1\nr: &r {metric: loss, max_value: 1}\nrules: [*r, *r]\n",
		"version: 1.5\nrules: []\n", "{", "- - - -", "rules: !!binary aGVsbG8=\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		p, err := ParsePolicy("policy.yaml", src)
		if err != nil {
			var ce *yamlstrict.ConfigError
			if !errors.As(err, &ce) || !errors.Is(err, inputerr.ErrInput) || !strings.HasPrefix(err.Error(), "policy.yaml") {
				t.Fatalf("error %v is not a bad-input ConfigError naming the file", err)
			}
			return
		}
		if p.Version != PolicyVersion || len(p.Rules) == 0 || len(p.Rules) > limits.PolicyRules {
			t.Fatalf("accepted version %d with %d rules", p.Version, len(p.Rules))
		}
		for i, r := range p.Rules {
			if kind, _ := r.Bound(); kind == "" || !slices.Contains(validation.MetricKeys, r.Metric) {
				t.Fatalf("rule %d accepted with metric %q and bound %q", i, r.Metric, kind)
			}
		}
	})
}
