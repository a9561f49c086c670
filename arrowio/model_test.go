package arrowio

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/strata-ml/strata/compute"
)

// equalModels compares two models, tensor values bit for bit.
func equalModels(t *testing.T, got, want *Model) {
	t.Helper()
	gj, _ := json.Marshal(got.Arch)
	wj, _ := json.Marshal(want.Arch)
	if !bytes.Equal(gj, wj) {
		t.Errorf("architecture:\ngot  %s\nwant %s", gj, wj)
	}
	if len(got.Meta) != len(want.Meta) || (len(want.Meta) > 0 && !reflect.DeepEqual(got.Meta, want.Meta)) {
		t.Errorf("meta: got %v want %v", got.Meta, want.Meta)
	}
	if len(got.Tensors) != len(want.Tensors) {
		t.Fatalf("got %d tensors want %d", len(got.Tensors), len(want.Tensors))
	}
	for i := range want.Tensors {
		g, w := got.Tensors[i], want.Tensors[i]
		if g.Name != w.Name || g.Role != w.Role || !slices.Equal(g.Shape, w.Shape) {
			t.Errorf("tensor %d: got %s/%s%v want %s/%s%v", i, g.Name, g.Role, g.Shape, w.Name, w.Role, w.Shape)
		}
		if !sameBits(g.Data, w.Data) {
			t.Errorf("tensor %q: values differ bitwise", w.Name)
		}
		if g.DType != w.DType || !bytes.Equal(g.Raw, w.Raw) {
			t.Errorf("tensor %q: raw %s %x, want %s %x", w.Name, g.DType, g.Raw, w.DType, w.Raw)
		}
	}
}

// rawModel2 is a generic checkpoint that needs format version 2: raw
// tensors of several dtypes (an empty one too) and layers whose weights
// have their own names, an [in, out] layout and a convolution kernel.
func rawModel2() *Model {
	rng := rand.New(rand.NewPCG(9, 9))
	return &Model{
		Arch: Architecture{FormatVersion: 2, Kind: ArchGeneric, Layers: []Layer{
			{Name: "linear_77.w_0", Kind: compute.KindLinear, In: 4, Out: 3, Weight: "linear_77.w_0",
				Structure: json.RawMessage(`{"family":"lowrank","rank":1}`)},
			{Name: "h.0.attn.c_attn", Kind: compute.KindLinear, In: 4, Out: 6, Layout: LayoutInOut},
			{Name: "conv1", Kind: compute.KindLinear, In: 18, Out: 4, Bias: true, Kernel: []int64{3, 3}},
		}},
		Tensors: []Tensor{
			randTensor(rng, "linear_77.w_0.trunk.U", compute.RoleTrunk, 3, 1),
			randTensor(rng, "linear_77.w_0.trunk.V", compute.RoleTrunk, 4, 1),
			randTensor(rng, "h.0.attn.c_attn.weight", compute.RoleWeight, 4, 6),
			randTensor(rng, "conv1.weight", compute.RoleWeight, 4, 2, 3, 3),
			{Name: "bn.num_batches_tracked", Role: "num_batches_tracked", DType: "I64", Raw: []byte{7, 0, 0, 0, 0, 0, 0, 0}},
			{Name: "position_ids", Role: "position_ids", Shape: []int64{1, 3}, DType: "I64",
				Raw: []byte{0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0}},
			{Name: "mask", Role: "mask", Shape: []int64{2, 2}, DType: "BOOL", Raw: []byte{1, 0, 0, 1}},
			{Name: "empty_ids", Role: "ids", Shape: []int64{0}, DType: "I32", Raw: []byte{}},
			{Name: "half", Role: "tensor", Shape: []int64{2}, DType: "F16", Raw: []byte{0x00, 0x3c, 0x00, 0xc0}},
		},
	}
}

