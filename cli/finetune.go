package cli

import (
	"context"
	"fmt"

	"github.com/strata-ml/strata/stages"
)

type finetuneCommand struct{ env }

func (c *finetuneCommand) Usage() string {
	return `Usage: strata finetune (--model FILE | --init mlp:W0-W1-...-Wk[:ACT][+ln]) --train DATA --out DIR [flags]

Trains a model (decomposed or dense) on DATA, trunk S and correction R
jointly, against the model's own loss. With --init instead of --model it
creates and trains a fresh dense MLP (e.g. mlp:64-256-256-10:relu): that is
how a dense baseline is made. Writes DIR/model.arrow, the trained S + R
made dense (DIR/model.materialized.arrow, or .safetensors for a safetensors
model), DIR/train_log.arrow (per step: loss, lr, gradient norms; per epoch:
validation loss and accuracy) and DIR/finetune.json.

Features are standardised: a model keeps its own standardisation, a fresh
--init model gets one fitted on the training split (--standardize).
--warmup is a number of steps when >= 1 and a fraction of all steps when
< 1. --patience N stops after N epochs without a lower validation loss and
writes the best-validation weights (0: train every epoch, keep the last).

Checkpoints go to DIR/checkpoint every --checkpoint-every steps (0: every
epoch) and on SIGTERM or SIGINT, which then exit 1; rerun with --resume to
continue to the identical result. Progress goes to stderr.

Flags:
` + flagUsages(c.flags(new(stages.DefaultFinetuneConfig()), new(logOptions)))
}

func (c *finetuneCommand) flags(cfg *stages.FinetuneConfig, lo *logOptions) *flagSet {
	fs := newFlagSet("finetune", c.env, c.Usage)
	fs.StringVar(&cfg.Model, "model", cfg.Model, "model to train (.arrow or .safetensors)")
	fs.StringVar(&cfg.Init, "init", cfg.Init, "create a fresh dense MLP instead, e.g. mlp:64-256-256-10:relu (optional +ln)")
	nameVar(fs, &cfg.Task, "task", "task of an --init model: classification or regression (default classification)")
	fs.StringVar(&cfg.Train, "train", cfg.Train, "training data (.arrow, .parquet, .csv, ...)")
	fs.StringVar(&cfg.Valid, "valid", cfg.Valid, "validation data")
	fs.Float64Var(&cfg.ValidFraction, "valid-fraction", cfg.ValidFraction, "hold out this share of --train for validation (seeded)")
	fs.StringVar(&cfg.Label, "label", cfg.Label, "target column of the data")
	fs.StringVar(&cfg.Out, "out", cfg.Out, "output directory")
	fs.IntVar(&cfg.Epochs, "epochs", cfg.Epochs, "epochs over the training data")
	fs.IntVar(&cfg.BatchSize, "batch-size", cfg.BatchSize, "rows per mini-batch")
	fs.Float64Var(&cfg.LR, "lr", cfg.LR, "base learning rate (warm-up, then cosine decay to 0)")
	fs.Float64Var(&cfg.Warmup, "warmup", cfg.Warmup, "warm-up: steps if >= 1, fraction of all steps if < 1")
	fs.StringVar(&cfg.Optimizer, "optimizer", cfg.Optimizer, "optimizer: sgd or adamw")
	fs.Float64Var(&cfg.Momentum, "momentum", cfg.Momentum, "SGD momentum")
	fs.Float64Var(&cfg.WeightDecay, "weight-decay", cfg.WeightDecay, "weight decay of weights and factors (not biases and norms)")
	fs.Float64Var(&cfg.ResidualL2, "residual-l2", cfg.ResidualL2, "L2 penalty on the correction factors R")
	fs.Float64Var(&cfg.Clip, "clip", cfg.Clip, "clip the global gradient norm to this (0: off)")
	fs.BoolVar(&cfg.Retract, "retract", cfg.Retract, "re-project orthogonal trunks after each step (polar retraction)")
	nameVar(fs, &cfg.Freeze, "freeze", "keep trunk or correction fixed (no update, no decay)")
	fs.StringVar(&cfg.FactorLR, "factor-lr", cfg.FactorLR, "per-factor learning rates: auto, mup or none")
	fs.IntVar(&cfg.Patience, "patience", cfg.Patience, "early stopping after this many epochs without a better validation loss (0: off)")
	fs.StringVar(&cfg.Standardize, "standardize", cfg.Standardize, "feature standardisation: auto, fit (on the training split) or none")
	fs.StringVar(&cfg.Precision, "precision", cfg.Precision, "training precision: float32 or float64")
	fs.IntVar(&cfg.Shards, "shards", cfg.Shards, "parallel row blocks per batch (part of the numerics, not the CPU count)")
	fs.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "random seed (initialisation, split, shuffles)")
	fs.IntVar(&cfg.CheckpointEvery, "checkpoint-every", cfg.CheckpointEvery, "checkpoint every N steps (0: every epoch)")
	fs.BoolVar(&cfg.Resume, "resume", cfg.Resume, "continue from DIR/checkpoint when there is one")
	nameVar(fs, &cfg.Activation, "activation", "activation of an nn.Sequential safetensors model without strata's metadata: relu, gelu, tanh, sigmoid or identity (without it such a model is refused)")
	lo.bind(fs)
	return fs
}

func (c *finetuneCommand) Run(ctx context.Context, args []string) error {
	cfg := stages.DefaultFinetuneConfig()
	var lo logOptions
	fs := c.flags(&cfg, &lo)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageErrorf("finetune takes no positional arguments, got %q", fs.Args())
	}
	pr := newProgress(c.stderr, "finetune")
	defer pr.finish()
	log, err := lo.logger(pr.logWriter())
	if err != nil {
		return err
	}
	cfg.Logger = log
	if pr.active() {
		// The bar shows every step; the log keeps the epoch lines.
		cfg.LogInterval = -1
		cfg.Progress = func(p stages.FinetuneProgress) {
			desc := fmt.Sprintf("epoch %d/%d loss %.4f", p.Epoch, p.Epochs, p.Loss)
			pr.update(p.Step, p.TotalSteps, desc)
		}
	}
	res, err := stages.Finetune(ctx, cfg)
	if err != nil {
		return err
	}
	attrs := []any{"out", cfg.Out, "steps", res.Steps, "epochs", res.Epochs, "final_train_loss", float64(res.FinalTrainLoss),
		"samples_per_second", fmt.Sprintf("%.0f", res.SamplesPerSecond)}
	if v := res.FinalValid; v != nil {
		attrs = append(attrs, "valid_loss", float64(v.Loss), "valid_accuracy", float64(v.Accuracy))
	}
	if res.EarlyStopped {
		attrs = append(attrs, "early_stopped", true, "restored_epoch", res.RestoredEpoch)
	}
	log.Info("finetune done", attrs...)
	return nil
}
