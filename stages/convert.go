package stages

import (
	"context"
	"hash/fnv"
	"log/slog"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/compute"
	"github.com/strata-ml/strata/internal/inputerr"
	"github.com/strata-ml/strata/internal/provenance"
	"github.com/strata-ml/strata/modelmap"
	"github.com/strata-ml/strata/validation"
)

// StructureAuto asks convert to choose the family per layer.
const StructureAuto = "auto"

// Weight layouts of ConvertConfig.WeightLayout.
const (
	WeightLayoutAuto  = "auto"
	WeightLayoutOutIn = arrowio.LayoutOutIn
	WeightLayoutInOut = arrowio.LayoutInOut
)

// ConvertSchemaVersion is the schema_version of convert.json. Version 2
// names the outputs model (the structured model), factors and
// materialized (version 1 had model and dense) and adds skipped and
// auto_missed; version 3 adds calibration and model_auto, and per layer
// calibration and choice (data-aware conversion), and seconds.
const ConvertSchemaVersion = 3

// ConvertConfig configures Convert. The JSON form is recorded in
// convert.json. The fields with a yaml key are the options of a pilot or
// sweep config's convert section (and of a sweep candidate); the pilot
// sets the others per run (Model and Out are never empty in convert.json).
type ConvertConfig struct {
	// Model is the dense model: an Arrow model file, a safetensors
	// checkpoint or an ONNX model (.onnx).
	Model string `json:"model,omitempty"`
	// Out is the output directory.
	Out string `json:"out,omitempty"`
	// Structure is a trunk family (see compute.TrunkFamilies) or "auto".
	Structure string `yaml:"structure" json:"structure"`
	// Blocks is b for monarch and blockdiag (capped at the layer's
	// smaller dimension).
	Blocks int `yaml:"blocks" json:"blocks"`
	// Rank is the monarch submatrix rank (0: min(out, in) / b^2, the
	// spec's 2n^2/b parameters), the kronecker term count (0: 1) or the
	// lowrank trunk rank (0: min(out, in) / 8).
	Rank int `yaml:"rank" json:"rank"`
	// KronFactors is the shape "m1xn1" of the Kronecker factors A_i
	// (empty: closest to square).
	KronFactors string `yaml:"kron_factors" json:"kron_factors,omitempty"`
	// Residual is lowrank, sparse or none.
	Residual compute.ResidualKind `yaml:"residual" json:"residual"`
	// ResidualRank is the rank of a lowrank residual.
	ResidualRank int `yaml:"residual_rank" json:"residual_rank"`
	// ResidualDensity is the share of entries a sparse residual keeps.
	ResidualDensity float64 `yaml:"residual_density" json:"residual_density"`
	// TargetError and ParamBudget drive "auto": the fewest parameters
	// with relative error <= TargetError, or the lowest error with at
	// most ParamBudget (a fraction of the dense layer) parameters.
	TargetError float64 `yaml:"target_error" json:"target_error,omitempty"`
	ParamBudget float64 `yaml:"param_budget" json:"param_budget,omitempty"`
	// ConvStructure is the structure of the convolutions that are not a
	// map of each position's channels alone (a kernel of more than one
	// element; in an ONNX graph also a 1x1 kernel with strides or pads),
	// which only the low-rank family factors: "lowrank", or "auto" (auto
	// restricted to a low-rank trunk). Empty means Structure when that is
	// lowrank or auto; with any other Structure such convolutions are kept
	// dense and listed in convert.json's skipped, with the reason.
	ConvStructure string `yaml:"conv_structure" json:"conv_structure,omitempty"`
	// Include and Exclude are globs (path.Match, where * does not cross a
	// "/") on the names of weight tensors (ONNX: weight initializers) that
	// select the weights to convert: a weight is selected when it matches
	// an Include glob (every weight when Include is empty) and no Exclude
	// glob. A weight that an Include glob names but that cannot be
	// converted is bad input; without Include it is skipped with the
	// reason.
	Include []string `yaml:"include" json:"include,omitempty"`
	Exclude []string `yaml:"exclude" json:"exclude,omitempty"`
	// Layers selects a shard of the selected weights by position, e.g.
	// "0-3" or "0,2,5-7" (0-based, inclusive); empty means all.
	Layers string `json:"layers,omitempty"`
	// WeightLayout says how a generic checkpoint (safetensors or Arrow)
	// stores its 2-D weights: "out-in" ([out, in], nn.Linear), "in-out"
	// ([in, out], a Conv1D) or "auto" (also empty): in-out for a weight
	// whose bias "<layer>.bias" has as many values as its second dimension
	// and not its first, out-in otherwise. An ONNX graph states each
	// weight's layout and an MLP's weights are out-in.
	WeightLayout string `yaml:"weight_layout" json:"weight_layout,omitempty"`
	// AllowLarger converts a layer whose S + R has at least as many
	// parameters as its dense weight; by default such a layer is kept
	// dense, listed in convert.json's skipped and named in a warning.
	AllowLarger bool `yaml:"allow_larger" json:"allow_larger,omitempty"`
	// Calibration makes the conversion data-aware: a data file (Arrow,
	// Parquet or CSV, read as finetune reads its data; the features as the
	// model's input, before any standardisation it records) on which
	// convert runs the model and fits every layer to the activations it
	// sees, minimising the output error ||(W - S - R) X||_F instead of
	// the weight error (docs/CALIBRATION.md). Empty: weight-only. In a
	// pilot or sweep config, true (or train) means the pilot's training
	// data, false none, anything else a file (relative to the config).
	Calibration string `yaml:"calibration" json:"calibration,omitempty"`
	// CalibrationRows is the number of calibration rows used, a seeded
	// sample when the file has more (0: 1024).
	CalibrationRows int `yaml:"calibration_rows" json:"calibration_rows,omitempty"`
	// CalibrationHoldout is the share of the calibration rows held out
	// from the fits, on which each layer's output errors (and auto's
	// losses) are measured (0: 0.25).
	CalibrationHoldout float64 `yaml:"calibration_holdout" json:"calibration_holdout,omitempty"`
	// CalibrationFit is what the activations fit: "joint" (also empty),
	// trunk and correction alternately (compute.DecomposeCalibrated), or
	// "residual", the trunk by the weights and only the correction to the
	// activations (compute.FitResidual: the training-free correction).
	CalibrationFit string `yaml:"calibration_fit" json:"calibration_fit,omitempty"`
	// CalibrationSweeps bounds the sweeps of each iterative data-aware
	// trunk fit (monarch, kronecker, orthogonal when out < in) per round
	// (0: 20).
	CalibrationSweeps int `yaml:"calibration_sweeps" json:"calibration_sweeps,omitempty"`
	// CalibrationRidge is the relative ridge alpha of every data-aware
	// fit (compute.Calibration: alpha times the mean squared activation
	// added to the second moment, pulling the fit towards the weights; 0:
	// compute.DefaultRidge, 0.01). CalibrationCV instead chooses it per
	// layer by two-fold cross-validation on the fit rows from 0.01, 0.1, 1
	// and 10, at the cost of eight more fits per layer.
	CalibrationRidge float64 `yaml:"calibration_ridge" json:"calibration_ridge,omitempty"`
	CalibrationCV    bool    `yaml:"calibration_cv" json:"calibration_cv,omitempty"`
	// ModelBudget and LossTolerance make --structure auto choose every
	// layer's structure for the whole model from the measured increase of
	// the model's loss on the held-out calibration rows when that layer
	// alone is converted (Calibration is required): the least total
	// increase with at most ModelBudget (a fraction of the selected
	// layers' dense parameters) parameters, or the fewest parameters whose
	// total increase is at most LossTolerance (in the model's loss units,
	// mean cross-entropy or squared error). Exclusive with TargetError and
	// ParamBudget.
	ModelBudget   float64 `yaml:"model_budget" json:"model_budget,omitempty"`
	LossTolerance float64 `yaml:"loss_tolerance" json:"loss_tolerance,omitempty"`
	// AutoFamilies restricts the trunk families auto tries (empty: every
	// family).
	AutoFamilies []string `yaml:"auto_families" json:"auto_families,omitempty"`
	// Label is the target column of the calibration data (empty:
	// "label"); a pilot sets its own.
	Label string `json:"label,omitempty"`
	// Condition says which layers get condition_dense and condition_trunk
	// in convert.json: "auto" (also empty) the layers whose smaller side
	// is at most compute.ConditionExactLimit (2048), where they are exact
	// (one values-only SVD each); "estimate" every layer, estimated above
	// the limit (an LU of the layer and Krylov passes, about as long as
	// the decomposition itself at 4096); "off" none. A layer without them
	// has null values and its condition_note says why; validate reports
	// layer_condition for every layer either way.
	Condition string `yaml:"condition" json:"condition,omitempty"`
	// Activation is used for a safetensors nn.Sequential checkpoint with
	// no strata.architecture metadata.
	Activation compute.Activation `json:"activation,omitempty"`
	// Seed drives the randomized SVDs.
	Seed uint64 `json:"seed"`
	// Logger receives progress; nil discards it.
	Logger *slog.Logger `json:"-"`
}

