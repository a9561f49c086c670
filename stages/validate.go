package stages

import (
	"context"
	"encoding/json"
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
)

// ValidateSchemaVersion is the schema_version of validation.json.
const ValidateSchemaVersion = 1

// Validate modes: models run in-process, or logits computed elsewhere.
const (
	ValidateModeModels = "models"
	ValidateModeLogits = "logits"
)

// Metric keys of validation.json and of the gate policy (PRODUCT.md
// section 4).
const (
	MetricAccuracy                        = "accuracy"
	MetricLoss                            = "loss"
	MetricJacobianCondition               = "jacobian_condition"
	MetricGradNormRatio                   = "grad_norm_ratio"
	MetricLayerCondition                  = "layer_condition"
	MetricPerturbationSensitivity         = "perturbation_sensitivity"
	MetricPerturbationSensitivityRelative = "perturbation_sensitivity_relative"
	MetricPredictionFlipRate              = "prediction_flip_rate"
	MetricLayerRobustness                 = "layer_robustness"
	MetricResidualShare                   = "residual_share"
	MetricParams                          = "params"
	MetricFLOPs                           = "flops"
	MetricBytes                           = "bytes"
	MetricLatencyMS                       = "latency_ms"
	MetricTrainingStability               = "training_stability"
	MetricLRRobustness                    = "lr_robustness"
)

// MetricKeys lists every key of ValidationResult.Metrics, in the order of
// PRODUCT.md section 4. Every key is always present.
var MetricKeys = []string{
	MetricAccuracy, MetricLoss, MetricJacobianCondition, MetricGradNormRatio,
	MetricLayerCondition, MetricPerturbationSensitivity, MetricPerturbationSensitivityRelative,
	MetricPredictionFlipRate, MetricLayerRobustness, MetricResidualShare,
	MetricParams, MetricFLOPs, MetricBytes, MetricLatencyMS, MetricTrainingStability,
	MetricLRRobustness,
}

// Directions of Metric.Better.
const (
	BetterHigher   = "higher"
	BetterLower    = "lower"
	BetterReported = "reported" // informative only: no direction to gate on
)

// VaryingFields are the fields of validation.json that depend on the wall
// clock; everything else is a function of the inputs and the config.
var VaryingFields = []string{"metrics.latency_ms", "wall_seconds"}

