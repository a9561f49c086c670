package render

import (
	"fmt"
	"strings"

	"github.com/strata-ml/strata/gate"
	"github.com/strata-ml/strata/render/number"
)

// Markdown renders report.md: the decision and why, every rule, the
// candidates of a select-best report, the metric table and the plots (as
// links to plot-*.svg next to it, which Markdown viewers show as images).
func Markdown(r *Report, plots []Plot) []byte {
	var b strings.Builder
	f := r.Featured()
	title := r.title()
	fmt.Fprintf(&b, "# %s\n\n", title)
	fmt.Fprintf(&b, "## Decision: %s\n\n%s\n\n", r.Decision.Label(), r.Why)
	fmt.Fprintf(&b, "Candidate `%s`: %s", f.Name, f.Structure)
	if f.Layers != "" {
		fmt.Fprintf(&b, " (%s)", f.Layers)
	}
	fmt.Fprintf(&b, ". Policy `%s`.\n\n", r.Inputs.Policy.Path)

	b.WriteString("## Regressions\n\n")
	if len(r.Regressions) == 0 {
		b.WriteString("No metric got worse beyond its interval.\n\n")
	} else {
		fmt.Fprintf(&b, "%d %s got worse than a reference beyond the 95%% interval of the delta (without an interval: the point value), whether or not a rule covers it:\n\n",
			len(r.Regressions), plural(len(r.Regressions), "metric", "metrics"))
		for _, g := range r.Regressions {
			fmt.Fprintf(&b, "- **%s**\n", mdCell(g.Sentence()))
		}
		b.WriteString("\n")
	}

	b.WriteString("## Rules\n\n")
	b.WriteString("A rule passes when its bound holds at the unfavourable end of the 95% confidence interval of the candidate's delta, fails when even the favourable end violates it, and is inconclusive otherwise; metrics without an interval are judged on their point value. *Resolves* is half the interval's width: the smallest distance from the bound the evaluation set tells apart; *would settle* the units that would decide an inconclusive rule if the point value held.\n\n")
	b.WriteString("| outcome | rule | requirement | value | 95% interval | resolves | would settle |\n|---|---|---|---:|---:|---:|---:|\n")
	for _, rr := range r.Rules {
		iv := "point"
		if rr.JudgedOn == gate.JudgedCI {
			iv = number.Interval(rr.Interval)
		}
		fmt.Fprintf(&b, "| **%s** | %s | %s | %s | %s | %s | %s |\n", rr.Outcome, mdCell(rr.Rule), mdCell(rr.Requirement), number.Cell(rr.Value), iv,
			mdCell(Resolution(rr)), mdCell(Settle(rr)))
	}
	b.WriteString("\n")
	for _, rr := range r.Rules {
		fmt.Fprintf(&b, "- %s\n", mdCell(rr.Sentence))
	}
	b.WriteString("\n")

	if len(r.Candidates) > 1 {
		b.WriteString("## Candidates\n\n")
		b.WriteString("| rank | candidate | structure | params | accuracy | decision | pass / fail / inconclusive |\n|---:|---|---|---:|---:|---|---:|\n")
		for i, c := range r.Candidates {
			name := mdCell(c.Name)
			if c.Selected {
				name += " **(selected)**"
			}
			fmt.Fprintf(&b, "| %d | %s | %s | %s | %s | %s | %d / %d / %d |\n", i+1, name, mdCell(c.Structure), number.Cell(c.Params), number.Cell(c.Accuracy),
				c.Decision, c.Counts[gate.OutcomePass], c.Counts[gate.OutcomeFail], c.Counts[gate.OutcomeInconclusive])
		}
		b.WriteString("\n")
	}

	ctl := r.HasControl
	b.WriteString("## Metrics\n\n")
	if ctl {
		b.WriteString("What the structure did: candidate - control (same training budget). What more training alone did: control - baseline.\n\n")
		b.WriteString("| metric | better | baseline | control | candidate | candidate - baseline | 95% CI | candidate - control | 95% CI | control - baseline |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	} else {
		b.WriteString("| metric | better | baseline | candidate | candidate - baseline | 95% CI |\n|---|---|---:|---:|---:|---:|\n")
	}
	for _, m := range r.Metrics {
		if ctl {
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", m.Metric, m.Better, number.Cell(m.Baseline), number.Cell(m.Control), number.Cell(m.Candidate),
				number.SignedCell(m.Delta), number.Interval(m.CI95), number.SignedCell(m.DeltaVsControl), number.Interval(m.CI95VsControl), number.SignedCell(m.TrainingEffect))
		} else {
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", m.Metric, m.Better, number.Cell(m.Baseline), number.Cell(m.Candidate), number.SignedCell(m.Delta), number.Interval(m.CI95))
		}
	}
	b.WriteString("\n## Plots\n\n")
	for _, p := range plots {
		if p.SVG == nil {
			fmt.Fprintf(&b, "- %s: not available: %s\n", p.Title, mdCell(p.Missing))
			continue
		}
		fmt.Fprintf(&b, "### %s\n\n![%s](%s.svg)\n\n%s\n\n", p.Title, p.Title, p.ID, p.Caption)
	}
	b.WriteString("\n")
	r.Conversion.markdown(&b)
	b.WriteString("## Inputs\n\n")
	for _, in := range r.Inputs.Validations {
		fmt.Fprintf(&b, "- validation `%s` sha256 `%s`\n", in.Path, in.SHA256)
	}
	fmt.Fprintf(&b, "- policy `%s` sha256 `%s`\n", r.Inputs.Policy.Path, r.Inputs.Policy.SHA256)
	if len(r.Warnings) > 0 {
		b.WriteString("\n## Warnings\n\n")
		for _, w := range r.Warnings {
			fmt.Fprintf(&b, "- %s\n", mdCell(w))
		}
	}
	fmt.Fprintf(&b, "\n_strata %s (%s)_\n", r.Tool.Version, r.Tool.Commit)
	return []byte(b.String())
}

// Resolution writes what a rule's evaluation set resolves, "+-0.0089
// (449 evaluation rows)"; "-" for a rule judged on a point.
func Resolution(rr gate.RuleResult) string {
	if rr.DetectableEffect == nil {
		return "-"
	}
	return fmt.Sprintf("+-%s (%d %s)", number.Format(float64(*rr.DetectableEffect)), rr.Units, rr.UnitName)
}

// Settle writes what would settle an inconclusive rule, "about 46752
// evaluation rows"; "-" for any other.
func Settle(rr gate.RuleResult) string {
	switch {
	case rr.Outcome != gate.OutcomeInconclusive:
		return "-"
	case rr.UnitsToSettle != nil:
		return fmt.Sprintf("about %d %s", *rr.UnitsToSettle, rr.UnitName)
	case rr.Unreliable != "":
		return "a reliable measurement"
	case rr.SettleReason != "":
		return rr.SettleReason
	}
	return "-"
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// mdCell makes text safe inside a Markdown table cell.
func mdCell(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
}