// Condition policies of ConvertConfig.Condition.
const (
	ConditionAuto     = "auto"
	ConditionEstimate = "estimate"
	ConditionOff      = "off"
)

// DefaultConvertConfig returns the defaults the CLI starts from.
func DefaultConvertConfig() ConvertConfig {
	return ConvertConfig{
		Structure:       compute.FamilyMonarch,
		Blocks:          4,
		Residual:        compute.ResidualLowRank,
		ResidualRank:    8,
		ResidualDensity: 0.01,
	}
}

// ConvertedLayer describes one converted weight in convert.json.
type ConvertedLayer struct {
	Name   string `json:"name"`
	Tensor string `json:"tensor"`
	// Node and Op are the ONNX node the weight belongs to.
	Node string `json:"node,omitempty"`
	Op   string `json:"op,omitempty"`
	// Shape is W's, out x in: a convolution's in is its input channels
	// times the kernel's size (Kernel), a weight stored [in, out] (Layout
	// in-out) is read transposed.
	Shape              [2]int                   `json:"shape"`
	Layout             string                   `json:"layout,omitempty"`
	Kernel             []int64                  `json:"kernel,omitempty"`
	Family             string                   `json:"family"`
	Hyperparameters    compute.Spec             `json:"hyperparameters"`
	ParamsDense        int                      `json:"params_dense"`
	Params             int                      `json:"params"`
	ParamsTrunk        int                      `json:"params_trunk"`
	ParamsCorrection   int                      `json:"params_correction"`
	RelativeError      validation.NullableFloat `json:"relative_error"`
	TrunkRelativeError validation.NullableFloat `json:"trunk_relative_error"`
	ConditionDense     validation.NullableFloat `json:"condition_dense"`
	ConditionTrunk     validation.NullableFloat `json:"condition_trunk"`
	// ConditionExact is false when the layer was too large for a full
	// SVD and the condition numbers are estimates (compute.Condition), or
	// when they were not computed.
	ConditionExact bool `json:"condition_exact"`
	// ConditionNote says why condition_dense and condition_trunk are null
	// when convert did not compute them (ConvertConfig.Condition); empty
	// when it did (null then means +Inf: a singular matrix).
	ConditionNote string              `json:"condition_note,omitempty"`
	Seconds       float64             `json:"seconds"`
	Auto          *compute.AutoResult `json:"auto,omitempty"`
	// Calibration compares the weight-only and the data-aware fit on the
	// held-out calibration rows (with --calibration).
	Calibration *LayerCalibration `json:"calibration,omitempty"`
}

