package arrowio

import (
	"sort"
	"strconv"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// StateVersion is the version of the training state format, stored as the
// schema metadata value MetaStateVersion.
const StateVersion = 1

// MetaStateVersion is the schema metadata key of a state file's version.
const MetaStateVersion = "strata.state_version"

// StateVector is one named vector of a training checkpoint's exact state:
// a parameter in the precision it is trained in, an optimiser moment.
type StateVector struct {
	Name string
	Data []float64
}

// stateSchema returns the schema of a state file with metadata meta.
func stateSchema(meta map[string]string) *arrow.Schema {
	keys := []string{MetaStateVersion}
	vals := []string{strconv.Itoa(StateVersion)}
	extra := make([]string, 0, len(meta))
	for k := range meta {
		extra = append(extra, k)
	}
	sort.Strings(extra)
	for _, k := range extra {
		keys = append(keys, k)
		vals = append(vals, meta[k])
	}
	md := arrow.NewMetadata(keys, vals)
	return arrow.NewSchema([]arrow.Field{
		{Name: colName, Type: arrow.BinaryTypes.String},
		{Name: colData, Type: arrow.LargeListOf(arrow.PrimitiveTypes.Float64)},
	}, &md)
}

// WriteState writes vectors and string metadata (keys other than
// MetaStateVersion) to path as an Arrow IPC file with columns name (utf8)
// and data (large_list<float64>), atomically (see WriteFileAtomic). Values
// are stored bit for bit, so a float32 or float64 training state
// round-trips exactly. Names must be non-empty and unique.
func WriteState(path string, meta map[string]string, vectors []StateVector) error {
	seen := make(map[string]bool, len(vectors))
	for _, v := range vectors {
		if v.Name == "" || seen[v.Name] {
			return fieldErr(path, "tensor", v.Name, ErrFormat, "state vector name is empty or repeated")
		}
		seen[v.Name] = true
	}
	if _, ok := meta[MetaStateVersion]; ok {
		return fieldErr(path, "metadata", MetaStateVersion, ErrFormat, "is reserved")
	}
	schema := stateSchema(meta)
	return writeTable(path, schema, len(vectors), func(mem memory.Allocator, start, end int) arrow.RecordBatch {
		b := array.NewRecordBuilder(mem, schema)
		defer b.Release()
		names := b.Field(0).(*array.StringBuilder)
		data := b.Field(1).(*array.LargeListBuilder)
		vals := data.ValueBuilder().(*array.Float64Builder)
		for _, v := range vectors[start:end] {
			names.Append(v.Name)
			data.Append(true)
			vals.AppendValues(v.Data, nil)
		}
		return b.NewRecordBatch()
	})
}

// ReadState reads a file written by WriteState and returns its metadata
// (without MetaStateVersion) and vectors in file order. Problems are
// *FormatError.
func ReadState(path string) (map[string]string, []StateVector, error) {
	meta := map[string]string{}
	var vectors []StateVector
	var iName, iData int
	err := readTable(path, func(schema *arrow.Schema) error {
		v, ok := metaValue(schema, MetaStateVersion)
		if !ok {
			return fieldErr(path, "metadata", MetaStateVersion, ErrFormat, "missing (not a strata state file)")
		}
		if v != strconv.Itoa(StateVersion) {
			return fieldErr(path, "metadata", MetaStateVersion, ErrUnsupported, "is %q, this build reads %q", v, strconv.Itoa(StateVersion))
		}
		md := schema.Metadata()
		for i, k := range md.Keys() {
			if k != MetaStateVersion {
				meta[strings.Clone(k)] = strings.Clone(md.Values()[i])
			}
		}
		var err error
		if iName, err = tableColumn(path, schema, colName, arrow.BinaryTypes.String); err != nil {
			return err
		}
		iData, err = tableColumn(path, schema, colData, arrow.LargeListOf(arrow.PrimitiveTypes.Float64))
		return err
	}, func(rec arrow.RecordBatch) error {
		for _, i := range []int{iName, iData} {
			if n := rec.Column(i).NullN(); n > 0 {
				return fieldErr(path, "column", rec.ColumnName(i), ErrFormat, "has %d null rows", n)
			}
		}
		names := rec.Column(iName).(*array.String)
		data := rec.Column(iData).(*array.LargeList)
		vals, ok := data.ListValues().(*array.Float64)
		if !ok {
			return fileErr(path, ErrFormat, "state data column has unexpected value type")
		}
		if vals.NullN() > 0 {
			return fieldErr(path, "column", colData, ErrFormat, "has null values")
		}
		all := vals.Float64Values()
		for i := 0; i < int(rec.NumRows()); i++ {
			d0, d1 := data.ValueOffsets(i)
			vectors = append(vectors, StateVector{Name: strings.Clone(names.Value(i)), Data: clone(all[d0:d1])})
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return meta, vectors, nil
}
