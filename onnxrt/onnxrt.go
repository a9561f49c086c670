// Package onnxrt runs ONNX models in ONNX Runtime, the reference runtime
// every serving stack uses, so that strata can validate any architecture
// on the runtime the model will be served by.
//
// ONNX Runtime is an optional backend: it is compiled in with the build
// tag onnxruntime (cgo, through github.com/yalue/onnxruntime_go) and its
// shared library, libonnxruntime.so.1, is loaded when first needed.
// Without the tag every call returns an error wrapping ErrUnavailable
// that says how to get it (`make deps && make build`).
//
// The library is looked for, in this order:
//  1. the file named by $STRATA_ONNXRUNTIME_LIB (only that file, when set);
//  2. the path linked into the binary (`make build` links the one
//     `make deps` installs, /usr/local/lib/strata/lib/libonnxruntime.so.1);
//  3. lib/libonnxruntime.so.1 beside the executable's directory
//     (<dir of strata>/../lib/libonnxruntime.so.1);
//  4. libonnxruntime.so.1 through the dynamic loader's search path
//     (LD_LIBRARY_PATH, the ld.so cache).
//
// The library is loaded and its environment created once per process, on
// the first call of Available, Open or OpenFile; the outcome (the library
// or the error) is then fixed for the life of the process. Sessions run
// with one intra-op thread and sequential execution unless Options say
// otherwise, so the same model and inputs give the same outputs.
package onnxrt

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// Errors returned (wrapped) by this package; test with errors.Is.
var (
	// ErrUnavailable: ONNX Runtime cannot be used, because strata was built
	// without it or because its library was not found or did not load.
	ErrUnavailable = errors.New("ONNX Runtime unavailable")
	// ErrInvalidModel: ONNX Runtime refused the model bytes (not a model,
	// truncated, an unknown operator, inconsistent shapes, ...).
	ErrInvalidModel = errors.New("invalid model")
	// ErrInvalidInput: the tensors given to Run do not match the model's
	// inputs (count, element type, rank, fixed dimensions or data length).
	ErrInvalidInput = errors.New("invalid input")
	// ErrUnsupported: the model has an input or output of an element type
	// or rank this package does not exchange (see Tensor).
	ErrUnsupported = errors.New("unsupported tensor")
	// ErrClosed: the session was closed.
	ErrClosed = errors.New("session closed")
)

// Error is the error of an operation on a model. Its message reads like
//
//	onnxrt: model "cnn.onnx": run: invalid input: input 0 "x" float32[-1 1 8 8]: got shape [2 64] (rank 2), want rank 4
//
// Err wraps one of the sentinels above, ONNX Runtime's own error, or both.
type Error struct {
	Model string // the model's name (Options.Name, or the file for OpenFile)
	Op    string // "open", "run" or "close"
	Err   error
}

func (e *Error) Error() string {
	return fmt.Sprintf("onnxrt: model %q: %s: %v", e.Model, e.Op, e.Err)
}

// Unwrap returns Err, so that errors.Is finds the sentinel.
func (e *Error) Unwrap() error { return e.Err }

// LibraryEnv names the environment variable that, when set, is the only
// ONNX Runtime library this package loads.
const LibraryEnv = "STRATA_ONNXRUNTIME_LIB"

// libraryName is the library's soname, the name the loader searches for.
const libraryName = "libonnxruntime.so.1"

// defaultLibrary is the library linked in at build time: the Makefile sets
// it with -ldflags "-X github.com/strata-ml/strata/onnxrt.defaultLibrary=PATH"
// to the file `make deps` installs; this value is the same default, so a
// plain `go build -tags onnxruntime` finds it too.
var defaultLibrary = "/usr/local/lib/strata/lib/libonnxruntime.so.1"

// ElementType is a tensor's element type, numbered as ONNX's
// TensorProto.DataType.
type ElementType int32

