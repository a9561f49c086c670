package arrowio

import (
	"bytes"
	"fmt"
	"io"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// This file holds the plumbing shared by the small tables strata writes
// next to its models (the training log, checkpoint state): write record
// batches to an IPC file atomically, and read one back after the same
// structural verification ReadModel applies.

// tableBatchRows bounds the rows of one record batch of a small table.
const tableBatchRows = 1 << 16

// writeTable writes an Arrow IPC file of schema to path, atomically (see
// WriteFileAtomic), asking batch for the record batch of rows [start, end)
// for consecutive ranges of at most tableBatchRows up to rows. batch's
// record is released here.
func writeTable(path string, schema *arrow.Schema, rows int, batch func(mem memory.Allocator, start, end int) arrow.RecordBatch) error {
	return WriteFileAtomic(path, func(w io.Writer) error { return encodeTable(w, schema, rows, batch) })
}

func encodeTable(w io.Writer, schema *arrow.Schema, rows int, batch func(mem memory.Allocator, start, end int) arrow.RecordBatch) error {
	mem := memory.DefaultAllocator
	fw, err := ipc.NewFileWriter(w, ipc.WithSchema(schema), ipc.WithAllocator(mem))
	if err != nil {
		return fmt.Errorf("arrowio: table writer: %w", err)
	}
	for start := 0; start < rows; start += tableBatchRows {
		rec := batch(mem, start, min(start+tableBatchRows, rows))
		err := fw.Write(rec)
		rec.Release()
		if err != nil {
			_ = fw.Close()
			return fmt.Errorf("arrowio: write record batch: %w", err)
		}
	}
	if err := fw.Close(); err != nil {
		return fmt.Errorf("arrowio: close table writer: %w", err)
	}
	return nil
}

// readTable reads the IPC file at path into memory, verifies its
// structure, and calls schemaFn with its schema and then batchFn with each
// record batch in order (the record is released after batchFn returns).
// Panics of the Arrow reader on corrupt input become *FormatError.
func readTable(path string, schemaFn func(*arrow.Schema) error, batchFn func(arrow.RecordBatch) error) (err error) {
	data, err := readInput(path)
	if err != nil {
		return err
	}
	defer recoverAsFormatError(path, &err)
	size := int64(len(data))
	if err := verifyIPCFile(bytes.NewReader(data), size); err != nil {
		return fileErr(path, ErrFormat, "not a readable Arrow IPC file: %w", err)
	}
	r, err := ipc.NewFileReader(bytes.NewReader(data), ipcLimits(size, memory.DefaultAllocator)...)
	if err != nil {
		return fileErr(path, ErrFormat, "not a readable Arrow IPC file: %w", err)
	}
	defer r.Close()
	if err := schemaFn(r.Schema()); err != nil {
		return err
	}
	for b := 0; b < r.NumRecords(); b++ {
		rec, err := r.RecordBatchAt(b)
		if err != nil {
			return fileErr(path, ErrFormat, "record batch %d: %w", b, err)
		}
		err = validateRecord(path, rec)
		if err == nil {
			err = batchFn(rec)
		}
		rec.Release()
		if err != nil {
			return err
		}
	}
	return nil
}

// validateRecord runs Arrow's full validation on every column of rec.
func validateRecord(file string, rec arrow.RecordBatch) error {
	for i, col := range rec.Columns() {
		if err := array.ValidateFull(col); err != nil {
			return fieldErr(file, "column", rec.ColumnName(i), ErrFormat, "corrupt array: %w", err)
		}
	}
	return nil
}

// tableColumn returns the index of the one column named name in schema,
// checking its type.
func tableColumn(file string, schema *arrow.Schema, name string, typ arrow.DataType) (int, error) {
	found := schema.FieldIndices(name)
	switch len(found) {
	case 0:
		return 0, fieldErr(file, "column", name, ErrFormat, "missing (columns: %s)", columnNames(schema))
	case 1:
	default:
		return 0, fieldErr(file, "column", name, ErrFormat, "appears %d times", len(found))
	}
	if f := schema.Field(found[0]); !sameType(f.Type, typ) {
		return 0, fieldErr(file, "column", name, ErrFormat, "has type %s, want %s", f.Type, typ)
	}
	return found[0], nil
}

// metaValue returns the schema metadata value of key and whether it is
// present.
func metaValue(schema *arrow.Schema, key string) (string, bool) {
	md := schema.Metadata()
	i := md.FindKey(key)
	if i < 0 {
		return "", false
	}
	return md.Values()[i], true
}
