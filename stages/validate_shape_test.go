package stages

import (
	"slices"
	"strings"
	"testing"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/onnxrt"
)

// TestRowShape: a row of the data becomes one example of an ONNX input:
// the input's fixed shape when the width fits, a dynamic dimension from
// the data's fixed_shape_tensor shape or, when it is the only one, from
// the width; anything else is refused with what was expected.
func TestRowShape(t *testing.T) {
	in := func(dims ...int64) onnxrt.Info {
		return onnxrt.Info{Name: "x", Type: onnxrt.Float32, Shape: append([]int64{-1}, dims...)}
	}
	tests := []struct {
		name  string
		in    onnxrt.Info
		d     int
		shape []int
		want  []int64
		err   string
	}{
		{"flat", in(64), 64, nil, []int64{64}, ""},
		{"image from a flat row", in(1, 8, 8), 64, nil, []int64{1, 8, 8}, ""},
		{"sequence length from the width", in(-1, 8), 64, nil, []int64{8, 8}, ""},
		{"sequence length from the tensor column", in(-1, -1), 64, []int{16, 4}, []int64{16, 4}, ""},
		{"tensor column disagrees", in(-1, 8), 64, []int{16, 4}, nil, "wants [-1 8]"},
		{"width does not fit", in(1, 8, 8), 60, nil, nil, "the data has 60 values per row"},
		{"two dynamic dimensions, no shape", in(-1, -1), 64, nil, nil, "fixed_shape_tensor"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := rowShape(tt.in, &arrowio.Dataset{D: tt.d, Shape: tt.shape})
			switch {
			case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
				t.Errorf("err = %v, want one containing %q", err, tt.err)
			case tt.err == "" && (err != nil || !slices.Equal(got, tt.want)):
				t.Errorf("got %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}
