package stages

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/gate"
	"github.com/strata-ml/strata/internal/inputerr"
	"github.com/strata-ml/strata/internal/inputfile"
	"github.com/strata-ml/strata/internal/provenance"
	"github.com/strata-ml/strata/render"
	"github.com/strata-ml/strata/validation"
)

// ReportSchemaVersion is the schema_version of report.json.
const ReportSchemaVersion = 1

// ReportConfig configures Report. The JSON form is recorded in
// report.json.
type ReportConfig struct {
	// Validation is the validation.json to judge. With SelectBest it may
	// be empty.
	Validation string `json:"validation,omitempty"`
	// SelectBest lists the validation.json of several candidates (a
	// sweep) against one baseline: every one is judged, and the best
	// passing one (fewest parameters, ties by accuracy) is selected.
	// Validation, when also given, is one of them. An entry may also be
	// the output directory of Sweep (or its sweep.json): its candidates
	// are judged at every seed, and a candidate passes only when every
	// seed's run does (see SweepCandidateResult.Decision).
	SelectBest []string `json:"select_best,omitempty"`
	// Policy is the gate policy file; empty applies the embedded default
	// (manifests/policy/default.yaml).
	Policy string `json:"policy,omitempty"`
	// Out is the output directory of report.json, report.md, report.html
	// and the plots (plot-*.svg).
	Out string `json:"out"`
	// DecisionFile, XComFile and MetricsFile are the orchestrator outputs
	// (PRODUCT.md section 6), each written atomically when set: the
	// decision as one word, a JSON summary, OpenMetrics text.
	DecisionFile string `json:"decision_file,omitempty"`
	XComFile     string `json:"xcom_file,omitempty"`
	MetricsFile  string `json:"metrics_file,omitempty"`
	// NoFail makes the exit code 0 for NO-GO and INCONCLUSIVE (Argo and
	// Airflow drop the outputs of failed steps); it is recorded in the
	// XCom summary's exit_code.
	NoFail bool `json:"no_fail,omitempty"`
	// TrainLog, BaselineTrainLog and ControlTrainLog, when set, are where
	// the training logs validation.json names are read from instead of
	// the recorded paths (logs moved since validate ran, or streamed by a
	// plugin host). Each must still have the SHA-256 validation.json
	// recorded; a directory means its train_log.arrow.
	TrainLog         string `json:"train_log,omitempty"`
	BaselineTrainLog string `json:"baseline_train_log,omitempty"`
	ControlTrainLog  string `json:"control_train_log,omitempty"`
	// Convert, when set, is the candidate's convert.json (or its
	// directory): the report shows its conversion, layer by layer.
	Convert string `json:"convert,omitempty"`
	// Title heads the report (empty: "strata pilot report").
	Title string `json:"title,omitempty"`
	// Notes are sentences the caller puts first among the report's
	// warnings: what the reader must know of how the validated models were
	// made (the pilot says which stage it skipped and why).
	Notes []string `json:"notes,omitempty"`
	// Logger receives progress; nil discards it.
	Logger *slog.Logger `json:"-"`
}

// DefaultReportConfig returns the defaults the CLI and the plugin start
// from: every field at its zero value, which means the embedded default
// policy, the title "strata pilot report" and no orchestrator files.
func DefaultReportConfig() ReportConfig { return ReportConfig{} }

// ReportInputs are the files a report was made from, with their hashes.
type ReportInputs struct {
	Validations []provenance.File `json:"validations"`
	Policy      provenance.File   `json:"policy"`
	// TrainLogs are the training logs validation.json names, read for
	// the training curves.
	TrainLogs []provenance.File `json:"train_logs,omitempty"`
	// Convert is ReportConfig.Convert's convert.json.
	Convert *provenance.File `json:"convert,omitempty"`
}

