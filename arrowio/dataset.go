package arrowio

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/strata-ml/strata/internal/limits"
)

// Dataset is a table of examples: N rows of D features and a target.
type Dataset struct {
	X []float64 // N x D, row-major
	// Y holds one target per row: a class index for classification, a
	// value for regression.
	Y []float64
	N int
	D int
	// FeatureNames has D entries: the column names for a numeric-columns
	// layout, "<column>[j]" for a list or tensor column (or the names the
	// file stores under MetaFeatureNames).
	FeatureNames []string
	// Shape is the shape of each row's features when they come from an
	// arrow.fixed_shape_tensor column stored in row-major order (no
	// permutation): an image's [C, H, W], a sequence's [T, F]. The D
	// values of a row are that tensor, row-major. nil otherwise.
	Shape []int
}

// MetaFeatureNames is the schema metadata key under which WriteDataset
// stores the feature names of a list or tensor column (a JSON array).
const MetaFeatureNames = "strata.feature_names"

// FeatureLayout is how WriteDataset stores the features.
type FeatureLayout int

const (
	// LayoutList stores one fixed_size_list<float> column named "features".
	LayoutList FeatureLayout = iota
	// LayoutTensor stores one arrow.fixed_shape_tensor column of shape [D]
	// named "features".
	LayoutTensor
	// LayoutColumns stores one numeric column per feature, named by
	// Dataset.FeatureNames (or f0, f1, ... when it is empty).
	LayoutColumns
)

type dsFormat int

const (
	fmtIPC dsFormat = iota + 1 // IPC file, falling back to stream
	fmtStream
	fmtParquet
	fmtCSV
	fmtCSVGzip
)

func datasetFormat(name string) (dsFormat, error) {
	lower := strings.ToLower(name)
	switch {
	case strings.HasSuffix(lower, ".csv.gz"):
		return fmtCSVGzip, nil
	case strings.HasSuffix(lower, ".csv"):
		return fmtCSV, nil
	case strings.HasSuffix(lower, ".arrow"), strings.HasSuffix(lower, ".feather"), strings.HasSuffix(lower, ".ipc"):
		return fmtIPC, nil
	case strings.HasSuffix(lower, ".arrows"):
		return fmtStream, nil
	case strings.HasSuffix(lower, ".parquet"):
		return fmtParquet, nil
	}
	return 0, fileErr(name, ErrUnsupported, "unknown dataset extension (want .arrow, .feather, .ipc, .arrows, .parquet, .csv or .csv.gz)")
}

// ReadDataset reads a dataset, choosing the format by the extension of
// path: .arrow, .feather and .ipc are Arrow IPC files (read as an IPC stream
// if the file magic is absent), .arrows an IPC stream, .parquet Parquet,
// .csv and .csv.gz CSV with a header row.
//
// The target column is named by WithLabel (default "label") and must be of
// an integer or float type. The features are, unless WithFeatureColumns
// says otherwise, all other columns, which must be either one column of
// fixed_size_list, list or large_list of numbers, or of the
// arrow.fixed_shape_tensor extension type (any shape; values are taken in
// storage order), or numeric (int*, uint*, float*) columns.
//
// Problems are *FormatError naming the file and column: a missing label
// (the message lists the columns present), a non-numeric feature column,
// a null, a NaN or infinity (with its row), no rows, or list rows of
// different widths.
func ReadDataset(path string, opts ...Option) (*Dataset, error) {
	f, size, data, err := openInput(path)
	if err != nil {
		return nil, err
	}
	if f == nil {
		return ReadDatasetFrom(bytes.NewReader(data), size, path, opts...)
	}
	defer f.Close()
	return ReadDatasetFrom(f, size, path, opts...)
}

// ReadDatasetFrom reads a dataset of size bytes from r, choosing the format
// by the extension of name as ReadDataset does; name is used in errors.
func ReadDatasetFrom(r io.ReaderAt, size int64, name string, opts ...Option) (ds *Dataset, err error) {
	cfg := newConfig(opts)
	format, err := datasetFormat(name)
	if err != nil {
		return nil, err
	}
	defer recoverAsFormatError(name, &err)
	if size < 0 {
		return nil, fileErr(name, ErrFormat, "negative size %d", size)
	}
	b := &dsBuilder{file: name, cfg: cfg, ds: &Dataset{}}
	sr := io.NewSectionReader(r, 0, size)
	switch format {
	case fmtIPC, fmtStream:
		err = b.readIPC(sr, size, format == fmtIPC)
	case fmtParquet:
		err = b.readParquet(sr)
	case fmtCSV:
		err = b.readCSV(sr)
	case fmtCSVGzip:
		zr, zerr := gzip.NewReader(sr)
		if zerr != nil {
			return nil, fileErr(name, ErrFormat, "not a gzip file: %w", zerr)
		}
		bounded := &boundedReader{r: zr, n: cfg.decompressed}
		err = b.readCSV(bounded)
		if bounded.n <= 0 && err != nil {
			err = fileErr(name, ErrFormat, "decompresses to more than the limit of %s (docs/FORMATS.md, Input limits; convert large data to Parquet or Arrow)",
				limits.Size(cfg.decompressed))
		}
		if err == nil {
			err = zr.Close()
			if err != nil {
				err = fileErr(name, ErrFormat, "gzip: %w", err)
			}
		}
	}
	if err != nil {
		return nil, err
	}
	if b.ds.N == 0 {
		return nil, fileErr(name, ErrFormat, "empty dataset: no rows")
	}
	return b.ds, nil
}

