package stages

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/compute"
	"github.com/strata-ml/strata/internal/inputerr"
	"github.com/strata-ml/strata/internal/inputfile"
	"github.com/strata-ml/strata/internal/limits"
	"github.com/strata-ml/strata/internal/provenance"
	"github.com/strata-ml/strata/validation"
)

// LRSweepSchemaVersion is the schema_version of lr_sweep.json.
const LRSweepSchemaVersion = 1

// MinLRs is the fewest learning rates a learning-rate sweep may have.
const MinLRs = 2

// LRSweepFile is lr_sweep.json: the same fine-tuning budget run once per
// learning rate, from the dense baseline and from the converted candidate,
// each final model evaluated on the evaluation data. Sweep writes it;
// Validate (--lr-sweep) turns it into the lr_robustness metric.
type LRSweepFile struct {
	SchemaVersion int `json:"schema_version"`
	// Task is the models' task (classification or regression).
	Task compute.Task `json:"task"`
	// Data is the evaluation data every final model was scored on.
	Data provenance.File `json:"data"`
	// Dense fine-tunes the dense baseline: the control's recipe at each
	// learning rate. Candidate fine-tunes the converted model. Both list
	// the same learning rates in increasing order.
	Dense     []LRRun `json:"dense"`
	Candidate []LRRun `json:"candidate"`
}

// LRRun is one fine-tuning run of a learning-rate sweep.
type LRRun struct {
	LR float64 `json:"lr"`
	// Accuracy is the share of evaluation rows classified right (null for
	// regression); a row whose logits are not finite counts as wrong.
	Accuracy *validation.NullableFloat `json:"accuracy"`
	// Loss is the mean cross-entropy (MSE for regression), null when the
	// run diverged (a non-finite loss on some row).
	Loss *validation.NullableFloat `json:"loss"`
	// Dir is the run's finetune output directory.
	Dir string `json:"dir"`
}

// ParseLRs parses a comma-separated list of learning rates: each finite
// and positive, no repeats, at least MinLRs. It returns them sorted.
func ParseLRs(s string) ([]float64, error) {
	var lrs []float64
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		v, err := strconv.ParseFloat(f, 64)
		if err != nil {
			return nil, fmt.Errorf("%q is not a number", f)
		}
		lrs = append(lrs, v)
	}
	return lrs, checkLRs(lrs)
}

func checkLRs(lrs []float64) error {
	if len(lrs) < MinLRs {
		return fmt.Errorf("%d learning rates: want at least %d to measure robustness", len(lrs), MinLRs)
	}
	slices.Sort(lrs)
	for i, v := range lrs {
		if !(v > 0) || math.IsInf(v, 0) {
			return fmt.Errorf("learning rate %v: want a finite value > 0", v)
		}
		if i > 0 && lrs[i-1] == v {
			return fmt.Errorf("learning rate %v is listed twice", v)
		}
	}
	return nil
}

// readLRSweep reads and checks an lr_sweep.json.
func readLRSweep(path string) (*LRSweepFile, provenance.File, error) {
	b, err := inputfile.ReadFile(path, limits.JSONBytes, "JSON file")
	if err != nil {
		return nil, provenance.File{}, err
	}
	var f LRSweepFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, provenance.File{}, inputerr.Errorf("%s: not an lr_sweep.json: %v", path, err)
	}
	bad := func(field, format string, args ...any) error {
		return inputerr.Errorf("%s: %s: %s", path, field, fmt.Sprintf(format, args...))
	}
	if f.SchemaVersion != LRSweepSchemaVersion {
		return nil, provenance.File{}, bad("schema_version", "%d: want %d", f.SchemaVersion, LRSweepSchemaVersion)
	}
	if f.Task != compute.TaskClassification && f.Task != compute.TaskRegression {
		return nil, provenance.File{}, bad("task", "%q: want classification or regression", f.Task)
	}
	lrsOf := func(runs []LRRun) []float64 {
		lrs := make([]float64, len(runs))
		for i, r := range runs {
			lrs[i] = r.LR
		}
		return lrs
	}
	dense, cand := lrsOf(f.Dense), lrsOf(f.Candidate)
	if !slices.IsSorted(dense) {
		return nil, provenance.File{}, bad("dense", "learning rates not in increasing order")
	}
	if err := checkLRs(dense); err != nil {
		return nil, provenance.File{}, bad("dense", "%v", err)
	}
	if !slices.Equal(dense, cand) {
		return nil, provenance.File{}, bad("candidate", "learning rates %v differ from dense's %v", cand, dense)
	}
	return &f, provenance.Bytes(path, b), nil
}

// scoreModelFile evaluates a model file on raw evaluation data: accuracy
// (null for regression; rows with a non-finite logit count as wrong) and
// the mean loss (null when some row's loss is not finite).
func scoreModelFile(ctx context.Context, path string, activation compute.Activation, ds *arrowio.Dataset) (task compute.Task, acc, loss *validation.NullableFloat, err error) {
	m, err := loadValModel(ctx, path, activation, "")
	if err != nil {
		return "", nil, nil, err
	}
	defer m.close()
	if err := m.prepare(ds); err != nil {
		return "", nil, nil, err
	}
	c := m.outputs
	z, err := m.outputsOf(ds.N)
	if err != nil {
		return "", nil, nil, ortErr(path, err)
	}
	correct, losses := taskValues(m.task, z, ds.Y, c)
	if m.task == compute.TaskClassification {
		right := 0
		for i, ok := range correct {
			finite := true
			for _, v := range z[i*c : (i+1)*c] {
				finite = finite && isFinite(v)
			}
			if ok == 1 && finite {
				right++
			}
		}
		acc = validation.Num(float64(right) / float64(ds.N))
	}
	var sum float64
	for _, l := range losses {
		sum += l
	}
	if mean := sum / float64(ds.N); isFinite(mean) {
		loss = validation.Num(mean)
	}
	return m.task, acc, loss, nil
}

