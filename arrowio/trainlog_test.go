package arrowio

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

func sampleTrainLog() *TrainLog {
	nan := math.NaN()
	return &TrainLog{
		Layers: []string{"0", "2"},
		Rows: []TrainLogRow{
			{Step: 1, Epoch: 1, Loss: 2.3, LR: 0, GradNorm: 1.5, Clipped: true, LayerGradNorms: []float64{1.2, 0.9}, ValidLoss: nan, ValidAccuracy: nan},
			{Step: 2, Epoch: 1, Loss: 1.9, LR: 1e-3, GradNorm: 0.8, LayerGradNorms: []float64{0.6, 0.5}, ValidLoss: 1.7, ValidAccuracy: 0.75},
			{Step: 3, Epoch: 2, Loss: 1.1, LR: 5e-4, GradNorm: 0.4, LayerGradNorms: []float64{0.3, 0.2}, ValidLoss: 1.2, ValidAccuracy: nan},
		},
	}
}

func sameRow(a, b TrainLogRow) bool {
	eq := func(x, y float64) bool { return x == y || (math.IsNaN(x) && math.IsNaN(y)) }
	return a.Step == b.Step && a.Epoch == b.Epoch && a.Loss == b.Loss && a.LR == b.LR && a.GradNorm == b.GradNorm &&
		a.Clipped == b.Clipped && slices.Equal(a.LayerGradNorms, b.LayerGradNorms) &&
		eq(a.ValidLoss, b.ValidLoss) && eq(a.ValidAccuracy, b.ValidAccuracy)
}

func TestTrainLogRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "train_log.arrow")
	want := sampleTrainLog()
	if err := WriteTrainLog(path, want); err != nil {
		t.Fatal(err)
	}
	got, err := ReadTrainLog(path)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Layers, want.Layers) || len(got.Rows) != len(want.Rows) {
		t.Fatalf("got layers %q and %d rows, want %q and %d", got.Layers, len(got.Rows), want.Layers, len(want.Rows))
	}
	for i := range want.Rows {
		if !sameRow(got.Rows[i], want.Rows[i]) {
			t.Errorf("row %d: got %+v, want %+v", i, got.Rows[i], want.Rows[i])
		}
	}
	// The bytes are a function of the log alone.
	var buf bytes.Buffer
	if err := EncodeTrainLog(&buf, want); err != nil {
		t.Fatal(err)
	}
	file, _ := os.ReadFile(path)
	if !bytes.Equal(buf.Bytes(), file) {
		t.Error("EncodeTrainLog and WriteTrainLog wrote different bytes")
	}

	// The columns a pyarrow user sees: nulls where no validation ran.
	f, _ := os.Open(path)
	defer f.Close()
	r, err := ipc.NewFileReader(f)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var names []string
	for _, fd := range r.Schema().Fields() {
		names = append(names, fd.Name)
	}
	wantNames := []string{"step", "epoch", "loss", "lr", "grad_norm", "clipped", "grad_norm.0", "grad_norm.2", "valid_loss", "valid_accuracy"}
	if !slices.Equal(names, wantNames) {
		t.Errorf("columns %q, want %q", names, wantNames)
	}
	rec, err := r.RecordBatchAt(0)
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Release()
	if n := rec.Column(8).NullN(); n != 1 {
		t.Errorf("valid_loss has %d nulls, want 1", n)
	}
	if n := rec.Column(9).NullN(); n != 2 {
		t.Errorf("valid_accuracy has %d nulls, want 2", n)
	}
}

