package arrowio

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/strata-ml/strata/compute"
	"github.com/strata-ml/strata/internal/limits"
)

// FormatVersion is the newest model file format version this package
// reads and writes, stored as the schema metadata value MetaFormatVersion
// and as the architecture's format_version. Version 1 holds float32
// tensors and plain layers; version 2 adds raw tensors (Tensor.DType and
// Raw, in the columns dtype and raw) and the layer fields weight, layout
// and kernel. A model is written in the oldest version that holds it
// (Model.Version), so a model of float32 tensors and plain layers is
// written as version 1, byte for byte as before version 2 existed; both
// versions are read.
const FormatVersion = 2

// Schema metadata keys of a model file.
const (
	MetaFormatVersion = "strata.format_version"
	MetaArchitecture  = "strata.architecture"
)

// Kinds of an Architecture.
const (
	ArchMLP     = "mlp"
	ArchGeneric = "generic"
)

// Column names of a model file: the four of every version, then the two
// that version 2 adds.
const (
	colName  = "name"
	colRole  = "role"
	colShape = "shape"
	colData  = "data"
	colDType = "dtype"
	colRaw   = "raw"
)

// DTypeF32 is the dtype column's value for a float32 tensor, whose values
// are in the data column.
const DTypeF32 = "F32"

// Layouts of a stored weight (Layer.Layout).
const (
	LayoutOutIn = "out-in" // [out, in], as nn.Linear stores it (also "")
	LayoutInOut = "in-out" // [in, out], as a Conv1D or an ONNX MatMul stores it
)

// Tensor is one named array of a model: a weight, a bias, a factor of a
// decomposed layer, or any other tensor of a checkpoint.
//
// A float32 tensor holds its values in Data, row-major; the length is the
// product of Shape (1 for a scalar with an empty Shape), and DType is "".
// A tensor of any other element type (an int64 buffer, a bool mask, ...) is
// raw: DType names its element type as safetensors does ("I64", "BOOL",
// "U8", "F16", ...; never DTypeF32), Raw holds its bytes, little-endian and
// row-major, and Data is nil. strata never converts a raw tensor: it is
// carried from input to output byte for byte.
type Tensor struct {
	Name  string
	Role  compute.Role
	Shape []int64
	Data  []float32
	DType string
	Raw   []byte
}

// IsRaw reports whether t is a raw tensor (DType set), whose bytes strata
// carries without reading them.
func (t *Tensor) IsRaw() bool { return t.DType != "" }

// Numel returns the product of t's shape, or -1 if a dimension is negative
// or the product overflows int.
func (t *Tensor) Numel() int {
	n, ok := numel(t.Shape)
	if !ok {
		return -1
	}
	return n
}

// Model is the content of a model file: the architecture, the tensors in file
// order, and any extra schema metadata.
type Model struct {
	Arch    Architecture
	Tensors []Tensor
	// Meta holds extra schema metadata entries. Keys starting with "strata."
	// are reserved for the format; MetaFormatVersion and MetaArchitecture
	// are never in Meta.
	Meta map[string]string
}

// Tensor returns a pointer to the tensor named name and true, or nil and
// false if m has no such tensor. The pointer aliases m.Tensors.
func (m *Model) Tensor(name string) (*Tensor, bool) {
	for i := range m.Tensors {
		if m.Tensors[i].Name == name {
			return &m.Tensors[i], true
		}
	}
	return nil, false
}

// Architecture describes how the tensors of a model compose. It is stored as
// JSON in the schema metadata key MetaArchitecture.
type Architecture struct {
	FormatVersion int `json:"format_version"` // FormatVersion
	// Kind is ArchMLP (also when empty) for a model of the MLP family that
	// strata can run, or ArchGeneric for any other checkpoint whose 2-D
	// weights strata only converts; its Layers then list the converted
	// weights as linear layers.
	Kind string `json:"kind,omitempty"`
	// Task is compute.TaskClassification or compute.TaskRegression for a model of the MLP
	// family; it may be empty for a generic checkpoint, which strata only
	// converts and never runs.
	Task compute.Task `json:"task"`
	// Inputs is the number of input features (0 if Task is empty).
	Inputs int `json:"inputs"`
	// Layers are in forward order.
	Layers []Layer `json:"layers"`
	// Standardization, when present, is applied to inputs before the first
	// layer: x' = (x - Mean) / Std, with statistics fitted on the train split.
	Standardization *Standardization `json:"standardization,omitempty"`
	// Classes names the output classes of a classifier, in logit order.
	Classes []string `json:"classes,omitempty"`
}

// Standardization holds per-feature input statistics. Mean and Std have
// Architecture.Inputs entries each, all finite, every Std > 0.
type Standardization struct {
	Mean []float64 `json:"mean"`
	Std  []float64 `json:"std"`
}

