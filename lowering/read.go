package lowering

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/arrowio/onnx"
	"github.com/strata-ml/strata/arrowio/onnx/onnxpb"
	"github.com/strata-ml/strata/compute"
)

// maxDim bounds each dimension of a recorded Spec, as compute's sparse
// operator bounds its indices.
const maxDim = 1 << 24

// HasStructure reports whether m holds the structure record of a model
// Lower wrote (the metadata entry MetadataKey); ReadStructure reads it.
func HasStructure(m *onnx.Model) bool { return metadata(m.Proto, MetadataKey) != nil }

// ReadStructure returns the structure Lower recorded in m. A model without
// it, or with a record that is not valid JSON of a known FormatVersion, is
// an *arrowio.FormatError naming the file and the metadata key.
func ReadStructure(m *onnx.Model) (*Structure, error) {
	e := metadata(m.Proto, MetadataKey)
	if e == nil {
		return nil, formatErr(m.File, "metadata", MetadataKey, arrowio.ErrFormat,
			"missing: not a structured model (lowering.Lower writes it)")
	}
	dec := json.NewDecoder(bytes.NewReader([]byte(e.GetValue())))
	dec.DisallowUnknownFields()
	var st Structure
	if err := dec.Decode(&st); err != nil {
		return nil, formatErr(m.File, "metadata", MetadataKey, arrowio.ErrFormat, "not a valid structure record: %v", err)
	}
	if st.FormatVersion != FormatVersion {
		return nil, formatErr(m.File, "metadata", MetadataKey, arrowio.ErrUnsupported,
			"format_version %d, this strata reads %d", st.FormatVersion, FormatVersion)
	}
	return &st, nil
}

// Operators rebuilds the operator of every layer of a structured model from
// its recorded Spec and the initializers holding its parameters, in the
// order Lower was given them; each Layer's Node is the replaced node's name.
// The operators own their parameters (copies of the initializers' values).
//
// Every problem is an *arrowio.FormatError naming the file and the layer
// (Kind "layer") or initializer (Kind "tensor"): a Spec compute does not
// build, a missing or misshapen initializer, a non-finite value, a sparse
// index outside the layer. Memory is bounded by the model: the Spec must
// account for exactly the values its initializers hold before anything is
// allocated.
func Operators(m *onnx.Model) ([]Layer, error) {
	st, err := ReadStructure(m)
	if err != nil {
		return nil, err
	}
	inits := map[string]*onnxpb.TensorProto{}
	for _, t := range m.Proto.GetGraph().GetInitializer() {
		inits[t.GetName()] = t
	}
	var layers []Layer
	for _, rec := range st.Layers {
		op, err := rebuild(rec, inits)
		if err != nil {
			var fe *arrowio.FormatError
			if errors.As(err, &fe) {
				fe.File = m.File
				return nil, fe
			}
			return nil, formatErr(m.File, "layer", rec.Name, arrowio.ErrFormat, "%v", err)
		}
		layers = append(layers, Layer{Name: rec.Name, Node: rec.Node, Op: op})
	}
	return layers, nil
}

// rebuild builds one layer's operator.
func rebuild(rec LayerRecord, inits map[string]*onnxpb.TensorProto) (compute.Operator[float32], error) {
	held := 0
	for _, p := range rec.Params {
		t, ok := inits[p.Initializer]
		if !ok {
			return nil, formatErr("", "tensor", p.Initializer, arrowio.ErrFormat,
				"missing: layer %q records it as parameter %q", rec.Name, p.Name)
		}
		n := 1
		for _, d := range t.Dims {
			if d < 0 || d > maxDim*maxDim {
				return nil, formatErr("", "tensor", p.Initializer, arrowio.ErrFormat, "dims %v", t.Dims)
			}
			n *= int(d)
		}
		held += n
	}
	want, err := paramCount(rec.Spec)
	if err != nil {
		return nil, err
	}
	if want != held {
		return nil, fmt.Errorf("spec %s (%dx%d) has %d parameter values, its initializers hold %d",
			rec.Spec, rec.Spec.Out, rec.Spec.In, want, held)
	}
	op, err := compute.New[float32](rec.Spec)
	if err != nil {
		return nil, err
	}
	ps := op.Params()
	if len(rec.Params) != len(ps) {
		return nil, fmt.Errorf("records %d parameters, a %s operator has %d", len(rec.Params), rec.Spec.Family, len(ps))
	}
	for i, p := range ps {
		r := rec.Params[i]
		if r.Name != p.Name {
			return nil, fmt.Errorf("parameter %d is %q, want %q", i, r.Name, p.Name)
		}
		if err := load(p, inits[r.Initializer]); err != nil {
			return nil, err
		}
	}
	if err := validateSparse(op); err != nil {
		return nil, err
	}
	return op, nil
}

// load copies the initializer t into the parameter p, which it must match
// in shape: FLOAT values, or for a frozen (index) parameter INT64 values
// within [0, 2^24), which float32 holds exactly.
func load(p compute.Param[float32], t *onnxpb.TensorProto) error {
	bad := func(format string, args ...any) error {
		return formatErr("", "tensor", t.GetName(), arrowio.ErrFormat, format, args...)
	}
	if len(t.Dims) != len(p.Shape) {
		return bad("shape %v, want %v for parameter %q", t.Dims, p.Shape, p.Name)
	}
	for i, d := range t.Dims {
		if int(d) != p.Shape[i] {
			return bad("shape %v, want %v for parameter %q", t.Dims, p.Shape, p.Name)
		}
	}
	if p.Frozen {
		if onnxpb.TensorProto_DataType(t.GetDataType()) != onnxpb.TensorProto_INT64 {
			return bad("element type %s, want INT64 for the index parameter %q", onnxpb.TensorProto_DataType(t.GetDataType()), p.Name)
		}
		idx, err := int64s(t)
		if err != nil {
			return bad("%v", err)
		}
		for i, v := range idx {
			if v < 0 || v >= maxDim {
				return bad("index %d is %d, outside [0, %d)", i, v, maxDim)
			}
			p.Data[i] = float32(v)
		}
		return nil
	}
	if onnxpb.TensorProto_DataType(t.GetDataType()) != onnx.Float {
		return bad("element type %s, want FLOAT for parameter %q", onnxpb.TensorProto_DataType(t.GetDataType()), p.Name)
	}
	v, err := onnx.Floats(t)
	if err != nil {
		return bad("%v", err)
	}
	for i, x := range v {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return bad("value %d is %v", i, x)
		}
		p.Data[i] = float32(x)
	}
	return nil
}

