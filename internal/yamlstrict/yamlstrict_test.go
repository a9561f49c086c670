package yamlstrict

import (
	"errors"
	"strings"
	"testing"

	"github.com/strata-ml/strata/internal/inputerr"
)

type inner struct {
	Rate  float64 `yaml:"rate"`
	Steps int     `yaml:"steps"`
}

type doc struct {
	Name   string   `yaml:"name"`
	Seeds  []uint64 `yaml:"seeds"`
	Inner  inner    `yaml:"inner"`
	Shared inner    `yaml:",inline"`
	Hidden string   `yaml:"-"`
	On     *bool    `yaml:"on"`
}

// TestDecode: keys present overwrite the defaults, absent keys keep them,
// inline structs add their keys, and the line of every key is returned.
func TestDecode(t *testing.T) {
	v := doc{Name: "default", Inner: inner{Rate: 0.5, Steps: 7}, Hidden: "kept"}
	lines, err := Decode("d.yaml", []byte("name: x\nseeds: [1, 2]\ninner:\n  steps: 3\nrate: 0.25\non: true\n"), &v)
	if err != nil {
		t.Fatal(err)
	}
	if v.Name != "x" || len(v.Seeds) != 2 || v.Inner.Steps != 3 || v.Inner.Rate != 0.5 || v.Shared.Rate != 0.25 || v.Hidden != "kept" || v.On == nil || !*v.On {
		t.Errorf("decoded %+v", v)
	}
	if lines["inner.steps"] != 4 || lines["seeds[1]"] != 2 || lines["rate"] != 5 {
		t.Errorf("lines %v", lines)
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name, src string
		line      int
		key, want string
	}{
		{"typo", "nmae: x\n", 1, "nmae", "unknown key (did you mean name?)"},
		{"far from every key", "colour: red\n", 1, "colour", "unknown key (want one of inner, name, on, rate, seeds, steps)"},
		{"hidden", "hidden: x\n", 1, "hidden", "unknown key"},
		{"type", "inner:\n  steps: many\n", 2, "inner.steps", `want a whole number, got "many"`},
		{"negative seed", "seeds: [-1]\n", 1, "seeds[0]", "want a non-negative whole number"},
		{"mapping for a list", "seeds: {a: 1}\n", 1, "seeds", "want a list, got a mapping"},
		{"duplicate", "name: a\nname: b\n", 2, "name", "duplicate key (first at line 1)"},
		{"infinite", "rate: .inf\n", 1, "rate", "want a finite number"},
		{"fraction for a whole number", "inner:\n  steps: 2.5\n", 2, "inner.steps", `want a whole number, got "2.5"`},
		{"whole number overflows", "inner:\n  steps: 9223372036854775808\n", 2, "inner.steps", "want a whole number"},
		{"float overflows a whole number", "inner:\n  steps: 1e300\n", 2, "inner.steps", "want a whole number"},
		{"fraction for a seed", "seeds: [1.5]\n", 1, "seeds[0]", "want a non-negative whole number"},
		{"null scalar", "name:\n", 1, "name", "got nothing (null)"},
		{"two documents", "name: a\n---\nname: b\n", 2, "", "more than one YAML document"},
		{"empty", "", 0, "", "the file is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var v doc
			_, err := Decode("d.yaml", []byte(tt.src), &v)
			var ce *ConfigError
			if !errors.As(err, &ce) || !errors.Is(err, inputerr.ErrInput) {
				t.Fatalf("err %v: want a *ConfigError that is bad input", err)
			}
			if ce.Line != tt.line || ce.Key != tt.key || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "d.yaml") {
				t.Errorf("got %q (line %d, key %q), want line %d, key %q, %q", err, ce.Line, ce.Key, tt.line, tt.key, tt.want)
			}
		})
	}
}