// Layer is one step of the forward pass.
type Layer struct {
	// Name prefixes the layer's tensor names: "<Name>.weight", "<Name>.bias",
	// or "<Name>.trunk.<param>" and "<Name>.correction.<param>" for a
	// decomposed layer. Unique within an architecture.
	Name string            `json:"name"`
	Kind compute.LayerKind `json:"kind"` // compute.KindLinear, compute.KindActivation or compute.KindLayerNorm
	In   int               `json:"in,omitempty"`
	Out  int               `json:"out,omitempty"`
	Bias bool              `json:"bias,omitempty"`
	// Activation is one of compute.Activations, for a layer of kind activation.
	Activation compute.Activation `json:"activation,omitempty"`
	// Structure is a decomposed layer's family and hyper-parameters, as a
	// JSON object. arrowio stores it without looking inside.
	Structure json.RawMessage `json:"structure,omitempty"`
	// Weight, Layout and Kernel say how a linear layer of a generic
	// checkpoint stores its dense weight (format version 2; empty for the
	// usual "<Name>.weight" stored [out, in]). Weight names the tensor when
	// it is not "<Name>.weight" (a checkpoint's own name, such as
	// "linear_77.w_0"). Layout is LayoutOutIn ("" too) or LayoutInOut, for a
	// weight stored [in, out] (W is the stored matrix transposed). Kernel
	// is a convolution's kernel [k1, k2, ...]: the weight is stored [Out,
	// In/prod(Kernel), k1, k2, ...] and W (Out x In) is the stored values as
	// they are, each row one output channel's kernel in (channel, k1, k2,
	// ...) order. A materialised weight is written back under Weight, in
	// this layout and shape.
	Weight string  `json:"weight,omitempty"`
	Layout string  `json:"layout,omitempty"`
	Kernel []int64 `json:"kernel,omitempty"`
}

// WeightName returns the name of l's dense weight tensor: Weight, or
// "<Name>.weight".
func (l *Layer) WeightName() string {
	if l.Weight != "" {
		return l.Weight
	}
	return l.Name + ".weight"
}

// WeightShape returns the shape l's dense weight is stored in: [Out, In],
// [In, Out] for LayoutInOut, or [Out, In/prod(Kernel), Kernel...].
func (l *Layer) WeightShape() []int64 {
	switch {
	case l.Layout == LayoutInOut:
		return []int64{int64(l.In), int64(l.Out)}
	case len(l.Kernel) > 0:
		k := int64(1)
		for _, d := range l.Kernel {
			k *= d
		}
		return append([]int64{int64(l.Out), int64(l.In) / k}, l.Kernel...)
	}
	return []int64{int64(l.Out), int64(l.In)}
}

// usesVersion2 reports whether l needs format version 2.
func (l *Layer) usesVersion2() bool {
	return l.Weight != "" || l.Layout != "" || len(l.Kernel) > 0
}

// Version returns the oldest format version that holds m: 2 when a tensor
// is raw or a layer sets Weight, Layout or Kernel, else 1.
func (m *Model) Version() int {
	for i := range m.Tensors {
		if m.Tensors[i].IsRaw() {
			return 2
		}
	}
	return m.Arch.version()
}

// version is the oldest format version whose architecture JSON holds a.
func (a *Architecture) version() int {
	for i := range a.Layers {
		if a.Layers[i].usesVersion2() {
			return 2
		}
	}
	return 1
}

// Validate checks m against every rule ReadModel enforces: a valid
// architecture, non-empty unique tensor names and roles, non-negative
// dimensions whose product equals len(Data), finite values, and no reserved
// key in Meta. It returns a *FormatError with an empty File.
func (m *Model) Validate() error {
	return validateModel("", m)
}

func validateModel(file string, m *Model) error {
	if m == nil {
		return fileErr(file, ErrFormat, "nil model")
	}
	if err := validateArch(file, &m.Arch); err != nil {
		return err
	}
	for k := range m.Meta {
		if strings.HasPrefix(k, "strata.") {
			return fieldErr(file, "metadata", k, ErrFormat, "key prefix \"strata.\" is reserved for the format")
		}
	}
	return validateTensors(file, m.Tensors)
}

// validateTensors checks names, roles, shapes and values.
func validateTensors(file string, ts []Tensor) error {
	seen := make(map[string]struct{}, len(ts))
	for i := range ts {
		t := &ts[i]
		if t.Name == "" {
			return fileErr(file, ErrFormat, "tensor %d has an empty name", i)
		}
		if _, dup := seen[t.Name]; dup {
			return fieldErr(file, "tensor", t.Name, ErrFormat, "duplicate tensor name")
		}
		seen[t.Name] = struct{}{}
		if t.Role == "" {
			return fieldErr(file, "tensor", t.Name, ErrFormat, "empty role")
		}
		if err := checkValues(file, t); err != nil {
			return err
		}
	}
	return nil
}

