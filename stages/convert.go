package stages

import (
	"context"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gonum.org/v1/gonum/mat"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/compute"
	"github.com/strata-ml/strata/internal/inputerr"
	"github.com/strata-ml/strata/internal/provenance"
	"github.com/strata-ml/strata/modelmap"
	"github.com/strata-ml/strata/validation"
)

// StructureAuto asks convert to choose the family per layer.
const StructureAuto = "auto"

// ConvertConfig configures Convert. The JSON form is recorded in
// convert.json. The fields with a yaml key are the options of a pilot or
// sweep config's convert section (and of a sweep candidate); the pilot
// sets the others per run (Model and Out are never empty in convert.json).
type ConvertConfig struct {
	// Model is the dense checkpoint: an Arrow model file or safetensors.
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
	// Include and Exclude are globs (path.Match) on tensor names that
	// select the weights to convert; empty Include means every 2-D
	// weight.
	Include []string `yaml:"include" json:"include,omitempty"`
	Exclude []string `yaml:"exclude" json:"exclude,omitempty"`
	// Layers selects a shard of the selected weights by position, e.g.
	// "0-3" or "0,2,5-7" (0-based, inclusive); empty means all.
	Layers string `json:"layers,omitempty"`
	// Activation is used for a safetensors nn.Sequential checkpoint with
	// no strata.architecture metadata.
	Activation compute.Activation `json:"activation,omitempty"`
	// Seed drives the randomized SVDs.
	Seed uint64 `json:"seed"`
	// Logger receives progress; nil discards it.
	Logger *slog.Logger `json:"-"`
}

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
	Name               string                   `json:"name"`
	Tensor             string                   `json:"tensor"`
	Shape              [2]int                   `json:"shape"`
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
	// SVD and the condition numbers are estimates (compute.Condition).
	ConditionExact bool                `json:"condition_exact"`
	Seconds        float64             `json:"seconds"`
	Auto           *compute.AutoResult `json:"auto,omitempty"`
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
	SchemaVersion int              `json:"schema_version"`
	Tool          provenance.Tool  `json:"tool"`
	Input         provenance.File  `json:"input"`
	Config        ConvertConfig    `json:"config"`
	Selected      []string         `json:"selected"`
	Layers        []ConvertedLayer `json:"layers"`
	Totals        ConvertTotals    `json:"totals"`
	Outputs       ConvertOutputs   `json:"outputs"`
}

// ConvertOutputs names the files Convert wrote, relative to Out.
type ConvertOutputs struct {
	Model  string `json:"model"`
	Dense  string `json:"dense"`
	Report string `json:"report"`
}

