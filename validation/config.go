package validation

import (
	"log/slog"
	"math"
	"strings"

	"github.com/strata-ml/strata/compute"
	"github.com/strata-ml/strata/internal/inputerr"
	"github.com/strata-ml/strata/internal/limits"
)

// Config configures Validate. The JSON form is recorded in
// validation.json. The fields with a yaml key are the options of a pilot
// or sweep config's validate section; the pilot sets the others per run
// (Data, Label and Out are never empty in validation.json).
type Config struct {
	// Baseline and Candidate are the models compared: Arrow model files or
	// safetensors of the MLP family (run in-process), or ONNX models of
	// any architecture (.onnx, run by ONNX Runtime); Control optionally
	// the dense baseline fine-tuned with the candidate's budget. In the
	// logits mode they are optional and only their weights are read
	// (params, bytes, layer condition).
	Baseline  string `json:"baseline,omitempty"`
	Candidate string `json:"candidate,omitempty"`
	Control   string `json:"control,omitempty"`
	// BaselineLogits and CandidateLogits (and ControlLogits) select the
	// logits mode instead: outputs computed elsewhere, one row per row
	// of Data in the same order (arrowio.ReadLogits: Arrow, Parquet,
	// CSV, safetensors or .npy).
	BaselineLogits  string `json:"baseline_logits,omitempty"`
	CandidateLogits string `json:"candidate_logits,omitempty"`
	ControlLogits   string `json:"control_logits,omitempty"`
	// BaselineParams is the baseline's parameter count for the logits
	// mode when no model file is given beside the logits (0: unknown,
	// params is then not applicable).
	BaselineParams int64 `json:"baseline_params,omitempty"`
	// CandidateParams is the candidate's parameter count for the logits
	// mode (0: unknown).
	CandidateParams int64 `json:"candidate_params,omitempty"`
	// ControlParams is the control's parameter count for the logits mode
	// (0: unknown).
	ControlParams int64 `json:"control_params,omitempty"`
	// Data is the evaluation data, raw (each model applies its own
	// standardisation); Label names its target column.
	Data  string `json:"data,omitempty"`
	Label string `json:"label,omitempty"`
	// Out is the output directory.
	Out string `json:"out,omitempty"`
	// Task is for the logits mode and ONNX models, which do not record
	// it: classification or regression; empty infers it from the width
	// (1 output: regression).
	Task compute.Task `json:"task,omitempty"`
	// Activation is for a safetensors nn.Sequential model without
	// architecture metadata, which does not say its activation: without
	// it such a model is refused (never assumed ReLU).
	Activation compute.Activation `json:"activation,omitempty"`

	// Bootstrap is the number of paired bootstrap resamples of every
	// confidence interval (0: no intervals; an interval over fewer than
	// MinBootstrapUnits units is null with the reason); Seed drives them
	// and every random draw of the metrics.
	Bootstrap int    `yaml:"bootstrap" json:"bootstrap"`
	Seed      uint64 `json:"seed"`
	// MaxJacobianSamples bounds the inputs whose Jacobian is computed (a
	// seeded sample of the data when it has more rows).
	MaxJacobianSamples int `yaml:"max_jacobian_samples" json:"max_jacobian_samples"`
	// Noise lists the input noise levels of the perturbation metrics as
	// shares of each feature's standard deviation; the middle one (the
	// lower middle for an even count) is the headline.
	Noise []float64 `yaml:"noise" json:"noise"`
	// RobustnessEps is the relative Frobenius norm of the weight noise of
	// layer_robustness, averaged over RobustnessDraws draws.
	RobustnessEps   float64 `yaml:"robustness_eps" json:"robustness_eps"`
	RobustnessDraws int     `yaml:"robustness_draws" json:"robustness_draws"`
	// GradBatch is the evaluation batch size of grad_norm_ratio.
	GradBatch int `yaml:"grad_batch" json:"grad_batch"`
	// LatencyBatch rows are timed in LatencyRuns rounds after
	// LatencyWarmup untimed passes per model; each round runs every model
	// once, in an order that rotates from round to round.
	LatencyBatch  int `yaml:"latency_batch" json:"latency_batch"`
	LatencyRuns   int `yaml:"latency_runs" json:"latency_runs"`
	LatencyWarmup int `yaml:"latency_warmup" json:"latency_warmup"`
	// TrainLog is the candidate's finetune output directory (or its
	// train_log.arrow), BaselineTrainLog and ControlTrainLog the other
	// models' (optional), for training_stability.
	TrainLog         string `json:"train_log,omitempty"`
	BaselineTrainLog string `json:"baseline_train_log,omitempty"`
	ControlTrainLog  string `json:"control_train_log,omitempty"`
	// SpikeWindow and SpikeThreshold define a loss spike: a loss above
	// the median of the SpikeWindow previous steps plus SpikeThreshold
	// times their scaled MAD (compute.TrainingStability).
	SpikeWindow    int     `yaml:"spike_window" json:"spike_window"`
	SpikeThreshold float64 `yaml:"spike_threshold" json:"spike_threshold"`
	// LRSweep is an lr_sweep.json (written by Sweep) for lr_robustness:
	// the candidate's and the dense baseline's fine-tuning repeated at
	// several learning rates. Empty: lr_robustness is null.
	LRSweep string `json:"lr_sweep,omitempty"`

	// Logger receives progress; nil discards it.
	Logger *slog.Logger `json:"-"`
}