// checkValues checks a tensor's values against its shape: a raw tensor's
// bytes (checkRaw), or a float32 tensor's count and finiteness.
func checkValues(file string, t *Tensor) error {
	if t.IsRaw() {
		return checkRaw(file, t)
	}
	if len(t.Raw) > 0 {
		return fieldErr(file, "tensor", t.Name, ErrFormat, "%d raw bytes but no dtype", len(t.Raw))
	}
	if err := checkShape(file, t.Name, t.Shape, len(t.Data)); err != nil {
		return err
	}
	if j := firstNonFinite32(t.Data); j >= 0 {
		return fieldErr(file, "tensor", t.Name, ErrFormat, "value at index %d is %v", j, t.Data[j])
	}
	return nil
}

// checkRaw checks a raw tensor: a known dtype other than F32, no float32
// values, and as many bytes as its shape needs.
func checkRaw(file string, t *Tensor) error {
	bits, ok := safeDTypeBits[t.DType]
	if !ok || t.DType == DTypeF32 {
		return fieldErr(file, "tensor", t.Name, ErrFormat, "dtype %q: want a safetensors dtype other than F32 (float32 values belong in data)", t.DType)
	}
	if len(t.Data) > 0 {
		return fieldErr(file, "tensor", t.Name, ErrFormat, "a raw %s tensor with %d float32 values", t.DType, len(t.Data))
	}
	n, ok := numel(t.Shape)
	if !ok || (n > 0 && bits > math.MaxInt64/8/uint64(n)) {
		return fieldErr(file, "tensor", t.Name, ErrFormat, "shape %v has a negative dimension or overflows", t.Shape)
	}
	if want := uint64(n) * bits; want%8 != 0 || want/8 != uint64(len(t.Raw)) {
		return fieldErr(file, "tensor", t.Name, ErrFormat, "%s with shape %v needs %d bits, has %d bytes", t.DType, t.Shape, want, len(t.Raw))
	}
	return nil
}

// checkShape checks that shape has no negative dimension and that its
// product, computed without overflow, equals n.
func checkShape(file, name string, shape []int64, n int) error {
	for k, d := range shape {
		if d < 0 {
			return fieldErr(file, "tensor", name, ErrFormat, "shape %v has negative dimension %d at axis %d", shape, d, k)
		}
	}
	want, ok := numel(shape)
	if !ok {
		return fieldErr(file, "tensor", name, ErrFormat, "shape %v overflows the number of values", shape)
	}
	if want != n {
		return fieldErr(file, "tensor", name, ErrFormat, "shape %v needs %d values, has %d", shape, want, n)
	}
	return nil
}

// numel returns the product of shape (1 for an empty shape) and true, or
// false if a dimension is negative or the product does not fit an int.
func numel(shape []int64) (int, bool) {
	n := int64(1)
	for _, d := range shape {
		if d < 0 {
			return 0, false
		}
		if d != 0 && n > math.MaxInt64/d {
			return 0, false
		}
		n *= d
	}
	if n > int64(maxInt) {
		return 0, false
	}
	return int(n), true
}

const maxInt = int(^uint(0) >> 1)

// clone copies s into a new slice, or returns nil for an empty s.
func clone[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return append(make([]T, 0, len(s)), s...)
}

func firstNonFinite32(v []float32) int {
	for i, x := range v {
		// x-x is 0 for finite x and NaN for ±Inf and NaN.
		if x-x != 0 {
			return i
		}
	}
	return -1
}

