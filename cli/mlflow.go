package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/strata-ml/strata/mlflow"
)

type mlflowCommand struct{ env }

// mlflowFlags are the command's flags: the hand-off and the server.
type mlflowFlags struct {
	h      mlflow.Handoff
	uri    string
	params []string
}

func (c *mlflowCommand) Usage() string {
	return `Usage: strata mlflow --report DIR/report.json [--model FILE] [flags]

Hands a pilot to an MLflow tracking server over its REST API: a run in
--experiment (created when missing) with the --param values as parameters,
every metric of report.json (METRIC.baseline, .candidate, .control, .delta,
.delta_vs_control), the decision (tag strata.decision, metric strata.go),
and report.html, report.md, report.json and the plots as artifacts under
report/. On GO the model is uploaded under model/ and, with --register,
becomes a new version of that registered model.

The server is --tracking-uri or MLFLOW_TRACKING_URI; credentials come from
MLFLOW_TRACKING_TOKEN (bearer) or MLFLOW_TRACKING_USERNAME and
MLFLOW_TRACKING_PASSWORD. Artifacts go through the server's artifact proxy
(mlflow server --serve-artifacts, the default since MLflow 2.0).

Exit codes: 0 done, 2 rejected (bad report, bad URI, a 4xx answer),
1 anything a retry may fix (network, 5xx).

Flags:
` + flagUsages(c.flags(new(mlflowFlags)))
}

func (c *mlflowCommand) flags(f *mlflowFlags) *flagSet {
	fs := newFlagSet("mlflow", c.env, c.Usage)
	fs.StringVar(&f.h.Report, "report", f.h.Report, "report.json of strata report (the files beside it are uploaded)")
	fs.StringVar(&f.h.Model, "model", f.h.Model, "the structured model (finetune's model.arrow), uploaded and registered on GO")
	fs.StringVar(&f.h.Experiment, "experiment", "strata-pilot", "experiment name")
	fs.StringVar(&f.h.RunName, "run-name", f.h.RunName, "run name, e.g. the pipeline run's")
	fs.StringVar(&f.h.RegisteredModel, "register", f.h.RegisteredModel, "registered model a GO candidate becomes a version of (empty: no registration)")
	fs.StringArrayVar(&f.params, "param", nil, "KEY=VALUE logged as a run parameter (repeatable)")
	fs.StringVar(&f.uri, "tracking-uri", "", "tracking server (default $MLFLOW_TRACKING_URI)")
	return fs
}

func (c *mlflowCommand) Run(ctx context.Context, args []string) error {
	var f mlflowFlags
	fs := c.flags(&f)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageErrorf("mlflow takes no positional arguments, got %q", fs.Args())
	}
	if f.h.Report == "" {
		return usageErrorf("mlflow: --report is required")
	}
	for _, p := range f.params {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return usageErrorf("mlflow: --param %q: want KEY=VALUE", p)
		}
		f.h.Params = append(f.h.Params, mlflow.Param{Key: k, Value: v})
	}
	client, err := mlflow.NewClientFromEnv(f.uri)
	if err == nil {
		var res *mlflow.Result
		res, err = mlflow.HandOff(ctx, client, f.h)
		if err == nil {
			msg := fmt.Sprintf("mlflow: run %s in experiment %s: decision %s, %d artifacts", res.RunID, res.ExperimentID, res.Decision, len(res.Artifacts))
			if res.ModelVersion != "" {
				msg += fmt.Sprintf(", registered %s version %s", f.h.RegisteredModel, res.ModelVersion)
			}
			fmt.Fprintln(c.stderr, msg)
		}
	}
	if errors.Is(err, mlflow.ErrRejected) {
		return &ExitError{Code: ExitUsage, Err: err}
	}
	return err
}
