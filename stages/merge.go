package stages

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/compute"
	"github.com/strata-ml/strata/internal/inputerr"
	"github.com/strata-ml/strata/internal/inputfile"
	"github.com/strata-ml/strata/internal/limits"
	"github.com/strata-ml/strata/lowering"
	"github.com/strata-ml/strata/modelmap"
)

// MergeConfig configures Merge.
type MergeConfig struct {
	// Shards are output directories of Convert runs with --layers on the
	// same input model.
	Shards []string `json:"shards"`
	// Out is the output directory.
	Out string `json:"out"`
}

// mergeShard is one shard directory read back.
type mergeShard struct {
	dir     string
	res     ConvertResult
	factors *arrowio.Model // the shard's model.arrow
}

// Merge joins the shards of a sharded convert into one converted model,
// as if every shard's layers had been converted in one run, with the same
// outputs: for an Arrow or safetensors input, model.arrow and its dense
// copy; for an ONNX input, model.onnx (every shard's layers lowered into
// the input, which each shard keeps as model.input.onnx), model.input.onnx,
// model.arrow and model.materialized.onnx; and convert.json. The shards
// must come from the same input (same SHA-256) and may not convert a layer
// twice.
func Merge(ctx context.Context, cfg MergeConfig) (*ConvertResult, error) {
	if len(cfg.Shards) == 0 || cfg.Out == "" {
		return nil, inputerr.Fieldf("merge", "{out} and at least one shard directory are required")
	}
	out, err := claimOutput("merge", "out", cfg.Out)
	if err != nil {
		return nil, err
	}
	defer out.release()
	var shards []*mergeShard
	owner := map[string]string{} // layer -> shard
	for _, dir := range cfg.Shards {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		s, err := readShard(ctx, dir)
		if err != nil {
			return nil, err
		}
		if first := shards; len(first) > 0 && s.res.Input.SHA256 != first[0].res.Input.SHA256 {
			return nil, inputerr.Errorf("merge: %s converts input %s (sha256 %s), but %s converts sha256 %s",
				dir, s.res.Input.Path, s.res.Input.SHA256, first[0].dir, first[0].res.Input.SHA256)
		}
		for _, l := range s.res.Layers {
			if prev, ok := owner[l.Name]; ok {
				return nil, inputerr.Errorf("merge: layer %q is converted by both %s and %s", l.Name, prev, dir)
			}
			owner[l.Name] = dir
		}
		shards = append(shards, s)
	}
	merged := mergeResults(shards, cfg.Out)
	if merged.Format == FormatONNX {
		err = mergeONNX(ctx, shards, merged)
	} else {
		err = mergeCheckpoint(ctx, shards, merged)
	}
	if err != nil {
		return nil, fmt.Errorf("merge: %w", err)
	}
	return merged, nil
}

// readShard reads a shard's convert.json and factors model.
func readShard(ctx context.Context, dir string) (*mergeShard, error) {
	s := &mergeShard{dir: dir}
	path := filepath.Join(dir, "convert.json")
	b, err := inputfile.ReadFile(path, limits.JSONBytes, "JSON file")
	if err != nil {
		return nil, fmt.Errorf("merge: %w", err)
	}
	if err := json.Unmarshal(b, &s.res); err != nil {
		return nil, inputerr.Errorf("merge: %s: %v", path, err)
	}
	if s.res.SchemaVersion != ConvertSchemaVersion {
		return nil, inputerr.Errorf("merge: %s: schema_version %d, want %d: convert the shards with this strata", path, s.res.SchemaVersion, ConvertSchemaVersion)
	}
	lm, err := loadModel(ctx, filepath.Join(dir, s.res.Outputs.Factors), "")
	if err != nil {
		return nil, err
	}
	s.factors = lm.model
	return s, nil
}

// mergeResults joins the shards' reports: their layers and skipped
// weights, in the order of the input's selection, and the totals.
func mergeResults(shards []*mergeShard, out string) *ConvertResult {
	merged := shards[0].res
	merged.Config.Layers, merged.Config.Out = "", out
	merged.Layers, merged.Skipped, merged.AutoMissed, merged.ModelAuto = nil, nil, nil, nil
	seen := map[string]bool{}
	for _, s := range shards {
		merged.ModelAuto = merged.ModelAuto.merge(s.res.ModelAuto)
		merged.Layers = append(merged.Layers, s.res.Layers...)
		merged.AutoMissed = append(merged.AutoMissed, s.res.AutoMissed...)
		for _, sk := range s.res.Skipped {
			if !seen[sk.Tensor] { // a weight the graph forbids is listed by every shard
				seen[sk.Tensor] = true
				merged.Skipped = append(merged.Skipped, sk)
			}
		}
	}
	pos := func(name string) int { return slices.Index(merged.Selected, name) }
	slices.SortStableFunc(merged.Layers, func(a, b ConvertedLayer) int { return pos(a.Tensor) - pos(b.Tensor) })
	merged.finish(slog.New(slog.DiscardHandler))
	return &merged
}

