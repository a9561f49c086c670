package arrowio

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/float16"
)

// stFile builds safetensors bytes from a header and a body, with the
// header-size prefix computed.
func stFile(header string, body []byte) []byte {
	out := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	out = append(out, header...)
	return append(out, body...)
}

// le16 and friends encode values little-endian.
func le16(v ...uint16) []byte {
	var b []byte
	for _, x := range v {
		b = binary.LittleEndian.AppendUint16(b, x)
	}
	return b
}

func le32f(v ...float32) []byte {
	var b []byte
	for _, x := range v {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
	}
	return b
}

func le64f(v ...float64) []byte {
	var b []byte
	for _, x := range v {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(x))
	}
	return b
}

func TestSafetensorsRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 3))
	tests := []struct {
		name    string
		tensors []Tensor
		meta    map[string]string
	}{
		{"mlp", mlp(9).Tensors, map[string]string{"format": "pt"}},
		{"no metadata", []Tensor{randTensor(rng, "x", "x", 3, 5)}, nil},
		{"scalar and empty", []Tensor{
			{Name: "s", Data: []float32{-0.5}},
			{Name: "e", Shape: []int64{0}},
			{Name: "v", Shape: []int64{2}, Data: []float32{math.MaxFloat32, math.SmallestNonzeroFloat32}},
		}, map[string]string{"a": "1", "quote\"d": "<html> & \u00e9"}},
		{"order kept, not sorted", []Tensor{
			randTensor(rng, "z.weight", "weight", 2, 2),
			randTensor(rng, "a.weight", "weight", 1),
			randTensor(rng, "m.bias", "bias", 3),
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "x.safetensors")
			if err := WriteSafetensors(path, tt.tensors, tt.meta); err != nil {
				t.Fatal(err)
			}
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if n := binary.LittleEndian.Uint64(raw); n%8 != 0 {
				t.Errorf("header size %d is not a multiple of 8", n)
			}
			var buf bytes.Buffer
			if err := EncodeSafetensors(&buf, tt.tensors, tt.meta); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(buf.Bytes(), raw) {
				t.Error("EncodeSafetensors and WriteSafetensors differ")
			}
			sf, err := ReadSafetensors(path)
			if err != nil {
				t.Fatal(err)
			}
			if len(sf.Tensors) != len(tt.tensors) {
				t.Fatalf("got %d tensors want %d", len(sf.Tensors), len(tt.tensors))
			}
			for i, w := range tt.tensors {
				g := sf.Tensors[i]
				if g.Name != w.Name || !slices.Equal(g.Shape, w.Shape) && len(w.Shape)+len(g.Shape) > 0 || !sameBits(g.Data, w.Data) {
					t.Errorf("tensor %d: got %s%v want %s%v (or values differ)", i, g.Name, g.Shape, w.Name, w.Shape)
				}
				if sf.DTypes[w.Name] != "F32" {
					t.Errorf("dtype %q", sf.DTypes[w.Name])
				}
			}
			if len(tt.meta) > 0 && !reflect.DeepEqual(sf.Metadata, tt.meta) {
				t.Errorf("metadata: got %v want %v", sf.Metadata, tt.meta)
			}
		})
	}
}

