package stages

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/compute"
	"github.com/strata-ml/strata/internal/inputerr"
	"github.com/strata-ml/strata/internal/inputfile"
	"github.com/strata-ml/strata/internal/limits"
	"github.com/strata-ml/strata/internal/provenance"
	"github.com/strata-ml/strata/modelmap"
)

// A finetune checkpoint lives in OUT/checkpoint:
//
//	checkpoint/CURRENT               the name of the complete checkpoint, e.g. "step-000000120"
//	checkpoint/step-000000120/
//	    model.arrow                  the current weights, a model file (strata inspect reads it)
//	    state.arrow                  the exact state: parameters, optimiser moments and
//	                                 best-validation weights as float64 vectors
//	    train_log.arrow              the training log so far
//	    state.json                   step, early-stopping state, the config and input hashes
//
// A checkpoint is written into a fresh temporary directory, renamed to its
// step-N name, and only then published by replacing CURRENT atomically;
// older step directories are removed after. A process killed at any moment
// leaves CURRENT naming a complete checkpoint (or no CURRENT at all).

const (
	checkpointCurrent = "CURRENT"
	checkpointVersion = 1
)

var checkpointName = regexp.MustCompile(`^step-[0-9]{9,}$`)

// checkpointDir returns the checkpoint directory of an output directory.
func checkpointDir(out string) string { return filepath.Join(out, "checkpoint") }

// checkpointMeta is state.json.
type checkpointMeta struct {
	SchemaVersion int           `json:"schema_version"`
	Step          int           `json:"step"`
	Stopped       bool          `json:"stopped"`
	Best          *EpochMetrics `json:"best,omitempty"`
	SinceBest     int           `json:"since_best"`
	TrainSeconds  float64       `json:"train_seconds"`
	// Config is the run's config without paths and the settings that do
	// not change the result (see resumeKey); Inputs holds the hashes.
	Config FinetuneConfig `json:"config"`
	Inputs FinetuneInputs `json:"inputs"`
}

// resumeKey returns the part of cfg a checkpoint must match: everything
// that determines the result. Paths are left out (the input hashes are
// compared instead, so a retried pod may mount its inputs elsewhere), and
// so are Resume, CheckpointEvery and the logging hooks.
func (cfg FinetuneConfig) resumeKey() FinetuneConfig {
	c := cfg
	c.Model, c.Train, c.Valid, c.Out = "", "", "", ""
	c.Resume = false
	c.CheckpointEvery = 0
	c.Logger, c.LogInterval, c.Progress = nil, 0, nil
	return c
}

// hashesOf returns inputs without paths.
func hashesOf(in FinetuneInputs) FinetuneInputs {
	out := FinetuneInputs{Train: provenance.File{SHA256: in.Train.SHA256}}
	if in.Model != nil {
		out.Model = &provenance.File{SHA256: in.Model.SHA256}
	}
	if in.Valid != nil {
		out.Valid = &provenance.File{SHA256: in.Valid.SHA256}
	}
	return out
}

// finished returns the result of a finished run in Out that p would
// reproduce (Out/finetune.json of the same config, resumeKey, and the
// same input hashes, with every output it names in place), or nil.
func (p *finetunePlan) finished() *FinetuneResult {
	names := p.outputNames()
	b, err := inputfile.ReadFile(filepath.Join(p.cfg.Out, names.Report), limits.JSONBytes, "JSON file")
	if err != nil {
		return nil
	}
	var res FinetuneResult
	if json.Unmarshal(b, &res) != nil || res.Outputs != names {
		return nil
	}
	same := func(a, b any) bool {
		ja, err1 := json.Marshal(a)
		jb, err2 := json.Marshal(b)
		return err1 == nil && err2 == nil && bytes.Equal(ja, jb)
	}
	if !same(res.Config.resumeKey(), p.cfg.resumeKey()) || !same(hashesOf(res.Inputs), hashesOf(p.inputs)) {
		return nil
	}
	for _, f := range []string{names.Model, names.Materialized, names.Log} {
		if st, err := os.Stat(filepath.Join(p.cfg.Out, f)); err != nil || !st.Mode().IsRegular() {
			return nil
		}
	}
	return &res
}

// Prefixes of the state vectors of state.arrow; each is followed by a
// parameter name.
const (
	vecParam = "param/"
	vecM     = "optimizer.m/"
	vecV     = "optimizer.v/"
	vecBest  = "best/"
	vecMult  = "optimizer.multipliers"
)