// TestModelVersion checks that a model is written in the oldest format
// version that holds it: float32 tensors and plain layers in version 1
// (four columns, as before version 2), raw tensors or layers with their
// own weight storage in version 2.
func TestModelVersion(t *testing.T) {
	onlyLayout := mlp(4)
	onlyLayout.Arch.Kind = ArchGeneric
	onlyLayout.Arch.FormatVersion = 2
	onlyLayout.Arch.Layers[0].Layout = LayoutInOut
	tests := []struct {
		name    string
		m       *Model
		version string
		columns int
	}{
		{"float32 tensors", mlp(3), "1", 4},
		{"raw tensors", rawModel2(), "2", 6},
		{"a layer layout alone", onlyLayout, "2", 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := EncodeModel(&buf, tt.m); err != nil {
				t.Fatal(err)
			}
			r, err := ipc.NewFileReader(bytes.NewReader(buf.Bytes()))
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			md := r.Schema().Metadata()
			if got := md.Values()[md.FindKey(MetaFormatVersion)]; got != tt.version {
				t.Errorf("%s %q, want %q", MetaFormatVersion, got, tt.version)
			}
			var arch struct {
				FormatVersion int `json:"format_version"`
			}
			if err := json.Unmarshal([]byte(md.Values()[md.FindKey(MetaArchitecture)]), &arch); err != nil || strconv.Itoa(arch.FormatVersion) != tt.version {
				t.Errorf("architecture format_version %d (%v), want %s", arch.FormatVersion, err, tt.version)
			}
			if n := r.Schema().NumFields(); n != tt.columns {
				t.Errorf("%d columns, want %d", n, tt.columns)
			}
		})
	}
}