func validateArch(file string, a *Architecture) error {
	const key = MetaArchitecture
	if a.FormatVersion < 1 || a.FormatVersion > FormatVersion {
		kind := ErrFormat
		if a.FormatVersion > FormatVersion {
			kind = ErrUnsupported
		}
		return fieldErr(file, "metadata", key, kind, "format_version is %d, this build reads 1 to %d", a.FormatVersion, FormatVersion)
	}
	switch a.Kind {
	case "", ArchMLP, ArchGeneric:
	default:
		return fieldErr(file, "metadata", key, ErrFormat, "kind %q is not %q or %q", a.Kind, ArchMLP, ArchGeneric)
	}
	switch a.Task {
	case compute.TaskClassification, compute.TaskRegression, "":
	default:
		return fieldErr(file, "metadata", key, ErrFormat, "task %q is not %q or %q", a.Task, compute.TaskClassification, compute.TaskRegression)
	}
	if a.Inputs < 0 {
		return fieldErr(file, "metadata", key, ErrFormat, "inputs is negative (%d)", a.Inputs)
	}
	if a.Task != "" && a.Inputs == 0 {
		return fieldErr(file, "metadata", key, ErrFormat, "inputs must be positive for task %q", a.Task)
	}
	names := make(map[string]struct{}, len(a.Layers))
	for i, l := range a.Layers {
		if l.Name == "" {
			return fieldErr(file, "metadata", key, ErrFormat, "layer %d has an empty name", i)
		}
		if _, dup := names[l.Name]; dup {
			return fieldErr(file, "layer", l.Name, ErrFormat, "duplicate layer name")
		}
		names[l.Name] = struct{}{}
		if l.In < 0 || l.Out < 0 {
			return fieldErr(file, "layer", l.Name, ErrFormat, "negative size (in %d, out %d)", l.In, l.Out)
		}
		switch l.Kind {
		case compute.KindLinear:
			if l.In == 0 || l.Out == 0 {
				return fieldErr(file, "layer", l.Name, ErrFormat, "linear layer needs positive in and out (in %d, out %d)", l.In, l.Out)
			}
		case compute.KindActivation:
			if !l.Activation.Valid() {
				return fieldErr(file, "layer", l.Name, ErrFormat, "unknown activation %q (want one of %s)", l.Activation, compute.JoinNames(compute.Activations))
			}
		case compute.KindLayerNorm:
		default:
			return fieldErr(file, "layer", l.Name, ErrFormat, "unknown kind %q (want %s, %s or %s)", l.Kind, compute.KindLinear, compute.KindActivation, compute.KindLayerNorm)
		}
		if err := checkStorage(file, &l); err != nil {
			return err
		}
		if len(l.Structure) > 0 {
			s := bytes.TrimSpace(l.Structure)
			if len(s) == 0 || s[0] != '{' || !json.Valid(s) {
				return fieldErr(file, "layer", l.Name, ErrFormat, "structure is not a JSON object")
			}
		}
	}
	if s := a.Standardization; s != nil {
		if len(s.Mean) != len(s.Std) {
			return fieldErr(file, "metadata", key, ErrFormat, "standardization has %d means and %d stds", len(s.Mean), len(s.Std))
		}
		if a.Inputs > 0 && len(s.Mean) != a.Inputs {
			return fieldErr(file, "metadata", key, ErrFormat, "standardization has %d entries for %d inputs", len(s.Mean), a.Inputs)
		}
		for j := range s.Mean {
			if math.IsNaN(s.Mean[j]) || math.IsInf(s.Mean[j], 0) {
				return fieldErr(file, "metadata", key, ErrFormat, "standardization mean %d is %v", j, s.Mean[j])
			}
			if !(s.Std[j] > 0) || math.IsInf(s.Std[j], 0) {
				return fieldErr(file, "metadata", key, ErrFormat, "standardization std %d is %v, want finite and positive", j, s.Std[j])
			}
		}
	}
	if a.Task == compute.TaskRegression && len(a.Classes) > 0 {
		return fieldErr(file, "metadata", key, ErrFormat, "a regression model has no classes")
	}
	return nil
}

// checkStorage checks a layer's Weight, Layout and Kernel.
func checkStorage(file string, l *Layer) error {
	if !l.usesVersion2() {
		return nil
	}
	bad := func(format string, args ...any) error {
		return fieldErr(file, "layer", l.Name, ErrFormat, format, args...)
	}
	if l.Kind != compute.KindLinear {
		return bad("weight, layout and kernel describe a linear layer's weight, not a %s layer", l.Kind)
	}
	switch l.Layout {
	case "", LayoutOutIn, LayoutInOut:
	default:
		return bad("layout %q: want %q or %q", l.Layout, LayoutOutIn, LayoutInOut)
	}
	if len(l.Kernel) == 0 {
		return nil
	}
	if l.Layout == LayoutInOut {
		return bad("a convolution weight (kernel %v) is stored [out, in, k...], not %s", l.Kernel, LayoutInOut)
	}
	k := int64(1)
	for _, d := range l.Kernel {
		if d < 1 || d > int64(l.In) {
			return bad("kernel %v: every size must be in [1, in = %d]", l.Kernel, l.In)
		}
		k *= d
		if k > int64(l.In) {
			return bad("kernel %v holds more values than in = %d", l.Kernel, l.In)
		}
	}
	if int64(l.In)%k != 0 {
		return bad("in = %d is not channels x kernel %v", l.In, l.Kernel)
	}
	return nil
}