// ReportOutputs names the files Report wrote: those in Out relative to
// it, the orchestrator files as given.
type ReportOutputs struct {
	JSON         string   `json:"json"`
	Markdown     string   `json:"markdown"`
	HTML         string   `json:"html"`
	Plots        []string `json:"plots"`
	DecisionFile string   `json:"decision_file,omitempty"`
	XComFile     string   `json:"xcom_file,omitempty"`
	MetricsFile  string   `json:"metrics_file,omitempty"`
}

// ReportResult is report.json.
type ReportResult struct {
	SchemaVersion int             `json:"schema_version"`
	Tool          provenance.Tool `json:"tool"`
	Config        ReportConfig    `json:"config"`
	Inputs        ReportInputs    `json:"inputs"`
	// Policy is the policy as applied.
	Policy gate.Policy `json:"policy"`
	// Decision and Why are the gate's; with SelectBest, the selected
	// candidate's (GO), else INCONCLUSIVE when some candidate was, else
	// NO-GO.
	Decision gate.Decision `json:"decision"`
	Why      string        `json:"why"`
	// Rules, Counts and Metrics are the featured candidate's: the
	// selected one, or with SelectBest and none passing, the best ranked.
	Rules   []gate.RuleResult    `json:"rules"`
	Counts  map[gate.Outcome]int `json:"counts"`
	Metrics []render.MetricRow   `json:"metrics"`
	// Regressions are the featured candidate's metrics that got worse than
	// the baseline or the control beyond their intervals, covered by a
	// rule or not (render.Regressions).
	Regressions []render.Regression `json:"regressions"`
	// HasControl says whether the featured validation had a control.
	HasControl bool `json:"has_control"`
	// Candidates lists every judged candidate, best ranked first.
	Candidates []gate.Candidate `json:"candidates"`
	Warnings   []string         `json:"warnings"`
	Outputs    ReportOutputs    `json:"outputs"`
}

// page is what the report's pages show of r.
func (r *ReportResult) page() *render.Report {
	p := &render.Report{
		Title: r.Config.Title, Tool: r.Tool, Decision: r.Decision, Why: r.Why, Rules: r.Rules,
		Candidates: r.Candidates, Metrics: r.Metrics, Regressions: r.Regressions, HasControl: r.HasControl, Warnings: r.Warnings,
	}
	p.Inputs.Validations, p.Inputs.Policy = r.Inputs.Validations, r.Inputs.Policy
	return p
}

// Featured returns the candidate the report is about.
func (r *ReportResult) Featured() *gate.Candidate { return gate.Featured(r.Candidates) }

