// Package inputerr marks the errors caused by what a user fed in: a bad
// file, flag or config. Such errors must not be retried; the CLI maps
// them to exit code 2. Every package that reads user input (stages, gate,
// validation, the configs) builds them here, so errors.Is(err, ErrInput)
// holds whichever package raised them.
package inputerr

import (
	"errors"
	"fmt"
	"regexp"
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

// FieldError is bad input in a stage's config: a message about one or
// more of its fields, which it names by their keys in the config's JSON
// and YAML forms ("batch_size"). That is how a plugin host and a config
// file know them; a front end that knows them otherwise (the CLI, by its
// flags: --batch-size) renders the message with Render.
type FieldError struct {
	// Stage prefixes the message ("finetune"); empty for none.
	Stage string
	// format is a fmt format in which {key} names a field; args are its
	// arguments. Values never pass through the {key} substitution.
	format string
	args   []any
	err    error // the message with keys as they are, wrapping any %w
	input  bool  // bad input; false for a Hintf
}

// fieldRef matches a field reference in a FieldError's format.
var fieldRef = regexp.MustCompile(`\{([a-z][a-z0-9_.]*)\}`)

// Fieldf returns a bad-input error of stage whose message is format with
// args as fmt.Errorf formats it (%w wraps), and in which each {key} names
// the config field key, e.g.
//
//	Fieldf("finetune", "{epochs} %d: want at least 1", -2)
//
// reads "finetune: epochs -2: want at least 1", or with the CLI's flags
// "finetune: --epochs -2: want at least 1".
func Fieldf(stage, format string, args ...any) *FieldError {
	e := &FieldError{Stage: stage, format: format, args: args, input: true}
	e.err = fmt.Errorf(e.expand(nil), args...)
	return e
}

// Hintf is Fieldf for an error that is not bad input but whose message
// names config fields, e.g. to say how to run again.
func Hintf(stage, format string, args ...any) *FieldError {
	e := Fieldf(stage, format, args...)
	e.input = false
	return e
}

// expand returns the format with every {key} replaced by name(key), or
// by key when name is nil.
func (e *FieldError) expand(name func(string) string) string {
	return fieldRef.ReplaceAllStringFunc(e.format, func(ref string) string {
		key := ref[1 : len(ref)-1]
		if name != nil {
			key = name(key)
		}
		return strings.ReplaceAll(key, "%", "%%")
	})
}

// Fields returns the keys the message names, in order.
func (e *FieldError) Fields() []string {
	var keys []string
	for _, m := range fieldRef.FindAllStringSubmatch(e.format, -1) {
		keys = append(keys, m[1])
	}
	return keys
}

// Message returns the message without the stage, each field named by
// name(key) (by its key when name is nil).
func (e *FieldError) Message(name func(key string) string) string {
	if name == nil {
		return e.err.Error()
	}
	return fmt.Errorf(e.expand(name), e.args...).Error()
}

// Render returns the message as Error does, each field named by
// name(key).
func (e *FieldError) Render(name func(key string) string) string {
	if e.Stage == "" {
		return e.Message(name)
	}
	return e.Stage + ": " + e.Message(name)
}

func (e *FieldError) Error() string        { return e.Render(nil) }
func (e *FieldError) Unwrap() error        { return errors.Unwrap(e.err) }
func (e *FieldError) Is(target error) bool { return e.input && target == ErrInput }