func TestModelRoundTrip(t *testing.T) {
	special := []float32{
		0, float32(math.Copysign(0, -1)), math.SmallestNonzeroFloat32, -math.SmallestNonzeroFloat32,
		math.MaxFloat32, -math.MaxFloat32, 1, -1, 0.1, 1e-30, 3.4e38,
	}
	decomposed := &Model{
		Arch: Architecture{
			FormatVersion: 1, Task: compute.TaskRegression, Inputs: 6,
			Layers: []Layer{
				{Name: "0", Kind: compute.KindLinear, In: 6, Out: 6, Bias: true, Structure: json.RawMessage(`{"family":"monarch","blocks":2,"residual":{"kind":"lowrank","rank":1}}`)},
				{Name: "1", Kind: compute.KindActivation, Activation: "gelu"},
				{Name: "2", Kind: compute.KindLayerNorm, In: 6},
				{Name: "3", Kind: compute.KindLinear, In: 6, Out: 1},
			},
			Standardization: &Standardization{Mean: []float64{0, 1, 2, 3, 4, 5}, Std: []float64{1, 1, 0.5, 2, 3, 1e-3}},
		},
		Tensors: func() []Tensor {
			rng := rand.New(rand.NewPCG(7, 7))
			return []Tensor{
				randTensor(rng, "0.trunk.L", compute.RoleTrunk, 2, 3, 3),
				randTensor(rng, "0.trunk.R", compute.RoleTrunk, 2, 3, 3),
				randTensor(rng, "0.correction.U", compute.RoleCorrection, 6, 1),
				randTensor(rng, "0.correction.V", compute.RoleCorrection, 6, 1),
				randTensor(rng, "0.bias", compute.RoleBias, 6),
				randTensor(rng, "2.weight", compute.RoleWeight, 6),
				randTensor(rng, "2.bias", compute.RoleBias, 6),
				randTensor(rng, "3.weight", compute.RoleWeight, 1, 6),
			}
		}(),
		Meta: map[string]string{"source": "unit test", "sha256.input": "abc"},
	}
	tests := []struct {
		name       string
		model      *Model
		batchLimit int // maxBatchValues during the write; 0 keeps the default
	}{
		{"mlp", mlp(1), 0},
		{"mlp in one-tensor batches", mlp(2), 1},
		{"decomposed with meta", decomposed, 0},
		{"decomposed in small batches", decomposed, 20},
		{"special values, scalar and empty tensors", &Model{
			Arch: Architecture{FormatVersion: 1},
			Tensors: []Tensor{
				{Name: "special", Role: "weight", Shape: []int64{int64(len(special))}, Data: special},
				{Name: "scalar", Role: "scale", Data: []float32{2.5}},
				{Name: "empty", Role: "weight", Shape: []int64{0, 5}},
			},
		}, 0},
		{"no tensors", &Model{Arch: Architecture{FormatVersion: 1}}, 0},
		{"raw tensors and weight storage (version 2)", rawModel2(), 0},
		{"version 2 in small batches", rawModel2(), 10},
		{"generic checkpoint", &Model{
			Arch: Architecture{FormatVersion: 1, Kind: ArchGeneric, Layers: []Layer{
				{Name: "model.layers.0.q_proj", Kind: compute.KindLinear, In: 4, Out: 4, Structure: json.RawMessage(`{"family":"lowrank","rank":1}`)},
			}},
			Tensors: func() []Tensor {
				rng := rand.New(rand.NewPCG(8, 8))
				return []Tensor{
					randTensor(rng, "model.layers.0.q_proj.trunk.U", compute.RoleTrunk, 4, 1),
					randTensor(rng, "model.layers.0.q_proj.trunk.V", compute.RoleTrunk, 4, 1),
					randTensor(rng, "model.embed_tokens.weight", "tensor", 10, 4),
				}
			}(),
		}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.batchLimit > 0 {
				old := maxBatchValues
				maxBatchValues = tt.batchLimit
				defer func() { maxBatchValues = old }()
			}
			path := filepath.Join(t.TempDir(), "model.arrow")
			if err := WriteModel(path, tt.model); err != nil {
				t.Fatal(err)
			}
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			readers := []struct {
				name string
				read func(mem memory.Allocator) (*Model, error)
			}{
				{"mmap", func(mem memory.Allocator) (*Model, error) { return ReadModel(path, WithAllocator(mem)) }},
				{"no mmap", func(mem memory.Allocator) (*Model, error) {
					return ReadModel(path, WithAllocator(mem), WithMmap(false))
				}},
				{"ReaderAt", func(mem memory.Allocator) (*Model, error) {
					return ReadModelFrom(bytes.NewReader(raw), int64(len(raw)), "model.arrow", WithAllocator(mem))
				}},
				{"MapModel", func(mem memory.Allocator) (*Model, error) { return mapAliased(t, path, WithAllocator(mem)) }},
				{"MapModel no mmap", func(mem memory.Allocator) (*Model, error) {
					return mapAliased(t, path, WithAllocator(mem), WithMmap(false))
				}},
			}
			for _, r := range readers {
				t.Run(r.name, func(t *testing.T) {
					mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
					defer mem.AssertSize(t, 0)
					got, err := r.read(mem)
					if err != nil {
						t.Fatal(err)
					}
					equalModels(t, got, tt.model)
				})
			}
		})
	}
}

func TestEncodeModelMatchesWriteModel(t *testing.T) {
	m := mlp(3)
	path := filepath.Join(t.TempDir(), "m.arrow")
	if err := WriteModel(path, m); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := EncodeModel(&buf, m); err != nil {
		t.Fatal(err)
	}
	onDisk, _ := os.ReadFile(path)
	if !bytes.Equal(buf.Bytes(), onDisk) {
		t.Error("EncodeModel and WriteModel wrote different bytes")
	}
}

func TestModelTensorLookup(t *testing.T) {
	m := mlp(1)
	w, ok := m.Tensor("2.weight")
	if !ok || w.Name != "2.weight" || !slices.Equal(w.Shape, []int64{3, 8}) {
		t.Fatalf("Tensor(2.weight) = %v, %v", w, ok)
	}
	w.Data[0] = 42 // aliases the model
	if m.Tensors[2].Data[0] != 42 {
		t.Error("Tensor does not alias m.Tensors")
	}
	if _, ok := m.Tensor("9.weight"); ok {
		t.Error("found a missing tensor")
	}
}

