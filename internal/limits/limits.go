// Package limits is the one table of the bounds strata puts on what a
// user can feed it: sizes of files read whole, lengths, counts and the
// settings whose cost grows without bound. Each bound keeps the memory
// and time a hostile or mistaken input can take in proportion to what
// strata can do with it; an input over a bound is bad input (exit 2) with
// a message naming the file, the bound and its value. docs/FORMATS.md
// lists them (a test checks that it lists these values).
package limits

import (
	"strconv"
	"strings"
)

// The bounds. Sizes are in bytes.
const (
	// ConfigBytes bounds a YAML or JSON file a user writes by hand: a
	// pilot or sweep config, a gate policy, a sweep's --candidates @FILE.
	ConfigBytes = 1 << 20
	// PolicyRules bounds the rules of a gate policy.
	PolicyRules = 1000
	// JSONBytes bounds a JSON file strata wrote and reads back:
	// validation.json, convert.json, sweep.json, lr_sweep.json and a
	// checkpoint's state.json.
	JSONBytes = 64 << 20
	// CSVLineBytes bounds one record (line) of a CSV data set.
	CSVLineBytes = 8 << 20
	// DecompressedBytes bounds what a .csv.gz data set decompresses to.
	DecompressedBytes = 2 << 30
	// DatasetValues bounds the values (rows x features) of a data set, in
	// any format: a compressed Arrow, Parquet or gzip file holds more
	// values than its size suggests.
	DatasetValues = 1 << 28
	// Tensors bounds the tensors of a model file (safetensors header
	// entries, rows of an Arrow model file).
	Tensors = 1 << 16
	// InitParams bounds the parameters of a fresh model finetune --init
	// creates, checked before anything is allocated.
	InitParams = 1 << 28
	// TrainSteps bounds the steps of one training run (epochs times
	// steps per epoch): the training log holds a row per step.
	TrainSteps = 10_000_000
	// Bootstrap bounds validate's bootstrap resamples per interval.
	Bootstrap = 100_000
	// NoiseLevels bounds validate's noise levels, RobustnessDraws its
	// weight-noise draws per layer and LatencyRuns its timed (and its
	// warm-up) runs per model: each is a pass over the data.
	NoiseLevels     = 100
	RobustnessDraws = 100
	LatencyRuns     = 10_000
)

// Limit is one row of the table, as docs/FORMATS.md shows it.
type Limit struct {
	// Name is how the docs and the error messages call the bound.
	Name string
	// Value is the bound; Bytes says it is a size in bytes.
	Value int64
	Bytes bool
}

// Table lists every bound of this package, in the order of the docs.
var Table = []Limit{
	{"config file (pilot, sweep, policy, --candidates @FILE)", ConfigBytes, true},
	{"gate policy rules", PolicyRules, false},
	{"JSON file strata reads back (validation.json, convert.json, sweep.json, lr_sweep.json, checkpoint state)", JSONBytes, true},
	{"CSV record (line)", CSVLineBytes, true},
	{".csv.gz decompressed", DecompressedBytes, true},
	{"data set values (rows x features)", DatasetValues, false},
	{"tensors of a model file", Tensors, false},
	{"parameters of a finetune --init model", InitParams, false},
	{"training steps of one run (epochs x steps per epoch)", TrainSteps, false},
	{"bootstrap resamples (validate --bootstrap)", Bootstrap, false},
	{"noise levels (validate --noise)", NoiseLevels, false},
	{"weight-noise draws per layer (validate --robustness-draws)", RobustnessDraws, false},
	{"timed runs, and warm-up runs, per model (validate --latency-runs, --latency-warmup)", LatencyRuns, false},
}

// String formats the bound as the docs and the messages show it: a size
// in the largest binary unit that divides it ("8 MiB"), a count with
// thousands separators ("65,536").
func (l Limit) String() string {
	if l.Bytes {
		return Size(l.Value)
	}
	return Count(l.Value)
}

// Size formats n bytes in the largest binary unit that divides it.
func Size(n int64) string {
	for _, u := range []struct {
		unit  string
		shift uint
	}{{"GiB", 30}, {"MiB", 20}, {"KiB", 10}} {
		if n >= 1<<u.shift && n%(1<<u.shift) == 0 {
			return Count(n>>u.shift) + " " + u.unit
		}
	}
	return Count(n) + " bytes"
}

// Count formats n with thousands separators.
func Count(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}
