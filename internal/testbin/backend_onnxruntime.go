//go:build onnxruntime

package testbin

import "github.com/strata-ml/strata/onnxrt"

// The binary links the ONNX Runtime library the test process loaded as its
// default (the Makefile links the one `make deps` installed into the test
// binary the same way), so both run the same library whatever the
// environment says.
func init() {
	backendTags = append(backendTags, "onnxruntime")
	backendLDFlags = append(backendLDFlags, func() string {
		path, _ := onnxrt.Library()
		if path == "" {
			return ""
		}
		return "-X github.com/strata-ml/strata/onnxrt.defaultLibrary=" + path
	})
}