// TestModelGolden reads a model file committed under testdata/arrowio, so
// that a change to the writer or reader that breaks existing files fails.
// Run with -update to rewrite it (only for a deliberate format change).
func TestModelGolden(t *testing.T) {
	path := fixture("model_v1.arrow")
	want := mlp(42)
	want.Meta = map[string]string{"created_by": "arrowio golden test"}
	if *update {
		if err := WriteModel(path, want); err != nil {
			t.Fatal(err)
		}
	}
	got, err := ReadModel(path)
	if err != nil {
		t.Fatal(err)
	}
	equalModels(t, got, want)
}

// rawModel describes the columns of a hand-made model file; nil fields take
// valid defaults so that each case changes one thing.
type rawModel struct {
	meta   [][2]string // schema metadata, in order
	fields []arrow.Field
	build  func(mem memory.Allocator) []arrow.Array
}

var validArchJSON = `{"format_version":1,"task":"classification","inputs":2,"layers":[{"name":"0","kind":"linear","in":2,"out":1}]}`

func defaultMeta(arch string) [][2]string {
	return [][2]string{{MetaFormatVersion, "1"}, {MetaArchitecture, arch}}
}

var modelFields = []arrow.Field{
	{Name: "name", Type: arrow.BinaryTypes.String},
	{Name: "role", Type: arrow.BinaryTypes.String},
	{Name: "shape", Type: arrow.ListOf(arrow.PrimitiveTypes.Int64)},
	{Name: "data", Type: arrow.LargeListOf(arrow.PrimitiveTypes.Float32)},
}

// modelColumnsOf builds the four standard columns; a nil entry in names or
// data rows is a null.
func modelColumnsOf(mem memory.Allocator, names []*string, shapes [][]int64, data [][]float32, nullValueAt [2]int) []arrow.Array {
	nb := array.NewStringBuilder(mem)
	rb := array.NewStringBuilder(mem)
	sb := array.NewListBuilder(mem, arrow.PrimitiveTypes.Int64)
	db := array.NewLargeListBuilder(mem, arrow.PrimitiveTypes.Float32)
	defer nb.Release()
	defer rb.Release()
	defer sb.Release()
	defer db.Release()
	for i := range names {
		if names[i] == nil {
			nb.AppendNull()
		} else {
			nb.Append(*names[i])
		}
		rb.Append("weight")
		sb.Append(true)
		sb.ValueBuilder().(*array.Int64Builder).AppendValues(shapes[i], nil)
		db.Append(true)
		vb := db.ValueBuilder().(*array.Float32Builder)
		for j, v := range data[i] {
			if nullValueAt == [2]int{i + 1, j + 1} {
				vb.AppendNull()
			} else {
				vb.Append(v)
			}
		}
	}
	return []arrow.Array{nb.NewArray(), rb.NewArray(), sb.NewArray(), db.NewArray()}
}

func ptr(s string) *string { return &s }

