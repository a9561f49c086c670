package arrowio

import (
	"context"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/strata-ml/strata/internal/limits"
)

// Option configures the readers and writers of this package: ReadModel,
// ReadModelFrom, MapModel and ReadModelStream; ReadDataset,
// ReadDatasetFrom, WriteDataset, EncodeDatasetStream and ReadLogits. Each
// WithXxx says which of them it applies to; the others ignore it.
type Option func(*config)

type config struct {
	alloc memory.Allocator
	ctx   context.Context
	mmap  bool
	// Datasets.
	label     string
	optLabel  bool // a CSV without the label column reads with Y nil
	features  []string
	layout    FeatureLayout
	float64   bool
	batchRows int
	// float32Range refuses values beyond the float32 range on reading.
	float32Range bool
	// decompressed bounds what a .csv.gz decompresses to; values the
	// values of a data set.
	decompressed, values int64
}

func newConfig(opts []Option) *config {
	cfg := &config{alloc: memory.DefaultAllocator, ctx: context.Background(), mmap: true, label: "label", layout: LayoutList, batchRows: 1 << 16,
		decompressed: limits.DecompressedBytes, values: limits.DatasetValues}
	for _, o := range opts {
		if o != nil {
			o(cfg)
		}
	}
	return cfg
}

// WithAllocator sets the allocator for the Arrow buffers arrow-go
// allocates while reading or writing (decompressed bodies, dictionaries,
// record batch data). Every such buffer is released before the call
// returns: a returned Model or Dataset holds only Go memory. The default
// is memory.DefaultAllocator. All readers and writers.
func WithAllocator(mem memory.Allocator) Option {
	return func(c *config) {
		if mem != nil {
			c.alloc = mem
		}
	}
}

// WithContext makes ReadDataset, ReadDatasetFrom and ReadLogits stop with
// ctx's error when ctx is done: they check it between record batches and
// every few thousand CSV rows. The default never stops.
func WithContext(ctx context.Context) Option {
	return func(c *config) {
		if ctx != nil {
			c.ctx = ctx
		}
	}
}

// WithMmap sets whether ReadModel and MapModel memory-map the file (the
// default, true) or read it into memory first. Mapping avoids holding a
// second copy of a large checkpoint; reading is safer on network file
// systems where another process may truncate the file while it is mapped.
func WithMmap(enabled bool) Option {
	return func(c *config) { c.mmap = enabled }
}

// WithLabel names the target column of a dataset (the labels of a logits
// file). The default is "label".
func WithLabel(name string) Option {
	return func(c *config) { c.label = name }
}

// WithFeatureColumns names the feature columns ReadDataset reads: one
// list or tensor column, or numeric columns in the order given. The
// default is every column other than the label.
func WithFeatureColumns(names ...string) Option {
	return func(c *config) { c.features = append([]string(nil), names...) }
}

// WithFeatureLayout sets how WriteDataset and EncodeDatasetStream store
// features in Arrow and Parquet files. The default is LayoutList.
func WithFeatureLayout(l FeatureLayout) Option {
	return func(c *config) { c.layout = l }
}

// WithFloat64Features makes WriteDataset and EncodeDatasetStream store
// features as float64. The default is float32, the precision strata
// trains in.
func WithFloat64Features() Option {
	return func(c *config) { c.float64 = true }
}

// WithFloat32Range makes ReadDataset, ReadDatasetFrom and ReadLogits
// refuse a value beyond the float32 range (its magnitude above
// math.MaxFloat32) as they refuse a NaN: in float32 it is an infinity.
// The default accepts every finite value.
func WithFloat32Range() Option {
	return func(c *config) { c.float32Range = true }
}

// withDecompressedBytes sets the bound of a .csv.gz (tests).
func withDecompressedBytes(n int64) Option {
	return func(c *config) { c.decompressed = n }
}

// withDatasetValues sets the bound of a data set's values (tests).
func withDatasetValues(n int64) Option {
	return func(c *config) { c.values = n }
}

// withBatchRows sets the rows per record batch when writing (tests).
func withBatchRows(n int) Option {
	return func(c *config) { c.batchRows = max(n, 1) }
}

// withOptionalLabel lets a CSV file lack the label column: its rows are
// then all features and Y is nil (ReadLogits of a CSV).
func withOptionalLabel() Option {
	return func(c *config) { c.optLabel = true }
}
