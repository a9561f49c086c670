package arrowio

import (
	"bytes"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/strata-ml/strata/compute"
)

// mapAliased maps path with MapModel, fails t unless every non-empty
// tensor's values lie inside the model's mapping, with no spare capacity,
// and closes the model when t ends.
func mapAliased(t *testing.T, path string, opts ...Option) (*Model, error) {
	t.Helper()
	mm, err := MapModel(path, opts...)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() {
		if err := mm.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	for _, ts := range mm.Tensors {
		if len(ts.Data) == 0 {
			continue
		}
		if !within(ts.Data, mm.fm.data) {
			t.Errorf("tensor %q: values at %p are not inside the mapping [%p, +%d)", ts.Name, &ts.Data[0], unsafe.SliceData(mm.fm.data), len(mm.fm.data))
		}
		if cap(ts.Data) != len(ts.Data) {
			t.Errorf("tensor %q: cap %d, want len %d (an append must not write into the mapping)", ts.Name, cap(ts.Data), len(ts.Data))
		}
	}
	return &mm.Model, nil
}

// corpusInputs returns the inputs of the committed FuzzReadModel corpus.
func corpusInputs(t *testing.T) map[string][]byte {
	t.Helper()
	dir := filepath.Join("testdata", "fuzz", "FuzzReadModel")
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.SplitN(string(b), "\n", 3)
		if len(lines) < 2 || lines[0] != "go test fuzz v1" || !strings.HasPrefix(lines[1], "[]byte(") || !strings.HasSuffix(lines[1], ")") {
			t.Fatalf("%s: not a one-[]byte corpus file", e.Name())
		}
		data, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
		if err != nil {
			t.Fatalf("%s: %v", e.Name(), err)
		}
		out[e.Name()] = []byte(data)
	}
	if len(out) == 0 {
		t.Fatal("empty corpus")
	}
	return out
}

// TestMapModelMatchesReadModel reads committed model files, every input of
// the fuzz corpus and a generated model with both readers: MapModel fails
// with ReadModel's exact error, or reads a bit-identical model whose values
// alias the mapping.
func TestMapModelMatchesReadModel(t *testing.T) {
	files := map[string]string{
		"golden":         fixture("model_v1.arrow"),
		"mlp-16-32-24-4": filepath.Join("..", "testdata", "models", "mlp-16-32-24-4.arrow"),
	}
	dir := t.TempDir()
	for name, data := range corpusInputs(t) {
		p := filepath.Join(dir, "corpus-"+name+".arrow")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		files["corpus/"+name] = p
	}
	big := mlp(3)
	rng := rand.New(rand.NewPCG(9, 1))
	big.Tensors = append(big.Tensors, randTensor(rng, "extra.weight", compute.RoleWeight, 300, 257), randTensor(rng, "extra.odd", compute.RoleWeight, 3))
	gen := filepath.Join(dir, "generated.arrow")
	old := maxBatchValues
	maxBatchValues = 1000 // several record batches, one tensor larger than a batch
	err := WriteModel(gen, big)
	maxBatchValues = old
	if err != nil {
		t.Fatal(err)
	}
	files["generated"] = gen

	valid := 0
	for name, path := range files {
		t.Run(name, func(t *testing.T) {
			for _, mmap := range []bool{true, false} {
				want, werr := ReadModel(path, WithMmap(mmap))
				got, gerr := mapAliased(t, path, WithMmap(mmap))
				switch {
				case (werr == nil) != (gerr == nil):
					t.Fatalf("mmap %v: MapModel error %v, ReadModel error %v", mmap, gerr, werr)
				case werr != nil:
					if gerr.Error() != werr.Error() {
						t.Errorf("mmap %v: MapModel error:\n%v\nReadModel error:\n%v", mmap, gerr, werr)
					}
					mustFormatError(t, gerr)
				default:
					equalModels(t, got, want)
					if mmap {
						valid++
					}
				}
			}
		})
	}
	// The corpus holds one valid file; with the three files above that is
	// four, so the comparison above did compare models.
	if valid < 4 {
		t.Errorf("%d files read, want at least 4", valid)
	}
	// The generated model as written, not only as ReadModel reads it.
	got, err := mapAliased(t, gen)
	if err != nil {
		t.Fatal(err)
	}
	equalModels(t, got, big)
}