// dsBuilder accumulates record batches into a Dataset.
type dsBuilder struct {
	file     string
	cfg      *config
	ds       *Dataset
	labelCol int
	featCols []int
	listCol  bool // features are one list-like column
	varWidth bool // the list column is list/large_list: check widths per row
	planned  bool
	// metaNames are the feature names stored in the schema metadata.
	metaNames []string
}

var arrowMagic = []byte("ARROW1")

func (b *dsBuilder) readIPC(sr *io.SectionReader, size int64, tryFile bool) error {
	opts := ipcLimits(size, b.cfg.alloc)
	if tryFile {
		magic := make([]byte, len(arrowMagic))
		n, _ := sr.ReadAt(magic, 0)
		if n == len(magic) && bytes.Equal(magic, arrowMagic) {
			if err := verifyIPCFile(sr, size); err != nil {
				return fileErr(b.file, ErrFormat, "not a readable Arrow IPC file: %w", err)
			}
			fr, err := ipc.NewFileReader(sr, opts...)
			if err != nil {
				return fileErr(b.file, ErrFormat, "not a readable Arrow IPC file: %w", err)
			}
			defer fr.Close()
			if err := b.plan(fr.Schema()); err != nil {
				return err
			}
			for i := 0; i < fr.NumRecords(); i++ {
				rec, err := fr.RecordBatchAt(i)
				if err != nil {
					return fileErr(b.file, ErrFormat, "record batch %d: %w", i, err)
				}
				err = b.add(rec)
				rec.Release()
				if err != nil {
					return err
				}
			}
			return nil
		}
	}
	if err := verifyIPCStream(sr, size, true); err != nil {
		return fileErr(b.file, ErrFormat, "not a readable Arrow IPC stream: %w", err)
	}
	// ipc.NewReader ignores the size limits (arrow-go v18.8.0): a corrupt
	// length would allocate up to 2 GiB. NewMessageReader applies them.
	rd, err := ipc.NewReaderFromMessageReader(ipc.NewMessageReader(sr, opts...), opts...)
	if err != nil {
		return fileErr(b.file, ErrFormat, "not a readable Arrow IPC file or stream: %w", err)
	}
	defer rd.Release()
	if err := b.plan(rd.Schema()); err != nil {
		return err
	}
	for rd.Next() {
		if err := b.add(rd.RecordBatch()); err != nil {
			return err
		}
	}
	if err := rd.Err(); err != nil {
		return fileErr(b.file, ErrFormat, "IPC stream: %w", err)
	}
	return nil
}

// parquetMagic starts and ends every (unencrypted) Parquet file.
var parquetMagic = []byte("PAR1")

func (b *dsBuilder) readParquet(sr *io.SectionReader) error {
	// The Parquet reader looks at the trailing magic only.
	for _, at := range []int64{0, sr.Size() - int64(len(parquetMagic))} {
		magic := make([]byte, len(parquetMagic))
		if n, _ := sr.ReadAt(magic, max(at, 0)); n != len(magic) || !bytes.Equal(magic, parquetMagic) {
			return fileErr(b.file, ErrFormat, "not a Parquet file: %q at byte %d, want %q", magic[:n], max(at, 0), parquetMagic)
		}
	}
	pf, err := file.NewParquetReader(sr, file.WithReadProps(parquet.NewReaderProperties(b.cfg.alloc)))
	if err != nil {
		return fileErr(b.file, ErrFormat, "not a readable Parquet file: %w", err)
	}
	defer pf.Close()
	if err := verifyStoredArrowSchema(pf); err != nil {
		return fileErr(b.file, ErrFormat, "Parquet ARROW:schema metadata: %w", err)
	}
	fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{BatchSize: int64(b.cfg.batchRows)}, b.cfg.alloc)
	if err != nil {
		return fileErr(b.file, ErrFormat, "Parquet schema: %w", err)
	}
	schema, err := fr.Schema()
	if err != nil {
		return fileErr(b.file, ErrFormat, "Parquet schema: %w", err)
	}
	if err := b.plan(schema); err != nil {
		return err
	}
	if pf.NumRows() == 0 {
		return nil
	}
	if err := b.reserve(pf.NumRows()); err != nil {
		return err
	}
	rr, err := fr.GetRecordReader(b.cfg.ctx, nil, nil)
	if err != nil {
		return fileErr(b.file, ErrFormat, "Parquet: %w", err)
	}
	defer rr.Release()
	for rr.Next() {
		if err := b.add(rr.RecordBatch()); err != nil {
			return err
		}
	}
	if err := rr.Err(); err != nil && !errors.Is(err, io.EOF) {
		if ctxErr := b.cfg.ctx.Err(); ctxErr != nil {
			return ctxErr
		}
		return fileErr(b.file, ErrFormat, "Parquet: %w", err)
	}
	return nil
}

