package cli

import (
	"context"
	"fmt"
	"runtime/debug"
	"strings"

	"github.com/strata-ml/strata/compute"
	"github.com/strata-ml/strata/stages"
)

type convertCommand struct{ env }

func (c *convertCommand) Usage() string {
	return `Usage: strata convert --model FILE --out DIR [flags]

Decomposes every selected weight W of a dense model into a structured
trunk S plus a residual correction R. The model is an Arrow model file, a
safetensors checkpoint or an ONNX model (.onnx, opset 13 or later).

Writes into DIR:
  ONNX input:         model.onnx (the structured model: each converted
                      node replaced by its S + R subgraph), model.input.onnx
                      (the input, byte for byte), model.arrow (the factors)
                      and model.materialized.onnx (S + R made dense)
  Arrow, safetensors: model.arrow (the decomposed model) and
                      model.materialized.arrow or .safetensors (S + R made
                      dense, in the input's format)
  and convert.json: per layer the family, parameters and errors, and every
  selected weight kept dense with the reason.

Weights: 2-D weights ([out, in]; [in, out] with --weight-layout in-out or
as detected), convolution weights [out, in, k...] read as out x (in k...),
and in an ONNX graph the weights of Gemm, MatMul (B an initializer,
[in, out]) and Conv nodes. --include/--exclude are globs (path.Match: *
does not cross a "/") on the weight tensor's name, the initializer's in an
ONNX model. A convolution with a kernel of more than one element is
factored by the low-rank family only: --conv-structure lowrank or auto
(the default when --structure is lowrank or auto; with any other
--structure it is kept dense). A layer whose S + R would not have fewer
parameters than its dense weight is kept dense, with a warning, unless
--allow-larger.

Data-aware conversion (--calibration DATA): convert runs the model on the
rows (strata's engine for an MLP, ONNX Runtime for an ONNX model; a
generic checkpoint is refused), collects every converted layer's input
activations X and fits S + R to minimise ||(W - S - R) X||_F. On a share of
the rows held out from the fits, convert.json compares per layer the
output error of the weight-only and the data-aware fit, and writes the
data-aware one unless its held-out error is the higher. With --structure
auto, --model-budget F (or --loss-tolerance L) chooses every layer's
structure over the whole model from the measured increase of the model's
loss when that layer alone is converted.

Condition numbers: convert.json gives each layer's condition_dense and
condition_trunk, exact, for layers up to 2048 on their smaller side; above,
they are null with a condition_note unless --condition estimate (an
estimate costing about as long as the decomposition); validate reports
layer_condition for every layer.

Families: ` + strings.Join(compute.TrunkFamilies, ", ") + `, or auto.

Flags:
` + flagUsages(c.flags(new(stages.DefaultConvertConfig()), new(logOptions)))
}

func (c *convertCommand) flags(cfg *stages.ConvertConfig, lo *logOptions) *flagSet {
	fs := newFlagSet("convert", c.env, c.Usage)
	fs.StringVar(&cfg.Model, "model", cfg.Model, "dense model to convert (.arrow, .safetensors or .onnx)")
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
	fs.StringVar(&cfg.Calibration, "calibration", cfg.Calibration, "data file (.arrow, .parquet, .csv) the model is run on: fit every layer to the activations it sees (data-aware)")
	fs.IntVar(&cfg.CalibrationRows, "calibration-rows", cfg.CalibrationRows, "calibration rows used, a seeded sample of the file (0: 1024)")
	fs.Float64Var(&cfg.CalibrationHoldout, "calibration-holdout", cfg.CalibrationHoldout, "share of the calibration rows held out to measure errors and losses (0: 0.25)")
	fs.StringVar(&cfg.CalibrationFit, "calibration-fit", cfg.CalibrationFit, "joint: trunk and correction fitted to the activations; residual: trunk by the weights, only the correction R (default joint)")
	fs.IntVar(&cfg.CalibrationSweeps, "calibration-sweeps", cfg.CalibrationSweeps, "sweeps per round of the iterative data-aware trunk fits: monarch, kronecker (0: 20)")
	fs.Float64Var(&cfg.CalibrationRidge, "calibration-ridge", cfg.CalibrationRidge, "relative ridge of the data-aware fits: alpha x the mean squared activation (0: 0.01)")
	fs.BoolVar(&cfg.CalibrationCV, "calibration-cv", cfg.CalibrationCV, "choose the ridge per layer by two-fold cross-validation from 0.01, 0.1, 1, 10 (eight more fits per layer)")
	fs.StringVar(&cfg.Label, "label", cfg.Label, "target column of the calibration data (default label)")
	fs.Float64Var(&cfg.ModelBudget, "model-budget", cfg.ModelBudget, "auto over the whole model: least measured loss increase within this fraction of the selected layers' dense parameters (needs --calibration)")
	fs.Float64Var(&cfg.LossTolerance, "loss-tolerance", cfg.LossTolerance, "auto over the whole model: fewest parameters whose measured loss increase is at most this (needs --calibration)")
	fs.StringSliceVar(&cfg.AutoFamilies, "auto-families", cfg.AutoFamilies, "trunk families auto tries (default: all)")
	fs.StringVar(&cfg.ConvStructure, "conv-structure", cfg.ConvStructure, "structure of k x k convolutions: lowrank or auto (default: --structure when lowrank or auto, else kept dense)")
	fs.StringSliceVar(&cfg.Include, "include", cfg.Include, "globs on weight tensor names (ONNX: initializer names) to convert (default: every weight); a named weight that cannot be converted is an error")
	fs.StringSliceVar(&cfg.Exclude, "exclude", cfg.Exclude, "globs on weight tensor names to leave dense")
	fs.StringVar(&cfg.Layers, "layers", cfg.Layers, "convert only this shard of the selected weights, e.g. 0-3 or 0,2,5-7")
	fs.StringVar(&cfg.WeightLayout, "weight-layout", cfg.WeightLayout, "2-D weights of a generic checkpoint: out-in, in-out (Conv1D) or auto (in-out when the bias matches the second dimension)")
	fs.StringVar(&cfg.Condition, "condition", cfg.Condition, "condition numbers in convert.json: auto (layers up to 2048 on their smaller side, exact), estimate (every layer; estimated above 2048, about as long as the decomposition) or off")
	fs.BoolVar(&cfg.AllowLarger, "allow-larger", cfg.AllowLarger, "convert layers whose S + R is not smaller than the dense weight (default: keep them dense)")
	nameVar(fs, &cfg.Activation, "activation", "activation of an nn.Sequential safetensors checkpoint without strata's metadata (without it such a checkpoint is refused)")
	fs.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "random seed (randomized SVDs)")
	lo.bind(fs)
	return fs
}

// convertGCPercent is the GOGC convert runs with: the peak heap stays
// within a tenth above the live matrices.
const convertGCPercent = 10

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
	// convert's heap is a few large pointer-free matrices (the weight in
	// float64, the factors, the materialised copy): a GC cycle costs
	// little, and with the default GOGC the heap grows to twice them.
	defer debug.SetGCPercent(debug.SetGCPercent(convertGCPercent))
	res, err := stages.Convert(ctx, cfg)
	if err != nil {
		return err
	}
	log.Info("convert done", "out", cfg.Out, "model", res.Outputs.Model, "layers", res.Totals.Layers, "kept_dense", len(res.Skipped),
		"params", res.Totals.Params, "params_dense", res.Totals.ParamsDense, "ratio", fmt.Sprintf("%.3f", res.Totals.Ratio))
	return nil
}
