package cli

import (
	"context"

	"github.com/strata-ml/strata/stages"
)

type mergeCommand struct{ env }

func (c *mergeCommand) Usage() string {
	return `Usage: strata merge --out DIR SHARD_DIR...

Joins the output directories of 'strata convert --layers' runs on the same
model into one converted model in DIR, as one convert run would have written
(for an ONNX model: one structured model.onnx holding every shard's layers,
with model.input.onnx, model.arrow and model.materialized.onnx).

Flags:
` + flagUsages(c.flags(new(stages.MergeConfig), new(logOptions)))
}

func (c *mergeCommand) flags(cfg *stages.MergeConfig, lo *logOptions) *flagSet {
	fs := newFlagSet("merge", c.env, c.Usage)
	fs.StringVar(&cfg.Out, "out", cfg.Out, "output directory")
	lo.bind(fs)
	return fs
}

func (c *mergeCommand) Run(ctx context.Context, args []string) error {
	var cfg stages.MergeConfig
	var lo logOptions
	fs := c.flags(&cfg, &lo)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usageErrorf("merge needs at least one shard directory")
	}
	log, err := lo.logger(c.stderr)
	if err != nil {
		return err
	}
	cfg.Shards = fs.Args()
	res, err := stages.Merge(ctx, cfg)
	if err != nil {
		return err
	}
	log.Info("merge done", "out", cfg.Out, "shards", len(cfg.Shards), "layers", res.Totals.Layers)
	return nil
}