// verifyStoredArrowSchema checks the Arrow schema pqarrow will decode from
// the file's "ARROW:schema" metadata (an IPC stream, base64-encoded) with
// verifyIPCStream, as for any IPC input.
func verifyStoredArrowSchema(pf *file.Reader) error {
	kv := pf.MetaData().KeyValueMetadata()
	if kv == nil {
		return nil
	}
	v := kv.FindValue("ARROW:schema")
	if v == nil {
		return nil
	}
	// Decode as pqarrow does: standard padded base64, else unpadded.
	var decoded []byte
	var err error
	if len(*v)%4 == 0 {
		decoded, err = base64.StdEncoding.DecodeString(*v)
	}
	if len(decoded) == 0 || err != nil {
		if decoded, err = base64.RawStdEncoding.DecodeString(*v); err != nil {
			return nil // pqarrow reports undecodable metadata
		}
	}
	return verifyIPCStream(bytes.NewReader(decoded), int64(len(decoded)), false)
}

// isNumeric reports whether t is an integer or floating-point type.
func isNumeric(t arrow.DataType) bool {
	switch t.ID() {
	case arrow.INT8, arrow.INT16, arrow.INT32, arrow.INT64,
		arrow.UINT8, arrow.UINT16, arrow.UINT32, arrow.UINT64,
		arrow.FLOAT16, arrow.FLOAT32, arrow.FLOAT64:
		return true
	}
	return false
}

// listInfo returns, for a list-like feature type, its element type, its
// fixed width (0 if variable), and whether it is list-like at all.
func listInfo(t arrow.DataType) (elem arrow.DataType, width int, ok bool, err error) {
	switch tt := t.(type) {
	case *arrow.FixedSizeListType:
		return tt.Elem(), int(tt.Len()), true, nil
	case *arrow.ListType:
		return tt.Elem(), 0, true, nil
	case *arrow.LargeListType:
		return tt.Elem(), 0, true, nil
	case arrow.ExtensionType:
		if tt.ExtensionName() != FixedShapeTensorName {
			return nil, 0, false, nil
		}
		// Parse through our implementation even if another package
		// registered the name first.
		fst, derr := (&FixedShapeTensorType{}).Deserialize(tt.StorageType(), tt.Serialize())
		if derr != nil {
			return nil, 0, true, derr
		}
		st := fst.(*FixedShapeTensorType)
		return st.ValueType(), int(st.Storage.(*arrow.FixedSizeListType).Len()), true, nil
	}
	return nil, 0, false, nil
}

// tensorShape returns the row shape of a fixed_shape_tensor type stored in
// row-major order, nil for any other type.
func tensorShape(t arrow.DataType) []int {
	et, ok := t.(arrow.ExtensionType)
	if !ok || et.ExtensionName() != FixedShapeTensorName {
		return nil
	}
	parsed, err := (&FixedShapeTensorType{}).Deserialize(et.StorageType(), et.Serialize())
	if err != nil {
		return nil
	}
	st := parsed.(*FixedShapeTensorType)
	for i, p := range st.Permutation() {
		if p != int64(i) {
			return nil
		}
	}
	var shape []int
	for _, d := range st.Shape() {
		shape = append(shape, int(d))
	}
	return shape
}

// plan chooses the label and feature columns from the schema.
func (b *dsBuilder) plan(schema *arrow.Schema) error {
	label := b.cfg.label
	switch idx := schema.FieldIndices(label); len(idx) {
	case 0:
		if !b.cfg.optLabel {
			return fieldErr(b.file, "column", label, ErrFormat, "label column missing (columns: %s)", columnNames(schema))
		}
		b.labelCol = -1
	case 1:
		b.labelCol = idx[0]
	default:
		return fieldErr(b.file, "column", label, ErrFormat, "label column appears %d times", len(idx))
	}
	if b.labelCol >= 0 && !isNumeric(schema.Field(b.labelCol).Type) {
		lt := schema.Field(b.labelCol).Type
		return fieldErr(b.file, "column", label, ErrUnsupported, "label has type %s, want an integer or float type", lt)
	}
	if len(b.cfg.features) > 0 {
		for _, name := range b.cfg.features {
			idx := schema.FieldIndices(name)
			switch {
			case len(idx) == 0:
				return fieldErr(b.file, "column", name, ErrFormat, "feature column missing (columns: %s)", columnNames(schema))
			case len(idx) > 1:
				return fieldErr(b.file, "column", name, ErrFormat, "feature column appears %d times", len(idx))
			case idx[0] == b.labelCol:
				return fieldErr(b.file, "column", name, ErrFormat, "is the label, not a feature")
			}
			b.featCols = append(b.featCols, idx[0])
		}
	} else {
		for i := range schema.NumFields() {
			if i != b.labelCol {
				b.featCols = append(b.featCols, i)
			}
		}
	}
	if len(b.featCols) == 0 {
		return fileErr(b.file, ErrFormat, "no feature columns besides the label %q", label)
	}
	for _, c := range b.featCols {
		f := schema.Field(c)
		elem, width, isList, err := listInfo(f.Type)
		if err != nil {
			return fieldErr(b.file, "column", f.Name, ErrFormat, "%w", err)
		}
		if !isList {
			if !isNumeric(f.Type) {
				return fieldErr(b.file, "column", f.Name, ErrUnsupported, "feature has type %s, want a number, a list of numbers or a fixed_shape_tensor", f.Type)
			}
			continue
		}
		if len(b.featCols) != 1 {
			return fieldErr(b.file, "column", f.Name, ErrUnsupported,
				"a list or tensor feature column must be the only feature column, found %d (choose with WithFeatureColumns)", len(b.featCols))
		}
		if !isNumeric(elem) {
			return fieldErr(b.file, "column", f.Name, ErrUnsupported, "feature list has element type %s, want a number type", elem)
		}
		b.listCol = true
		b.varWidth = width == 0
		b.ds.D = width
		b.ds.Shape = tensorShape(f.Type)
	}
	if b.listCol {
		if !b.varWidth && b.ds.D <= 0 {
			return fieldErr(b.file, "column", schema.Field(b.featCols[0]).Name, ErrFormat, "feature list has width 0")
		}
		// Feature names are made once the first row shows that the width
		// is backed by data: a corrupt schema may declare any width.
		b.metaNames = schemaFeatureNames(schema)
	} else {
		b.ds.D = len(b.featCols)
		for _, c := range b.featCols {
			b.ds.FeatureNames = append(b.ds.FeatureNames, strings.Clone(schema.Field(c).Name))
		}
	}
	b.planned = true
	return nil
}

