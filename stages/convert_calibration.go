package stages

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"gonum.org/v1/gonum/mat"

	"github.com/strata-ml/strata/calib"
	"github.com/strata-ml/strata/compute"
	"github.com/strata-ml/strata/internal/inputerr"
	"github.com/strata-ml/strata/internal/provenance"
	"github.com/strata-ml/strata/validation"
)

// Defaults and bounds of data-aware conversion (ConvertConfig).
const (
	// DefaultCalibrationRows is the number of calibration rows used when
	// ConvertConfig.CalibrationRows is 0.
	DefaultCalibrationRows = 1024
	// DefaultCalibrationHoldout is the share held out when
	// ConvertConfig.CalibrationHoldout is 0.
	DefaultCalibrationHoldout = 0.25
	// DefaultCalibrationSweeps bounds the sweeps of an iterative
	// data-aware trunk fit per round when ConvertConfig.CalibrationSweeps
	// is 0. Monarch b=4 + rank 8 on digits activations (docs/CALIBRATION.md):
	// on the MLP's 128 x 128 layer 5, 20 and 100 sweeps give held-out
	// output errors 0.0502, 0.0499, 0.0495 in 0.15, 0.9, 2.8 s; on the
	// CNN's 64 x 1024 layer 0.0148, 0.0134, 0.0125 in 0.7, 4.8, 19 s.
	DefaultCalibrationSweeps = 20
	// maxCalibrationValues bounds the calibration rows held in memory
	// (rows x features float64 values, 1 GiB).
	maxCalibrationValues = 1 << 27
	// calibrationMemory bounds the Gram matrices and held-out rows of the
	// layers collected in one pass over the calibration rows
	// (calib.Groups): a model whose layers need more is collected in
	// several passes.
	calibrationMemory = 1 << 30
	// calibrationStream is the PCG stream of the calibration rows' sample
	// and hold-out split.
	calibrationStream uint64 = 0x5EED_CA1B
)

// Values of ConvertConfig.CalibrationFit.
const (
	CalibrationFitJoint    = "joint"
	CalibrationFitResidual = "residual"
)

// CalibrationTrain is the value of a pilot or sweep config's calibration
// key that means the pilot's training data (as is true).
const CalibrationTrain = "train"

// Values of LayerCalibration.Written.
const (
	WrittenDataAware  = "data-aware"
	WrittenWeightOnly = "weight-only"
)

// ConvertCalibration is convert.json's record of the calibration rows.
type ConvertCalibration struct {
	Data provenance.File `json:"data"`
	// Rows are the examples used (a seeded sample of the file's when it
	// has more), split into Fit and Held examples.
	Rows int `json:"rows"`
	Fit  int `json:"fit"`
	Held int `json:"held"`
	// Engine ran the model: strata (an MLP) or onnxruntime.
	Engine string `json:"engine"`
	// FitMode is joint or residual (ConvertConfig.CalibrationFit).
	FitMode string `json:"fit_mode"`
	// Ridge is the relative ridge of every fit (ConvertConfig.CalibrationRidge),
	// or with cross-validation RidgeGrid the ridges it chooses from;
	// Rounds and Sweeps bound the iterative fits.
	Ridge     float64   `json:"ridge,omitempty"`
	RidgeGrid []float64 `json:"ridge_grid,omitempty"`
	Rounds    int       `json:"rounds"`
	Sweeps    int       `json:"sweeps"`
	// Caps bound the activation rows per layer (calib.Caps); Passes is
	// the number of runs over the rows that collecting took.
	Caps   calib.Caps `json:"caps"`
	Passes int        `json:"passes"`
	// BaselineLoss is the model's mean loss on the held-out examples.
	BaselineLoss validation.NullableFloat `json:"baseline_loss"`
	// Seconds is the time spent running the model (collecting and, with
	// a whole-model budget, measuring); it varies from run to run.
	Seconds float64 `json:"seconds"`
}

