package arrowio

import (
	"bytes"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// The expected strings are what pyarrow writes under ARROW:extension:metadata
// (Arrow C++ FixedShapeTensorType::Serialize: compact JSON, keys in the
// order shape, permutation, dim_names), e.g.
//
//	pa.fixed_shape_tensor(pa.float32(), [2, 3]).__arrow_ext_serialize__()
//	== b'{"shape":[2,3]}'
func TestFixedShapeTensorSerialize(t *testing.T) {
	tests := []struct {
		name  string
		shape []int64
		perm  []int64
		dims  []string
		want  string
	}{
		{"pyarrow [2,3]", []int64{2, 3}, nil, nil, `{"shape":[2,3]}`},
		{"1-D", []int64{784}, nil, nil, `{"shape":[784]}`},
		{"scalar", []int64{}, nil, nil, `{"shape":[]}`},
		{"permutation and names", []int64{2, 3, 4}, []int64{2, 0, 1}, []string{"C", "H", "W"},
			`{"shape":[2,3,4],"permutation":[2,0,1],"dim_names":["C","H","W"]}`},
		{"names escaped as rapidjson does", []int64{1, 1}, nil, []string{"a\"b\\c", "tab\there\x01é"},
			`{"shape":[1,1],"dim_names":["a\"b\\c","tab\there\u0001é"]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			typ, err := NewFixedShapeTensorType(arrow.PrimitiveTypes.Float32, tt.shape, tt.perm, tt.dims)
			if err != nil {
				t.Fatal(err)
			}
			if got := typ.Serialize(); got != tt.want {
				t.Errorf("got %s want %s", got, tt.want)
			}
			back, err := typ.Deserialize(typ.StorageType(), typ.Serialize())
			if err != nil {
				t.Fatal(err)
			}
			if !typ.ExtensionEquals(back.(arrow.ExtensionType)) || !back.(arrow.ExtensionType).ExtensionEquals(typ) {
				t.Errorf("Deserialize(Serialize()) = %s, want %s", back, typ)
			}
		})
	}
}

func TestFixedShapeTensorDeserializeErrors(t *testing.T) {
	fsl6 := arrow.FixedSizeListOf(6, arrow.PrimitiveTypes.Float32)
	tests := []struct {
		name    string
		storage arrow.DataType
		meta    string
	}{
		{"storage not fixed_size_list", arrow.ListOf(arrow.PrimitiveTypes.Float32), `{"shape":[2,3]}`},
		{"not JSON", fsl6, `{"shape":`},
		{"not an object", fsl6, `[2,3]`},
		{"null", fsl6, `null`},
		{"no shape", fsl6, `{"dim_names":["a","b"]}`},
		{"shape not ints", fsl6, `{"shape":[2.5,3]}`},
		{"shape of strings", fsl6, `{"shape":["2","3"]}`},
		{"negative dim", fsl6, `{"shape":[-2,-3]}`},
		{"product mismatch", fsl6, `{"shape":[2,4]}`},
		{"permutation wrong length", fsl6, `{"shape":[2,3],"permutation":[0]}`},
		{"permutation repeats", fsl6, `{"shape":[2,3],"permutation":[0,0]}`},
		{"permutation out of range", fsl6, `{"shape":[2,3],"permutation":[0,2]}`},
		{"dim_names wrong length", fsl6, `{"shape":[2,3],"dim_names":["a"]}`},
		{"dim_names not strings", fsl6, `{"shape":[2,3],"dim_names":[1,2]}`},
		{"trailing data", fsl6, `{"shape":[2,3]} x`},
		{"overflow", arrow.FixedSizeListOf(1, arrow.PrimitiveTypes.Float32), `{"shape":[4294967296,4294967296]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, err := (&FixedShapeTensorType{}).Deserialize(tt.storage, tt.meta); err == nil {
				t.Errorf("got %s, want an error", got)
			}
		})
	}
	// Unknown keys are ignored, as Arrow C++ does.
	if _, err := (&FixedShapeTensorType{}).Deserialize(fsl6, `{"shape":[2,3],"future":true}`); err != nil {
		t.Errorf("unknown key: %v", err)
	}
}

func TestFixedShapeTensorEquals(t *testing.T) {
	mk := func(shape, perm []int64, names []string) *FixedShapeTensorType {
		typ, err := NewFixedShapeTensorType(arrow.PrimitiveTypes.Float32, shape, perm, names)
		if err != nil {
			t.Fatal(err)
		}
		return typ
	}
	a := mk([]int64{2, 3}, nil, nil)
	tests := []struct {
		name string
		b    *FixedShapeTensorType
		want bool
	}{
		{"same", mk([]int64{2, 3}, nil, nil), true},
		{"identity permutation equals none", mk([]int64{2, 3}, []int64{0, 1}, nil), true},
		{"transposed shape", mk([]int64{3, 2}, nil, nil), false},
		{"other permutation", mk([]int64{2, 3}, []int64{1, 0}, nil), false},
		{"names", mk([]int64{2, 3}, nil, []string{"a", "b"}), false},
	}
	for _, tt := range tests {
		if got := a.ExtensionEquals(tt.b); got != tt.want {
			t.Errorf("%s: got %v want %v", tt.name, got, tt.want)
		}
	}
	if a.Fingerprint() == mk([]int64{3, 2}, nil, nil).Fingerprint() {
		t.Error("[2,3] and [3,2] share a fingerprint")
	}
	if got := mk([]int64{2, 3}, []int64{1, 0}, []string{"H", "W"}).String(); got != "extension<arrow.fixed_shape_tensor[value_type=float32, shape=[2,3], permutation=[1,0], dim_names=[H,W]]>" {
		t.Errorf("String() = %s", got)
	}
}

// TestFixedShapeTensorIPC writes a tensor column through the IPC format and
// reads it back as the registered extension type.
func TestFixedShapeTensorIPC(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	if reg := arrow.GetExtensionType(FixedShapeTensorName); reg == nil {
		t.Fatal("arrow.fixed_shape_tensor is not registered")
	}
	typ, err := NewFixedShapeTensorType(arrow.PrimitiveTypes.Float32, []int64{2, 3}, nil, []string{"r", "c"})
	if err != nil {
		t.Fatal(err)
	}
	b := array.NewExtensionBuilder(mem, typ)
	defer b.Release()
	lb := b.StorageBuilder().(*array.FixedSizeListBuilder)
	vb := lb.ValueBuilder().(*array.Float32Builder)
	for row := range 2 {
		lb.Append(true)
		for j := range 6 {
			vb.Append(float32(10*row + j))
		}
	}
	arr := b.NewArray()
	defer arr.Release()
	schema := arrow.NewSchema([]arrow.Field{{Name: "t", Type: typ}}, nil)
	rec := array.NewRecordBatch(schema, []arrow.Array{arr}, 2)
	defer rec.Release()

	var buf bytes.Buffer
	w := ipc.NewWriter(&buf, ipc.WithSchema(schema), ipc.WithAllocator(mem))
	if err := w.Write(rec); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(buf.Bytes(), []byte(`{"shape":[2,3],"dim_names":["r","c"]}`)) {
		t.Error("IPC stream does not carry the serialized metadata")
	}
	r, err := ipc.NewReader(&buf, ipc.WithAllocator(mem))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Release()
	if !r.Next() {
		t.Fatal(r.Err())
	}
	got := r.RecordBatch().Column(0)
	gt, ok := got.DataType().(*FixedShapeTensorType)
	if !ok {
		t.Fatalf("read type %T %s, want *FixedShapeTensorType", got.DataType(), got.DataType())
	}
	if !gt.ExtensionEquals(typ) {
		t.Errorf("read %s want %s", gt, typ)
	}
	if _, ok := got.(*FixedShapeTensorArray); !ok {
		t.Errorf("array type %T", got)
	}
	if !array.Equal(got, arr) {
		t.Errorf("values differ: %v vs %v", got, arr)
	}
}
