package stages

import (
	"errors"
	"fmt"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/compute"
)

// ErrInput is wrapped by every error caused by what a user fed in: a bad
// file, flag or config. Such errors must not be retried (exit code 2).
var ErrInput = errors.New("bad input")

// inputError marks err as caused by bad input.
type inputError struct{ err error }

func (e *inputError) Error() string        { return e.err.Error() }
func (e *inputError) Unwrap() error        { return e.err }
func (e *inputError) Is(target error) bool { return target == ErrInput }

// inputErrorf returns a bad-input error.
func inputErrorf(format string, args ...any) error {
	return &inputError{fmt.Errorf(format, args...)}
}

// classify marks the errors of the lower layers that come from bad input
// (format errors, invalid specs, non-finite values) as ErrInput.
func classify(err error) error {
	if err == nil || errors.Is(err, ErrInput) {
		return err
	}
	var fe *arrowio.FormatError
	if errors.As(err, &fe) || errors.Is(err, compute.ErrSpec) || errors.Is(err, compute.ErrNotFinite) {
		return &inputError{err}
	}
	return err
}
