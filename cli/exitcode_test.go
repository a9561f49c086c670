package cli

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"syscall"
	"testing"

	"github.com/strata-ml/strata/stages"
)

// TestExitCodeClassification: what a retry cannot change exits 2, the
// rest 1.
func TestExitCodeClassification(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"bad input", fmt.Errorf("convert: %w", stages.ErrInput), ExitUsage},
		{"output not writable", fmt.Errorf("create output directory: %w", &fs.PathError{Op: "mkdir", Path: "/out", Err: syscall.EACCES}), ExitUsage},
		{"read-only mount", fmt.Errorf("write: %w", &fs.PathError{Op: "open", Path: "/out/x", Err: syscall.EROFS}), ExitUsage},
		{"input not readable", &fs.PathError{Op: "open", Path: "/in/model.arrow", Err: syscall.EPERM}, ExitUsage},
		{"disk full", &fs.PathError{Op: "write", Path: "/out/x", Err: syscall.ENOSPC}, ExitRuntime},
		{"interrupted", fmt.Errorf("finetune: interrupted: %w", errors.New("context canceled")), ExitRuntime},
	}
	for _, tt := range tests {
		if got := exitCode(tt.err, io.Discard, nil); got != tt.want {
			t.Errorf("%s: exit %d, want %d", tt.name, got, tt.want)
		}
	}
}