// TestSafetensorsRawPassThrough reads a checkpoint holding integer, bool
// and 8-bit float tensors beside float32 ones, as PyTorch writes a
// BatchNorm's num_batches_tracked or a position buffer: the raw tensors
// keep their dtype and bytes, and writing the tensors back gives the file
// byte for byte.
func TestSafetensorsRawPassThrough(t *testing.T) {
	i64 := binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(nil, 3), math.MaxUint64)
	body := append(append(append(append([]byte{}, le32f(1.5, -2)...), i64...), 1, 0, 1), 0x38)
	header := `{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},` +
		`"ids":{"dtype":"I64","shape":[2],"data_offsets":[8,24]},` +
		`"mask":{"dtype":"BOOL","shape":[3],"data_offsets":[24,27]},` +
		`"f8":{"dtype":"F8_E4M3","shape":[],"data_offsets":[27,28]}}`
	header += strings.Repeat(" ", (8-len(header)%8)%8)
	file := stFile(header, body)
	sf, err := ParseSafetensors(file, "x.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	want := []Tensor{
		{Name: "w", Shape: []int64{2}, Data: []float32{1.5, -2}},
		{Name: "ids", Shape: []int64{2}, DType: "I64", Raw: i64},
		{Name: "mask", Shape: []int64{3}, DType: "BOOL", Raw: []byte{1, 0, 1}},
		{Name: "f8", Shape: []int64{}, DType: "F8_E4M3", Raw: []byte{0x38}},
	}
	for i, w := range want {
		g := sf.Tensors[i]
		if g.Name != w.Name || !slices.Equal(g.Shape, w.Shape) || !sameBits(g.Data, w.Data) || g.DType != w.DType || !bytes.Equal(g.Raw, w.Raw) {
			t.Errorf("tensor %d: got %s%v %v %s %x, want %s%v %v %s %x", i, g.Name, g.Shape, g.Data, g.DType, g.Raw, w.Name, w.Shape, w.Data, w.DType, w.Raw)
		}
	}
	var buf bytes.Buffer
	if err := EncodeSafetensors(&buf, sf.Tensors, nil); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), file) {
		t.Errorf("written back:\n%q\nwant\n%q", buf.Bytes(), file)
	}
}

// TestSafetensorsWriterBytes pins the exact bytes the writer produces, in the
// layout of the reference writer: header JSON, space padding to 8, data.
func TestSafetensorsWriterBytes(t *testing.T) {
	var buf bytes.Buffer
	err := EncodeSafetensors(&buf, []Tensor{{Name: "a", Shape: []int64{2}, Data: []float32{1, -2}}}, map[string]string{"k": "v"})
	if err != nil {
		t.Fatal(err)
	}
	header := `{"__metadata__":{"k":"v"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`
	header += strings.Repeat(" ", (8-len(header)%8)%8)
	want := stFile(header, le32f(1, -2))
	if !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("got\n%q\nwant\n%q", buf.Bytes(), want)
	}
}

func TestSafetensorsDTypes(t *testing.T) {
	tests := []struct {
		name  string
		dtype string
		shape string
		body  []byte
		want  []float32
	}{
		// IEEE 754 binary16: 0x3C00 = 1.0, 0xC000 = -2.0, 0x7BFF = 65504 (max
		// normal), 0x0001 = 2^-24 (smallest subnormal), 0x8000 = -0,
		// 0x3555 = 0.333251953125 (1 + 341/1024) * 2^-2.
		{"F16", "F16", "[2,3]", le16(0x3C00, 0xC000, 0x7BFF, 0x0001, 0x8000, 0x3555),
			[]float32{1, -2, 65504, 5.9604644775390625e-08, float32(math.Copysign(0, -1)), 0.333251953125}},
		// bfloat16 is the high half of a float32: 0x3F80 = 1.0, 0xC000 = -2.0,
		// 0x4049 = 3.140625, 0x0001 = 2^-133 (subnormal), 0x7F7F = 3.3895314e38.
		{"BF16", "BF16", "[5]", le16(0x3F80, 0xC000, 0x4049, 0x0001, 0x7F7F),
			[]float32{1, -2, 3.140625, math.Float32frombits(1 << 16), math.Float32frombits(0x7F7F0000)}},
		// F64 rounds to nearest float32: 0.1 -> 0.1f, 1/3 -> 0.33333334f.
		{"F64", "F64", "[4]", le64f(0.1, 1.0/3, -1e-3, math.MaxFloat32),
			[]float32{0.1, 1.0 / 3, -1e-3, math.MaxFloat32}},
		{"F32", "F32", "[2]", le32f(1.5, -0.25), []float32{1.5, -0.25}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := `{"t":{"dtype":"` + tt.dtype + `","shape":` + tt.shape + `,"data_offsets":[0,` + strconv.Itoa(len(tt.body)) + `]}}`
			sf, err := ParseSafetensors(stFile(h, tt.body), "x.safetensors")
			if err != nil {
				t.Fatal(err)
			}
			if got := sf.Tensors[0].Data; !sameBits(got, tt.want) {
				t.Errorf("got %v want %v", got, tt.want)
			}
			if sf.DTypes["t"] != tt.dtype {
				t.Errorf("dtype %q want %q", sf.DTypes["t"], tt.dtype)
			}
		})
	}
}

