package arrowio

import (
	"encoding/json"
	"sort"
	"strconv"
	"strings"

	"github.com/strata-ml/strata/compute"
)

// ModelFromSequential recognises a PyTorch nn.Sequential MLP checkpoint:
// tensors "<i>.weight" (2-D, out x in) with optional "<i>.bias" (1-D, out)
// for integer module indices i, whose shapes chain: each layer's in equals
// the previous layer's out. file is used in errors.
//
// If sf.Metadata holds MetaArchitecture (as written by SequentialTensors),
// that architecture is used, after checking that every linear layer without
// a structure has a "<name>.weight" of shape [out, in] and a "<name>.bias"
// exactly when Bias is set; tensors may then have any names. Otherwise the
// architecture is built from the tensors: linear layers in index order with
// an activation layer of the given kind between consecutive ones (not after
// the last), task classification, inputs the first layer's in. activation
// must be one of compute.Activations, unless the metadata supplies the architecture
// and activation is empty.
//
// Tensors keep their names; roles are "weight" and "bias" (or as derived by
// ParseSafetensors). The returned Model shares the tensors' Data with sf.
func ModelFromSequential(sf *SafeFile, activation compute.Activation, file string) (*Model, error) {
	if sf == nil {
		return nil, fileErr(file, ErrFormat, "nil safetensors file")
	}
	if activation != "" && !activation.Valid() {
		return nil, fileErr(file, ErrFormat, "unknown activation %q (want one of %s)", activation, compute.JoinNames(compute.Activations))
	}
	if archJSON, ok := sf.Metadata[MetaArchitecture]; ok {
		return sequentialWithArch(sf, archJSON, file)
	}
	if activation == "" {
		return nil, fileErr(file, ErrFormat, "no activation given and no %s in __metadata__", MetaArchitecture)
	}

	type linear struct {
		index        int
		weight, bias *Tensor
	}
	byIndex := map[int]*linear{}
	for i := range sf.Tensors {
		t := &sf.Tensors[i]
		prefix, param, ok := strings.Cut(t.Name, ".")
		idx, err := strconv.Atoi(prefix)
		if !ok || err != nil || idx < 0 || strconv.Itoa(idx) != prefix || (compute.Role(param) != compute.RoleWeight && compute.Role(param) != compute.RoleBias) {
			return nil, fieldErr(file, "tensor", t.Name, ErrFormat, "not an nn.Sequential linear parameter (want <index>.weight or <index>.bias)")
		}
		l := byIndex[idx]
		if l == nil {
			l = &linear{index: idx}
			byIndex[idx] = l
		}
		if compute.Role(param) == compute.RoleWeight {
			l.weight = t
		} else {
			l.bias = t
		}
	}
	if len(byIndex) == 0 {
		return nil, fileErr(file, ErrFormat, "no layers: the checkpoint has no <index>.weight tensors")
	}
	layers := make([]*linear, 0, len(byIndex))
	for _, l := range byIndex {
		layers = append(layers, l)
	}
	sort.Slice(layers, func(i, j int) bool { return layers[i].index < layers[j].index })

	m := &Model{Arch: Architecture{FormatVersion: 1, Task: compute.TaskClassification}}
	var prev *linear
	for k, l := range layers {
		name := strconv.Itoa(l.index)
		if l.weight == nil {
			return nil, fieldErr(file, "tensor", name+".bias", ErrFormat, "bias without a weight %q", name+".weight")
		}
		w := l.weight
		if len(w.Shape) != 2 || w.Shape[0] <= 0 || w.Shape[1] <= 0 {
			return nil, fieldErr(file, "tensor", w.Name, ErrFormat, "shape %v is not a 2-D out x in weight", w.Shape)
		}
		out, in := w.Shape[0], w.Shape[1]
		if int64(int(out)) != out || int64(int(in)) != in {
			return nil, fieldErr(file, "tensor", w.Name, ErrFormat, "shape %v is too large", w.Shape)
		}
		if l.bias != nil && (len(l.bias.Shape) != 1 || l.bias.Shape[0] != out) {
			return nil, fieldErr(file, "tensor", l.bias.Name, ErrFormat, "shape %v does not match %q of shape %v (want [%d])", l.bias.Shape, w.Name, w.Shape, out)
		}
		if prev != nil {
			if pout := prev.weight.Shape[0]; pout != in {
				return nil, fieldErr(file, "tensor", w.Name, ErrFormat, "shape %v does not chain with %q of shape %v: in %d != previous out %d",
					w.Shape, prev.weight.Name, prev.weight.Shape, in, pout)
			}
			actName := strconv.Itoa(prev.index + 1)
			if prev.index+1 == l.index {
				actName = strconv.Itoa(prev.index) + "_act"
			}
			m.Arch.Layers = append(m.Arch.Layers, Layer{Name: actName, Kind: compute.KindActivation, Activation: activation})
		} else {
			m.Arch.Inputs = int(in)
		}
		m.Arch.Layers = append(m.Arch.Layers, Layer{Name: name, Kind: compute.KindLinear, In: int(in), Out: int(out), Bias: l.bias != nil})
		m.Tensors = append(m.Tensors, Tensor{Name: w.Name, Role: compute.RoleWeight, Shape: w.Shape, Data: w.Data})
		if l.bias != nil {
			m.Tensors = append(m.Tensors, Tensor{Name: l.bias.Name, Role: compute.RoleBias, Shape: l.bias.Shape, Data: l.bias.Data})
		}
		prev = layers[k]
	}
	if err := validateModel(file, m); err != nil {
		return nil, err
	}
	return m, nil
}

