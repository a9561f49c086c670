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
	"github.com/strata-ml/strata/modelmap"
	"github.com/strata-ml/strata/validation"
)

// Validate compares a candidate model with its baseline (and optionally
// an equal-budget control) on evaluation data and writes
// Out/validation.json: every metric of PRODUCT.md section 4 for each
// model, the candidate's deltas with paired bootstrap 95% intervals and
// McNemar's exact test, and a per-layer view. In logits mode it compares
// outputs computed elsewhere: the task metrics only, the model metrics
// null with the reason.
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
	if cfg.BaselineLogits != "" {
		res.Mode = validation.ModeLogits
		err = run.loadLogits(ctx)
	} else {
		res.Mode = validation.ModeModels
		err = run.loadModels(ctx)
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
	if res.Mode == validation.ModeModels {
		if err := run.evaluateModels(ctx); err != nil {
			return nil, err
		}
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
	logs   [3]*trainLogStats
	// logReason[s] says why side s has no training log.
	logReason [3]string
	// jacIdx are the rows whose Jacobians are computed.
	jacIdx []int
	// lrSweep is the learning-rate sweep (nil: none).
	lrSweep *LRSweepFile
}

// valModel is a model read for validation.
type valModel struct {
	input provenance.File
	arch  arrowio.Architecture
	net   *compute.Network[float64]
	net32 *compute.Network[float32]
	// x is the data standardised for this model (N x Inputs).
	x []float64
	// scale is 1/std of the model's standardisation (nil: none), the
	// factor from raw to network inputs.
	scale []float64
}

// loadModels reads the models, checks they fit each other and the data,
// and standardises the data for each.
func (r *validateRun) loadModels(ctx context.Context) error {
	paths := [3]string{r.cfg.Baseline, r.cfg.Candidate, r.cfg.Control}
	ins := [3]**provenance.File{&r.res.Inputs.Baseline, &r.res.Inputs.Candidate, &r.res.Inputs.Control}
	for s, path := range paths {
		if path == "" {
			continue
		}
		lm, err := loadModel(ctx, path, r.cfg.Activation)
		if err != nil {
			return inputerr.InFile(path, err)
		}
		net, err := modelmap.Network[float64](lm.model)
		if err != nil {
			return inputerr.InFile(path, err)
		}
		net32, err := modelmap.Network[float32](lm.model)
		if err != nil {
			return inputerr.InFile(path, err)
		}
		vm := &valModel{input: lm.input, arch: lm.model.Arch, net: net, net32: net32}
		in := lm.input
		*ins[s] = &in
		r.models[s] = vm
		r.has[s] = true
	}
	b := r.models[sideBaseline]
	for s := sideCandidate; s <= sideControl; s++ {
		m := r.models[s]
		if m == nil {
			continue
		}
		if err := sameInterface(b, m, sideNames[s]); err != nil {
			return err
		}
		if !sameStandardization(b.arch.Standardization, m.arch.Standardization) {
			r.res.Warnings = append(r.res.Warnings, fmt.Sprintf(
				"the %s standardises its inputs differently from the baseline; every model is evaluated on the same raw data with its own standardisation", sideNames[s]))
		}
	}
	for s, m := range r.models {
		if m == nil {
			continue
		}
		x, err := modelmap.Standardize(r.ds, &m.arch)
		if err != nil {
			return inputerr.InFile(paths[s], err)
		}
		if x.D != m.net.Inputs() {
			return inputerr.Errorf("%s: the data has %d features, the model takes %d", paths[s], x.D, m.net.Inputs())
		}
		m.x = x.X
		if st := m.arch.Standardization; st != nil {
			m.scale = make([]float64, len(st.Std))
			for j, sd := range st.Std {
				if sd == 0 {
					sd = 1
				}
				m.scale[j] = 1 / sd
			}
		}
	}
	r.task, r.c = b.net.Task(), b.net.Outputs()
	if err := r.checkLabels(); err != nil {
		return err
	}
	for s, m := range r.models {
		if m != nil {
			r.logits[s] = forwardAll(m.net, m.x, r.ds.N)
		}
	}
	return nil
}

// sameInterface refuses models that cannot be compared: another task,
// input width, output width or class names.
func sameInterface(b, m *valModel, side string) error {
	switch {
	case b.net.Task() != m.net.Task():
		return inputerr.Errorf("validate: the baseline is a %s model, the %s a %s model", b.net.Task(), side, m.net.Task())
	case b.net.Inputs() != m.net.Inputs():
		return inputerr.Errorf("validate: the baseline takes %d inputs, the %s %d", b.net.Inputs(), side, m.net.Inputs())
	case b.net.Outputs() != m.net.Outputs():
		return inputerr.Errorf("validate: the baseline has %d outputs, the %s %d", b.net.Outputs(), side, m.net.Outputs())
	case len(b.arch.Classes) > 0 && len(m.arch.Classes) > 0 && !slices.Equal(b.arch.Classes, m.arch.Classes):
		return inputerr.Errorf("validate: the baseline's classes %q differ from the %s's %q", b.arch.Classes, side, m.arch.Classes)
	}
	return nil
}

func sameStandardization(a, b *arrowio.Standardization) bool {
	if a == nil || b == nil {
		return a == b
	}
	return slices.Equal(a.Mean, b.Mean) && slices.Equal(a.Std, b.Std)
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

// forwardAll returns the outputs of net on n rows of x.
func forwardAll(net *compute.Network[float64], x []float64, n int) []float64 {
	const chunk = 256
	in, c := net.Inputs(), net.Outputs()
	y := make([]float64, n*c)
	ws := compute.NewWorkspace[float64]()
	for lo := 0; lo < n; lo += chunk {
		g := min(chunk, n-lo)
		net.Forward(y[lo*c:(lo+g)*c], x[lo*in:(lo+g)*in], g, ws)
	}
	return y
}

// trainLogStats summarises the second half of a training log.
type trainLogStats struct {
	gradStd        float64
	gradMean       float64 // over the second half
	spikes, judged int
	steps          int
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
		losses := make([]float64, len(l.Rows))
		grads := make([]float64, len(l.Rows))
		for i, row := range l.Rows {
			losses[i], grads[i] = row.Loss, row.GradNorm
		}
		if len(l.Rows) < 2 {
			r.logReason[s] = fmt.Sprintf("the training log has %d steps, too few for a second half", len(l.Rows))
			continue
		}
		gs, spikes, judged := compute.TrainingStability(losses, grads, r.cfg.SpikeWindow, r.cfg.SpikeThreshold)
		r.logs[s] = &trainLogStats{gradStd: gs, gradMean: compute.Mean(grads[len(grads)/2:]), spikes: spikes, judged: judged, steps: len(l.Rows)}
	}
	return nil
}

// evaluateModels computes every model metric of each model, the models
// in parallel, then times them one after the other.
func (r *validateRun) evaluateModels(ctx context.Context) error {
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
			t0 := time.Now()
			r.evals[s], errs[s] = r.evaluateModel(ctx, m)
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
