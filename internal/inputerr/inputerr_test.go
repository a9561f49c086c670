package inputerr

import (
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"testing"
)

// TestFieldError: the message names fields by their keys, or as a front
// end calls them; values are never taken for fields; %w wraps; the error
// is bad input.
func TestFieldError(t *testing.T) {
	flag := func(key string) string { return "--" + key }
	tests := []struct {
		name      string
		err       *FieldError
		keys      string
		flags     string
		fields    []string
		wrapsPerm bool
	}{
		{"one field", Fieldf("finetune", "{epochs} %d: want at least 1", -2),
			"finetune: epochs -2: want at least 1", "finetune: --epochs -2: want at least 1", []string{"epochs"}, false},
		{"two fields", Fieldf("finetune", "give {valid} or {valid_fraction}, not both"),
			"finetune: give valid or valid_fraction, not both", "finetune: give --valid or --valid_fraction, not both", []string{"valid", "valid_fraction"}, false},
		{"a value that looks like a field", Fieldf("convert", "{structure} %q: unknown", "{epochs}"),
			`convert: structure "{epochs}": unknown`, `convert: --structure "{epochs}": unknown`, []string{"structure"}, false},
		{"wraps", Fieldf("", "{out} %s: %w", "/x", fs.ErrPermission),
			"out /x: permission denied", "--out /x: permission denied", []string{"out"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.keys {
				t.Errorf("Error() = %q, want %q", got, tt.keys)
			}
			if got := tt.err.Render(flag); got != tt.flags {
				t.Errorf("Render(flags) = %q, want %q", got, tt.flags)
			}
			if got := tt.err.Fields(); !slices.Equal(got, tt.fields) {
				t.Errorf("Fields() = %v, want %v", got, tt.fields)
			}
			wrapped := fmt.Errorf("pilot: %w", tt.err)
			if !errors.Is(wrapped, ErrInput) {
				t.Error("not bad input")
			}
			if got := errors.Is(wrapped, fs.ErrPermission); got != tt.wrapsPerm {
				t.Errorf("errors.Is(fs.ErrPermission) = %v, want %v", got, tt.wrapsPerm)
			}
		})
	}
}
