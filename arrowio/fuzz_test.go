package arrowio

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow/ipc"
)

// The seed corpora under testdata/fuzz/Fuzz* hold valid files and damaged
// copies of them (truncated, bytes flipped). They are written by
// TestFuzzSeeds with -update; `go test` always runs them as plain tests.

// mustFormatError fails unless err is a *FormatError (the readers' only
// error type for bad bytes).
func mustFormatError(t *testing.T, err error) {
	t.Helper()
	var fe *FormatError
	if !errors.As(err, &fe) {
		t.Fatalf("error is %T, not a *FormatError: %v", err, err)
	}
	if !errors.Is(err, ErrFormat) && !errors.Is(err, ErrUnsupported) {
		t.Fatalf("error wraps neither ErrFormat nor ErrUnsupported: %v", err)
	}
}

func FuzzParseSafetensors(f *testing.F) {
	for _, s := range safetensorsSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		sf, err := ParseSafetensors(data, "fuzz.safetensors")
		if err != nil {
			mustFormatError(t, err)
			return
		}
		// A file that parses re-encodes (as F32) to a file that parses to
		// the same tensors.
		var buf bytes.Buffer
		if err := EncodeSafetensors(&buf, sf.Tensors, sf.Metadata); err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		again, err := ParseSafetensors(buf.Bytes(), "again")
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		if len(again.Tensors) != len(sf.Tensors) {
			t.Fatalf("re-parse: %d tensors, want %d", len(again.Tensors), len(sf.Tensors))
		}
		for i := range sf.Tensors {
			a, b := &again.Tensors[i], &sf.Tensors[i]
			if a.Name != b.Name || !sameBits(a.Data, b.Data) || a.DType != b.DType || !bytes.Equal(a.Raw, b.Raw) {
				t.Fatalf("re-parse: tensor %d differs", i)
			}
		}
	})
}

func FuzzReadModel(f *testing.F) {
	for _, s := range modelSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ReadModelFrom(bytes.NewReader(data), int64(len(data)), "fuzz.arrow")
		// The memory-mapped path uses different arrow-go code; run it on a
		// private copy (it may byte-swap in place, as on a MAP_PRIVATE map).
		cp := bytes.Clone(data)
		m2, err2 := decodeModel("fuzz.arrow", bytes.NewReader(cp), int64(len(cp)), newConfig(nil), nil, func(o ...ipc.Option) (*ipc.FileReader, error) {
			return ipc.NewMappedFileReader(cp, o...)
		})
		if err2 != nil {
			mustFormatError(t, err2)
		}
		// MapModel's zero-copy decoding of the same bytes fails with the
		// same error or reads the same model, its values aliasing the bytes.
		zc := bytes.Clone(data)
		m3, err3 := decodeMapped("fuzz.arrow", zc, newConfig(nil))
		switch {
		case (err2 == nil) != (err3 == nil):
			t.Fatalf("zero-copy read: error %v, copying read: error %v", err3, err2)
		case err2 != nil && err3.Error() != err2.Error():
			t.Fatalf("zero-copy read error:\n%v\ncopying read error:\n%v", err3, err2)
		case err2 == nil:
			equalModels(t, m3, m2)
			for _, ts := range m3.Tensors {
				if within(ts.Data, zc) && uintptr(unsafe.Pointer(&ts.Data[0]))%4 != 0 {
					t.Fatalf("tensor %q aliases the file at a misaligned address", ts.Name)
				}
			}
		}
		if err != nil {
			mustFormatError(t, err)
			return
		}
		if err2 == nil && len(m2.Tensors) != len(m.Tensors) {
			t.Fatalf("mapped read found %d tensors, ReaderAt read %d", len(m2.Tensors), len(m.Tensors))
		}
		// Whatever reads is valid, so it writes and reads back the same.
		var buf bytes.Buffer
		if err := EncodeModel(&buf, m); err != nil {
			t.Fatalf("re-encode a model that read: %v", err)
		}
		again, err := ReadModelFrom(bytes.NewReader(buf.Bytes()), int64(buf.Len()), "again.arrow")
		if err != nil {
			t.Fatalf("re-read: %v", err)
		}
		if len(again.Tensors) != len(m.Tensors) {
			t.Fatalf("re-read: %d tensors want %d", len(again.Tensors), len(m.Tensors))
		}
	})
}

// datasetExts are the formats FuzzReadDataset picks from with its kind byte.
var datasetExts = []string{".arrow", ".arrows", ".csv", ".csv.gz", ".parquet"}

func FuzzReadDataset(f *testing.F) {
	for _, s := range datasetSeeds() {
		f.Add(s.data, s.kind)
	}
	f.Fuzz(func(t *testing.T, data []byte, kind byte) {
		name := "fuzz" + datasetExts[int(kind)%len(datasetExts)]
		ds, err := ReadDatasetFrom(bytes.NewReader(data), int64(len(data)), name)
		if err != nil {
			mustFormatError(t, err)
			return
		}
		if ds.N <= 0 || ds.D <= 0 || len(ds.X) != ds.N*ds.D || len(ds.Y) != ds.N || len(ds.FeatureNames) != ds.D {
			t.Fatalf("inconsistent dataset: N=%d D=%d len(X)=%d len(Y)=%d names=%d", ds.N, ds.D, len(ds.X), len(ds.Y), len(ds.FeatureNames))
		}
	})
}