// TestMapModelClose checks that Close unmaps, clears every Tensor.Data,
// keeps names and shapes, and is idempotent.
func TestMapModelClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.arrow")
	want := mlp(4)
	if err := WriteModel(path, want); err != nil {
		t.Fatal(err)
	}
	mm, err := MapModel(path)
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS == "linux" || runtime.GOOS == "darwin" {
		if !mm.fm.mapped {
			t.Fatal("MapModel did not map the file")
		}
	}
	for i := 0; i < 2; i++ {
		if err := mm.Close(); err != nil {
			t.Fatalf("Close #%d: %v", i+1, err)
		}
	}
	if mm.fm != nil {
		t.Error("Close kept the mapping")
	}
	for i, ts := range mm.Tensors {
		if ts.Data != nil {
			t.Errorf("tensor %q: Data not cleared by Close", ts.Name)
		}
		if w := want.Tensors[i]; ts.Name != w.Name || len(ts.Shape) != len(w.Shape) {
			t.Errorf("tensor %d: got %s%v after Close, want %s%v", i, ts.Name, ts.Shape, w.Name, w.Shape)
		}
	}
}

// TestMapModelReadOnly checks that the mapping is write-protected: a write
// to a tensor faults (SetPanicOnFault turns the fault into a panic here)
// and neither the model nor the file changes.
func TestMapModelReadOnly(t *testing.T) {
	if runtime.GOOS != "linux" && runtime.GOOS != "darwin" {
		t.Skip("write protection needs syscall.Mprotect")
	}
	path := filepath.Join(t.TempDir(), "m.arrow")
	if err := WriteModel(path, mlp(5)); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	mm, err := MapModel(path)
	if err != nil {
		t.Fatal(err)
	}
	defer mm.Close()
	v := mm.Tensors[0].Data
	orig := v[0]
	faulted := func() (faulted bool) {
		defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
		defer func() {
			r := recover()
			var re runtime.Error
			faulted = r != nil
			if e, ok := r.(error); ok && !errors.As(e, &re) {
				t.Errorf("panic %v is not a runtime.Error", r)
			}
		}()
		v[0] = orig + 1
		return false
	}()
	if !faulted {
		t.Fatal("writing to a mapped tensor did not fault")
	}
	if math.Float32bits(v[0]) != math.Float32bits(orig) {
		t.Errorf("value changed to %v from %v", v[0], orig)
	}
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Error("the file changed")
	}
}

// TestMapModelCompressed reads a model file with LZ4-compressed record
// batches: arrow-go decompresses the values into buffers it frees, so
// MapModel copies them, and the model still equals ReadModel's.
func TestMapModelCompressed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lz4.arrow")
	want := mlp(6)
	var buf bytes.Buffer
	schema, err := modelSchema(want)
	if err != nil {
		t.Fatal(err)
	}
	mem := memory.NewGoAllocator()
	w, err := ipc.NewFileWriter(&buf, ipc.WithSchema(schema), ipc.WithAllocator(mem), ipc.WithLZ4())
	if err != nil {
		t.Fatal(err)
	}
	if err := writeModelBatches(schema, want.Tensors, mem, w.Write); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	checked := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer checked.AssertSize(t, 0)
	mm, err := MapModel(path, WithAllocator(checked))
	if err != nil {
		t.Fatal(err)
	}
	defer mm.Close()
	equalModels(t, &mm.Model, want)
	for _, ts := range mm.Tensors {
		if within(ts.Data, mm.fm.data) {
			t.Errorf("tensor %q aliases the compressed file", ts.Name)
		}
	}
}

// TestAliasValues checks the aliasing rule on hand-made memory: aligned and
// inside gives the same memory, anything else a copy with the same bits.
func TestAliasValues(t *testing.T) {
	const n = 5
	mem := make([]byte, 4*n+8) // Go aligns a []byte of this size to 8
	for i := range mem {
		mem[i] = byte(3*i + 1)
	}
	view := func(off, k int) []float32 { return unsafe.Slice((*float32)(unsafe.Pointer(&mem[off])), k) }
	tests := []struct {
		name    string
		v       []float32
		mem     []byte
		aliased bool
	}{
		{"aligned inside", view(4, n), mem, true},
		{"aligned at the end", view(8, n), mem, true},
		{"misaligned", view(1, n), mem, false},
		{"outside", []float32{1, 2, 3}, mem, false},
		{"past the end", view(8, n), mem[:4*n+4], false},
		{"before the start", view(0, n), mem[4:], false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := aliasValues(tt.v, tt.mem)
			if same := unsafe.SliceData(got) == unsafe.SliceData(tt.v); same != tt.aliased {
				t.Errorf("aliased = %v, want %v", same, tt.aliased)
			}
			if cap(got) != len(got) {
				t.Errorf("cap %d, want %d", cap(got), len(got))
			}
			if !sameBits(got, tt.v) {
				t.Error("values differ")
			}
		})
	}
	if got := aliasValues(view(4, 0), mem); got != nil {
		t.Errorf("empty: got %v, want nil", got)
	}
}
