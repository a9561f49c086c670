package validation

import (
	"encoding/json"

	"github.com/strata-ml/strata/compute"
	"github.com/strata-ml/strata/internal/provenance"
)

// SchemaVersion is the schema_version of validation.json. Version 2 took
// jacobian_condition on the standardised input and the centred logits,
// made training_stability's headline relative and dropped the zero-width
// interval of layer_condition: a version 1 file means other things under
// the same keys and is not read.
const SchemaVersion = 2

// Validate modes: models run in-process, or logits computed elsewhere.
const (
	ModeModels = "models"
	ModeLogits = "logits"
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

// MetricKeys lists every key of Result.Metrics, in the order of
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

// UnitExamples is Metric.UnitName for an interval that resamples the
// evaluation rows.
const UnitExamples = "evaluation rows"

// MinBootstrapUnits is the fewest units a bootstrap interval is drawn
// from: below it the resamples hold too few distinct values for a
// percentile interval to mean anything, and the interval is null with
// the reason.
const MinBootstrapUnits = 20

// ExactCIPrefix starts the CIReason of an exact metric, whose interval
// is [delta, delta]: a property of the models (a count, the weights), not
// a statistic of the examples.
const ExactCIPrefix = "exact: "

// VaryingFields are the fields of validation.json that depend on the wall
// clock; everything else is a function of the inputs and the config.
var VaryingFields = []string{"metrics.latency_ms", "wall_seconds"}

// Inputs are the input files with their hashes.
type Inputs struct {
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
type Interval [2]NullableFloat

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
	Better    string         `json:"better"`
	Baseline  *NullableFloat `json:"baseline"`
	Candidate *NullableFloat `json:"candidate"`
	// Delta is candidate - baseline; RelativeDelta is Delta / |baseline|
	// (null when the baseline is 0).
	Delta         *NullableFloat `json:"delta"`
	RelativeDelta *NullableFloat `json:"relative_delta"`
	// CI95 is the 95% interval of Delta: a paired bootstrap percentile
	// interval for statistical metrics, [Delta, Delta] for exact ones,
	// null with CIReason otherwise.
	CI95     *Interval `json:"ci95"`
	CIReason string    `json:"ci_reason,omitempty"`
	// PValue is McNemar's exact p-value for the accuracy of a classifier.
	PValue *NullableFloat `json:"p_value,omitempty"`
	// The same against the control (candidate - control), present
	// whenever the run has a control (see WithControl).
	Control                *NullableFloat `json:"control,omitempty"`
	DeltaVsControl         *NullableFloat `json:"delta_vs_control,omitempty"`
	RelativeDeltaVsControl *NullableFloat `json:"relative_delta_vs_control,omitempty"`
	CI95VsControl          *Interval      `json:"ci95_vs_control,omitempty"`
	PValueVsControl        *NullableFloat `json:"p_value_vs_control,omitempty"`
	// Units is the number of units the interval resamples and UnitName
	// what they are (UnitExamples, "evaluation batches", "timing rounds",
	// ...); 0 and "" when the interval is not a bootstrap. The gate scales
	// the interval's width with them to say what effect the evaluation set
	// resolves and how many units would settle a rule.
	Units    int    `json:"units,omitempty"`
	UnitName string `json:"unit,omitempty"`
	// Reason explains every null value above except the intervals.
	Reason string `json:"reason,omitempty"`
	// NotApplicable says the metric cannot exist for these inputs (the
	// logits mode has no model to run, a regression has no accuracy, an
	// ONNX model gives no gradients); Reason says why. A gate rule on it
	// is "not applicable" unless the policy marks it required.
	NotApplicable bool `json:"not_applicable,omitempty"`
	// Unreliable, when not empty, says why the value cannot be trusted
	// (timing rounds that disagree on a busy machine): a gate rule on it
	// is inconclusive at best.
	Unreliable string `json:"unreliable,omitempty"`
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
		Control                *NullableFloat `json:"control"`
		DeltaVsControl         *NullableFloat `json:"delta_vs_control"`
		RelativeDeltaVsControl *NullableFloat `json:"relative_delta_vs_control"`
		CI95VsControl          *Interval      `json:"ci95_vs_control"`
	}{plain(m), m.Control, m.DeltaVsControl, m.RelativeDeltaVsControl, m.CI95VsControl})
}

// LayerValues are one per-layer quantity of each model.
type LayerValues struct {
	Baseline  *NullableFloat `json:"baseline"`
	Candidate *NullableFloat `json:"candidate"`
	Control   *NullableFloat `json:"control,omitempty"`
	Reason    string         `json:"reason,omitempty"`
}

// LayerSpectra are the singular values (decreasing) of each model's
// effective weight W = S + R (the baseline's dense W), and of the
// candidate's trunk S alone when it is decomposed.
type LayerSpectra struct {
	Baseline       []NullableFloat `json:"baseline"`
	Candidate      []NullableFloat `json:"candidate"`
	CandidateTrunk []NullableFloat `json:"candidate_trunk,omitempty"`
	Control        []NullableFloat `json:"control,omitempty"`
}

// Layer describes one linear layer (the k-th linear layer of
// each model).
type Layer struct {
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

// Result is validation.json.
type Result struct {
	SchemaVersion int             `json:"schema_version"`
	Tool          provenance.Tool `json:"tool"`
	Mode          string          `json:"mode"`
	Task          compute.Task    `json:"task"`
	NExamples     int             `json:"n_examples"`
	// OutputWidth is the models' outputs per row: the number of classes,
	// or 1 for regression (JSON key "outputs"; Outputs names the file).
	OutputWidth int    `json:"outputs"`
	Inputs      Inputs `json:"inputs"`
	Config      Config `json:"config"`
	// Metrics has every key of MetricKeys.
	Metrics map[string]*Metric `json:"metrics"`
	// Layers is empty in logits mode (LayersReason says so).
	Layers       []Layer  `json:"layers"`
	LayersReason string   `json:"layers_reason,omitempty"`
	Warnings     []string `json:"warnings"`
	// VaryingFields lists the fields that depend on the wall clock.
	VaryingFields []string `json:"varying_fields"`
	WallSeconds   float64  `json:"wall_seconds"`
	// Outputs names the file Validate wrote, relative to Config.Out. It is
	// not part of validation.json (whose "outputs" is OutputWidth).
	Outputs Outputs `json:"-"`
}

// FileName is the name of the file Validate writes in its output
// directory.
const FileName = "validation.json"

// Outputs names the files Validate wrote, relative to Config.Out.
type Outputs struct {
	Report string `json:"report"`
}
