package onnx

import (
	"encoding/binary"
	"fmt"
	"math"

	"google.golang.org/protobuf/proto"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/arrowio/onnx/onnxpb"
)

// maxElements bounds the element count of a tensor's dims even when one dim
// is 0 (then the tensor holds no data, but products of the other dims, such
// as a conv's in x kh x kw, must still fit an int).
const maxElements = 1 << 50

// The element types whose values strata reads. Every other element type is
// carried through untouched.
const (
	Float    = onnxpb.TensorProto_FLOAT
	Double   = onnxpb.TensorProto_DOUBLE
	Float16  = onnxpb.TensorProto_FLOAT16
	BFloat16 = onnxpb.TensorProto_BFLOAT16
)

// elemSize is the size in raw_data of one element of each fixed-size type.
var elemSize = map[onnxpb.TensorProto_DataType]int64{
	onnxpb.TensorProto_FLOAT: 4, onnxpb.TensorProto_UINT8: 1, onnxpb.TensorProto_INT8: 1,
	onnxpb.TensorProto_UINT16: 2, onnxpb.TensorProto_INT16: 2, onnxpb.TensorProto_INT32: 4,
	onnxpb.TensorProto_INT64: 8, onnxpb.TensorProto_BOOL: 1, onnxpb.TensorProto_FLOAT16: 2,
	onnxpb.TensorProto_DOUBLE: 8, onnxpb.TensorProto_UINT32: 4, onnxpb.TensorProto_UINT64: 8,
	onnxpb.TensorProto_COMPLEX64: 8, onnxpb.TensorProto_COMPLEX128: 16, onnxpb.TensorProto_BFLOAT16: 2,
}

// typedField names the field that holds each type's values when raw_data is
// not used, and how many entries one element takes there.
func typedField(dt onnxpb.TensorProto_DataType) (field string, per int64) {
	switch dt {
	case onnxpb.TensorProto_FLOAT:
		return "float_data", 1
	case onnxpb.TensorProto_COMPLEX64:
		return "float_data", 2
	case onnxpb.TensorProto_DOUBLE:
		return "double_data", 1
	case onnxpb.TensorProto_COMPLEX128:
		return "double_data", 2
	case onnxpb.TensorProto_INT64:
		return "int64_data", 1
	case onnxpb.TensorProto_UINT32, onnxpb.TensorProto_UINT64:
		return "uint64_data", 1
	case onnxpb.TensorProto_STRING:
		return "string_data", 1
	}
	return "int32_data", 1
}

// fieldLen is the number of entries in one typed data field.
type fieldLen struct {
	field string
	n     int
}

// typedLengths returns the typed data fields that hold entries, in field
// order.
func typedLengths(t *onnxpb.TensorProto) []fieldLen {
	var used []fieldLen
	for _, f := range []fieldLen{
		{"float_data", len(t.FloatData)}, {"int32_data", len(t.Int32Data)}, {"string_data", len(t.StringData)},
		{"int64_data", len(t.Int64Data)}, {"double_data", len(t.DoubleData)}, {"uint64_data", len(t.Uint64Data)},
	} {
		if f.n > 0 {
			used = append(used, f)
		}
	}
	return used
}

// numElements returns the product of dims, or an error if a dim is negative
// or the product exceeds maxElements.
func numElements(dims []int64) (int64, error) {
	n, nonzero := int64(1), int64(1)
	for _, d := range dims {
		if d < 0 {
			return 0, fmt.Errorf("dims %s: a negative dimension", shape(dims))
		}
		if d > 0 {
			if nonzero > maxElements/d {
				return 0, fmt.Errorf("dims %s: more than 2^50 elements", shape(dims))
			}
			nonzero *= d
		}
		n *= d
	}
	return n, nil
}

// checkTensor reports what is wrong with t's storage, or nil: external or
// segmented data, an unset or misplaced element type, or a data length that
// disagrees with the dims. Values are never read, and element types newer
// than ONNX 1.12 are not checked beyond their dims.
func checkTensor(t *onnxpb.TensorProto) *reason {
	bad := func(kind error, format string, args ...any) *reason {
		return &reason{kind: kind, msg: fmt.Sprintf(format, args...)}
	}
	if t.GetDataLocation() == onnxpb.TensorProto_EXTERNAL || len(t.ExternalData) > 0 {
		where := "another file"
		for _, e := range t.ExternalData {
			if e.GetKey() == "location" {
				where = fmt.Sprintf("%q", e.GetValue())
			}
		}
		return bad(arrowio.ErrUnsupported, "its data is stored outside the model, in %s: strata reads self-contained models only (save with onnx.save_model(model, path, save_as_external_data=False))", where)
	}
	if t.Segment != nil {
		return bad(arrowio.ErrUnsupported, "a segment of a larger tensor: segmented tensors are not supported")
	}
	n, err := numElements(t.Dims)
	if err != nil {
		return bad(arrowio.ErrFormat, "%v", err)
	}
	dt := onnxpb.TensorProto_DataType(t.GetDataType())
	if dt == onnxpb.TensorProto_UNDEFINED {
		return bad(arrowio.ErrFormat, "data_type is not set")
	}
	typed := typedLengths(t)
	size, known := elemSize[dt]
	if !known && dt != onnxpb.TensorProto_STRING {
		return nil // an element type newer than this reader: passed through
	}
	if t.RawData != nil {
		if len(typed) > 0 {
			return bad(arrowio.ErrFormat, "holds both raw_data and a typed data field")
		}
		if !known {
			return bad(arrowio.ErrFormat, "%s data cannot be stored in raw_data", dt)
		}
		if int64(len(t.RawData)) != n*size {
			return bad(arrowio.ErrFormat, "%s with dims %s needs %d bytes of raw_data, has %d", dt, shape(t.Dims), n*size, len(t.RawData))
		}
		return nil
	}
	field, per := typedField(dt)
	got := int64(0)
	for _, f := range typed {
		if f.field != field {
			return bad(arrowio.ErrFormat, "%s values belong in %s, not %s (%d entries)", dt, field, f.field, f.n)
		}
		got = int64(f.n)
	}
	if got != n*per {
		return bad(arrowio.ErrFormat, "%s with dims %s needs %d entries in %s, has %d", dt, shape(t.Dims), n*per, field, got)
	}
	return nil
}