// schemaFeatureNames returns the names stored under MetaFeatureNames, if
// any.
func schemaFeatureNames(schema *arrow.Schema) []string {
	md := schema.Metadata()
	if i := md.FindKey(MetaFeatureNames); i >= 0 {
		var names []string
		if json.Unmarshal([]byte(md.Values()[i]), &names) == nil {
			return names
		}
	}
	return nil
}

// listFeatureNames returns stored if it has d names, else "<col>[j]".
func listFeatureNames(stored []string, col string, d int) []string {
	if len(stored) == d {
		return stored
	}
	names := make([]string, d)
	for j := range names {
		names[j] = col + "[" + strconv.Itoa(j) + "]" // concatenation copies
	}
	return names
}

// numericSlice appends a[start:end] of a numeric array to dst as float64.
// ok is false if a is not numeric.
func numericSlice(dst []float64, a arrow.Array, start, end int) ([]float64, bool) {
	switch v := a.(type) {
	case *array.Float64:
		return append(dst, v.Float64Values()[start:end]...), true
	case *array.Float32:
		for _, x := range v.Float32Values()[start:end] {
			dst = append(dst, float64(x))
		}
	case *array.Float16:
		for _, x := range v.Values()[start:end] {
			dst = append(dst, float64(x.Float32()))
		}
	case *array.Int8:
		for _, x := range v.Int8Values()[start:end] {
			dst = append(dst, float64(x))
		}
	case *array.Int16:
		for _, x := range v.Int16Values()[start:end] {
			dst = append(dst, float64(x))
		}
	case *array.Int32:
		for _, x := range v.Int32Values()[start:end] {
			dst = append(dst, float64(x))
		}
	case *array.Int64:
		for _, x := range v.Int64Values()[start:end] {
			dst = append(dst, float64(x))
		}
	case *array.Uint8:
		for _, x := range v.Uint8Values()[start:end] {
			dst = append(dst, float64(x))
		}
	case *array.Uint16:
		for _, x := range v.Uint16Values()[start:end] {
			dst = append(dst, float64(x))
		}
	case *array.Uint32:
		for _, x := range v.Uint32Values()[start:end] {
			dst = append(dst, float64(x))
		}
	case *array.Uint64:
		for _, x := range v.Uint64Values()[start:end] {
			dst = append(dst, float64(x))
		}
	default:
		return dst, false
	}
	return dst, true
}

func firstNull(a arrow.Array, start, end int) int {
	if a.NullN() == 0 {
		return -1
	}
	for i := start; i < end; i++ {
		if a.IsNull(i) {
			return i
		}
	}
	return -1
}

