package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/strata-ml/strata/render"
	"github.com/strata-ml/strata/render/number"
	"github.com/strata-ml/strata/stages"
	"github.com/strata-ml/strata/validation"
)

type pilotCommand struct{ env }

// pilotOptions are the flags of pilot that are not fields of the config;
// the others (the work directory and the orchestrator files) are bound to
// the config itself, chosen first by --config or --demo.
type pilotOptions struct {
	config string
	demo   bool
	log    logOptions
}

func (c *pilotCommand) Usage() string {
	return `Usage: strata pilot --config pilot.yaml --workdir DIR [flags]
       strata pilot --demo [--workdir DIR]

Runs the whole pilot from one config file (docs/PILOT.md): trains the dense
baseline (unless the config names a model), converts it (convert), fine-tunes
the structured candidate S + R (finetune), fine-tunes the dense baseline with
the same budget as the equal-budget control (unless control: false), compares
the candidate with both (validate) and judges it against the gate policy
(report). Each stage writes the files its own subcommand writes, in its own
subdirectory of DIR (data, baseline, convert, finetune, control, validate,
report); DIR/pilot.json summarises the run.

Prints the decision, a headline table and the path of report.html on
stdout; progress goes to stderr.

--demo needs nothing else: it pilots a Monarch + low-rank structure on the
digits data embedded in the binary (UCI, CC BY 4.0) in a fresh directory
under the system's temporary directory (or --workdir), and exits 0 once it
has a decision, whatever the decision (as --no-fail).

Exit codes: the report's: 0 GO, 3 NO-GO, 4 INCONCLUSIVE (0 with --no-fail),
2 bad input, 1 runtime error.

Flags:
` + flagUsages(c.flags(new(pilotOptions), new(stages.PilotConfig)))
}

func (c *pilotCommand) flags(o *pilotOptions, cfg *stages.PilotConfig) *flagSet {
	fs := newFlagSet("pilot", c.env, c.Usage)
	fs.StringVar(&o.config, "config", o.config, "pilot config YAML")
	fs.StringVar(&cfg.Workdir, "workdir", cfg.Workdir, "working directory for every stage's outputs (--demo: a fresh temporary directory)")
	fs.BoolVar(&o.demo, "demo", o.demo, "run the built-in demo on the embedded digits data")
	fs.StringVar(&cfg.DecisionFile, "decision-file", cfg.DecisionFile, "write the decision as one word (go, no-go, inconclusive) here")
	fs.StringVar(&cfg.XComFile, "xcom-file", cfg.XComFile, "write the report's JSON summary here, e.g. /airflow/xcom/return.json")
	fs.StringVar(&cfg.MetricsFile, "metrics-file", cfg.MetricsFile, "write OpenMetrics text here")
	fs.BoolVar(&cfg.NoFail, "no-fail", cfg.NoFail, "exit 0 for NO-GO and INCONCLUSIVE too")
	fs.BoolVar(&cfg.Resume, "resume", cfg.Resume, "continue an interrupted pilot in the same --workdir: each training run from its checkpoint, a finished one not again")
	o.log.bind(fs)
	return fs
}

func (c *pilotCommand) Run(ctx context.Context, args []string) error {
	// The config first (--demo's or the file), then the flags over it.
	var cfg stages.PilotConfig
	switch choice := prescan(args); {
	case choice.demo && choice.config != "":
		return usageErrorf("pilot: give --demo or --config, not both")
	case choice.demo:
		cfg = stages.DemoPilotConfig()
	case choice.config != "":
		var err error
		if cfg, err = stages.LoadPilotConfig(choice.config); err != nil {
			return err
		}
	}
	var o pilotOptions
	fs := c.flags(&o, &cfg)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageErrorf("pilot takes no positional arguments, got %q", fs.Args())
	}
	switch {
	case o.demo:
		cfg.NoFail = true
		if cfg.Workdir == "" {
			dir, err := os.MkdirTemp("", "strata-demo-")
			if err != nil {
				return fmt.Errorf("pilot: %w", err)
			}
			cfg.Workdir = dir
		}
	case o.config == "":
		return usageErrorf("pilot: --config is required (or --demo)")
	case cfg.Workdir == "":
		return usageErrorf("pilot: --workdir is required")
	}

	pr := newProgress(c.stderr, "train")
	defer pr.finish()
	log, err := o.log.logger(pr.logWriter())
	if err != nil {
		return err
	}
	cfg.Logger = log
	if cfg.StageLogger, err = o.log.stageLogger(pr.logWriter()); err != nil {
		return err
	}
	if pr.active() {
		cfg.TrainProgress = func(stage string, p stages.FinetuneProgress) {
			pr.update(p.Step, p.TotalSteps, fmt.Sprintf("%s epoch %d/%d loss %.4f", stage, p.Epoch, p.Epochs, p.Loss))
			if p.Step == p.TotalSteps {
				pr.finish()
			}
		}
	}
	if o.demo {
		log.Info("strata pilot --demo: the whole pilot on the embedded digits data", "workdir", cfg.Workdir)
	}
	res, err := stages.Pilot(ctx, cfg)
	if err != nil {
		return err
	}
	pr.finish()
	printPilotSummary(c.stdout, res)
	return decisionError(res.Decision, cfg.NoFail)
}

