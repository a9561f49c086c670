package stages

import (
	"context"
	"fmt"
	"strconv"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/internal/inputerr"
	"github.com/strata-ml/strata/modelmap"
)

// MetaFactorsFormatVersion is the safetensors __metadata__ key that
// versions a factors export (the layout of its tensors and architecture):
// the model format version of its content (arrowio.Model.Version), "1",
// or "2" when it holds raw tensors or layers that say how their weight is
// stored.
const MetaFactorsFormatVersion = "strata.format_version"

// exportFactors writes a model's tensors as they are, without
// materialising its decomposed layers: with --format safetensors every
// tensor (trunk and correction factors "<layer>.trunk.<P>" and
// "<layer>.correction.<P>", biases, layer-norm parameters, undecomposed
// weights) in the model's order, float32 ones as F32 and raw ones in their
// own dtype, with __metadata__ holding the architecture JSON under
// "strata.architecture" (as the model file stores it),
// "strata.format_version" (MetaFactorsFormatVersion) and the model's own
// metadata entries. examples/pytorch/strata_torch.py builds a PyTorch
// module from such a file. With --format arrow the output is the model
// file itself (the same tensors and architecture, rewritten as an Arrow
// model file). Every decomposed layer is rebuilt first, so a file whose
// factors do not match their structure is refused as bad input.
func exportFactors(ctx context.Context, cfg ExportConfig, m *arrowio.Model) error {
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
		meta[MetaFactorsFormatVersion] = strconv.Itoa(m.Version())
		err = arrowio.WriteSafetensors(cfg.Out, m.Tensors, meta)
	}
	if err != nil {
		return fmt.Errorf("export: write %s: %w", cfg.Out, err)
	}
	return nil
}
