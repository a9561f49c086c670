package inputfile

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-ml/strata/internal/inputerr"
)

// specialFiles returns, in dir, a path of every kind of file an input
// must not be: a directory, a symlink to /dev/zero and to /dev/urandom,
// a named pipe with no writer, a socket, a path that does not exist.
func specialFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	paths := map[string]string{
		"directory": filepath.Join(dir, "dir"),
		"zero":      filepath.Join(dir, "zero"),
		"urandom":   filepath.Join(dir, "urandom"),
		"fifo":      filepath.Join(dir, "fifo"),
		"socket":    filepath.Join(dir, "sock"),
		"missing":   filepath.Join(dir, "missing"),
	}
	if err := os.Mkdir(paths["directory"], 0o755); err != nil {
		t.Fatal(err)
	}
	for _, dev := range []string{"zero", "urandom"} {
		if err := os.Symlink("/dev/"+dev, paths[dev]); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Mkfifo(paths["fifo"], 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", paths["socket"])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return paths
}

// TestOpenRefusesSpecialFiles: every non-regular path is bad input naming
// the path, at once (a pipe with no writer does not block the open).
func TestOpenRefusesSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	want := map[string]string{
		"directory": "is a directory", "zero": "character device", "urandom": "character device",
		"fifo": "named pipe", "socket": "no such device or address", "missing": "no such file",
	}
	for name, path := range specialFiles(t, dir) {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			f, _, err := Open(path)
			if err == nil {
				f.Close()
				t.Fatalf("Open(%s) succeeded", path)
			}
			if time.Since(start) > time.Second {
				t.Errorf("Open took %v", time.Since(start))
			}
			if !errors.Is(err, inputerr.ErrInput) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), want[name]) {
				t.Errorf("Open(%s): %v, want a bad-input error naming the path and %q", name, err, want[name])
			}
		})
	}
}

// TestReadFile reads a regular file (and one through a symlink) whole and
// refuses one over its limit before reading it.
func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(path, []byte("version: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.yaml")
	if err := os.Symlink(path, link); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path string
		limit      int64
		want       string
		wantErr    string
	}{
		{"fits", path, 11, "version: 1\n", ""},
		{"symlink to a file", link, 0, "version: 1\n", ""},
		{"over the limit", path, 10, "", "11 bytes is over the limit of 10 bytes for a config file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := ReadFile(tt.path, tt.limit, "config file")
			if tt.wantErr != "" {
				if !errors.Is(err, inputerr.ErrInput) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, want a bad-input error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || string(b) != tt.want {
				t.Fatalf("got %q, %v, want %q", b, err, tt.want)
			}
		})
	}
}