// add appends one record batch. It does not release rec.
func (b *dsBuilder) add(rec arrow.RecordBatch) error {
	if !b.planned {
		return fileErr(b.file, ErrFormat, "record batch before schema")
	}
	if err := b.cfg.ctx.Err(); err != nil {
		return err
	}
	n := int(rec.NumRows())
	if n == 0 {
		return nil
	}
	if err := b.reserve(int64(b.ds.N) + int64(n)); err != nil {
		return err
	}
	row0 := b.ds.N
	cols := make([]arrow.Array, 0, len(b.featCols)+1)
	for _, c := range append([]int{b.labelCol}, b.featCols...) {
		if c >= int(rec.NumCols()) {
			return fileErr(b.file, ErrFormat, "record batch has %d columns, schema has more", rec.NumCols())
		}
		col := rec.Column(c)
		if col.Len() != n {
			return fieldErr(b.file, "column", rec.ColumnName(c), ErrFormat, "has %d rows, record batch has %d", col.Len(), n)
		}
		if err := array.ValidateFull(col); err != nil {
			return fieldErr(b.file, "column", rec.ColumnName(c), ErrFormat, "corrupt array: %w", err)
		}
		if i := firstNull(col, 0, n); i >= 0 {
			return fieldErr(b.file, "column", rec.ColumnName(c), ErrFormat, "row %d is null", row0+i)
		}
		cols = append(cols, col)
	}

	// Label.
	labelName := rec.ColumnName(b.labelCol)
	y, ok := numericSlice(b.ds.Y, cols[0], 0, n)
	if !ok {
		return fieldErr(b.file, "column", labelName, ErrUnsupported, "label has type %s, want an integer or float type", cols[0].DataType())
	}
	for i := len(b.ds.Y); i < len(y); i++ {
		if bad := b.badValue(y[i]); bad != "" {
			return fieldErr(b.file, "column", labelName, ErrFormat, "row %d %s", i, bad)
		}
	}
	b.ds.Y = y

	// Features.
	if b.listCol {
		if err := b.addList(rec.ColumnName(b.featCols[0]), cols[1], n, row0); err != nil {
			return err
		}
	} else {
		if err := b.addColumns(rec, cols[1:], n, row0); err != nil {
			return err
		}
	}
	b.ds.N += n
	return nil
}

func (b *dsBuilder) addColumns(rec arrow.RecordBatch, cols []arrow.Array, n, row0 int) error {
	d := len(cols)
	x0 := len(b.ds.X)
	b.ds.X = append(b.ds.X, make([]float64, n*d)...)
	var buf []float64
	for j, col := range cols {
		var ok bool
		buf, ok = numericSlice(buf[:0], col, 0, n)
		if !ok {
			return fieldErr(b.file, "column", rec.ColumnName(b.featCols[j]), ErrUnsupported, "feature has type %s, want a number type", col.DataType())
		}
		for i, v := range buf {
			if bad := b.badValue(v); bad != "" {
				return fieldErr(b.file, "column", rec.ColumnName(b.featCols[j]), ErrFormat, "row %d %s", row0+i, bad)
			}
			b.ds.X[x0+i*d+j] = v
		}
	}
	return nil
}

func (b *dsBuilder) addList(name string, col arrow.Array, n, row0 int) error {
	if ext, ok := col.(array.ExtensionArray); ok {
		col = ext.Storage()
	}
	list, ok := col.(array.ListLike)
	if !ok {
		return fieldErr(b.file, "column", name, ErrUnsupported, "feature column has type %s, want a list", col.DataType())
	}
	values := list.ListValues()
	for i := 0; i < n; i++ {
		start, end := list.ValueOffsets(i)
		w := int(end - start)
		if b.ds.D == 0 && b.varWidth {
			if w == 0 {
				return fieldErr(b.file, "column", name, ErrFormat, "row %d has no features", row0+i)
			}
			b.ds.D = w
			if err := b.reserve(int64(b.ds.N) + int64(n)); err != nil {
				return err
			}
		}
		if w != b.ds.D {
			return fieldErr(b.file, "column", name, ErrFormat, "inconsistent widths: row %d has %d features, earlier rows have %d", row0+i, w, b.ds.D)
		}
		if k := firstNull(values, int(start), int(end)); k >= 0 {
			return fieldErr(b.file, "column", name, ErrFormat, "row %d feature %d is null", row0+i, k-int(start))
		}
		x0 := len(b.ds.X)
		var ok bool
		b.ds.X, ok = numericSlice(b.ds.X, values, int(start), int(end))
		if b.ds.FeatureNames == nil {
			// The row's values exist, so the width is real.
			b.ds.FeatureNames = listFeatureNames(b.metaNames, name, b.ds.D)
		}
		if !ok {
			return fieldErr(b.file, "column", name, ErrUnsupported, "feature list has element type %s, want a number type", values.DataType())
		}
		for j, v := range b.ds.X[x0:] {
			if bad := b.badValue(v); bad != "" {
				return fieldErr(b.file, "column", name, ErrFormat, "row %d feature %d %s", row0+i, j, bad)
			}
		}
	}
	return nil
}

