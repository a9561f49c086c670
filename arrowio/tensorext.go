package arrowio

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
)

// FixedShapeTensorName is the name of Arrow's canonical fixed-shape tensor
// extension type (pyarrow's pa.fixed_shape_tensor).
const FixedShapeTensorName = "arrow.fixed_shape_tensor"

// FixedShapeTensorType is the canonical arrow.fixed_shape_tensor extension
// type, which arrow-go v18 does not ship: each value is a tensor of a fixed
// shape, stored as a fixed_size_list<value_type>[product of shape] in
// row-major order. Its serialized metadata is byte-for-byte what pyarrow and
// Arrow C++ write, e.g. {"shape":[2,3]} or
// {"shape":[2,3],"permutation":[1,0],"dim_names":["H","W"]}.
//
// The package registers the type with arrow.RegisterExtensionType at init,
// unless a type of that name is already registered, so IPC and Parquet
// readers produce it for columns pyarrow wrote.
type FixedShapeTensorType struct {
	arrow.ExtensionBase
	shape       []int64
	permutation []int64 // nil means the identity
	dimNames    []string
}

// FixedShapeTensorArray is the array type of FixedShapeTensorType; its
// Storage() is the *array.FixedSizeList.
type FixedShapeTensorArray struct {
	array.ExtensionArrayBase
}

var (
	_ arrow.ExtensionType  = (*FixedShapeTensorType)(nil)
	_ array.ExtensionArray = (*FixedShapeTensorArray)(nil)
)

func init() {
	if arrow.GetExtensionType(FixedShapeTensorName) != nil {
		return
	}
	proto, err := NewFixedShapeTensorType(arrow.PrimitiveTypes.Float32, []int64{1}, nil, nil)
	if err == nil {
		// A concurrent registration of the same name can only come from
		// another package's init; either type reads the same bytes.
		_ = arrow.RegisterExtensionType(proto)
	}
}

// NewFixedShapeTensorType returns the tensor type of the given value type
// and shape. permutation (nil for the identity) and dimNames (nil for none)
// must have one entry per dimension; permutation must be a permutation of
// 0..ndim-1. The product of shape must fit an int32, the length of the
// storage fixed_size_list.
func NewFixedShapeTensorType(valueType arrow.DataType, shape, permutation []int64, dimNames []string) (*FixedShapeTensorType, error) {
	if valueType == nil {
		return nil, fmt.Errorf("%w: fixed_shape_tensor: nil value type", ErrFormat)
	}
	size := int64(1)
	for _, d := range shape {
		if d < 0 {
			return nil, fmt.Errorf("%w: fixed_shape_tensor: negative dimension in shape %v", ErrFormat, shape)
		}
		if d != 0 && size > math.MaxInt32/d {
			return nil, fmt.Errorf("%w: fixed_shape_tensor: shape %v has more than %d values", ErrFormat, shape, math.MaxInt32)
		}
		size *= d
	}
	if len(permutation) > 0 {
		if len(permutation) != len(shape) {
			return nil, fmt.Errorf("%w: fixed_shape_tensor: permutation %v does not match shape %v", ErrFormat, permutation, shape)
		}
		seen := make([]bool, len(permutation))
		for _, p := range permutation {
			if p < 0 || p >= int64(len(permutation)) || seen[p] {
				return nil, fmt.Errorf("%w: fixed_shape_tensor: %v is not a permutation", ErrFormat, permutation)
			}
			seen[p] = true
		}
	}
	if len(dimNames) > 0 && len(dimNames) != len(shape) {
		return nil, fmt.Errorf("%w: fixed_shape_tensor: %d dim_names for shape %v", ErrFormat, len(dimNames), shape)
	}
	return &FixedShapeTensorType{
		ExtensionBase: arrow.ExtensionBase{Storage: arrow.FixedSizeListOf(int32(size), valueType)},
		shape:         slices.Clone(shape),
		permutation:   clone(permutation),
		dimNames:      clone(dimNames),
	}, nil
}

// Shape returns the tensor shape (a copy).
func (t *FixedShapeTensorType) Shape() []int64 { return slices.Clone(t.shape) }

// Permutation returns the dimension permutation (a copy), nil for identity.
func (t *FixedShapeTensorType) Permutation() []int64 { return clone(t.permutation) }

// DimNames returns the dimension names (a copy), nil if unnamed.
func (t *FixedShapeTensorType) DimNames() []string { return clone(t.dimNames) }

// ValueType returns the type of the tensor elements.
func (t *FixedShapeTensorType) ValueType() arrow.DataType {
	return t.Storage.(*arrow.FixedSizeListType).Elem()
}

// ArrayType returns the reflect type of FixedShapeTensorArray.
func (*FixedShapeTensorType) ArrayType() reflect.Type {
	return reflect.TypeOf(FixedShapeTensorArray{})
}

// ExtensionName returns "arrow.fixed_shape_tensor".
func (*FixedShapeTensorType) ExtensionName() string { return FixedShapeTensorName }

// String formats the type as Arrow C++ does.
func (t *FixedShapeTensorType) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "extension<%s[value_type=%s, shape=%s", FixedShapeTensorName, t.ValueType(), joinInts(t.shape))
	if len(t.permutation) > 0 {
		fmt.Fprintf(&b, ", permutation=%s", joinInts(t.permutation))
	}
	if len(t.dimNames) > 0 {
		fmt.Fprintf(&b, ", dim_names=[%s]", strings.Join(t.dimNames, ","))
	}
	b.WriteString("]>")
	return b.String()
}