// DecodeArchitecture parses and validates architecture JSON strictly: unknown
// fields, trailing data and invalid values are errors (*FormatError with File
// set to file).
func DecodeArchitecture(data []byte, file string) (*Architecture, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var a Architecture
	if err := dec.Decode(&a); err != nil {
		return nil, fieldErr(file, "metadata", MetaArchitecture, ErrFormat, "invalid architecture JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fieldErr(file, "metadata", MetaArchitecture, ErrFormat, "invalid architecture JSON: data after the object")
	}
	if err := validateArch(file, &a); err != nil {
		return nil, err
	}
	return &a, nil
}

// EncodeArchitecture returns the JSON stored under MetaArchitecture, with
// format_version the oldest version that holds a (1 unless a layer sets
// Weight, Layout or Kernel); a is not changed.
func EncodeArchitecture(a *Architecture) ([]byte, error) {
	return encodeArchitecture(a, a.version())
}

// encodeArchitecture encodes a with the given format_version.
func encodeArchitecture(a *Architecture, version int) ([]byte, error) {
	if err := validateArch("", a); err != nil {
		return nil, err
	}
	c := *a
	c.FormatVersion = version
	b, err := json.Marshal(&c)
	if err != nil {
		return nil, fmt.Errorf("arrowio: encode architecture: %w", err)
	}
	return b, nil
}

// modelSchema returns the schema of a model file with its metadata, in
// the oldest format version that holds m.
func modelSchema(m *Model) (*arrow.Schema, error) {
	version := m.Version()
	archJSON, err := encodeArchitecture(&m.Arch, version)
	if err != nil {
		return nil, err
	}
	keys := []string{MetaFormatVersion, MetaArchitecture}
	vals := []string{strconv.Itoa(version), string(archJSON)}
	extra := make([]string, 0, len(m.Meta))
	for k := range m.Meta {
		extra = append(extra, k)
	}
	sort.Strings(extra)
	for _, k := range extra {
		keys = append(keys, k)
		vals = append(vals, m.Meta[k])
	}
	md := arrow.NewMetadata(keys, vals)
	cols := modelColumnTypes(version)
	fields := make([]arrow.Field, len(cols))
	for i, c := range cols {
		fields[i] = arrow.Field{Name: c.name, Type: c.typ}
	}
	return arrow.NewSchema(fields, &md), nil
}

// columnType is one column of a model file.
type columnType struct {
	name string
	typ  arrow.DataType
}

// modelColumnTypes lists the columns of a model file of the given format
// version, in order: name, role, shape and data, then for version 2 dtype
// and raw.
func modelColumnTypes(version int) []columnType {
	cols := []columnType{
		{colName, arrow.BinaryTypes.String},
		{colRole, arrow.BinaryTypes.String},
		{colShape, arrow.ListOf(arrow.PrimitiveTypes.Int64)},
		{colData, arrow.LargeListOf(arrow.PrimitiveTypes.Float32)},
	}
	if version >= 2 {
		cols = append(cols, columnType{colDType, arrow.BinaryTypes.String}, columnType{colRaw, arrow.BinaryTypes.LargeBinary})
	}
	return cols
}

// maxBatchValues bounds the float32 values per record batch of a model file
// (256 MiB), so that writing never builds one giant buffer for a large
// checkpoint; a single larger tensor gets a batch of its own.
var maxBatchValues = 1 << 26

// WriteModel validates m and writes it to path as an Arrow IPC file,
// atomically (see WriteFileAtomic). Tensor values are written bit for bit.
// An invalid model is reported as a *FormatError and nothing is written.
func WriteModel(path string, m *Model) error {
	if err := validateModel(path, m); err != nil {
		return err
	}
	return WriteFileAtomic(path, func(w io.Writer) error { return encodeModel(w, m, memory.DefaultAllocator) })
}

// EncodeModel validates m and writes it to w in the Arrow IPC file format,
// the bytes WriteModel puts in a file.
func EncodeModel(w io.Writer, m *Model) error {
	if err := validateModel("", m); err != nil {
		return err
	}
	return encodeModel(w, m, memory.DefaultAllocator)
}

func encodeModel(w io.Writer, m *Model, mem memory.Allocator) error {
	schema, err := modelSchema(m)
	if err != nil {
		return err
	}
	fw, err := ipc.NewFileWriter(w, ipc.WithSchema(schema), ipc.WithAllocator(mem))
	if err != nil {
		return fmt.Errorf("arrowio: model writer: %w", err)
	}
	if err := writeModelBatches(schema, m.Tensors, mem, fw.Write); err != nil {
		_ = fw.Close()
		return err
	}
	if err := fw.Close(); err != nil {
		return fmt.Errorf("arrowio: close model writer: %w", err)
	}
	return nil
}

// writeModelBatches writes the tensors as record batches of at most
// maxBatchValues values (a larger tensor gets a batch of its own), the
// batching both the file and the stream form use.
func writeModelBatches(schema *arrow.Schema, ts []Tensor, mem memory.Allocator, write func(arrow.RecordBatch) error) error {
	// A raw tensor counts as its bytes in float32 values.
	size := func(t *Tensor) int { return len(t.Data) + len(t.Raw)/4 }
	for start := 0; start < len(ts); {
		end, n := start, 0
		for end < len(ts) && (end == start || n+size(&ts[end]) <= maxBatchValues) {
			n += size(&ts[end])
			end++
		}
		rec := modelRecord(schema, ts[start:end], mem)
		err := write(rec)
		rec.Release()
		if err != nil {
			return fmt.Errorf("arrowio: write model record batch: %w", err)
		}
		start = end
	}
	return nil
}

// modelRecord builds one record batch of tensors. The caller releases it.
func modelRecord(schema *arrow.Schema, ts []Tensor, mem memory.Allocator) arrow.RecordBatch {
	b := array.NewRecordBuilder(mem, schema)
	defer b.Release()
	names := b.Field(0).(*array.StringBuilder)
	roles := b.Field(1).(*array.StringBuilder)
	shapes := b.Field(2).(*array.ListBuilder)
	dims := shapes.ValueBuilder().(*array.Int64Builder)
	data := b.Field(3).(*array.LargeListBuilder)
	vals := data.ValueBuilder().(*array.Float32Builder)
	total := 0
	for i := range ts {
		total += len(ts[i].Data)
	}
	vals.Reserve(total)
	var dtypes *array.StringBuilder
	var raws *array.BinaryBuilder
	if len(b.Fields()) > 4 { // format version 2
		dtypes = b.Field(4).(*array.StringBuilder)
		raws = b.Field(5).(*array.BinaryBuilder)
	}
	for i := range ts {
		t := &ts[i]
		names.Append(t.Name)
		roles.Append(string(t.Role))
		shapes.Append(true)
		dims.AppendValues(t.Shape, nil)
		data.Append(true)
		vals.AppendValues(t.Data, nil)
		if dtypes != nil {
			dtypes.Append(cmp.Or(t.DType, DTypeF32))
			raws.Append(t.Raw) // a nil Raw appends an empty value, never a null
		}
	}
	return b.NewRecordBatch()
}

// ReadModel reads and validates a model file. The file is memory-mapped
// (unless WithMmap(false)), so only the tensors' values are copied, once,
// into the returned Model, which owns all its memory; the mapping is gone
// when ReadModel returns. The IPC reader's message size limits are raised to
// the file's size, so checkpoints of any size load. MapModel reads the
// same files without copying the values, for callers that do not change
// them.
//
// Every problem with the file's contents is a *FormatError wrapping
// ErrFormat or ErrUnsupported; see Model.Validate for the rules.
func ReadModel(path string, opts ...Option) (*Model, error) {
	cfg := newConfig(opts)
	f, size, data, err := openInput(path)
	if err != nil {
		return nil, err
	}
	if f == nil { // a pipe or device, read whole
		return ReadModelFrom(bytes.NewReader(data), size, path, opts...)
	}
	defer f.Close()
	if !cfg.mmap {
		return ReadModelFrom(f, size, path, opts...)
	}
	data, unmap, err := mapFile(f, size)
	if err != nil {
		return nil, fmt.Errorf("arrowio: map %s: %w", path, err)
	}
	defer unmap()
	// A fault on the mapping (the file truncated under us) becomes a panic
	// that decodeModel recovers, not a crash.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	return decodeModel(path, bytes.NewReader(data), int64(len(data)), cfg, nil, func(o ...ipc.Option) (*ipc.FileReader, error) {
		return ipc.NewMappedFileReader(data, o...)
	})
}