// validateSparse checks the indices of a sparse operator or correction
// against its shape.
func validateSparse(op compute.Operator[float32]) error {
	if s, ok := op.(*compute.Sum[float32]); ok {
		if err := validateSparse(s.Trunk()); err != nil {
			return err
		}
		return validateSparse(s.Correction())
	}
	if v, ok := op.(interface{ Validate() error }); ok {
		return v.Validate()
	}
	return nil
}

// paramCount returns the number of values the parameters of an operator of
// Spec s hold (compute's layouts, padding included), without building it,
// so that a record cannot make Operators allocate more than the model
// holds. compute.New checks the hyper-parameters themselves.
func paramCount(s compute.Spec) (int, error) {
	if s.Out < 1 || s.In < 1 || s.Out > maxDim || s.In > maxDim {
		return 0, fmt.Errorf("%w: %s shape %dx%d: each side must be in [1, %d]", compute.ErrSpec, s.Family, s.Out, s.In, maxDim)
	}
	for _, h := range []int{s.Blocks, s.Rank, s.FactorShape[0], s.FactorShape[1], s.NNZ} {
		if h < 0 || h > maxDim {
			return 0, fmt.Errorf("%w: %s hyper-parameter %d outside [0, %d]", compute.ErrSpec, s, h, maxDim)
		}
	}
	ceil := func(n, b int) int { return (n + b - 1) / b * b }
	switch s.Family {
	case compute.FamilySum:
		if s.Trunk == nil || s.Correction == nil {
			return 0, fmt.Errorf("%w: a sum needs a trunk and a correction", compute.ErrSpec)
		}
		t, c := *s.Trunk, *s.Correction
		t.Out, t.In, c.Out, c.In = s.Out, s.In, s.Out, s.In
		if t.Family == compute.FamilySum || c.Family == compute.FamilySum {
			return 0, fmt.Errorf("%w: a sum cannot nest another sum", compute.ErrSpec)
		}
		a, err := paramCount(t)
		if err != nil {
			return 0, err
		}
		b, err := paramCount(c)
		return a + b, err
	case compute.FamilyLowRank:
		return s.Rank * (s.Out + s.In), nil
	case compute.FamilyOrthogonal:
		return s.Out*s.In + 1, nil
	case compute.FamilyMonarch:
		if s.Blocks < 1 {
			return 0, fmt.Errorf("%w: monarch blocks %d", compute.ErrSpec, s.Blocks)
		}
		return s.Blocks * s.Rank * (ceil(s.Out, s.Blocks) + ceil(s.In, s.Blocks)), nil
	case compute.FamilyBlockDiag:
		if s.Blocks < 1 {
			return 0, fmt.Errorf("%w: blockdiag blocks %d", compute.ErrSpec, s.Blocks)
		}
		return ceil(s.Out, s.Blocks) * ceil(s.In, s.Blocks) / s.Blocks, nil
	case compute.FamilyKronecker:
		m1, n1 := s.FactorShape[0], s.FactorShape[1]
		if m1 < 1 || n1 < 1 {
			return 0, fmt.Errorf("%w: kronecker factor shape %v must be resolved", compute.ErrSpec, s.FactorShape)
		}
		return s.Rank * (m1*n1 + ceil(s.Out, m1)/m1*ceil(s.In, n1)/n1), nil
	case compute.FamilyCirculant:
		return max(s.Out, s.In), nil
	case compute.FamilyToeplitz:
		return s.Out + s.In - 1, nil
	case compute.FamilySparse:
		return 3 * s.NNZ, nil
	case compute.FamilyZero:
		return 0, nil
	}
	return 0, fmt.Errorf("%w: unknown family %q", compute.ErrSpec, s.Family)
}

// int64s returns the values of an INT64 tensor, from raw_data
// (little-endian) or int64_data.
func int64s(t *onnxpb.TensorProto) ([]int64, error) {
	n := 1
	for _, d := range t.Dims {
		n *= int(d)
	}
	switch {
	case t.RawData != nil && len(t.RawData) == 8*n:
		v := make([]int64, n)
		for i := range v {
			v[i] = int64(binary.LittleEndian.Uint64(t.RawData[8*i:]))
		}
		return v, nil
	case t.RawData == nil && len(t.Int64Data) == n:
		return append([]int64(nil), t.Int64Data...), nil
	}
	return nil, fmt.Errorf("INT64 with dims %v needs %d values, holds %d bytes of raw_data and %d int64_data",
		t.Dims, n, len(t.RawData), len(t.Int64Data))
}

// formatErr builds the *arrowio.FormatError about field (of kind) of file.
func formatErr(file, kind, field string, sentinel error, format string, args ...any) error {
	return &arrowio.FormatError{File: file, Kind: kind, Field: field,
		Err: fmt.Errorf("%s (%w)", fmt.Sprintf(format, args...), sentinel)}
}
