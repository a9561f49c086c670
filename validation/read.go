package validation

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"slices"
	"strings"

	"github.com/strata-ml/strata/compute"
	"github.com/strata-ml/strata/internal/inputerr"
	"github.com/strata-ml/strata/internal/inputfile"
	"github.com/strata-ml/strata/internal/limits"
	"github.com/strata-ml/strata/internal/provenance"
)

// Read reads a validation.json with its hash (see Parse). A file that does
// not read is bad input too.
func Read(path string) (*Result, provenance.File, error) {
	b, err := inputfile.ReadFile(path, limits.JSONBytes, "JSON file")
	if err != nil {
		return nil, provenance.File{}, fmt.Errorf("report: %w", err)
	}
	v, err := Parse(b, path)
	if err != nil {
		return nil, provenance.File{}, err
	}
	return v, provenance.Bytes(path, b), nil
}

// Parse decodes a validation.json and checks that it could have been
// written by Validate: JSON of the schema with no unknown key at any
// level, this SchemaVersion, a known mode and task, at least one metric,
// every metric key one of MetricKeys, and every value possible (see
// Check). name is the file errors cite. Every problem is bad input
// (inputerr.ErrInput) naming the file, the field and what was expected;
// a metric given as null reads as missing.
func Parse(b []byte, name string) (*Result, error) {
	var v Result
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	err := dec.Decode(&v)
	if err == nil {
		if _, err2 := dec.Token(); err2 != io.EOF {
			return nil, inputerr.Errorf("%s: more than one JSON value", name)
		}
	}
	if err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			line := 1 + bytes.Count(b[:min(int(se.Offset), len(b))], []byte("\n"))
			return nil, inputerr.Errorf("%s:%d: not valid JSON: %v", name, line, err)
		case errors.As(err, &te):
			line := 1 + bytes.Count(b[:min(int(te.Offset), len(b))], []byte("\n"))
			return nil, inputerr.Errorf("%s:%d: %s: want %s, got a JSON %s", name, line, te.Field, jsonKind(te.Type), te.Value)
		case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
			return nil, inputerr.Errorf("%s: not valid JSON: the file ends inside a value (truncated?)", name)
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			line := 1 + bytes.Count(b[:min(int(dec.InputOffset()), len(b))], []byte("\n"))
			field := strings.TrimPrefix(err.Error(), "json: unknown field ")
			return nil, inputerr.Errorf("%s:%d: unknown key %s: not a field of validation.json version %d", name, line, field, SchemaVersion)
		}
		return nil, inputerr.Errorf("%s: %v", name, err)
	}
	switch {
	case v.SchemaVersion != SchemaVersion:
		return nil, inputerr.Errorf("%s: schema_version %d: this strata reads validation.json version %d (is it a validation.json? one of an older strata: run validate again)",
			name, v.SchemaVersion, SchemaVersion)
	case len(v.Metrics) == 0:
		return nil, inputerr.Errorf("%s: no metrics", name)
	}
	for k, m := range v.Metrics {
		if m == nil {
			delete(v.Metrics, k) // "key": null reads as missing
		}
	}
	if err := v.Check(); err != nil {
		return nil, inputerr.Errorf("%s: %w", name, err)
	}
	return &v, nil
}

// Check reports the first value of v that Validate cannot have written:
// an unknown mode, task or metric key; a negative example count; a
// metric whose better is unknown, whose value is outside the metric's
// range (an accuracy of 2.5, a condition number below 1, a negative
// count), whose delta is not candidate - reference (a delta of 1e308),
// whose interval is inverted or half null, or whose p-value is not a
// probability. The error names the field (metrics.accuracy.candidate).
func (v *Result) Check() error {
	switch v.Mode {
	case ModeModels, ModeLogits:
	default:
		return fmt.Errorf("mode %q: want %s or %s", v.Mode, ModeModels, ModeLogits)
	}
	switch v.Task {
	case "", compute.TaskClassification, compute.TaskRegression:
	default:
		return fmt.Errorf("task %q: want %s or %s", v.Task, compute.TaskClassification, compute.TaskRegression)
	}
	if v.NExamples < 0 || v.OutputWidth < 0 {
		return fmt.Errorf("n_examples %d, outputs %d: want counts >= 0", v.NExamples, v.OutputWidth)
	}
	keys := make([]string, 0, len(v.Metrics))
	for k := range v.Metrics {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !slices.Contains(MetricKeys, k) {
			return fmt.Errorf("metrics.%s: unknown metric; validation.json version %d has %s", k, SchemaVersion, strings.Join(MetricKeys, ", "))
		}
		if err := checkMetric("metrics."+k, k, v.Metrics[k]); err != nil {
			return err
		}
	}
	return nil
}

