package arrowio

import (
	"bytes"
	"compress/gzip"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/float16"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// randDataset returns a seeded dataset; with f32 every feature is exactly
// representable in float32.
func randDataset(seed uint64, n, d int, f32, intLabels bool) *Dataset {
	rng := rand.New(rand.NewPCG(seed, 2))
	ds := &Dataset{N: n, D: d, X: make([]float64, n*d), Y: make([]float64, n)}
	for i := range ds.X {
		v := rng.NormFloat64() * math.Pow(10, float64(rng.IntN(7)-3))
		if f32 {
			v = float64(float32(v))
		}
		ds.X[i] = v
	}
	for i := range ds.Y {
		if intLabels {
			ds.Y[i] = float64(rng.IntN(10))
		} else {
			ds.Y[i] = rng.NormFloat64()
		}
	}
	for j := range d {
		ds.FeatureNames = append(ds.FeatureNames, "x"+strconv.Itoa(j))
	}
	return ds
}

func equalDatasets(t *testing.T, got, want *Dataset, wantNames []string) {
	t.Helper()
	if got.N != want.N || got.D != want.D {
		t.Fatalf("got N=%d D=%d want N=%d D=%d", got.N, got.D, want.N, want.D)
	}
	for i := range want.X {
		if math.Float64bits(got.X[i]) != math.Float64bits(want.X[i]) {
			t.Fatalf("X[%d] (row %d feature %d) = %v want %v", i, i/want.D, i%want.D, got.X[i], want.X[i])
		}
	}
	for i := range want.Y {
		if got.Y[i] != want.Y[i] {
			t.Fatalf("Y[%d] = %v want %v", i, got.Y[i], want.Y[i])
		}
	}
	if wantNames != nil && !slices.Equal(got.FeatureNames, wantNames) {
		t.Errorf("feature names %q want %q", got.FeatureNames, wantNames)
	}
}

func TestDatasetRoundTrip(t *testing.T) {
	exts := []string{".arrow", ".feather", ".ipc", ".arrows", ".parquet", ".csv", ".csv.gz"}
	layouts := []struct {
		name   string
		layout FeatureLayout
	}{{"list", LayoutList}, {"tensor", LayoutTensor}, {"columns", LayoutColumns}}
	for _, ext := range exts {
		for _, l := range layouts {
			if (ext == ".csv" || ext == ".csv.gz") && l.layout != LayoutColumns {
				continue // CSV has one layout
			}
			for _, prec := range []string{"float32", "float64"} {
				for _, intLabels := range []bool{true, false} {
					name := ext + "/" + l.name + "/" + prec + "/intlabels=" + strconv.FormatBool(intLabels)
					t.Run(name, func(t *testing.T) {
						f32 := prec == "float32"
						want := randDataset(uint64(len(name)), 37, 5, f32, intLabels)
						opts := []Option{WithFeatureLayout(l.layout), withBatchRows(8)}
						if !f32 {
							opts = append(opts, WithFloat64Features())
						}
						path := filepath.Join(t.TempDir(), "data"+ext)
						mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
						defer mem.AssertSize(t, 0)
						if err := WriteDataset(path, want, append(opts, WithAllocator(mem))...); err != nil {
							t.Fatal(err)
						}
						got, err := ReadDataset(path, WithAllocator(mem))
						if err != nil {
							t.Fatal(err)
						}
						equalDatasets(t, got, want, want.FeatureNames)
					})
				}
			}
		}
	}
}

func TestWriteDatasetLabelType(t *testing.T) {
	tests := []struct {
		y    []float64
		want arrow.Type
	}{
		{[]float64{0, 1, 2}, arrow.INT64},
		{[]float64{-3, 1e15}, arrow.INT64},
		{[]float64{0.5, 1}, arrow.FLOAT64},
		{[]float64{1 << 53, 0}, arrow.FLOAT64},
	}
	for _, tt := range tests {
		ds := &Dataset{N: len(tt.y), D: 1, X: make([]float64, len(tt.y)), Y: tt.y}
		path := filepath.Join(t.TempDir(), "d.arrow")
		if err := WriteDataset(path, ds); err != nil {
			t.Fatal(err)
		}
		f, _ := os.Open(path)
		r, err := ipc.NewFileReader(f)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.Schema().Field(1).Type.ID(); got != tt.want {
			t.Errorf("labels %v: type %s want %s", tt.y, got, tt.want)
		}
		if got := r.Schema().Field(0).Type.String(); got != "fixed_size_list<item: float32, nullable>[1]" {
			t.Errorf("features type %s", got)
		}
		r.Close()
		f.Close()
	}
}

// arrowFile writes one record batch of the given columns as an IPC file (or
// stream) and returns its path. It releases cols.
func arrowFile(t *testing.T, name string, stream bool, fields []arrow.Field, cols ...arrow.Array) string {
	t.Helper()
	schema := arrow.NewSchema(fields, nil)
	n := int64(0)
	if len(cols) > 0 {
		n = int64(cols[0].Len())
	}
	rec := array.NewRecordBatch(schema, cols, n)
	for _, c := range cols {
		c.Release()
	}
	defer rec.Release()
	var buf bytes.Buffer
	if stream {
		w := ipc.NewWriter(&buf, ipc.WithSchema(schema))
		if err := w.Write(rec); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	} else {
		w, err := ipc.NewFileWriter(&buf, ipc.WithSchema(schema))
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
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

var goMem = memory.NewGoAllocator()

func f64s(v ...float64) arrow.Array {
	b := array.NewFloat64Builder(goMem)
	defer b.Release()
	b.AppendValues(v, nil)
	return b.NewArray()
}

func i64s(v ...int64) arrow.Array {
	b := array.NewInt64Builder(goMem)
	defer b.Release()
	b.AppendValues(v, nil)
	return b.NewArray()
}

// f64sValid builds a float64 column with nulls where valid is false.
func f64sValid(v []float64, valid []bool) arrow.Array {
	b := array.NewFloat64Builder(goMem)
	defer b.Release()
	b.AppendValues(v, valid)
	return b.NewArray()
}

func strs(v ...string) arrow.Array {
	b := array.NewStringBuilder(goMem)
	defer b.Release()
	b.AppendValues(v, nil)
	return b.NewArray()
}

// listOf builds a list (or large_list) column of float64 rows; a nil row is
// a null.
func listOf(large bool, rows ...[]float64) arrow.Array {
	var b interface {
		array.ListLikeBuilder
		Release()
		NewArray() arrow.Array
	}
	if large {
		b = array.NewLargeListBuilder(goMem, arrow.PrimitiveTypes.Float64)
	} else {
		b = array.NewListBuilder(goMem, arrow.PrimitiveTypes.Float64)
	}
	defer b.Release()
	vb := b.ValueBuilder().(*array.Float64Builder)
	for _, r := range rows {
		if r == nil {
			b.AppendNull()
			continue
		}
		b.Append(true)
		vb.AppendValues(r, nil)
	}
	return b.NewArray()
}

func field(name string, typ arrow.DataType) arrow.Field {
	return arrow.Field{Name: name, Type: typ, Nullable: true}
}

func TestReadDatasetLayouts(t *testing.T) {
	t.Run("list<float64>", func(t *testing.T) {
		p := arrowFile(t, "d.arrow", false,
			[]arrow.Field{field("features", arrow.ListOf(arrow.PrimitiveTypes.Float64)), field("label", arrow.PrimitiveTypes.Int64)},
			listOf(false, []float64{1, 2}, []float64{3, 4}), i64s(0, 1))
		got, err := ReadDataset(p)
		if err != nil {
			t.Fatal(err)
		}
		equalDatasets(t, got, &Dataset{N: 2, D: 2, X: []float64{1, 2, 3, 4}, Y: []float64{0, 1}}, []string{"features[0]", "features[1]"})
	})
	t.Run("large_list<float64>", func(t *testing.T) {
		p := arrowFile(t, "d.arrow", false,
			[]arrow.Field{field("label", arrow.PrimitiveTypes.Float64), field("x", arrow.LargeListOf(arrow.PrimitiveTypes.Float64))},
			f64s(0.5, 1.5), listOf(true, []float64{1, 2, 3}, []float64{4, 5, 6}))
		got, err := ReadDataset(p)
		if err != nil {
			t.Fatal(err)
		}
		equalDatasets(t, got, &Dataset{N: 2, D: 3, X: []float64{1, 2, 3, 4, 5, 6}, Y: []float64{0.5, 1.5}}, nil)
	})
	t.Run("numeric columns of every type", func(t *testing.T) {
		mk := func(dt arrow.DataType, vals ...float64) arrow.Array {
			b := array.NewBuilder(goMem, dt)
			defer b.Release()
			for _, v := range vals {
				switch bb := b.(type) {
				case *array.Int8Builder:
					bb.Append(int8(v))
				case *array.Uint16Builder:
					bb.Append(uint16(v))
				case *array.Int32Builder:
					bb.Append(int32(v))
				case *array.Uint64Builder:
					bb.Append(uint64(v))
				case *array.Float16Builder:
					bb.Append(float16.New(float32(v)))
				case *array.Float32Builder:
					bb.Append(float32(v))
				case *array.Uint8Builder:
					bb.Append(uint8(v))
				}
			}
			return b.NewArray()
		}
		p := arrowFile(t, "d.arrow", false,
			[]arrow.Field{
				field("a", arrow.PrimitiveTypes.Int8), field("b", arrow.PrimitiveTypes.Uint16), field("label", arrow.PrimitiveTypes.Uint8),
				field("c", arrow.PrimitiveTypes.Int32), field("d", arrow.PrimitiveTypes.Uint64), field("e", arrow.FixedWidthTypes.Float16),
				field("f", arrow.PrimitiveTypes.Float32),
			},
			mk(arrow.PrimitiveTypes.Int8, -5, 7), mk(arrow.PrimitiveTypes.Uint16, 60000, 1), mk(arrow.PrimitiveTypes.Uint8, 3, 4),
			mk(arrow.PrimitiveTypes.Int32, -1e9, 2), mk(arrow.PrimitiveTypes.Uint64, 1<<40, 0), mk(arrow.FixedWidthTypes.Float16, 0.5, -2),
			mk(arrow.PrimitiveTypes.Float32, 0.25, 1e-3))
		got, err := ReadDataset(p)
		if err != nil {
			t.Fatal(err)
		}
		want := &Dataset{N: 2, D: 6, Y: []float64{3, 4}, X: []float64{
			-5, 60000, -1e9, 1 << 40, 0.5, 0.25,
			7, 1, 2, 0, -2, float64(float32(1e-3)),
		}}
		equalDatasets(t, got, want, []string{"a", "b", "c", "d", "e", "f"})
	})
	t.Run("fixed_shape_tensor [2,2] flattens row-major", func(t *testing.T) {
		typ, err := NewFixedShapeTensorType(arrow.PrimitiveTypes.Float64, []int64{2, 2}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		b := array.NewExtensionBuilder(goMem, typ)
		defer b.Release()
		lb := b.StorageBuilder().(*array.FixedSizeListBuilder)
		lb.Append(true)
		lb.ValueBuilder().(*array.Float64Builder).AppendValues([]float64{1, 2, 3, 4}, nil)
		p := arrowFile(t, "d.arrow", false, []arrow.Field{field("img", typ), field("label", arrow.PrimitiveTypes.Int64)}, b.NewArray(), i64s(9))
		got, err := ReadDataset(p)
		if err != nil {
			t.Fatal(err)
		}
		equalDatasets(t, got, &Dataset{N: 1, D: 4, X: []float64{1, 2, 3, 4}, Y: []float64{9}}, []string{"img[0]", "img[1]", "img[2]", "img[3]"})
		if !slices.Equal(got.Shape, []int{2, 2}) {
			t.Errorf("row shape %v, want the tensor's [2 2]", got.Shape)
		}
	})
	t.Run("IPC stream in a .arrow file", func(t *testing.T) {
		p := arrowFile(t, "d.arrow", true, []arrow.Field{field("x", arrow.PrimitiveTypes.Float64), field("label", arrow.PrimitiveTypes.Int64)}, f64s(1, 2), i64s(0, 1))
		got, err := ReadDataset(p)
		if err != nil {
			t.Fatal(err)
		}
		equalDatasets(t, got, &Dataset{N: 2, D: 1, X: []float64{1, 2}, Y: []float64{0, 1}}, []string{"x"})
	})
	t.Run("WithLabel and WithFeatureColumns", func(t *testing.T) {
		p := arrowFile(t, "d.arrow", false,
			[]arrow.Field{field("id", arrow.BinaryTypes.String), field("b", arrow.PrimitiveTypes.Float64), field("a", arrow.PrimitiveTypes.Float64), field("y", arrow.PrimitiveTypes.Float64)},
			strs("r1", "r2"), f64s(1, 2), f64s(3, 4), f64s(5, 6))
		got, err := ReadDataset(p, WithLabel("y"), WithFeatureColumns("a", "b"))
		if err != nil {
			t.Fatal(err)
		}
		equalDatasets(t, got, &Dataset{N: 2, D: 2, X: []float64{3, 1, 4, 2}, Y: []float64{5, 6}}, []string{"a", "b"})
	})
}

func TestReadDatasetErrors(t *testing.T) {
	fl := func(name string) arrow.Field { return field(name, arrow.PrimitiveTypes.Float64) }
	nan, inf := math.NaN(), math.Inf(1)
	tests := []struct {
		name    string
		path    func(t *testing.T) string
		opts    []Option
		wantErr error
		want    []string
	}{
		{"missing label lists columns", func(t *testing.T) string {
			return arrowFile(t, "d.arrow", false, []arrow.Field{fl("x"), fl("target")}, f64s(1), f64s(0))
		}, nil, ErrFormat, []string{`column "label": label column missing (columns: "x", "target")`}},
		{"non-numeric feature column", func(t *testing.T) string {
			return arrowFile(t, "d.arrow", false, []arrow.Field{field("name", arrow.BinaryTypes.String), fl("label")}, strs("a"), f64s(0))
		}, nil, ErrUnsupported, []string{`column "name": feature has type utf8`}},
		{"non-numeric label", func(t *testing.T) string {
			return arrowFile(t, "d.arrow", false, []arrow.Field{fl("x"), field("label", arrow.BinaryTypes.String)}, f64s(1), strs("cat"))
		}, nil, ErrUnsupported, []string{`column "label": label has type utf8`}},
		{"null feature", func(t *testing.T) string {
			return arrowFile(t, "d.arrow", false, []arrow.Field{fl("x"), fl("label")}, f64sValid([]float64{1, 2, 3}, []bool{true, true, false}), f64s(0, 0, 0))
		}, nil, ErrFormat, []string{`column "x": row 2 is null`}},
		{"null label", func(t *testing.T) string {
			return arrowFile(t, "d.arrow", false, []arrow.Field{fl("x"), fl("label")}, f64s(1, 2), f64sValid([]float64{0, 0}, []bool{false, true}))
		}, nil, ErrFormat, []string{`column "label": row 0 is null`}},
		{"NaN feature", func(t *testing.T) string {
			return arrowFile(t, "d.arrow", false, []arrow.Field{fl("x"), fl("label")}, f64s(1, nan), f64s(0, 0))
		}, nil, ErrFormat, []string{`column "x": row 1 is NaN`}},
		{"infinite label", func(t *testing.T) string {
			return arrowFile(t, "d.arrow", false, []arrow.Field{fl("x"), fl("label")}, f64s(1, 2), f64s(0, inf))
		}, nil, ErrFormat, []string{`column "label": row 1 is +Inf`}},
		{"NaN inside a list", func(t *testing.T) string {
			return arrowFile(t, "d.arrow", false, []arrow.Field{field("features", arrow.ListOf(arrow.PrimitiveTypes.Float64)), fl("label")},
				listOf(false, []float64{1, 2}, []float64{3, nan}), f64s(0, 1))
		}, nil, ErrFormat, []string{`column "features": row 1 feature 1 is NaN`}},
		{"null list row", func(t *testing.T) string {
			return arrowFile(t, "d.arrow", false, []arrow.Field{field("features", arrow.ListOf(arrow.PrimitiveTypes.Float64)), fl("label")},
				listOf(false, []float64{1, 2}, nil), f64s(0, 1))
		}, nil, ErrFormat, []string{`column "features": row 1 is null`}},
		{"inconsistent widths", func(t *testing.T) string {
			return arrowFile(t, "d.arrow", false, []arrow.Field{field("features", arrow.ListOf(arrow.PrimitiveTypes.Float64)), fl("label")},
				listOf(false, []float64{1, 2}, []float64{3, 4}, []float64{5}), f64s(0, 1, 0))
		}, nil, ErrFormat, []string{`column "features": inconsistent widths: row 2 has 1 features, earlier rows have 2`}},
		{"empty list row", func(t *testing.T) string {
			return arrowFile(t, "d.arrow", false, []arrow.Field{field("features", arrow.ListOf(arrow.PrimitiveTypes.Float64)), fl("label")},
				listOf(false, []float64{}), f64s(0))
		}, nil, ErrFormat, []string{"row 0 has no features"}},
		{"no rows", func(t *testing.T) string {
			return arrowFile(t, "d.arrow", false, []arrow.Field{fl("x"), fl("label")}, f64s(), f64s())
		}, nil, ErrFormat, []string{"empty dataset: no rows"}},
		{"no feature columns", func(t *testing.T) string {
			return arrowFile(t, "d.arrow", false, []arrow.Field{fl("label")}, f64s(1))
		}, nil, ErrFormat, []string{`no feature columns besides the label "label"`}},
		{"list column among others", func(t *testing.T) string {
			return arrowFile(t, "d.arrow", false, []arrow.Field{fl("id"), field("features", arrow.ListOf(arrow.PrimitiveTypes.Float64)), fl("label")},
				f64s(1), listOf(false, []float64{1}), f64s(0))
		}, nil, ErrUnsupported, []string{`column "features"`, "must be the only feature column"}},
		{"unknown feature column", func(t *testing.T) string {
			return arrowFile(t, "d.arrow", false, []arrow.Field{fl("x"), fl("label")}, f64s(1), f64s(0))
		}, []Option{WithFeatureColumns("y")}, ErrFormat, []string{`column "y": feature column missing`}},
		{"label as feature", func(t *testing.T) string {
			return arrowFile(t, "d.arrow", false, []arrow.Field{fl("x"), fl("label")}, f64s(1), f64s(0))
		}, []Option{WithFeatureColumns("label")}, ErrFormat, []string{`column "label": is the label`}},
		{"not an Arrow file", func(t *testing.T) string {
			return writeTemp(t, "d.arrow", []byte("ARROW1 but not really"))
		}, nil, ErrFormat, []string{"not a readable Arrow IPC"}},
		{"not a Parquet file", func(t *testing.T) string {
			return writeTemp(t, "d.parquet", []byte("PAR1 nope"))
		}, nil, ErrFormat, []string{"not a Parquet file"}},
		{"unknown extension", func(t *testing.T) string { return writeTemp(t, "d.xlsx", []byte("x")) }, nil, ErrUnsupported, []string{"unknown dataset extension"}},
		{"CSV missing label", func(t *testing.T) string { return writeTemp(t, "d.csv", []byte("a,b\n1,2\n")) }, nil, ErrFormat,
			[]string{`column "label": label column missing (columns: "a", "b")`}},
		{"CSV non-numeric", func(t *testing.T) string { return writeTemp(t, "d.csv", []byte("a,label\n1,0\nsetosa,1\n")) }, nil, ErrUnsupported,
			[]string{`d.csv:3:1: column "a": row 1: "setosa" is not a number`}},
		{"CSV empty field", func(t *testing.T) string { return writeTemp(t, "d.csv", []byte("a,label\n1,0\n2,\n")) }, nil, ErrFormat,
			[]string{`d.csv:3:3: column "label": row 1 is empty (null)`}},
		{"CSV NaN", func(t *testing.T) string { return writeTemp(t, "d.csv", []byte("a,label\nNaN,0\n")) }, nil, ErrFormat,
			[]string{`d.csv:2:1: column "a": row 0 is NaN`}},
		{"CSV out of range", func(t *testing.T) string { return writeTemp(t, "d.csv", []byte("a,label\n1e999,0\n")) }, nil, ErrFormat,
			[]string{`d.csv:2:1: column "a": row 0: "1e999" is out of the float64 range`}},
		{"CSV ragged row", func(t *testing.T) string { return writeTemp(t, "d.csv", []byte("a,label\n1,0\n1,2,3\n")) }, nil, ErrFormat,
			[]string{"d.csv:3:1: CSV: wrong number of fields"}},
		{"CSV header only", func(t *testing.T) string { return writeTemp(t, "d.csv", []byte("a,label\n")) }, nil, ErrFormat,
			[]string{"empty dataset: no rows"}},
		{"CSV empty", func(t *testing.T) string { return writeTemp(t, "d.csv", nil) }, nil, ErrFormat,
			[]string{"a header row is required"}},
		{"CSV duplicate column", func(t *testing.T) string { return writeTemp(t, "d.csv", []byte("a,a,label\n1,2,0\n")) }, nil, ErrFormat,
			[]string{`column "a": duplicate column name`}},
		{"gzip not gzip", func(t *testing.T) string { return writeTemp(t, "d.csv.gz", []byte("a,label\n1,0\n")) }, nil, ErrFormat,
			[]string{"not a gzip file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := tt.path(t)
			mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
			defer mem.AssertSize(t, 0)
			_, err := ReadDataset(path, append(tt.opts, WithAllocator(mem))...)
			fe := wantFormatError(t, err, tt.wantErr, tt.want...)
			if fe.File != path {
				t.Errorf("File = %q want %q", fe.File, path)
			}
		})
	}
}

func writeTemp(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestReadDatasetCSV(t *testing.T) {
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write([]byte("x1, x2 ,label\n1,2.5,0\n-3e-2, 4 ,1\n"))
	_ = zw.Close()
	tests := []struct {
		name string
		file string
		data []byte
		opts []Option
		want *Dataset
	}{
		{"plain with spaces", "d.csv", []byte("x1, x2 ,label\n1,2.5,0\n-3e-2, 4 ,1\n"), nil,
			&Dataset{N: 2, D: 2, X: []float64{1, 2.5, -3e-2, 4}, Y: []float64{0, 1}, FeatureNames: []string{"x1", "x2"}}},
		{"gzip", "d.csv.gz", gz.Bytes(), nil,
			&Dataset{N: 2, D: 2, X: []float64{1, 2.5, -3e-2, 4}, Y: []float64{0, 1}, FeatureNames: []string{"x1", "x2"}}},
		{"byte order mark and CRLF, label first", "d.CSV", []byte("\ufefflabel,a\r\n1,2\r\n"), nil,
			&Dataset{N: 1, D: 1, X: []float64{2}, Y: []float64{1}, FeatureNames: []string{"a"}}},
		{"custom label", "d.csv", []byte("a,target\n1,7\n"), []Option{WithLabel("target")},
			&Dataset{N: 1, D: 1, X: []float64{1}, Y: []float64{7}, FeatureNames: []string{"a"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadDatasetFrom(bytes.NewReader(tt.data), int64(len(tt.data)), tt.file, tt.opts...)
			if err != nil {
				t.Fatal(err)
			}
			equalDatasets(t, got, tt.want, tt.want.FeatureNames)
		})
	}
}

func TestWriteDatasetRejects(t *testing.T) {
	tests := []struct {
		name string
		ds   *Dataset
		opts []Option
		file string
		want string
	}{
		{"nil", nil, nil, "d.arrow", "nil dataset"},
		{"empty", &Dataset{}, nil, "d.arrow", "empty dataset"},
		{"X length", &Dataset{N: 2, D: 2, X: []float64{1, 2, 3}, Y: []float64{0, 1}}, nil, "d.arrow", "len(X) = 3, want N*D = 2*2"},
		{"Y length", &Dataset{N: 1, D: 1, X: []float64{1}, Y: []float64{0, 1}}, nil, "d.arrow", "len(Y) = 2, want N = 1"},
		{"NaN", &Dataset{N: 1, D: 2, X: []float64{1, math.NaN()}, Y: []float64{0}}, nil, "d.parquet", "X row 0 feature 1 is NaN"},
		{"beyond float32", &Dataset{N: 1, D: 1, X: []float64{1e39}, Y: []float64{0}}, nil, "d.arrow", "does not fit float32"},
		{"names collide with label", &Dataset{N: 1, D: 1, X: []float64{1}, Y: []float64{0}, FeatureNames: []string{"label"}}, nil, "d.csv", "repeated or the label's"},
		{"unknown extension", &Dataset{N: 1, D: 1, X: []float64{1}, Y: []float64{0}}, nil, "d.txt", "unknown dataset extension"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			err := WriteDataset(filepath.Join(dir, tt.file), tt.ds, tt.opts...)
			if err == nil {
				t.Fatal("no error")
			}
			wantFormatError(t, err, nil, tt.want)
			if files := listDir(t, dir); len(files) != 0 {
				t.Errorf("left %q", files)
			}
		})
	}
	// Float64 features lift the float32 limit.
	ds := &Dataset{N: 1, D: 1, X: []float64{1e39}, Y: []float64{0}}
	path := filepath.Join(t.TempDir(), "d.arrow")
	if err := WriteDataset(path, ds, WithFloat64Features()); err != nil {
		t.Fatal(err)
	}
	got, err := ReadDataset(path)
	if err != nil || got.X[0] != 1e39 {
		t.Errorf("got %v, %v", got, err)
	}
}

// TestCSVErrorPosition: a CSV error carries the line and column of the
// field as the CSV reader counts them: a quoted field that spans lines
// moves every later record down.
func TestCSVErrorPosition(t *testing.T) {
	tests := []struct {
		name, body   string
		line, column int
	}{
		{"quoted field spanning lines", "a,note,label\n1,\"two\nlines\",0\nx,ok,1\n", 4, 1},
		{"label", "a,note,label\n1,ok,0\n2,\"a\nb\",\n", 4, 4},
		{"bare quote", "a,label\n1,0\"\n", 2, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadDataset(writeTemp(t, "d.csv", []byte(tt.body)), WithFeatureColumns("a"))
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("err %v, want a *FormatError", err)
			}
			if fe.Line != tt.line || fe.Column != tt.column {
				t.Errorf("%v: at %d:%d, want %d:%d", err, fe.Line, fe.Column, tt.line, tt.column)
			}
		})
	}
}
