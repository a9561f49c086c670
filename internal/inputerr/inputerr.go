// Package inputerr marks the errors caused by what a user fed in: a bad
// file, flag or config. Such errors must not be retried; the CLI maps
// them to exit code 2. Every package that reads user input (stages, gate,
// validation, the configs) builds them here, so errors.Is(err, ErrInput)
// holds whichever package raised them.
package inputerr

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInput is wrapped by every error caused by bad input (a bad file,
// flag or config).
var ErrInput = errors.New("bad input")

// inputError marks err as caused by bad input.
type inputError struct{ err error }

func (e *inputError) Error() string        { return e.err.Error() }
func (e *inputError) Unwrap() error        { return e.err }
func (e *inputError) Is(target error) bool { return target == ErrInput }

// Errorf returns a bad-input error formatted as fmt.Errorf does (%w
// wraps).
func Errorf(format string, args ...any) error {
	return &inputError{fmt.Errorf(format, args...)}
}

// Mark returns err marked as bad input (nil for nil, err itself when it
// already is).
func Mark(err error) error {
	if err == nil || errors.Is(err, ErrInput) {
		return err
	}
	return &inputError{err}
}

// InFile prefixes a bad-input error with the file it is about, unless the
// message already names it; other errors and an empty path pass through.
func InFile(path string, err error) error {
	if path == "" || !errors.Is(err, ErrInput) || strings.Contains(err.Error(), path) {
		return err
	}
	return Errorf("%s: %w", path, err)
}