// ReadModelFrom reads and validates a model file of size bytes from r; name
// is used in errors. It copies what it reads; otherwise it is ReadModel.
func ReadModelFrom(r io.ReaderAt, size int64, name string, opts ...Option) (*Model, error) {
	cfg := newConfig(opts)
	return decodeModel(name, r, size, cfg, nil, func(o ...ipc.Option) (*ipc.FileReader, error) {
		return ipc.NewFileReader(io.NewSectionReader(r, 0, size), o...)
	})
}

// ipcLimits returns reader options whose metadata and body size limits equal
// the input's size: no message can be larger than its file, and arrow-go's
// defaults (64 MiB, 256 MiB) are too small for real checkpoints.
func ipcLimits(size int64, mem memory.Allocator) []ipc.Option {
	limit := max(size, 1)
	return []ipc.Option{
		ipc.WithAllocator(mem),
		ipc.WithMetadataSizeLimit(limit),
		ipc.WithBodySizeLimit(limit),
	}
}

// decodeModel reads a model file whose bytes ra holds, through the reader
// open returns. With alias nil every tensor's values are copied into Go
// memory. Otherwise alias must be the bytes the reader reads from
// (ipc.NewMappedFileReader(alias)), and a tensor whose values lie within
// alias, 4-byte aligned, gets a slice of alias itself (see aliasValues);
// the caller then keeps alias alive as long as the model.
func decodeModel(name string, ra io.ReaderAt, size int64, cfg *config, alias []byte, open func(...ipc.Option) (*ipc.FileReader, error)) (m *Model, err error) {
	defer recoverAsFormatError(name, &err)
	if size < 0 {
		return nil, fileErr(name, ErrFormat, "negative size %d", size)
	}
	if err := verifyIPCFile(ra, size); err != nil {
		return nil, fileErr(name, ErrFormat, "not a readable Arrow IPC file: %w", err)
	}
	r, err := open(ipcLimits(size, cfg.alloc)...)
	if err != nil {
		return nil, fileErr(name, ErrFormat, "not a readable Arrow IPC file: %w", err)
	}
	defer r.Close()

	schema := r.Schema()
	m = &Model{}
	md := schema.Metadata()
	vi := md.FindKey(MetaFormatVersion)
	if vi < 0 {
		return nil, fieldErr(name, "metadata", MetaFormatVersion, ErrFormat, "missing (not a strata model file)")
	}
	version, err := strconv.Atoi(md.Values()[vi])
	if err != nil || version < 1 || version > FormatVersion || strconv.Itoa(version) != md.Values()[vi] {
		kind := ErrFormat
		if err == nil && version > FormatVersion {
			kind = ErrUnsupported
		}
		return nil, fieldErr(name, "metadata", MetaFormatVersion, kind, "is %q, this build reads \"1\" to \"%d\"", md.Values()[vi], FormatVersion)
	}
	ai := md.FindKey(MetaArchitecture)
	if ai < 0 {
		return nil, fieldErr(name, "metadata", MetaArchitecture, ErrFormat, "missing")
	}
	arch, err := DecodeArchitecture([]byte(md.Values()[ai]), name)
	if err != nil {
		return nil, err
	}
	if arch.FormatVersion != version {
		return nil, fieldErr(name, "metadata", MetaArchitecture, ErrFormat, "format_version is %d, the file's %s is %d", arch.FormatVersion, MetaFormatVersion, version)
	}
	if version < 2 && arch.version() > 1 {
		return nil, fieldErr(name, "metadata", MetaArchitecture, ErrFormat, "a layer sets weight, layout or kernel, which format version %d does not have", version)
	}
	m.Arch = *arch
	for i, k := range md.Keys() {
		if k == MetaFormatVersion || k == MetaArchitecture {
			continue
		}
		if strings.HasPrefix(k, "strata.") {
			return nil, fieldErr(name, "metadata", k, ErrFormat, "unknown reserved key")
		}
		if m.Meta == nil {
			m.Meta = make(map[string]string)
		}
		if _, dup := m.Meta[k]; dup {
			return nil, fieldErr(name, "metadata", k, ErrFormat, "duplicate key")
		}
		m.Meta[strings.Clone(k)] = strings.Clone(md.Values()[i])
	}

	idx, err := modelColumns(name, schema, version)
	if err != nil {
		return nil, err
	}
	for b := 0; b < r.NumRecords(); b++ {
		rec, err := r.RecordBatchAt(b)
		if err != nil {
			return nil, fileErr(name, ErrFormat, "record batch %d: %w", b, err)
		}
		m.Tensors, err = appendTensors(name, m.Tensors, rec, idx, alias)
		rec.Release()
		if err != nil {
			return nil, err
		}
	}
	if err := validateTensors(name, m.Tensors); err != nil {
		return nil, err
	}
	return m, nil
}