// Reasons a selected weight is not converted (SkippedWeight.Code).
const (
	// SkipLarger: S + R would have at least as many parameters as the
	// dense weight (ConvertConfig.AllowLarger converts it anyway).
	SkipLarger = "larger"
	// SkipKernel: a convolution that only the low-rank family factors,
	// with another structure asked for (ConvertConfig.ConvStructure).
	SkipKernel = "kernel"
	// SkipGraph: the ONNX graph does not let strata replace the weight's
	// node (tied weights, a Cast on the way, a grouped convolution, an
	// element type other than FLOAT, ...; onnx.Model.Linears).
	SkipGraph = "graph"
	// SkipAuto: the whole-model assignment keeps the layer dense (its
	// measured loss increase costs more than its parameters save).
	SkipAuto = "auto"
)

// SkippedWeight is a selected weight that convert keeps dense, with the
// reason.
type SkippedWeight struct {
	Tensor string `json:"tensor"`
	Node   string `json:"node,omitempty"`
	Op     string `json:"op,omitempty"`
	Code   string `json:"code"`
	Reason string `json:"reason"`
	// ParamsDense and Params are the dense weight's parameters and those
	// S + R would have (SkipLarger only).
	ParamsDense int `json:"params_dense,omitempty"`
	Params      int `json:"params,omitempty"`
}

// ConvertTotals sums the parameters over the converted layers.
type ConvertTotals struct {
	Layers      int     `json:"layers"`
	ParamsDense int     `json:"params_dense"`
	Params      int     `json:"params"`
	Ratio       float64 `json:"ratio"`
}

