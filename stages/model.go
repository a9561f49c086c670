package stages

import (
	"context"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/compute"
	"github.com/strata-ml/strata/internal/inputerr"
	"github.com/strata-ml/strata/internal/provenance"
)

// Model file formats.
const (
	FormatArrow       = "arrow"
	FormatSafetensors = "safetensors"
	FormatONNX        = "onnx"
)

// loadedModel is a model read from an Arrow model file or a safetensors
// checkpoint (an ONNX model is read by package onnx).
type loadedModel struct {
	input  provenance.File
	format string
	model  *arrowio.Model
	// safeMeta is the safetensors __metadata__, kept for the dense copy.
	safeMeta map[string]string
	// mapped, when set, holds model's values in a read-only mapping of
	// the file until close.
	mapped *arrowio.MappedModel
}

// close releases the mapping of a model read by mapModel: its tensor
// values must not be used after. A no-op for other models.
func (lm *loadedModel) close() {
	if lm.mapped != nil {
		_ = lm.mapped.Close()
	}
}

var sequentialName = regexp.MustCompile(`^[0-9]+\.(weight|bias)$`)

// modelFormat returns the format of a model path by its extension.
func modelFormat(path string) (string, error) {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".arrow", ".ipc", ".feather":
		return FormatArrow, nil
	case ".safetensors":
		return FormatSafetensors, nil
	case ".onnx":
		return FormatONNX, nil
	}
	return "", inputerr.Errorf("%s: unknown model format (want .arrow, .safetensors or .onnx)", path)
}

// loadModel reads a model file. A safetensors checkpoint whose tensors are
// all named like nn.Sequential's ("0.weight", "0.bias", "2.weight", ...) is
// an MLP, with activations from its metadata or the activation argument;
// any other safetensors checkpoint is generic.
func loadModel(ctx context.Context, path string, activation compute.Activation) (*loadedModel, error) {
	return readModelFile(ctx, path, activation, false)
}

// mapModel is loadModel for callers that only read the tensor values: an
// Arrow model file's values stay in a read-only memory mapping of the file
// (arrowio.MapModel) until the caller calls close.
func mapModel(ctx context.Context, path string, activation compute.Activation) (*loadedModel, error) {
	return readModelFile(ctx, path, activation, true)
}

func readModelFile(ctx context.Context, path string, activation compute.Activation, mapped bool) (*loadedModel, error) {
	format, err := modelFormat(path)
	if err != nil {
		return nil, err
	}
	in, err := provenance.HashFile(ctx, path)
	if err != nil {
		return nil, err
	}
	lm := &loadedModel{input: in, format: format}
	switch format {
	case FormatONNX:
		return nil, inputerr.Errorf("%s: an ONNX model: this command reads Arrow model files and safetensors checkpoints", path)
	case FormatArrow:
		var m *arrowio.Model
		if mapped {
			if lm.mapped, err = arrowio.MapModel(path); err == nil {
				m = &lm.mapped.Model
			}
		} else {
			m, err = arrowio.ReadModel(path)
		}
		if err != nil {
			return nil, classify(err)
		}
		if m.Arch.Kind == "" {
			m.Arch.Kind = arrowio.ArchMLP
		}
		lm.model = m
	case FormatSafetensors:
		sf, err := arrowio.ReadSafetensors(path)
		if err != nil {
			return nil, classify(err)
		}
		lm.safeMeta = sf.Metadata
		sequential := len(sf.Tensors) > 0
		for _, t := range sf.Tensors {
			sequential = sequential && sequentialName.MatchString(t.Name)
		}
		if _, ok := sf.Metadata["strata.architecture"]; ok {
			sequential = true
		}
		if sequential {
			if _, ok := sf.Metadata[arrowio.MetaArchitecture]; !ok && activation == "" {
				// The checkpoint does not say its activation: running it
				// as ReLU would validate or fine-tune another model.
				return nil, inputerr.Fieldf("", "%s: an nn.Sequential checkpoint without %s metadata does not say its activation: give {activation} (one of %s)",
					path, arrowio.MetaArchitecture, compute.JoinNames(compute.Activations))
			}
			m, err := arrowio.ModelFromSequential(sf, activation, path)
			if err != nil {
				return nil, classify(err)
			}
			if m.Arch.Kind == "" {
				m.Arch.Kind = arrowio.ArchMLP
			}
			lm.model = m
		} else {
			m := &arrowio.Model{Arch: arrowio.Architecture{FormatVersion: 1, Kind: arrowio.ArchGeneric}}
			for _, t := range sf.Tensors {
				t.Role = compute.RoleTensor
				if isWeight(&t) {
					t.Role = compute.RoleWeight
				}
				m.Tensors = append(m.Tensors, t)
			}
			lm.model = m
		}
	}
	return lm, nil
}

// isWeight reports whether a tensor of a generic checkpoint holds a
// linear map's weight: a float matrix, or a float tensor of rank 3 or more
// named "<layer>.weight" (a convolution's).
func isWeight(t *arrowio.Tensor) bool {
	return !t.IsRaw() && (len(t.Shape) == 2 || (len(t.Shape) > 2 && strings.HasSuffix(t.Name, ".weight")))
}

// layerOfWeight returns the layer name of a weight tensor: its name
// without a trailing ".weight".
func layerOfWeight(name string) string {
	return strings.TrimSuffix(name, ".weight")
}