func writeRawModel(t *testing.T, path string, rm rawModel) {
	t.Helper()
	mem := memory.NewGoAllocator()
	keys, vals := []string{}, []string{}
	for _, kv := range rm.meta {
		keys, vals = append(keys, kv[0]), append(vals, kv[1])
	}
	md := arrow.NewMetadata(keys, vals)
	fields := rm.fields
	if fields == nil {
		fields = modelFields
	}
	schema := arrow.NewSchema(fields, &md)
	cols := rm.build(mem)
	rec := array.NewRecordBatch(schema, cols, int64(cols[0].Len()))
	for _, c := range cols {
		c.Release()
	}
	defer rec.Release()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := ipc.NewFileWriter(f, ipc.WithSchema(schema), ipc.WithAllocator(mem))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(rec); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

func oneTensor(name string, shape []int64, data []float32) func(memory.Allocator) []arrow.Array {
	return func(mem memory.Allocator) []arrow.Array {
		return modelColumnsOf(mem, []*string{ptr(name)}, [][]int64{shape}, [][]float32{data}, [2]int{})
	}
}

func TestReadModelInvalid(t *testing.T) {
	ok2 := oneTensor("0.weight", []int64{1, 2}, []float32{1, 2})
	nan := float32(math.NaN())
	tests := []struct {
		name    string
		raw     *rawModel // nil: bytes is the file
		bytes   []byte
		wantErr error
		want    []string
	}{
		{"not arrow", nil, []byte("this is not an arrow file at all"), ErrFormat, []string{"model.arrow: ", "not a readable Arrow IPC file"}},
		{"empty file", nil, []byte{}, ErrFormat, []string{"not a readable Arrow IPC file"}},
		{"missing format version", &rawModel{meta: [][2]string{{MetaArchitecture, validArchJSON}}, build: ok2}, nil, ErrFormat,
			[]string{`metadata "strata.format_version": missing`}},
		{"newer format version", &rawModel{meta: [][2]string{{MetaFormatVersion, "3"}, {MetaArchitecture, validArchJSON}}, build: ok2}, nil, ErrUnsupported,
			[]string{`"strata.format_version"`, `is "3"`}},
		{"version 2 without its columns", &rawModel{meta: [][2]string{{MetaFormatVersion, "2"}, {MetaArchitecture, strings.Replace(validArchJSON, `"format_version":1`, `"format_version":2`, 1)}}, build: ok2}, nil, ErrFormat,
			[]string{`column "dtype": missing`}},
		{"architecture version differs from the file's", &rawModel{meta: [][2]string{{MetaFormatVersion, "2"}, {MetaArchitecture, validArchJSON}}, build: ok2}, nil, ErrFormat,
			[]string{`format_version is 1, the file's strata.format_version is 2`}},
		{"garbage format version", &rawModel{meta: [][2]string{{MetaFormatVersion, "one"}, {MetaArchitecture, validArchJSON}}, build: ok2}, nil, ErrFormat,
			[]string{`is "one"`}},
		{"missing architecture", &rawModel{meta: [][2]string{{MetaFormatVersion, "1"}}, build: ok2}, nil, ErrFormat,
			[]string{`metadata "strata.architecture": missing`}},
		{"architecture unknown field", &rawModel{meta: defaultMeta(`{"format_version":1,"task":"regression","inputs":2,"layers":[],"dropout":0.1}`), build: ok2}, nil, ErrFormat,
			[]string{`unknown field "dropout"`}},
		{"architecture unknown layer field", &rawModel{meta: defaultMeta(`{"format_version":1,"task":"regression","inputs":2,"layers":[{"name":"0","kind":"linear","in":2,"out":1,"bais":true}]}`), build: ok2}, nil, ErrFormat,
			[]string{`unknown field "bais"`}},
		{"architecture trailing data", &rawModel{meta: defaultMeta(validArchJSON + ` {}`), build: ok2}, nil, ErrFormat,
			[]string{"data after the object"}},
		{"architecture not JSON", &rawModel{meta: defaultMeta(`{"format_version":1,`), build: ok2}, nil, ErrFormat,
			[]string{"invalid architecture JSON"}},
		{"architecture version 3", &rawModel{meta: defaultMeta(`{"format_version":3,"task":"regression","inputs":2,"layers":[]}`), build: ok2}, nil, ErrUnsupported,
			[]string{"format_version is 3"}},
		{"version 2 layer field in version 1", &rawModel{meta: defaultMeta(`{"format_version":1,"task":"regression","inputs":2,"layers":[{"name":"0","kind":"linear","in":2,"out":1,"layout":"in-out"}]}`), build: ok2}, nil, ErrFormat,
			[]string{"format version 1 does not have"}},
		{"architecture bad layout", &rawModel{meta: defaultMeta(`{"format_version":1,"task":"regression","inputs":2,"layers":[{"name":"0","kind":"linear","in":2,"out":1,"layout":"rows"}]}`), build: ok2}, nil, ErrFormat,
			[]string{`layer "0"`, `layout "rows"`}},
		{"architecture kernel not dividing in", &rawModel{meta: defaultMeta(`{"format_version":1,"task":"regression","inputs":2,"layers":[{"name":"0","kind":"linear","in":10,"out":1,"kernel":[3,3]}]}`), build: ok2}, nil, ErrFormat,
			[]string{`layer "0"`, `kernel [3 3]`}},
		{"architecture bad task", &rawModel{meta: defaultMeta(`{"format_version":1,"task":"ranking","inputs":2,"layers":[]}`), build: ok2}, nil, ErrFormat,
			[]string{`task "ranking"`}},
		{"architecture bad kind", &rawModel{meta: defaultMeta(`{"format_version":1,"kind":"cnn","task":"regression","inputs":2,"layers":[]}`), build: ok2}, nil, ErrFormat,
			[]string{`kind "cnn"`}},
		{"architecture bad activation", &rawModel{meta: defaultMeta(`{"format_version":1,"task":"regression","inputs":2,"layers":[{"name":"1","kind":"activation","activation":"swish"}]}`), build: ok2}, nil, ErrFormat,
			[]string{`layer "1"`, `unknown activation "swish"`}},
		{"architecture duplicate layer", &rawModel{meta: defaultMeta(`{"format_version":1,"task":"regression","inputs":2,"layers":[{"name":"0","kind":"linear","in":2,"out":1},{"name":"0","kind":"linear","in":1,"out":1}]}`), build: ok2}, nil, ErrFormat,
			[]string{`layer "0"`, "duplicate layer name"}},
		{"architecture bad standardization", &rawModel{meta: defaultMeta(`{"format_version":1,"task":"regression","inputs":2,"layers":[],"standardization":{"mean":[0,0],"std":[1,0]}}`), build: ok2}, nil, ErrFormat,
			[]string{"std 1 is 0"}},
		{"reserved metadata key", &rawModel{meta: append(defaultMeta(validArchJSON), [2]string{"strata.future", "x"}), build: ok2}, nil, ErrFormat,
			[]string{`metadata "strata.future"`}},
		{"missing data column", &rawModel{meta: defaultMeta(validArchJSON), fields: modelFields[:3], build: func(mem memory.Allocator) []arrow.Array {
			return ok2(mem)[:3]
		}}, nil, ErrFormat, []string{`column "data": missing (columns: "name", "role", "shape")`}},
		{"data column not large_list", &rawModel{meta: defaultMeta(validArchJSON),
			fields: append(slices.Clone(modelFields[:3]), arrow.Field{Name: "data", Type: arrow.ListOf(arrow.PrimitiveTypes.Float32)}),
			build: func(mem memory.Allocator) []arrow.Array {
				cols := ok2(mem)
				cols[3].Release()
				b := array.NewListBuilder(mem, arrow.PrimitiveTypes.Float32)
				defer b.Release()
				b.Append(true)
				b.ValueBuilder().(*array.Float32Builder).AppendValues([]float32{1, 2}, nil)
				cols[3] = b.NewArray()
				return cols
			}}, nil, ErrFormat, []string{`column "data": has type list<item: float32, nullable>, want large_list<item: float32, nullable>`}},
		{"shape does not match data", &rawModel{meta: defaultMeta(validArchJSON), build: oneTensor("0.weight", []int64{10, 64}, make([]float32, 600))}, nil, ErrFormat,
			[]string{`model.arrow: tensor "0.weight": shape [10 64] needs 640 values, has 600`}},
		{"negative dimension", &rawModel{meta: defaultMeta(validArchJSON), build: oneTensor("0.weight", []int64{-2, -1}, []float32{1, 2})}, nil, ErrFormat,
			[]string{`tensor "0.weight": shape [-2 -1] has negative dimension -2 at axis 0`}},
		{"shape product overflows", &rawModel{meta: defaultMeta(validArchJSON), build: oneTensor("0.weight", []int64{1 << 62, 8}, nil)}, nil, ErrFormat,
			[]string{`tensor "0.weight"`, "overflows"}},
		{"NaN value", &rawModel{meta: defaultMeta(validArchJSON), build: oneTensor("0.weight", []int64{1, 3}, []float32{1, 2, nan})}, nil, ErrFormat,
			[]string{`tensor "0.weight": value at index 2 is NaN`}},
		{"infinite value", &rawModel{meta: defaultMeta(validArchJSON), build: oneTensor("0.weight", []int64{2}, []float32{float32(math.Inf(-1)), 0})}, nil, ErrFormat,
			[]string{`tensor "0.weight": value at index 0 is -Inf`}},
		{"duplicate tensor names", &rawModel{meta: defaultMeta(validArchJSON), build: func(mem memory.Allocator) []arrow.Array {
			return modelColumnsOf(mem, []*string{ptr("a"), ptr("a")}, [][]int64{{1}, {1}}, [][]float32{{1}, {2}}, [2]int{})
		}}, nil, ErrFormat, []string{`tensor "a": duplicate tensor name`}},
		{"empty tensor name", &rawModel{meta: defaultMeta(validArchJSON), build: oneTensor("", []int64{1}, []float32{1})}, nil, ErrFormat,
			[]string{"tensor 0 has an empty name"}},
		{"null name", &rawModel{meta: defaultMeta(validArchJSON), build: func(mem memory.Allocator) []arrow.Array {
			return modelColumnsOf(mem, []*string{nil}, [][]int64{{1}}, [][]float32{{1}}, [2]int{})
		}}, nil, ErrFormat, []string{`column "name": has 1 null rows`}},
		{"null value", &rawModel{meta: defaultMeta(validArchJSON), build: func(mem memory.Allocator) []arrow.Array {
			return modelColumnsOf(mem, []*string{ptr("w")}, [][]int64{{3}}, [][]float32{{1, 2, 3}}, [2]int{1, 2})
		}}, nil, ErrFormat, []string{`tensor "w": value at index 1 is null`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "model.arrow")
			if tt.raw != nil {
				writeRawModel(t, path, *tt.raw)
			} else if err := os.WriteFile(path, tt.bytes, 0o644); err != nil {
				t.Fatal(err)
			}
			for _, mmap := range []bool{true, false} {
				mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
				_, err := ReadModel(path, WithAllocator(mem), WithMmap(mmap))
				fe := wantFormatError(t, err, tt.wantErr, tt.want...)
				if fe.File != path {
					t.Errorf("File = %q want %q", fe.File, path)
				}
				mem.AssertSize(t, 0)
				// MapModel validates the same way, without copying.
				mm, zerr := MapModel(path, WithAllocator(mem), WithMmap(mmap))
				if zerr == nil {
					mm.Close()
					t.Fatalf("MapModel(mmap %v) read an invalid file; ReadModel: %v", mmap, err)
				}
				if zerr.Error() != err.Error() {
					t.Errorf("MapModel(mmap %v) error:\n%v\nReadModel error:\n%v", mmap, zerr, err)
				}
				mem.AssertSize(t, 0)
			}
		})
	}
}

