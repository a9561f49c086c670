package arrowio

import (
	"os"
	"path/filepath"
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
		path := filepath.Join(dir, "x.csv")
		if err := os.WriteFile(path, []byte("a,b\n1,2\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := ReadLogits(path)
		wantFormatError(t, err, ErrUnsupported, "not CSV")
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
