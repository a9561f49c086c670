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
DIR/validation.json (docs/VALIDATION.md): accuracy, loss, Jacobian
condition, gradient norm ratio, layer condition, perturbation sensitivity
(absolute and relative to the logits), prediction flip rate, layer
robustness, residual share, params, FLOPs, bytes, latency and training
stability, for each model side by side, with the candidate - baseline
delta, its paired bootstrap 95% interval (none from fewer than 20 units)
and, for accuracy, McNemar's exact p-value. A metric that cannot be
computed is null with a reason; one that cannot exist for the inputs is
also marked not applicable. Per layer: condition, residual share,
robustness drop and the singular values of each model's weights.

Models: strata's Arrow model files and safetensors of the MLP family run
in-process; ONNX models (.onnx) of any architecture run in ONNX Runtime,
the rows reshaped to the model's input ([N, 1, 8, 8] from 64 values a
row), with every metric that needs forward passes only (gradient metrics
not applicable, the Jacobian by central differences). An nn.Sequential
safetensors checkpoint without strata's metadata needs --activation.

--control adds an equal-budget control (the dense baseline fine-tuned with
the candidate's budget): every metric then also carries control,
delta_vs_control and ci95_vs_control, which separate the effect of the
structure from the effect of more training.

Logits mode compares outputs computed elsewhere, one row per example in
the order of --data: Arrow, Parquet, CSV, safetensors (one tensor, or one
named "logits") or .npy; an optional label column or tensor is checked.
The task metrics come with their intervals; params comes from the model
files given beside the logits (--candidate FILE, which also gives bytes,
FLOPs and layer condition) or from --candidate-params N; the metrics that
need a model to run are not applicable.

--train-log is the candidate's finetune output directory, for
training_stability (--baseline-train-log and --control-train-log for the
other models). Everything but latency_ms and wall_seconds is a function of
the inputs and --seed.

Flags:
` + flagUsages(c.flags(&defaults, new(logOptions)))
}

func (c *validateCommand) flags(cfg *validation.Config, lo *logOptions) *flagSet {
	fs := newFlagSet("validate", c.env, c.Usage)
	fs.StringVar(&cfg.Baseline, "baseline", cfg.Baseline, "baseline model (.arrow, .safetensors or .onnx; in the logits mode, read for its weights only)")
	fs.StringVar(&cfg.Candidate, "candidate", cfg.Candidate, "candidate model (.arrow, .safetensors or .onnx)")
	fs.StringVar(&cfg.Control, "control", cfg.Control, "equal-budget control: the dense baseline fine-tuned with the candidate's budget (without one a versus: control rule fails)")
	fs.StringVar(&cfg.BaselineLogits, "baseline-logits", cfg.BaselineLogits, "logits mode: the baseline's outputs (.arrow, .parquet, .csv, .safetensors or .npy)")
	fs.StringVar(&cfg.CandidateLogits, "candidate-logits", cfg.CandidateLogits, "logits mode: the candidate's outputs")
	fs.StringVar(&cfg.ControlLogits, "control-logits", cfg.ControlLogits, "logits mode: the control's outputs")
	fs.Int64Var(&cfg.BaselineParams, "baseline-params", cfg.BaselineParams, "logits mode: the baseline's parameter count, when no model file is given")
	fs.Int64Var(&cfg.CandidateParams, "candidate-params", cfg.CandidateParams, "logits mode: the candidate's parameter count")
	fs.Int64Var(&cfg.ControlParams, "control-params", cfg.ControlParams, "logits mode: the control's parameter count")
	fs.StringVar(&cfg.Data, "data", cfg.Data, "evaluation data (.arrow, .parquet, .csv, ...)")
	fs.StringVar(&cfg.Label, "label", cfg.Label, "target column of the data")
	fs.StringVar(&cfg.Out, "out", cfg.Out, "output directory")
	nameVar(fs, &cfg.Task, "task", "logits mode and ONNX models: classification or regression (default: regression for 1 output, else classification)")
	fs.IntVar(&cfg.Bootstrap, "bootstrap", cfg.Bootstrap, "paired bootstrap resamples per interval (0: no intervals)")
	fs.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "random seed (bootstrap, samples, noise)")
	fs.IntVar(&cfg.MaxJacobianSamples, "max-jacobian-samples", cfg.MaxJacobianSamples, "inputs whose Jacobian is computed (a seeded sample)")
	fs.Float64SliceVar(&cfg.Noise, "noise", cfg.Noise, "input noise levels, as shares of each feature's std (the middle one is the headline)")
	fs.Float64Var(&cfg.RobustnessEps, "robustness-eps", cfg.RobustnessEps, "relative Frobenius norm of the weight noise of layer_robustness")
	fs.IntVar(&cfg.RobustnessDraws, "robustness-draws", cfg.RobustnessDraws, "weight-noise draws per layer")
	fs.IntVar(&cfg.GradBatch, "grad-batch", cfg.GradBatch, "evaluation batch size of grad_norm_ratio")
	fs.IntVar(&cfg.LatencyBatch, "latency-batch", cfg.LatencyBatch, "rows per timed forward pass")
	fs.IntVar(&cfg.LatencyRuns, "latency-runs", cfg.LatencyRuns, "timing rounds (each runs every model once)")
	fs.IntVar(&cfg.LatencyWarmup, "latency-warmup", cfg.LatencyWarmup, "untimed passes per model before the rounds")
	fs.StringVar(&cfg.TrainLog, "train-log", cfg.TrainLog, "the candidate's finetune output directory (or train_log.arrow), for training_stability")
	fs.StringVar(&cfg.BaselineTrainLog, "baseline-train-log", cfg.BaselineTrainLog, "the baseline's finetune output directory")
	fs.StringVar(&cfg.ControlTrainLog, "control-train-log", cfg.ControlTrainLog, "the control's finetune output directory")
	fs.StringVar(&cfg.LRSweep, "lr-sweep", cfg.LRSweep, "lr_sweep.json of a learning-rate sweep (written by strata sweep --lrs) for lr_robustness")
	fs.IntVar(&cfg.SpikeWindow, "spike-window", cfg.SpikeWindow, "loss spike: steps of the trailing window")
	fs.Float64Var(&cfg.SpikeThreshold, "spike-threshold", cfg.SpikeThreshold, "loss spike: scaled MADs above the window's median")
	nameVar(fs, &cfg.Activation, "activation", "activation of an nn.Sequential safetensors model without strata's metadata: relu, gelu, tanh, sigmoid or identity (without it such a model is refused)")
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
