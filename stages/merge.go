package stages

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/compute"
	"github.com/strata-ml/strata/internal/inputerr"
	"github.com/strata-ml/strata/internal/inputfile"
	"github.com/strata-ml/strata/internal/limits"
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

// Merge joins the shards of a sharded convert into one converted model,
// as if every shard's layers had been converted in one run: Out/model.arrow,
// the dense materialisation and Out/convert.json. The shards must come
// from the same input (same SHA-256) and may not convert a layer twice.
func Merge(ctx context.Context, cfg MergeConfig) (*ConvertResult, error) {
	if len(cfg.Shards) == 0 || cfg.Out == "" {
		return nil, inputerr.Fieldf("merge", "{out} and at least one shard directory are required")
	}
	out, err := claimOutput("merge", "out", cfg.Out)
	if err != nil {
		return nil, err
	}
	defer out.release()
	var merged *ConvertResult
	var model *arrowio.Model
	var base *loadedModel
	owner := map[string]string{} // layer -> shard
	for _, dir := range cfg.Shards {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var shard ConvertResult
		path := filepath.Join(dir, "convert.json")
		b, err := inputfile.ReadFile(path, limits.JSONBytes, "JSON file")
		if err != nil {
			return nil, fmt.Errorf("merge: %w", err)
		}
		if err := json.Unmarshal(b, &shard); err != nil {
			return nil, inputerr.Errorf("merge: %s: %v", path, err)
		}
		sm, err := loadModel(ctx, filepath.Join(dir, shard.Outputs.Model), "")
		if err != nil {
			return nil, err
		}
		if merged == nil {
			first := shard
			merged = &first
			merged.Layers = nil
			merged.Config.Layers = ""
			merged.Config.Out = cfg.Out
			model = sm.model
			base = sm
			format, _ := modelFormat(shard.Input.Path)
			base.format = format
			if format == FormatSafetensors {
				// Keep the input's safetensors metadata for the dense copy.
				if orig, err := loadModel(ctx, shard.Input.Path, shard.Config.Activation); err == nil {
					base.safeMeta = orig.safeMeta
				}
			}
		} else if shard.Input.SHA256 != merged.Input.SHA256 {
			return nil, inputerr.Errorf("merge: %s converts input %s (sha256 %s), but %s converts sha256 %s",
				dir, shard.Input.Path, shard.Input.SHA256, cfg.Shards[0], merged.Input.SHA256)
		}
		for _, l := range shard.Layers {
			if prev, ok := owner[l.Name]; ok {
				return nil, inputerr.Errorf("merge: layer %q is converted by both %s and %s", l.Name, prev, dir)
			}
			owner[l.Name] = dir
			merged.Layers = append(merged.Layers, l)
			if sm != base {
				if err := takeLayer(model, sm.model, l.Name, l.Tensor); err != nil {
					return nil, fmt.Errorf("merge: %s: %w", dir, err)
				}
			}
		}
	}
	// Order layers as the input selected them and recompute the totals.
	slices.SortStableFunc(merged.Layers, func(a, b ConvertedLayer) int {
		return slices.Index(merged.Selected, a.Tensor) - slices.Index(merged.Selected, b.Tensor)
	})
	merged.Totals = ConvertTotals{}
	for _, l := range merged.Layers {
		merged.Totals.ParamsDense += l.ParamsDense
		merged.Totals.Params += l.Params
	}
	merged.Totals.Layers = len(merged.Layers)
	if merged.Totals.ParamsDense > 0 {
		merged.Totals.Ratio = float64(merged.Totals.Params) / float64(merged.Totals.ParamsDense)
	}
	dense, err := modelmap.Materialize(model)
	if err != nil {
		return nil, err
	}
	err = writeOutputs(cfg.Out, func(dir string) error {
		if err := arrowio.WriteModel(filepath.Join(dir, merged.Outputs.Model), model); err != nil {
			return err
		}
		if err := writeDense(filepath.Join(dir, merged.Outputs.Dense), base, dense); err != nil {
			return err
		}
		return writeJSON(filepath.Join(dir, merged.Outputs.Report), merged)
	})
	if err != nil {
		return nil, fmt.Errorf("merge: write %s: %w", cfg.Out, err)
	}
	return merged, nil
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
		return nil
	}
	return inputerr.Errorf("layer %q has no structure in its shard's architecture", layer)
}