// Report judges a validation.json (or, with SelectBest, several) against
// a gate policy and writes Out/report.json, Out/report.md, Out/report.html
// (self-contained: inline SVG plots, no scripts, no network) and each plot
// as Out/plot-*.svg for report.md, all or nothing, then the orchestrator files that are
// configured, each atomically. The decision is in the result; mapping it
// to an exit code is the caller's (gate.Decision.ExitCode).
//
// Bad input (a validation.json or policy that does not read or does not
// check, a rule that needs a direction the metric does not have) returns
// an error wrapping ErrInput and writes nothing.
func Report(ctx context.Context, cfg ReportConfig) (*ReportResult, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	files, err := cfg.validationFiles()
	if err != nil {
		return nil, err
	}
	if err := cfg.checkOrchestratorFiles(); err != nil {
		return nil, err
	}
	if err := cfg.checkTrainLogs(); err != nil {
		return nil, err
	}
	out, err := claimOutput("report", "out", cfg.Out)
	if err != nil {
		return nil, err
	}
	defer out.release()
	files, groups, failed, err := expandSweeps(files)
	if err != nil {
		return nil, err
	}
	pol, err := gate.LoadPolicy(cfg.Policy)
	if err != nil {
		return nil, err
	}
	res := &ReportResult{
		SchemaVersion: ReportSchemaVersion, Tool: provenance.Version(), Config: cfg, Policy: pol.Policy,
		Inputs: ReportInputs{Policy: pol.Input}, Warnings: append(append([]string{}, cfg.Notes...), failed...),
	}
	for _, f := range files {
		v, in, err := validation.Read(f)
		if err != nil {
			return nil, err
		}
		g, err := gate.Judge(pol.Input.Path, &pol.Policy, v)
		if err != nil {
			return nil, err
		}
		res.Inputs.Validations = append(res.Inputs.Validations, in)
		res.Candidates = append(res.Candidates, gate.NewCandidate(v, in, g))
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var conversion *render.Conversion
	if cfg.Convert != "" {
		var in provenance.File
		if conversion, in, err = readConversion(cfg.Convert); err != nil {
			return nil, err
		}
		res.Inputs.Convert = &in
	}
	res.Candidates = gate.MergeSeeds(res.Candidates, groups)
	res.Decision, res.Why = gate.Select(res.Candidates, len(cfg.SelectBest) > 0)
	feat := res.Featured()
	res.Rules, res.Counts = feat.Rules, feat.Counts
	res.Metrics = render.MetricRows(feat.Result)
	res.Regressions = render.Regressions(res.Metrics, res.Rules)
	res.HasControl = feat.Result.HasControl()
	res.Warnings = append(res.Warnings, feat.Result.Warnings...)
	if len(res.Candidates) > 1 {
		base := res.Candidates[0].Result.Inputs.Baseline
		for _, c := range res.Candidates[1:] {
			if b := c.Result.Inputs.Baseline; base != nil && b != nil && b.SHA256 != base.SHA256 {
				res.Warnings = append(res.Warnings, fmt.Sprintf("%s compares against another baseline (%s) than %s (%s)",
					c.Validation.Path, b.Path, res.Candidates[0].Validation.Path, base.Path))
			}
		}
	}

	logs, logInputs, warnings := readTrainLogs(ctx, feat, cfg)
	res.Inputs.TrainLogs = logInputs
	res.Warnings = append(res.Warnings, warnings...)
	plots := render.Plots(feat.Result, logs)

	res.Outputs = ReportOutputs{
		JSON: "report.json", Markdown: "report.md", HTML: "report.html",
		DecisionFile: cfg.DecisionFile, XComFile: cfg.XComFile, MetricsFile: cfg.MetricsFile,
	}
	for _, p := range plots {
		if p.SVG != nil {
			res.Outputs.Plots = append(res.Outputs.Plots, p.ID+".svg")
		}
	}
	log.Info("gate judged", "decision", res.Decision.Label(), "rules", len(res.Rules),
		"fail", res.Counts[gate.OutcomeFail], "inconclusive", res.Counts[gate.OutcomeInconclusive], "candidates", len(res.Candidates))

	page := res.page()
	page.Conversion = conversion
	htmlPage, err := render.HTML(page, plots)
	if err != nil {
		return nil, fmt.Errorf("report: render HTML: %w", err)
	}
	md := render.Markdown(page, plots)
	err = writeOutputs(cfg.Out, func(dir string) error {
		for _, p := range plots {
			if p.SVG == nil {
				continue
			}
			if err := writeFileAtomic(filepath.Join(dir, p.ID+".svg"), p.SVG); err != nil {
				return err
			}
		}
		if err := writeFileAtomic(filepath.Join(dir, res.Outputs.HTML), htmlPage); err != nil {
			return err
		}
		if err := writeFileAtomic(filepath.Join(dir, res.Outputs.Markdown), md); err != nil {
			return err
		}
		if err := writeJSON(filepath.Join(dir, res.Outputs.JSON), res); err != nil {
			return err
		}
		// Before the report is moved into Out: an orchestrator file that
		// cannot be written leaves no report that looks complete.
		return res.writeOrchestratorFiles(cfg)
	})
	if err != nil {
		return nil, fmt.Errorf("report: write %s: %w", cfg.Out, err)
	}
	// A plot an earlier report in Out drew and this one could not.
	for _, p := range plots {
		if p.SVG == nil {
			_ = os.Remove(filepath.Join(cfg.Out, p.ID+".svg"))
		}
	}
	return res, nil
}

// validationFiles returns the validation.json files to judge.
func (cfg *ReportConfig) validationFiles() ([]string, error) {
	if cfg.Out == "" {
		return nil, inputerr.Fieldf("report", "{out} is required")
	}
	if len(cfg.SelectBest) == 0 {
		if cfg.Validation == "" {
			return nil, inputerr.Fieldf("report", "{validation} is required (or {select_best} with several)")
		}
		return []string{cfg.Validation}, nil
	}
	files := slices.Clone(cfg.SelectBest)
	if cfg.Validation != "" && !slices.Contains(files, cfg.Validation) {
		files = append([]string{cfg.Validation}, files...)
	}
	seen := map[string]bool{}
	for _, f := range files {
		if seen[f] {
			return nil, inputerr.Fieldf("report", "{select_best} lists %s twice", f)
		}
		seen[f] = true
	}
	return files, nil
}

// trainLogOverride returns where the training log path given instead of a
// recorded one is: path itself, or its train_log.arrow when it is a
// directory.
func trainLogOverride(path string) string {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return filepath.Join(path, "train_log.arrow")
	}
	return path
}