func TestWriteModelRejectsInvalid(t *testing.T) {
	valid := func() *Model { return mlp(5) }
	tests := []struct {
		name   string
		mutate func(m *Model)
		want   string
	}{
		{"shape mismatch", func(m *Model) { m.Tensors[0].Data = m.Tensors[0].Data[:5] }, `tensor "0.weight": shape [8 4] needs 32 values, has 5`},
		{"NaN", func(m *Model) { m.Tensors[1].Data[3] = float32(math.NaN()) }, `tensor "0.bias": value at index 3 is NaN`},
		{"duplicate", func(m *Model) { m.Tensors[1].Name = "0.weight" }, `tensor "0.weight": duplicate tensor name`},
		{"empty role", func(m *Model) { m.Tensors[1].Role = "" }, `tensor "0.bias": empty role`},
		{"bad version", func(m *Model) { m.Arch.FormatVersion = 0 }, "format_version is 0"},
		{"reserved meta", func(m *Model) { m.Meta = map[string]string{"strata.architecture": "x"} }, `metadata "strata.architecture"`},
		{"bad structure", func(m *Model) { m.Arch.Layers[0].Structure = json.RawMessage(`[1]`) }, "structure is not a JSON object"},
		{"regression with classes", func(m *Model) { m.Arch.Task = compute.TaskRegression }, "no classes"},
		{"linear without sizes", func(m *Model) { m.Arch.Layers[2].In = 0 }, `layer "2": linear layer needs positive in and out`},
		{"unknown kind", func(m *Model) { m.Arch.Layers[1].Kind = "dropout" }, `unknown kind "dropout"`},
		{"raw of unknown dtype", func(m *Model) {
			m.Tensors[1] = Tensor{Name: "0.bias", Role: "bias", Shape: []int64{1}, DType: "I128", Raw: make([]byte, 16)}
		}, `tensor "0.bias": dtype "I128"`},
		{"raw F32", func(m *Model) {
			m.Tensors[1] = Tensor{Name: "0.bias", Role: "bias", Shape: []int64{1}, DType: "F32", Raw: make([]byte, 4)}
		}, `dtype "F32": want a safetensors dtype other than F32`},
		{"raw bytes short", func(m *Model) {
			m.Tensors[1] = Tensor{Name: "0.bias", Role: "bias", Shape: []int64{2}, DType: "I64", Raw: make([]byte, 8)}
		}, `tensor "0.bias": I64 with shape [2] needs 128 bits, has 8 bytes`},
		{"raw with float values", func(m *Model) {
			m.Tensors[1].DType, m.Tensors[1].Raw = "I32", make([]byte, 4*len(m.Tensors[1].Data))
		}, `a raw I32 tensor with 8 float32 values`},
		{"raw bytes without dtype", func(m *Model) { m.Tensors[1].Raw = []byte{1} }, `tensor "0.bias": 1 raw bytes but no dtype`},
		{"kernel on an activation", func(m *Model) { m.Arch.Layers[1].Kernel = []int64{3} }, `layer "1": weight, layout and kernel describe a linear layer's weight`},
		{"kernel with in-out", func(m *Model) {
			m.Arch.Layers[0].Kernel, m.Arch.Layers[0].Layout = []int64{2}, LayoutInOut
		}, `is stored [out, in, k...], not in-out`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := valid()
			tt.mutate(m)
			dir := t.TempDir()
			path := filepath.Join(dir, "m.arrow")
			wantFormatError(t, WriteModel(path, m), ErrFormat, tt.want)
			wantFormatError(t, m.Validate(), ErrFormat, tt.want)
			if files := listDir(t, dir); len(files) != 0 {
				t.Errorf("WriteModel left %q", files)
			}
		})
	}
	if err := WriteModel(filepath.Join(t.TempDir(), "m.arrow"), nil); !errors.Is(err, ErrFormat) {
		t.Errorf("nil model: got %v", err)
	}
}

func TestDecodeArchitectureRoundTrip(t *testing.T) {
	a := mlp(1).Arch
	a.Standardization = &Standardization{Mean: []float64{1, 2, 3, 4}, Std: []float64{1, 1, 1, 1}}
	b, err := EncodeArchitecture(&a)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeArchitecture(b, "x")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*got, a) {
		t.Errorf("got %+v want %+v", *got, a)
	}
}
