package arrowio

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

// logitsRecord builds a record of rows x cols logits (value 10 r + c) as
// a fixed_size_list column "logits" or as float32 columns "c0", "c1", ...,
// with an int64 "label" column (r mod cols) when label is set and a null
// at row 1 when null is set.
func logitsRecord(mem memory.Allocator, rows, cols int, list, label, null bool) arrow.RecordBatch {
	var fields []arrow.Field
	if list {
		fields = append(fields, arrow.Field{Name: "logits", Type: arrow.FixedSizeListOf(int32(cols), arrow.PrimitiveTypes.Float32)})
	} else {
		for c := range cols {
			fields = append(fields, arrow.Field{Name: "c" + string(rune('0'+c)), Type: arrow.PrimitiveTypes.Float32, Nullable: true})
		}
	}
	if label {
		fields = append(fields, arrow.Field{Name: "label", Type: arrow.PrimitiveTypes.Int64})
	}
	b := array.NewRecordBuilder(mem, arrow.NewSchema(fields, nil))
	defer b.Release()
	for r := range rows {
		if list {
			lb := b.Field(0).(*array.FixedSizeListBuilder)
			lb.Append(true)
			for c := range cols {
				lb.ValueBuilder().(*array.Float32Builder).Append(float32(10*r + c))
			}
		} else {
			for c := range cols {
				fb := b.Field(c).(*array.Float32Builder)
				if null && r == 1 && c == 0 {
					fb.AppendNull()
					continue
				}
				fb.Append(float32(10*r + c))
			}
		}
		if label {
			b.Field(len(fields) - 1).(*array.Int64Builder).Append(int64(r % cols))
		}
	}
	return b.NewRecordBatch()
}

func writeIPCFile(t *testing.T, path string, rec arrow.RecordBatch) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := ipc.NewFileWriter(f, ipc.WithSchema(rec.Schema()))
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

func writeParquet(t *testing.T, path string, rec arrow.RecordBatch) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tbl := array.NewTableFromRecords(rec.Schema(), []arrow.RecordBatch{rec})
	defer tbl.Release()
	if err := pqarrow.WriteTable(tbl, f, 64, nil, pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema())); err != nil {
		t.Fatal(err)
	}
}

func TestReadLogits(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
	defer mem.AssertSize(t, 0)
	dir := t.TempDir()
	const rows, cols = 5, 3
	tests := []struct {
		name        string
		file        string
		list, label bool
	}{
		{"list no label", "list.arrow", true, false},
		{"columns no label", "cols.arrow", false, false},
		{"columns with label", "cols-label.arrow", false, true},
		{"list with label parquet", "list-label.parquet", true, true},
		{"columns parquet", "cols.parquet", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, tt.file)
			rec := logitsRecord(mem, rows, cols, tt.list, tt.label, false)
			if filepath.Ext(path) == ".parquet" {
				writeParquet(t, path, rec)
			} else {
				writeIPCFile(t, path, rec)
			}
			rec.Release()
			ds, err := ReadLogits(path, WithAllocator(mem))
			if err != nil {
				t.Fatal(err)
			}
			if ds.N != rows || ds.D != cols {
				t.Fatalf("got %d x %d, want %d x %d", ds.N, ds.D, rows, cols)
			}
			for r := range rows {
				for c := range cols {
					if got, want := ds.X[r*cols+c], float64(10*r+c); got != want {
						t.Errorf("row %d output %d: got %v, want %v", r, c, got, want)
					}
				}
			}
			if !tt.label && ds.Y != nil {
				t.Errorf("no label column, got Y %v", ds.Y)
			}
			if tt.label {
				for r, y := range ds.Y {
					if y != float64(r%cols) {
						t.Errorf("label %d: got %v, want %v", r, y, r%cols)
					}
				}
			}
		})
	}

	t.Run("null", func(t *testing.T) {
		path := filepath.Join(dir, "null.arrow")
		rec := logitsRecord(mem, rows, cols, false, false, true)
		writeIPCFile(t, path, rec)
		rec.Release()
		_, err := ReadLogits(path, WithAllocator(mem))
		fe := wantFormatError(t, err, ErrFormat, "null.arrow", `"c0"`, "row 1")
		if fe.File != path {
			t.Errorf("error names %q, want %q", fe.File, path)
		}
	})
	t.Run("csv", func(t *testing.T) {
		for _, tc := range []struct {
			body   string
			x, y   []float64
			d      int
			labels bool
		}{
			{"a,b\n1,2\n3,4\n", []float64{1, 2, 3, 4}, nil, 2, false},
			{"a,label,b\n1,0,2\n3,1,4\n", []float64{1, 2, 3, 4}, []float64{0, 1}, 2, true},
		} {
			path := filepath.Join(dir, "x.csv")
			if err := os.WriteFile(path, []byte(tc.body), 0o644); err != nil {
				t.Fatal(err)
			}
			ds, err := ReadLogits(path)
			if err != nil {
				t.Fatal(err)
			}
			if ds.N != 2 || ds.D != tc.d || !slices.Equal(ds.X, tc.x) || !slices.Equal(ds.Y, tc.y) {
				t.Errorf("%q: got %d x %d %v labels %v, want %v labels %v", tc.body, ds.N, ds.D, ds.X, ds.Y, tc.x, tc.y)
			}
		}
		// A CSV dataset still needs its label.
		path := filepath.Join(dir, "x.csv")
		os.WriteFile(path, []byte("a,b\n1,2\n"), 0o644)
		_, err := ReadDataset(path)
		wantFormatError(t, err, ErrFormat, "label column missing")
	})
	t.Run("corrupt", func(t *testing.T) {
		path := filepath.Join(dir, "bad.arrow")
		if err := os.WriteFile(path, []byte("ARROW1\x00\x00garbage"), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := ReadLogits(path)
		wantFormatError(t, err, ErrFormat, "bad.arrow")
	})
}