// valueRanges are the values each metric can take: [lo, hi] (inclusive).
var valueRanges = map[string][2]float64{
	MetricAccuracy:                        {0, 1},
	MetricLoss:                            {0, math.Inf(1)},
	MetricJacobianCondition:               {1, math.Inf(1)},
	MetricGradNormRatio:                   {1, math.Inf(1)},
	MetricLayerCondition:                  {1, math.Inf(1)},
	MetricPerturbationSensitivity:         {0, math.Inf(1)},
	MetricPerturbationSensitivityRelative: {0, math.Inf(1)},
	MetricPredictionFlipRate:              {0, 1},
	MetricLayerRobustness:                 {0, math.Inf(1)},
	MetricResidualShare:                   {0, 1},
	MetricParams:                          {0, math.Inf(1)},
	MetricFLOPs:                           {0, math.Inf(1)},
	MetricBytes:                           {0, math.Inf(1)},
	MetricLatencyMS:                       {0, math.Inf(1)},
	MetricTrainingStability:               {0, math.Inf(1)},
	MetricLRRobustness:                    {0, math.Inf(1)},
}

// checkMetric checks one metric (or part) at path; key is its metric key,
// whose range applies to the headline only (parts measure other things).
func checkMetric(path, key string, m *Metric) error {
	switch m.Better {
	case BetterHigher, BetterLower, BetterReported:
	default:
		return fmt.Errorf("%s.better %q: want %s, %s or %s", path, m.Better, BetterHigher, BetterLower, BetterReported)
	}
	if r, ok := valueRanges[key]; ok {
		for _, f := range []struct {
			name string
			v    *NullableFloat
		}{{"baseline", m.Baseline}, {"candidate", m.Candidate}, {"control", m.Control}} {
			if f.v != nil && (float64(*f.v) < r[0] || float64(*f.v) > r[1]) {
				return fmt.Errorf("%s.%s %v: outside the range [%v, %v] of %s", path, f.name, float64(*f.v), r[0], r[1], key)
			}
		}
	}
	pairs := []struct {
		name         string
		ref          *NullableFloat
		delta, rel   *NullableFloat
		ci           *Interval
		p            *NullableFloat
		dname, cname string
	}{
		{"baseline", m.Baseline, m.Delta, m.RelativeDelta, m.CI95, m.PValue, "delta", "ci95"},
		{"control", m.Control, m.DeltaVsControl, m.RelativeDeltaVsControl, m.CI95VsControl, m.PValueVsControl, "delta_vs_control", "ci95_vs_control"},
	}
	for _, p := range pairs {
		if p.delta != nil && p.ref != nil && m.Candidate != nil {
			want := float64(*m.Candidate) - float64(*p.ref)
			if !closeTo(float64(*p.delta), want) {
				return fmt.Errorf("%s.%s %v: want candidate - %s = %v", path, p.dname, float64(*p.delta), p.name, want)
			}
		}
		if p.delta != nil && (p.ref == nil || m.Candidate == nil) {
			return fmt.Errorf("%s.%s %v: a delta needs both the candidate's and the %s's value", path, p.dname, float64(*p.delta), p.name)
		}
		if p.delta == nil && (p.ci != nil || p.rel != nil) {
			return fmt.Errorf("%s.%s is null but its interval or relative value is not", path, p.dname)
		}
		if p.rel != nil && p.delta != nil && p.ref != nil && *p.ref != 0 {
			want := float64(*p.delta) / math.Abs(float64(*p.ref))
			if !closeTo(float64(*p.rel), want) {
				return fmt.Errorf("%s.relative_%s %v: want %s / |%s| = %v", path, p.dname, float64(*p.rel), p.dname, p.name, want)
			}
		}
		if c := p.ci; c != nil {
			lo, hi := float64(c[0]), float64(c[1])
			switch {
			case math.IsNaN(lo) != math.IsNaN(hi):
				return fmt.Errorf("%s.%s [%v, %v]: one end is null", path, p.cname, lo, hi)
			case lo > hi:
				return fmt.Errorf("%s.%s [%v, %v]: inverted (low above high)", path, p.cname, lo, hi)
			}
			if r, ok := valueRanges[key]; ok && isFinite(r[1]-r[0]) && (hi-lo > r[1]-r[0] || lo < r[0]-r[1] || hi > r[1]-r[0]) {
				return fmt.Errorf("%s.%s [%v, %v]: a difference of two values in [%v, %v] cannot be there", path, p.cname, lo, hi, r[0], r[1])
			}
		}
		if p.p != nil && !(*p.p >= 0 && *p.p <= 1) {
			return fmt.Errorf("%s.%s %v: a p-value is in [0, 1]", path, strings.Replace(p.cname, "ci95", "p_value", 1), float64(*p.p))
		}
	}
	if m.Units < 0 {
		return fmt.Errorf("%s.units %d: want a count >= 0", path, m.Units)
	}
	for i, part := range m.Parts {
		if part == nil {
			return fmt.Errorf("%s.parts[%d] is null", path, i)
		}
		if err := checkMetric(fmt.Sprintf("%s.parts[%d]", path, i), "", part); err != nil {
			return err
		}
	}
	return nil
}

// closeTo reports whether a stored difference equals the difference of
// the stored values up to the rounding of a JSON round trip.
func closeTo(got, want float64) bool {
	return math.Abs(got-want) <= 1e-9*max(1, math.Abs(want))
}

// jsonKind names what JSON a Go type decodes from.
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Float32, reflect.Float64, reflect.Int, reflect.Int64, reflect.Uint64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Pointer:
		return jsonKind(t.Elem())
	}
	return t.String()
}
