package testmodels

import (
	"bytes"
	"encoding/binary"
	"encoding/csv"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
)

// TestModels checks the built set against itself from Go: every model
// learned the digits (accuracy >= 0.85 on the 360 held-out rows), its
// accuracy and loss are what its logits give (recomputed here in
// float64: accuracy exactly, loss to 1e-12), and its input is the
// evaluation rows reshaped (or, for the int64 checkpoint model, times 16).
func TestModels(t *testing.T) {
	s := Build(t)
	rows := s.EvalX.Shape[0]
	if !slices.Equal(s.EvalX.Shape, []int64{360, 64}) || !slices.Equal(s.EvalY.Shape, []int64{360}) {
		t.Fatalf("eval rows: x %v y %v, want [360 64] [360]", s.EvalX.Shape, s.EvalY.Shape)
	}
	wantShape := map[string][]int64{
		"mlp": {rows, 64}, "cnn": {rows, 1, 8, 8}, "transformer": {rows, 8, 8}, "checkpoint": {rows, 64},
	}
	for _, m := range s.Models() {
		t.Run(m.Name, func(t *testing.T) {
			if !slices.Equal(m.Input.Shape, wantShape[m.Name]) {
				t.Errorf("input shape %v, want %v", m.Input.Shape, wantShape[m.Name])
			}
			for i, x := range s.EvalX.Float32 {
				if m.Name == "checkpoint" {
					if m.Input.Int64[i] != int64(x*16) {
						t.Fatalf("input[%d] = %d, want %v*16", i, m.Input.Int64[i], x)
					}
				} else if m.Input.Float32[i] != x {
					t.Fatalf("input[%d] = %v, want %v", i, m.Input.Float32[i], x)
				}
			}
			acc, loss := Metrics(m.Logits.Float32, s.EvalY.Int64, s.Classes)
			if acc != m.Accuracy {
				t.Errorf("accuracy from the logits %v, PyTorch's %v", acc, m.Accuracy)
			}
			if math.Abs(loss-m.Loss) > 1e-12*m.Loss {
				t.Errorf("loss from the logits %.17g, PyTorch's %.17g", loss, m.Loss)
			}
			if m.Accuracy < 0.85 {
				t.Errorf("accuracy %v: the model did not learn the digits", m.Accuracy)
			}
		})
	}
}

// TestEvalCSV checks that eval.csv holds exactly the evaluation rows.
func TestEvalCSV(t *testing.T) {
	s := Build(t)
	f, err := os.Open(s.EvalCSV)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 361 || len(recs[0]) != 65 || recs[0][0] != "px_0_0" || recs[0][64] != "label" {
		t.Fatalf("eval.csv: %d lines, header %v", len(recs), recs[0])
	}
	for i, rec := range recs[1:] {
		for j, v := range rec[:64] {
			x, err := strconv.ParseFloat(v, 64)
			if err != nil || float32(x) != s.EvalX.Float32[i*64+j] || x != float64(float32(x)) {
				t.Fatalf("row %d col %d: %q, want %v exactly", i, j, v, s.EvalX.Float32[i*64+j])
			}
		}
		if rec[64] != strconv.FormatInt(s.EvalY.Int64[i], 10) {
			t.Fatalf("row %d: label %q, want %d", i, rec[64], s.EvalY.Int64[i])
		}
	}
}

type stEntry struct {
	DType   string  `json:"dtype"`
	Shape   []int64 `json:"shape"`
	Offsets [2]int  `json:"data_offsets"`
}

// readSafetensors parses a safetensors file by the format's definition:
// 8-byte little-endian header length, JSON header, data.
func readSafetensors(t *testing.T, path string) (map[string]stEntry, map[string]string, []byte) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := binary.LittleEndian.Uint64(raw)
	if n%8 != 0 || 8+n > uint64(len(raw)) {
		t.Fatalf("%s: header length %d of a %d-byte file", path, n, len(raw))
	}
	var header map[string]json.RawMessage
	if err := json.Unmarshal(bytes.TrimRight(raw[8:8+n], " "), &header); err != nil {
		t.Fatal(err)
	}
	meta := map[string]string{}
	entries := map[string]stEntry{}
	for k, v := range header {
		if k == "__metadata__" {
			if err := json.Unmarshal(v, &meta); err != nil {
				t.Fatal(err)
			}
			continue
		}
		var e stEntry
		if err := json.Unmarshal(v, &e); err != nil {
			t.Fatal(err)
		}
		entries[k] = e
	}
	return entries, meta, raw[8+n:]
}

