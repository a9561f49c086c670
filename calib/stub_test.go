//go:build !onnxruntime

package calib

import (
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/strata-ml/strata/arrowio/onnx"
	"github.com/strata-ml/strata/internal/inputerr"
	"github.com/strata-ml/strata/onnxrt"
)

// Without ONNX Runtime an ONNX model cannot be calibrated: the error says
// so and is bad input (a retry does not help), not a crash.
func TestONNXWithoutRuntime(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	ex := randomExamples(rng, 3, 4, 2)
	m := &onnx.Model{File: "m.onnx"}
	_, err := NewONNX(m, nil, Set{Fit: ex, Held: ex})
	if !errors.Is(err, onnxrt.ErrUnavailable) || !errors.Is(err, inputerr.ErrInput) {
		t.Errorf("got %v, want ErrUnavailable marked as bad input", err)
	}
}
