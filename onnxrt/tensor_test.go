package onnxrt

import (
	"slices"
	"testing"
)

// FromFloat64 converts to the input's element type: int64 truncates
// towards zero (token ids arrive as whole floats), float32 rounds; the
// shape is kept and xs is not aliased.
func TestFromFloat64(t *testing.T) {
	xs := []float64{1.9, -2.5, 3, 0.1}
	shape := []int64{2, 2}
	i := FromFloat64(Int64, shape, xs)
	if i.Type != Int64 || !slices.Equal(i.Int64, []int64{1, -2, 3, 0}) || i.Float32 != nil || !slices.Equal(i.Shape, shape) {
		t.Errorf("int64: %+v", i)
	}
	f := FromFloat64(Float32, shape, xs)
	if f.Type != Float32 || !slices.Equal(f.Float32, []float32{1.9, -2.5, 3, 0.1}) || f.Int64 != nil {
		t.Errorf("float32: %+v", f)
	}
	xs[0] = 100
	if f.Float32[0] != 1.9 || i.Int64[0] != 1 {
		t.Error("the tensor aliases xs")
	}
}
