package arrowio

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/strata-ml/strata/internal/inputerr"
)

// TestWriteFileAtomicSpecialTargets: a device or a named pipe is written
// in place and stays what it is; a symlink is followed and stays a link;
// a target no retry can write is bad input; a failing device write is an
// error that is not.
func TestWriteFileAtomicSpecialTargets(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	lonely := filepath.Join(dir, "lonely")
	if err := syscall.Mkfifo(lonely, 0o644); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(dir, "target")
	link := filepath.Join(dir, "link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path string
		input      bool // the error is bad input
		fails      bool
	}{
		{"/dev/null", "/dev/null", false, false},
		{"a pipe with a reader", fifo, false, false},
		{"a symlink to a file", link, false, false},
		{"/dev/full", "/dev/full", false, true},
		{"a pipe nobody reads", lonely, false, true},
		{"a directory", dir, true, true},
		{"a missing directory", filepath.Join(dir, "missing", "x"), true, true},
		{"under a file", filepath.Join(file, "x"), true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := make(chan []byte, 1)
			if tt.path == fifo {
				go func() {
					f, err := os.Open(fifo)
					if err != nil {
						got <- nil
						return
					}
					b, _ := io.ReadAll(f)
					f.Close()
					got <- b
				}()
				// The reader must have the pipe open before the write: until
				// it has, the write fails at once (no reader).
				var err error
				for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
					if err = WriteFileAtomic(fifo, func(w io.Writer) error { _, err := io.WriteString(w, "go\n"); return err }); err == nil {
						break
					}
				}
				if err != nil {
					t.Fatalf("no write reached the pipe's reader: %v", err)
				}
				if b := <-got; string(b) != "go\n" {
					t.Errorf("the pipe's reader got %q, want %q", b, "go\n")
				}
				return
			}
			before, _ := os.Lstat(tt.path)
			err := WriteFileAtomic(tt.path, func(w io.Writer) error { _, err := io.WriteString(w, "go\n"); return err })
			if (err != nil) != tt.fails || errors.Is(err, inputerr.ErrInput) != tt.input {
				t.Fatalf("got %v, want failure %v, bad input %v", err, tt.fails, tt.input)
			}
			if after, err := os.Lstat(tt.path); before != nil && (err != nil || after.Mode().Type() != before.Mode().Type()) {
				t.Errorf("%s changed type: %v -> %v (%v)", tt.path, before.Mode().Type(), after.Mode().Type(), err)
			}
		})
	}
	if b, err := os.ReadFile(target); err != nil || string(b) != "go\n" {
		t.Errorf("the symlink's target holds %q, %v", b, err)
	}
}
