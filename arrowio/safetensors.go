package arrowio

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"runtime/debug"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/strata-ml/strata/compute"
	"github.com/strata-ml/strata/internal/limits"
)

// SafetensorsMaxHeader is the largest safetensors header accepted, in bytes,
// the limit of the reference (Rust) implementation.
const SafetensorsMaxHeader = 100_000_000

// safetensors dtypes and their sizes in bits, as the reference
// implementation defines them. F32, F64, F16 and BF16 tensors are converted
// to float32; every other dtype is kept raw (Tensor.DType and Raw).
var safeDTypeBits = map[string]uint64{
	"BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8,
	"I16": 16, "U16": 16, "F16": 16, "BF16": 16,
	"I32": 32, "U32": 32, "F32": 32,
	"I64": 64, "U64": 64, "F64": 64, "C64": 64,
	"F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
}

// SafeFile is the content of a safetensors file.
type SafeFile struct {
	// Tensors holds every tensor in file order (by data offset): F32, F64,
	// F16 and BF16 tensors converted to float32 (Data), any other dtype
	// (integers, bool, 8-bit and smaller floats) raw, its bytes as they are
	// in the file (DType, Raw). Role is derived from the name: "trunk" or
	// "correction" if a non-final dot-separated component says so, else the
	// last component ("0.weight" has role "weight").
	Tensors []Tensor
	// DTypes maps each tensor name to its dtype in the file ("F16", ...).
	DTypes map[string]string
	// Metadata is the header's "__metadata__" map, nil if absent.
	Metadata map[string]string
}

type safeEntry struct {
	name       string
	dtype      string
	shape      []int64
	begin, end uint64
	at         int64 // byte offset of the entry in the file, for errors
}

// ReadSafetensors reads and validates a safetensors file; see
// ParseSafetensors. The file is memory-mapped while it is converted.
func ReadSafetensors(path string) (*SafeFile, error) {
	f, size, data, err := openInput(path)
	if err != nil {
		return nil, err
	}
	if f == nil {
		return ParseSafetensors(data, path)
	}
	defer f.Close()
	data, unmap, err := mapFile(f, size)
	if err != nil {
		return nil, fmt.Errorf("arrowio: map %s: %w", path, err)
	}
	defer unmap()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	return ParseSafetensors(data, path)
}

