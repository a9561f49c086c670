package stages

import (
	"context"
	"fmt"
	"strconv"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/internal/inputerr"
	"github.com/strata-ml/strata/modelmap"
)

// FactorsFormatVersion is the value of MetaFactorsFormatVersion in a
// factors export.
const FactorsFormatVersion = 1

// MetaFactorsFormatVersion is the safetensors __metadata__ key that
// versions a factors export (the layout of its tensors and architecture).
const MetaFactorsFormatVersion = "strata.format_version"

// exportFactors writes a model's tensors as they are, without
// materialising its decomposed layers: with --format safetensors every
// tensor (trunk and correction factors "<layer>.trunk.<P>" and
// "<layer>.correction.<P>", biases, layer-norm parameters, undecomposed
// weights) as F32 in the model's order, with __metadata__ holding the
// architecture JSON under "strata.architecture" (as the model file stores
// it), "strata.format_version" = "1" and the model's own metadata entries.
// examples/pytorch/strata_torch.py builds a PyTorch module from such a
// file. With --format arrow the output is the model file itself (the same
// tensors and architecture, rewritten as an Arrow model file). Every
// decomposed layer is rebuilt first, so a file whose factors do not match
// their structure is refused as bad input.
func exportFactors(ctx context.Context, cfg ExportConfig, lm *loadedModel) error {
	m := lm.model
	for _, l := range m.Arch.Layers {
		spec, err := modelmap.Structure(l)
		if err != nil {
			return err
		}
		if spec == nil {
			continue
		}
		if _, err := modelmap.Operator[float32](m, l.Name, *spec); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	var err error
	if cfg.Format == FormatArrow {
		err = arrowio.WriteModel(cfg.Out, m)
	} else {
		var archJSON []byte
		archJSON, err = arrowio.EncodeArchitecture(&m.Arch)
		if err != nil {
			return inputerr.Errorf("export: %s: architecture: %v", cfg.Model, err)
		}
		meta := make(map[string]string, len(m.Meta)+2)
		for k, v := range m.Meta {
			meta[k] = v
		}
		meta[arrowio.MetaArchitecture] = string(archJSON)
		meta[MetaFactorsFormatVersion] = strconv.Itoa(FactorsFormatVersion)
		err = arrowio.WriteSafetensors(cfg.Out, m.Tensors, meta)
	}
	if err != nil {
		return fmt.Errorf("export: write %s: %w", cfg.Out, err)
	}
	return nil
}
