package arrowio

import (
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// TrainLogVersion is the training log format version, stored as the schema
// metadata value MetaTrainLogVersion.
const TrainLogVersion = 1

// MetaTrainLogVersion is the schema metadata key of a training log's
// version.
const MetaTrainLogVersion = "strata.train_log_version"

// Column names of a training log. Each linear layer adds a column named
// GradNormColumnPrefix + its layer name, between clipped and valid_loss.
const (
	ColStep              = "step"
	ColEpoch             = "epoch"
	ColLoss              = "loss"
	ColLR                = "lr"
	ColGradNorm          = "grad_norm"
	ColClipped           = "clipped"
	ColValidLoss         = "valid_loss"
	ColValidAccuracy     = "valid_accuracy"
	GradNormColumnPrefix = "grad_norm."
)

// TrainLog is the training log of a finetune run: one row per optimisation
// step, in step order. docs/TRAIN_LOG.md describes the file.
type TrainLog struct {
	// Layers names the linear layers in forward order; each has a
	// "grad_norm.<name>" column.
	Layers []string
	Rows   []TrainLogRow
}

// TrainLogRow is one optimisation step.
type TrainLogRow struct {
	// Step counts optimisation steps from 1; Epoch counts epochs from 1.
	Step, Epoch int64
	// Loss is the mean training loss of the step's batch plus the residual
	// penalty; LR the base learning rate the step used.
	Loss, LR float64
	// GradNorm is the global gradient norm before clipping, and Clipped
	// whether the gradient was scaled down to the clipping norm.
	GradNorm float64
	Clipped  bool
	// LayerGradNorms has one entry per Layers: the norm of the gradient of
	// that layer's parameters (weight or factors, and bias), before
	// clipping.
	LayerGradNorms []float64
	// ValidLoss and ValidAccuracy are the validation metrics measured
	// after the last step of an epoch; NaN means none (a null in the
	// file): on every other row, without validation data, and for the
	// accuracy of a regression model.
	ValidLoss, ValidAccuracy float64
}

// validate checks the invariants WriteTrainLog relies on.
func (l *TrainLog) validate(file string) error {
	if l == nil {
		return fileErr(file, ErrFormat, "nil training log")
	}
	seen := make(map[string]bool, len(l.Layers))
	for _, name := range l.Layers {
		if name == "" || seen[name] {
			return fieldErr(file, "layer", name, ErrFormat, "layer name is empty or repeated")
		}
		seen[name] = true
	}
	for i, r := range l.Rows {
		if len(r.LayerGradNorms) != len(l.Layers) {
			return fileErr(file, ErrFormat, "row %d has %d layer gradient norms for %d layers", i, len(r.LayerGradNorms), len(l.Layers))
		}
	}
	return nil
}

// trainLogSchema returns the schema of a training log with layers.
func trainLogSchema(layers []string) *arrow.Schema {
	f64 := arrow.PrimitiveTypes.Float64
	fields := []arrow.Field{
		{Name: ColStep, Type: arrow.PrimitiveTypes.Int64},
		{Name: ColEpoch, Type: arrow.PrimitiveTypes.Int64},
		{Name: ColLoss, Type: f64},
		{Name: ColLR, Type: f64},
		{Name: ColGradNorm, Type: f64},
		{Name: ColClipped, Type: arrow.FixedWidthTypes.Boolean},
	}
	for _, name := range layers {
		fields = append(fields, arrow.Field{Name: GradNormColumnPrefix + name, Type: f64})
	}
	fields = append(fields,
		arrow.Field{Name: ColValidLoss, Type: f64, Nullable: true},
		arrow.Field{Name: ColValidAccuracy, Type: f64, Nullable: true})
	md := arrow.NewMetadata([]string{MetaTrainLogVersion}, []string{strconv.Itoa(TrainLogVersion)})
	return arrow.NewSchema(fields, &md)
}

// WriteTrainLog writes l to path as an Arrow IPC file, atomically (see
// WriteFileAtomic). The bytes are a function of l alone.
func WriteTrainLog(path string, l *TrainLog) error {
	if err := l.validate(path); err != nil {
		return err
	}
	schema := trainLogSchema(l.Layers)
	return writeTable(path, schema, len(l.Rows), func(mem memory.Allocator, start, end int) arrow.RecordBatch {
		return trainLogRecord(mem, schema, l, start, end)
	})
}

// EncodeTrainLog writes l to w, the bytes WriteTrainLog puts in a file.
func EncodeTrainLog(w io.Writer, l *TrainLog) error {
	if err := l.validate(""); err != nil {
		return err
	}
	schema := trainLogSchema(l.Layers)
	return encodeTable(w, schema, len(l.Rows), func(mem memory.Allocator, start, end int) arrow.RecordBatch {
		return trainLogRecord(mem, schema, l, start, end)
	})
}

// trainLogRecord builds the record batch of rows [start, end). The caller
// releases it.
func trainLogRecord(mem memory.Allocator, schema *arrow.Schema, l *TrainLog, start, end int) arrow.RecordBatch {
	b := array.NewRecordBuilder(mem, schema)
	defer b.Release()
	rows := l.Rows[start:end]
	nl := len(l.Layers)
	f64 := func(i int) *array.Float64Builder { return b.Field(i).(*array.Float64Builder) }
	for _, r := range rows {
		b.Field(0).(*array.Int64Builder).Append(r.Step)
		b.Field(1).(*array.Int64Builder).Append(r.Epoch)
		f64(2).Append(r.Loss)
		f64(3).Append(r.LR)
		f64(4).Append(r.GradNorm)
		b.Field(5).(*array.BooleanBuilder).Append(r.Clipped)
		for k, v := range r.LayerGradNorms {
			f64(6 + k).Append(v)
		}
		for k, v := range []float64{r.ValidLoss, r.ValidAccuracy} {
			if math.IsNaN(v) {
				f64(6 + nl + k).AppendNull()
			} else {
				f64(6 + nl + k).Append(v)
			}
		}
	}
	return b.NewRecordBatch()
}

// ReadTrainLog reads a training log written by WriteTrainLog (or by any
// Arrow implementation with the same columns). The layers are the columns
// named "grad_norm.<layer>", in column order. Problems are *FormatError
// naming the file and column.
func ReadTrainLog(path string) (*TrainLog, error) {
	l := &TrainLog{}
	var idx struct {
		step, epoch, loss, lr, norm, clipped, vloss, vacc int
		layers                                            []int
	}
	err := readTable(path, func(schema *arrow.Schema) error {
		v, ok := metaValue(schema, MetaTrainLogVersion)
		if !ok {
			return fieldErr(path, "metadata", MetaTrainLogVersion, ErrFormat, "missing (not a strata training log)")
		}
		if v != strconv.Itoa(TrainLogVersion) {
			kind := ErrFormat
			if n, err := strconv.Atoi(v); err == nil && n > TrainLogVersion {
				kind = ErrUnsupported
			}
			return fieldErr(path, "metadata", MetaTrainLogVersion, kind, "is %q, this build reads %q", v, strconv.Itoa(TrainLogVersion))
		}
		i64, f64 := arrow.PrimitiveTypes.Int64, arrow.PrimitiveTypes.Float64
		cols := []struct {
			dst  *int
			name string
			typ  arrow.DataType
		}{
			{&idx.step, ColStep, i64}, {&idx.epoch, ColEpoch, i64}, {&idx.loss, ColLoss, f64},
			{&idx.lr, ColLR, f64}, {&idx.norm, ColGradNorm, f64}, {&idx.clipped, ColClipped, arrow.FixedWidthTypes.Boolean},
			{&idx.vloss, ColValidLoss, f64}, {&idx.vacc, ColValidAccuracy, f64},
		}
		for _, c := range cols {
			i, err := tableColumn(path, schema, c.name, c.typ)
			if err != nil {
				return err
			}
			*c.dst = i
		}
		for i, f := range schema.Fields() {
			if name, ok := strings.CutPrefix(f.Name, GradNormColumnPrefix); ok {
				if !sameType(f.Type, f64) {
					return fieldErr(path, "column", f.Name, ErrFormat, "has type %s, want %s", f.Type, f64)
				}
				l.Layers = append(l.Layers, name)
				idx.layers = append(idx.layers, i)
			}
		}
		return l.validate(path)
	}, func(rec arrow.RecordBatch) error {
		col := func(i int) arrow.Array { return rec.Column(i) }
		for _, i := range []int{idx.step, idx.epoch, idx.loss, idx.lr, idx.norm, idx.clipped} {
			if n := col(i).NullN(); n > 0 {
				return fieldErr(path, "column", rec.ColumnName(i), ErrFormat, "has %d null rows", n)
			}
		}
		for _, i := range idx.layers {
			if n := col(i).NullN(); n > 0 {
				return fieldErr(path, "column", rec.ColumnName(i), ErrFormat, "has %d null rows", n)
			}
		}
		step := col(idx.step).(*array.Int64)
		epoch := col(idx.epoch).(*array.Int64)
		loss := col(idx.loss).(*array.Float64)
		lr := col(idx.lr).(*array.Float64)
		norm := col(idx.norm).(*array.Float64)
		clipped := col(idx.clipped).(*array.Boolean)
		vloss := col(idx.vloss).(*array.Float64)
		vacc := col(idx.vacc).(*array.Float64)
		nullable := func(a *array.Float64, i int) float64 {
			if a.IsNull(i) {
				return math.NaN()
			}
			return a.Value(i)
		}
		for i := 0; i < int(rec.NumRows()); i++ {
			r := TrainLogRow{
				Step: step.Value(i), Epoch: epoch.Value(i),
				Loss: loss.Value(i), LR: lr.Value(i), GradNorm: norm.Value(i), Clipped: clipped.Value(i),
				ValidLoss: nullable(vloss, i), ValidAccuracy: nullable(vacc, i),
				LayerGradNorms: make([]float64, len(idx.layers)),
			}
			for k, c := range idx.layers {
				r.LayerGradNorms[k] = col(c).(*array.Float64).Value(i)
			}
			l.Rows = append(l.Rows, r)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return l, nil
}
