package stages

import (
	"encoding/binary"
	"flag"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/compute"
)

// testMLP returns a classification MLP with layer widths sizes, ReLU
// between linear layers, and seeded random weights scaled like nn.Linear.
func testMLP(sizes []int, seed uint64) *arrowio.Model {
	rng := rand.New(rand.NewPCG(seed, 1))
	m := &arrowio.Model{Arch: arrowio.Architecture{
		FormatVersion: 1, Kind: arrowio.ArchMLP, Task: compute.TaskClassification, Inputs: sizes[0],
	}}
	idx := 0
	for i := 0; i+1 < len(sizes); i++ {
		in, out := sizes[i], sizes[i+1]
		name := strconv.Itoa(idx)
		m.Arch.Layers = append(m.Arch.Layers, arrowio.Layer{Name: name, Kind: compute.KindLinear, In: in, Out: out, Bias: true})
		w := make([]float32, out*in)
		for j := range w {
			w[j] = float32(rng.NormFloat64() / float64(in))
		}
		b := make([]float32, out)
		for j := range b {
			b[j] = float32(rng.NormFloat64() * 0.1)
		}
		m.Tensors = append(m.Tensors,
			arrowio.Tensor{Name: name + ".weight", Role: compute.RoleWeight, Shape: []int64{int64(out), int64(in)}, Data: w},
			arrowio.Tensor{Name: name + ".bias", Role: compute.RoleBias, Shape: []int64{int64(out)}, Data: b})
		idx++
		if i+2 < len(sizes) {
			m.Arch.Layers = append(m.Arch.Layers, arrowio.Layer{Name: strconv.Itoa(idx), Kind: compute.KindActivation, Activation: "relu"})
			idx++
		}
	}
	return m
}

// writeTestModel writes m to dir/name in the format of name's extension
// and returns the path.
func writeTestModel(t *testing.T, dir, name string, m *arrowio.Model) string {
	t.Helper()
	path := filepath.Join(dir, name)
	var err error
	if filepath.Ext(name) == ".safetensors" {
		ts, meta := arrowio.SequentialTensors(m)
		err = arrowio.WriteSafetensors(path, ts, meta)
	} else {
		err = arrowio.WriteModel(path, m)
	}
	if err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
	return path
}

// dirEntries returns the names in dir (nil when it does not exist).
func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestWriteFixtures regenerates the model fixtures under testdata/models
// used by the CLI tests: go test ./stages -run TestWriteFixtures -update.
func TestWriteFixtures(t *testing.T) {
	if !*update {
		t.Skip("run with -update to regenerate testdata/models")
	}
	dir := filepath.Join("..", "testdata", "models")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	m := testMLP([]int{16, 32, 24, 4}, 11)
	writeTestModel(t, dir, "mlp-16-32-24-4.arrow", m)
	writeTestModel(t, dir, "mlp-16-32-24-4.safetensors", m)
	// A safetensors file whose only tensor holds a NaN: the header is
	// valid, the value is not.
	header := `{"0.weight":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}`
	for len(header)%8 != 0 {
		header += " "
	}
	var b []byte
	b = binary.LittleEndian.AppendUint64(b, uint64(len(header)))
	b = append(b, header...)
	for _, v := range []float32{1, float32(math.NaN()), 0, 1} {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	if err := os.WriteFile(filepath.Join(dir, "nan.safetensors"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

var update = flag.Bool("update", false, "rewrite test fixtures")