// writeCheckpoint writes the run's state to Out/checkpoint (see above).
func writeCheckpoint[T compute.Float](p *finetunePlan, net *compute.Network[T], tr *compute.Trainer[T], st *trainState[T]) (err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("finetune: write checkpoint: %w", err)
		}
	}()
	dir := checkpointDir(p.cfg.Out)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(dir, ".tmp-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	m := modelmap.Model(net, p.arch)
	if p.lm != nil {
		m.Meta = p.lm.model.Meta
	}
	if err := arrowio.WriteModel(filepath.Join(tmp, "model.arrow"), m); err != nil {
		return err
	}
	params := net.Params()
	opt := tr.Optimizer().State()
	var vecs []arrowio.StateVector
	add := func(name string, data []T) {
		vecs = append(vecs, arrowio.StateVector{Name: name, Data: toFloat64(data)})
	}
	for i, q := range params {
		add(vecParam+q.Name, q.Data)
		if opt.M != nil && opt.M[i] != nil {
			add(vecM+q.Name, opt.M[i])
		}
		if opt.V != nil && opt.V[i] != nil {
			add(vecV+q.Name, opt.V[i])
		}
		if st.bestParams != nil {
			add(vecBest+q.Name, st.bestParams[i])
		}
	}
	vecs = append(vecs, arrowio.StateVector{Name: vecMult, Data: slices.Clone(opt.Multipliers)})
	if err := arrowio.WriteState(filepath.Join(tmp, "state.arrow"), nil, vecs); err != nil {
		return err
	}
	if err := arrowio.WriteTrainLog(filepath.Join(tmp, "train_log.arrow"), &st.log); err != nil {
		return err
	}
	meta := checkpointMeta{
		SchemaVersion: checkpointVersion, Step: st.step, Stopped: st.stopped, Best: st.best,
		SinceBest: st.sinceBest, TrainSeconds: st.trainSeconds,
		Config: p.cfg.resumeKey(), Inputs: hashesOf(p.inputs),
	}
	if err := writeJSON(filepath.Join(tmp, "state.json"), meta); err != nil {
		return err
	}

	name := fmt.Sprintf("step-%09d", st.step)
	final := filepath.Join(dir, name)
	if err := os.RemoveAll(final); err != nil {
		return err
	}
	if err := os.Rename(tmp, final); err != nil {
		return err
	}
	if err := arrowio.SyncDir(dir); err != nil {
		return err
	}
	if err := arrowio.WriteFileAtomic(filepath.Join(dir, checkpointCurrent), func(w io.Writer) error {
		_, err := io.WriteString(w, name+"\n")
		return err
	}); err != nil {
		return err
	}
	st.checkpointed = st.step
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil // published; the old directories stay until the next checkpoint
	}
	for _, e := range entries {
		if e.Name() != name && e.Name() != checkpointCurrent {
			_ = os.RemoveAll(filepath.Join(dir, e.Name()))
		}
	}
	return nil
}

// loadedCheckpoint is a checkpoint read back for --resume.
type loadedCheckpoint[T compute.Float] struct {
	net   *compute.Network[T]
	opt   compute.OptimizerState[T]
	state *trainState[T]
}