// TestF16AgainstArrow checks every one of the 65536 half values: normals,
// zeros, infinities and NaNs against arrow-go's independent float16
// implementation, subnormals against their definition mant * 2^-24 (arrow-go
// v18.8.0 converts subnormals wrongly: it maps 0x0001 to 1.1e-41, not
// 5.96e-8).
func TestF16AgainstArrow(t *testing.T) {
	for h := 0; h < 1<<16; h++ {
		got := F16ToFloat32(uint16(h))
		var want float32
		if exp, mant := h>>10&0x1f, h&0x3ff; exp == 0 && mant != 0 {
			want = float32(math.Ldexp(float64(mant), -24))
			if h&0x8000 != 0 {
				want = -want
			}
		} else {
			want = float16.FromBits(uint16(h)).Float32()
		}
		if math.IsNaN(float64(want)) {
			if !math.IsNaN(float64(got)) {
				t.Fatalf("0x%04x: got %v want NaN", h, got)
			}
			continue
		}
		if math.Float32bits(got) != math.Float32bits(want) {
			t.Fatalf("0x%04x: got %v (0x%08x) want %v (0x%08x)", h, got, math.Float32bits(got), want, math.Float32bits(want))
		}
	}
}

// TestSafetensorsRules gives one crafted file per validation rule of the
// reference reader, each violating exactly that rule, and checks that the
// error names it.
func TestSafetensorsRules(t *testing.T) {
	f32 := func(name, shape, offs string) string {
		return `"` + name + `":{"dtype":"F32","shape":` + shape + `,"data_offsets":` + offs + `}`
	}
	sizePrefix := func(n uint64, rest string) []byte {
		return append(binary.LittleEndian.AppendUint64(nil, n), rest...)
	}
	tests := []struct {
		name    string
		data    []byte
		wantErr error
		want    string
	}{
		{"file shorter than the size prefix", []byte{1, 0, 0}, ErrFormat, "needs at least 8"},
		{"header size over the 100 MB cap", sizePrefix(100_000_001, "{}"), ErrFormat, "exceeds the limit of 100000000"},
		{"header size past the end of the file", sizePrefix(64, "{}"), ErrFormat, "header size 64 exceeds the file"},
		{"header size near 2^64", sizePrefix(math.MaxUint64, "{}"), ErrFormat, "exceeds the limit"},
		{"header not UTF-8", stFile("{\"\xff\":1}", nil), ErrFormat, "not valid UTF-8"},
		{"header not starting with {", stFile(` {}`, nil), ErrFormat, "does not start with '{'"},
		{"header an array", stFile(`[]`, nil), ErrFormat, "does not start with '{'"},
		{"header empty", stFile(``, nil), ErrFormat, "does not start with '{'"},
		{"header invalid JSON", stFile(`{"a":`, nil), ErrFormat, "not valid JSON"},
		{"header trailing value", stFile(`{} {}`, nil), ErrFormat, "data after the object"},
		{"header trailing garbage", stFile(`{}x`, nil), ErrFormat, "after the object"},
		{"duplicate tensor key", stFile(`{`+f32("a", "[1]", "[0,4]")+`,`+f32("a", "[1]", "[4,8]")+`}`, le32f(1, 2)), ErrFormat, `key "a": offset 62: duplicate key in header`},
		{"duplicate __metadata__", stFile(`{"__metadata__":{},"__metadata__":{}}`, nil), ErrFormat, `key "__metadata__"`},
		{"duplicate metadata key", stFile(`{"__metadata__":{"k":"1","k":"2"}}`, nil), ErrFormat, `key "__metadata__.k"`},
		{"metadata not a map", stFile(`{"__metadata__":["x"]}`, nil), ErrFormat, "__metadata__: want an object of strings"},
		{"metadata value not a string", stFile(`{"__metadata__":{"k":1}}`, nil), ErrFormat, "__metadata__ values must be strings"},
		{"entry not an object", stFile(`{"a":[1]}`, nil), ErrFormat, `tensor "a"`},
		{"missing dtype", stFile(`{"a":{"shape":[1],"data_offsets":[0,4]}}`, le32f(1)), ErrFormat, "missing field dtype"},
		{"missing shape", stFile(`{"a":{"dtype":"F32","data_offsets":[0,4]}}`, le32f(1)), ErrFormat, "missing field shape"},
		{"missing data_offsets", stFile(`{"a":{"dtype":"F32","shape":[1]}}`, le32f(1)), ErrFormat, "missing field data_offsets"},
		{"duplicate field", stFile(`{"a":{"dtype":"F32","dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, le32f(1)), ErrFormat, "duplicate field dtype"},
		{"dtype not a string", stFile(`{"a":{"dtype":32,"shape":[1],"data_offsets":[0,4]}}`, le32f(1)), ErrFormat, "dtype: want a string"},
		{"negative dimension", stFile(`{`+f32("a", "[-1]", "[0,4]")+`}`, le32f(1)), ErrFormat, "shape: want a non-negative integer, got -1"},
		{"fractional dimension", stFile(`{`+f32("a", "[1.5]", "[0,4]")+`}`, le32f(1)), ErrFormat, "shape: want a non-negative integer, got 1.5"},
		{"shape not an array", stFile(`{`+f32("a", `"1"`, "[0,4]")+`}`, le32f(1)), ErrFormat, `tensor "a"`},
		{"data_offsets of 3 numbers", stFile(`{`+f32("a", "[1]", "[0,4,8]")+`}`, le32f(1)), ErrFormat, "want [begin, end], got 3 numbers"},
		{"negative offset", stFile(`{`+f32("a", "[1]", "[-4,0]")+`}`, le32f(1)), ErrFormat, "data_offsets: want a non-negative integer"},
		{"end before begin", stFile(`{`+f32("a", "[0]", "[0,0]")+`,`+f32("b", "[1]", "[4,0]")+`}`, le32f(1)), ErrFormat, "end before begin"},
		{"offsets not starting at 0", stFile(`{`+f32("a", "[1]", "[4,8]")+`}`, le32f(1, 2)), ErrFormat, "not contiguous: begin should be 0 (a gap)"},
		{"gap between tensors", stFile(`{`+f32("a", "[1]", "[0,4]")+`,`+f32("b", "[1]", "[8,12]")+`}`, le32f(1, 2, 3)), ErrFormat, `tensor "b"`},
		{"overlapping tensors", stFile(`{`+f32("a", "[2]", "[0,8]")+`,`+f32("b", "[2]", "[4,12]")+`}`, le32f(1, 2, 3)), ErrFormat, "begin should be 8 (an overlap)"},
		{"size does not match dtype x shape", stFile(`{`+f32("a", "[3]", "[0,8]")+`}`, le32f(1, 2)), ErrFormat, "span 8 bytes, dtype F32 with shape [3] needs 12"},
		{"numel overflows", stFile(`{`+f32("a", "[4294967296,4294967296]", "[0,4]")+`}`, le32f(1)), ErrFormat, "overflows the byte size"},
		{"bytes overflow", stFile(`{`+f32("a", "[4611686018427387904,2]", "[0,4]")+`}`, le32f(1)), ErrFormat, "overflows the byte size"},
		{"sub-byte dtype not filling bytes", stFile(`{"a":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}}`, []byte{0, 0}), ErrFormat, "does not fill whole bytes"},
		{"file longer than header + data", stFile(`{`+f32("a", "[1]", "[0,4]")+`}`, le32f(1, 2)), ErrFormat, "file length: header and data_offsets need"},
		{"file shorter than header + data", stFile(`{`+f32("a", "[2]", "[0,8]")+`}`, le32f(1)), ErrFormat, "file length"},
		{"unknown dtype", stFile(`{"a":{"dtype":"Q7","shape":[1],"data_offsets":[0,1]}}`, []byte{0}), ErrUnsupported, `tensor "a": offset 9: unknown dtype "Q7"`},
		{"F64 outside float32", stFile(`{"a":{"dtype":"F64","shape":[2],"data_offsets":[0,16]}}`, le64f(1, 1e300)), ErrFormat, `tensor "a": offset 63: F64 value at index 1 (1e+300) is outside the float32 range`},
		{"NaN value", stFile(`{`+f32("a", "[2]", "[0,8]")+`}`, le32f(0, float32(math.NaN()))), ErrFormat, "value at index 1 is NaN"},
		{"F16 infinity", stFile(`{"a":{"dtype":"F16","shape":[1],"data_offsets":[0,2]}}`, le16(0x7C00)), ErrFormat, "value at index 0 is +Inf"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sf, err := ParseSafetensors(tt.data, "bad.safetensors")
			if err == nil {
				t.Fatalf("got %d tensors and no error", len(sf.Tensors))
			}
			fe := wantFormatError(t, err, tt.wantErr, "bad.safetensors: ", tt.want)
			if fe.File != "bad.safetensors" {
				t.Errorf("File = %q", fe.File)
			}
		})
	}
}

func TestSafetensorsAccepts(t *testing.T) {
	tests := []struct {
		name  string
		data  []byte
		names []string
		meta  map[string]string
	}{
		{"empty header", stFile(`{}`, nil), nil, nil},
		{"header padded with spaces", stFile(`{}      `, nil), nil, nil},
		{"null metadata", stFile(`{"__metadata__":null}`, nil), nil, nil},
		{"unknown entry field ignored, as the reference does", stFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"extra":{"x":[1,2]}}}`, le32f(1)), []string{"a"}, nil},
		{"file order is offset order", stFile(`{"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, le32f(1, 2)), []string{"a", "b"}, nil},
		{"zero-size tensors", stFile(`{"e":{"dtype":"F16","shape":[0,3],"data_offsets":[0,0]},"a":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}`, le32f(1)), []string{"e", "a"}, nil},
		{"metadata", stFile(`{"__metadata__":{"format":"pt"}}`, nil), nil, map[string]string{"format": "pt"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sf, err := ParseSafetensors(tt.data, "ok.safetensors")
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, ts := range sf.Tensors {
				names = append(names, ts.Name)
			}
			if !slices.Equal(names, tt.names) {
				t.Errorf("tensors %q want %q", names, tt.names)
			}
			if !reflect.DeepEqual(sf.Metadata, tt.meta) {
				t.Errorf("metadata %v want %v", sf.Metadata, tt.meta)
			}
		})
	}
}

func TestSafetensorsRoles(t *testing.T) {
	tests := map[string]string{
		"0.weight":                     "weight",
		"0.bias":                       "bias",
		"0.trunk.L":                    "trunk",
		"layers.3.q_proj.correction.U": "correction",
		"embeddings":                   "embeddings",
		"model.layers.0.mlp.up.weight": "weight",
		"a.":                           "a.",
		"trunk":                        "trunk",
	}
	for name, want := range tests {
		if got := roleFromName(name); string(got) != want {
			t.Errorf("roleFromName(%q) = %q want %q", name, got, want)
		}
	}
}

func TestWriteSafetensorsRejects(t *testing.T) {
	tests := []struct {
		name    string
		tensors []Tensor
		want    string
	}{
		{"shape mismatch", []Tensor{{Name: "a", Shape: []int64{3}, Data: []float32{1}}}, `tensor "a": shape [3] needs 3 values, has 1`},
		{"duplicate", []Tensor{{Name: "a", Data: []float32{1}}, {Name: "a", Data: []float32{1}}}, "duplicate tensor name"},
		{"reserved name", []Tensor{{Name: "__metadata__", Data: []float32{1}}}, "reserved"},
		{"empty name", []Tensor{{Data: []float32{1}}}, "empty name"},
		{"infinity", []Tensor{{Name: "a", Data: []float32{float32(math.Inf(1))}}}, "value at index 0 is +Inf"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			wantFormatError(t, WriteSafetensors(filepath.Join(dir, "x.safetensors"), tt.tensors, nil), ErrFormat, tt.want)
			if files := listDir(t, dir); len(files) != 0 {
				t.Errorf("left %q", files)
			}
		})
	}
}
