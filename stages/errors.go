// Package stages implements the pilot stages (convert, finetune, validate,
// report) and the commands around them (pilot, sweep, merge, export,
// inspect) as plain functions with typed configs: it orchestrates. The
// gate decides (package gate), the renderers draw (package render) and
// validation.json's schema is package validation. The CLI and the
// go-plugin server are thin shells over it.
package stages

import (
	"errors"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/compute"
	"github.com/strata-ml/strata/internal/inputerr"
)

// ErrInput is wrapped by every error caused by what a user fed in: a bad
// file, flag or config. Such errors must not be retried (exit code 2).
var ErrInput = inputerr.ErrInput

// classify marks the errors of the lower layers that come from bad input
// (format errors, invalid specs, non-finite values) as ErrInput.
func classify(err error) error {
	var fe *arrowio.FormatError
	if errors.As(err, &fe) || errors.Is(err, compute.ErrSpec) || errors.Is(err, compute.ErrNotFinite) {
		return inputerr.Mark(err)
	}
	return err
}
