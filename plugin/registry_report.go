package plugin

import (
	"context"

	"github.com/strata-ml/strata/stages"
)

var reportStage = &stageDef{
	name: "report",
	doc:  "Judge a validation.json against a gate policy: the decision (go, no-go, inconclusive), report.json, report.md, report.html (strata report).",
	config: func() any {
		c := stages.DefaultReportConfig()
		return &c
	},
	inputs: []inputSlot{
		{field: "validation", kind: KindJSON, doc: "the validation.json to judge", example: "validation.json"},
		{field: "policy", kind: KindYAML, doc: "the gate policy (empty: the embedded default)", example: "policy.yaml"},
		{field: "train_log", kind: KindTrainLog, doc: "the candidate's training log, for the curves (its SHA-256 must match validation.json)", example: "train_log.arrow"},
		{field: "baseline_train_log", kind: KindTrainLog, doc: "the baseline's training log", example: "train_log.arrow"},
		{field: "control_train_log", kind: KindTrainLog, doc: "the control's training log", example: "train_log.arrow"},
	},
	outField: "out",
	outputs: []ArtifactInfo{
		{Name: "report", Kind: KindJSON, Doc: "report.json"},
		{Name: "markdown", Kind: KindText, Doc: "report.md"},
		{Name: "html", Kind: KindHTML, Doc: "report.html"},
		{Name: "plot-*.svg", Kind: KindFile, Doc: "one SVG per plot, named plot-<id>.svg"},
	},
	resultOutput: "report",
	run: func(ctx context.Context, cfg any, rep *reporter) (*stageRun, error) {
		c := cfg.(*stages.ReportConfig)
		c.Logger = rep.logger(nil)
		res, err := stages.Report(ctx, *c)
		if err != nil {
			return nil, err
		}
		files := []outputFile{
			{"report", res.Outputs.JSON, KindJSON},
			{"markdown", res.Outputs.Markdown, KindText},
			{"html", res.Outputs.HTML, KindHTML},
		}
		for _, p := range res.Outputs.Plots {
			files = append(files, outputFile{p, p, KindFile})
		}
		return &stageRun{result: res, decision: string(res.Decision), files: files}, nil
	},
}
