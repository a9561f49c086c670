package onnxrt

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestLibraryCandidates(t *testing.T) {
	tests := []struct {
		name             string
		env, linked, exe string
		want             []string
	}{
		{"env is the only choice", "/opt/ort/libonnxruntime.so.1", "/usr/local/lib/strata/lib/libonnxruntime.so.1", "/usr/bin/strata",
			[]string{"/opt/ort/libonnxruntime.so.1"}},
		{"linked, beside the executable, the loader", "", "/usr/local/lib/strata/lib/libonnxruntime.so.1", "/opt/strata/bin/strata",
			[]string{"/usr/local/lib/strata/lib/libonnxruntime.so.1", "/opt/strata/lib/libonnxruntime.so.1", "libonnxruntime.so.1"}},
		{"the executable beside the linked library is tried once", "", "/usr/local/lib/strata/lib/libonnxruntime.so.1", "/usr/local/lib/strata/bin/strata",
			[]string{"/usr/local/lib/strata/lib/libonnxruntime.so.1", "libonnxruntime.so.1"}},
		{"nothing linked, executable unknown", "", "", "",
			[]string{"libonnxruntime.so.1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := libraryCandidates(tt.env, tt.linked, tt.exe); !slices.Equal(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// TestCheckTensor checks the validation Run does before the runtime sees
// the inputs: each mismatch is bad input and says what was expected.
func TestCheckTensor(t *testing.T) {
	img := Info{Name: "x", Type: Float32, Shape: []int64{-1, 1, 8, 8}}
	ids := Info{Name: "ids", Type: Int64, Shape: []int64{-1, 64}}
	tests := []struct {
		name    string
		info    Info
		in      Tensor
		wantErr string // "" for valid
	}{
		{"valid, any batch", img, NewFloat32([]int64{3, 1, 8, 8}, make([]float32, 192)), ""},
		{"valid, empty batch", img, NewFloat32([]int64{0, 1, 8, 8}, nil), ""},
		{"valid int64", ids, NewInt64([]int64{2, 64}, make([]int64, 128)), ""},
		{"wrong type", img, NewInt64([]int64{3, 1, 8, 8}, make([]int64, 192)), "got a int64 tensor"},
		{"wrong rank", img, NewFloat32([]int64{3, 64}, make([]float32, 192)), "want rank 4"},
		{"wrong fixed dimension", img, NewFloat32([]int64{3, 1, 8, 9}, make([]float32, 216)), "dimension 3 is 9"},
		{"negative dimension", img, NewFloat32([]int64{-3, 1, 8, 8}, nil), "dimension 0 is -3"},
		{"short data", img, NewFloat32([]int64{3, 1, 8, 8}, make([]float32, 191)), "holds 192 elements, the data 191"},
		{"overflowing shape", ids, NewInt64([]int64{1 << 62, 64}, nil), "too many elements"},
		{"both data slices", ids, Tensor{Type: Int64, Shape: []int64{1, 64}, Int64: make([]int64, 64), Float32: []float32{}}, "must not carry"},
		{"rank 0", Info{Name: "s", Type: Float32, Shape: []int64{}}, NewFloat32([]int64{}, []float32{1}), "want rank 0 >= 1"},
		{"unsupported type", Info{Name: "m", Type: Bool, Shape: []int64{2}}, Tensor{Type: Bool, Shape: []int64{2}}, "unsupported tensor"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkTensor(tt.info, tt.in)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("unexpected error %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.info.Name):
				t.Fatalf("error %q does not name the input %q", err, tt.info.Name)
			}
		})
	}
}

func TestErrorMessage(t *testing.T) {
	err := &Error{Model: "cnn.onnx", Op: "run", Err: ErrClosed}
	if got, want := err.Error(), `onnxrt: model "cnn.onnx": run: session closed`; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if !errors.Is(err, ErrClosed) {
		t.Error("errors.Is(err, ErrClosed) = false")
	}
}