func joinInts(v []int64) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.FormatInt(x, 10)
	}
	return "[" + strings.Join(s, ",") + "]"
}

// Fingerprint distinguishes tensor types that share a storage type but not
// a shape.
func (t *FixedShapeTensorType) Fingerprint() string {
	return t.ExtensionBase.Fingerprint() + "{" + t.Serialize() + "}"
}

// Serialize returns the extension metadata in the compact JSON Arrow C++
// writes: "shape", then "permutation" and "dim_names" when set, no spaces,
// strings escaped as rapidjson escapes them.
func (t *FixedShapeTensorType) Serialize() string {
	var b strings.Builder
	b.WriteString(`{"shape":`)
	b.WriteString(joinInts(t.shape))
	if len(t.permutation) > 0 {
		b.WriteString(`,"permutation":`)
		b.WriteString(joinInts(t.permutation))
	}
	if len(t.dimNames) > 0 {
		b.WriteString(`,"dim_names":[`)
		for i, n := range t.dimNames {
			if i > 0 {
				b.WriteByte(',')
			}
			writeRapidJSONString(&b, n)
		}
		b.WriteByte(']')
	}
	b.WriteByte('}')
	return b.String()
}

// writeRapidJSONString escapes like rapidjson's Writer: quote, backslash,
// \b \f \n \r \t, other control characters as \u00XX (upper-case hex), and
// everything else, including non-ASCII UTF-8, as is.
func writeRapidJSONString(b *strings.Builder, s string) {
	const hex = "0123456789ABCDEF"
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			if c < 0x20 {
				b.WriteString(`\u00`)
				b.WriteByte(hex[c>>4])
				b.WriteByte(hex[c&0xf])
			} else {
				b.WriteByte(c)
			}
		}
	}
	b.WriteByte('"')
}

// Deserialize builds the type from its storage type and metadata, with the
// checks of Arrow C++: the storage is a fixed_size_list, "shape" is present
// and holds integers, "permutation" and "dim_names" (optional) match it, and
// the product of the shape equals the list size. Unknown keys are ignored.
func (*FixedShapeTensorType) Deserialize(storage arrow.DataType, data string) (arrow.ExtensionType, error) {
	fsl, ok := storage.(*arrow.FixedSizeListType)
	if !ok {
		return nil, fmt.Errorf("%w: fixed_shape_tensor: storage must be a fixed_size_list, got %s", ErrFormat, storage)
	}
	var raw map[string]json.RawMessage
	dec := json.NewDecoder(strings.NewReader(data))
	if err := dec.Decode(&raw); err != nil || raw == nil {
		return nil, fmt.Errorf("%w: fixed_shape_tensor: invalid metadata %q", ErrFormat, data)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: fixed_shape_tensor: invalid metadata %q", ErrFormat, data)
	}
	shapeJSON, ok := raw["shape"]
	if !ok {
		return nil, fmt.Errorf("%w: fixed_shape_tensor: metadata %q has no shape", ErrFormat, data)
	}
	shape, err := jsonInts(shapeJSON, "shape")
	if err != nil {
		return nil, err
	}
	var perm []int64
	if p, ok := raw["permutation"]; ok {
		if perm, err = jsonInts(p, "permutation"); err != nil {
			return nil, err
		}
	}
	var names []string
	if n, ok := raw["dim_names"]; ok {
		if err := json.Unmarshal(n, &names); err != nil {
			return nil, fmt.Errorf("%w: fixed_shape_tensor: dim_names must be an array of strings", ErrFormat)
		}
	}
	t, err := NewFixedShapeTensorType(fsl.Elem(), shape, perm, names)
	if err != nil {
		return nil, err
	}
	if got := t.Storage.(*arrow.FixedSizeListType).Len(); got != fsl.Len() {
		return nil, fmt.Errorf("%w: fixed_shape_tensor: product of shape %v (%d) does not match the list size %d", ErrFormat, shape, got, fsl.Len())
	}
	t.Storage = storage // keep the element field's name and nullability
	return t, nil
}

// jsonInts decodes a JSON array of integers, rejecting fractions and
// quoted numbers.
func jsonInts(data json.RawMessage, what string) ([]int64, error) {
	var items []json.RawMessage
	if err := json.Unmarshal(data, &items); err != nil || items == nil {
		return nil, fmt.Errorf("%w: fixed_shape_tensor: %s must be an array of integers", ErrFormat, what)
	}
	out := make([]int64, len(items))
	for i, it := range items {
		v, err := strconv.ParseInt(string(it), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%w: fixed_shape_tensor: %s must contain integers, got %s", ErrFormat, what, it)
		}
		out[i] = v
	}
	return out, nil
}

// ExtensionEquals reports whether other is a fixed-shape tensor type with
// the same storage, shape and dim_names, and an equal permutation (an
// absent permutation equals the identity), as Arrow C++ compares them.
func (t *FixedShapeTensorType) ExtensionEquals(other arrow.ExtensionType) bool {
	o, ok := other.(*FixedShapeTensorType)
	if !ok || other.ExtensionName() != t.ExtensionName() {
		return false
	}
	trivial := func(p []int64) bool {
		for i, v := range p {
			if v != int64(i) {
				return false
			}
		}
		return true
	}
	permEq := slices.Equal(t.permutation, o.permutation) || (trivial(t.permutation) && trivial(o.permutation))
	return arrow.TypeEqual(t.Storage, o.Storage) && slices.Equal(t.shape, o.shape) &&
		slices.Equal(t.dimNames, o.dimNames) && permEq
}
