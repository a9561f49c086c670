package gate

import (
	"fmt"
	"slices"
	"strings"

	"github.com/strata-ml/strata/internal/inputfile"
	"github.com/strata-ml/strata/internal/limits"
	"github.com/strata-ml/strata/internal/provenance"
	"github.com/strata-ml/strata/internal/yamlstrict"
	"github.com/strata-ml/strata/manifests/policy"
	"github.com/strata-ml/strata/validation"
)

// PolicyVersion is the only policy format version there is.
const PolicyVersion = 1

// The bounds a gate rule can set (docs/GATE.md).
const (
	BoundMinValue          = "min_value"
	BoundMaxValue          = "max_value"
	BoundMaxDegradation    = "max_degradation"
	BoundMaxRelativeChange = "max_relative_change"
	BoundMaxRatio          = "max_ratio"
)

// What a rule judges the candidate against.
const (
	VersusBaseline = "baseline"
	VersusControl  = "control"
)

// Policy is a gate policy (docs/GATE.md):
//
//	version: 1
//	rules:
//	  - {metric: accuracy, direction: higher, max_degradation: 0.005}
//	  - {metric: params, max_ratio: 0.6}
type Policy struct {
	Version int    `yaml:"version" json:"version"`
	Rules   []Rule `yaml:"rules" json:"rules"`
}

// Rule is one rule of a policy: a metric of validation.json and exactly
// one bound on it.
type Rule struct {
	// Metric is a key of validation.json's metrics (validation.MetricKeys).
	Metric string `yaml:"metric" json:"metric"`
	// Direction is validation.BetterHigher or validation.BetterLower; empty takes the metric's
	// `better` from validation.json.
	Direction string `yaml:"direction" json:"direction,omitempty"`
	// The bounds; a rule sets exactly one. MinValue and MaxValue bound
	// the candidate's value; the others compare it with the reference
	// (Versus).
	MinValue          *float64 `yaml:"min_value" json:"min_value,omitempty"`
	MaxValue          *float64 `yaml:"max_value" json:"max_value,omitempty"`
	MaxDegradation    *float64 `yaml:"max_degradation" json:"max_degradation,omitempty"`
	MaxRelativeChange *float64 `yaml:"max_relative_change" json:"max_relative_change,omitempty"`
	MaxRatio          *float64 `yaml:"max_ratio" json:"max_ratio,omitempty"`
	// Optional rules whose metric is missing, NaN or infinite are
	// skipped instead of failing. A versus: control rule cannot be
	// optional: a run without a control fails it.
	Optional bool `yaml:"optional" json:"optional,omitempty"`
	// Required rules fail when their metric cannot exist for the inputs
	// (validation.Metric.NotApplicable, e.g. perturbation sensitivity in
	// the logits mode) instead of being not applicable.
	Required bool `yaml:"required" json:"required,omitempty"`
	// Versus is VersusBaseline (also when empty) or VersusControl.
	Versus string `yaml:"versus" json:"versus,omitempty"`
	// Line is the rule's line in the policy file (0 when built in Go).
	Line int `yaml:"-" json:"line,omitempty"`
}

// Bound returns the rule's bound and its limit. A rule from ParsePolicy
// has exactly one; otherwise the first set one is returned ("" when none
// is).
func (r Rule) Bound() (kind string, limit float64) {
	for _, b := range r.bounds() {
		if b.v != nil {
			return b.kind, *b.v
		}
	}
	return "", 0
}

type ruleBound struct {
	kind string
	v    *float64
}

func (r Rule) bounds() []ruleBound {
	return []ruleBound{
		{BoundMinValue, r.MinValue}, {BoundMaxValue, r.MaxValue}, {BoundMaxDegradation, r.MaxDegradation},
		{BoundMaxRelativeChange, r.MaxRelativeChange}, {BoundMaxRatio, r.MaxRatio},
	}
}

// versus returns the rule's reference, VersusBaseline when unset.
func (r Rule) versus() string {
	if r.Versus == "" {
		return VersusBaseline
	}
	return r.Versus
}

// LoadedPolicy is a policy with the file it came from.
type LoadedPolicy struct {
	Policy
	// Input is the file and its hash; for the embedded default its Path
	// is policy.DefaultName.
	Input provenance.File
}