func TestTrainLogRejects(t *testing.T) {
	dir := t.TempDir()
	bad := sampleTrainLog()
	bad.Rows[1].LayerGradNorms = bad.Rows[1].LayerGradNorms[:1]
	wantFormatError(t, WriteTrainLog(filepath.Join(dir, "x.arrow"), bad), ErrFormat, "row 1 has 1 layer gradient norms for 2 layers")
	dup := sampleTrainLog()
	dup.Layers[1] = "0"
	wantFormatError(t, WriteTrainLog(filepath.Join(dir, "y.arrow"), dup), ErrFormat, "repeated")
	if _, err := os.Stat(filepath.Join(dir, "x.arrow")); err == nil {
		t.Error("an invalid log was written")
	}

	// A model file is not a training log.
	model := filepath.Join(dir, "model.arrow")
	m := &Model{Arch: Architecture{FormatVersion: FormatVersion, Kind: ArchGeneric}}
	if err := WriteModel(model, m); err != nil {
		t.Fatal(err)
	}
	_, err := ReadTrainLog(model)
	wantFormatError(t, err, ErrFormat, MetaTrainLogVersion, "missing")

	// A newer version is unsupported; a missing column is named.
	write := func(name string, version string, fields []arrow.Field) string {
		md := arrow.NewMetadata([]string{MetaTrainLogVersion}, []string{version})
		schema := arrow.NewSchema(fields, &md)
		path := filepath.Join(dir, name)
		err := writeTable(path, schema, 0, func(mem memory.Allocator, start, end int) arrow.RecordBatch {
			b := array.NewRecordBuilder(mem, schema)
			defer b.Release()
			return b.NewRecordBatch()
		})
		if err != nil {
			t.Fatal(err)
		}
		return path
	}
	full := trainLogSchema([]string{"0"}).Fields()
	_, err = ReadTrainLog(write("v2.arrow", "2", full))
	wantFormatError(t, err, ErrUnsupported, "this build reads \"1\"")
	_, err = ReadTrainLog(write("noloss.arrow", "1", slices.Delete(slices.Clone(full), 2, 3)))
	wantFormatError(t, err, ErrFormat, `column "loss": missing`)

	// A truncated file.
	good := filepath.Join(dir, "good.arrow")
	if err := WriteTrainLog(good, sampleTrainLog()); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(good)
	trunc := filepath.Join(dir, "trunc.arrow")
	os.WriteFile(trunc, raw[:len(raw)-20], 0o644)
	_, err = ReadTrainLog(trunc)
	wantFormatError(t, err, ErrFormat)
}

func TestStateRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.arrow")
	vecs := []StateVector{
		{Name: "param/0.weight", Data: []float64{1, -0.0, math.SmallestNonzeroFloat64, float64(float32(0.1)), 0.1}},
		{Name: "empty", Data: nil},
		{Name: "optimizer.multipliers", Data: []float64{1, 2}},
	}
	meta := map[string]string{"b": "2", "a": "1"}
	if err := WriteState(path, meta, vecs); err != nil {
		t.Fatal(err)
	}
	gotMeta, got, err := ReadState(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(gotMeta) != 2 || gotMeta["a"] != "1" || gotMeta["b"] != "2" {
		t.Errorf("metadata %v, want %v", gotMeta, meta)
	}
	if len(got) != len(vecs) {
		t.Fatalf("%d vectors, want %d", len(got), len(vecs))
	}
	for i, v := range vecs {
		if got[i].Name != v.Name || len(got[i].Data) != len(v.Data) {
			t.Fatalf("vector %d: %s with %d values, want %s with %d", i, got[i].Name, len(got[i].Data), v.Name, len(v.Data))
		}
		for j := range v.Data {
			if math.Float64bits(got[i].Data[j]) != math.Float64bits(v.Data[j]) {
				t.Errorf("%s[%d] = %v, want %v bit for bit", v.Name, j, got[i].Data[j], v.Data[j])
			}
		}
	}
	wantFormatError(t, WriteState(path, nil, []StateVector{{Name: "x"}, {Name: "x"}}), ErrFormat, "repeated")
	wantFormatError(t, WriteState(path, map[string]string{MetaStateVersion: "9"}, nil), ErrFormat, "reserved")
	log := filepath.Join(filepath.Dir(path), "log.arrow")
	if err := WriteTrainLog(log, sampleTrainLog()); err != nil {
		t.Fatal(err)
	}
	_, _, err = ReadState(log)
	wantFormatError(t, err, ErrFormat, MetaStateVersion, "missing")
}
