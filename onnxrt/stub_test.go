//go:build !onnxruntime

package onnxrt

import (
	"errors"
	"strings"
	"testing"
)

// TestStub checks that, built without the onnxruntime tag, every entry
// point fails with ErrUnavailable and says how to get ONNX Runtime.
func TestStub(t *testing.T) {
	if Built {
		t.Fatal("Built is true without the onnxruntime tag")
	}
	_, err1 := Open([]byte("any"), Options{Name: "m.onnx"})
	_, err2 := OpenFile("testdata/does-not-matter.onnx", Options{})
	for i, err := range []error{Available(), err1, err2} {
		if !errors.Is(err, ErrUnavailable) {
			t.Errorf("call %d: got %v, want ErrUnavailable", i, err)
			continue
		}
		for _, want := range []string{"built without ONNX Runtime", "make deps && make build"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("call %d: %q does not say %q", i, err, want)
			}
		}
	}
	if path, version := Library(); path != "" || version != "" {
		t.Errorf("Library() = %q, %q without the runtime", path, version)
	}
}