// LayerCalibration compares, for one layer, its weight-only and its
// data-aware fit at the same structure (so the same parameters) on the
// held-out calibration rows X: the relative output error
// ||(W - A) X^T||_F / ||W X^T||_F of each (compute.OutputRelativeError,
// A as stored, in float32). The data-aware fit is written unless its
// held-out error is the higher.
type LayerCalibration struct {
	// FitRows and HeldRows are the activation rows behind the fit and
	// the errors; Sampled says the layer saw more (calib.Caps).
	FitRows  int  `json:"fit_rows"`
	HeldRows int  `json:"held_rows"`
	Sampled  bool `json:"sampled,omitempty"`
	// WeightOnlyError and DataAwareError are the held-out output errors.
	WeightOnlyError validation.NullableFloat `json:"weight_only_error"`
	DataAwareError  validation.NullableFloat `json:"data_aware_error"`
	// Ridge is the relative ridge of the data-aware fit (see
	// compute.Calibration), chosen by cross-validation on the fit rows
	// when RidgeCV (ConvertConfig.CalibrationCV).
	Ridge   float64 `json:"ridge,omitempty"`
	RidgeCV bool    `json:"ridge_cv,omitempty"`
	// Written is data-aware or weight-only.
	Written string `json:"written"`
	// Note says why a layer has no data-aware fit.
	Note string `json:"note,omitempty"`
}

// wholeModel reports whether --structure auto assigns structures over
// the whole model (ModelBudget or LossTolerance).
func (cfg *ConvertConfig) wholeModel() bool {
	return cfg.Structure == StructureAuto && (cfg.ModelBudget != 0 || cfg.LossTolerance != 0)
}

// validateCalibration checks the data-aware options.
func (cfg *ConvertConfig) validateCalibration() error {
	switch {
	case cfg.CalibrationRows < 0 || cfg.CalibrationSweeps < 0:
		return inputerr.Fieldf("convert", "{calibration_rows} and {calibration_sweeps} must not be negative")
	case cfg.CalibrationRidge < 0 || math.IsInf(cfg.CalibrationRidge, 0):
		return inputerr.Fieldf("convert", "{calibration_ridge} %g: want a finite relative ridge >= 0 (0: %g)", cfg.CalibrationRidge, compute.DefaultRidge)
	case cfg.CalibrationHoldout != 0 && !(cfg.CalibrationHoldout > 0 && cfg.CalibrationHoldout < 1):
		return inputerr.Fieldf("convert", "{calibration_holdout} %g: want a share in (0, 1)", cfg.CalibrationHoldout)
	case cfg.CalibrationFit != "" && cfg.CalibrationFit != CalibrationFitJoint && cfg.CalibrationFit != CalibrationFitResidual:
		return inputerr.Fieldf("convert", "{calibration_fit} %q: want joint or residual", cfg.CalibrationFit)
	}
	for _, f := range cfg.AutoFamilies {
		if !slices.Contains(compute.TrunkFamilies, f) {
			return inputerr.Fieldf("convert", "{auto_families}: %q is not a trunk family (want %s)", f, compute.JoinNames(compute.TrunkFamilies))
		}
	}
	if cfg.ModelBudget == 0 && cfg.LossTolerance == 0 {
		return nil
	}
	switch {
	case cfg.Structure != StructureAuto:
		return inputerr.Fieldf("convert", "{model_budget} and {loss_tolerance} choose structures: they need {structure} auto, not %s", cfg.Structure)
	case cfg.Calibration == "":
		return inputerr.Fieldf("convert", "{model_budget} and {loss_tolerance} measure the model's loss: they need {calibration}")
	case cfg.ModelBudget != 0 && cfg.LossTolerance != 0:
		return inputerr.Fieldf("convert", "give one of {model_budget} and {loss_tolerance}")
	case cfg.TargetError != 0 || cfg.ParamBudget != 0:
		return inputerr.Fieldf("convert", "{model_budget} and {loss_tolerance} choose per model; {target_error} and {param_budget} per layer: give one kind")
	case cfg.ModelBudget != 0 && !(cfg.ModelBudget > 0 && cfg.ModelBudget <= 1):
		return inputerr.Fieldf("convert", "{model_budget} %g: want a fraction in (0, 1] of the selected layers' dense parameters", cfg.ModelBudget)
	case cfg.LossTolerance != 0 && !(cfg.LossTolerance > 0 && !math.IsInf(cfg.LossTolerance, 0)):
		return inputerr.Fieldf("convert", "{loss_tolerance} %g: want a finite increase of the loss > 0", cfg.LossTolerance)
	}
	return nil
}