// loadCheckpoint reads Out/checkpoint; it returns nil and no error when
// there is none. A checkpoint of another config or other inputs, or one
// that does not read, is an input error.
func loadCheckpoint[T compute.Float](p *finetunePlan) (*loadedCheckpoint[T], error) {
	dir := checkpointDir(p.cfg.Out)
	cur, err := os.ReadFile(filepath.Join(dir, checkpointCurrent))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("finetune: read checkpoint: %w", err)
	}
	name := strings.TrimSpace(string(cur))
	if !checkpointName.MatchString(name) {
		return nil, inputerr.Errorf("checkpoint %s: %s names %q, not a checkpoint", dir, checkpointCurrent, name)
	}
	sub := filepath.Join(dir, name)
	bad := func(format string, args ...any) error {
		return inputerr.Errorf("checkpoint %s: %s", sub, fmt.Sprintf(format, args...))
	}

	raw, err := inputfile.ReadFile(filepath.Join(sub, "state.json"), limits.JSONBytes, "JSON file")
	if err != nil {
		return nil, bad("%v", err)
	}
	var meta checkpointMeta
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&meta); err != nil {
		return nil, bad("state.json: %v", err)
	}
	if meta.SchemaVersion != checkpointVersion {
		return nil, bad("state.json: schema_version %d, this build reads %d", meta.SchemaVersion, checkpointVersion)
	}
	if diff := configDiff(meta.Config, p.cfg.resumeKey()); diff != "" {
		return nil, inputerr.Fieldf("", "checkpoint %s was made with other settings (%s); run with the original settings, or without {resume} to start over", dir, diff)
	}
	if got, want := hashesOf(p.inputs), meta.Inputs; !sameInputs(got, want) {
		return nil, inputerr.Fieldf("", "checkpoint %s was made from other input files (their SHA-256 differ); run without {resume} to start over", dir)
	}
	if meta.Step < 1 || meta.Step > p.totalSteps {
		return nil, bad("step %d is outside [1, %d]", meta.Step, p.totalSteps)
	}

	m, err := arrowio.ReadModel(filepath.Join(sub, "model.arrow"))
	if err != nil {
		return nil, bad("%v", err)
	}
	net, err := modelmap.Network[T](m)
	if err != nil {
		return nil, bad("model.arrow: %v", err)
	}
	_, vecs, err := arrowio.ReadState(filepath.Join(sub, "state.arrow"))
	if err != nil {
		return nil, bad("%v", err)
	}
	byName := make(map[string][]float64, len(vecs))
	for _, v := range vecs {
		byName[v.Name] = v.Data
	}
	params := net.Params()
	ck := &loadedCheckpoint[T]{net: net}
	ck.opt = compute.OptimizerState[T]{Kind: p.cfg.Optimizer, Step: int64(meta.Step), M: make([][]T, len(params))}
	if p.cfg.Optimizer == compute.OptimizerAdamW {
		ck.opt.V = make([][]T, len(params))
	}
	st := &trainState[T]{
		step: meta.Step, stopped: meta.Stopped, best: meta.Best, sinceBest: meta.SinceBest,
		trainSeconds: meta.TrainSeconds, checkpointed: meta.Step,
	}
	vector := func(name string, n int, required bool) ([]T, error) {
		v, ok := byName[name]
		if !ok {
			if required {
				return nil, bad("state.arrow: missing %q", name)
			}
			return nil, nil
		}
		if len(v) != n {
			return nil, bad("state.arrow: %q has %d values, want %d", name, len(v), n)
		}
		out := make([]T, n)
		for i, x := range v {
			out[i] = T(x)
		}
		return out, nil
	}
	hasBest := false
	for _, v := range vecs {
		hasBest = hasBest || strings.HasPrefix(v.Name, vecBest)
	}
	if hasBest {
		st.bestParams = make([][]T, len(params))
	}
	for i, q := range params {
		v, err := vector(vecParam+q.Name, len(q.Data), true)
		if err != nil {
			return nil, err
		}
		copy(q.Data, v)
		if ck.opt.M[i], err = vector(vecM+q.Name, len(q.Data), false); err != nil {
			return nil, err
		}
		if ck.opt.V != nil {
			if ck.opt.V[i], err = vector(vecV+q.Name, len(q.Data), false); err != nil {
				return nil, err
			}
		}
		if hasBest {
			if st.bestParams[i], err = vector(vecBest+q.Name, len(q.Data), true); err != nil {
				return nil, err
			}
		}
	}
	mult, ok := byName[vecMult]
	if !ok || len(mult) != len(params) {
		return nil, bad("state.arrow: %q missing or of the wrong length", vecMult)
	}
	ck.opt.Multipliers = slices.Clone(mult)

	tl, err := arrowio.ReadTrainLog(filepath.Join(sub, "train_log.arrow"))
	if err != nil {
		return nil, bad("%v", err)
	}
	if len(tl.Rows) != meta.Step || !slices.Equal(tl.Layers, linearLayers(p.arch)) {
		return nil, bad("train_log.arrow has %d rows and layers %q, want %d rows and %q", len(tl.Rows), tl.Layers, meta.Step, linearLayers(p.arch))
	}
	st.log = *tl
	ck.state = st
	return ck, nil
}

// configDiff lists the JSON fields whose values differ between a and b,
// as "field: a -> b" pairs, or "" when they are equal.
func configDiff(a, b FinetuneConfig) string {
	var ma, mb map[string]any
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	if bytes.Equal(ja, jb) {
		return ""
	}
	_ = json.Unmarshal(ja, &ma)
	_ = json.Unmarshal(jb, &mb)
	keys := map[string]bool{}
	for k := range ma {
		keys[k] = true
	}
	for k := range mb {
		keys[k] = true
	}
	var diffs []string
	for k := range keys {
		va, _ := json.Marshal(ma[k])
		vb, _ := json.Marshal(mb[k])
		if !bytes.Equal(va, vb) {
			diffs = append(diffs, fmt.Sprintf("%s: %s -> %s", k, va, vb))
		}
	}
	sort.Strings(diffs)
	return strings.Join(diffs, ", ")
}

func sameInputs(a, b FinetuneInputs) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}

func toFloat64[T compute.Float](v []T) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}
