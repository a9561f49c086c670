package validation

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// HasControl reports whether the validation compared the candidate with
// an equal-budget control too (a control model or the control's logits).
func (v *Result) HasControl() bool {
	return v.Inputs.Control != nil || v.Inputs.ControlLogits != nil
}

// Describe summarises the candidate's layers: a short summary ("monarch +
// lowrank residual on 3 of 3 layers, 55% of the baseline's parameters")
// and each layer's structure ("0: monarch b=4 r=4 + lowrank r=4; ...").
func (v *Result) Describe() (summary, detail string) {
	if len(v.Layers) == 0 {
		if v.Mode == ModeLogits {
			return "logits computed elsewhere", ""
		}
		return "unknown structure", ""
	}
	var kinds, layers []string
	decomposed := 0
	for _, l := range v.Layers {
		if l.Family == "" || l.Family == "dense" {
			layers = append(layers, l.Name+": dense")
			continue
		}
		decomposed++
		s := cmp.Or(l.Structure, l.Family)
		layers = append(layers, l.Name+": "+s)
		kind := l.Family
		if _, res, ok := strings.Cut(s, " + "); ok {
			kind += " + " + strings.Fields(res)[0] + " residual"
		}
		if !slices.Contains(kinds, kind) {
			kinds = append(kinds, kind)
		}
	}
	if decomposed == 0 {
		summary = "dense (no decomposed layer)"
	} else {
		summary = fmt.Sprintf("%s on %d of %d layers", strings.Join(kinds, ", "), decomposed, len(v.Layers))
	}
	if m := v.Metrics[MetricParams]; m != nil && Finite(m.Baseline) && Finite(m.Candidate) && *m.Baseline > 0 {
		summary += fmt.Sprintf(", %.0f%% of the baseline's parameters", 100*float64(*m.Candidate)/float64(*m.Baseline))
	}
	return summary, strings.Join(layers, "; ")
}