// damaged returns copies of valid with the usual damage: truncations at a
// few points and single flipped bytes.
func damaged(valid []byte) [][]byte {
	out := [][]byte{valid}
	for _, frac := range []int{2, 3, 10} {
		out = append(out, valid[:len(valid)*(frac-1)/frac])
	}
	out = append(out, valid[:len(valid)-1])
	for _, at := range []int{0, 8, len(valid) / 2, len(valid) - 9} {
		if at >= 0 && at < len(valid) {
			c := bytes.Clone(valid)
			c[at] ^= 0xff
			out = append(out, c)
		}
	}
	return out
}

func safetensorsSeeds() [][]byte {
	var buf bytes.Buffer
	_ = EncodeSafetensors(&buf, mlp(1).Tensors[:2], map[string]string{"format": "pt"})
	seeds := damaged(buf.Bytes())
	seeds = append(seeds,
		stFile(`{"a":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},"b":{"dtype":"BF16","shape":[1],"data_offsets":[4,6]},"c":{"dtype":"F64","shape":[],"data_offsets":[6,14]}}`,
			append(append(le16(0x3C00, 0xC000), le16(0x3F80)...), le64f(0.5)...)),
		stFile(`{}`, nil),
		stFile(`{"__metadata__":{"k":"v","k":"w"}}`, nil),
		stFile(`{"n":{"dtype":"I64","shape":[],"data_offsets":[0,8]},"m":{"dtype":"BOOL","shape":[2],"data_offsets":[8,10]},"q":{"dtype":"F4","shape":[2],"data_offsets":[10,11]}}`,
			[]byte{7, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0x21}),
	)
	return seeds
}

func modelSeeds() [][]byte {
	var buf bytes.Buffer
	m := mlp(1)
	m.Arch.Layers[0].Structure = []byte(`{"family":"lowrank","rank":2}`)
	_ = EncodeModel(&buf, m)
	seeds := damaged(buf.Bytes())
	buf.Reset()
	_ = EncodeModel(&buf, rawModel2())
	return append(seeds, damaged(buf.Bytes())...)
}

type datasetSeed struct {
	data []byte
	kind byte
}

func datasetSeeds() []datasetSeed {
	var seeds []datasetSeed
	ds := randDataset(3, 6, 3, true, true)
	dir, err := os.MkdirTemp("", "arrowio-seeds")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	add := func(kind byte, layout FeatureLayout) {
		p := filepath.Join(dir, "d"+datasetExts[kind])
		if err := WriteDataset(p, ds, WithFeatureLayout(layout), withBatchRows(4)); err != nil {
			panic(err)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			panic(err)
		}
		for _, d := range damaged(b) {
			seeds = append(seeds, datasetSeed{d, kind})
		}
	}
	add(0, LayoutList)
	add(0, LayoutTensor)
	add(0, LayoutColumns)
	add(1, LayoutList)
	add(2, LayoutColumns)
	add(4, LayoutList)
	add(4, LayoutTensor)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write([]byte("a,b,label\n1,2,0\n3,4,1\n"))
	_ = zw.Close()
	seeds = append(seeds,
		datasetSeed{[]byte("a,label\n1,0\nNaN,1\n"), 2},
		datasetSeed{[]byte("label\n1\n"), 2},
		datasetSeed{gz.Bytes(), 3},
	)
	return seeds
}

// TestFuzzSeeds writes the seed corpora in Go's corpus file format under
// testdata/fuzz when run with -update, so that they can be committed.
func TestFuzzSeeds(t *testing.T) {
	if !*update {
		t.Skip("run with -update to rewrite testdata/fuzz")
	}
	write := func(target string, i int, lines ...string) {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		body := "go test fuzz v1\n"
		for _, l := range lines {
			body += l + "\n"
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bytesLit := func(b []byte) string { return "[]byte(" + strconv.Quote(string(b)) + ")" }
	for i, s := range safetensorsSeeds() {
		write("FuzzParseSafetensors", i, bytesLit(s))
	}
	for i, s := range modelSeeds() {
		write("FuzzReadModel", i, bytesLit(s))
	}
	for i, s := range datasetSeeds() {
		write("FuzzReadDataset", i, bytesLit(s.data), fmt.Sprintf("byte(%q)", rune(s.kind)))
	}
}

// FuzzParseNpy: no input makes ParseNpy panic or return values that
// disagree with the shape; every error is a *FormatError.
func FuzzParseNpy(f *testing.F) {
	f.Add([]byte("\x93NUMPY\x01\x00\x46\x00{'descr': '<f4', 'fortran_order': False, 'shape': (2, 1), }            \n\x00\x00\x80\x3f\x00\x00\x00\x40"))
	f.Add([]byte("\x93NUMPY\x02\x00\x10\x00\x00\x00{'descr': '<f8', 'fortran_order': True, 'shape': (1, 1), }\x00\x00\x00\x00\x00\x00\xf0\x3f"))
	f.Add([]byte("\x93NUMPY\x01\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		shape, values, err := ParseNpy(b, "fuzz.npy")
		if err != nil {
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v is not a *FormatError", err)
			}
			return
		}
		n := 1
		for _, d := range shape {
			n *= d
		}
		if n != len(values) {
			t.Fatalf("shape %v holds %d values, got %d", shape, n, len(values))
		}
	})
}
