package onnx

import (
	"fmt"
	"strings"

	"github.com/strata-ml/strata/arrowio"
)

// reason is the Err of a FormatError: its text reads without the sentinel's,
// while errors.Is still finds the sentinel.
type reason struct {
	kind error // arrowio.ErrFormat or arrowio.ErrUnsupported
	msg  string
}

func (r *reason) Error() string { return r.msg }
func (r *reason) Unwrap() error { return r.kind }

// formatErr builds the error about field (of the given kind; both may be
// empty) of file.
func formatErr(file, kind, field string, sentinel error, format string, args ...any) error {
	return &arrowio.FormatError{File: file, Kind: kind, Field: field,
		Err: &reason{kind: sentinel, msg: fmt.Sprintf(format, args...)}}
}

// shape formats dims as [2 3 4], the way the other readers print shapes.
func shape(dims []int64) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, d := range dims {
		if i > 0 {
			b.WriteByte(' ')
		}
		if d < 0 {
			b.WriteByte('?')
		} else {
			fmt.Fprint(&b, d)
		}
	}
	b.WriteByte(']')
	return b.String()
}