// The element types ONNX defines that models commonly use. Only Float32
// and Int64 tensors are exchanged through Run.
const (
	Undefined ElementType = 0
	Float32   ElementType = 1
	Uint8     ElementType = 2
	Int8      ElementType = 3
	Int32     ElementType = 6
	Int64     ElementType = 7
	String    ElementType = 8
	Bool      ElementType = 9
	Float16   ElementType = 10
	Float64   ElementType = 11
	BFloat16  ElementType = 16
)

var elementNames = map[ElementType]string{
	Undefined: "undefined", Float32: "float32", Uint8: "uint8", Int8: "int8",
	Int32: "int32", Int64: "int64", String: "string", Bool: "bool",
	Float16: "float16", Float64: "float64", BFloat16: "bfloat16",
}

func (t ElementType) String() string {
	if s, ok := elementNames[t]; ok {
		return s
	}
	return fmt.Sprintf("onnx-type-%d", int32(t))
}

// Info describes one input or output of a model.
type Info struct {
	Name string
	// Type is the element type; Undefined for a value that is not a
	// tensor (a sequence, a map).
	Type ElementType
	// Shape has one entry per dimension, -1 for a dynamic one (a batch
	// axis, a sequence length); nil for a value that is not a tensor.
	Shape []int64
}

func (i Info) String() string {
	return fmt.Sprintf("%q %s%v", i.Name, i.Type, i.Shape)
}

func (i Info) clone() Info {
	i.Shape = append([]int64(nil), i.Shape...)
	return i
}

// Tensor is a dense row-major tensor of rank >= 1: Type says which of
// Float32 and Int64 holds its prod(Shape) elements; the other is nil.
type Tensor struct {
	Type    ElementType
	Shape   []int64
	Float32 []float32
	Int64   []int64
}

// NewFloat32 returns a float32 tensor of the given shape over data (not
// copied).
func NewFloat32(shape []int64, data []float32) Tensor {
	return Tensor{Type: Float32, Shape: shape, Float32: data}
}

// NewInt64 returns an int64 tensor of the given shape over data (not
// copied).
func NewInt64(shape []int64, data []int64) Tensor {
	return Tensor{Type: Int64, Shape: shape, Int64: data}
}

// FromFloat64 returns a tensor of element type typ (Int64, or Float32 for
// any other) and the given shape holding xs converted: truncated towards
// zero to int64, rounded to float32. xs is not kept.
func FromFloat64(typ ElementType, shape []int64, xs []float64) Tensor {
	if typ == Int64 {
		v := make([]int64, len(xs))
		for i, f := range xs {
			v[i] = int64(f)
		}
		return NewInt64(shape, v)
	}
	v := make([]float32, len(xs))
	for i, f := range xs {
		v[i] = float32(f)
	}
	return NewFloat32(shape, v)
}

// Len is the number of elements the tensor's data holds.
func (t Tensor) Len() int {
	switch t.Type {
	case Float32:
		return len(t.Float32)
	case Int64:
		return len(t.Int64)
	}
	return 0
}

// Options configure a session. The zero value is valid.
type Options struct {
	// Name names the model in errors (default "model"; OpenFile uses the
	// file's path).
	Name string
	// IntraOpThreads is the number of threads one operator may use
	// (default 1: the same inputs give the same bits; values < 1 mean 1).
	// Operators always run one after another (sequential execution).
	IntraOpThreads int
}

func (o Options) withDefaults() Options {
	if o.Name == "" {
		o.Name = "model"
	}
	if o.IntraOpThreads < 1 {
		o.IntraOpThreads = 1
	}
	return o
}

// Session is a model loaded into ONNX Runtime.
//
// Its methods are safe for concurrent use: ONNX Runtime allows concurrent
// runs of one session, and Close waits for the runs in progress (a Run
// after Close returns ErrClosed). Close releases the runtime's memory; an
// unclosed session is released only when the process exits.
type Session struct {
	name    string
	threads int
	inputs  []Info
	outputs []Info

	mu sync.RWMutex
	rt *runtimeSession // nil once closed
}

