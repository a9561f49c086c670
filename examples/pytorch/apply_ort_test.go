//go:build onnxruntime

package pytorch_test

import (
	"encoding/binary"
	"math"
	"os"
	"testing"

	"github.com/strata-ml/strata/onnxrt"
)

// TestApplyExportInONNXRuntime runs the torch.onnx.export of each applied
// module (TestApply) in ONNX Runtime on the evaluation input: its logits
// are PyTorch's to 1e-5 relative, so the structured candidate a team's
// trainer exports is the model strata validate will run.
func TestApplyExportInONNXRuntime(t *testing.T) {
	if err := onnxrt.Available(); err != nil {
		t.Fatal(err)
	}
	for name, a := range runApply(t) {
		t.Run(name, func(t *testing.T) {
			s, err := onnxrt.OpenFile(a.ONNX, onnxrt.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			y, err := s.Run([]onnxrt.Tensor{onnxrt.NewFloat32(a.Input.Shape, a.Input.Float32)})
			if err != nil {
				t.Fatal(err)
			}
			raw, err := os.ReadFile(a.Logits)
			if err != nil {
				t.Fatal(err)
			}
			want := make([]float32, len(raw)/4)
			for i := range want {
				want[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
			}
			got := y[0].Float32
			var d, m float64
			for i := range want {
				d = max(d, math.Abs(float64(got[i])-float64(want[i])))
				m = max(m, math.Abs(float64(want[i])))
			}
			if len(got) != len(want) || d/m > 1e-5 {
				t.Errorf("ONNX Runtime's logits of the exported model differ from PyTorch's by %.3g relative (%d values, want %d)", d/m, len(got), len(want))
			}
		})
	}
}