// ValidateConfig configures Validate. The JSON form is recorded in
// validation.json.
type ValidateConfig struct {
	// Baseline and Candidate are the models compared (Arrow model files
	// or safetensors of the MLP family); Control optionally the dense
	// baseline fine-tuned with the candidate's budget.
	Baseline  string `json:"baseline,omitempty"`
	Candidate string `json:"candidate,omitempty"`
	Control   string `json:"control,omitempty"`
	// BaselineLogits and CandidateLogits (and ControlLogits) select the
	// logits mode instead: outputs computed elsewhere, one row per row
	// of Data in the same order (arrowio.ReadLogits).
	BaselineLogits  string `json:"baseline_logits,omitempty"`
	CandidateLogits string `json:"candidate_logits,omitempty"`
	ControlLogits   string `json:"control_logits,omitempty"`
	// Data is the evaluation data, raw (each model applies its own
	// standardisation); Label names its target column.
	Data  string `json:"data"`
	Label string `json:"label"`
	// Out is the output directory.
	Out string `json:"out"`
	// Task is for the logits mode: classification or regression; empty
	// infers it from the width (1 output: regression).
	Task string `json:"task,omitempty"`
	// Activation is for a safetensors nn.Sequential model without
	// architecture metadata (default relu).
	Activation string `json:"activation,omitempty"`

	// Bootstrap is the number of paired bootstrap resamples of every
	// confidence interval (0: no intervals); Seed drives them and every
	// random draw of the metrics.
	Bootstrap int    `json:"bootstrap"`
	Seed      uint64 `json:"seed"`
	// MaxJacobianSamples bounds the inputs whose Jacobian is computed (a
	// seeded sample of the data when it has more rows).
	MaxJacobianSamples int `json:"max_jacobian_samples"`
	// Noise lists the input noise levels of the perturbation metrics as
	// shares of each feature's standard deviation; the middle one (the
	// lower middle for an even count) is the headline.
	Noise []float64 `json:"noise"`
	// RobustnessEps is the relative Frobenius norm of the weight noise of
	// layer_robustness, averaged over RobustnessDraws draws.
	RobustnessEps   float64 `json:"robustness_eps"`
	RobustnessDraws int     `json:"robustness_draws"`
	// GradBatch is the evaluation batch size of grad_norm_ratio.
	GradBatch int `json:"grad_batch"`
	// LatencyBatch rows are timed LatencyRuns times per model after
	// LatencyWarmup untimed passes, the models interleaved.
	LatencyBatch  int `json:"latency_batch"`
	LatencyRuns   int `json:"latency_runs"`
	LatencyWarmup int `json:"latency_warmup"`
	// TrainLog is the candidate's finetune output directory (or its
	// train_log.arrow), BaselineTrainLog and ControlTrainLog the other
	// models' (optional), for training_stability.
	TrainLog         string `json:"train_log,omitempty"`
	BaselineTrainLog string `json:"baseline_train_log,omitempty"`
	ControlTrainLog  string `json:"control_train_log,omitempty"`
	// SpikeWindow and SpikeThreshold define a loss spike: a loss above
	// the median of the SpikeWindow previous steps plus SpikeThreshold
	// times their scaled MAD (compute.TrainingStability).
	SpikeWindow    int     `json:"spike_window"`
	SpikeThreshold float64 `json:"spike_threshold"`
	// LRSweep is an lr_sweep.json (written by Sweep) for lr_robustness:
	// the candidate's and the dense baseline's fine-tuning repeated at
	// several learning rates. Empty: lr_robustness is null.
	LRSweep string `json:"lr_sweep,omitempty"`

	// Logger receives progress; nil discards it.
	Logger *slog.Logger `json:"-"`
}

// DefaultValidateConfig returns the defaults the CLI starts from.
func DefaultValidateConfig() ValidateConfig {
	return ValidateConfig{
		Label:              "label",
		Bootstrap:          1000,
		MaxJacobianSamples: 64,
		Noise:              []float64{0.01, 0.05, 0.1},
		RobustnessEps:      0.1,
		RobustnessDraws:    5,
		GradBatch:          64,
		LatencyBatch:       64,
		LatencyRuns:        50,
		LatencyWarmup:      5,
		SpikeWindow:        20,
		SpikeThreshold:     3,
	}
}

// ValidateInputs are the input files with their hashes.
type ValidateInputs struct {
	Data             provenance.File  `json:"data"`
	Baseline         *provenance.File `json:"baseline,omitempty"`
	Candidate        *provenance.File `json:"candidate,omitempty"`
	Control          *provenance.File `json:"control,omitempty"`
	BaselineLogits   *provenance.File `json:"baseline_logits,omitempty"`
	CandidateLogits  *provenance.File `json:"candidate_logits,omitempty"`
	ControlLogits    *provenance.File `json:"control_logits,omitempty"`
	TrainLog         *provenance.File `json:"train_log,omitempty"`
	BaselineTrainLog *provenance.File `json:"baseline_train_log,omitempty"`
	ControlTrainLog  *provenance.File `json:"control_train_log,omitempty"`
	LRSweep          *provenance.File `json:"lr_sweep,omitempty"`
}

// Interval is a confidence interval [low, high].
type Interval [2]Float

