package provenance

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/strata-ml/strata/internal/inputerr"
)

// TestHashFile: the hash is the SHA-256 of the content, a device is bad
// input, and a done context stops the read.
func TestHashFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.bin")
	content := make([]byte, 3<<20+17)
	for i := range content {
		content[i] = byte(i * 7)
	}
	if err := os.WriteFile(path, content, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := HashFile(context.Background(), path)
	want := sha256.Sum256(content)
	if err != nil || got.SHA256 != hex.EncodeToString(want[:]) || got.Path != path {
		t.Errorf("HashFile = %+v, %v, want sha256 %x", got, err, want)
	}
	zero := filepath.Join(dir, "zero")
	if err := os.Symlink("/dev/zero", zero); err != nil {
		t.Fatal(err)
	}
	if _, err := HashFile(context.Background(), zero); !errors.Is(err, inputerr.ErrInput) {
		t.Errorf("HashFile(/dev/zero): %v, want bad input", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := HashFile(ctx, path); !errors.Is(err, context.Canceled) {
		t.Errorf("HashFile with a cancelled context: %v, want context.Canceled", err)
	}
}