// mergeCheckpoint writes the merge of the shards of an Arrow or
// safetensors input: the first shard's model with every other shard's
// layers taken in.
func mergeCheckpoint(ctx context.Context, shards []*mergeShard, merged *ConvertResult) error {
	base := &loadedModel{format: merged.Format, model: shards[0].factors}
	if base.format == FormatSafetensors {
		// Keep the input's safetensors metadata for the dense copy.
		if orig, err := loadModel(ctx, merged.Input.Path, merged.Config.Activation); err == nil {
			base.safeMeta = orig.safeMeta
		}
	}
	for _, s := range shards[1:] {
		for _, l := range s.res.Layers {
			if err := takeLayer(base.model, s.factors, l.Name, l.Tensor); err != nil {
				return fmt.Errorf("%s: %w", s.dir, err)
			}
		}
	}
	return writeConvertOutputs(merged.Config.Out, merged, base, base.model)
}

// mergeONNX writes the merge of the shards of an ONNX input: every
// shard's layers, rebuilt from its factors, lowered into the input that
// the first shard kept.
func mergeONNX(ctx context.Context, shards []*mergeShard, merged *ConvertResult) error {
	inputPath := filepath.Join(shards[0].dir, shards[0].res.Outputs.Input)
	m, data, input, err := readONNX(inputPath)
	if err != nil {
		return err
	}
	if input.SHA256 != merged.Input.SHA256 {
		return inputerr.Errorf("%s: sha256 %s, but the shards converted sha256 %s", inputPath, input.SHA256, merged.Input.SHA256)
	}
	m.NameNodes()
	var layers []lowering.Layer
	var factors []factorLayer
	for _, cl := range merged.Layers {
		fl, err := shardFactor(shards, cl)
		if err != nil {
			return err
		}
		layers = append(layers, lowering.Layer{Name: cl.Name, Node: cl.Node, Op: compute.Convert[float32](fl.op)})
		factors = append(factors, fl)
	}
	return writeONNXOutputs(merged.Config.Out, merged, m, data, layers, factors)
}

// shardFactor rebuilds the converted layer cl from the factors model of
// the shard that converted it.
func shardFactor(shards []*mergeShard, cl ConvertedLayer) (factorLayer, error) {
	for _, s := range shards {
		if !slices.ContainsFunc(s.res.Layers, func(l ConvertedLayer) bool { return l.Name == cl.Name }) {
			continue
		}
		i := slices.IndexFunc(s.factors.Arch.Layers, func(l arrowio.Layer) bool { return l.Name == cl.Name })
		if i < 0 {
			return factorLayer{}, inputerr.Errorf("%s: layer %q is listed in convert.json but not in %s", s.dir, cl.Name, s.res.Outputs.Factors)
		}
		fl := factorLayer{layer: s.factors.Arch.Layers[i]}
		fl.layer.Structure = nil
		op, err := modelmap.Operator[float64](s.factors, cl.Name, cl.Hyperparameters)
		if err != nil {
			return factorLayer{}, fmt.Errorf("%s: %w", s.dir, err)
		}
		fl.op = op
		if b, ok := s.factors.Tensor(cl.Name + ".bias"); ok && fl.layer.Bias {
			fl.bias = make([]float64, len(b.Data))
			for j, v := range b.Data {
				fl.bias[j] = float64(v)
			}
		}
		return fl, nil
	}
	return factorLayer{}, fmt.Errorf("layer %q has no shard", cl.Name)
}

// takeLayer replaces layer's dense weight in dst by its decomposed tensors
// and structure from src.
func takeLayer(dst, src *arrowio.Model, layer, weight string) error {
	var parts []arrowio.Tensor
	for _, t := range src.Tensors {
		if (t.Role == compute.RoleTrunk || t.Role == compute.RoleCorrection) && modelmap.PartLayer(t.Name, t.Role) == layer {
			parts = append(parts, t)
		}
	}
	if len(parts) == 0 {
		return inputerr.Errorf("layer %q is listed in convert.json but has no trunk or correction tensors", layer)
	}
	var tensors []arrowio.Tensor
	found := false
	for _, t := range dst.Tensors {
		if t.Name == weight {
			tensors = append(tensors, parts...)
			found = true
			continue
		}
		tensors = append(tensors, t)
	}
	if !found {
		return inputerr.Errorf("layer %q: weight %q is not dense in the first shard", layer, weight)
	}
	dst.Tensors = tensors
	for _, l := range src.Arch.Layers {
		if l.Name != layer {
			continue
		}
		for i := range dst.Arch.Layers {
			if dst.Arch.Layers[i].Name == layer {
				dst.Arch.Layers[i].Structure = l.Structure
				return nil
			}
		}
		dst.Arch.Layers = append(dst.Arch.Layers, l)
		dst.Arch.FormatVersion = max(dst.Arch.FormatVersion, src.Arch.FormatVersion)
		return nil
	}
	return inputerr.Errorf("layer %q has no structure in its shard's architecture", layer)
}