// modelColumns finds the columns of a model file of the given format
// version and checks their types: the indices of name, role, shape, data,
// and for version 2 dtype and raw (-1 for version 1).
func modelColumns(file string, schema *arrow.Schema, version int) ([6]int, error) {
	idx := [6]int{-1, -1, -1, -1, -1, -1}
	for i, w := range modelColumnTypes(version) {
		found := schema.FieldIndices(w.name)
		switch len(found) {
		case 0:
			return idx, fieldErr(file, "column", w.name, ErrFormat, "missing (columns: %s)", columnNames(schema))
		case 1:
		default:
			return idx, fieldErr(file, "column", w.name, ErrFormat, "appears %d times", len(found))
		}
		f := schema.Field(found[0])
		if !sameType(f.Type, w.typ) {
			return idx, fieldErr(file, "column", w.name, ErrFormat, "has type %s, want %s", f.Type, w.typ)
		}
		idx[i] = found[0]
	}
	return idx, nil
}

// sameType compares types ignoring the names and nullability of list
// element fields, which differ between Arrow implementations.
func sameType(got, want arrow.DataType) bool {
	if got.ID() != want.ID() {
		return false
	}
	gl, ok1 := got.(arrow.ListLikeType)
	wl, ok2 := want.(arrow.ListLikeType)
	if ok1 && ok2 {
		return sameType(gl.Elem(), wl.Elem())
	}
	return arrow.TypeEqual(got, want)
}