// readCSV reads a CSV file with a header row.
func (b *dsBuilder) readCSV(r io.Reader) error {
	in := newCSVInput(r)
	cr := csv.NewReader(in)
	cr.ReuseRecord = true
	line := 0 // the last line of the last record read
	next := func() ([]string, error) {
		rec, err := cr.Read()
		if errors.Is(err, errBound) {
			fe := fileErr(b.file, ErrFormat, "a CSV record longer than the limit of %s (docs/FORMATS.md, Input limits)", limits.Size(limits.CSVLineBytes))
			fe.Line = line + 1
			return nil, fe
		}
		if err != nil && err != io.EOF {
			return nil, csvErr(b.file, err)
		}
		if err == nil {
			in.startRecord(cr.InputOffset())
			line, _ = cr.FieldPos(len(rec) - 1)
		}
		return rec, err
	}
	header, err := next()
	if err == io.EOF {
		return fileErr(b.file, ErrFormat, "empty CSV file: a header row is required")
	}
	if err != nil {
		return err
	}
	header = append([]string(nil), header...)
	fields := make([]arrow.Field, len(header))
	for i, h := range header {
		fields[i] = arrow.Field{Name: strings.TrimSpace(h), Type: arrow.PrimitiveTypes.Float64}
	}
	schema := arrow.NewSchema(fields, nil)
	seen := map[string]bool{}
	for _, f := range fields {
		if seen[f.Name] {
			return fieldErr(b.file, "column", f.Name, ErrFormat, "duplicate column name in the CSV header")
		}
		seen[f.Name] = true
	}
	if err := b.plan(schema); err != nil {
		return err
	}
	d := b.ds.D
	for {
		rec, err := next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if b.ds.N%4096 == 0 {
			if err := b.cfg.ctx.Err(); err != nil {
				return err
			}
		}
		if err := b.reserve(int64(b.ds.N) + 1); err != nil {
			return err
		}
		if b.labelCol >= 0 {
			y, err := b.csvValue(cr, rec, b.labelCol, header[b.labelCol])
			if err != nil {
				return err
			}
			b.ds.Y = append(b.ds.Y, y)
		}
		for j := 0; j < d; j++ {
			c := b.featCols[j]
			v, err := b.csvValue(cr, rec, c, header[c])
			if err != nil {
				return err
			}
			b.ds.X = append(b.ds.X, v)
		}
		b.ds.N++
	}
}

// csvValue reads field c of the record cr just read, named col; an error
// carries the field's line and column (csv.Reader.FieldPos).
func (b *dsBuilder) csvValue(cr *csv.Reader, rec []string, c int, col string) (float64, error) {
	row := b.ds.N
	bad := func(kind error, format string, args ...any) (float64, error) {
		fe := fieldErr(b.file, "column", strings.TrimSpace(col), kind, format, args...)
		fe.Line, fe.Column = cr.FieldPos(c)
		return 0, fe
	}
	s := strings.TrimSpace(rec[c])
	if s == "" {
		return bad(ErrFormat, "row %d is empty (null)", row)
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		var ne *strconv.NumError
		if errors.As(err, &ne) && errors.Is(ne.Err, strconv.ErrRange) {
			return bad(ErrFormat, "row %d: %q is out of the float64 range", row, s)
		}
		return bad(ErrUnsupported, "row %d: %q is not a number (non-numeric column)", row, s)
	}
	if why := b.badValue(v); why != "" {
		return bad(ErrFormat, "row %d %s", row, why)
	}
	return v, nil
}

// badValue says what is wrong with a value of a data set ("is NaN", or
// with WithFloat32Range "is 1e+39, beyond the float32 range"), or ""
// when nothing is.
func (b *dsBuilder) badValue(v float64) string {
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return fmt.Sprintf("is %v", v)
	case b.cfg.float32Range && math.Abs(v) > math.MaxFloat32:
		return fmt.Sprintf("is %g, beyond the float32 range", v)
	}
	return ""
}

// reserve checks that a data set of rows rows of the planned width stays
// within limits.DatasetValues (a width not known yet counts as 1).
func (b *dsBuilder) reserve(rows int64) error {
	if rows > b.cfg.values/int64(max(b.ds.D, 1)) {
		return fileErr(b.file, ErrFormat, "%s rows of %d features: over the limit of %s values (docs/FORMATS.md, Input limits)",
			limits.Count(rows), b.ds.D, limits.Count(b.cfg.values))
	}
	return nil
}

// errBound is the error of a read past a limit (boundedReader, csvInput).
var errBound = errors.New("read past the limit")

// boundedReader reads at most n bytes from r; past them it fails with
// errBound.
type boundedReader struct {
	r io.Reader
	n int64
}

func (l *boundedReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errBound
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	k, err := l.r.Read(p)
	l.n -= int64(k)
	return k, err
}

// csvInput is what encoding/csv reads: r without a leading UTF-8 byte
// order mark (pandas' encoding="utf-8-sig" writes one, which the CSV
// reader would take for a bare quote's neighbour in a quoted header), and
// never more than limits.CSVLineBytes past the end of the last record, so
// that one endless line cannot take the memory: past it, a read fails
// with errBound.
type csvInput struct {
	r     *bufio.Reader
	read  int64 // bytes handed to the CSV reader
	limit int64
}

// csvSlack is how far the CSV reader reads ahead of the record it is in
// (the size of its buffer).
const csvSlack = 4096

func newCSVInput(r io.Reader) *csvInput {
	br := bufio.NewReader(r)
	if bom, err := br.Peek(3); err == nil && string(bom) == "\ufeff" {
		_, _ = br.Discard(3)
	}
	return &csvInput{r: br, limit: limits.CSVLineBytes + csvSlack}
}

// startRecord says the CSV reader has read up to offset, the end of a
// record: the next one may take limits.CSVLineBytes more.
func (c *csvInput) startRecord(offset int64) {
	c.limit = offset + limits.CSVLineBytes + csvSlack
}

