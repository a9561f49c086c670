//go:build onnxruntime

package onnxrt

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	ort "github.com/yalue/onnxruntime_go"
)

// Built tells whether this binary was built with ONNX Runtime (build tag
// onnxruntime); Available says whether its library loads.
const Built = true

// runtimeSession is an ONNX Runtime session. The binding's sessions may be
// run concurrently; Session's lock keeps close from overlapping a run.
type runtimeSession struct {
	s       *ort.DynamicAdvancedSession
	outputs int
}

// loadRuntime loads the first library of libraryCandidates that loads and
// creates the process's ONNX Runtime environment. Called once per process.
func loadRuntime() (library, version string, err error) {
	var attempts []string
	for _, path := range libraryCandidates(os.Getenv(LibraryEnv), defaultLibrary, executable()) {
		if filepath.IsAbs(path) {
			if _, err := os.Stat(path); err != nil {
				attempts = append(attempts, fmt.Sprintf("%s: %v", path, errors.Unwrap(err)))
				continue
			}
		}
		ort.SetSharedLibraryPath(path)
		// Warnings (unused initializers and the like) would go to stderr
		// on every session: only errors are logged.
		if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
			attempts = append(attempts, fmt.Sprintf("%s: %v", path, err))
			continue
		}
		return path, ort.GetVersion(), nil
	}
	return "", "", unavailable(attempts)
}

// openRuntime creates the session and reads its inputs and outputs. Errors
// of the runtime about the model wrap ErrInvalidModel.
func openRuntime(src source, opts Options) (*runtimeSession, []Info, []Info, error) {
	so, err := sessionOptions(opts)
	if err != nil {
		return nil, nil, nil, err
	}
	defer so.Destroy()
	// The binding reads names, types and shapes only from a session of its
	// own: the model is loaded twice.
	var ins, outs []ort.InputOutputInfo
	if src.path != "" {
		ins, outs, err = ort.GetInputOutputInfoWithOptions(src.path, so)
	} else {
		ins, outs, err = ort.GetInputOutputInfoWithONNXData(src.model)
	}
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%w: %v", ErrInvalidModel, err)
	}
	var s *ort.DynamicAdvancedSession
	if src.path != "" {
		s, err = ort.NewDynamicAdvancedSession(src.path, names(ins), names(outs), so)
	} else {
		s, err = ort.NewDynamicAdvancedSessionWithONNXData(src.model, names(ins), names(outs), so)
	}
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%w: %v", ErrInvalidModel, err)
	}
	return &runtimeSession{s: s, outputs: len(outs)}, infos(ins), infos(outs), nil
}

func sessionOptions(opts Options) (*ort.SessionOptions, error) {
	so, err := ort.NewSessionOptions()
	if err != nil {
		return nil, err
	}
	for _, set := range []func() error{
		func() error { return so.SetIntraOpNumThreads(opts.IntraOpThreads) },
		func() error { return so.SetInterOpNumThreads(1) },
		func() error { return so.SetExecutionMode(ort.ExecutionModeSequential) },
	} {
		if err := set(); err != nil {
			so.Destroy()
			return nil, fmt.Errorf("session options: %w", err)
		}
	}
	return so, nil
}

func names(infos []ort.InputOutputInfo) []string {
	n := make([]string, len(infos))
	for i, x := range infos {
		n[i] = x.Name
	}
	return n
}

func infos(in []ort.InputOutputInfo) []Info {
	out := make([]Info, len(in))
	for i, x := range in {
		out[i] = Info{Name: x.Name}
		if x.OrtValueType == ort.ONNXTypeTensor {
			out[i].Type = ElementType(x.DataType)
			out[i].Shape = append([]int64{}, x.Dimensions...)
		}
	}
	return out
}

// run wraps the inputs (checked by Session.check) without copying them,
// runs the session and hands the outputs' data to the caller.
func (r *runtimeSession) run(inputs []Tensor) ([]Tensor, error) {
	in := make([]ort.Value, 0, len(inputs))
	defer func() { destroy(in) }()
	for _, t := range inputs {
		v, err := value(t)
		if err != nil {
			return nil, err
		}
		in = append(in, v)
	}
	out := make([]ort.Value, r.outputs)
	defer destroy(out)
	if err := r.s.Run(in, out); err != nil {
		return nil, err
	}
	res := make([]Tensor, len(out))
	for i, v := range out {
		t, err := tensor(v)
		if err != nil {
			return nil, fmt.Errorf("output %d: %w", i, err)
		}
		res[i] = t
	}
	return res, nil
}

func (r *runtimeSession) close() error {
	return r.s.Destroy()
}

func value(t Tensor) (ort.Value, error) {
	shape := ort.NewShape(t.Shape...)
	if t.Type == Int64 {
		return ort.NewTensor(shape, t.Int64)
	}
	return ort.NewTensor(shape, t.Float32)
}

// tensor converts an output value. The binding has already copied the
// runtime's buffer into a Go slice that the value merely points at, so
// the slice is handed over as it is and outlives the value's Destroy.
func tensor(v ort.Value) (Tensor, error) {
	switch x := v.(type) {
	case *ort.Tensor[float32]:
		return NewFloat32([]int64(x.GetShape()), x.GetData()), nil
	case *ort.Tensor[int64]:
		return NewInt64([]int64(x.GetShape()), x.GetData()), nil
	}
	return Tensor{}, fmt.Errorf("%w: a %s value of element type %s: only float32 and int64 tensors are exchanged",
		ErrUnsupported, v.GetONNXType(), ElementType(v.DataType()))
}

func destroy(vs []ort.Value) {
	for _, v := range vs {
		if v != nil {
			v.Destroy()
		}
	}
}
