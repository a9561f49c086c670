package arrowio

import (
	"bytes"
	"cmp"
	"context"
	"encoding/hex"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"
)

// interopDir holds the arrow-js scripts and their package.json; CI installs
// node_modules with `npm ci --prefix testdata/interop`.
var interopDir = filepath.Join("..", "testdata", "interop")

// nodeOrSkip returns the node binary, or skips the test when node or the
// installed apache-arrow package is missing, except under CI (CI set),
// where that is a failure.
func nodeOrSkip(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err == nil {
		_, err = os.Stat(filepath.Join(interopDir, "node_modules", "apache-arrow", "package.json"))
	}
	if err != nil {
		msg := "interop with arrow-js needs node and `npm ci --prefix testdata/interop`: " + err.Error()
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return node
}

func runNode(t *testing.T, node string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, args...)
	cmd.Dir = interopDir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node %v: %v\n%s", args, err, stderr.String())
	}
	return out
}

// TestInteropNodeArrow checks the formats against a second Arrow
// implementation, arrow-js (npm apache-arrow, version pinned in
// testdata/interop/package.json): arrow-js reads every tensor of a model
// file strata wrote, bit for bit, and strata reads a dataset arrow-js wrote.
func TestInteropNodeArrow(t *testing.T) {
	node := nodeOrSkip(t)

	t.Run("arrow-js reads a strata model file", func(t *testing.T) {
		m := mlp(77)
		m.Arch.Layers[0].Structure = json.RawMessage(`{"family":"monarch","blocks":2}`)
		m.Meta = map[string]string{"note": "interop"}
		m.Tensors = append(m.Tensors,
			Tensor{Name: "special", Role: "test", Shape: []int64{6}, Data: []float32{
				float32(math.Copysign(0, -1)), math.SmallestNonzeroFloat32, math.MaxFloat32, -1e-38, 0.1, 1,
			}},
			Tensor{Name: "scalar", Role: "test", Data: []float32{3}},
			Tensor{Name: "empty", Role: "test", Shape: []int64{0, 4}},
		)
		old := maxBatchValues
		maxBatchValues = 40 // several record batches, as a large model has
		defer func() { maxBatchValues = old }()
		path, err := filepath.Abs(filepath.Join(t.TempDir(), "model.arrow"))
		if err != nil {
			t.Fatal(err)
		}
		if err := WriteModel(path, m); err != nil {
			t.Fatal(err)
		}
		checkNodeReads(t, node, path, m, "1", nil)
	})

	t.Run("arrow-js reads a version 2 model file", func(t *testing.T) {
		m := rawModel2()
		path, err := filepath.Abs(filepath.Join(t.TempDir(), "model.arrow"))
		if err != nil {
			t.Fatal(err)
		}
		if err := WriteModel(path, m); err != nil {
			t.Fatal(err)
		}
		checkNodeReads(t, node, path, m, "2", []struct{ Name, Type string }{{"dtype", "Utf8"}, {"raw", "LargeBinary"}})
	})

	t.Run("strata reads an arrow-js dataset", func(t *testing.T) {
		// The values written by write_dataset.mjs.
		features := []float32{0.5, -1.25, 3, 1e-7, 65504, float32(math.Copysign(0, -1)), 2.5, 0.1, -7.75, 1, 2, 3}
		x := make([]float64, len(features))
		for i, v := range features {
			x[i] = float64(v)
		}
		tests := []struct {
			name string
			args []string
			y    []float64
		}{
			{"int64 label", nil, []float64{0, 2, 1, 2}},
			{"float64 label", []string{"--float-label"}, []float64{0.5, 2.5, 1.5, 2.5}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				path, err := filepath.Abs(filepath.Join(t.TempDir(), "ds.arrow"))
				if err != nil {
					t.Fatal(err)
				}
				runNode(t, node, append([]string{"write_dataset.mjs", path}, tt.args...)...)
				got, err := ReadDataset(path)
				if err != nil {
					t.Fatal(err)
				}
				equalDatasets(t, got, &Dataset{N: 4, D: 3, X: x, Y: tt.y}, []string{"features[0]", "features[1]", "features[2]"})
			})
		}
	})
}

// checkNodeReads runs read_model.mjs on the model file path, written from
// m, and checks that arrow-js reads its metadata (format version version),
// its columns (the four of every version, then extra) and every tensor bit
// for bit.
func checkNodeReads(t *testing.T, node, path string, m *Model, version string, extra []struct{ Name, Type string }) {
	t.Helper()
	var got struct {
		Metadata map[string]string
		Fields   []struct{ Name, Type string }
		Tensors  []struct {
			Name, Role string
			Shape      []int64
			Data       []string // hex of the float32 bits
			DType      string
			Raw        string // hex
		}
	}
	if err := json.Unmarshal(runNode(t, node, "read_model.mjs", path), &got); err != nil {
		t.Fatal(err)
	}
	if got.Metadata[MetaFormatVersion] != version || got.Metadata["note"] != m.Meta["note"] {
		t.Errorf("metadata %v", got.Metadata)
	}
	wantArch, _ := EncodeArchitecture(&m.Arch)
	if got.Metadata[MetaArchitecture] != string(wantArch) {
		t.Errorf("architecture\ngot  %s\nwant %s", got.Metadata[MetaArchitecture], wantArch)
	}
	wantFields := append([]struct{ Name, Type string }{{"name", "Utf8"}, {"role", "Utf8"}, {"shape", "List<Int64>"}, {"data", "LargeList<Float32>"}}, extra...)
	if !slices.Equal(got.Fields, wantFields) {
		t.Errorf("fields %v want %v", got.Fields, wantFields)
	}
	if len(got.Tensors) != len(m.Tensors) {
		t.Fatalf("arrow-js read %d tensors, want %d", len(got.Tensors), len(m.Tensors))
	}
	for i, w := range m.Tensors {
		g := got.Tensors[i]
		if g.Name != w.Name || g.Role != string(w.Role) || !slices.Equal(g.Shape, w.Shape) && len(g.Shape)+len(w.Shape) > 0 {
			t.Errorf("tensor %d: got %s/%s%v want %s/%s%v", i, g.Name, g.Role, g.Shape, w.Name, w.Role, w.Shape)
		}
		if extra != nil && (g.DType != cmp.Or(w.DType, DTypeF32) || g.Raw != hex.EncodeToString(w.Raw)) {
			t.Errorf("tensor %q: arrow-js read dtype %s raw %s, want %s %x", w.Name, g.DType, g.Raw, cmp.Or(w.DType, DTypeF32), w.Raw)
		}
		if len(g.Data) != len(w.Data) {
			t.Errorf("tensor %q: %d values want %d", w.Name, len(g.Data), len(w.Data))
			continue
		}
		for j, h := range g.Data {
			bits, err := strconv.ParseUint(h, 16, 32)
			if err != nil || uint32(bits) != math.Float32bits(w.Data[j]) {
				t.Errorf("tensor %q value %d: arrow-js read %s, want %08x", w.Name, j, h, math.Float32bits(w.Data[j]))
				break
			}
		}
	}
}