// ConvertResult is convert.json.
type ConvertResult struct {
	SchemaVersion int             `json:"schema_version"`
	Tool          provenance.Tool `json:"tool"`
	Input         provenance.File `json:"input"`
	Config        ConvertConfig   `json:"config"`
	// Format is the input's: arrow, safetensors or onnx.
	Format   string           `json:"format"`
	Selected []string         `json:"selected"`
	Layers   []ConvertedLayer `json:"layers"`
	// Skipped lists the selected weights kept dense, by tensor name.
	Skipped []SkippedWeight `json:"skipped"`
	// AutoMissed names the layers for which --structure auto found no
	// candidate that meets --target-error or --param-budget; each got
	// auto's best effort (or was kept dense, see Skipped). Pilot and Sweep
	// treat such a candidate as failed (MissedTarget).
	AutoMissed []string `json:"auto_missed,omitempty"`
	// Calibration describes the data-aware conversion's rows (with
	// --calibration).
	Calibration *ConvertCalibration `json:"calibration,omitempty"`
	// ModelAuto is the whole-model assignment (with --model-budget or
	// --loss-tolerance).
	ModelAuto *ModelAuto     `json:"model_auto,omitempty"`
	Totals    ConvertTotals  `json:"totals"`
	Outputs   ConvertOutputs `json:"outputs"`
	// Seconds is the wall time of the run (it varies from run to run).
	Seconds float64 `json:"seconds"`
}

// ConvertOutputs names the files Convert wrote, relative to Out.
type ConvertOutputs struct {
	// Model is the structured model, what a pipeline fine-tunes,
	// validates and promotes: model.onnx (each converted node replaced by
	// its S + R subgraph, see package lowering) for an ONNX input, else
	// the factors model file.
	Model string `json:"model"`
	// Factors is model.arrow: every converted layer's trunk and correction
	// factors with the architecture (for an ONNX input, the converted
	// layers and their biases only), what strata finetune and
	// strata export --factors read.
	Factors string `json:"factors"`
	// Materialized is S + R made dense, in the input's format:
	// model.materialized.<arrow|safetensors|onnx> (MaterializedName).
	Materialized string `json:"materialized"`
	// Input is the ONNX input copied byte for byte, model.input.onnx;
	// empty for other formats.
	Input  string `json:"input,omitempty"`
	Report string `json:"report"`
}

// MissedTarget returns an error naming the layers that --structure auto
// converted without meeting its target error or budget, or nil when there
// are none. It wraps ErrInput: the same model and config miss again.
func (r *ConvertResult) MissedTarget() error {
	if ma := r.ModelAuto; ma != nil && !ma.Met {
		goal, value := "{model_budget}", ma.ModelBudget
		if ma.LossTolerance > 0 {
			goal, value = "{loss_tolerance}", ma.LossTolerance
		}
		return inputerr.Fieldf("", "{structure} auto missed "+goal+" %g over the model: %s", value, ma.Missed)
	}
	if len(r.AutoMissed) == 0 {
		return nil
	}
	goal, value := "{target_error}", r.Config.TargetError
	if r.Config.ParamBudget > 0 {
		goal, value = "{param_budget}", r.Config.ParamBudget
	}
	return inputerr.Fieldf("", "{structure} auto missed "+goal+" %g on %d layers (%s): relax it or choose a structure",
		value, len(r.AutoMissed), strings.Join(r.AutoMissed, ", "))
}

// MaterializedName is the name of the dense copy of an S + R model that
// convert, merge and finetune write in the given format (arrow,
// safetensors or onnx): S + R made dense, never the input.
func MaterializedName(format string) string { return "model.materialized." + format }

// InputCopyName is the name of the byte copy of an ONNX input that
// convert keeps beside the structured model.
const InputCopyName = "model.input.onnx"

// Convert decomposes the selected weights of cfg.Model into S + R and
// writes, in Out: for an ONNX model, model.onnx (the structured model),
// model.input.onnx (the input, byte for byte), model.arrow (the factors)
// and model.materialized.onnx; for an Arrow model file or a safetensors
// checkpoint, model.arrow (the decomposed model) and its dense copy in
// the input's format (model.materialized.arrow or .safetensors); and
// convert.json. A layer whose S + R would not be smaller than its dense
// weight is kept dense unless cfg.AllowLarger. Bad input returns an error
// wrapping ErrInput and writes nothing.
func Convert(ctx context.Context, cfg ConvertConfig) (*ConvertResult, error) {
	start := time.Now()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	outDir, err := claimOutput("convert", "out", cfg.Out)
	if err != nil {
		return nil, err
	}
	defer outDir.release()
	format, err := modelFormat(cfg.Model)
	if err != nil {
		return nil, err
	}
	convert := convertCheckpoint
	if format == FormatONNX {
		convert = convertONNX
	}
	return convert(ctx, cfg, start)
}