// DefaultConfig returns the defaults the CLI starts from.
func DefaultConfig() Config {
	return Config{
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

// Check checks the config before any input is read: exactly one of the
// models mode (Baseline and Candidate) and the logits mode
// (BaselineLogits and CandidateLogits), Data and Out set, and every
// setting in range. Problems are bad input (inputerr.ErrInput).
func (cfg *Config) Check() error {
	logits := cfg.BaselineLogits != "" || cfg.CandidateLogits != "" || cfg.ControlLogits != ""
	params := cfg.BaselineParams != 0 || cfg.CandidateParams != 0 || cfg.ControlParams != 0
	onnx := false
	for _, p := range []string{cfg.Baseline, cfg.Candidate, cfg.Control} {
		onnx = onnx || strings.HasSuffix(strings.ToLower(p), ".onnx")
	}
	for _, pc := range []struct {
		flag  string
		model string
		n     int64
	}{{"baseline", cfg.Baseline, cfg.BaselineParams}, {"candidate", cfg.Candidate, cfg.CandidateParams}, {"control", cfg.Control, cfg.ControlParams}} {
		switch {
		case pc.n < 0:
			return inputerr.Fieldf("validate", "{"+pc.flag+"_params} %d: want a count > 0", pc.n)
		case pc.n > 0 && pc.model != "":
			return inputerr.Fieldf("validate", "{"+pc.flag+"_params} and {"+pc.flag+"} both give the %s's parameters: keep one", pc.flag)
		}
	}
	switch {
	case params && !logits:
		return inputerr.Fieldf("validate", "{baseline_params}, {candidate_params} and {control_params} are for the logits mode (a model file has its parameters)")
	case logits && (cfg.BaselineLogits == "" || cfg.CandidateLogits == ""):
		return inputerr.Fieldf("validate", "logits mode needs {baseline_logits} and {candidate_logits}")
	case !logits && (cfg.Baseline == "" || cfg.Candidate == ""):
		return inputerr.Fieldf("validate", "{baseline} and {candidate} are required (or {baseline_logits} and {candidate_logits})")
	case cfg.Data == "":
		return inputerr.Fieldf("validate", "{data} is required")
	case cfg.Out == "":
		return inputerr.Fieldf("validate", "{out} is required")
	case cfg.Label == "":
		return inputerr.Fieldf("validate", "{label} must not be empty")
	case cfg.Task != "" && !logits && !onnx:
		return inputerr.Fieldf("validate", "{task} applies to the logits mode and ONNX models only (a strata model file has its task)")
	case cfg.Bootstrap < 0:
		return inputerr.Fieldf("validate", "{bootstrap} %d: want 0 (no intervals) or more", cfg.Bootstrap)
	case cfg.Bootstrap > limits.Bootstrap:
		return inputerr.Fieldf("validate", "{bootstrap} %d: over the limit of %s resamples (docs/FORMATS.md, Input limits)", cfg.Bootstrap, limits.Count(limits.Bootstrap))
	case cfg.MaxJacobianSamples < 0:
		return inputerr.Fieldf("validate", "{max_jacobian_samples} %d: want 0 (none) or more", cfg.MaxJacobianSamples)
	case len(cfg.Noise) == 0:
		return inputerr.Fieldf("validate", "{noise} needs at least one level")
	case len(cfg.Noise) > limits.NoiseLevels:
		return inputerr.Fieldf("validate", "{noise}: %d levels, over the limit of %d (docs/FORMATS.md, Input limits)", len(cfg.Noise), limits.NoiseLevels)
	case cfg.RobustnessDraws > limits.RobustnessDraws:
		return inputerr.Fieldf("validate", "{robustness_draws} %d: over the limit of %d (docs/FORMATS.md, Input limits)", cfg.RobustnessDraws, limits.RobustnessDraws)
	case cfg.LatencyRuns > limits.LatencyRuns || cfg.LatencyWarmup > limits.LatencyRuns:
		return inputerr.Fieldf("validate", "{latency_runs} %d or {latency_warmup} %d: over the limit of %s (docs/FORMATS.md, Input limits)",
			cfg.LatencyRuns, cfg.LatencyWarmup, limits.Count(limits.LatencyRuns))
	case !(cfg.RobustnessEps >= 0) || math.IsInf(cfg.RobustnessEps, 0):
		return inputerr.Fieldf("validate", "{robustness_eps} %v: want a finite value >= 0", cfg.RobustnessEps)
	case cfg.RobustnessDraws < 1:
		return inputerr.Fieldf("validate", "{robustness_draws} %d: want at least 1", cfg.RobustnessDraws)
	case cfg.GradBatch < 1 || cfg.LatencyBatch < 1 || cfg.LatencyRuns < 1 || cfg.LatencyWarmup < 0:
		return inputerr.Errorf("validate: grad and latency batch sizes and runs must be positive")
	case cfg.SpikeWindow < 5 || !(cfg.SpikeThreshold > 0) || math.IsInf(cfg.SpikeThreshold, 0):
		return inputerr.Fieldf("validate", "{spike_window} %d (want >= 5) or {spike_threshold} %v (want > 0) out of range", cfg.SpikeWindow, cfg.SpikeThreshold)
	}
	switch cfg.Task {
	case "", compute.TaskClassification, compute.TaskRegression:
	default:
		return inputerr.Fieldf("validate", "{task} %q: want classification or regression", cfg.Task)
	}
	seen := map[float64]bool{}
	for _, v := range cfg.Noise {
		if !(v > 0) || math.IsInf(v, 0) || seen[v] {
			return inputerr.Fieldf("validate", "{noise} %v: want distinct positive levels", cfg.Noise)
		}
		seen[v] = true
	}
	return nil
}