// ParseSafetensors validates a safetensors file held in data and converts
// its tensors to float32; name is used in errors. It applies every rule of
// the reference reader:
//
//   - the file starts with an 8-byte little-endian header size N,
//     N <= SafetensorsMaxHeader, and the file has at least 8+N bytes;
//   - the header is valid UTF-8, starts with '{' and is one JSON object
//     (trailing spaces allowed) with no duplicate keys;
//   - "__metadata__", if present, maps strings to strings;
//   - every other key is a tensor with a known "dtype", a "shape" of
//     non-negative integers and "data_offsets" [begin, end] with begin <= end;
//   - the tensors' byte ranges, sorted by begin, are contiguous from 0
//     without gaps or overlaps, and end - begin == numel * dtype size
//     (computed without overflow);
//   - 8 + N + the last end == len(data) exactly.
//
// Then F32, F64, F16 and BF16 tensors are converted; the bytes of any
// other dtype are copied as they are (a raw tensor, see Tensor). An F64
// value outside the float32 range, a NaN or an infinity is an error naming
// the tensor and index. All errors are *FormatError. data is not retained.
func ParseSafetensors(data []byte, name string) (sf *SafeFile, err error) {
	// The parser is written not to panic; this is a second line of defence,
	// and turns a fault on a memory-mapped file into an error.
	defer recoverAsFormatError(name, &err)
	if len(data) < 8 {
		return nil, fileErr(name, ErrFormat, "header size: file has %d bytes, needs at least 8", len(data))
	}
	n := binary.LittleEndian.Uint64(data[:8])
	if n > SafetensorsMaxHeader {
		return nil, fileErr(name, ErrFormat, "header size %d exceeds the limit of %d bytes", n, SafetensorsMaxHeader)
	}
	if n > uint64(len(data)-8) {
		return nil, fileErr(name, ErrFormat, "header size %d exceeds the file (%d bytes after the size prefix)", n, len(data)-8)
	}
	header := data[8 : 8+n]
	if !utf8.Valid(header) {
		return nil, fileErr(name, ErrFormat, "header is not valid UTF-8")
	}
	if len(header) == 0 || header[0] != '{' {
		return nil, &FormatError{File: name, Offset: 8, Err: errorf(ErrFormat, "header does not start with '{'")}
	}
	entries, meta, err := parseSafeHeader(name, header)
	if err != nil {
		return nil, err
	}

	// Offsets: sorted by (begin, end) they must tile [0, last end).
	sort.SliceStable(entries, func(i, j int) bool {
		if entries[i].begin != entries[j].begin {
			return entries[i].begin < entries[j].begin
		}
		return entries[i].end < entries[j].end
	})
	var pos uint64
	for _, e := range entries {
		if e.end < e.begin {
			return nil, safeErr(name, e, ErrFormat, "data_offsets [%d, %d] end before begin", e.begin, e.end)
		}
		if e.begin != pos {
			what := "a gap"
			if e.begin < pos {
				what = "an overlap"
			}
			return nil, safeErr(name, e, ErrFormat, "data_offsets [%d, %d] are not contiguous: begin should be %d (%s)", e.begin, e.end, pos, what)
		}
		pos = e.end
		count, ok := safeNumel(e.shape)
		bits := safeDTypeBits[e.dtype]
		if !ok || (count != 0 && bits > math.MaxUint64/count) {
			return nil, safeErr(name, e, ErrFormat, "shape %v overflows the byte size", e.shape)
		}
		nbits := count * bits
		if nbits%8 != 0 {
			return nil, safeErr(name, e, ErrFormat, "shape %v of dtype %s does not fill whole bytes", e.shape, e.dtype)
		}
		if e.end-e.begin != nbits/8 {
			return nil, safeErr(name, e, ErrFormat, "data_offsets [%d, %d] span %d bytes, dtype %s with shape %v needs %d",
				e.begin, e.end, e.end-e.begin, e.dtype, e.shape, nbits/8)
		}
	}
	if want := uint64(len(data)) - 8 - n; pos != want {
		return nil, fileErr(name, ErrFormat, "file length: header and data_offsets need %d bytes, file has %d", 8+n+pos, len(data))
	}

	sf = &SafeFile{DTypes: make(map[string]string, len(entries)), Metadata: meta}
	body := data[8+n:]
	sf.Tensors = make([]Tensor, 0, len(entries))
	for _, e := range entries {
		sf.DTypes[e.name] = e.dtype
		t := Tensor{Name: e.name, Role: roleFromName(e.name), Shape: e.shape}
		if floatDType(e.dtype) {
			t.Data, err = convertSafe(name, e, body[e.begin:e.end], 8+int64(n)+int64(e.begin))
			if err != nil {
				return nil, err
			}
		} else {
			t.DType, t.Raw = e.dtype, append([]byte{}, body[e.begin:e.end]...)
		}
		sf.Tensors = append(sf.Tensors, t)
	}
	return sf, nil
}

func safeErr(file string, e safeEntry, kind error, format string, args ...any) *FormatError {
	return &FormatError{File: file, Kind: "tensor", Field: e.name, Offset: e.at, Err: errorf(kind, format, args...)}
}

// safeNumel is the product of shape in uint64, false on overflow.
func safeNumel(shape []int64) (uint64, bool) {
	n := uint64(1)
	for _, d := range shape {
		u := uint64(d)
		if u != 0 && n > math.MaxUint64/u {
			return 0, false
		}
		n *= u
	}
	return n, true
}

// jsonWalker reads a JSON header token by token, so that duplicate keys can
// be seen (encoding/json keeps the last one silently).
type jsonWalker struct {
	dec  *json.Decoder
	file string
}