// newConvertResult starts the result of a run on input.
func newConvertResult(cfg ConvertConfig, input provenance.File, format string) *ConvertResult {
	res := &ConvertResult{SchemaVersion: ConvertSchemaVersion, Tool: provenance.Version(), Input: input, Config: cfg, Format: format}
	res.Outputs = ConvertOutputs{Model: "model.arrow", Factors: "model.arrow", Materialized: MaterializedName(format), Report: "convert.json"}
	if format == FormatONNX {
		res.Outputs.Model, res.Outputs.Input = "model.onnx", InputCopyName
	}
	return res
}

// finish sorts the skipped weights and the layers auto missed its goal on
// by name (so that a merge of shards gives the report of one run), totals
// the converted layers and logs the misses.
func (r *ConvertResult) finish(log *slog.Logger) {
	slices.SortStableFunc(r.Skipped, func(a, b SkippedWeight) int { return strings.Compare(a.Tensor, b.Tensor) })
	slices.Sort(r.AutoMissed)
	r.Totals = ConvertTotals{Layers: len(r.Layers)}
	for _, l := range r.Layers {
		r.Totals.ParamsDense += l.ParamsDense
		r.Totals.Params += l.Params
	}
	if r.Totals.ParamsDense > 0 {
		r.Totals.Ratio = float64(r.Totals.Params) / float64(r.Totals.ParamsDense)
	}
	if err := r.MissedTarget(); err != nil {
		log.Warn(err.Error(), "layers", r.AutoMissed)
	}
}

func (cfg *ConvertConfig) validate() error {
	if cfg.Model == "" {
		return inputerr.Fieldf("convert", "{model} is required")
	}
	if cfg.Out == "" {
		return inputerr.Fieldf("convert", "{out} is required")
	}
	if err := cfg.validateCalibration(); err != nil {
		return err
	}
	switch {
	case cfg.wholeModel():
	case cfg.Structure == StructureAuto:
		if err := cfg.autoConfig().Validate(); err != nil {
			return inputerr.Fieldf("convert", "{structure} auto ({target_error}, {param_budget}): %w", err)
		}
	default:
		if !slices.Contains(compute.TrunkFamilies, cfg.Structure) {
			return inputerr.Fieldf("convert", "{structure} %q: want auto or one of %s", cfg.Structure, strings.Join(compute.TrunkFamilies, ", "))
		}
	}
	switch cfg.ConvStructure {
	case "", compute.FamilyLowRank:
	case StructureAuto:
		if err := cfg.autoConfig().Validate(); err != nil && !cfg.wholeModel() {
			return inputerr.Fieldf("convert", "{conv_structure} auto ({target_error}, {param_budget}): %w", err)
		}
	default:
		return inputerr.Fieldf("convert", "{conv_structure} %q: want lowrank or auto (only the low-rank family factors a convolution)", cfg.ConvStructure)
	}
	switch cfg.Condition {
	case "", ConditionAuto, ConditionEstimate, ConditionOff:
	default:
		return inputerr.Fieldf("convert", "{condition} %q: want auto, estimate or off", cfg.Condition)
	}
	switch cfg.WeightLayout {
	case "", WeightLayoutAuto, WeightLayoutOutIn, WeightLayoutInOut:
	default:
		return inputerr.Fieldf("convert", "{weight_layout} %q: want auto, out-in or in-out", cfg.WeightLayout)
	}
	if !cfg.Residual.Valid() {
		return inputerr.Fieldf("convert", "{residual} %q: want %s", cfg.Residual, compute.JoinNames(compute.ResidualKinds))
	}
	if cfg.Residual == compute.ResidualSparse && !(cfg.ResidualDensity > 0 && cfg.ResidualDensity <= 1) {
		return inputerr.Fieldf("convert", "{residual_density} %g: want (0, 1]", cfg.ResidualDensity)
	}
	if cfg.Blocks < 0 || cfg.Rank < 0 || cfg.ResidualRank < 0 {
		return inputerr.Fieldf("convert", "{blocks}, {rank} and {residual_rank} must not be negative")
	}
	if _, err := parseKronFactors(cfg.KronFactors); err != nil {
		return err
	}
	for _, g := range append(append([]string(nil), cfg.Include...), cfg.Exclude...) {
		if _, err := path.Match(g, ""); err != nil {
			return inputerr.Errorf("convert: bad glob %q: %v", g, err)
		}
	}
	return nil
}