// lrRobustness builds the lr_robustness metric from an lr_sweep.json (nil:
// null with the reason). Classification: the headline is the worst
// accuracy over the learning rates (higher is better), part "range" the
// best minus the worst (lower is better); regression: the worst loss and
// its range. Parts also give each learning rate's accuracy and loss. The
// dense sweep is the baseline's and, with a control, the control's: both
// are the baseline fine-tuned with the candidate's budget.
func (r *validateRun) lrRobustness(b *metricBuilder, f *LRSweepFile) *validation.Metric {
	if f == nil {
		return b.nullMetric(validation.BetterHigher, "no learning-rate sweep: run strata sweep --lrs, or give validate --lr-sweep FILE", false)
	}
	const ciReason = "no interval: one training run per learning rate; the spread over seeds is in sweep.json"
	classification := f.Task == compute.TaskClassification
	score := func(run LRRun) float64 {
		v := run.Loss
		if classification && v != nil {
			v = run.Accuracy
		}
		if v == nil { // diverged
			if classification {
				return 0
			}
			return math.Inf(1)
		}
		return float64(*v)
	}
	sides := func(runs [3][]LRRun, pick func([]LRRun) float64) [3]float64 {
		var v [3]float64
		for s := range v {
			v[s] = pick(runs[s])
		}
		return v
	}
	runs := [3][]LRRun{f.Dense, f.Candidate, f.Dense}
	worst := func(rs []LRRun) float64 {
		w := score(rs[0])
		for _, run := range rs[1:] {
			if v := score(run); (classification && v < w) || (!classification && v > w) {
				w = v
			}
		}
		return w
	}
	spread := func(rs []LRRun) float64 {
		lo, hi := score(rs[0]), score(rs[0])
		for _, run := range rs[1:] {
			lo, hi = min(lo, score(run)), max(hi, score(run))
		}
		return hi - lo
	}
	what, better := "accuracy", validation.BetterHigher
	if !classification {
		what, better = "loss", validation.BetterLower
	}
	part := func(name, better string, v [3]float64, why [3]string) *validation.Metric {
		p := b.metric(better)
		b.fill(p, v, why)
		p.Name, p.CIReason = name, ciReason
		return p
	}
	m := b.metric(better)
	b.fill(m, sides(runs, worst), [3]string{})
	m.CIReason = ciReason
	lrs := make([]string, len(f.Dense))
	for i, run := range f.Dense {
		lrs[i] = strconv.FormatFloat(run.LR, 'g', -1, 64)
	}
	m.Note = fmt.Sprintf("worst evaluation %s over the %d learning rates %s of the same fine-tuning budget (a diverged run scores %s); part range: best minus worst. The dense side fine-tunes the baseline (the control's recipe), so baseline and control share it",
		what, len(lrs), strings.Join(lrs, ", "), map[bool]string{true: "accuracy 0", false: "an infinite loss"}[classification])
	m.Parts = append(m.Parts, part("range", validation.BetterLower, sides(runs, spread), [3]string{}))
	for i := range f.Dense {
		at := func(pick func(LRRun) *validation.NullableFloat) ([3]float64, [3]string) {
			var v [3]float64
			var why [3]string
			for s := range v {
				v[s] = math.NaN()
				if p := pick(runs[s][i]); p != nil {
					v[s] = float64(*p)
				} else {
					why[s] = "diverged"
				}
			}
			return v, why
		}
		if classification {
			v, why := at(func(r LRRun) *validation.NullableFloat { return r.Accuracy })
			m.Parts = append(m.Parts, part("accuracy@lr="+lrs[i], validation.BetterHigher, v, why))
		}
		v, why := at(func(r LRRun) *validation.NullableFloat { return r.Loss })
		m.Parts = append(m.Parts, part("loss@lr="+lrs[i], validation.BetterLower, v, why))
	}
	return m
}

// loadLRSweep reads the configured lr_sweep.json and checks it fits the
// run: the same task, scored on the same evaluation data (a warning when
// the data's hash differs).
func (r *validateRun) loadLRSweep() error {
	if r.cfg.LRSweep == "" {
		return nil
	}
	f, in, err := readLRSweep(r.cfg.LRSweep)
	if err != nil {
		return inputerr.InFile(r.cfg.LRSweep, err)
	}
	if f.Task != r.task {
		return inputerr.Errorf("%s: task: %s, the models are %s", r.cfg.LRSweep, f.Task, r.task)
	}
	if f.Data.SHA256 != r.res.Inputs.Data.SHA256 {
		r.res.Warnings = append(r.res.Warnings, fmt.Sprintf(
			"the learning-rate sweep %s was scored on other data (%s) than this validation's", r.cfg.LRSweep, f.Data.Path))
	}
	r.lrSweep, r.res.Inputs.LRSweep = f, &in
	return nil
}
