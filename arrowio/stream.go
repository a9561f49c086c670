package arrowio

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"strconv"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// This file holds the Arrow IPC *stream* forms of the model file and the
// dataset, for exchanging them without files (the go-plugin boundary):
// a stream carries the same schema, metadata and record batches as the
// file, without the file's magic and footer, so it can be produced and
// consumed incrementally.

// EncodeModelStream validates m and writes it to w as an Arrow IPC stream:
// the schema (with its metadata) and the record batches EncodeModel puts
// in a file, in the same batches. An invalid model is reported as a
// *FormatError and nothing is written.
func EncodeModelStream(w io.Writer, m *Model) error {
	if err := validateModel("", m); err != nil {
		return err
	}
	mem := memory.DefaultAllocator
	schema, err := modelSchema(m)
	if err != nil {
		return err
	}
	sw := ipc.NewWriter(w, ipc.WithSchema(schema), ipc.WithAllocator(mem))
	// The batching is encodeModel's, so that StreamToFile of this stream
	// gives the bytes EncodeModel writes.
	if err := writeModelBatches(schema, m.Tensors, mem, sw.Write); err != nil {
		_ = sw.Close()
		return err
	}
	if err := sw.Close(); err != nil {
		return fmt.Errorf("arrowio: close model stream: %w", err)
	}
	return nil
}

// ReadModelStream reads and validates a model sent as an Arrow IPC stream
// of size bytes in r (as EncodeModelStream writes it); name is used in
// errors. It applies every check ReadModel does and returns a Model that
// owns all its memory. Problems are *FormatError.
func ReadModelStream(r io.ReaderAt, size int64, name string, opts ...Option) (*Model, error) {
	var file bytes.Buffer
	if err := StreamToFile(&file, r, size, name); err != nil {
		return nil, err
	}
	return ReadModelFrom(bytes.NewReader(file.Bytes()), int64(file.Len()), name, opts...)
}

// EncodeDatasetStream writes ds to w as an Arrow IPC stream, the content
// WriteDataset gives a ".arrows" file: features as WithFeatureLayout says
// (default one fixed_size_list<float32> column named "features"), the
// target in the column named by WithLabel. A float64 feature that does
// not fit float32 is an error unless WithFloat64Features is given.
func EncodeDatasetStream(w io.Writer, ds *Dataset, opts ...Option) error {
	cfg := newConfig(opts)
	if err := validateDataset("", ds); err != nil {
		return err
	}
	names := ds.FeatureNames
	if len(names) == 0 {
		names = make([]string, ds.D)
		for j := range names {
			names[j] = "f" + strconv.Itoa(j)
		}
	}
	if cfg.layout == LayoutColumns {
		seen := map[string]bool{cfg.label: true}
		for _, n := range names {
			if seen[n] || n == "" {
				return fieldErr("", "column", n, ErrFormat, "feature name is empty, repeated or the label's")
			}
			seen[n] = true
		}
	}
	if !cfg.float64 {
		for k, v := range ds.X {
			if math.Abs(v) > math.MaxFloat32 {
				return fileErr("", ErrFormat, "X row %d feature %d (%g) does not fit float32 (use WithFloat64Features)", k/ds.D, k%ds.D, v)
			}
		}
	}
	schema, err := datasetSchema(ds, names, cfg, false)
	if err != nil {
		return err
	}
	sw := ipc.NewWriter(w, ipc.WithSchema(schema), ipc.WithAllocator(cfg.alloc))
	for start := 0; start < ds.N; start += cfg.batchRows {
		rec, err := datasetRecord(schema, ds, start, min(start+cfg.batchRows, ds.N), cfg)
		if err != nil {
			_ = sw.Close()
			return err
		}
		err = sw.Write(rec)
		rec.Release()
		if err != nil {
			_ = sw.Close()
			return fmt.Errorf("arrowio: write dataset record batch: %w", err)
		}
	}
	if err := sw.Close(); err != nil {
		return fmt.Errorf("arrowio: close dataset stream: %w", err)
	}
	return nil
}