func (w *jsonWalker) errAt(format string, args ...any) *FormatError {
	return &FormatError{File: w.file, Offset: 8 + w.dec.InputOffset(), Err: errorf(ErrFormat, format, args...)}
}

func (w *jsonWalker) token() (json.Token, error) {
	t, err := w.dec.Token()
	if err != nil {
		return nil, w.errAt("header is not valid JSON: %w", err)
	}
	return t, nil
}

func (w *jsonWalker) delim(want json.Delim, what string) error {
	t, err := w.token()
	if err != nil {
		return err
	}
	if d, ok := t.(json.Delim); !ok || d != want {
		return w.errAt("%s: want %q, got %s", what, string(want), describeToken(t))
	}
	return nil
}

func describeToken(t json.Token) string {
	switch v := t.(type) {
	case json.Delim:
		return strconv.Quote(string(v))
	case string:
		return "string " + strconv.Quote(v)
	case json.Number:
		return "number " + string(v)
	case bool:
		return "boolean"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%v", t)
}

// uints reads a JSON array of non-negative integers.
func (w *jsonWalker) uints(what string) ([]uint64, error) {
	if err := w.delim('[', what); err != nil {
		return nil, err
	}
	var out []uint64
	for w.dec.More() {
		t, err := w.token()
		if err != nil {
			return nil, err
		}
		num, ok := t.(json.Number)
		if !ok {
			return nil, w.errAt("%s: want a non-negative integer, got %s", what, describeToken(t))
		}
		u, err := strconv.ParseUint(string(num), 10, 64)
		if err != nil {
			return nil, w.errAt("%s: want a non-negative integer, got %s", what, num)
		}
		out = append(out, u)
	}
	return out, w.delim(']', what)
}

func parseSafeHeader(file string, header []byte) ([]safeEntry, map[string]string, error) {
	w := &jsonWalker{dec: json.NewDecoder(bytes.NewReader(header)), file: file}
	w.dec.UseNumber()
	if err := w.delim('{', "header"); err != nil {
		return nil, nil, err
	}
	var (
		entries []safeEntry
		meta    map[string]string
		seen    = map[string]struct{}{}
	)
	for w.dec.More() {
		// The key starts at the next quote: only a comma and white space
		// can come between the decoder's offset and the key.
		pos := w.dec.InputOffset()
		for pos < int64(len(header)) && header[pos] != '"' {
			pos++
		}
		at := 8 + pos
		t, err := w.token()
		if err != nil {
			return nil, nil, err
		}
		key, _ := t.(string) // object keys are always strings
		if _, dup := seen[key]; dup {
			return nil, nil, &FormatError{File: file, Kind: "key", Field: key, Offset: at, Err: errorf(ErrFormat, "duplicate key in header")}
		}
		seen[key] = struct{}{}
		if key == "__metadata__" {
			meta, err = w.metadata()
			if err != nil {
				return nil, nil, err
			}
			continue
		}
		if len(entries) == limits.Tensors {
			return nil, nil, &FormatError{File: file, Offset: at, Err: errorf(ErrFormat, "more than %s tensors: over the limit (docs/FORMATS.md, Input limits)", limits.Count(limits.Tensors))}
		}
		e, err := w.entry(key, at)
		if err != nil {
			return nil, nil, err
		}
		entries = append(entries, e)
	}
	if err := w.delim('}', "header"); err != nil {
		return nil, nil, err
	}
	if t, err := w.dec.Token(); err != io.EOF {
		if err != nil {
			return nil, nil, w.errAt("header is not valid JSON after the object: %w", err)
		}
		return nil, nil, w.errAt("header has data after the object: %s", describeToken(t))
	}
	return entries, meta, nil
}

// metadata reads the value of "__metadata__": null or a string map.
func (w *jsonWalker) metadata() (map[string]string, error) {
	t, err := w.token()
	if err != nil {
		return nil, err
	}
	if t == nil {
		return nil, nil
	}
	if d, ok := t.(json.Delim); !ok || d != '{' {
		return nil, w.errAt("__metadata__: want an object of strings, got %s", describeToken(t))
	}
	meta := map[string]string{}
	for w.dec.More() {
		kt, err := w.token()
		if err != nil {
			return nil, err
		}
		k, _ := kt.(string)
		if _, dup := meta[k]; dup {
			return nil, &FormatError{File: w.file, Kind: "key", Field: "__metadata__." + k, Offset: 8 + w.dec.InputOffset(), Err: errorf(ErrFormat, "duplicate key in header")}
		}
		vt, err := w.token()
		if err != nil {
			return nil, err
		}
		v, ok := vt.(string)
		if !ok {
			return nil, &FormatError{File: w.file, Kind: "key", Field: "__metadata__." + k, Offset: 8 + w.dec.InputOffset(), Err: errorf(ErrFormat, "__metadata__ values must be strings, got %s", describeToken(vt))}
		}
		meta[k] = v
	}
	return meta, w.delim('}', "__metadata__")
}

// entry reads one tensor's {"dtype", "shape", "data_offsets"} object.
func (w *jsonWalker) entry(name string, at int64) (safeEntry, error) {
	e := safeEntry{name: name, at: at}
	fail := func(format string, args ...any) (safeEntry, error) {
		return e, &FormatError{File: w.file, Kind: "tensor", Field: name, Offset: 8 + w.dec.InputOffset(), Err: errorf(ErrFormat, format, args...)}
	}
	t, err := w.token()
	if err != nil {
		return e, err
	}
	if d, ok := t.(json.Delim); !ok || d != '{' {
		return fail("want an object with dtype, shape and data_offsets, got %s", describeToken(t))
	}
	var haveDType, haveShape, haveOffsets bool
	for w.dec.More() {
		kt, err := w.token()
		if err != nil {
			return e, err
		}
		field, _ := kt.(string)
		switch field {
		case "dtype":
			if haveDType {
				return fail("duplicate field dtype")
			}
			haveDType = true
			vt, err := w.token()
			if err != nil {
				return e, err
			}
			s, ok := vt.(string)
			if !ok {
				return fail("dtype: want a string, got %s", describeToken(vt))
			}
			e.dtype = s
		case "shape":
			if haveShape {
				return fail("duplicate field shape")
			}
			haveShape = true
			dims, err := w.uints("shape")
			if err != nil {
				return e, withTensor(err, name)
			}
			e.shape = make([]int64, len(dims))
			for i, d := range dims {
				if d > math.MaxInt64 {
					return fail("shape dimension %d is too large", d)
				}
				e.shape[i] = int64(d)
			}
		case "data_offsets":
			if haveOffsets {
				return fail("duplicate field data_offsets")
			}
			haveOffsets = true
			offs, err := w.uints("data_offsets")
			if err != nil {
				return e, withTensor(err, name)
			}
			if len(offs) != 2 {
				return fail("data_offsets: want [begin, end], got %d numbers", len(offs))
			}
			e.begin, e.end = offs[0], offs[1]
		default:
			// The reference reader ignores unknown fields; skip the value.
			var skip json.RawMessage
			if err := w.dec.Decode(&skip); err != nil {
				return e, w.errAt("header is not valid JSON: %w", err)
			}
		}
	}
	if err := w.delim('}', "tensor entry"); err != nil {
		return e, withTensor(err, name)
	}
	switch {
	case !haveDType:
		return fail("missing field dtype")
	case !haveShape:
		return fail("missing field shape")
	case !haveOffsets:
		return fail("missing field data_offsets")
	}
	if _, ok := safeDTypeBits[e.dtype]; !ok {
		return e, &FormatError{File: w.file, Kind: "tensor", Field: name, Offset: at, Err: errorf(ErrUnsupported, "unknown dtype %q", e.dtype)}
	}
	return e, nil
}

func withTensor(err error, name string) error {
	var fe *FormatError
	if errors.As(err, &fe) && fe.Field == "" {
		fe.Kind, fe.Field = "tensor", name
	}
	return err
}

// floatDType reports whether the values of a safetensors dtype are read
// as float32: F32, F64, F16 and BF16.
func floatDType(dtype string) bool {
	switch dtype {
	case DTypeF32, "F64", "F16", "BF16":
		return true
	}
	return false
}

// convertSafe converts one tensor's bytes to float32.
func convertSafe(file string, e safeEntry, raw []byte, at int64) ([]float32, error) {
	fail := func(kind error, format string, args ...any) ([]float32, error) {
		return nil, &FormatError{File: file, Kind: "tensor", Field: e.name, Offset: at, Err: errorf(kind, format, args...)}
	}
	var out []float32
	switch e.dtype {
	case "F32":
		out = make([]float32, len(raw)/4)
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		}
	case "F64":
		out = make([]float32, len(raw)/8)
		for i := range out {
			v := math.Float64frombits(binary.LittleEndian.Uint64(raw[8*i:]))
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return fail(ErrFormat, "value at index %d is %v", i, v)
			}
			if math.Abs(v) > math.MaxFloat32 {
				return fail(ErrFormat, "F64 value at index %d (%g) is outside the float32 range", i, v)
			}
			out[i] = float32(v)
		}
	case "F16":
		out = make([]float32, len(raw)/2)
		for i := range out {
			out[i] = F16ToFloat32(binary.LittleEndian.Uint16(raw[2*i:]))
		}
	case "BF16":
		out = make([]float32, len(raw)/2)
		for i := range out {
			out[i] = BF16ToFloat32(binary.LittleEndian.Uint16(raw[2*i:]))
		}
	default:
		return fail(ErrUnsupported, "dtype %s is not supported (want F32, F64, F16 or BF16)", e.dtype)
	}
	if j := firstNonFinite32(out); j >= 0 {
		return fail(ErrFormat, "value at index %d is %v", j, out[j])
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

// F16ToFloat32 converts an IEEE 754 half-precision value (bits h) to float32
// exactly; every half value, including subnormals, infinities and NaNs, is
// representable.
func F16ToFloat32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h) & 0x3ff
	switch exp {
	case 0x1f: // infinity or NaN; keep the payload
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	case 0:
		// zero or subnormal: mant * 2^-24, exact in float32.
		f := float32(mant) * (1.0 / (1 << 24))
		return math.Float32frombits(sign | math.Float32bits(f))
	default:
		return math.Float32frombits(sign | (exp+(127-15))<<23 | mant<<13)
	}
}