// Metric is one key of validation.json's metrics: the value of each model
// side by side, the candidate's difference from the baseline and, when the
// run has a control, from the control. A value that could not be computed
// is null and Reason says why; nothing is left out silently.
type Metric struct {
	// Name and Noise identify a part of a metric (Parts): a noise level of
	// the perturbation metrics, a component of training_stability.
	Name  string  `json:"name,omitempty"`
	Noise float64 `json:"noise,omitempty"`
	// Better is BetterHigher, BetterLower or BetterReported.
	Better    string `json:"better"`
	Baseline  *Float `json:"baseline"`
	Candidate *Float `json:"candidate"`
	// Delta is candidate - baseline; RelativeDelta is Delta / |baseline|
	// (null when the baseline is 0).
	Delta         *Float `json:"delta"`
	RelativeDelta *Float `json:"relative_delta"`
	// CI95 is the 95% interval of Delta: a paired bootstrap percentile
	// interval for statistical metrics, [Delta, Delta] for exact ones,
	// null with CIReason otherwise.
	CI95     *Interval `json:"ci95"`
	CIReason string    `json:"ci_reason,omitempty"`
	// PValue is McNemar's exact p-value for the accuracy of a classifier.
	PValue *Float `json:"p_value,omitempty"`
	// The same against the control (candidate - control), present
	// whenever the run has a control (see WithControl).
	Control                *Float    `json:"control,omitempty"`
	DeltaVsControl         *Float    `json:"delta_vs_control,omitempty"`
	RelativeDeltaVsControl *Float    `json:"relative_delta_vs_control,omitempty"`
	CI95VsControl          *Interval `json:"ci95_vs_control,omitempty"`
	PValueVsControl        *Float    `json:"p_value_vs_control,omitempty"`
	// Reason explains every null value above except the intervals.
	Reason string `json:"reason,omitempty"`
	// Note says what the headline value is (which noise level, which
	// layer, how many inputs).
	Note  string    `json:"note,omitempty"`
	Parts []*Metric `json:"parts,omitempty"`
	// WithControl makes the control fields appear in JSON, as null when
	// they could not be computed. Validate sets it when it had a control.
	WithControl bool `json:"-"`
}

// MarshalJSON writes the control fields (as null when not computed) when
// WithControl is set, and leaves them out otherwise.
func (m Metric) MarshalJSON() ([]byte, error) {
	type plain Metric
	if !m.WithControl {
		return json.Marshal(plain(m))
	}
	return json.Marshal(struct {
		plain
		Control                *Float    `json:"control"`
		DeltaVsControl         *Float    `json:"delta_vs_control"`
		RelativeDeltaVsControl *Float    `json:"relative_delta_vs_control"`
		CI95VsControl          *Interval `json:"ci95_vs_control"`
	}{plain(m), m.Control, m.DeltaVsControl, m.RelativeDeltaVsControl, m.CI95VsControl})
}

// LayerValues are one per-layer quantity of each model.
type LayerValues struct {
	Baseline  *Float `json:"baseline"`
	Candidate *Float `json:"candidate"`
	Control   *Float `json:"control,omitempty"`
	Reason    string `json:"reason,omitempty"`
}

// LayerSpectra are the singular values (decreasing) of each model's
// effective weight W = S + R (the baseline's dense W), and of the
// candidate's trunk S alone when it is decomposed.
type LayerSpectra struct {
	Baseline       []Float `json:"baseline"`
	Candidate      []Float `json:"candidate"`
	CandidateTrunk []Float `json:"candidate_trunk,omitempty"`
	Control        []Float `json:"control,omitempty"`
}

// LayerValidation describes one linear layer (the k-th linear layer of
// each model).
type LayerValidation struct {
	Name string `json:"name"`
	// Shape is the candidate's out x in.
	Shape [2]int `json:"shape"`
	// Family is the candidate's trunk family, or "dense"; Structure its
	// full description, e.g. "monarch b=4 r=16 + lowrank r=8".
	Family    string `json:"family"`
	Structure string `json:"structure"`
	// LayerCondition is sigma_max / sigma_min of the effective weight;
	// TrunkCondition of the trunk S alone (null for a dense layer).
	LayerCondition LayerValues `json:"layer_condition"`
	TrunkCondition LayerValues `json:"trunk_condition"`
	// ResidualShare is the mean over evaluation inputs u of
	// ||R u|| / (||S u|| + ||R u||) (null for a dense layer).
	ResidualShare LayerValues `json:"residual_share"`
	// RobustnessDrop is the mean score drop when this layer's effective
	// weight gets relative noise eps (see layer_robustness).
	RobustnessDrop LayerValues `json:"robustness_drop"`
	// GradNorm is the mean over evaluation batches of the norm of the
	// loss gradient with respect to the effective weight.
	GradNorm       LayerValues  `json:"grad_norm"`
	SingularValues LayerSpectra `json:"singular_values"`
}

