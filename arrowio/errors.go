package arrowio

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

var (
	// ErrFormat is wrapped by every error about input that is corrupt or
	// violates the format: a bad header, a shape that does not match the
	// data, a NaN, a missing column.
	ErrFormat = errors.New("arrowio: invalid format")
	// ErrUnsupported is wrapped by errors about valid input that arrowio does
	// not handle: an unknown safetensors dtype, a newer model
	// format version, a feature column of a non-numeric type.
	ErrUnsupported = errors.New("arrowio: unsupported")
)

// FormatError describes a problem with the contents of an input file. Its
// message reads like
//
//	model.arrow: tensor "0.weight": shape [10 64] needs 640 values, has 600
//
// Err wraps ErrFormat or ErrUnsupported (test with errors.Is); for errors
// raised by a lower layer (the Arrow IPC reader, gzip) it wraps that error too.
type FormatError struct {
	File string // the file as the caller named it, or the name given to a *From reader
	// Kind says what Field names: "tensor", "column", "key", "metadata",
	// "layer". Empty when Field is empty.
	Kind  string
	Field string // the tensor, column or JSON key at fault; empty if the problem is file-wide
	// Offset is the byte offset of the problem in the file when it is known
	// and meaningful (safetensors headers and data), 0 otherwise.
	Offset int64
	// Line and Column are the 1-based position of the problem in a text
	// file (a CSV field, as encoding/csv counts them: a quoted field may
	// span lines), 0 otherwise.
	Line, Column int
	Err          error
}

// Error formats the error as "file:line:column: kind "field": (offset N:
// )message", leaving out the parts that are empty.
func (e *FormatError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			b.WriteString(":" + strconv.Itoa(e.Line))
			if e.Column > 0 {
				b.WriteString(":" + strconv.Itoa(e.Column))
			}
		}
		b.WriteString(": ")
	}
	if e.Field != "" || e.Kind != "" {
		if e.Kind != "" {
			b.WriteString(e.Kind)
			if e.Field != "" {
				b.WriteByte(' ')
			}
		}
		if e.Field != "" {
			b.WriteString(strconv.Quote(e.Field))
		}
		b.WriteString(": ")
	}
	if e.Offset != 0 {
		b.WriteString("offset ")
		b.WriteString(strconv.FormatInt(e.Offset, 10))
		b.WriteString(": ")
	}
	if e.Err != nil {
		b.WriteString(e.Err.Error())
	} else {
		b.WriteString("invalid input")
	}
	return b.String()
}

// Unwrap returns the wrapped error, so that errors.Is(err, ErrFormat) works.
func (e *FormatError) Unwrap() error { return e.Err }

// detail is the Err of a FormatError: a message that reads without the
// sentinel's text, while errors.Is still finds the sentinel and the cause.
type detail struct {
	kind  error // ErrFormat or ErrUnsupported
	msg   string
	cause error // optional lower-level error, already part of msg
}

func (d *detail) Error() string { return d.msg }

func (d *detail) Unwrap() []error {
	if d.cause != nil {
		return []error{d.kind, d.cause}
	}
	return []error{d.kind}
}

// errorf returns an error wrapping kind whose message is the formatted text.
// If the last argument is an error and the format uses %w for it, that error
// is wrapped too.
func errorf(kind error, format string, args ...any) error {
	wrapped := fmt.Errorf(format, args...)
	var cause error
	if u, ok := wrapped.(interface{ Unwrap() error }); ok {
		cause = u.Unwrap()
	} else if u, ok := wrapped.(interface{ Unwrap() []error }); ok {
		if errs := u.Unwrap(); len(errs) > 0 {
			cause = errors.Join(errs...)
		}
	}
	msg := wrapped.Error()
	if strings.Contains(msg, "runtime error:") && !strings.Contains(msg, runtimeNote) {
		msg = runtimeNote + ": " + msg
	}
	return &detail{kind: kind, msg: msg, cause: cause}
}

// runtimeNote explains a message that carries a Go runtime error the
// Arrow or Parquet reader raised on a corrupt file (a slice past its
// data, for a length that claims 2 GiB): the runtime's words alone say
// nothing of the file.
const runtimeNote = "corrupt data: a length or offset in the file points outside its data"

// fileErr builds a *FormatError about a whole file.
func fileErr(file string, kind error, format string, args ...any) *FormatError {
	return &FormatError{File: file, Err: errorf(kind, format, args...)}
}

// fieldErr builds a *FormatError about one named tensor, column or key.
// field is copied: names read from a memory-mapped file alias the mapping,
// which is gone when the error reaches the caller.
func fieldErr(file, what, field string, kind error, format string, args ...any) *FormatError {
	return &FormatError{File: file, Kind: what, Field: strings.Clone(field), Err: errorf(kind, format, args...)}
}

// recoverAsFormatError converts a panic raised while decoding untrusted
// bytes (arrow-go and the parquet reader panic on some corrupt inputs) into a
// *FormatError stored in *err. It must be deferred directly.
func recoverAsFormatError(file string, err *error) {
	if r := recover(); r != nil {
		if e, ok := r.(error); ok {
			if strings.Contains(e.Error(), "runtime error:") {
				*err = fileErr(file, ErrFormat, "%w", e) // errorf says what it means
				return
			}
			*err = fileErr(file, ErrFormat, "corrupt data: %w", e)
			return
		}
		*err = fileErr(file, ErrFormat, "corrupt data: %v", r)
	}
}
