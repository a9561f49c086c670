package stages

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/compute"
	"github.com/strata-ml/strata/internal/inputerr"
	"github.com/strata-ml/strata/internal/provenance"
	"github.com/strata-ml/strata/validation"
)

// Validate compares a candidate model with its baseline (and optionally
// an equal-budget control) on evaluation data and writes
// Out/validation.json: every metric of PRODUCT.md section 4 for each
// model, the candidate's deltas with paired bootstrap 95% intervals and
// McNemar's exact test, and a per-layer view (docs/VALIDATION.md). Models
// of strata's MLP family run in-process; ONNX models of any architecture
// run in ONNX Runtime, which gives every metric that needs forward passes
// only. In logits mode it compares outputs computed elsewhere: the task
// metrics, the weight metrics of model files given beside the logits (or
// the parameter counts given), and every metric that needs a model to run
// not applicable, with the reason.
//
// The result is a function of the inputs and the config except the
// fields listed in VaryingFields. Bad input (a file that does not read,
// models that differ in task, inputs or outputs, data that does not fit
// them, a bad flag) returns an error wrapping ErrInput and writes nothing.
func Validate(ctx context.Context, cfg validation.Config) (*validation.Result, error) {
	start := time.Now()
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	out, err := claimOutput("validate", "out", cfg.Out)
	if err != nil {
		return nil, err
	}
	defer out.release()
	cfg.Noise = slices.Clone(cfg.Noise)
	slices.Sort(cfg.Noise)
	res := &validation.Result{
		SchemaVersion: validation.SchemaVersion, Tool: provenance.Version(), Config: cfg,
		Warnings: []string{}, Layers: []validation.Layer{}, VaryingFields: validation.VaryingFields,
	}
	ds, dataIn, err := readData(ctx, cfg.Data, cfg.Label)
	if err != nil {
		return nil, err
	}
	res.Inputs.Data = dataIn
	res.NExamples = ds.N

	run := &validateRun{cfg: &cfg, log: log, ds: ds, res: res}
	defer run.closeModels()
	if cfg.BaselineLogits != "" {
		res.Mode = validation.ModeLogits
		err = run.loadLogits(ctx)
		if err == nil {
			err = run.loadModels(ctx, true)
		}
	} else {
		res.Mode = validation.ModeModels
		err = run.loadModels(ctx, false)
	}
	if err != nil {
		return nil, err
	}
	if err := run.loadTrainLogs(ctx); err != nil {
		return nil, err
	}
	if err := run.loadLRSweep(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := run.evaluateModels(ctx); err != nil {
		return nil, err
	}
	run.assemble(ctx)
	if err := ctx.Err(); err != nil {
		return nil, err // the intervals stopped short
	}
	res.Outputs = validation.Outputs{Report: validation.FileName}
	res.WallSeconds = time.Since(start).Seconds()
	err = writeOutputs(cfg.Out, func(dir string) error {
		return writeJSON(filepath.Join(dir, res.Outputs.Report), res)
	})
	if err != nil {
		return nil, fmt.Errorf("validate: write %s: %w", cfg.Out, err)
	}
	log.Info("validate done", "out", cfg.Out, "mode", res.Mode, "examples", res.NExamples, "seconds", fmt.Sprintf("%.1f", res.WallSeconds))
	return res, nil
}

// Model sides, in the order of every [3] array below.
const (
	sideBaseline = iota
	sideCandidate
	sideControl
)

var sideNames = [3]string{"baseline", "candidate", "control"}

// validateRun is the state of one Validate call.
type validateRun struct {
	cfg *validation.Config
	log *slog.Logger
	ds  *arrowio.Dataset
	res *validation.Result
	// has[s] says whether side s is part of the run.
	has  [3]bool
	task compute.Task
	c    int // outputs
	// sigma is the per-feature standard deviation of the raw data.
	sigma  []float64
	models [3]*valModel
	// logits[s] are side s's outputs, N x c.
	logits [3][]float64
	evals  [3]*sideEval
	logs   [3]*arrowio.TrainLog
	// logReason[s] says why side s has no training log.
	logReason [3]string
	// jacIdx are the rows whose Jacobians are computed.
	jacIdx []int
	// lrSweep is the learning-rate sweep (nil: none).
	lrSweep *LRSweepFile
}

// loadModels reads the models, puts the data into each one's input space
// and checks that they fit each other and the data (evaluateModels
// computes their outputs). In the logits mode (weightsOnly) the models
// are read for their weights only.
func (r *validateRun) loadModels(ctx context.Context, weightsOnly bool) error {
	paths := [3]string{r.cfg.Baseline, r.cfg.Candidate, r.cfg.Control}
	ins := [3]**provenance.File{&r.res.Inputs.Baseline, &r.res.Inputs.Candidate, &r.res.Inputs.Control}
	for s, path := range paths {
		if path == "" {
			continue
		}
		m, err := loadValModel(ctx, path, r.cfg.Activation, r.cfg.Task)
		if err != nil {
			return err
		}
		r.models[s] = m
		in := m.input
		*ins[s] = &in
		if err := m.prepare(r.ds); err != nil {
			return err
		}
		if !weightsOnly {
			r.has[s] = true
		}
	}
	var ref *valModel
	for s, m := range r.models {
		if m == nil {
			continue
		}
		if ref == nil {
			ref = m
			continue
		}
		if err := sameInterface(ref, m, sideNames[s]); err != nil {
			return err
		}
		if ref.mlp != nil && m.mlp != nil && !sameStandardization(ref.standardization, m.standardization) {
			r.res.Warnings = append(r.res.Warnings, fmt.Sprintf(
				"the %s standardises its inputs differently from the baseline; every model is evaluated on the same raw data with its own standardisation", sideNames[s]))
		}
		if m.kind() != ref.kind() {
			r.res.Warnings = append(r.res.Warnings, fmt.Sprintf("the %s is a %s, the %s a %s: metrics that only one kind has are null", sideNames[s], m.kind(), "baseline", ref.kind()))
		}
	}
	for s, m := range r.models {
		if m != nil && m.onnx != nil && m.onnx.layersNote != "" && s == sideCandidate {
			r.res.Warnings = append(r.res.Warnings, fmt.Sprintf("%s: per-layer metrics from %s", m.path, m.onnx.layersNote))
		}
	}
	if weightsOnly {
		if ref != nil && (ref.outputs != r.c || ref.task != r.task) {
			return inputerr.Errorf("validate: the models beside the logits are %s models of %d outputs, the logits %s of %d", ref.task, ref.outputs, r.task, r.c)
		}
		return nil
	}
	b := r.models[sideBaseline]
	r.task, r.c = b.task, b.outputs
	return r.checkLabels()
}

// checkLabels checks the data's targets against the task and the outputs.
func (r *validateRun) checkLabels() error {
	if r.task == compute.TaskRegression {
		if r.c != 1 {
			return inputerr.Errorf("validate: the regression models have %d outputs, a dataset holds one target per row", r.c)
		}
		return nil
	}
	for i, y := range r.ds.Y {
		if y != math.Trunc(y) || y < 0 || y >= float64(r.c) {
			return inputerr.Errorf("%s: row %d: label %v is not a class index in [0, %d)", r.cfg.Data, i, y, r.c)
		}
	}
	return nil
}

// closeModels releases the models.
func (r *validateRun) closeModels() {
	for _, m := range r.models {
		if m != nil {
			m.close()
		}
	}
}

// loadLogits reads the logits of the logits mode.
func (r *validateRun) loadLogits(ctx context.Context) error {
	paths := [3]string{r.cfg.BaselineLogits, r.cfg.CandidateLogits, r.cfg.ControlLogits}
	ins := [3]**provenance.File{&r.res.Inputs.BaselineLogits, &r.res.Inputs.CandidateLogits, &r.res.Inputs.ControlLogits}
	for s, path := range paths {
		if path == "" {
			continue
		}
		in, err := provenance.HashFile(ctx, path)
		if err != nil {
			return err
		}
		lg, err := arrowio.ReadLogits(path, arrowio.WithLabel(r.cfg.Label))
		if err != nil {
			return classify(err)
		}
		if lg.N != r.ds.N {
			return inputerr.Errorf("%s: %d rows of logits, the data has %d", path, lg.N, r.ds.N)
		}
		if r.c == 0 {
			r.c = lg.D
		} else if lg.D != r.c {
			return inputerr.Errorf("%s: %d outputs per row, the baseline's logits have %d", path, lg.D, r.c)
		}
		if lg.Y != nil {
			for i, y := range lg.Y {
				if y != r.ds.Y[i] {
					return inputerr.Errorf("%s: row %d has label %v, the data %v: the rows must follow the data", path, i, y, r.ds.Y[i])
				}
			}
		}
		*ins[s] = &in
		r.logits[s] = lg.X
		r.has[s] = true
	}
	r.task = r.cfg.Task
	if r.task == "" {
		r.task = compute.TaskClassification
		if r.c == 1 {
			r.task = compute.TaskRegression
		}
	}
	if r.task == compute.TaskClassification && r.c < 2 {
		return inputerr.Errorf("validate: a classifier needs at least 2 logits per row, got %d", r.c)
	}
	return r.checkLabels()
}

// loadTrainLogs reads the training logs given for training_stability.
func (r *validateRun) loadTrainLogs(ctx context.Context) error {
	paths := [3]string{r.cfg.BaselineTrainLog, r.cfg.TrainLog, r.cfg.ControlTrainLog}
	flags := [3]string{"--baseline-train-log", "--train-log", "--control-train-log"}
	ins := [3]**provenance.File{&r.res.Inputs.BaselineTrainLog, &r.res.Inputs.TrainLog, &r.res.Inputs.ControlTrainLog}
	for s, path := range paths {
		if path == "" {
			r.logReason[s] = "no " + flags[s] + " given"
			continue
		}
		if st, err := os.Stat(path); err == nil && st.IsDir() {
			path = filepath.Join(path, "train_log.arrow")
		}
		in, err := provenance.HashFile(ctx, path)
		if err != nil {
			return err
		}
		l, err := arrowio.ReadTrainLog(path)
		if err != nil {
			return classify(err)
		}
		*ins[s] = &in
		if len(l.Rows) < 2 {
			r.logReason[s] = fmt.Sprintf("the training log has %d steps, too few for a second half", len(l.Rows))
			continue
		}
		r.logs[s] = l
	}
	return nil
}

// evaluateModels computes the outputs and the model metrics of each
// model, the models in parallel, each with one BLAS thread (so that the
// bits do not depend on the machine's core count either: OpenBLAS sums
// some products in an order that depends on its thread count), then times
// them together (models mode). In the logits mode
// only the weights of the models given beside the logits are read.
func (r *validateRun) evaluateModels(ctx context.Context) error {
	if r.res.Mode == validation.ModeLogits {
		for s, m := range r.models {
			if m != nil {
				r.evals[s] = weightEval(m)
			}
		}
		return nil
	}
	n, d := r.ds.N, r.ds.D
	r.sigma = make([]float64, d)
	col := make([]float64, n)
	for j := range d {
		for i := range n {
			col[i] = r.ds.X[i*d+j]
		}
		r.sigma[j] = compute.Std(col)
	}
	k := min(r.cfg.MaxJacobianSamples, n)
	if k == n {
		r.jacIdx = make([]int, n)
		for i := range r.jacIdx {
			r.jacIdx[i] = i
		}
	} else {
		r.jacIdx = slices.Clone(compute.Permutation(n, r.cfg.Seed, jacobianStream)[:k])
		slices.Sort(r.jacIdx)
	}
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for s, m := range r.models {
		if m == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer compute.SerialBLAS()()
			t0 := time.Now()
			r.evals[s], errs[s] = r.evaluateModel(ctx, s, m)
			if errs[s] != nil {
				errs[s] = ortErr(m.path, errs[s])
			}
			r.log.Info("evaluated", "model", sideNames[s], "seconds", fmt.Sprintf("%.2f", time.Since(t0).Seconds()))
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return r.timeModels(ctx)
}