// StreamToFile copies the Arrow IPC stream of size bytes in r to w as an
// Arrow IPC file with the same schema, metadata and record batches; name
// is used in errors. The stream is verified structurally first and read
// with size limits equal to its size, as ReadModel reads a file; problems
// are *FormatError. StreamToFile(EncodeModelStream(m)) writes the bytes
// EncodeModel(m) does.
func StreamToFile(w io.Writer, r io.ReaderAt, size int64, name string) (err error) {
	defer recoverAsFormatError(name, &err)
	if size < 0 {
		return fileErr(name, ErrFormat, "negative size %d", size)
	}
	if err := verifyIPCStream(r, size, true); err != nil {
		return fileErr(name, ErrFormat, "not a readable Arrow IPC stream: %w", err)
	}
	mem := memory.DefaultAllocator
	opts := ipcLimits(size, mem)
	// ipc.NewReader ignores the size limits (arrow-go v18.8.0);
	// NewMessageReader applies them.
	rd, err := ipc.NewReaderFromMessageReader(ipc.NewMessageReader(io.NewSectionReader(r, 0, size), opts...), opts...)
	if err != nil {
		return fileErr(name, ErrFormat, "not a readable Arrow IPC stream: %w", err)
	}
	defer rd.Release()
	fw, err := ipc.NewFileWriter(w, ipc.WithSchema(rd.Schema()), ipc.WithAllocator(mem))
	if err != nil {
		return fmt.Errorf("arrowio: file writer: %w", err)
	}
	for rd.Next() {
		rec := rd.RecordBatch()
		if err := validateRecord(name, rec); err != nil {
			_ = fw.Close()
			return err
		}
		if err := fw.Write(rec); err != nil {
			_ = fw.Close()
			return fmt.Errorf("arrowio: write record batch: %w", err)
		}
	}
	if err := rd.Err(); err != nil {
		_ = fw.Close()
		return fileErr(name, ErrFormat, "IPC stream: %w", err)
	}
	if err := fw.Close(); err != nil {
		return fmt.Errorf("arrowio: close file writer: %w", err)
	}
	return nil
}

// FileToStream copies the Arrow IPC file of size bytes in r to w as an
// Arrow IPC stream with the same schema, metadata and record batches;
// name is used in errors. The file is verified structurally first;
// problems are *FormatError. It is the inverse of StreamToFile.
func FileToStream(w io.Writer, r io.ReaderAt, size int64, name string) (err error) {
	defer recoverAsFormatError(name, &err)
	if size < 0 {
		return fileErr(name, ErrFormat, "negative size %d", size)
	}
	if err := verifyIPCFile(r, size); err != nil {
		return fileErr(name, ErrFormat, "not a readable Arrow IPC file: %w", err)
	}
	mem := memory.DefaultAllocator
	fr, err := ipc.NewFileReader(io.NewSectionReader(r, 0, size), ipcLimits(size, mem)...)
	if err != nil {
		return fileErr(name, ErrFormat, "not a readable Arrow IPC file: %w", err)
	}
	defer fr.Close()
	sw := ipc.NewWriter(w, ipc.WithSchema(fr.Schema()), ipc.WithAllocator(mem))
	for i := 0; i < fr.NumRecords(); i++ {
		rec, err := fr.RecordBatchAt(i)
		if err != nil {
			_ = sw.Close()
			return fileErr(name, ErrFormat, "record batch %d: %w", i, err)
		}
		err = writeValidated(sw, name, rec)
		rec.Release()
		if err != nil {
			_ = sw.Close()
			return err
		}
	}
	if err := sw.Close(); err != nil {
		return fmt.Errorf("arrowio: close stream writer: %w", err)
	}
	return nil
}

// writeValidated validates rec and writes it to sw.
func writeValidated(sw *ipc.Writer, name string, rec arrow.RecordBatch) error {
	if err := validateRecord(name, rec); err != nil {
		return err
	}
	if err := sw.Write(rec); err != nil {
		return fmt.Errorf("arrowio: write record batch: %w", err)
	}
	return nil
}