func columnNames(schema *arrow.Schema) string {
	names := make([]string, schema.NumFields())
	for i, f := range schema.Fields() {
		names[i] = strconv.Quote(f.Name)
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// appendTensors appends the rows of one record batch to ts. Names, roles,
// shapes and raw bytes are always copied; float32 values are copied unless
// alias is non-nil (see decodeModel). idx holds the columns' indices, -1
// for the dtype and raw columns of a version 1 file.
func appendTensors(file string, ts []Tensor, rec arrow.RecordBatch, idx [6]int, alias []byte) ([]Tensor, error) {
	var cols [6]arrow.Array
	for i, c := range idx {
		if c < 0 {
			continue
		}
		cols[i] = rec.Column(c)
		colName := rec.ColumnName(c)
		if err := array.ValidateFull(cols[i]); err != nil {
			return ts, fieldErr(file, "column", colName, ErrFormat, "corrupt array: %w", err)
		}
		if n := cols[i].NullN(); n > 0 {
			return ts, fieldErr(file, "column", colName, ErrFormat, "has %d null rows", n)
		}
	}
	names, ok1 := cols[0].(*array.String)
	roles, ok2 := cols[1].(*array.String)
	shapes, ok3 := cols[2].(*array.List)
	data, ok4 := cols[3].(*array.LargeList)
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return ts, fileErr(file, ErrFormat, "model columns have unexpected array types")
	}
	dtypes, _ := cols[4].(*array.String)
	raws, _ := cols[5].(*array.LargeBinary)
	if idx[4] >= 0 && (dtypes == nil || raws == nil) {
		return ts, fileErr(file, ErrFormat, "model columns have unexpected array types")
	}
	dims, ok1 := shapes.ListValues().(*array.Int64)
	vals, ok2 := data.ListValues().(*array.Float32)
	if !ok1 || !ok2 {
		return ts, fileErr(file, ErrFormat, "model list columns have unexpected value types")
	}
	dimv := dims.Int64Values()
	valv := vals.Float32Values()
	if len(ts)+int(rec.NumRows()) > limits.Tensors {
		return ts, fileErr(file, ErrFormat, "more than %s tensors: over the limit (docs/FORMATS.md, Input limits)", limits.Count(limits.Tensors))
	}
	for i := 0; i < int(rec.NumRows()); i++ {
		// Strings from the reader may alias a memory mapping: copy them.
		name := strings.Clone(names.Value(i))
		s0, s1 := shapes.ValueOffsets(i)
		d0, d1 := data.ValueOffsets(i)
		if dims.NullN() > 0 {
			for k := s0; k < s1; k++ {
				if dims.IsNull(int(k)) {
					return ts, fieldErr(file, "tensor", name, ErrFormat, "shape has a null dimension")
				}
			}
		}
		if vals.NullN() > 0 {
			for k := d0; k < d1; k++ {
				if vals.IsNull(int(k)) {
					return ts, fieldErr(file, "tensor", name, ErrFormat, "value at index %d is null", k-d0)
				}
			}
		}
		// Offsets were validated against the child lengths above, and the
		// value slices hold exactly those lengths, so these slices are in
		// bounds and every allocation is backed by bytes of the file.
		t := Tensor{
			Name:  name,
			Role:  compute.Role(strings.Clone(roles.Value(i))),
			Shape: clone(dimv[s0:s1]),
		}
		if dtypes != nil && dtypes.Value(i) != DTypeF32 {
			t.DType = strings.Clone(dtypes.Value(i))
			t.Raw = clone(raws.Value(i))
			if t.Raw == nil {
				t.Raw = []byte{}
			}
			if d1 > d0 {
				return ts, fieldErr(file, "tensor", name, ErrFormat, "a raw %s tensor with %d float32 values", t.DType, d1-d0)
			}
			if err := checkRaw(file, &t); err != nil {
				return ts, err
			}
			ts = append(ts, t)
			continue
		}
		if raws != nil && len(raws.Value(i)) > 0 {
			return ts, fieldErr(file, "tensor", name, ErrFormat, "a float32 tensor with %d raw bytes", len(raws.Value(i)))
		}
		if alias != nil {
			t.Data = aliasValues(valv[d0:d1], alias)
		} else {
			t.Data = clone(valv[d0:d1])
		}
		if err := checkShape(file, t.Name, t.Shape, len(t.Data)); err != nil {
			return ts, err
		}
		ts = append(ts, t)
	}
	return ts, nil
}