// Open loads a model from its serialized ONNX bytes. The bytes are not
// retained after Open returns. Errors wrap ErrUnavailable (no runtime) or
// are *Error wrapping ErrInvalidModel (the runtime refused the bytes). A
// model with external data needs OpenFile: given bytes, ONNX Runtime
// looks for the data files in the working directory.
func Open(model []byte, opts Options) (*Session, error) {
	opts = opts.withDefaults()
	if err := Available(); err != nil {
		return nil, err
	}
	if len(model) == 0 {
		return nil, &Error{opts.Name, "open", fmt.Errorf("%w: no bytes", ErrInvalidModel)}
	}
	return open(source{model: model}, opts)
}

// OpenFile loads the model file at path, named by path unless opts.Name
// is set. Unlike Open, it also loads tensors stored as external data in
// files beside the model (ONNX Runtime refuses locations outside the
// model's directory). Errors are as Open's, or wrap fs.ErrNotExist and
// the like when the file cannot be read.
func OpenFile(path string, opts Options) (*Session, error) {
	if opts.Name == "" {
		opts.Name = path
	}
	opts = opts.withDefaults()
	if err := Available(); err != nil {
		return nil, err
	}
	// A file that cannot be read is not an invalid model: say so first.
	f, err := os.Open(path)
	if err != nil {
		return nil, &Error{opts.Name, "open", err}
	}
	f.Close()
	return open(source{path: path}, opts)
}

// source is a model's serialized bytes or its file.
type source struct {
	model []byte
	path  string
}

func open(src source, opts Options) (*Session, error) {
	rt, inputs, outputs, err := openRuntime(src, opts)
	if err != nil {
		return nil, &Error{opts.Name, "open", err}
	}
	return &Session{name: opts.Name, threads: opts.IntraOpThreads,
		inputs: inputs, outputs: outputs, rt: rt}, nil
}

// Name is the model's name as Options gave it.
func (s *Session) Name() string { return s.name }

// Threads is the session's number of intra-op threads.
func (s *Session) Threads() int { return s.threads }

// Inputs describes the model's inputs, in the order Run takes them. The
// slice is the caller's.
func (s *Session) Inputs() []Info { return cloneInfos(s.inputs) }

// Outputs describes the model's outputs, in the order Run returns them.
// The slice is the caller's.
func (s *Session) Outputs() []Info { return cloneInfos(s.outputs) }

func cloneInfos(in []Info) []Info {
	out := make([]Info, len(in))
	for i, x := range in {
		out[i] = x.clone()
	}
	return out
}

// Run evaluates the model on inputs, one per model input in the order of
// Inputs, each of the input's element type and rank with every fixed
// dimension matched. It returns the outputs in the order of Outputs,
// newly allocated and owned by the caller. Run reads the inputs' data
// while it runs and keeps no reference to it afterwards; the caller must
// not modify it meanwhile. Errors are *Error wrapping ErrInvalidInput
// (inputs that do not fit the model), ErrUnsupported, ErrClosed or ONNX
// Runtime's error.
func (s *Session) Run(inputs []Tensor) ([]Tensor, error) {
	if err := s.check(inputs); err != nil {
		return nil, &Error{s.name, "run", err}
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.rt == nil {
		return nil, &Error{s.name, "run", ErrClosed}
	}
	out, err := s.rt.run(inputs)
	if err != nil {
		return nil, &Error{s.name, "run", err}
	}
	return out, nil
}

// Close releases the session. It waits for runs in progress; later calls
// to Run return ErrClosed, later calls to Close do nothing.
func (s *Session) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rt == nil {
		return nil
	}
	err := s.rt.close()
	s.rt = nil
	if err != nil {
		return &Error{s.name, "close", err}
	}
	return nil
}

