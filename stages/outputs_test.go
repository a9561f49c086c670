package stages

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestClaimOutput: what no retry can change is bad input found before
// the run, another run's directory is refused, and a run that wrote
// nothing leaves no directory behind.
func TestClaimOutput(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	held := filepath.Join(dir, "held")
	h, err := claimOutput("finetune", "out", held)
	if err != nil {
		t.Fatal(err)
	}
	defer h.release()
	tests := []struct {
		name, dir, want string
	}{
		{"a file", file, "finetune: out " + file + ": is a file, want a directory"},
		{"under a file", filepath.Join(file, "sub"), "not a directory"},
		{"held by another run", held, "another run is writing into it"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := claimOutput("finetune", "out", tt.dir)
			if err == nil {
				o.release()
				t.Fatal("claimed")
			}
			if !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want a bad-input error containing %q", err, tt.want)
			}
		})
	}
	deep := filepath.Join(dir, "a", "b", "c")
	o, err := claimOutput("convert", "out", deep)
	if err != nil {
		t.Fatal(err)
	}
	o.release()
	if _, err := os.Stat(filepath.Join(dir, "a")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a released claim that wrote nothing left %s/a: %v", dir, err)
	}
}

// TestWriteOutputsRemovesStaleAlternatives: a dense copy of another
// format from an earlier run into the same directory does not outlive a
// run that wrote its own.
func TestWriteOutputsRemovesStaleAlternatives(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, "model.dense.safetensors")
	keep := filepath.Join(dir, "notes.txt")
	for _, p := range []string{stale, keep} {
		if err := os.WriteFile(p, []byte("old"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	err := writeOutputs(dir, func(staging string) error {
		return writeFileAtomic(filepath.Join(staging, "model.dense.arrow"), []byte("new"))
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale %s: %v, want removed", stale, err)
	}
	for _, p := range []string{keep, filepath.Join(dir, "model.dense.arrow")} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
}