// BF16ToFloat32 converts a bfloat16 value (bits b, the high half of a
// float32) to float32 exactly.
func BF16ToFloat32(b uint16) float32 {
	return math.Float32frombits(uint32(b) << 16)
}

// roleFromName derives a tensor's role from its name: "trunk" or
// "correction" when a non-final component says so ("0.trunk.L"), else the
// last dot-separated component ("0.weight" -> "weight").
func roleFromName(name string) compute.Role {
	parts := strings.Split(name, ".")
	for _, p := range parts[:len(parts)-1] {
		if r := compute.Role(p); r == compute.RoleTrunk || r == compute.RoleCorrection {
			return r
		}
	}
	if last := parts[len(parts)-1]; last != "" {
		return compute.Role(last)
	}
	return compute.Role(name)
}

// WriteSafetensors writes tensors to a safetensors file at path,
// atomically (see WriteFileAtomic); see EncodeSafetensors.
func WriteSafetensors(path string, tensors []Tensor, metadata map[string]string) error {
	if err := checkSafeTensors(path, tensors, metadata); err != nil {
		return err
	}
	return WriteFileAtomic(path, func(w io.Writer) error { return encodeSafetensors(w, tensors, metadata) })
}

// EncodeSafetensors writes tensors in the safetensors format to w: float32
// tensors as F32, raw tensors in their own dtype with their bytes as they
// are. The header lists "__metadata__" first (omitted if metadata is
// empty) and then the tensors in the given order, which is also the order
// of their data; it is padded with spaces to a multiple of 8 bytes, as the
// reference writer does. Names must be non-empty, unique and not
// "__metadata__"; shapes must match the data and values must be finite, or
// a *FormatError is returned before anything is written.
func EncodeSafetensors(w io.Writer, tensors []Tensor, metadata map[string]string) error {
	if err := checkSafeTensors("", tensors, metadata); err != nil {
		return err
	}
	return encodeSafetensors(w, tensors, metadata)
}

