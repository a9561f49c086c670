package arrowio

import (
	"errors"
	"io"
	"testing"
)

func TestFormatErrorMessage(t *testing.T) {
	cause := io.ErrUnexpectedEOF
	tests := []struct {
		name string
		err  *FormatError
		want string
	}{
		{"tensor", fieldErr("model.arrow", "tensor", "0.weight", ErrFormat, "shape %v needs %d values, has %d", []int64{10, 64}, 640, 600),
			`model.arrow: tensor "0.weight": shape [10 64] needs 640 values, has 600`},
		{"column", fieldErr("train.parquet", "column", "label", ErrFormat, "row %d is null", 3),
			`train.parquet: column "label": row 3 is null`},
		{"file only", fileErr("x.safetensors", ErrFormat, "header is not valid UTF-8"),
			`x.safetensors: header is not valid UTF-8`},
		{"offset", &FormatError{File: "x.safetensors", Kind: "tensor", Field: "a", Offset: 16, Err: errorf(ErrFormat, "bad")},
			`x.safetensors: tensor "a": offset 16: bad`},
		{"no file", &FormatError{Kind: "key", Field: "k", Err: errorf(ErrUnsupported, "odd")},
			`key "k": odd`},
		{"nil err", &FormatError{File: "f"}, `f: invalid input`},
		{"wrapped cause", fileErr("f", ErrFormat, "read: %w", cause), `f: read: unexpected EOF`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("got %q want %q", got, tt.want)
			}
		})
	}
}

func TestFormatErrorUnwrap(t *testing.T) {
	err := error(fileErr("f", ErrFormat, "read: %w", io.ErrUnexpectedEOF))
	if !errors.Is(err, ErrFormat) {
		t.Error("does not wrap ErrFormat")
	}
	if errors.Is(err, ErrUnsupported) {
		t.Error("wraps ErrUnsupported")
	}
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Error("does not wrap its cause")
	}
	var fe *FormatError
	if !errors.As(err, &fe) || fe.File != "f" {
		t.Errorf("errors.As: got %+v", fe)
	}
	if u := fieldErr("f", "tensor", "t", ErrUnsupported, "x"); !errors.Is(u, ErrUnsupported) {
		t.Error("does not wrap ErrUnsupported")
	}
}
