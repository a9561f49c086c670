package dirlock

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestLock: a held lock refuses a second one (from this process too, as
// two runs of a plugin would ask), Unlock frees it and removes the lock
// file, and Free tells a free directory from a held one.
func TestLock(t *testing.T) {
	dir := t.TempDir()
	l, err := Lock(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Lock(dir); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Lock: %v, want ErrLocked", err)
	}
	if Free(dir) {
		t.Error("Free of a held directory")
	}
	l.Unlock()
	l.Unlock() // idempotent
	if _, err := os.Stat(filepath.Join(dir, Name)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("lock file after Unlock: %v", err)
	}
	if !Free(dir) {
		t.Error("Free after Unlock is false")
	}
	l2, err := Lock(dir)
	if err != nil {
		t.Fatalf("Lock after Unlock: %v", err)
	}
	l2.Unlock()
}