// ValidationResult is validation.json.
type ValidationResult struct {
	SchemaVersion int             `json:"schema_version"`
	Tool          provenance.Tool `json:"tool"`
	Mode          string          `json:"mode"`
	Task          string          `json:"task"`
	NExamples     int             `json:"n_examples"`
	Outputs       int             `json:"outputs"`
	Inputs        ValidateInputs  `json:"inputs"`
	Config        ValidateConfig  `json:"config"`
	// Metrics has every key of MetricKeys.
	Metrics map[string]*Metric `json:"metrics"`
	// Layers is empty in logits mode (LayersReason says so).
	Layers       []LayerValidation `json:"layers"`
	LayersReason string            `json:"layers_reason,omitempty"`
	Warnings     []string          `json:"warnings"`
	// VaryingFields lists the fields that depend on the wall clock.
	VaryingFields []string `json:"varying_fields"`
	WallSeconds   float64  `json:"wall_seconds"`
}

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
func Validate(ctx context.Context, cfg ValidateConfig) (*ValidationResult, error) {
	start := time.Now()
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg.Noise = slices.Clone(cfg.Noise)
	slices.Sort(cfg.Noise)
	res := &ValidationResult{
		SchemaVersion: ValidateSchemaVersion, Tool: provenance.Version(), Config: cfg,
		Warnings: []string{}, Layers: []LayerValidation{}, VaryingFields: VaryingFields,
	}
	ds, dataIn, err := readData(cfg.Data, cfg.Label)
	if err != nil {
		return nil, err
	}
	res.Inputs.Data = dataIn
	res.NExamples = ds.N

	run := &validateRun{cfg: &cfg, log: log, ds: ds, res: res}
	if cfg.BaselineLogits != "" {
		res.Mode = ValidateModeLogits
		err = run.loadLogits()
	} else {
		res.Mode = ValidateModeModels
		err = run.loadModels()
	}
	if err != nil {
		return nil, err
	}
	if err := run.loadTrainLogs(); err != nil {
		return nil, err
	}
	if err := run.loadLRSweep(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if res.Mode == ValidateModeModels {
		if err := run.evaluateModels(ctx); err != nil {
			return nil, err
		}
	}
	run.assemble()
	res.WallSeconds = time.Since(start).Seconds()
	err = writeOutputs(cfg.Out, func(dir string) error {
		return writeJSON(filepath.Join(dir, "validation.json"), res)
	})
	if err != nil {
		return nil, fmt.Errorf("validate: write %s: %w", cfg.Out, err)
	}
	log.Info("validate done", "out", cfg.Out, "mode", res.Mode, "examples", res.NExamples, "seconds", fmt.Sprintf("%.1f", res.WallSeconds))
	return res, nil
}

func (cfg *ValidateConfig) validate() error {
	models := cfg.Baseline != "" || cfg.Candidate != "" || cfg.Control != ""
	logits := cfg.BaselineLogits != "" || cfg.CandidateLogits != "" || cfg.ControlLogits != ""
	switch {
	case models && logits:
		return inputerr.Errorf("validate: give models (--baseline, --candidate) or logits (--baseline-logits, --candidate-logits), not both")
	case logits && (cfg.BaselineLogits == "" || cfg.CandidateLogits == ""):
		return inputerr.Errorf("validate: logits mode needs --baseline-logits and --candidate-logits")
	case !logits && (cfg.Baseline == "" || cfg.Candidate == ""):
		return inputerr.Errorf("validate: --baseline and --candidate are required (or --baseline-logits and --candidate-logits)")
	case cfg.Data == "":
		return inputerr.Errorf("validate: --data is required")
	case cfg.Out == "":
		return inputerr.Errorf("validate: --out is required")
	case cfg.Label == "":
		return inputerr.Errorf("validate: --label must not be empty")
	case cfg.Task != "" && !logits:
		return inputerr.Errorf("validate: --task applies to the logits mode only (a model file has its task)")
	case cfg.Bootstrap < 0:
		return inputerr.Errorf("validate: --bootstrap %d: want 0 (no intervals) or more", cfg.Bootstrap)
	case cfg.MaxJacobianSamples < 0:
		return inputerr.Errorf("validate: --max-jacobian-samples %d: want 0 (none) or more", cfg.MaxJacobianSamples)
	case len(cfg.Noise) == 0:
		return inputerr.Errorf("validate: --noise needs at least one level")
	case !(cfg.RobustnessEps >= 0) || math.IsInf(cfg.RobustnessEps, 0):
		return inputerr.Errorf("validate: --robustness-eps %v: want a finite value >= 0", cfg.RobustnessEps)
	case cfg.RobustnessDraws < 1:
		return inputerr.Errorf("validate: --robustness-draws %d: want at least 1", cfg.RobustnessDraws)
	case cfg.GradBatch < 1 || cfg.LatencyBatch < 1 || cfg.LatencyRuns < 1 || cfg.LatencyWarmup < 0:
		return inputerr.Errorf("validate: grad and latency batch sizes and runs must be positive")
	case cfg.SpikeWindow < 5 || !(cfg.SpikeThreshold > 0) || math.IsInf(cfg.SpikeThreshold, 0):
		return inputerr.Errorf("validate: --spike-window %d (want >= 5) or --spike-threshold %v (want > 0) out of range", cfg.SpikeWindow, cfg.SpikeThreshold)
	}
	switch cfg.Task {
	case "", compute.TaskClassification, compute.TaskRegression:
	default:
		return inputerr.Errorf("validate: --task %q: want classification or regression", cfg.Task)
	}
	seen := map[float64]bool{}
	for _, v := range cfg.Noise {
		if !(v > 0) || math.IsInf(v, 0) || seen[v] {
			return inputerr.Errorf("validate: --noise %v: want distinct positive levels", cfg.Noise)
		}
		seen[v] = true
	}
	return nil
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
	cfg *ValidateConfig
	log *slog.Logger
	ds  *arrowio.Dataset
	res *ValidationResult
	// has[s] says whether side s is part of the run.
	has  [3]bool
	task string
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
func (r *validateRun) loadModels() error {
	paths := [3]string{r.cfg.Baseline, r.cfg.Candidate, r.cfg.Control}
	ins := [3]**provenance.File{&r.res.Inputs.Baseline, &r.res.Inputs.Candidate, &r.res.Inputs.Control}
	for s, path := range paths {
		if path == "" {
			continue
		}
		lm, err := loadModel(path, r.cfg.Activation)
		if err != nil {
			return inputerr.InFile(path, err)
		}
		net, err := NetworkFromModel[float64](lm.model)
		if err != nil {
			return inputerr.InFile(path, err)
		}
		net32, err := NetworkFromModel[float32](lm.model)
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
		x, err := Standardize(r.ds, &m.arch)
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
func (r *validateRun) loadLogits() error {
	paths := [3]string{r.cfg.BaselineLogits, r.cfg.CandidateLogits, r.cfg.ControlLogits}
	ins := [3]**provenance.File{&r.res.Inputs.BaselineLogits, &r.res.Inputs.CandidateLogits, &r.res.Inputs.ControlLogits}
	for s, path := range paths {
		if path == "" {
			continue
		}
		in, err := provenance.HashFile(path)
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
func (r *validateRun) loadTrainLogs() error {
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
		in, err := provenance.HashFile(path)
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
		r.jacIdx = slices.Clone(permutation(n, r.cfg.Seed, jacobianStream)[:k])
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
	r.timeModels()
	return nil
}

// jacobianStream is the PCG stream of the Jacobian sample.
const jacobianStream uint64 = 0x5EED_7AC0