// TestSafetensors checks the hand-written safetensors files: contiguous
// data covering the file, the names and shapes of the modules, the MLP's
// activation in __metadata__, and the checkpoint's int64 tensors
// (BatchNorm's scalar num_batches_tracked, the position_ids buffer 0..63).
func TestSafetensors(t *testing.T) {
	s := Build(t)
	for _, m := range s.Models() {
		entries, _, data := readSafetensors(t, m.Safetensors)
		end := 0
		for name, e := range entries {
			size := map[string]int{"F32": 4, "I64": 8}[e.DType]
			n := 1
			for _, d := range e.Shape {
				n *= int(d)
			}
			if size == 0 || e.Offsets[1]-e.Offsets[0] != n*size {
				t.Errorf("%s: %s: %s %v spans %v", m.Name, name, e.DType, e.Shape, e.Offsets)
			}
			end = max(end, e.Offsets[1])
		}
		if end != len(data) {
			t.Errorf("%s: data ends at %d, file has %d data bytes", m.Name, end, len(data))
		}
	}

	mlp, meta, _ := readSafetensors(t, s.MLP.Safetensors)
	if meta["activation"] != "gelu" {
		t.Errorf("mlp __metadata__ %v, want activation gelu", meta)
	}
	for name, shape := range map[string][]int64{"fc1.weight": {128, 64}, "fc2.weight": {128, 128}, "fc3.weight": {10, 128}, "fc3.bias": {10}} {
		if e := mlp[name]; e.DType != "F32" || !slices.Equal(e.Shape, shape) {
			t.Errorf("mlp %s: %s %v, want F32 %v", name, e.DType, e.Shape, shape)
		}
	}
	cnn, _, _ := readSafetensors(t, s.CNN.Safetensors)
	for name, shape := range map[string][]int64{"conv1.weight": {16, 1, 3, 3}, "conv2.weight": {32, 16, 3, 3},
		"conv3.weight": {64, 32, 1, 1}, "fc.weight": {64, 1024}, "head.weight": {10, 64}} {
		if e := cnn[name]; !slices.Equal(e.Shape, shape) {
			t.Errorf("cnn %s: %v, want %v", name, e.Shape, shape)
		}
	}
	ck, _, data := readSafetensors(t, s.Checkpoint.Safetensors)
	if e := ck["bn.num_batches_tracked"]; e.DType != "I64" || len(e.Shape) != 0 {
		t.Errorf("bn.num_batches_tracked: %s %v, want an I64 scalar", e.DType, e.Shape)
	} else if steps := binary.LittleEndian.Uint64(data[e.Offsets[0]:]); steps != 20*23 {
		t.Errorf("bn.num_batches_tracked = %d, want 20 epochs x 23 batches", steps)
	}
	e := ck["position_ids"]
	if e.DType != "I64" || !slices.Equal(e.Shape, []int64{64}) {
		t.Fatalf("position_ids: %s %v, want I64 [64]", e.DType, e.Shape)
	}
	for i := range 64 {
		if v := binary.LittleEndian.Uint64(data[e.Offsets[0]+8*i:]); v != uint64(i) {
			t.Fatalf("position_ids[%d] = %d", i, v)
		}
	}
	for name, shape := range map[string][]int64{"pixel.weight": {17, 4}, "position.weight": {64, 4}, "bn.running_var": {64}} {
		if e := ck[name]; e.DType != "F32" || !slices.Equal(e.Shape, shape) {
			t.Errorf("checkpoint %s: %s %v, want F32 %v", name, e.DType, e.Shape, shape)
		}
	}
}

// TestDeterministic builds the set again from scratch and checks that
// every file is byte-identical to the cached one.
func TestDeterministic(t *testing.T) {
	s := Build(t)
	py, _, err := findPython()
	if err != nil {
		t.Fatal(err)
	}
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "make_models.py")
	if err := os.WriteFile(path, script, 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{path, "--out", dir, "--digits", filepath.Join(root, DigitsFile)}
	if len(s.pretrained) > 0 {
		args = append(args, "--pretrained", s.pretrainedDir)
	}
	if err := run(py, args); err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(s.Dir, "*"))
	if err != nil || len(files) < 20 {
		t.Fatalf("%d files in %s (%v)", len(files), s.Dir, err)
	}
	for _, f := range files {
		a, err1 := os.ReadFile(f)
		b, err2 := os.ReadFile(filepath.Join(dir, filepath.Base(f)))
		if err1 != nil || err2 != nil || !bytes.Equal(a, b) {
			t.Errorf("%s differs between two builds (%v, %v)", filepath.Base(f), err1, err2)
		}
	}
}

// TestPretrained checks that `make deps` installed the pretrained models
// and that the set has their reference outputs.
func TestPretrained(t *testing.T) {
	s := Build(t)
	for _, name := range pretrainedFiles {
		PretrainedPath(t, name)
	}
	want := map[string][2][]int64{
		WakeWord:    {{1, 16, 96}, {1, 1}},
		SpeechEmbed: {{3, 76, 32, 1}, {3, 1, 1, 96}},
		// 1 s of 16 kHz audio in windows of 512 samples every 160: 97
		// frames of 32 mel bands.
		Melspectrogram: {{2, 16000}, {2, 1, 97, 32}},
	}
	got := s.Pretrained(t)
	if len(got) != len(want) {
		t.Fatalf("%d pretrained references, want %d", len(got), len(want))
	}
	for _, p := range got {
		w := want[p.Name]
		if !slices.Equal(p.Input.Shape, w[0]) || !slices.Equal(p.Output.Shape, w[1]) {
			t.Errorf("%s: input %v output %v, want %v %v", p.Name, p.Input.Shape, p.Output.Shape, w[0], w[1])
		}
	}
}
