package render

import (
	"bytes"
	"fmt"
	"html/template"
	"strings"

	"github.com/strata-ml/strata/gate"
	"github.com/strata-ml/strata/internal/provenance"
	"github.com/strata-ml/strata/render/number"
	"github.com/strata-ml/strata/validation"
)

// This file renders report.html: one self-contained page (inline CSS and
// SVG, no scripts, no fonts or images from anywhere) that says the
// decision and why first, then the metric table, then the plots.

// Element ids of report.html that tests and people can rely on.
const (
	HTMLDecisionID = "decision"       // the decision section
	HTMLLabelID    = "decision-label" // GO, NO-GO or INCONCLUSIVE
	HTMLRulesID    = "rules"          // the table of rule judgements
	HTMLMetricsID  = "metrics"        // the metric table
	// HTMLRegressionsID is the section listing every metric that got
	// worse, right under the decision.
	HTMLRegressionsID = "regressions"
)

var htmlTemplate = template.Must(template.New("report").Funcs(template.FuncMap{
	"num":    func(f *validation.NullableFloat) string { return number.Cell(f) },
	"signed": func(f *validation.NullableFloat) string { return number.SignedCell(f) },
	"ci":     func(c *validation.Interval) string { return number.Interval(c) },
	"inc":    func(i int) int { return i + 1 },
	"pct": func(f *validation.NullableFloat) string {
		return number.Signed(100*float64(*f)) + "%"
	},
	"join":  func(s []string) string { return strings.Join(s, "; ") },
	"count": func(c gate.Candidate, o string) int { return c.Counts[gate.Outcome(o)] },
	"explain": func(r gate.RuleResult) string {
		return strings.TrimPrefix(r.Sentence, r.Rule+": "+string(r.Outcome)+": ")
	},
	"resolves": Resolution,
	"settle":   Settle,
}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8"/>
<meta name="viewport" content="width=device-width, initial-scale=1"/>
<title>{{.Title}}: {{.Label}}</title>
<style>
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Liberation Sans", Arial, sans-serif; color: #1d2329; background: #fff; margin: 0 auto; max-width: 1180px; padding: 24px 28px 48px; line-height: 1.45; }
h1 { font-size: 1.5rem; margin: 0 0 4px; }
h2 { font-size: 1.2rem; margin: 28px 0 8px; border-bottom: 1px solid #d8dde3; padding-bottom: 4px; }
.meta { color: #56606b; font-size: 0.9rem; margin: 0; }
.decision { border-radius: 8px; padding: 14px 20px; margin: 18px 0 8px; border: 2px solid; }
.decision h2 { border: 0; margin: 0; padding: 0; font-size: 2rem; letter-spacing: 0.04em; }
.decision p { margin: 6px 0 0; font-size: 1.02rem; }
.go { background: #e9f7ee; border-color: #2e9d55; }
.go h2 { color: #1f7a3f; }
.no-go { background: #fdecec; border-color: #d0453d; }
.no-go h2 { color: #b3261e; }
.inconclusive { background: #fff6e0; border-color: #d79b00; }
.inconclusive h2 { color: #935f00; }
table { border-collapse: collapse; width: 100%; font-size: 0.88rem; margin: 8px 0; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid #e3e7eb; vertical-align: top; }
th { background: #f4f6f8; font-weight: 600; }
td.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.badge { display: inline-block; min-width: 6.5em; text-align: center; border-radius: 4px; padding: 1px 6px; font-weight: 600; font-size: 0.8rem; }
.b-pass, .b-go { background: #d5f0de; color: #1f7a3f; }
.b-fail, .b-no-go { background: #f9d6d4; color: #b3261e; }
.b-inconclusive { background: #ffeec2; color: #935f00; }
.b-skipped { background: #e7eaee; color: #56606b; }
.note { color: #56606b; font-size: 0.82rem; }
figure { margin: 18px 0 26px; }
figure svg { max-width: 100%; height: auto; display: block; border: 1px solid #e3e7eb; }
figcaption { color: #56606b; font-size: 0.86rem; margin-top: 6px; }
.missing { border: 1px dashed #b8c0c8; padding: 18px; color: #56606b; }
.scroll { overflow-x: auto; }
#metrics th { white-space: normal; min-width: 4.5em; }
code { font-size: 0.85em; background: #f4f6f8; padding: 0 3px; border-radius: 3px; }
.warn { color: #935f00; }
.regressions { border-left: 6px solid #d0453d; background: #fdf3f2; padding: 8px 16px; margin: 12px 0; }
.regressions h2 { border: 0; margin: 4px 0; color: #b3261e; }
.regressions.none { border-color: #2e9d55; background: #f2faf5; }
.regressions.none h2 { color: #1f7a3f; }
</style>
</head>
<body>
<header>
<h1>{{.Title}}</h1>
<p class="meta">Candidate <strong>{{.Featured.Name}}</strong>: {{.Featured.Structure}}{{if .Featured.Layers}} ({{.Featured.Layers}}){{end}}. Policy <code>{{.Report.Inputs.Policy.Path}}</code>.</p>
</header>

<section id="` + HTMLDecisionID + `" class="decision {{.Class}}">
<h2 id="` + HTMLLabelID + `">{{.Label}}</h2>
<p id="decision-why">{{.Report.Why}}</p>
</section>

<section id="` + HTMLRegressionsID + `" class="regressions{{if not .Report.Regressions}} none{{end}}">
{{if .Report.Regressions}}<h2>Regressions: {{len .Report.Regressions}} {{if eq (len .Report.Regressions) 1}}metric{{else}}metrics{{end}} got worse</h2>
<p class="note">Worse than a reference beyond the 95% interval of the delta (without an interval: the point value), whether or not a rule of the policy covers it.</p>
<ul>{{range .Report.Regressions}}<li><strong>{{.Metric}}</strong> vs {{.Versus}}: {{num .Reference}} &#8594; {{num .Candidate}} ({{if .RelativeDelta}}{{pct .RelativeDelta}}{{else}}{{signed .Delta}}{{end}}){{if eq .Basis "ci95"}}, 95% CI of the delta {{ci .CI95}}{{else}}, no interval (the point value){{end}}; {{.Better}} is better; {{if .Rules}}judged by {{join .Rules}}{{else}}<strong>no rule covers it</strong>{{end}}{{if .Unreliable}}; unreliable: {{.Unreliable}}{{end}}</li>
{{end}}</ul>{{else}}<h2>Regressions: none</h2>
<p class="note">No metric got worse than a reference beyond its interval.</p>{{end}}
</section>

<h2>Why: every rule of the policy</h2>
<p class="note">A rule passes when its bound holds at the unfavourable end of the 95% confidence interval of the candidate's delta, fails when even the favourable end violates it, and is inconclusive otherwise; metrics without an interval are judged on their point value. <em>Resolves</em> is half the interval's width, the smallest distance from the bound the evaluation set tells apart; <em>would settle</em> the units that would decide an inconclusive rule if the point value held.</p>
<table id="` + HTMLRulesID + `">
<thead><tr><th>outcome</th><th>rule</th><th>requirement</th><th>value</th><th>95% interval</th><th>resolves</th><th>would settle</th><th>explanation</th></tr></thead>
<tbody>
{{range .Report.Rules}}<tr class="rule-{{.Outcome}}"><td><span class="badge b-{{.Outcome}}">{{.Outcome}}</span></td><td>{{.Rule}}{{if .Line}} <span class="note">(line {{.Line}})</span>{{end}}</td><td>{{.Requirement}}</td><td class="n">{{num .Value}}</td><td class="n">{{if eq .JudgedOn "ci95"}}{{ci .Interval}}{{else}}point{{end}}</td><td class="n">{{resolves .}}</td><td class="n">{{settle .}}</td><td>{{explain .}}</td></tr>
{{end}}</tbody>
</table>

{{if .Multi}}<h2>Candidates</h2>
<p class="note">Every candidate judged against the same policy; the best passing one (fewest parameters, ties by accuracy) is selected.</p>
<table id="candidates">
<thead><tr><th>rank</th><th>candidate</th><th>structure</th><th>params</th><th>accuracy</th><th>decision</th><th>rules (pass / fail / inconclusive)</th></tr></thead>
<tbody>
{{range $i, $c := .Report.Candidates}}<tr><td class="n">{{inc $i}}</td><td>{{$c.Name}}{{if $c.Selected}} <strong>(selected)</strong>{{end}}</td><td>{{$c.Structure}}</td><td class="n">{{num $c.Params}}</td><td class="n">{{num $c.Accuracy}}</td><td><span class="badge b-{{$c.Decision}}">{{$c.Decision}}</span></td><td class="n">{{count $c "pass"}} / {{count $c "fail"}} / {{count $c "inconclusive"}}</td></tr>
{{end}}</tbody>
</table>
{{range $i, $c := .Report.Candidates}}{{if ne $i $.FeaturedIndex}}<details><summary>{{$c.Name}}: {{$c.Decision}}</summary><ul>{{range $c.Rules}}<li><span class="badge b-{{.Outcome}}">{{.Outcome}}</span> {{.Sentence}}</li>{{end}}</ul></details>
{{end}}{{end}}{{end}}
<h2>Metrics: baseline vs candidate{{if .Report.HasControl}} vs control{{end}}</h2>
{{if .Report.HasControl}}<p class="note">Two comparisons side by side. <strong>What the structure did</strong>: candidate - control, both trained with the same budget. <strong>What more training alone did</strong>: control - baseline. Their sum is candidate - baseline.</p>{{end}}
<div class="scroll"><table id="` + HTMLMetricsID + `">
<thead><tr><th>metric</th><th>better</th><th>baseline</th>{{if .Report.HasControl}}<th>control</th>{{end}}<th>candidate</th><th>candidate - baseline<br/><span class="note">[95% CI]</span></th>{{if .Report.HasControl}}<th>what the structure did: candidate - control<br/><span class="note">[95% CI]</span></th><th>what training alone did: control - baseline</th>{{end}}</tr></thead>
<tbody>
{{$ctl := .Report.HasControl}}{{range .Report.Metrics}}<tr><td title="{{.Note}}">{{.Metric}}{{if .Reason}}<br/><span class="note">{{.Reason}}</span>{{end}}</td><td>{{.Better}}</td><td class="n">{{num .Baseline}}</td>{{if $ctl}}<td class="n">{{num .Control}}</td>{{end}}<td class="n">{{num .Candidate}}</td><td class="n">{{signed .Delta}}<br/><span class="note">{{ci .CI95}}</span></td>{{if $ctl}}<td class="n">{{signed .DeltaVsControl}}<br/><span class="note">{{ci .CI95VsControl}}</span></td><td class="n">{{signed .TrainingEffect}}</td>{{end}}</tr>
{{end}}</tbody>
</table></div>
<p class="note">Hover a metric for its definition (validation.json's note). Intervals are paired bootstrap 95% percentile intervals of the delta, a point for exact metrics, "-" where there is none.</p>

<h2>Plots</h2>
{{range .Plots}}<figure id="{{.ID}}">
{{if .Inline}}{{.Inline}}{{else}}<div class="missing">{{.Title}}: not available: {{.Missing}}</div>{{end}}
<figcaption><strong>{{.Title}}.</strong> {{.Caption}}</figcaption>
</figure>
{{end}}
` + htmlConversion + `<h2>Inputs</h2>
<table id="inputs">
<thead><tr><th>input</th><th>path</th><th>SHA-256</th></tr></thead>
<tbody>
{{range .Report.Inputs.Validations}}<tr><td>validation</td><td><code>{{.Path}}</code></td><td><code>{{.SHA256}}</code></td></tr>
{{end}}<tr><td>policy</td><td><code>{{.Report.Inputs.Policy.Path}}</code></td><td><code>{{.Report.Inputs.Policy.SHA256}}</code></td></tr>
{{range .Models}}<tr><td>{{.Role}}</td><td><code>{{.File.Path}}</code></td><td><code>{{.File.SHA256}}</code></td></tr>
{{end}}</tbody>
</table>
{{if .Report.Warnings}}<h2>Warnings</h2>
<ul>{{range .Report.Warnings}}<li class="warn">{{.}}</li>{{end}}</ul>{{end}}
<footer><p class="note">Generated by strata {{.Report.Tool.Version}} ({{.Report.Tool.Commit}}, {{.Report.Tool.GoVersion}}). report.json holds everything on this page.</p></footer>
</body>
</html>
`))

// htmlPlot is a plot as the page shows it.
type htmlPlot struct {
	Plot
	Inline template.HTML
}

// htmlInput is a model-side input of the featured validation.
type htmlInput struct {
	Role string
	File provenance.File
}

// HTML renders report.html: one self-contained page (inline CSS and SVG,
// no scripts, no fonts or images from anywhere) that says the decision
// and why first, then the rules, the candidates of a select-best report,
// the metric table, the plots (inline) and the inputs.
func HTML(r *Report, plots []Plot) ([]byte, error) {
	f := r.Featured()
	title := r.title()
	data := struct {
		Title, Label, Class string
		Report              *Report
		Featured            *gate.Candidate
		Multi               bool
		FeaturedIndex       int
		Plots               []htmlPlot
		Models              []htmlInput
	}{
		Title: title, Label: r.Decision.Label(), Class: string(r.Decision), Report: r, Featured: f,
		Multi: len(r.Candidates) > 1,
	}
	for i := range r.Candidates {
		if &r.Candidates[i] == f {
			data.FeaturedIndex = i
		}
	}
	for _, p := range plots {
		hp := htmlPlot{Plot: p}
		if p.SVG != nil {
			hp.Inline = template.HTML(inlineSVG(p.SVG, "svg-"+strings.TrimPrefix(p.ID, "plot-"), p.Title))
		}
		data.Plots = append(data.Plots, hp)
	}
	in := f.Result.Inputs
	for _, m := range []struct {
		role string
		f    *provenance.File
	}{
		{"evaluation data", &in.Data}, {"baseline", in.Baseline}, {"candidate", in.Candidate}, {"control", in.Control},
		{"baseline logits", in.BaselineLogits}, {"candidate logits", in.CandidateLogits}, {"control logits", in.ControlLogits},
		{"baseline training log", in.BaselineTrainLog}, {"candidate training log", in.TrainLog}, {"control training log", in.ControlTrainLog},
	} {
		if m.f != nil && m.f.Path != "" {
			data.Models = append(data.Models, htmlInput{m.role, *m.f})
		}
	}
	var buf bytes.Buffer
	if err := htmlTemplate.Execute(&buf, data); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// inlineSVG turns a standalone SVG document into an element for an HTML
// page: the XML prolog and comments before <svg> go, and the element gets
// an id and an accessible name.
func inlineSVG(doc []byte, id, title string) string {
	s := string(doc)
	if i := strings.Index(s, "<svg"); i >= 0 {
		s = s[i:]
	}
	attrs := fmt.Sprintf(`<svg id="%s" role="img" aria-label="%s"`, template.HTMLEscapeString(id), template.HTMLEscapeString(title))
	return strings.Replace(s, "<svg", attrs, 1)
}
