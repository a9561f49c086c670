package arrowio

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestWriteFileAtomic(t *testing.T) {
	errBoom := errors.New("boom")
	tests := []struct {
		name     string
		existing string // previous content of the target, "" for none
		write    func(w io.Writer) error
		wantErr  error
		want     string // content of the target afterwards, "" for absent
	}{
		{"new file", "", func(w io.Writer) error { _, err := io.WriteString(w, "hello"); return err }, nil, "hello"},
		{"replace", "old", func(w io.Writer) error { _, err := io.WriteString(w, "new"); return err }, nil, "new"},
		{"failing writer, no target", "", func(w io.Writer) error {
			_, _ = io.WriteString(w, "partial")
			return errBoom
		}, errBoom, ""},
		{"failing writer keeps old target", "old", func(w io.Writer) error {
			_, _ = io.WriteString(w, "partial")
			return errBoom
		}, errBoom, "old"},
		{"large write", "", func(w io.Writer) error {
			_, err := w.Write(make([]byte, 3<<20))
			return err
		}, nil, string(make([]byte, 3<<20))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "out.json")
			if tt.existing != "" {
				if err := os.WriteFile(path, []byte(tt.existing), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			err := WriteFileAtomic(path, tt.write)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("got error %v want %v", err, tt.wantErr)
			}
			got, rerr := os.ReadFile(path)
			switch {
			case tt.want == "" && !errors.Is(rerr, os.ErrNotExist):
				t.Errorf("target exists (%d bytes, err %v), want absent", len(got), rerr)
			case tt.want != "" && string(got) != tt.want:
				t.Errorf("target holds %d bytes, want %d", len(got), len(tt.want))
			}
			var wantFiles []string
			if tt.want != "" {
				wantFiles = []string{"out.json"}
			}
			if files := listDir(t, dir); !slices.Equal(files, wantFiles) {
				t.Errorf("directory holds %q, want %q (no temporary file left)", files, wantFiles)
			}
		})
	}
}

func TestWriteFileAtomicPanicCleansUp(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out")
	func() {
		defer func() {
			if recover() == nil {
				t.Error("panic did not propagate")
			}
		}()
		_ = WriteFileAtomic(path, func(w io.Writer) error { panic("writer bug") })
	}()
	if files := listDir(t, dir); len(files) != 0 {
		t.Errorf("directory holds %q after a panicking writer, want nothing", files)
	}
}

func TestWriteFileAtomicMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out")
	if err := WriteFileAtomic(path, func(w io.Writer) error { return nil }); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	// 0644 less the umask: at least owner read/write, never executable.
	if m := st.Mode().Perm(); m&0o600 != 0o600 || m&0o111 != 0 {
		t.Errorf("mode %v, want 0644 less the umask", m)
	}
}

func TestWriteFileAtomicMissingDir(t *testing.T) {
	path := filepath.Join(t.TempDir(), "no", "such", "dir", "out")
	if err := WriteFileAtomic(path, func(w io.Writer) error { return nil }); err == nil {
		t.Fatal("got no error for a missing directory")
	}
}
