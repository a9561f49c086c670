//go:build !onnxruntime

package stages

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/validation"
)

// TestValidateONNXWithoutRuntime: a binary built without ONNX Runtime
// refuses an ONNX model as bad input that says how to get the runtime,
// and writes nothing.
func TestValidateONNXWithoutRuntime(t *testing.T) {
	dir := t.TempDir()
	model := filepath.Join("..", "arrowio", "onnx", "testdata", "gemm_transb1.onnx")
	data := filepath.Join(dir, "data.arrow")
	if err := arrowio.WriteDataset(data, &arrowio.Dataset{N: 2, D: 4, X: make([]float64, 8), Y: []float64{0, 1}}); err != nil {
		t.Fatal(err)
	}
	cfg := validation.DefaultConfig()
	cfg.Baseline, cfg.Candidate, cfg.Data, cfg.Out = model, model, data, filepath.Join(dir, "val")
	_, err := Validate(context.Background(), cfg)
	if !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), "make deps && make build") {
		t.Errorf("err = %v, want bad input saying how to get ONNX Runtime", err)
	}
	if got := dirEntries(t, cfg.Out); got != nil {
		t.Errorf("wrote %v", got)
	}
}
