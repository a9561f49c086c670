package cli

import (
	"context"
	"path/filepath"

	"github.com/strata-ml/strata/gate"
	"github.com/strata-ml/strata/stages"
)

type reportCommand struct{ env }

func (c *reportCommand) Usage() string {
	return `Usage: strata report --validation FILE [--policy FILE] --out DIR [flags]
       strata report --select-best VALIDATION... [--policy FILE] --out DIR [flags]

Judges a validation.json against a gate policy (docs/GATE.md; without
--policy, the default policy embedded in the binary) and writes
DIR/report.json (the decision, every rule with its values, bound, outcome
and a sentence, the metric table, the inputs and their hashes),
DIR/report.md, DIR/report.html (one self-contained page: the decision and
why first, then the metrics, then the plots) and the plots as
DIR/plot-*.svg.

A rule passes when its bound holds at the unfavourable end of the 95%
interval of the candidate's delta, fails when even the favourable end
violates it, and is inconclusive otherwise. Any fail is NO-GO; else any
inconclusive is INCONCLUSIVE; else GO.

--select-best judges several candidates of a sweep (their validation.json
files, as arguments after the flag) and selects the best passing one:
fewest parameters, ties by accuracy. The report shows all of them.

Exit codes: 0 GO, 3 NO-GO, 4 INCONCLUSIVE (0 for all with --no-fail),
2 bad input, 1 runtime error.

Flags:
` + flagUsages(c.flags(new(stages.DefaultReportConfig()), new(logOptions)))
}

func (c *reportCommand) flags(cfg *stages.ReportConfig, lo *logOptions) *flagSet {
	fs := newFlagSet("report", c.env, c.Usage)
	fs.StringVar(&cfg.Validation, "validation", cfg.Validation, "validation.json to judge")
	fs.StringVar(&cfg.Policy, "policy", cfg.Policy, "gate policy YAML (default: the embedded manifests/policy/default.yaml)")
	fs.StringVar(&cfg.Out, "out", cfg.Out, "output directory")
	fs.StringArrayVar(&cfg.SelectBest, "select-best", cfg.SelectBest, "judge these validation.json files (one per candidate; more may follow as arguments) and select the best passing one")
	fs.StringVar(&cfg.DecisionFile, "decision-file", cfg.DecisionFile, "write the decision as one word (go, no-go, inconclusive) here, e.g. for Argo outputs.parameters")
	fs.StringVar(&cfg.XComFile, "xcom-file", cfg.XComFile, "write a JSON summary here, e.g. /airflow/xcom/return.json")
	fs.StringVar(&cfg.MetricsFile, "metrics-file", cfg.MetricsFile, "write OpenMetrics text (decision, metrics of each model) here")
	fs.BoolVar(&cfg.NoFail, "no-fail", cfg.NoFail, "exit 0 for NO-GO and INCONCLUSIVE too (the decision is in the files)")
	fs.StringVar(&cfg.Convert, "convert", cfg.Convert, "the candidate's convert.json (or its directory): the report shows its conversion layer by layer")
	fs.StringVar(&cfg.TrainLog, "train-log", cfg.TrainLog, "read the candidate's training log here instead of where validation.json recorded it (same SHA-256)")
	fs.StringVar(&cfg.BaselineTrainLog, "baseline-train-log", cfg.BaselineTrainLog, "likewise for the baseline's training log")
	fs.StringVar(&cfg.ControlTrainLog, "control-train-log", cfg.ControlTrainLog, "likewise for the control's training log")
	fs.StringVar(&cfg.Title, "title", cfg.Title, "title of the report")
	fs.StringArrayVar(&cfg.Notes, "note", cfg.Notes, "a sentence to put first among the report's warnings, e.g. how the candidate was fine-tuned (repeatable)")
	lo.bind(fs)
	return fs
}

func (c *reportCommand) Run(ctx context.Context, args []string) error {
	cfg := stages.DefaultReportConfig()
	var lo logOptions
	fs := c.flags(&cfg, &lo)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		if len(cfg.SelectBest) == 0 {
			return usageErrorf("report takes no positional arguments without --select-best, got %q", fs.Args())
		}
		cfg.SelectBest = append(cfg.SelectBest, fs.Args()...)
	}
	log, err := lo.logger(c.stderr)
	if err != nil {
		return err
	}
	cfg.Logger = log
	res, err := stages.Report(ctx, cfg)
	if err != nil {
		return err
	}
	log.Info("report done", "decision", res.Decision.Label(), "html", filepath.Join(cfg.Out, res.Outputs.HTML))
	return decisionError(res.Decision, cfg.NoFail)
}

// decisionError maps a gate decision to the exit: nil for GO (or any
// decision with noFail), else a silent ExitError with the gate's code.
func decisionError(d gate.Decision, noFail bool) error {
	if code := d.ExitCode(noFail); code != gate.ExitGo {
		return &ExitError{Code: int(code)}
	}
	return nil
}