// checkTrainLogs refuses, before any work, a training log given in place
// of a recorded one that is no file to read (inputfile.Open): the user
// named it, so unlike a recorded log that moved, it is no warning.
func (cfg *ReportConfig) checkTrainLogs() error {
	for _, f := range [3][2]string{{"train_log", cfg.TrainLog}, {"baseline_train_log", cfg.BaselineTrainLog}, {"control_train_log", cfg.ControlTrainLog}} {
		if f[1] == "" {
			continue
		}
		file, _, err := inputfile.Open(trainLogOverride(f[1]))
		if err != nil {
			return inputerr.Fieldf("report", "{"+f[0]+"} %w", err)
		}
		file.Close()
	}
	return nil
}

// readTrainLogs reads the training logs validation.json names, for the
// training curves. A log that is gone or changed since validate read it
// is left out with a warning: the report still judges.
func readTrainLogs(ctx context.Context, c *gate.Candidate, cfg ReportConfig) (render.TrainLogs, []provenance.File, []string) {
	var logs render.TrainLogs
	var ins []provenance.File
	var warnings []string
	v := c.Result
	for _, side := range []struct {
		in       *provenance.File
		override string
		dst      **arrowio.TrainLog
	}{
		{v.Inputs.BaselineTrainLog, cfg.BaselineTrainLog, &logs.Baseline},
		{v.Inputs.TrainLog, cfg.TrainLog, &logs.Candidate},
		{v.Inputs.ControlTrainLog, cfg.ControlTrainLog, &logs.Control},
	} {
		if side.in == nil {
			continue
		}
		path := side.in.Path
		if side.override != "" {
			path = trainLogOverride(side.override)
		} else if _, err := os.Stat(path); err != nil && !filepath.IsAbs(path) {
			// Relative to where validate ran; try next to validation.json.
			alt := filepath.Join(filepath.Dir(c.Validation.Path), path)
			if _, err := os.Stat(alt); err == nil {
				path = alt
			}
		}
		got, err := provenance.HashFile(ctx, path)
		if err != nil {
			warnings = append(warnings, fmt.Sprintf("training log %s: %v; its curve is left out", side.in.Path, err))
			continue
		}
		if got.SHA256 != side.in.SHA256 {
			warnings = append(warnings, fmt.Sprintf("training log %s changed since validate read it; its curve is left out", side.in.Path))
			continue
		}
		l, err := arrowio.ReadTrainLog(path)
		if err != nil {
			warnings = append(warnings, fmt.Sprintf("training log %s: %v; its curve is left out", side.in.Path, err))
			continue
		}
		*side.dst = l
		ins = append(ins, got)
	}
	return logs, ins, warnings
}

// orchestratorFiles are the orchestrator outputs of cfg: their config
// fields and paths, empty when not set.
func (cfg *ReportConfig) orchestratorFiles() [3][2]string {
	return [3][2]string{{"decision_file", cfg.DecisionFile}, {"xcom_file", cfg.XComFile}, {"metrics_file", cfg.MetricsFile}}
}