// calibrationOptions are the data-aware options in effect, defaults
// filled in.
func (cfg *ConvertConfig) calibrationOptions() (rows int, holdout float64, fit string, sweeps int) {
	rows, holdout, fit, sweeps = cfg.CalibrationRows, cfg.CalibrationHoldout, cfg.CalibrationFit, cfg.CalibrationSweeps
	if rows == 0 {
		rows = DefaultCalibrationRows
	}
	if holdout == 0 {
		holdout = DefaultCalibrationHoldout
	}
	if fit == "" {
		fit = CalibrationFitJoint
	}
	if sweeps == 0 {
		sweeps = DefaultCalibrationSweeps
	}
	return rows, holdout, fit, sweeps
}

// readCalibration reads the calibration rows: at most CalibrationRows of
// the file (a seeded sample, kept in file order), split into fit and
// held-out examples (seeded). Problems are bad input naming the file.
func (cfg *ConvertConfig) readCalibration(ctx context.Context) (calib.Set, *ConvertCalibration, error) {
	nRows, holdout, fit, sweeps := cfg.calibrationOptions()
	label := cfg.Label
	if label == "" {
		label = DefaultFinetuneConfig().Label
	}
	ds, in, err := readData(ctx, cfg.Calibration, label)
	if err != nil {
		return calib.Set{}, nil, inputerr.InFile(cfg.Calibration, err)
	}
	if ds.N > nRows {
		idx := compute.Permutation(ds.N, cfg.Seed, calibrationStream)[:nRows]
		slices.Sort(idx)
		ds = rows(ds, idx)
	}
	if ds.N*ds.D > maxCalibrationValues {
		return calib.Set{}, nil, inputerr.Errorf("%s: %d rows of %d features are more than the %d values calibration holds in memory: lower --calibration-rows",
			cfg.Calibration, ds.N, ds.D, maxCalibrationValues)
	}
	if ds.N < 2 {
		return calib.Set{}, nil, inputerr.Errorf("%s: %d calibration row: want at least 2 (some to fit, some to hold out)", cfg.Calibration, ds.N)
	}
	tr, he, err := compute.SplitRows(ds.N, holdout, cfg.Seed^calibrationStream)
	if err != nil {
		return calib.Set{}, nil, inputerr.Errorf("%s: %w", cfg.Calibration, err)
	}
	ex := func(idx []int) calib.Examples {
		d := rows(ds, idx)
		return calib.Examples{X: d.X, Y: d.Y, N: d.N, D: d.D}
	}
	set := calib.Set{Fit: ex(tr), Held: ex(he)}
	rec := &ConvertCalibration{Data: in, Rows: ds.N, Fit: set.Fit.N, Held: set.Held.N, FitMode: fit,
		Ridge: cmp.Or(cfg.CalibrationRidge, compute.DefaultRidge), Rounds: calibratedRounds, Sweeps: sweeps, Caps: calibrationCaps(cfg.Seed),
		BaselineLoss: validation.NullableFloat(math.NaN())}
	if cfg.CalibrationCV {
		rec.Ridge, rec.RidgeGrid = 0, ridgeGrid
	}
	return set, rec, nil
}

// calibratedRounds bounds the trunk / correction alternations of a joint
// data-aware fit (compute.CalibratedConfig's default).
const calibratedRounds = 4

