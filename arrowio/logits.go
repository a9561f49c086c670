package arrowio

import (
	"bytes"
	"context"
	"errors"
	"io"
	"path/filepath"
	"slices"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

// ReadLogits reads a table of per-example model outputs (the logits of a
// classifier, the predictions of a regressor) computed by any framework,
// chosen by the extension of path: a table (an Arrow IPC file or stream,
// Parquet or CSV, as ReadDataset chooses) or one array (.safetensors, as
// safetensors.torch.save_file writes it; .npy, as numpy.save does). It has
// one row per example and comes back as X (N x D, D the number of
// outputs). In a table the outputs are one list or fixed_shape_tensor
// column or numeric columns (one per output, in column order), exactly
// the feature layouts of ReadDataset; an array is [rows, outputs] or
// [rows] (one output), a safetensors file's the only tensor or the one
// named "logits" (values read as float32).
//
// A column (safetensors: a tensor) named by WithLabel (default "label")
// is optional: when the file has one, it is not an output and its values
// come back in Y, so that the caller can check the rows follow its data;
// otherwise Y is nil. Every other option of ReadDataset applies to tables
// (WithFeatureColumns names the output columns). Problems are
// *FormatError naming path, as ReadDataset's.
func ReadLogits(path string, opts ...Option) (*Dataset, error) {
	cfg := newConfig(opts)
	switch ext := strings.ToLower(filepath.Ext(path)); ext {
	case ".safetensors", ".npy":
		return readTensorLogits(path, ext, cfg.label)
	}
	format, err := datasetFormat(path)
	if err != nil {
		return nil, fileErr(path, ErrUnsupported, "unknown logits extension (want .arrow, .feather, .ipc, .arrows, .parquet, .csv, .csv.gz, .safetensors or .npy)")
	}
	if format == fmtCSV || format == fmtCSVGzip {
		return ReadDataset(path, append(slices.Clone(opts), withOptionalLabel())...)
	}
	data, err := readInput(path)
	if err != nil {
		return nil, err
	}
	hasLabel := false
	var stream bytes.Buffer
	var w *ipc.Writer
	var outSchema *arrow.Schema
	var extra string
	err = eachRecord(path, data, format, cfg.alloc, func(schema *arrow.Schema) error {
		if len(schema.FieldIndices(cfg.label)) > 0 {
			hasLabel = true
			return errStopRecords
		}
		// Add a zero label column of a name the file does not use, so
		// the dataset reader (which needs a label) reads the outputs.
		extra = "__strata_row"
		for len(schema.FieldIndices(extra)) > 0 {
			extra = "_" + extra
		}
		md := schema.Metadata()
		fields := append(append([]arrow.Field(nil), schema.Fields()...), arrow.Field{Name: extra, Type: arrow.PrimitiveTypes.Int64})
		outSchema = arrow.NewSchema(fields, &md)
		w = ipc.NewWriter(&stream, ipc.WithSchema(outSchema), ipc.WithAllocator(cfg.alloc))
		return nil
	}, func(rec arrow.RecordBatch) error {
		zb := array.NewInt64Builder(cfg.alloc)
		defer zb.Release()
		zb.AppendEmptyValues(int(rec.NumRows()))
		zeros := zb.NewArray()
		defer zeros.Release()
		cols := append(append([]arrow.Array(nil), rec.Columns()...), zeros)
		out := array.NewRecordBatch(outSchema, cols, rec.NumRows())
		defer out.Release()
		return w.Write(out)
	})
	if hasLabel {
		return ReadDatasetFrom(bytes.NewReader(data), int64(len(data)), path, opts...)
	}
	if err != nil {
		if w != nil {
			_ = w.Close()
		}
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, fileErr(path, ErrFormat, "re-encode: %w", err)
	}
	ropts := append(append([]Option(nil), opts...), WithLabel(extra))
	ds, err := ReadDatasetFrom(bytes.NewReader(stream.Bytes()), int64(stream.Len()), "logits.arrows", ropts...)
	if err != nil {
		var fe *FormatError
		if errors.As(err, &fe) {
			fe.File = path
		}
		return nil, err
	}
	ds.Y = nil
	return ds, nil
}

// errStopRecords ends eachRecord early without an error.
var errStopRecords = errors.New("stop")

// eachRecord calls schemaFn with the schema of an IPC file or stream or
// Parquet file held in data, then recFn with each record batch (released
// after recFn returns), with the structural checks ReadDataset applies.
// schemaFn may return errStopRecords to stop without an error.
func eachRecord(name string, data []byte, format dsFormat, mem memory.Allocator, schemaFn func(*arrow.Schema) error, recFn func(arrow.RecordBatch) error) (err error) {
	defer recoverAsFormatError(name, &err)
	size := int64(len(data))
	sr := io.NewSectionReader(bytes.NewReader(data), 0, size)
	start := func(s *arrow.Schema) (bool, error) {
		if err := schemaFn(s); err != nil {
			if errors.Is(err, errStopRecords) {
				return false, nil
			}
			return false, err
		}
		return true, nil
	}
	switch format {
	case fmtIPC, fmtStream:
		opts := ipcLimits(size, mem)
		if format == fmtIPC && bytes.HasPrefix(data, arrowMagic) {
			if err := verifyIPCFile(sr, size); err != nil {
				return fileErr(name, ErrFormat, "not a readable Arrow IPC file: %w", err)
			}
			fr, err := ipc.NewFileReader(sr, opts...)
			if err != nil {
				return fileErr(name, ErrFormat, "not a readable Arrow IPC file: %w", err)
			}
			defer fr.Close()
			if ok, err := start(fr.Schema()); !ok {
				return err
			}
			for i := 0; i < fr.NumRecords(); i++ {
				rec, err := fr.RecordBatchAt(i)
				if err != nil {
					return fileErr(name, ErrFormat, "record batch %d: %w", i, err)
				}
				err = recFn(rec)
				rec.Release()
				if err != nil {
					return err
				}
			}
			return nil
		}
		if err := verifyIPCStream(sr, size, true); err != nil {
			return fileErr(name, ErrFormat, "not a readable Arrow IPC stream: %w", err)
		}
		rd, err := ipc.NewReaderFromMessageReader(ipc.NewMessageReader(sr, opts...), opts...)
		if err != nil {
			return fileErr(name, ErrFormat, "not a readable Arrow IPC file or stream: %w", err)
		}
		defer rd.Release()
		if ok, err := start(rd.Schema()); !ok {
			return err
		}
		for rd.Next() {
			if err := recFn(rd.RecordBatch()); err != nil {
				return err
			}
		}
		if err := rd.Err(); err != nil {
			return fileErr(name, ErrFormat, "IPC stream: %w", err)
		}
		return nil
	case fmtParquet:
		pf, err := file.NewParquetReader(sr, file.WithReadProps(parquet.NewReaderProperties(mem)))
		if err != nil {
			return fileErr(name, ErrFormat, "not a readable Parquet file: %w", err)
		}
		defer pf.Close()
		if err := verifyStoredArrowSchema(pf); err != nil {
			return fileErr(name, ErrFormat, "Parquet ARROW:schema metadata: %w", err)
		}
		fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{BatchSize: 1 << 16}, mem)
		if err != nil {
			return fileErr(name, ErrFormat, "Parquet schema: %w", err)
		}
		schema, err := fr.Schema()
		if err != nil {
			return fileErr(name, ErrFormat, "Parquet schema: %w", err)
		}
		if ok, err := start(schema); !ok {
			return err
		}
		if pf.NumRows() == 0 {
			return nil
		}
		rr, err := fr.GetRecordReader(context.Background(), nil, nil)
		if err != nil {
			return fileErr(name, ErrFormat, "Parquet: %w", err)
		}
		defer rr.Release()
		for rr.Next() {
			if err := recFn(rr.RecordBatch()); err != nil {
				return err
			}
		}
		if err := rr.Err(); err != nil && !errors.Is(err, io.EOF) {
			return fileErr(name, ErrFormat, "Parquet: %w", err)
		}
		return nil
	}
	return fileErr(name, ErrUnsupported, "unsupported logits format")
}
