//go:build onnxruntime

package onnxrt

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/strata-ml/strata/internal/testmodels"
)

// A child process of TestLibraryDiscovery reports which library it loads
// and exits: the library is loaded once per process, so each discovery
// case needs a process of its own. onnxrtTestLinked stands for the path
// the Makefile links in.
func TestMain(m *testing.M) {
	if os.Getenv("ONNXRT_TEST_CHILD") == "1" {
		if linked, ok := os.LookupEnv("ONNXRT_TEST_LINKED"); ok {
			defaultLibrary = linked
		}
		if err := Available(); err != nil {
			fmt.Printf("ERROR=%v\n", err)
		} else {
			path, _ := Library()
			fmt.Printf("LIBRARY=%s\n", path)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func mustAvailable(t testing.TB) {
	t.Helper()
	if err := Available(); err != nil {
		t.Fatalf("%v", err)
	}
}

// input is the model's evaluation rows as a tensor.
func input(m *testmodels.Model) Tensor {
	if m.Input.DType == "int64" {
		return NewInt64(m.Input.Shape, m.Input.Int64)
	}
	return NewFloat32(m.Input.Shape, m.Input.Float32)
}

// relDiff is max |got - want| / max |want|: the error relative to the
// scale of the reference, which stays meaningful where single elements
// are near zero.
func relDiff(got, want []float32) float64 {
	var diff, scale float64
	for i := range want {
		diff = max(diff, math.Abs(float64(got[i])-float64(want[i])))
		scale = max(scale, math.Abs(float64(want[i])))
	}
	return diff / scale
}

// TestModelsAgreeWithPyTorch runs every test model in ONNX Runtime on
// the evaluation rows and checks its logits against PyTorch's to 1e-5
// relative, the accuracy exactly and the loss to 1e-5; then the first 7
// rows alone (the batch axis is dynamic) against the same rows.
func TestModelsAgreeWithPyTorch(t *testing.T) {
	mustAvailable(t)
	set := testmodels.Build(t)
	for _, m := range set.Models() {
		t.Run(m.Name, func(t *testing.T) {
			s, err := OpenFile(m.ONNX, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			in := input(m)
			wantIn := Info{Name: "x", Type: in.Type, Shape: append([]int64{-1}, in.Shape[1:]...)}
			wantOut := Info{Name: "logits", Type: Float32, Shape: []int64{-1, 10}}
			if got := s.Inputs(); len(got) != 1 || got[0].String() != wantIn.String() {
				t.Errorf("inputs %v, want [%v]", got, wantIn)
			}
			if got := s.Outputs(); len(got) != 1 || got[0].String() != wantOut.String() {
				t.Errorf("outputs %v, want [%v]", got, wantOut)
			}
			out, err := s.Run([]Tensor{in})
			if err != nil {
				t.Fatal(err)
			}
			logits := out[0]
			if !slices.Equal(logits.Shape, m.Logits.Shape) {
				t.Fatalf("logits shape %v, want %v", logits.Shape, m.Logits.Shape)
			}
			d := relDiff(logits.Float32, m.Logits.Float32)
			if d > 1e-5 {
				t.Errorf("logits differ from PyTorch's by %.3g relative, want <= 1e-5", d)
			}
			t.Logf("logits within %.2g of PyTorch's (relative)", d)
			acc, loss := testmodels.Metrics(logits.Float32, set.EvalY.Int64, set.Classes)
			if acc != m.Accuracy {
				t.Errorf("accuracy %v, PyTorch %v", acc, m.Accuracy)
			}
			if math.Abs(loss-m.Loss) > 1e-5*m.Loss {
				t.Errorf("loss %.9g, PyTorch %.9g", loss, m.Loss)
			}

			const rows = 7
			part := in
			part.Shape = append([]int64{rows}, in.Shape[1:]...)
			per := in.Len() / int(in.Shape[0])
			part.Float32, part.Int64 = nil, nil
			if in.Type == Int64 {
				part.Int64 = in.Int64[:rows*per]
			} else {
				part.Float32 = in.Float32[:rows*per]
			}
			few, err := s.Run([]Tensor{part})
			if err != nil {
				t.Fatal(err)
			}
			if d := relDiff(few[0].Float32, m.Logits.Float32[:rows*10]); len(few[0].Float32) != rows*10 || d > 1e-5 {
				t.Errorf("%d rows: %d logits, %.3g relative from PyTorch's", rows, len(few[0].Float32), d)
			}
		})
	}
}

// TestPretrained runs the real pretrained models of a registry package
// (the wake-word MLP, the speech-embedding CNN, the melspectrogram front
// end) and checks their outputs against a torch interpreter of their
// operators to 1e-5 relative.
func TestPretrained(t *testing.T) {
	mustAvailable(t)
	set := testmodels.Build(t)
	for _, p := range set.Pretrained(t) {
		t.Run(p.Name, func(t *testing.T) {
			s, err := OpenFile(p.Path, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			out, err := s.Run([]Tensor{NewFloat32(p.Input.Shape, p.Input.Float32)})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(out[0].Shape, p.Output.Shape) {
				t.Fatalf("output shape %v, want %v", out[0].Shape, p.Output.Shape)
			}
			d := relDiff(out[0].Float32, p.Output.Float32)
			if d > 1e-5 {
				t.Errorf("output differs from the torch interpreter's by %.3g relative, want <= 1e-5", d)
			}
			t.Logf("output within %.2g of the torch interpreter's (relative)", d)
		})
	}
}

// TestExternalData checks that OpenFile loads a model whose initializers
// are in an external data file beside it (giving the MLP's logits), and
// that Open, which has only the bytes, refuses it as an invalid model.
func TestExternalData(t *testing.T) {
	mustAvailable(t)
	set := testmodels.Build(t)
	s, err := OpenFile(set.MLPExternal, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out, err := s.Run([]Tensor{input(set.MLP)})
	if err != nil {
		t.Fatal(err)
	}
	if d := relDiff(out[0].Float32, set.MLP.Logits.Float32); d > 1e-5 {
		t.Errorf("logits differ from PyTorch's by %.3g relative", d)
	}
	b, err := os.ReadFile(set.MLPExternal)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(b, Options{Name: "ext"}); !errors.Is(err, ErrInvalidModel) {
		t.Errorf("Open of a model with external data: %v, want ErrInvalidModel", err)
	}
	if _, err := OpenFile(filepath.Join(t.TempDir(), "none.onnx"), Options{}); !errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrInvalidModel) {
		t.Errorf("OpenFile of a missing file: %v, want fs.ErrNotExist", err)
	}
}

// TestBadModels checks that bytes ONNX Runtime cannot load give an error
// that wraps ErrInvalidModel and names the model, not a crash.
func TestBadModels(t *testing.T) {
	mustAvailable(t)
	set := testmodels.Build(t)
	good, err := os.ReadFile(set.CNN.ONNX)
	if err != nil {
		t.Fatal(err)
	}
	noise := make([]byte, 4096)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range noise {
		noise[i] = byte(rng.Uint32())
	}
	tests := []struct {
		name  string
		model []byte
	}{
		{"empty", nil},
		{"text", []byte("this is not an ONNX model")},
		{"random bytes", noise},
		{"truncated", good[:len(good)/2]},
		{"last byte cut", good[:len(good)-1]},
		{"unknown operator", bytes.ReplaceAll(good, []byte("Relu"), []byte("Relx"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Open(tt.model, Options{Name: "bad-" + tt.name})
			if err == nil {
				s.Close()
				t.Fatal("no error")
			}
			var e *Error
			if !errors.Is(err, ErrInvalidModel) || !errors.As(err, &e) || e.Model != "bad-"+tt.name || e.Op != "open" {
				t.Fatalf("got %v, want an *Error for model %q wrapping ErrInvalidModel", err, "bad-"+tt.name)
			}
		})
	}
}

// TestBadInputs checks that inputs that do not fit the model are refused
// before the runtime sees them, naming the input.
func TestBadInputs(t *testing.T) {
	mustAvailable(t)
	set := testmodels.Build(t)
	s, err := OpenFile(set.CNN.ONNX, Options{Name: "cnn"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	tests := []struct {
		name string
		in   []Tensor
	}{
		{"no input", nil},
		{"two inputs", []Tensor{NewFloat32([]int64{1, 1, 8, 8}, make([]float32, 64)), NewFloat32([]int64{1}, []float32{0})}},
		{"int64", []Tensor{NewInt64([]int64{1, 1, 8, 8}, make([]int64, 64))}},
		{"flat rows", []Tensor{NewFloat32([]int64{1, 64}, make([]float32, 64))}},
		{"9x9 image", []Tensor{NewFloat32([]int64{1, 1, 9, 9}, make([]float32, 81))}},
		{"short data", []Tensor{NewFloat32([]int64{2, 1, 8, 8}, make([]float32, 64))}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Run(tt.in)
			if !errors.Is(err, ErrInvalidInput) || !strings.Contains(err.Error(), `"x"`) || !strings.Contains(err.Error(), `"cnn"`) {
				t.Fatalf("got %v, want ErrInvalidInput naming the model and input \"x\"", err)
			}
		})
	}
}

// TestConcurrentRuns runs one session from several goroutines and checks
// that every run gives the serial run's bits; then Close, after which Run
// fails with ErrClosed. A second session with 2 intra-op threads agrees
// to 1e-6 relative.
func TestConcurrentRuns(t *testing.T) {
	mustAvailable(t)
	m := testmodels.Build(t).Transformer
	s, err := OpenFile(m.ONNX, Options{})
	if err != nil {
		t.Fatal(err)
	}
	in := []Tensor{input(m)}
	ref, err := s.Run(in)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			for range 3 {
				out, err := s.Run(in)
				if err == nil && !slices.Equal(out[0].Float32, ref[0].Float32) {
					err = errors.New("a concurrent run differs from the serial one")
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Run(in); !errors.Is(err, ErrClosed) {
		t.Errorf("Run after Close: %v, want ErrClosed", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}

	s2, err := OpenFile(m.ONNX, Options{IntraOpThreads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	out, err := s2.Run(in)
	if err != nil {
		t.Fatal(err)
	}
	if d := relDiff(out[0].Float32, ref[0].Float32); s2.Threads() != 2 || d > 1e-6 {
		t.Errorf("2 threads: %.3g relative from 1 thread", d)
	}
}

// TestLibraryDiscovery runs this test binary as a child process per case
// and checks which library each loads: $STRATA_ONNXRUNTIME_LIB alone when
// set, then the linked path, then lib/ beside the executable's directory,
// then the loader's search path.
func TestLibraryDiscovery(t *testing.T) {
	mustAvailable(t)
	real, _ := Library()
	real, err := filepath.EvalSymlinks(real)
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// install copies the test binary to dir/bin, with dir/lib holding the
	// library when withLib.
	install := func(dir string, withLib bool) string {
		exe := filepath.Join(dir, "bin", "onnxrt.test")
		if err := os.MkdirAll(filepath.Dir(exe), 0o755); err != nil {
			t.Fatal(err)
		}
		copyFile(t, self, exe)
		if withLib {
			lib := filepath.Join(dir, "lib", libraryName)
			if err := os.MkdirAll(filepath.Dir(lib), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(real, lib); err != nil {
				t.Fatal(err)
			}
		}
		return exe
	}
	beside := t.TempDir()
	besideExe := install(beside, true)
	bare := install(t.TempDir(), false)
	missing := filepath.Join(t.TempDir(), "missing", libraryName)

	tests := []struct {
		name   string
		exe    string
		env    []string
		want   string // LIBRARY=... or the start of ERROR=...
		errHas string
	}{
		{"env wins", besideExe, []string{LibraryEnv + "=" + real}, "LIBRARY=" + real, ""},
		{"env alone, even when missing", besideExe, []string{LibraryEnv + "=" + missing}, "ERROR=", missing},
		{"linked", besideExe, []string{"ONNXRT_TEST_LINKED=" + real}, "LIBRARY=" + real, ""},
		{"beside the executable", besideExe, []string{"ONNXRT_TEST_LINKED=" + missing},
			"LIBRARY=" + filepath.Join(beside, "lib", libraryName), ""},
		{"loader search path", bare, []string{"ONNXRT_TEST_LINKED=" + missing, "LD_LIBRARY_PATH=" + filepath.Dir(real)},
			"LIBRARY=" + libraryName, ""},
		{"nowhere", bare, []string{"ONNXRT_TEST_LINKED=" + missing}, "ERROR=", "make deps"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(tt.exe)
			cmd.Env = append(childEnv(), append(tt.env, "ONNXRT_TEST_CHILD=1")...)
			out, err := cmd.CombinedOutput()
			got := strings.TrimSpace(string(out))
			if err != nil || !strings.HasPrefix(got, tt.want) || !strings.Contains(got, tt.errHas) {
				t.Fatalf("child printed %q (%v), want %q containing %q", got, err, tt.want, tt.errHas)
			}
			if strings.HasPrefix(tt.want, "LIBRARY=") && got != tt.want {
				t.Fatalf("child printed %q, want %q", got, tt.want)
			}
		})
	}
}

// childEnv is the environment without the variables the cases set.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if name != LibraryEnv && name != "LD_LIBRARY_PATH" && !strings.HasPrefix(name, "ONNXRT_TEST_") {
			env = append(env, kv)
		}
	}
	return env
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

var (
	benchModel   = flag.String("onnxrt.model", "", "BenchmarkRun: an .onnx file to run instead of the test models")
	benchBatches = flag.String("onnxrt.batch", "1,64", "BenchmarkRun: the batch sizes (values of every dynamic dimension)")
	benchThreads = flag.String("onnxrt.threads", "1,2", "BenchmarkRun: the intra-op thread counts")
)

// BenchmarkRun times Session.Run on the test models (or -onnxrt.model)
// at each batch size and intra-op thread count, named
// model/batch=B/threads=T, reporting rows/s. Inputs are seeded normal
// floats (int64 inputs are zeros). Example:
//
//	go test -tags onnxruntime -run '^$' -bench BenchmarkRun ./onnxrt/ -onnxrt.model big.onnx -onnxrt.batch 1,64 -onnxrt.threads 2
func BenchmarkRun(b *testing.B) {
	mustAvailable(b)
	models := map[string]string{}
	if *benchModel != "" {
		models[filepath.Base(*benchModel)] = *benchModel
	} else {
		for _, m := range testmodels.Build(b).Models() {
			models[m.Name] = m.ONNX
		}
	}
	for _, name := range slices.Sorted(mapKeys(models)) {
		for _, threads := range ints(b, *benchThreads) {
			s, err := OpenFile(models[name], Options{IntraOpThreads: threads})
			if err != nil {
				b.Fatal(err)
			}
			for _, batch := range ints(b, *benchBatches) {
				in := benchInputs(s.Inputs(), batch)
				b.Run(fmt.Sprintf("%s/batch=%d/threads=%d", name, batch, threads), func(b *testing.B) {
					for b.Loop() {
						if _, err := s.Run(in); err != nil {
							b.Fatal(err)
						}
					}
					b.ReportMetric(float64(batch)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
				})
			}
			s.Close()
		}
	}
}

func mapKeys(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func ints(b *testing.B, list string) []int {
	var out []int
	for _, f := range strings.Split(list, ",") {
		var n int
		if _, err := fmt.Sscan(f, &n); err != nil || n < 1 {
			b.Fatalf("%q: want a comma-separated list of positive integers", list)
		}
		out = append(out, n)
	}
	return out
}

// benchInputs makes an input per Info with every dynamic dimension set to
// batch.
func benchInputs(infos []Info, batch int) []Tensor {
	rng := rand.New(rand.NewPCG(5, 6))
	in := make([]Tensor, len(infos))
	for i, info := range infos {
		shape := slices.Clone(info.Shape)
		n := 1
		for d := range shape {
			if shape[d] < 0 {
				shape[d] = int64(batch)
			}
			n *= int(shape[d])
		}
		if info.Type == Int64 {
			in[i] = NewInt64(shape, make([]int64, n))
			continue
		}
		data := make([]float32, n)
		for j := range data {
			data[j] = float32(rng.NormFloat64())
		}
		in[i] = NewFloat32(shape, data)
	}
	return in
}
