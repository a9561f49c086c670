package main

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// idxBytes builds an IDX file of unsigned bytes: the header with dims,
// then data.
func idxBytes(dims []uint32, data []byte) []byte {
	var b bytes.Buffer
	b.Write([]byte{0, 0, idxUnsignedByte, byte(len(dims))})
	for _, d := range dims {
		binary.Write(&b, binary.BigEndian, d)
	}
	b.Write(data)
	return b.Bytes()
}

func seq(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i * 7)
	}
	return b
}

// TestDecodeIDX checks the header is read as the format says, a limit
// takes the first items exactly, and every malformed header or body is an
// error naming what is wrong, before any allocation it claims.
func TestDecodeIDX(t *testing.T) {
	images := seq(3 * 2 * 4)
	m, err := decodeIDX(bytes.NewReader(idxBytes([]uint32{3, 2, 4}, images)), 3, 0)
	if err != nil {
		t.Fatal(err)
	}
	if m.Items != 3 || m.ItemBytes != 8 || !bytes.Equal(m.Data, images) || len(m.Dims) != 3 || m.Dims[1] != 2 || m.Dims[2] != 4 {
		t.Errorf("decoded %+v", m)
	}
	m, err = decodeIDX(bytes.NewReader(idxBytes([]uint32{3, 2, 4}, images)), 3, 2)
	if err != nil || m.Items != 2 || !bytes.Equal(m.Data, images[:16]) {
		t.Errorf("limit 2: %+v, %v", m, err)
	}

	for _, c := range []struct {
		name string
		in   []byte
		dims int
		want string
	}{
		{"empty", nil, 1, "IDX header"},
		{"bad magic", append([]byte{1, 0}, idxBytes([]uint32{1}, []byte{5})[2:]...), 1, "IDX magic"},
		{"float type", append([]byte{0, 0, 0x0d}, idxBytes([]uint32{1}, []byte{5})[3:]...), 1, "IDX magic"},
		{"wrong rank", idxBytes([]uint32{1, 1}, []byte{5}), 1, "2 dimensions, want 1"},
		{"short header", idxBytes([]uint32{3, 2, 4}, nil)[:9], 3, "IDX dimension 1"},
		{"huge count", idxBytes([]uint32{1 << 31, 28, 28}, nil), 3, "claims 2147483648 items"},
		{"huge item", idxBytes([]uint32{1, 1 << 20, 1 << 20}, nil), 3, "IDX item of dimensions"},
		{"item over the product", idxBytes([]uint32{1, 4096, 2}, nil), 3, "IDX item of dimensions"},
		{"zero dimension", idxBytes([]uint32{1, 0, 4}, nil), 3, "IDX item of dimensions"},
		{"truncated", idxBytes([]uint32{3, 2, 4}, images[:20]), 3, "IDX truncated: 20 of the 24 bytes"},
	} {
		t.Run(c.name, func(t *testing.T) {
			m, err := decodeIDX(bytes.NewReader(c.in), c.dims, 0)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %+v, %v; want an error with %q", m, err, c.want)
			}
		})
	}
}

// TestRunWritesCSV writes a subset of crafted gzip IDX files and checks
// the CSV cell by cell, the determinism of the bytes, and that a bad
// input leaves no file behind.
func TestRunWritesCSV(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) {
		var z bytes.Buffer
		zw := gzip.NewWriter(&z)
		zw.Write(b)
		zw.Close()
		if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "data", name), z.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("train-images-idx3-ubyte.gz", idxBytes([]uint32{3, 1, 2}, []byte{0, 255, 7, 8, 9, 10}))
	write("train-labels-idx1-ubyte.gz", idxBytes([]uint32{3}, []byte{4, 9, 1}))
	write("t10k-images-idx3-ubyte.gz", idxBytes([]uint32{1, 1, 2}, []byte{3, 4}))
	write("t10k-labels-idx1-ubyte.gz", idxBytes([]uint32{1}, []byte{2}))
	out := filepath.Join(dir, "out")
	if err := run(dir, out, 2, 1, "cmd"); err != nil {
		t.Fatal(err)
	}
	train, err := os.ReadFile(filepath.Join(out, "train.csv"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "px_0_0,px_0_1,label\n0,255,4\n7,8,9\n"; string(train) != want {
		t.Errorf("train.csv %q, want %q", train, want)
	}
	test, _ := os.ReadFile(filepath.Join(out, "test.csv"))
	if want := "px_0_0,px_0_1,label\n3,4,2\n"; string(test) != want {
		t.Errorf("test.csv %q, want %q", test, want)
	}
	again := filepath.Join(dir, "again")
	if err := run(dir, again, 2, 1, "cmd"); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"train.csv", "test.csv", "mnist.json"} {
		a, _ := os.ReadFile(filepath.Join(out, f))
		b, _ := os.ReadFile(filepath.Join(again, f))
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs between two runs", f)
		}
	}

	// More rows than the file has, then a truncated label file: errors,
	// and no CSV of the failed set.
	if err := run(dir, filepath.Join(dir, "more"), 4, 1, "cmd"); err == nil || !strings.Contains(err.Error(), "3 images and 3 labels, want 4") {
		t.Errorf("4 of 3 rows: %v", err)
	}
	write("train-labels-idx1-ubyte.gz", idxBytes([]uint32{3}, []byte{4}))
	bad := filepath.Join(dir, "bad")
	if err := run(dir, bad, 2, 1, "cmd"); err == nil || !strings.Contains(err.Error(), "train-labels-idx1-ubyte.gz: IDX truncated") {
		t.Errorf("truncated labels: %v", err)
	}
	if entries, _ := os.ReadDir(bad); len(entries) != 0 {
		t.Errorf("a failed run left %v", entries)
	}
}