// checkOrchestratorFiles refuses, before any work, an orchestrator file
// that can never be written (arrowio.CheckTarget).
func (cfg *ReportConfig) checkOrchestratorFiles() error {
	for _, f := range cfg.orchestratorFiles() {
		if f[1] == "" {
			continue
		}
		if err := arrowio.CheckTarget(f[1]); err != nil {
			return inputerr.Fieldf("report", "{"+f[0]+"} %w", err)
		}
	}
	return nil
}

// writeOrchestratorFiles writes the decision, XCom and metrics files.
func (r *ReportResult) writeOrchestratorFiles(cfg ReportConfig) error {
	if cfg.DecisionFile != "" {
		if err := writeFileAtomic(cfg.DecisionFile, []byte(string(r.Decision)+"\n")); err != nil {
			return fmt.Errorf("decision file: %w", err)
		}
	}
	if cfg.XComFile != "" {
		if err := writeJSON(cfg.XComFile, r.xcom(cfg)); err != nil {
			return fmt.Errorf("XCom file: %w", err)
		}
	}
	if cfg.MetricsFile != "" {
		if err := writeFileAtomic(cfg.MetricsFile, render.OpenMetrics(r.Decision, r.Counts, r.Metrics)); err != nil {
			return fmt.Errorf("metrics file: %w", err)
		}
	}
	return nil
}

// XCom is the JSON summary --xcom-file writes, for Airflow's
// KubernetesPodOperator (/airflow/xcom/return.json).
type XCom struct {
	Decision gate.Decision `json:"decision"`
	// ExitCode is the code the step exits with (0 with --no-fail).
	ExitCode gate.ExitCode        `json:"exit_code"`
	Why      string               `json:"why"`
	Counts   map[gate.Outcome]int `json:"counts"`
	Rules    []XComRule           `json:"rules"`
	// Metrics holds, per metric key, the models' values and the delta.
	Metrics   map[string]XComMetric `json:"metrics"`
	Candidate string                `json:"candidate"`
	Structure string                `json:"structure"`
	// Report is the directory of report.json, report.md and report.html.
	Report string `json:"report"`
	// Validation is the featured validation.json.
	Validation provenance.File `json:"validation"`
}

// XComRule is one rule in the XCom summary.
type XComRule struct {
	Rule     string       `json:"rule"`
	Outcome  gate.Outcome `json:"outcome"`
	Sentence string       `json:"sentence"`
}

// XComMetric is one metric in the XCom summary.
type XComMetric struct {
	Baseline  *validation.NullableFloat `json:"baseline"`
	Candidate *validation.NullableFloat `json:"candidate"`
	Control   *validation.NullableFloat `json:"control,omitempty"`
	Delta     *validation.NullableFloat `json:"delta"`
	CI95      *validation.Interval      `json:"ci95"`
}

func (r *ReportResult) xcom(cfg ReportConfig) XCom {
	f := r.Featured()
	x := XCom{
		Decision: r.Decision, ExitCode: r.Decision.ExitCode(cfg.NoFail), Why: r.Why, Counts: r.Counts,
		Metrics: map[string]XComMetric{}, Candidate: f.Name, Structure: f.Structure, Report: cfg.Out, Validation: f.Validation,
	}
	for _, rr := range r.Rules {
		x.Rules = append(x.Rules, XComRule{Rule: rr.Rule, Outcome: rr.Outcome, Sentence: rr.Sentence})
	}
	for _, m := range r.Metrics {
		x.Metrics[m.Metric] = XComMetric{Baseline: m.Baseline, Candidate: m.Candidate, Control: m.Control, Delta: m.Delta, CI95: m.CI95}
	}
	return x
}

// writeFileAtomic writes b to path through a temporary file and a rename.
func writeFileAtomic(path string, b []byte) error {
	return arrowio.WriteFileAtomic(path, func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	})
}