// TestReadLogitsArrays reads logits saved as one array, by numpy.save
// (float32 C order, float64 Fortran order, a 1-D regression output,
// float16) and as safetensors (one tensor, or "logits" beside a "label"
// tensor), each against the values numpy or strata wrote. numpy is the
// independent writer (Debian's python3-numpy, which CI installs).
func TestReadLogitsArrays(t *testing.T) {
	dir := t.TempDir()
	script := `
import numpy as np, sys
d = sys.argv[1]
a = (np.arange(15).reshape(5, 3) * 0.25 - 1).astype(np.float32)
np.save(d + "/c32.npy", a)
np.save(d + "/f64.npy", np.asfortranarray(a.astype(np.float64)))
np.save(d + "/one.npy", a[:, 0].astype(np.float64))
np.save(d + "/f16.npy", a.astype(np.float16))
np.save(d + "/i8.npy", np.arange(15, dtype=np.int64).reshape(5, 3))
np.save(d + "/big.npy", a.astype(">f4"))
np.save(d + "/three.npy", np.zeros((2, 2, 2), dtype=np.float32))
`
	// Debian's python3 first (python3-numpy), as the test models do.
	var out []byte
	var err error
	for _, py := range []string{os.Getenv("TORCH_PY"), "/usr/bin/python3", "python3"} {
		if py == "" {
			continue
		}
		if out, err = exec.Command(py, "-c", script, dir).CombinedOutput(); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("no python3 with numpy wrote the reference files (apt-get install python3-numpy): %v\n%s", err, out)
	}
	want := make([]float64, 15)
	for i := range want {
		want[i] = float64(i)*0.25 - 1
	}
	for _, tc := range []struct {
		file string
		n, d int
		x    []float64
	}{
		{"c32.npy", 5, 3, want},
		{"f64.npy", 5, 3, want},
		{"f16.npy", 5, 3, want},
		{"one.npy", 5, 1, []float64{-1, -0.25, 0.5, 1.25, 2}},
		{"i8.npy", 5, 3, []float64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14}},
	} {
		ds, err := ReadLogits(filepath.Join(dir, tc.file))
		if err != nil {
			t.Errorf("%s: %v", tc.file, err)
			continue
		}
		if ds.N != tc.n || ds.D != tc.d || !slices.Equal(ds.X, tc.x) || ds.Y != nil {
			t.Errorf("%s: %d x %d %v (labels %v), want %d x %d %v", tc.file, ds.N, ds.D, ds.X, ds.Y, tc.n, tc.d, tc.x)
		}
	}
	_, err = ReadLogits(filepath.Join(dir, "big.npy"))
	wantFormatError(t, err, ErrUnsupported, "big.npy", "want little-endian")
	_, err = ReadLogits(filepath.Join(dir, "three.npy"))
	wantFormatError(t, err, ErrFormat, "shape [2 2 2]")
	raw, _ := os.ReadFile(filepath.Join(dir, "c32.npy"))
	os.WriteFile(filepath.Join(dir, "cut.npy"), raw[:len(raw)-3], 0o644)
	_, err = ReadLogits(filepath.Join(dir, "cut.npy"))
	wantFormatError(t, err, ErrFormat, "needs 60 bytes of data, the file has 57")

	f32 := make([]float32, 15)
	for i, v := range want {
		f32[i] = float32(v)
	}
	one := filepath.Join(dir, "one.safetensors")
	if err := WriteSafetensors(one, []Tensor{{Name: "out", Shape: []int64{5, 3}, Data: f32}}, nil); err != nil {
		t.Fatal(err)
	}
	two := filepath.Join(dir, "two.safetensors")
	if err := WriteSafetensors(two, []Tensor{{Name: "logits", Shape: []int64{5, 3}, Data: f32}, {Name: "label", Shape: []int64{5}, Data: []float32{0, 1, 2, 0, 1}}}, nil); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{one, two} {
		ds, err := ReadLogits(p)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if ds.N != 5 || ds.D != 3 || !slices.Equal(ds.X, want) || (p == two) != (ds.Y != nil) {
			t.Errorf("%s: %d x %d %v labels %v", p, ds.N, ds.D, ds.X, ds.Y)
		}
	}
	amb := filepath.Join(dir, "amb.safetensors")
	WriteSafetensors(amb, []Tensor{{Name: "a", Shape: []int64{5, 3}, Data: f32}, {Name: "b", Shape: []int64{5, 3}, Data: f32}}, nil)
	_, err = ReadLogits(amb)
	wantFormatError(t, err, ErrFormat, "2 tensors", "a tensor named \"logits\"")
}