func checkSafeTensors(file string, tensors []Tensor, metadata map[string]string) error {
	seen := make(map[string]struct{}, len(tensors))
	for i := range tensors {
		t := &tensors[i]
		switch {
		case t.Name == "":
			return fileErr(file, ErrFormat, "tensor %d has an empty name", i)
		case t.Name == "__metadata__":
			return fieldErr(file, "tensor", t.Name, ErrFormat, "name is reserved")
		}
		if _, dup := seen[t.Name]; dup {
			return fieldErr(file, "tensor", t.Name, ErrFormat, "duplicate tensor name")
		}
		seen[t.Name] = struct{}{}
		if err := checkValues(file, t); err != nil {
			return err
		}
	}
	for k, v := range metadata {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return fieldErr(file, "metadata", k, ErrFormat, "key or value is not valid UTF-8")
		}
	}
	return nil
}

// jsonString encodes s as a JSON string without HTML escaping, as serde does.
func jsonString(buf *bytes.Buffer, s string) {
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	buf.Truncate(buf.Len() - 1)
}

func encodeSafetensors(w io.Writer, tensors []Tensor, metadata map[string]string) error {
	var h bytes.Buffer
	h.WriteByte('{')
	first := true
	if len(metadata) > 0 {
		h.WriteString(`"__metadata__":{`)
		keys := make([]string, 0, len(metadata))
		for k := range metadata {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i, k := range keys {
			if i > 0 {
				h.WriteByte(',')
			}
			jsonString(&h, k)
			h.WriteByte(':')
			jsonString(&h, metadata[k])
		}
		h.WriteByte('}')
		first = false
	}
	var off uint64
	for i := range tensors {
		t := &tensors[i]
		if !first {
			h.WriteByte(',')
		}
		first = false
		jsonString(&h, t.Name)
		h.WriteString(`:{"dtype":"` + cmp.Or(t.DType, DTypeF32) + `","shape":[`)
		for k, d := range t.Shape {
			if k > 0 {
				h.WriteByte(',')
			}
			h.WriteString(strconv.FormatInt(d, 10))
		}
		end := off + 4*uint64(len(t.Data)) + uint64(len(t.Raw))
		fmt.Fprintf(&h, `],"data_offsets":[%d,%d]}`, off, end)
		off = end
	}
	h.WriteByte('}')
	for h.Len()%8 != 0 {
		h.WriteByte(' ')
	}
	if h.Len() > SafetensorsMaxHeader {
		return fmt.Errorf("arrowio: safetensors header of %d bytes exceeds the limit of %d", h.Len(), SafetensorsMaxHeader)
	}
	var size [8]byte
	binary.LittleEndian.PutUint64(size[:], uint64(h.Len()))
	if _, err := w.Write(size[:]); err != nil {
		return err
	}
	if _, err := w.Write(h.Bytes()); err != nil {
		return err
	}
	buf := make([]byte, 0, 1<<16)
	for i := range tensors {
		if raw := tensors[i].Raw; len(raw) > 0 {
			if _, err := w.Write(buf); err != nil {
				return err
			}
			buf = buf[:0]
			if _, err := w.Write(raw); err != nil {
				return err
			}
			continue
		}
		for _, v := range tensors[i].Data {
			buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(v))
			if len(buf) == cap(buf) {
				if _, err := w.Write(buf); err != nil {
					return err
				}
				buf = buf[:0]
			}
		}
	}
	if len(buf) > 0 {
		if _, err := w.Write(buf); err != nil {
			return err
		}
	}
	return nil
}
