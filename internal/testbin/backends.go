package testbin

import (
	"slices"
	"strings"
)

// backendTags are the build tags of the optional backends the test binary
// was built with (openblas, fftw, onnxruntime; set by the backend_*.go
// files), and backendLDFlags the -X flags they need: the strata binary is
// built with the same backends as the tests that run it, so a test under
// -tags onnxruntime runs a binary whose validate has ONNX Runtime, and a
// numerical comparison between the test's process and the binary compares
// one backend with itself.
var (
	backendTags    []string
	backendLDFlags []func() string
)

// buildFlags returns the go build flags of the backends: -tags and
// -ldflags, or nothing.
func buildFlags() []string {
	var flags []string
	if len(backendTags) > 0 {
		tags := slices.Sorted(slices.Values(backendTags))
		flags = append(flags, "-tags", strings.Join(tags, ","))
	}
	var ld []string
	for _, f := range backendLDFlags {
		if s := f(); s != "" {
			ld = append(ld, s)
		}
	}
	if len(ld) > 0 {
		flags = append(flags, "-ldflags", strings.Join(ld, " "))
	}
	return flags
}