// check validates inputs against the model's declared inputs, so that a
// mismatch is reported as bad input, naming the input and what was
// expected, before it reaches the runtime.
func (s *Session) check(inputs []Tensor) error {
	if len(inputs) != len(s.inputs) {
		return fmt.Errorf("%w: the model takes %d inputs %v, got %d",
			ErrInvalidInput, len(s.inputs), s.inputs, len(inputs))
	}
	for i, t := range inputs {
		if err := checkTensor(s.inputs[i], t); err != nil {
			return fmt.Errorf("%w: input %d %w", ErrInvalidInput, i, err)
		}
	}
	return nil
}

func checkTensor(want Info, t Tensor) error {
	if want.Type != Float32 && want.Type != Int64 {
		return fmt.Errorf("%s: %w: only float32 and int64 tensors are exchanged", want, ErrUnsupported)
	}
	if t.Type != want.Type {
		return fmt.Errorf("%s: got a %s tensor", want, t.Type)
	}
	if (t.Type == Float32 && t.Int64 != nil) || (t.Type == Int64 && t.Float32 != nil) {
		return fmt.Errorf("%s: a %s tensor must not carry data of the other type", want, t.Type)
	}
	if len(t.Shape) != len(want.Shape) || len(t.Shape) == 0 {
		return fmt.Errorf("%s: got shape %v (rank %d), want rank %d >= 1",
			want, t.Shape, len(t.Shape), len(want.Shape))
	}
	n := int64(1)
	for d, size := range t.Shape {
		if size < 0 || (want.Shape[d] >= 0 && size != want.Shape[d]) {
			return fmt.Errorf("%s: got shape %v: dimension %d is %d", want, t.Shape, d, size)
		}
		if size != 0 && n > math.MaxInt64/size {
			return fmt.Errorf("%s: got shape %v: too many elements", want, t.Shape)
		}
		n *= size
	}
	if n != int64(t.Len()) {
		return fmt.Errorf("%s: shape %v holds %d elements, the data %d", want, t.Shape, n, t.Len())
	}
	return nil
}

var runtimeState struct {
	once     sync.Once
	library  string
	version  string
	err      error
	attempts []string
}

// Available loads ONNX Runtime if that was not tried yet, and returns nil
// when models can be run, or an error wrapping ErrUnavailable that says
// what was tried and how to get the runtime.
func Available() error {
	runtimeState.once.Do(func() {
		runtimeState.library, runtimeState.version, runtimeState.err = loadRuntime()
	})
	return runtimeState.err
}

// Library returns the path of the ONNX Runtime library in use and its
// version, or "" and "" when Available fails.
func Library() (path, version string) {
	if Available() != nil {
		return "", ""
	}
	return runtimeState.library, runtimeState.version
}

// libraryCandidates lists the libraries to try, in order, given the
// environment's choice (env), the path linked in (linked) and the running
// executable (exe, "" when unknown). An explicit choice is the only
// candidate: when it fails to load, that is the error.
func libraryCandidates(env, linked, exe string) []string {
	if env != "" {
		return []string{env}
	}
	var c []string
	if linked != "" {
		c = append(c, linked)
	}
	if exe != "" {
		next := filepath.Join(filepath.Dir(exe), "..", "lib", libraryName)
		if next != filepath.Clean(linked) {
			c = append(c, next)
		}
	}
	return append(c, libraryName)
}

// unavailable is the error for a runtime that could not be loaded, with
// each attempt ("path: why") and the remedy.
func unavailable(attempts []string) error {
	return fmt.Errorf("onnxrt: %w: no ONNX Runtime library could be loaded (tried %s); "+
		"`make deps` installs it (then `make build`), or set %s to a libonnxruntime.so.1",
		ErrUnavailable, strings.Join(attempts, "; "), LibraryEnv)
}

// executable is os.Executable with symlinks resolved, or "".
func executable() string {
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	if r, err := filepath.EvalSymlinks(exe); err == nil {
		return r
	}
	return exe
}
