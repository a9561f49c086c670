package arrowio

import (
	"bytes"
	"encoding/binary"
	"math"
	"slices"
	"strconv"
	"strings"
)

// This file reads logits stored as one array, the way a PyTorch or numpy
// user saves them without pyarrow: a safetensors file (torch's
// safetensors.torch.save_file) or a .npy file (numpy.save).

// MaxNpyHeader bounds the header of a .npy file (numpy writes a few
// hundred bytes).
const MaxNpyHeader = 1 << 16

// readTensorLogits reads the logits of a .safetensors or .npy file at
// path as a Dataset (see ReadLogits).
func readTensorLogits(path, ext, label string) (*Dataset, error) {
	data, err := readInput(path)
	if err != nil {
		return nil, err
	}
	if ext == ".npy" {
		shape, values, err := ParseNpy(data, path)
		if err != nil {
			return nil, err
		}
		return logitsDataset(path, "array", shape, values, nil)
	}
	sf, err := ParseSafetensors(data, path)
	if err != nil {
		return nil, err
	}
	var outs []Tensor
	var y *Tensor
	for i, t := range sf.Tensors {
		if t.Name == label {
			y = &sf.Tensors[i]
			continue
		}
		outs = append(outs, t)
	}
	if len(outs) > 1 {
		i := slices.IndexFunc(outs, func(t Tensor) bool { return t.Name == "logits" })
		if i < 0 {
			names := make([]string, len(outs))
			for k, t := range outs {
				names[k] = strconv.Quote(t.Name)
			}
			return nil, fileErr(path, ErrFormat, "%d tensors (%s): want the logits alone, or a tensor named \"logits\" (and optionally %q for the labels)",
				len(outs), strings.Join(names, ", "), label)
		}
		outs = outs[i : i+1]
	}
	if len(outs) == 0 {
		return nil, fileErr(path, ErrFormat, "no tensor of logits")
	}
	t := outs[0]
	shape := make([]int, len(t.Shape))
	for i, d := range t.Shape {
		shape[i] = int(d)
	}
	values := make([]float64, len(t.Data))
	for i, v := range t.Data {
		values[i] = float64(v)
	}
	var labels []float64
	if y != nil {
		if len(y.Shape) != 1 || len(shape) == 0 || int(y.Shape[0]) != shape[0] {
			return nil, fieldErr(path, "tensor", y.Name, ErrFormat, "shape %v: the labels are one per row of the logits %v", y.Shape, t.Shape)
		}
		labels = make([]float64, len(y.Data))
		for i, v := range y.Data {
			labels[i] = float64(v)
		}
	}
	return logitsDataset(path, t.Name, shape, values, labels)
}

// logitsDataset makes the Dataset of an array of logits of the given shape
// ([rows] or [rows, outputs]), its values finite.
func logitsDataset(path, tensor string, shape []int, values, labels []float64) (*Dataset, error) {
	var n, d int
	switch len(shape) {
	case 1:
		n, d = shape[0], 1
	case 2:
		n, d = shape[0], shape[1]
	default:
		return nil, fieldErr(path, "tensor", tensor, ErrFormat, "shape %v: want [rows, outputs] or [rows]", shape)
	}
	if n == 0 || d == 0 {
		return nil, fieldErr(path, "tensor", tensor, ErrFormat, "shape %v: no values", shape)
	}
	for i, v := range values {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fieldErr(path, "tensor", tensor, ErrFormat, "row %d output %d is %v", i/d, i%d, v)
		}
	}
	return &Dataset{X: values, Y: labels, N: n, D: d}, nil
}

// npyTypes are the element types ParseNpy reads, by their descr without
// the byte-order mark, with their size.
var npyTypes = map[string]int{"f2": 2, "f4": 4, "f8": 8, "i4": 4, "i8": 8}