func (c *csvInput) Read(p []byte) (int, error) {
	if c.read >= c.limit {
		return 0, errBound
	}
	if int64(len(p)) > c.limit-c.read {
		p = p[:c.limit-c.read]
	}
	n, err := c.r.Read(p)
	c.read += int64(n)
	return n, err
}

// csvErr is the error of a CSV the reader could not split into records,
// at the line and column the reader reports.
func csvErr(file string, err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		fe := fileErr(file, ErrFormat, "CSV: %w", pe.Err)
		fe.Line, fe.Column = pe.Line, pe.Column
		return fe
	}
	return fileErr(file, ErrFormat, "CSV: %w", err)
}

// validateDataset checks the invariants WriteDataset relies on.
func validateDataset(file string, ds *Dataset) error {
	switch {
	case ds == nil:
		return fileErr(file, ErrFormat, "nil dataset")
	case ds.N <= 0 || ds.D <= 0:
		return fileErr(file, ErrFormat, "empty dataset: N=%d, D=%d", ds.N, ds.D)
	case ds.N > maxInt/ds.D || len(ds.X) != ds.N*ds.D:
		return fileErr(file, ErrFormat, "len(X) = %d, want N*D = %d*%d", len(ds.X), ds.N, ds.D)
	case len(ds.Y) != ds.N:
		return fileErr(file, ErrFormat, "len(Y) = %d, want N = %d", len(ds.Y), ds.N)
	case len(ds.FeatureNames) != 0 && len(ds.FeatureNames) != ds.D:
		return fileErr(file, ErrFormat, "%d feature names for D = %d", len(ds.FeatureNames), ds.D)
	}
	for k, v := range ds.X {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fileErr(file, ErrFormat, "X row %d feature %d is %v", k/ds.D, k%ds.D, v)
		}
	}
	for i, v := range ds.Y {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fileErr(file, ErrFormat, "Y row %d is %v", i, v)
		}
	}
	return nil
}

// WriteDataset writes ds to path, atomically, in the format its extension
// names (as ReadDataset chooses). Arrow and Parquet files hold the features
// as WithFeatureLayout says (default: a fixed_size_list<float32> column
// named "features"; float64 with WithFloat64Features) and the target in the
// column named by WithLabel (default "label"): int64 when every target is
// an integer of magnitude below 2^53, float64 otherwise. CSV files hold
// one column per feature and the label last, every value written in the
// shortest form that reads back exactly. A float64 feature that does not fit
// float32 is an error unless WithFloat64Features is given.
func WriteDataset(path string, ds *Dataset, opts ...Option) error {
	cfg := newConfig(opts)
	format, err := datasetFormat(path)
	if err != nil {
		return err
	}
	if err := validateDataset(path, ds); err != nil {
		return err
	}
	names := ds.FeatureNames
	if len(names) == 0 {
		names = make([]string, ds.D)
		for j := range names {
			names[j] = "f" + strconv.Itoa(j)
		}
	}
	if format == fmtCSV || format == fmtCSVGzip || cfg.layout == LayoutColumns {
		seen := map[string]bool{cfg.label: true}
		for _, n := range names {
			if seen[n] || n == "" {
				return fieldErr(path, "column", n, ErrFormat, "feature name is empty, repeated or the label's")
			}
			seen[n] = true
		}
	}
	if !cfg.float64 && format != fmtCSV && format != fmtCSVGzip {
		for k, v := range ds.X {
			if math.Abs(v) > math.MaxFloat32 {
				return fileErr(path, ErrFormat, "X row %d feature %d (%g) does not fit float32 (use WithFloat64Features)", k/ds.D, k%ds.D, v)
			}
		}
	}
	switch format {
	case fmtCSV, fmtCSVGzip:
		return WriteFileAtomic(path, func(w io.Writer) error {
			if format == fmtCSV {
				return writeCSV(w, ds, names, cfg.label)
			}
			zw := gzip.NewWriter(w)
			if err := writeCSV(zw, ds, names, cfg.label); err != nil {
				return err
			}
			return zw.Close()
		})
	}
	schema, err := datasetSchema(ds, names, cfg, format == fmtParquet)
	if err != nil {
		return err
	}
	return WriteFileAtomic(path, func(w io.Writer) error {
		var (
			write func(arrow.RecordBatch) error
			close func() error
		)
		switch format {
		case fmtIPC:
			fw, err := ipc.NewFileWriter(w, ipc.WithSchema(schema), ipc.WithAllocator(cfg.alloc))
			if err != nil {
				return err
			}
			write, close = fw.Write, fw.Close
		case fmtStream:
			sw := ipc.NewWriter(w, ipc.WithSchema(schema), ipc.WithAllocator(cfg.alloc))
			write, close = sw.Write, sw.Close
		case fmtParquet:
			pw, err := pqarrow.NewFileWriter(schema, w, parquet.NewWriterProperties(parquet.WithAllocator(cfg.alloc)),
				pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema(), pqarrow.WithAllocator(cfg.alloc)))
			if err != nil {
				return err
			}
			write, close = pw.Write, pw.Close
		}
		for start := 0; start < ds.N; start += cfg.batchRows {
			end := min(start+cfg.batchRows, ds.N)
			rec, err := datasetRecord(schema, ds, start, end, cfg)
			if err != nil {
				_ = close()
				return err
			}
			err = write(rec)
			rec.Release()
			if err != nil {
				_ = close()
				return err
			}
		}
		return close()
	})
}

