package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/strata-ml/strata/compute"
	"github.com/strata-ml/strata/stages"
)

type convertCommand struct{ env }

func (c *convertCommand) Usage() string {
	return `Usage: strata convert --model FILE --out DIR [flags]

Decomposes every selected 2-D weight W of a dense checkpoint (Arrow model
file or safetensors) into a structured trunk S plus a residual correction R.
Writes DIR/model.arrow, the dense materialisation in the input's format
(DIR/model.dense.arrow or DIR/model.dense.safetensors) and DIR/convert.json.

Families: ` + strings.Join(compute.TrunkFamilies, ", ") + `, or auto.

Flags:
` + flagUsages(c.flags(new(stages.DefaultConvertConfig()), new(logOptions)))
}

func (c *convertCommand) flags(cfg *stages.ConvertConfig, lo *logOptions) *flagSet {
	fs := newFlagSet("convert", c.env, c.Usage)
	fs.StringVar(&cfg.Model, "model", cfg.Model, "dense checkpoint to convert (.arrow or .safetensors)")
	fs.StringVar(&cfg.Out, "out", cfg.Out, "output directory")
	fs.StringVar(&cfg.Structure, "structure", cfg.Structure, "trunk family, or auto")
	fs.IntVar(&cfg.Blocks, "blocks", cfg.Blocks, "blocks b for monarch and blockdiag")
	fs.IntVar(&cfg.Rank, "rank", cfg.Rank, "monarch submatrix rank (0: min(out,in)/b^2), kronecker terms (0: 1) or lowrank trunk rank (0: min(out,in)/8)")
	fs.StringVar(&cfg.KronFactors, "kron-factors", cfg.KronFactors, "Kronecker factor shape M1xN1 (default: closest to square)")
	nameVar(fs, &cfg.Residual, "residual", "residual correction: lowrank, sparse or none")
	fs.IntVar(&cfg.ResidualRank, "residual-rank", cfg.ResidualRank, "rank of a lowrank residual")
	fs.Float64Var(&cfg.ResidualDensity, "residual-density", cfg.ResidualDensity, "share of entries a sparse residual keeps")
	fs.Float64Var(&cfg.TargetError, "target-error", cfg.TargetError, "auto: fewest parameters with relative error at most this")
	fs.Float64Var(&cfg.ParamBudget, "param-budget", cfg.ParamBudget, "auto: lowest error within this fraction of each dense layer's parameters")
	fs.StringSliceVar(&cfg.Include, "include", cfg.Include, "globs on tensor names to convert (default: every 2-D weight)")
	fs.StringSliceVar(&cfg.Exclude, "exclude", cfg.Exclude, "globs on tensor names to leave dense")
	fs.StringVar(&cfg.Layers, "layers", cfg.Layers, "convert only this shard of the selected weights, e.g. 0-3 or 0,2,5-7")
	nameVar(fs, &cfg.Activation, "activation", "activation of an nn.Sequential safetensors checkpoint without strata's metadata (without it such a checkpoint is refused)")
	fs.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "random seed (randomized SVDs)")
	lo.bind(fs)
	return fs
}

func (c *convertCommand) Run(ctx context.Context, args []string) error {
	cfg := stages.DefaultConvertConfig()
	var lo logOptions
	fs := c.flags(&cfg, &lo)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageErrorf("convert takes no positional arguments, got %q", fs.Args())
	}
	log, err := lo.logger(c.stderr)
	if err != nil {
		return err
	}
	cfg.Logger = log
	res, err := stages.Convert(ctx, cfg)
	if err != nil {
		return err
	}
	log.Info("convert done", "out", cfg.Out, "layers", res.Totals.Layers,
		"params", res.Totals.Params, "params_dense", res.Totals.ParamsDense, "ratio", fmt.Sprintf("%.3f", res.Totals.Ratio))
	return nil
}
