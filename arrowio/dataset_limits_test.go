package arrowio

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/strata-ml/strata/internal/limits"
)

// TestReadDatasetHardening: what the contract promises for data sets
// read by strata: no silent loss (a stream cut at a batch boundary, a
// Parquet file with a wrong magic, a value that is an infinity in
// float32), no unbounded memory (an endless CSV line, a gzip bomb), the
// CSV pandas writes with utf-8-sig and QUOTE_ALL, and cancellation.
func TestReadDatasetHardening(t *testing.T) {
	ds := &Dataset{N: 3, D: 2, X: []float64{1, 2, 3, 4, 5, 6}, Y: []float64{0, 1, 0}}
	dir := t.TempDir()
	write := func(name string, opts ...Option) []byte {
		path := filepath.Join(dir, name)
		if err := WriteDataset(path, ds, append(opts, withBatchRows(1))...); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	stream := write("d.arrows")
	pq := write("d.parquet")
	gz := func(b []byte) []byte {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		zw.Write(b)
		zw.Close()
		return buf.Bytes()
	}
	// A stream of three one-row batches cut after the second: the end
	// marker is 8 bytes, each batch message the same size.
	eos := 8
	batch := (len(stream) - eos - streamSchemaLen(t, stream)) / 3
	cut := stream[:len(stream)-eos-batch]
	badMagic := bytes.Clone(pq)
	copy(badMagic, "PAR0")
	longLine := append([]byte("a,label\n"), bytes.Repeat([]byte("1"), limits.CSVLineBytes+10000)...)
	// Rows padded with spaces: few values, many bytes (a bound of 1 MiB
	// stands in for the real one, which takes the same path).
	bomb := gz(append([]byte("a,label\n"), bytes.Repeat([]byte("1"+strings.Repeat(" ", 1000)+",0\n"), 2000)...))

	tests := []struct {
		name string
		file string
		data []byte
		opts []Option
		want string // "" for success
		rows int
	}{
		{"whole stream", "d.arrows", stream, nil, "", 3},
		{"stream cut at a batch boundary", "d.arrows", cut, nil, "no end-of-stream marker", 0},
		{"Parquet", "d.parquet", pq, nil, "", 3},
		{"Parquet with a wrong magic", "d.parquet", badMagic, nil, `not a Parquet file: "PAR0" at byte 0`, 0},
		{"beyond float32", "d.csv", []byte("a,label\n1e39,0\n"), []Option{WithFloat32Range()}, "row 0 is 1e+39, beyond the float32 range", 0},
		{"beyond float32 allowed", "d.csv", []byte("a,label\n1e39,0\n"), nil, "", 1},
		{"BOM and quoted header", "d.csv", []byte("\ufeff\"a\",\"label\"\n\"1\",\"0\"\n"), nil, "", 1},
		{"endless line", "d.csv", longLine, nil, "a CSV record longer than the limit of 8 MiB", 0},
		{"gzip bomb", "d.csv.gz", bomb, []Option{withDecompressedBytes(1 << 20)}, "decompresses to more than the limit of 1 MiB", 0},
		{"too many values (CSV)", "d.csv", []byte("a,b,label\n1,2,0\n3,4,1\n5,6,0\n"), []Option{withDatasetValues(4)}, "3 rows of 2 features: over the limit of 4 values", 0},
		{"too many values (Parquet)", "d.parquet", pq, []Option{withDatasetValues(4)}, "3 rows of 2 features: over the limit of 4 values", 0},
		{"too many values (Arrow)", "d.arrows", stream, []Option{withDatasetValues(4)}, "3 rows of 2 features: over the limit of 4 values", 0},
		{"blank lines without end", "d.csv.gz", gz(append([]byte("a,label\n"), bytes.Repeat([]byte("\n"), limits.CSVLineBytes+10000)...)), nil,
			"a CSV record longer than the limit of 8 MiB", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadDatasetFrom(bytes.NewReader(tt.data), int64(len(tt.data)), tt.file, tt.opts...)
			if tt.want == "" {
				if err != nil || got.N != tt.rows {
					t.Fatalf("got %v, %v, want %d rows", got, err, tt.rows)
				}
				return
			}
			var fe *FormatError
			if !errors.As(err, &fe) || !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want a format error containing %q", err, tt.want)
			}
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := ReadDatasetFrom(bytes.NewReader(stream), int64(len(stream)), "d.arrows", WithContext(ctx)); !errors.Is(err, context.Canceled) {
		t.Errorf("a cancelled read: %v, want context.Canceled", err)
	}
}

// streamSchemaLen is the length of the schema message at the start of an
// IPC stream (continuation, length, metadata; a schema has no body).
func streamSchemaLen(t *testing.T, b []byte) int {
	t.Helper()
	n := int(uint32(b[4]) | uint32(b[5])<<8 | uint32(b[6])<<16 | uint32(b[7])<<24)
	return 8 + n
}

// TestTensorLimit: a model file of more than limits.Tensors tensors is
// refused, in either format, before its tensors are converted.
func TestTensorLimit(t *testing.T) {
	for _, n := range []int{limits.Tensors, limits.Tensors + 1} {
		ts := make([]Tensor, n)
		for i := range ts {
			ts[i] = Tensor{Name: "t" + strconv.Itoa(i), Role: "tensor", Shape: []int64{1}, Data: []float32{1}}
		}
		var st bytes.Buffer
		if err := EncodeSafetensors(&st, ts, nil); err != nil {
			t.Fatal(err)
		}
		var ipcFile bytes.Buffer
		if err := EncodeModel(&ipcFile, &Model{Arch: Architecture{FormatVersion: FormatVersion, Kind: ArchGeneric}, Tensors: ts}); err != nil {
			t.Fatal(err)
		}
		_, errST := ParseSafetensors(st.Bytes(), "m.safetensors")
		_, errIPC := ReadModelFrom(bytes.NewReader(ipcFile.Bytes()), int64(ipcFile.Len()), "m.arrow")
		for _, err := range []error{errST, errIPC} {
			if n <= limits.Tensors && err != nil {
				t.Errorf("%d tensors: %v", n, err)
			}
			if n > limits.Tensors && (!errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "more than 65,536 tensors")) {
				t.Errorf("%d tensors: %v, want the tensor limit", n, err)
			}
		}
	}
}