// IsFloat reports whether strata reads the values of tensors of element type
// dt: FLOAT, DOUBLE, FLOAT16 and BFLOAT16.
func IsFloat(dt int32) bool {
	switch onnxpb.TensorProto_DataType(dt) {
	case Float, Double, Float16, BFloat16:
		return true
	}
	return false
}

// Floats returns the values of t, row-major, as float64: FLOAT, DOUBLE,
// FLOAT16 or BFLOAT16 tensors, from raw_data (little-endian) or from the
// typed field (float_data, double_data, or the 16-bit patterns in
// int32_data). Any other element type, or data whose length disagrees with
// the dims, is an error. t is not changed.
func Floats(t *onnxpb.TensorProto) ([]float64, error) {
	if r := checkTensor(t); r != nil {
		return nil, fmt.Errorf("onnx: tensor %q: %w", t.GetName(), r)
	}
	dt := onnxpb.TensorProto_DataType(t.GetDataType())
	if !IsFloat(t.GetDataType()) {
		return nil, fmt.Errorf("onnx: tensor %q: %w", t.GetName(), &reason{kind: arrowio.ErrUnsupported,
			msg: fmt.Sprintf("element type %s is not a float (want FLOAT, DOUBLE, FLOAT16 or BFLOAT16)", dt)})
	}
	n, _ := numElements(t.Dims)
	out := make([]float64, n)
	raw := t.RawData
	switch {
	case dt == Float && raw != nil:
		for i := range out {
			out[i] = float64(math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:])))
		}
	case dt == Float:
		for i, v := range t.FloatData {
			out[i] = float64(v)
		}
	case dt == Double && raw != nil:
		for i := range out {
			out[i] = math.Float64frombits(binary.LittleEndian.Uint64(raw[8*i:]))
		}
	case dt == Double:
		copy(out, t.DoubleData)
	default: // FLOAT16, BFLOAT16: 16-bit patterns
		convert := arrowio.F16ToFloat32
		if dt == BFloat16 {
			convert = arrowio.BF16ToFloat32
		}
		for i := range out {
			var bits uint16
			if raw != nil {
				bits = binary.LittleEndian.Uint16(raw[2*i:])
			} else if v := t.Int32Data[i]; v >= 0 && v <= math.MaxUint16 {
				bits = uint16(v)
			} else {
				return nil, fmt.Errorf("onnx: tensor %q: %w", t.GetName(), &reason{kind: arrowio.ErrFormat,
					msg: fmt.Sprintf("int32_data[%d] = %d is not a 16-bit pattern", i, v)})
			}
			out[i] = float64(convert(bits))
		}
	}
	return out, nil
}

// Float32Tensor returns a FLOAT tensor named name with the given dims whose
// raw_data holds values rounded to float32, little-endian. It panics if
// len(values) is not the product of dims.
func Float32Tensor(name string, dims []int64, values []float64) *onnxpb.TensorProto {
	mustCount(name, dims, len(values))
	raw := make([]byte, 4*len(values))
	for i, v := range values {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(float32(v)))
	}
	return &onnxpb.TensorProto{Name: proto.String(name), Dims: append([]int64(nil), dims...),
		DataType: proto.Int32(int32(Float)), RawData: raw}
}

// Int64Tensor returns an INT64 tensor (a Reshape's shape, a Transpose's
// axes) named name with the given dims and values in raw_data. It panics if
// len(values) is not the product of dims.
func Int64Tensor(name string, dims []int64, values []int64) *onnxpb.TensorProto {
	mustCount(name, dims, len(values))
	raw := make([]byte, 8*len(values))
	for i, v := range values {
		binary.LittleEndian.PutUint64(raw[8*i:], uint64(v))
	}
	return &onnxpb.TensorProto{Name: proto.String(name), Dims: append([]int64(nil), dims...),
		DataType: proto.Int32(int32(onnxpb.TensorProto_INT64)), RawData: raw}
}

func mustCount(name string, dims []int64, n int) {
	if c, err := numElements(dims); err != nil || c != int64(n) {
		panic(fmt.Sprintf("onnx: tensor %q: dims %s and %d values disagree", name, shape(dims), n))
	}
}
