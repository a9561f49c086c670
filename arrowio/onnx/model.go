package onnx

import (
	"errors"
	"fmt"
	"io"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/arrowio/onnx/onnxpb"
	"github.com/strata-ml/strata/internal/inputfile"
)

const (
	// DefaultMaxBytes is the largest model Read and Decode accept unless
	// WithMaxBytes says otherwise: 2 GiB - 1, protobuf's own limit on one
	// message and so on any ONNX file without external data.
	DefaultMaxBytes = 1<<31 - 1
	// DefaultMaxElements bounds the number of messages and strings in a
	// model (every node, attribute, tensor, dimension and name counts one)
	// unless WithMaxElements says otherwise. Decoding costs up to a few
	// hundred bytes of memory per element against as little as two bytes of
	// file, so this bound, not the file size, is what keeps a crafted file
	// from needing more than about 1 GiB; real models stay far below it (a
	// 100k-node transformer has under a million).
	DefaultMaxElements = 1 << 22
)

// Model is a decoded and validated ONNX model.
//
// Proto is the model itself and is owned by the Model: read it freely;
// change the graph through ReplaceNode, NameNodes and SetOpset, which keep it
// valid, or call Validate after changing it directly.
type Model struct {
	Proto *onnxpb.ModelProto
	// File names the model in errors: the path given to Read, the name given
	// to Decode.
	File string

	names    map[string]bool // every name in the model, built by NewName
	reserved map[string]bool // names NewName handed out
}

// Option configures Read and Decode.
type Option func(*config)

type config struct {
	maxBytes    int64
	maxElements int
}

// WithMaxBytes refuses models larger than n bytes (default DefaultMaxBytes),
// before reading them.
func WithMaxBytes(n int64) Option { return func(c *config) { c.maxBytes = n } }

// WithMaxElements refuses models with more than n messages and strings
// (default DefaultMaxElements), before decoding them.
func WithMaxElements(n int) Option { return func(c *config) { c.maxElements = n } }

func newConfig(opts []Option) config {
	c := config{maxBytes: DefaultMaxBytes, maxElements: DefaultMaxElements}
	for _, o := range opts {
		o(&c)
	}
	return c
}

// Read reads, decodes and validates the ONNX model at path (see Decode).
// Only a regular file is read (a pipe or a device is bad input, never
// waited on), and one larger than the size bound is refused before it is
// read.
func Read(path string, opts ...Option) (*Model, error) {
	c := newConfig(opts)
	f, size, err := inputfile.Open(path)
	if err != nil {
		return nil, fmt.Errorf("onnx: %w", err)
	}
	defer f.Close()
	if size > c.maxBytes {
		return nil, formatErr(path, "", "", arrowio.ErrUnsupported,
			"%d bytes: larger than the %d-byte limit", size, c.maxBytes)
	}
	// The limit holds even if the file grows after Open.
	data, err := io.ReadAll(io.LimitReader(f, c.maxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("onnx: read %s: %w", path, err)
	}
	return Decode(data, path, opts...)
}

// Decode decodes and validates the ONNX model in data; name identifies it in
// errors. The model keeps no reference to data.
//
// Every problem is an *arrowio.FormatError naming the file, the node or
// tensor at fault and what was expected (see Validate for what is checked).
// Fields that onnx.proto of ONNX 1.12 does not define are kept and written
// back by Encode.
func Decode(data []byte, name string, opts ...Option) (*Model, error) {
	c := newConfig(opts)
	if int64(len(data)) > c.maxBytes {
		return nil, formatErr(name, "", "", arrowio.ErrUnsupported,
			"%d bytes: larger than the %d-byte limit", len(data), c.maxBytes)
	}
	pb := &onnxpb.ModelProto{}
	budget := c.maxElements
	if err := countElements(data, pb.ProtoReflect().Descriptor(), &budget, 0); errors.Is(err, errTooMany) {
		return nil, formatErr(name, "", "", arrowio.ErrUnsupported,
			"more than %d messages and strings: larger than the limit", c.maxElements)
	}
	if err := proto.Unmarshal(data, pb); err != nil {
		return nil, formatErr(name, "", "", arrowio.ErrFormat, "not an ONNX model, or truncated: invalid protobuf (%v)", err)
	}
	m := &Model{Proto: pb, File: name}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return m, nil
}

var errTooMany = errors.New("too many elements")

// maxDepth matches the nesting limit of protobuf's own decoder.
const maxDepth = 10000

// countElements subtracts from *budget one for every message, string and
// bytes value in the wire-format message b of type md, and fails with
// errTooMany when the budget runs out. It allocates nothing; malformed wire
// data stops the count (proto.Unmarshal then reports it).
func countElements(b []byte, md protoreflect.MessageDescriptor, budget *int, depth int) error {
	if depth > maxDepth {
		return nil
	}
	fields := md.Fields()
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil
		}
		b = b[n:]
		if typ != protowire.BytesType {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return nil
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return nil
		}
		b = b[n:]
		fd := fields.ByNumber(num)
		if fd == nil {
			continue // an unknown field is kept as raw bytes: no amplification
		}
		switch fd.Kind() {
		case protoreflect.MessageKind:
			*budget--
			if *budget < 0 {
				return errTooMany
			}
			if err := countElements(v, fd.Message(), budget, depth+1); err != nil {
				return err
			}
		case protoreflect.StringKind, protoreflect.BytesKind:
			*budget--
			if *budget < 0 {
				return errTooMany
			}
		}
	}
	return nil
}

// Encode returns the model's wire format. The bytes depend only on the
// model: fields in field-number order, unknown fields last, as protobuf's C++
// and Python encoders write them, so an untouched model decoded from a file
// that onnx.save wrote encodes to the same bytes.
func (m *Model) Encode() ([]byte, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m.Proto)
	if err != nil {
		return nil, fmt.Errorf("onnx: encode %s: %w", m.File, err)
	}
	if len(b) > DefaultMaxBytes {
		return nil, fmt.Errorf("onnx: encode %s: %d bytes, over the 2 GiB that an ONNX file without external data can hold", m.File, len(b))
	}
	return b, nil
}

// Write encodes the model and writes it to path atomically (see
// arrowio.WriteFileAtomic): the file appears complete or not at all.
func (m *Model) Write(path string) error {
	b, err := m.Encode()
	if err != nil {
		return err
	}
	return arrowio.WriteFileAtomic(path, func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	})
}