// printPilotSummary prints the decision, the rules, a headline table and
// the path of report.html.
func printPilotSummary(w io.Writer, res *stages.PilotResult) {
	rep := res.Report
	feat := rep.Featured()
	fmt.Fprintf(w, "Decision: %s\n%s\n\n", rep.Decision.Label(), rep.Why)
	fmt.Fprintf(w, "Data:      %s; %d training rows, %d evaluation rows\n", res.Data.Source, res.Data.TrainRows, res.Data.TestRows)
	if res.Baseline != nil {
		fmt.Fprintf(w, "Baseline:  dense %s, trained %d epochs\n", res.Baseline.Config.Init, res.Baseline.Epochs)
	} else {
		fmt.Fprintf(w, "Baseline:  %s\n", res.BaselineModel)
	}
	if res.Finetune != nil {
		fmt.Fprintf(w, "Candidate: %s, fine-tuned %d epochs\n", feat.Structure, res.Finetune.Epochs)
	} else {
		fmt.Fprintf(w, "Candidate: %s, as converted (not fine-tuned)\n", feat.Structure)
	}
	switch {
	case res.Control != nil:
		fmt.Fprintf(w, "Control:   the dense baseline fine-tuned with the same budget (%d epochs)\n", res.Control.Epochs)
	case rep.HasControl:
		fmt.Fprintf(w, "Control:   the baseline itself (the same budget: zero epochs)\n")
	}
	for _, s := range res.Skipped {
		fmt.Fprintf(w, "Skipped:   %s\n", s)
	}
	fmt.Fprintln(w)

	rows := map[string]render.MetricRow{}
	for _, m := range rep.Metrics {
		rows[m.Metric] = m
	}
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	header := "metric\tbaseline\t"
	if rep.HasControl {
		header += "control\t"
	}
	header += "candidate\tcandidate - baseline [95% CI]"
	if rep.HasControl {
		header += "\tcandidate - control [95% CI]"
	}
	fmt.Fprintln(tw, header)
	for _, key := range []string{validation.MetricAccuracy, validation.MetricLoss, validation.MetricJacobianCondition,
		validation.MetricPerturbationSensitivity, validation.MetricPerturbationSensitivityRelative, validation.MetricParams} {
		m, ok := rows[key]
		if !ok {
			continue
		}
		line := key + "\t" + number.Cell(m.Baseline) + "\t"
		if rep.HasControl {
			line += number.Cell(m.Control) + "\t"
		}
		line += number.Cell(m.Candidate) + "\t" + deltaOf(m.Delta, m.CI95)
		if rep.HasControl {
			line += "\t" + deltaOf(m.DeltaVsControl, m.CI95VsControl)
		}
		fmt.Fprintln(tw, line)
	}
	tw.Flush()
	fmt.Fprintln(w)
	for _, r := range rep.Rules {
		fmt.Fprintf(w, "  %-14s %s\n", strings.ToUpper(strings.ReplaceAll(string(r.Outcome), "_", " ")), r.Rule)
	}
	if n := len(rep.Regressions); n > 0 {
		fmt.Fprintf(w, "\nRegressions (worse beyond the interval, in the report whether a rule covers them or not):\n")
		for _, g := range rep.Regressions {
			fmt.Fprintf(w, "  %s\n", g.Sentence())
		}
	}
	fmt.Fprintf(w, "\nReport: %s\n", res.ReportHTML)
}

// deltaOf formats a delta and its interval (left out when it is a
// single point).
func deltaOf(d *validation.NullableFloat, ci *validation.Interval) string {
	s := number.SignedCell(d)
	if d != nil && ci != nil && ci[0] != ci[1] {
		s += " " + number.Interval(ci)
	}
	return s
}