// calibrationCaps are the activation caps of a run.
func calibrationCaps(seed uint64) calib.Caps {
	c := calib.DefaultCaps
	c.Seed = seed ^ calibrationStream
	return c
}

// layerData is what data-aware conversion knows of one layer's inputs:
// its activations and their Calibrations, built when first asked for.
type layerData struct {
	acts     *calib.Activations
	held     []float64 // held-out rows, heldRows x in
	heldRows int
	fitRows  int
	sampled  bool
	// note says why the activations allow no data-aware fit ("" when
	// they do).
	note string
	cals map[calibrationKey]*compute.Calibration
}

// calibrationKey names a Calibration of a layer: of every fit row (fold
// -1) or of one fold, at a relative ridge.
type calibrationKey struct {
	fold  int
	alpha float64
}

// calibration returns the Calibration of the layer's fit rows (fold -1)
// or of one fold of them at relative ridge alpha.
func (d *layerData) calibration(fold int, alpha float64) (*compute.Calibration, error) {
	k := calibrationKey{fold, alpha}
	if c, ok := d.cals[k]; ok {
		return c, nil
	}
	g := d.acts.Gram
	if fold >= 0 {
		g = d.acts.Folds[fold]
	}
	c, err := g.Calibration(alpha)
	if err != nil {
		return nil, err
	}
	d.cals[k] = c
	return c, nil
}

// calibration is a run's calibration: the model on its calibration rows
// and the layers' activations, collected in passes over groups of layers
// that fit calibrationMemory.
type calibration struct {
	runner calib.Runner
	rec    *ConvertCalibration
	caps   calib.Caps
	groups [][]int // indices into the run's layers
	// group maps a layer to its group; data holds the current group's
	// layers (every layer when there is one group).
	group  map[int]int
	data   map[int]*layerData
	loaded int // the group in data, -1 for none
	log    *slog.Logger
}

// newCalibration starts the calibration of the runner's layers (indices
// into the run's layers, the runner's own) of widths ins.
func newCalibration(runner calib.Runner, rec *ConvertCalibration, layers, ins []int, log *slog.Logger) *calibration {
	c := &calibration{runner: runner, rec: rec, caps: rec.Caps, group: map[int]int{}, loaded: -1, log: log}
	rec.Engine = runner.Engine()
	for g, idx := range calib.Groups(ins, c.caps, calibrationMemory) {
		group := make([]int, len(idx))
		for k, i := range idx {
			group[k] = layers[i]
			c.group[layers[i]] = g
		}
		c.groups = append(c.groups, group)
	}
	return c
}

// record returns the run's calibration record (nil without one).
func (c *calibration) record() *ConvertCalibration {
	if c == nil {
		return nil
	}
	return c.rec
}

// close releases the runner.
func (c *calibration) close() {
	if c != nil {
		_ = c.runner.Close()
	}
}

// layer returns the activations of layer i, collecting its group when it
// is not the one in memory.
func (c *calibration) layer(ctx context.Context, i int) (*layerData, error) {
	g := c.group[i]
	if g != c.loaded {
		start := time.Now()
		c.data = nil
		acts, err := c.runner.Collect(ctx, c.groups[g], c.caps)
		if err != nil {
			return nil, err
		}
		c.data = map[int]*layerData{}
		for k, a := range acts {
			c.data[c.groups[g][k]] = newLayerData(a)
		}
		c.loaded = g
		c.rec.Passes++
		c.rec.Seconds += time.Since(start).Seconds()
		c.log.Info("calibration activations collected", "layers", len(acts), "pass", c.rec.Passes, "seconds", fmt.Sprintf("%.1f", time.Since(start).Seconds()))
	}
	return c.data[i], nil
}

// newLayerData holds a layer's activations. Activations that allow no
// data-aware fit (all zero) are noted with the reason.
func newLayerData(a *calib.Activations) *layerData {
	d := &layerData{acts: a, held: a.Held, heldRows: a.HeldRows, fitRows: a.Gram.Rows(),
		sampled: a.FitSeen > a.Gram.Rows() || a.HeldSeen > a.HeldRows, cals: map[calibrationKey]*compute.Calibration{}}
	if _, err := d.calibration(-1, compute.DefaultRidge); err != nil {
		d.note = fmt.Sprintf("no data-aware fit: %v", err)
	}
	return d
}

