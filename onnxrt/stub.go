//go:build !onnxruntime

package onnxrt

import "fmt"

// Built tells whether this binary was built with ONNX Runtime (build tag
// onnxruntime); Available says whether its library loads.
const Built = false

// runtimeSession is never created without ONNX Runtime.
type runtimeSession struct{}

func loadRuntime() (library, version string, err error) {
	return "", "", fmt.Errorf("onnxrt: %w: strata was built without ONNX Runtime (build tag onnxruntime); "+
		"to get it, run `make deps && make build`", ErrUnavailable)
}

func openRuntime(source, Options) (*runtimeSession, []Info, []Info, error) {
	_, _, err := loadRuntime()
	return nil, nil, nil, err
}

func (*runtimeSession) run([]Tensor) ([]Tensor, error) { return nil, ErrUnavailable }

func (*runtimeSession) close() error { return nil }