func sequentialWithArch(sf *SafeFile, archJSON string, file string) (*Model, error) {
	arch, err := DecodeArchitecture([]byte(archJSON), file)
	if err != nil {
		return nil, err
	}
	m := &Model{Arch: *arch, Tensors: make([]Tensor, len(sf.Tensors))}
	copy(m.Tensors, sf.Tensors)
	for i := range m.Tensors {
		if m.Tensors[i].Role == "" {
			m.Tensors[i].Role = roleFromName(m.Tensors[i].Name)
		}
	}
	for _, l := range arch.Layers {
		if l.Kind != compute.KindLinear || len(l.Structure) > 0 {
			continue
		}
		w, ok := m.Tensor(l.Name + ".weight")
		if !ok {
			return nil, fieldErr(file, "layer", l.Name, ErrFormat, "no tensor %q", l.Name+".weight")
		}
		if len(w.Shape) != 2 || w.Shape[0] != int64(l.Out) || w.Shape[1] != int64(l.In) {
			return nil, fieldErr(file, "tensor", w.Name, ErrFormat, "shape %v does not match layer %q (want [%d %d])", w.Shape, l.Name, l.Out, l.In)
		}
		b, ok := m.Tensor(l.Name + ".bias")
		switch {
		case l.Bias && !ok:
			return nil, fieldErr(file, "layer", l.Name, ErrFormat, "no tensor %q", l.Name+".bias")
		case !l.Bias && ok:
			return nil, fieldErr(file, "tensor", b.Name, ErrFormat, "layer %q has no bias", l.Name)
		case ok && (len(b.Shape) != 1 || b.Shape[0] != int64(l.Out)):
			return nil, fieldErr(file, "tensor", b.Name, ErrFormat, "shape %v does not match layer %q (want [%d])", b.Shape, l.Name, l.Out)
		}
	}
	meta := map[string]string{}
	for k, v := range sf.Metadata {
		if k != MetaArchitecture && k != "format" && !strings.HasPrefix(k, "strata.") {
			meta[k] = v
		}
	}
	if len(meta) > 0 {
		m.Meta = meta
	}
	if err := validateModel(file, m); err != nil {
		return nil, err
	}
	return m, nil
}

// SequentialTensors returns m's tensors and the safetensors metadata that
// store m as a safetensors checkpoint ("old format kept alongside"):
// MetaArchitecture holds the architecture JSON (so ModelFromSequential
// restores it), "format" is "pt" (what PyTorch's save_file writes and
// loaders such as transformers expect), and m.Meta entries are kept. The
// tensors share Data with m.
//
// m should be valid (see Model.Validate); WriteSafetensors checks the
// tensors. An architecture that cannot be encoded (a Structure that is not
// JSON) is left out of the metadata.
func SequentialTensors(m *Model) ([]Tensor, map[string]string) {
	meta := make(map[string]string, len(m.Meta)+2)
	for k, v := range m.Meta {
		meta[k] = v
	}
	meta["format"] = "pt"
	if archJSON, err := json.Marshal(&m.Arch); err == nil {
		meta[MetaArchitecture] = string(archJSON)
	}
	ts := make([]Tensor, len(m.Tensors))
	copy(ts, m.Tensors)
	return ts, meta
}