// ridgeGrid are the relative ridges cross-validation chooses from
// (compute.Calibration: alpha times the mean squared activation).
var ridgeGrid = []float64{1e-2, 1e-1, 1, 10}

// ridge returns the relative ridge of the layer's data-aware fit of
// trunk and res: cfg.CalibrationRidge (compute.DefaultRidge when 0), or
// with cfg.CalibrationCV by two-fold
// cross-validation on the fit rows (their even and odd examples, see
// calib.Activations.Folds): the alpha of ridgeGrid whose fit on each fold
// has the least output error on the other (the sum of the two squared
// relative errors, each measured through the other fold's second moment,
// compute.Calibration.RelativeError). A fold without usable rows leaves
// compute.DefaultRidge. cv says whether cross-validation chose it.
func (cfg *ConvertConfig) ridge(w *mat.Dense, trunk compute.Spec, res compute.Residual, quick bool, ld *layerData, seed uint64) (alpha float64, cv bool, err error) {
	if !cfg.CalibrationCV {
		return cmp.Or(cfg.CalibrationRidge, compute.DefaultRidge), false, nil
	}
	var other [2]*compute.Calibration
	for f := range 2 {
		if other[f], err = ld.calibration(f, compute.DefaultRidge); err != nil {
			return compute.DefaultRidge, false, nil
		}
	}
	best, score := compute.DefaultRidge, math.Inf(1)
	for _, a := range ridgeGrid {
		var s float64
		for f := range 2 {
			cal, err := ld.calibration(f, a)
			if err != nil {
				return 0, false, err
			}
			fit, err := cfg.dataAware(w, trunk, res, cal, quick, seed)
			if err != nil {
				return 0, false, err
			}
			e := other[1-f].RelativeError(w, compute.Dense[float64](fit))
			s += e * e
		}
		if s < score {
			best, score = a, s
		}
	}
	return best, true, nil
}

// loss returns the model's mean loss on the held-out calibration rows
// with the swaps applied, timed into the record.
func (c *calibration) loss(ctx context.Context, swaps ...calib.Swap) (float64, error) {
	start := time.Now()
	l, err := c.runner.Loss(ctx, swaps...)
	c.rec.Seconds += time.Since(start).Seconds()
	return l, err
}

// Bounds of the joint data-aware fit of a whole-model candidate
// (layerFit.quick): each candidate costs a fit, and on the CNN's 64 x
// 1024 layer the full bounds make a kronecker candidate's fit take up to
// 9 s. The chosen candidates are refitted with the full bounds.
const (
	candidateRounds = 1
	candidateSweeps = 5
)

// dataAware fits W to the layer's activations at the structure of trunk
// and res, as cfg.CalibrationFit says (with a candidate's bounds when
// quick).
func (cfg *ConvertConfig) dataAware(w *mat.Dense, trunk compute.Spec, res compute.Residual, cal *compute.Calibration, quick bool, seed uint64) (*compute.Sum[float64], error) {
	_, _, fit, sweeps := cfg.calibrationOptions()
	rounds := calibratedRounds
	if quick {
		rounds, sweeps = candidateRounds, min(sweeps, candidateSweeps)
	}
	if fit == CalibrationFitResidual {
		s, err := compute.Project(w, trunk, seed)
		if err != nil {
			return nil, err
		}
		return compute.FitResidual(w, s, res, cal, seed)
	}
	return compute.DecomposeCalibrated(w, trunk, res, cal, compute.CalibratedConfig{Rounds: rounds, Sweeps: sweeps}, seed)
}