// Convert decomposes the selected 2-D weights of cfg.Model into S + R and
// writes Out/model.arrow (the decomposed model), the dense materialisation
// in the input's own format (model.dense.arrow or model.dense.safetensors)
// and Out/convert.json. Bad input returns an error wrapping ErrInput and
// writes nothing.
func Convert(ctx context.Context, cfg ConvertConfig) (*ConvertResult, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	outDir, err := claimOutput("convert", "out", cfg.Out)
	if err != nil {
		return nil, err
	}
	defer outDir.release()
	lm, err := mapModel(ctx, cfg.Model, cfg.Activation)
	if err != nil {
		return nil, err
	}
	defer lm.close()
	selected, err := selectWeights(lm.model, cfg.Include, cfg.Exclude)
	if err != nil {
		return nil, inputerr.Errorf("%s: %w", cfg.Model, err)
	}
	shard, err := parseShard(cfg.Layers, len(selected))
	if err != nil {
		return nil, err
	}
	res := &ConvertResult{SchemaVersion: 1, Tool: provenance.Version(), Input: lm.input, Config: cfg, Selected: selected}
	res.Outputs = ConvertOutputs{Model: "model.arrow", Dense: "model.dense." + lm.format, Report: "convert.json"}

	out := &arrowio.Model{Arch: lm.model.Arch, Meta: lm.model.Meta}
	out.Arch.Layers = append([]arrowio.Layer(nil), lm.model.Arch.Layers...)
	replaced := map[string][]arrowio.Tensor{}
	for i, idx := range shard {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		name := selected[idx]
		t, _ := lm.model.Tensor(name)
		start := time.Now()
		layer, op, err := convertWeight(t, cfg)
		if err != nil {
			return nil, classify(fmt.Errorf("%s: convert tensor %q: %w", cfg.Model, name, err))
		}
		layer.Seconds = time.Since(start).Seconds()
		if tr := layer.Hyperparameters.Trunk; tr != nil && cfg.Structure != StructureAuto &&
			((cfg.Rank > 0 && tr.Rank != cfg.Rank && tr.Rank > 0) || (cfg.Blocks > 0 && tr.Blocks != cfg.Blocks && tr.Blocks > 0)) {
			log.Warn("hyper-parameters capped to fit the layer", "layer", layer.Name, "shape", layer.Shape,
				"blocks", tr.Blocks, "rank", tr.Rank, "requested_blocks", cfg.Blocks, "requested_rank", cfg.Rank)
		}
		res.Layers = append(res.Layers, layer)
		replaced[name] = modelmap.OperatorTensors(layer.Name, op)
		modelmap.SetStructure(out, layer.Name, t, op.Spec())
		log.Info("converted layer", "layer", layer.Name, "n", i+1, "of", len(shard),
			"family", layer.Family, "params", layer.Params, "params_dense", layer.ParamsDense,
			"relative_error", float64(layer.RelativeError), "seconds", layer.Seconds)
		res.Totals.ParamsDense += layer.ParamsDense
		res.Totals.Params += layer.Params
	}
	for _, t := range lm.model.Tensors {
		if ts, ok := replaced[t.Name]; ok {
			out.Tensors = append(out.Tensors, ts...)
			continue
		}
		out.Tensors = append(out.Tensors, t)
	}
	res.Totals.Layers = len(res.Layers)
	if res.Totals.ParamsDense > 0 {
		res.Totals.Ratio = float64(res.Totals.Params) / float64(res.Totals.ParamsDense)
	}
	dense, err := modelmap.Materialize(out)
	if err != nil {
		return nil, err
	}
	err = writeOutputs(cfg.Out, func(dir string) error {
		if err := arrowio.WriteModel(filepath.Join(dir, res.Outputs.Model), out); err != nil {
			return err
		}
		if err := writeDense(filepath.Join(dir, res.Outputs.Dense), lm, dense); err != nil {
			return err
		}
		return writeJSON(filepath.Join(dir, res.Outputs.Report), res)
	})
	if err != nil {
		return nil, fmt.Errorf("convert: write %s: %w", cfg.Out, err)
	}
	return res, nil
}