// integralLabels reports whether every y is an integer below 2^53 in
// magnitude, so int64 stores it exactly.
func integralLabels(y []float64) bool {
	for _, v := range y {
		if v != math.Trunc(v) || math.Abs(v) >= 1<<53 {
			return false
		}
	}
	return true
}

// datasetSchema returns the schema WriteDataset writes. For Parquet, whose
// arrow-go writer cannot encode an extension column, a tensor column is
// written as its fixed_size_list storage carrying the extension's IPC field
// metadata: the stored Arrow schema is then the one pyarrow writes, and
// readers (pyarrow, and arrow-go with the type registered) restore the
// extension type.
func datasetSchema(ds *Dataset, names []string, cfg *config, parquetStorage bool) (*arrow.Schema, error) {
	var vt arrow.DataType = arrow.PrimitiveTypes.Float32
	if cfg.float64 {
		vt = arrow.PrimitiveTypes.Float64
	}
	var lt arrow.DataType = arrow.PrimitiveTypes.Float64
	if integralLabels(ds.Y) {
		lt = arrow.PrimitiveTypes.Int64
	}
	var fields []arrow.Field
	var md *arrow.Metadata
	switch cfg.layout {
	case LayoutList, LayoutTensor:
		if cfg.label == "features" {
			return nil, fieldErr("", "column", cfg.label, ErrFormat, "the label cannot be named \"features\" in this layout")
		}
		if ds.D > math.MaxInt32 {
			return nil, fileErr("", ErrFormat, "D = %d is too wide for a fixed_size_list", ds.D)
		}
		f := arrow.Field{Name: "features", Type: arrow.FixedSizeListOf(int32(ds.D), vt)}
		if cfg.layout == LayoutTensor {
			t, err := NewFixedShapeTensorType(vt, []int64{int64(ds.D)}, nil, nil)
			if err != nil {
				return nil, err
			}
			if parquetStorage {
				f.Metadata = arrow.NewMetadata(
					[]string{ipc.ExtensionTypeKeyName, ipc.ExtensionMetadataKeyName},
					[]string{t.ExtensionName(), t.Serialize()})
			} else {
				f.Type = t
			}
		}
		fields = append(fields, f)
		if len(ds.FeatureNames) == ds.D {
			js, _ := json.Marshal(ds.FeatureNames)
			m := arrow.NewMetadata([]string{MetaFeatureNames}, []string{string(js)})
			md = &m
		}
	case LayoutColumns:
		for _, n := range names {
			fields = append(fields, arrow.Field{Name: n, Type: vt})
		}
	default:
		return nil, fmt.Errorf("arrowio: unknown feature layout %d", cfg.layout)
	}
	fields = append(fields, arrow.Field{Name: cfg.label, Type: lt})
	return arrow.NewSchema(fields, md), nil
}

// datasetRecord builds the record batch of rows [start, end). The caller
// releases it.
func datasetRecord(schema *arrow.Schema, ds *Dataset, start, end int, cfg *config) (arrow.RecordBatch, error) {
	rb := array.NewRecordBuilder(cfg.alloc, schema)
	defer rb.Release()
	x := ds.X[start*ds.D : end*ds.D]
	appendVals := func(bld array.Builder, vals []float64) {
		switch vb := bld.(type) {
		case *array.Float32Builder:
			vb.Reserve(len(vals))
			for _, v := range vals {
				vb.UnsafeAppend(float32(v))
			}
		case *array.Float64Builder:
			vb.AppendValues(vals, nil)
		}
	}
	nf := schema.NumFields() - 1
	switch cfg.layout {
	case LayoutList, LayoutTensor:
		fb := rb.Field(0)
		if eb, ok := fb.(*array.ExtensionBuilder); ok {
			fb = eb.StorageBuilder()
		}
		lb := fb.(*array.FixedSizeListBuilder)
		for range end - start {
			lb.Append(true)
		}
		appendVals(lb.ValueBuilder(), x)
	case LayoutColumns:
		col := make([]float64, end-start)
		for j := range nf {
			for i := range col {
				col[i] = x[i*ds.D+j]
			}
			appendVals(rb.Field(j), col)
		}
	}
	switch lb := rb.Field(nf).(type) {
	case *array.Int64Builder:
		for _, v := range ds.Y[start:end] {
			lb.Append(int64(v))
		}
	case *array.Float64Builder:
		lb.AppendValues(ds.Y[start:end], nil)
	}
	return rb.NewRecordBatch(), nil
}

func writeCSV(w io.Writer, ds *Dataset, names []string, label string) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(append(append([]string(nil), names...), label)); err != nil {
		return err
	}
	rec := make([]string, ds.D+1)
	for i := range ds.N {
		for j := range ds.D {
			rec[j] = strconv.FormatFloat(ds.X[i*ds.D+j], 'g', -1, 64)
		}
		rec[ds.D] = strconv.FormatFloat(ds.Y[i], 'g', -1, 64)
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}