// chooseFit compares the weight-only fit wo (as stored) of fit's trunk and
// residual with the data-aware fit of the same structure on the layer's held-out rows and returns the
// one to write with the record: the data-aware fit unless its held-out
// output error is the higher.
func (cfg *ConvertConfig) chooseFit(w *mat.Dense, wo *compute.Sum[float64], fit layerFit, ld *layerData, seed uint64) (*compute.Sum[float64], *LayerCalibration, error) {
	trunk, res := fit.trunk, fit.res
	rec := &LayerCalibration{FitRows: ld.fitRows, HeldRows: ld.heldRows, Sampled: ld.sampled, Written: WrittenWeightOnly, Note: ld.note}
	rec.WeightOnlyError = validation.NullableFloat(compute.OutputRelativeError(w, compute.Dense[float64](wo), ld.held, ld.heldRows))
	rec.DataAwareError = validation.NullableFloat(math.NaN())
	if ld.note != "" {
		return wo, rec, nil
	}
	var err error
	rec.Ridge = fit.alpha
	if fit.alpha == 0 {
		if rec.Ridge, rec.RidgeCV, err = cfg.ridge(w, trunk, res, fit.quick, ld, seed); err != nil {
			return nil, nil, err
		}
	}
	cal, err := ld.calibration(-1, rec.Ridge)
	if err != nil {
		return nil, nil, err
	}
	da, err := cfg.dataAware(w, trunk, res, cal, fit.quick, seed)
	if err != nil {
		return nil, nil, err
	}
	compute.RoundToFloat32(da)
	rec.DataAwareError = validation.NullableFloat(compute.OutputRelativeError(w, compute.Dense[float64](da), ld.held, ld.heldRows))
	if float64(rec.DataAwareError) <= float64(rec.WeightOnlyError) {
		rec.Written = WrittenDataAware
		return da, rec, nil
	}
	return wo, rec, nil
}

// startCalibration reads the calibration rows and runs the model on them
// for the jobs that will be converted (newRunner builds the runner of the
// model's format, its layers the jobs'); nil without cfg.Calibration.
func (cfg *ConvertConfig) startCalibration(ctx context.Context, jobs []layerJob, newRunner func(calib.Set) (calib.Runner, error)) (*calibration, error) {
	if cfg.Calibration == "" {
		return nil, nil
	}
	set, rec, err := cfg.readCalibration(ctx)
	if err != nil {
		return nil, err
	}
	runner, err := newRunner(set)
	if err != nil {
		return nil, classify(fmt.Errorf("%s: calibration with %s: %w", cfg.Model, cfg.Calibration, err))
	}
	var layers, ins []int
	for i := range jobs {
		if _, skip := cfg.structure(jobs[i].ref); skip == nil {
			layers, ins = append(layers, i), append(ins, jobs[i].ref.in)
		}
	}
	cfg.Logger.Info("calibration", "data", cfg.Calibration, "rows", rec.Rows, "fit", rec.Fit, "held", rec.Held, "engine", runner.Engine(), "layers", len(layers))
	return newCalibration(runner, rec, layers, ins, cfg.Logger), nil
}

// pilotCalibration returns cfg with its calibration key, as a pilot or
// sweep config gives it, resolved for a run on the training data train:
// true or train mean train, false none, anything else is a file. The
// calibration rows' labels are the pilot's (label).
func (cfg ConvertConfig) pilotCalibration(train, label string) ConvertConfig {
	switch strings.ToLower(cfg.Calibration) {
	case "true", CalibrationTrain:
		cfg.Calibration = train
	case "false":
		cfg.Calibration = ""
	}
	cfg.Label = label
	return cfg
}

// resolveCalibration makes a calibration file of a config file relative
// to base (the file's directory); true, train and false stay.
func (cfg *ConvertConfig) resolveCalibration(base string) {
	switch strings.ToLower(cfg.Calibration) {
	case "", "true", "false", CalibrationTrain:
		return
	}
	if !filepath.IsAbs(cfg.Calibration) {
		cfg.Calibration = filepath.Join(base, cfg.Calibration)
	}
}