func (cfg *ConvertConfig) validate() error {
	if cfg.Model == "" {
		return inputerr.Fieldf("convert", "{model} is required")
	}
	if cfg.Out == "" {
		return inputerr.Fieldf("convert", "{out} is required")
	}
	switch cfg.Structure {
	case StructureAuto:
		if err := cfg.autoConfig().Validate(); err != nil {
			return inputerr.Fieldf("convert", "{structure} auto ({target_error}, {param_budget}): %w", err)
		}
	default:
		known := false
		for _, f := range compute.TrunkFamilies {
			known = known || f == cfg.Structure
		}
		if !known {
			return inputerr.Fieldf("convert", "{structure} %q: want auto or one of %s", cfg.Structure, strings.Join(compute.TrunkFamilies, ", "))
		}
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
	return compute.AutoConfig{TargetError: cfg.TargetError, ParamBudget: cfg.ParamBudget}
}

// selectWeights returns the names of the 2-D weight tensors matching the
// include globs (all when none) and no exclude glob, in file order.
func selectWeights(m *arrowio.Model, include, exclude []string) ([]string, error) {
	var names []string
	for _, t := range m.Tensors {
		if t.Role != compute.RoleWeight || len(t.Shape) != 2 {
			continue
		}
		if len(include) > 0 && !matchAny(include, t.Name) {
			continue
		}
		if matchAny(exclude, t.Name) {
			continue
		}
		names = append(names, t.Name)
	}
	if len(names) == 0 {
		return nil, inputerr.Fieldf("", "no 2-D weight matches {include} %q {exclude} %q", include, exclude)
	}
	return names, nil
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

// convertWeight decomposes one weight tensor.
func convertWeight(t *arrowio.Tensor, cfg ConvertConfig) (ConvertedLayer, compute.Operator[float64], error) {
	out, in := int(t.Shape[0]), int(t.Shape[1])
	w := mat.NewDense(out, in, nil)
	raw := w.RawMatrix().Data
	for i, v := range t.Data {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return ConvertedLayer{}, nil, inputerr.Errorf("value %d (row %d, column %d) is %v", i, i/in, i%in, v)
		}
		raw[i] = float64(v)
	}
	seed := layerSeed(cfg.Seed, t.Name)
	layer := ConvertedLayer{Name: layerOfWeight(t.Name), Tensor: t.Name, Shape: [2]int{out, in}, ParamsDense: out * in}
	// W's condition number does not depend on the decomposition: estimate
	// it alongside (for a large layer, Level-2 BLAS bound, so it mostly
	// uses the core the decomposition's GEMMs leave).
	type condition struct {
		value float64
		exact bool
	}
	denseCond := make(chan condition, 1)
	go func() {
		c, exact := compute.Condition(w, seed)
		denseCond <- condition{c, exact}
	}()
	var sum *compute.Sum[float64]
	var err error
	if cfg.Structure == StructureAuto {
		var ar compute.AutoResult
		sum, ar, err = compute.Auto(w, cfg.autoConfig(), seed)
		layer.Auto = &ar
	} else {
		res := compute.Residual{Kind: cfg.Residual, Rank: min(cfg.ResidualRank, min(out, in))}
		if cfg.Residual == compute.ResidualSparse {
			res.NNZ = max(1, int(math.Ceil(cfg.ResidualDensity*float64(out*in))))
		}
		kron, _ := parseKronFactors(cfg.KronFactors)
		trunk := compute.FitSpec(compute.Spec{Family: cfg.Structure, Blocks: cfg.Blocks, Rank: cfg.Rank, FactorShape: kron}, out, in)
		sum, err = compute.Decompose(w, trunk, res, seed)
	}
	if err != nil {
		<-denseCond
		return ConvertedLayer{}, nil, err
	}
	// Report what the file stores: parameters rounded to float32.
	stored := compute.Convert[float64](compute.Convert[float32, float64](sum)).(*compute.Sum[float64])
	layer.Family = stored.Trunk().Spec().Family
	layer.Hyperparameters = stored.Spec()
	layer.Params = compute.NumParams[float64](stored)
	layer.ParamsTrunk = compute.NumParams(stored.Trunk())
	layer.ParamsCorrection = compute.NumParams(stored.Correction())
	layer.RelativeError = validation.NullableFloat(compute.RelativeError(w, compute.Dense[float64](stored)))
	trunk := compute.Dense(stored.Trunk())
	layer.TrunkRelativeError = validation.NullableFloat(compute.RelativeError(w, trunk))
	ct, exactT := compute.Condition(trunk, seed)
	cd := <-denseCond
	layer.ConditionDense, layer.ConditionTrunk = validation.NullableFloat(cd.value), validation.NullableFloat(ct)
	layer.ConditionExact = cd.exact && exactT
	return layer, stored, nil
}

// writeDense writes the dense materialisation in the input's format.
func writeDense(path string, lm *loadedModel, dense *arrowio.Model) error {
	if lm.format == FormatArrow {
		return arrowio.WriteModel(path, dense)
	}
	if dense.Arch.Kind == arrowio.ArchGeneric {
		var ts []arrowio.Tensor
		for _, t := range dense.Tensors {
			ts = append(ts, t)
		}
		return arrowio.WriteSafetensors(path, ts, lm.safeMeta)
	}
	ts, meta := arrowio.SequentialTensors(dense)
	return arrowio.WriteSafetensors(path, ts, meta)
}