// ParseNpy parses a .npy file (numpy's format, versions 1.0 to 3.0) of
// little-endian float16, float32, float64, int32 or int64 values, in C or
// Fortran order, and returns its shape and its values in row-major (C)
// order. name is the file errors cite. Every problem is a *FormatError:
// a bad magic or version, a header that is not numpy's dict of descr,
// fortran_order and shape, another element type or byte order, data
// whose length is not what the shape says. data is not retained.
func ParseNpy(data []byte, name string) (shape []int, values []float64, err error) {
	bad := func(format string, args ...any) error { return fileErr(name, ErrFormat, "npy: "+format, args...) }
	if len(data) < 10 || !bytes.Equal(data[:6], []byte("\x93NUMPY")) {
		return nil, nil, bad("not a .npy file (no \\x93NUMPY magic)")
	}
	var hlen, start int
	switch data[6] {
	case 1:
		hlen, start = int(binary.LittleEndian.Uint16(data[8:10])), 10
	case 2, 3:
		if len(data) < 12 {
			return nil, nil, bad("truncated header length")
		}
		h := binary.LittleEndian.Uint32(data[8:12])
		if h > MaxNpyHeader {
			return nil, nil, bad("header of %d bytes, more than the %d this reader takes", h, MaxNpyHeader)
		}
		hlen, start = int(h), 12
	default:
		return nil, nil, fileErr(name, ErrUnsupported, "npy: format version %d.%d (want 1.0 to 3.0)", data[6], data[7])
	}
	if start+hlen > len(data) {
		return nil, nil, bad("header of %d bytes runs past the end of the file", hlen)
	}
	header := string(data[start : start+hlen])
	descr, ok := npyField(header, "descr")
	if !ok || len(descr) < 3 || descr[0] != '\'' || descr[len(descr)-1] != '\'' {
		return nil, nil, bad("header %q has no 'descr' string", header)
	}
	descr = descr[1 : len(descr)-1]
	order, kind := descr[0], descr[1:]
	size, known := npyTypes[kind]
	switch {
	case !known:
		return nil, nil, fileErr(name, ErrUnsupported, "npy: element type %q (want float16, float32, float64, int32 or int64)", descr)
	case order != '<' && order != '|' && !(order == '=' && nativeLittle()):
		return nil, nil, fileErr(name, ErrUnsupported, "npy: byte order of %q: want little-endian ('<')", descr)
	}
	fortran, ok := npyField(header, "fortran_order")
	if !ok || (fortran != "True" && fortran != "False") {
		return nil, nil, bad("header %q has no 'fortran_order' True or False", header)
	}
	dims, ok := npyField(header, "shape")
	if !ok || len(dims) < 2 || dims[0] != '(' || dims[len(dims)-1] != ')' {
		return nil, nil, bad("header %q has no 'shape' tuple", header)
	}
	count := 1
	for _, f := range strings.Split(dims[1:len(dims)-1], ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		d, err := strconv.Atoi(f)
		if err != nil || d < 0 {
			return nil, nil, bad("shape %s: %q is not a size", dims, f)
		}
		if d > 0 && count > math.MaxInt32/d {
			return nil, nil, bad("shape %s holds more than %d values", dims, math.MaxInt32)
		}
		count *= d
		shape = append(shape, d)
	}
	body := data[start+hlen:]
	if len(body) != count*size {
		return nil, nil, bad("shape %s of %s needs %d bytes of data, the file has %d", dims, descr, count*size, len(body))
	}
	values = make([]float64, count)
	for i := range values {
		b := body[i*size:]
		switch kind {
		case "f2":
			values[i] = float64(F16ToFloat32(binary.LittleEndian.Uint16(b)))
		case "f4":
			values[i] = float64(math.Float32frombits(binary.LittleEndian.Uint32(b)))
		case "f8":
			values[i] = math.Float64frombits(binary.LittleEndian.Uint64(b))
		case "i4":
			values[i] = float64(int32(binary.LittleEndian.Uint32(b)))
		case "i8":
			values[i] = float64(int64(binary.LittleEndian.Uint64(b)))
		}
	}
	if fortran == "True" && len(shape) > 1 {
		values = fortranToC(values, shape)
	}
	return shape, values, nil
}

// npyField returns the value text of key in numpy's header dict: the
// characters after 'key': up to the comma that ends it at nesting level 0.
func npyField(header, key string) (string, bool) {
	i := strings.Index(header, "'"+key+"'")
	if i < 0 {
		return "", false
	}
	rest := strings.TrimLeft(header[i+len(key)+2:], " ")
	if !strings.HasPrefix(rest, ":") {
		return "", false
	}
	rest = strings.TrimLeft(rest[1:], " ")
	depth := 0
	for k, r := range rest {
		switch r {
		case '(':
			depth++
		case ')':
			depth--
		case ',', '}':
			if depth == 0 {
				return strings.TrimSpace(rest[:k]), true
			}
		}
	}
	return "", false
}

// fortranToC reorders values stored column-major (first index fastest)
// into row-major order.
func fortranToC(values []float64, shape []int) []float64 {
	out := make([]float64, len(values))
	idx := make([]int, len(shape))
	for c := range out {
		// c is the row-major position of idx; its column-major one:
		f, stride := 0, 1
		for k := range shape {
			f += idx[k] * stride
			stride *= shape[k]
		}
		out[c] = values[f]
		for k := len(shape) - 1; k >= 0; k-- {
			idx[k]++
			if idx[k] < shape[k] {
				break
			}
			idx[k] = 0
		}
	}
	return out
}

// nativeLittle reports whether this machine is little-endian (numpy's '='
// byte order).
func nativeLittle() bool { return binary.NativeEndian.Uint16([]byte{1, 0}) == 1 }