// LoadPolicy reads and checks the policy file at path, or the embedded
// default policy (manifests/policy/default.yaml) when path is empty.
// Problems are *yamlstrict.ConfigError (bad input).
func LoadPolicy(path string) (*LoadedPolicy, error) {
	name, src := policy.DefaultName, policy.Default
	if path != "" {
		b, err := inputfile.ReadFile(path, limits.ConfigBytes, "config file")
		if err != nil {
			return nil, fmt.Errorf("policy: %w", err)
		}
		name, src = path, b
	}
	p, err := ParsePolicy(name, src)
	if err != nil {
		return nil, err
	}
	return &LoadedPolicy{Policy: *p, Input: provenance.Bytes(name, src)}, nil
}

// ParsePolicy decodes and checks a policy. name is the file name errors
// cite. Every problem is a *yamlstrict.ConfigError naming the line and the key: an
// unknown key, a value of the wrong type, an unknown metric, direction or
// versus, a rule with no bound or more than one, a negative margin or
// ratio, a version other than 1, no rules or more than limits.PolicyRules.
func ParsePolicy(name string, src []byte) (*Policy, error) {
	var p Policy
	lines, err := yamlstrict.Decode(name, src, &p)
	if err != nil {
		return nil, err
	}
	bad := func(key, format string, args ...any) error {
		return &yamlstrict.ConfigError{File: name, Line: lines[key], Key: key, Err: fmt.Errorf(format, args...)}
	}
	switch p.Version {
	case PolicyVersion:
	case 0:
		return nil, bad("version", "missing or 0; want version: %d", PolicyVersion)
	default:
		return nil, bad("version", "%d: want %d", p.Version, PolicyVersion)
	}
	if len(p.Rules) == 0 {
		return nil, bad("rules", "the policy has no rules")
	}
	if len(p.Rules) > limits.PolicyRules {
		return nil, bad("rules", "%d rules: over the limit of %s (docs/FORMATS.md, Input limits)", len(p.Rules), limits.Count(limits.PolicyRules))
	}
	for i := range p.Rules {
		r := &p.Rules[i]
		rule := fmt.Sprintf("rules[%d]", i)
		r.Line = lines[rule]
		key := func(k string) string {
			if _, ok := lines[rule+"."+k]; ok {
				return rule + "." + k
			}
			return rule
		}
		switch {
		case r.Metric == "":
			return nil, bad(rule, "no metric; every rule names one of %s", strings.Join(validation.MetricKeys, ", "))
		case !slices.Contains(validation.MetricKeys, r.Metric):
			hint := ""
			if s := yamlstrict.Closest(r.Metric, validation.MetricKeys); s != "" {
				hint = fmt.Sprintf(" (did you mean %s?)", s)
			}
			return nil, bad(key("metric"), "unknown metric %q%s; want one of %s", r.Metric, hint, strings.Join(validation.MetricKeys, ", "))
		}
		switch r.Direction {
		case "", validation.BetterHigher, validation.BetterLower:
		default:
			return nil, bad(key("direction"), "%q: want %s or %s", r.Direction, validation.BetterHigher, validation.BetterLower)
		}
		switch r.Versus {
		case "", VersusBaseline, VersusControl:
		default:
			return nil, bad(key("versus"), "%q: want %s or %s", r.Versus, VersusBaseline, VersusControl)
		}
		switch {
		case r.Optional && r.versus() == VersusControl:
			return nil, bad(key("optional"), "a versus: control rule cannot be optional: without a control it must fail, not pass silently; "+
				"run validate with --control (strata pilot and sweep do), or remove the rule")
		case r.Optional && r.Required:
			return nil, bad(key("required"), "the rule is optional and required at once; keep one")
		}
		var set []string
		for _, b := range r.bounds() {
			if b.v != nil {
				set = append(set, b.kind)
			}
		}
		switch len(set) {
		case 0:
			return nil, bad(rule, "no bound; set one of %s, %s, %s, %s or %s",
				BoundMinValue, BoundMaxValue, BoundMaxDegradation, BoundMaxRelativeChange, BoundMaxRatio)
		case 1:
		default:
			return nil, bad(key(set[1]), "the rule already has %s; write one rule per bound", set[0])
		}
		kind, limit := r.Bound()
		switch {
		case kind == BoundMaxDegradation && limit < 0:
			return nil, bad(key(kind), "%v: a margin is >= 0 (0: no degradation at all)", limit)
		case kind == BoundMaxRatio && !(limit > 0):
			return nil, bad(key(kind), "%v: want a ratio > 0", limit)
		case kind == BoundMaxRelativeChange && !(limit > -1):
			return nil, bad(key(kind), "%v: want a relative change > -1 (-1 would ask for a change of -100%%)", limit)
		}
	}
	return &p, nil
}