// autoConfig is what --structure auto asks of compute.Auto.
func (cfg *ConvertConfig) autoConfig() compute.AutoConfig {
	return compute.AutoConfig{TargetError: cfg.TargetError, ParamBudget: cfg.ParamBudget, Families: cfg.AutoFamilies}
}

// selects reports whether the globs select the weight tensor name.
func (cfg *ConvertConfig) selects(name string) bool {
	return (len(cfg.Include) == 0 || matchAny(cfg.Include, name)) && !matchAny(cfg.Exclude, name)
}

// asked reports whether an Include glob names the weight tensor name (and
// no Exclude glob drops it): the user asked for it by name.
func (cfg *ConvertConfig) asked(name string) bool {
	return len(cfg.Include) > 0 && cfg.selects(name)
}

// noneSelected is the error for a selection that matches no weight.
func (cfg *ConvertConfig) noneSelected() error {
	return inputerr.Fieldf("convert", "%s: no weight matches {include} %q {exclude} %q", cfg.Model, cfg.Include, cfg.Exclude)
}

func matchAny(globs []string, name string) bool {
	for _, g := range globs {
		if ok, _ := path.Match(g, name); ok {
			return true
		}
	}
	return false
}

// parseShard parses a --layers selection of positions in [0, n).
func parseShard(s string, n int) ([]int, error) {
	if s == "" {
		idx := make([]int, n)
		for i := range idx {
			idx[i] = i
		}
		return idx, nil
	}
	seen := map[int]bool{}
	var idx []int
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a, err1 := strconv.Atoi(lo)
		b := a
		var err2 error
		if isRange {
			b, err2 = strconv.Atoi(hi)
		}
		if err1 != nil || err2 != nil || a < 0 || b < a {
			return nil, inputerr.Fieldf("", "{layers} %q: want positions like 0-3 or 0,2,5-7", s)
		}
		if b >= n {
			return nil, inputerr.Fieldf("", "{layers} %q: position %d out of range, %d weights are selected (0-%d)", s, b, n, n-1)
		}
		for i := a; i <= b; i++ {
			if !seen[i] {
				seen[i] = true
				idx = append(idx, i)
			}
		}
	}
	return idx, nil
}

func parseKronFactors(s string) ([2]int, error) {
	if s == "" {
		return [2]int{}, nil
	}
	a, b, ok := strings.Cut(s, "x")
	m1, err1 := strconv.Atoi(a)
	n1, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil || m1 < 1 || n1 < 1 {
		return [2]int{}, inputerr.Fieldf("", "{kron_factors} %q: want M1xN1, e.g. 8x8", s)
	}
	return [2]int{m1, n1}, nil
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

// layerSeed derives a layer's seed from the run seed and the tensor name,
// so a shard converts a layer exactly as a full run does.
func layerSeed(seed uint64, name string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	return seed ^ h.Sum64()
}

// writeDense writes the dense materialisation of an Arrow or safetensors
// model in the input's format.
func writeDense(path string, lm *loadedModel, dense *arrowio.Model) error {
	if lm.format == FormatArrow {
		return arrowio.WriteModel(path, dense)
	}
	if dense.Arch.Kind == arrowio.ArchGeneric {
		return arrowio.WriteSafetensors(path, dense.Tensors, lm.safeMeta)
	}
	ts, meta := arrowio.SequentialTensors(dense)
	return arrowio.WriteSafetensors(path, ts, meta)
}

// writeConvertOutputs writes the outputs of a checkpoint's convert (or
// merge) into dir: the decomposed model, its dense copy and the report.
func writeConvertOutputs(dir string, res *ConvertResult, lm *loadedModel, model *arrowio.Model) error {
	dense, err := modelmap.Materialize(model)
	if err != nil {
		return err
	}
	return writeOutputs(dir, func(staging string) error {
		if err := arrowio.WriteModel(filepath.Join(staging, res.Outputs.Factors), model); err != nil {
			return err
		}
		if err := writeDense(filepath.Join(staging, res.Outputs.Materialized), lm, dense); err != nil {
			return err
		}
		return writeJSON(filepath.Join(staging, res.Outputs.Report), res)
	})
}
