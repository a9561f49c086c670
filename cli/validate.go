package cli

import (
	"context"
	"fmt"

	"github.com/strata-ml/strata/stages"
	"github.com/strata-ml/strata/validation"
)

type validateCommand struct{ env }

func (c *validateCommand) Usage() string {
	defaults := validation.DefaultConfig() // the flag help shows them
	return `Usage: strata validate --baseline FILE --candidate FILE --data DATA --out DIR [flags]
       strata validate --baseline-logits FILE --candidate-logits FILE --data DATA --out DIR [flags]

Compares a candidate model with its baseline on evaluation data (raw
features: each model applies its own standardisation) and writes
DIR/validation.json: accuracy, loss, Jacobian condition, gradient norm
ratio, layer condition, perturbation sensitivity (absolute and relative to
the logits), prediction flip rate, layer robustness, residual share,
params, FLOPs, bytes, latency and training stability, for each model side
by side, with the candidate - baseline delta, its paired bootstrap 95%
interval and, for accuracy, McNemar's exact p-value. A metric that cannot
be computed is null with a reason. Per layer: condition, residual share,
robustness drop and the singular values of each model's weights.

--control adds an equal-budget control (the dense baseline fine-tuned with
the candidate's budget): every metric then also carries control,
delta_vs_control and ci95_vs_control, which separate the effect of the
structure from the effect of more training.

Logits mode compares outputs computed elsewhere (Arrow or Parquet, one row
per example in the order of --data; an optional label column is checked):
the task metrics with their intervals, the model metrics null.

--train-log is the candidate's finetune output directory, for
training_stability (--baseline-train-log and --control-train-log for the
other models). Everything but latency_ms and wall_seconds is a function of
the inputs and --seed.

Flags:
` + flagUsages(c.flags(&defaults, new(logOptions)))
}

func (c *validateCommand) flags(cfg *validation.Config, lo *logOptions) *flagSet {
	fs := newFlagSet("validate", c.env, c.Usage)
	fs.StringVar(&cfg.Baseline, "baseline", cfg.Baseline, "baseline model (.arrow or .safetensors)")
	fs.StringVar(&cfg.Candidate, "candidate", cfg.Candidate, "candidate model (.arrow or .safetensors)")
	fs.StringVar(&cfg.Control, "control", cfg.Control, "equal-budget control: the dense baseline fine-tuned with the candidate's budget (optional)")
	fs.StringVar(&cfg.BaselineLogits, "baseline-logits", cfg.BaselineLogits, "logits mode: the baseline's outputs (.arrow or .parquet)")
	fs.StringVar(&cfg.CandidateLogits, "candidate-logits", cfg.CandidateLogits, "logits mode: the candidate's outputs")
	fs.StringVar(&cfg.ControlLogits, "control-logits", cfg.ControlLogits, "logits mode: the control's outputs (optional)")
	fs.StringVar(&cfg.Data, "data", cfg.Data, "evaluation data (.arrow, .parquet, .csv, ...)")
	fs.StringVar(&cfg.Label, "label", cfg.Label, "target column of the data")
	fs.StringVar(&cfg.Out, "out", cfg.Out, "output directory")
	nameVar(fs, &cfg.Task, "task", "logits mode: classification or regression (default: regression for 1 output, else classification)")
	fs.IntVar(&cfg.Bootstrap, "bootstrap", cfg.Bootstrap, "paired bootstrap resamples per interval (0: no intervals)")
	fs.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "random seed (bootstrap, samples, noise)")
	fs.IntVar(&cfg.MaxJacobianSamples, "max-jacobian-samples", cfg.MaxJacobianSamples, "inputs whose exact Jacobian is computed (a seeded sample)")
	fs.Float64SliceVar(&cfg.Noise, "noise", cfg.Noise, "input noise levels, as shares of each feature's std (the middle one is the headline)")
	fs.Float64Var(&cfg.RobustnessEps, "robustness-eps", cfg.RobustnessEps, "relative Frobenius norm of the weight noise of layer_robustness")
	fs.IntVar(&cfg.RobustnessDraws, "robustness-draws", cfg.RobustnessDraws, "weight-noise draws per layer")
	fs.IntVar(&cfg.GradBatch, "grad-batch", cfg.GradBatch, "evaluation batch size of grad_norm_ratio")
	fs.IntVar(&cfg.LatencyBatch, "latency-batch", cfg.LatencyBatch, "rows per timed forward pass")
	fs.IntVar(&cfg.LatencyRuns, "latency-runs", cfg.LatencyRuns, "timed forward passes per model")
	fs.IntVar(&cfg.LatencyWarmup, "latency-warmup", cfg.LatencyWarmup, "untimed forward passes per model before the timed ones")
	fs.StringVar(&cfg.TrainLog, "train-log", cfg.TrainLog, "the candidate's finetune output directory (or train_log.arrow), for training_stability")
	fs.StringVar(&cfg.BaselineTrainLog, "baseline-train-log", cfg.BaselineTrainLog, "the baseline's finetune output directory (optional)")
	fs.StringVar(&cfg.ControlTrainLog, "control-train-log", cfg.ControlTrainLog, "the control's finetune output directory (optional)")
	fs.StringVar(&cfg.LRSweep, "lr-sweep", cfg.LRSweep, "lr_sweep.json of a learning-rate sweep (written by strata sweep --lrs) for lr_robustness (optional)")
	fs.IntVar(&cfg.SpikeWindow, "spike-window", cfg.SpikeWindow, "loss spike: steps of the trailing window")
	fs.Float64Var(&cfg.SpikeThreshold, "spike-threshold", cfg.SpikeThreshold, "loss spike: scaled MADs above the window's median")
	nameVar(fs, &cfg.Activation, "activation", "activation between layers of an nn.Sequential safetensors model (default relu)")
	lo.bind(fs)
	return fs
}

func (c *validateCommand) Run(ctx context.Context, args []string) error {
	cfg := validation.DefaultConfig()
	var lo logOptions
	fs := c.flags(&cfg, &lo)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageErrorf("validate takes no positional arguments, got %q", fs.Args())
	}
	log, err := lo.logger(c.stderr)
	if err != nil {
		return err
	}
	cfg.Logger = log
	res, err := stages.Validate(ctx, cfg)
	if err != nil {
		return err
	}
	attrs := []any{"out", cfg.Out, "mode", res.Mode, "examples", res.NExamples}
	for _, key := range []string{validation.MetricAccuracy, validation.MetricLoss, validation.MetricPerturbationSensitivity, validation.MetricParams} {
		if m := res.Metrics[key]; m != nil && m.Delta != nil {
			attrs = append(attrs, key+"_delta", fmt.Sprintf("%.4g", float64(*m.Delta)))
		}
	}
	log.Info("validation summary", attrs...)
	return nil
}
