package stages

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/compute"
	"github.com/strata-ml/strata/internal/inputerr"
	"github.com/strata-ml/strata/internal/limits"
	"github.com/strata-ml/strata/internal/provenance"
	"github.com/strata-ml/strata/modelmap"
	"github.com/strata-ml/strata/validation"
)

// Standardisation modes of FinetuneConfig.Standardize.
const (
	// StandardizeAuto keeps the model's standardisation; a model without
	// one keeps raw features, and a fresh --init model gets one fitted on
	// the training split.
	StandardizeAuto = "auto"
	// StandardizeFit fits a new one on the training split, replacing the
	// model's.
	StandardizeFit = "fit"
	// StandardizeNone trains on raw features and stores none.
	StandardizeNone = "none"
)

// Precisions of FinetuneConfig.Precision.
const (
	PrecisionFloat32 = "float32"
	PrecisionFloat64 = "float64"
)

// FinetuneConfig configures Finetune. The JSON form is recorded in
// finetune.json and in checkpoints, which --resume compares. The fields
// with a yaml key are the training options of a pilot or sweep config's
// baseline and finetune sections (init and task for the baseline only);
// the pilot sets the others per run (Train, Label and Out are never empty
// in finetune.json).
type FinetuneConfig struct {
	// Model is the model to train (Arrow model file or safetensors),
	// decomposed or dense. Exactly one of Model and Init is set.
	Model string `json:"model,omitempty"`
	// Init creates a fresh dense MLP instead (see InitArchitecture), e.g.
	// "mlp:64-256-256-10:relu", initialised from Seed.
	Init string `yaml:"init" json:"init,omitempty"`
	// Task is the task of an Init model: classification (also when
	// empty) or regression.
	Task compute.Task `yaml:"task" json:"task,omitempty"`
	// Activation is for a safetensors nn.Sequential Model without
	// architecture metadata (default relu).
	Activation compute.Activation `json:"activation,omitempty"`
	// Train is the training data; Valid the validation data. Without
	// Valid, ValidFraction in (0, 1) holds out that share of Train
	// (seeded by Seed); with neither there is no validation.
	Train         string  `json:"train,omitempty"`
	Valid         string  `json:"valid,omitempty"`
	ValidFraction float64 `yaml:"valid_fraction" json:"valid_fraction,omitempty"`
	// Label names the target column of the data.
	Label string `json:"label,omitempty"`
	// Out is the output directory; checkpoints go to Out/checkpoint.
	Out string `json:"out,omitempty"`

	// Epochs over the training data, in shuffled mini-batches of
	// BatchSize rows (the last batch of an epoch may be smaller).
	Epochs    int `yaml:"epochs" json:"epochs"`
	BatchSize int `yaml:"batch_size" json:"batch_size"`
	// LR is the base learning rate of the warm-up + cosine schedule
	// (compute.LR); Warmup is its warm-up in steps when >= 1 (a whole
	// number) or as a fraction of all steps when < 1.
	LR     float64 `yaml:"lr" json:"lr"`
	Warmup float64 `yaml:"warmup" json:"warmup"`
	// Optimizer is sgd or adamw; Momentum is SGD's. WeightDecay applies
	// to weights and factors, never to biases and norms.
	Optimizer   string  `yaml:"optimizer" json:"optimizer"`
	Momentum    float64 `yaml:"momentum" json:"momentum"`
	WeightDecay float64 `yaml:"weight_decay" json:"weight_decay"`
	// ResidualL2 is the penalty lambda * sum ||p||^2 over the correction
	// factors; Clip the global gradient norm (0: none).
	ResidualL2 float64 `yaml:"residual_l2" json:"residual_l2"`
	Clip       float64 `yaml:"clip" json:"clip"`
	// Retract re-projects orthogonal trunks after each step.
	Retract bool `yaml:"retract" json:"retract"`
	// Freeze is "", compute.RoleTrunk or compute.RoleCorrection: those parameters are
	// not trained at all (no update, no weight decay).
	Freeze compute.Role `yaml:"freeze" json:"freeze,omitempty"`
	// FactorLR is compute's per-factor learning-rate rule: auto (muP
	// multipliers for layers initialised from scratch, 1 for loaded
	// ones), mup or none.
	FactorLR string `yaml:"factor_lr" json:"factor_lr"`
	// Patience > 0 stops when the validation loss has not improved for
	// that many epochs, and the best-validation weights are the result;
	// 0 trains every epoch and keeps the last weights.
	Patience int `yaml:"patience" json:"patience"`
	// Standardize is StandardizeAuto, StandardizeFit or StandardizeNone.
	Standardize string `yaml:"standardize" json:"standardize"`
	// Precision is float32 (training through the generic float32 code)
	// or float64 (for checks).
	Precision string `yaml:"precision" json:"precision"`
	// Shards is the number of row blocks of each batch computed in
	// parallel; part of the numerical definition of a step.
	Shards int `yaml:"shards" json:"shards"`
	// Seed drives the initialisation, the validation split and every
	// epoch's shuffle.
	Seed uint64 `json:"seed"`

	// CheckpointEvery > 0 checkpoints every that many steps; 0 at the
	// end of every epoch. A cancelled context (SIGTERM, SIGINT)
	// checkpoints too.
	CheckpointEvery int `json:"checkpoint_every"`
	// Resume continues from Out/checkpoint when there is one, and
	// returns the result recorded in Out/finetune.json, training nothing,
	// when Out holds the finished outputs of a run of the same config
	// and inputs (a retried step that had finished).
	Resume bool `json:"resume"`

	// Logger receives progress; nil discards it.
	Logger *slog.Logger `json:"-"`
	// LogInterval is the least time between two step log lines (epoch
	// lines are always logged); 0 means 10s, negative means none.
	LogInterval time.Duration `json:"-"`
	// Progress, when set, is called after every step.
	Progress func(FinetuneProgress) `json:"-"`
}

// DefaultFinetuneConfig returns the defaults the CLI starts from.
func DefaultFinetuneConfig() FinetuneConfig {
	opt := compute.DefaultOptimizerConfig()
	return FinetuneConfig{
		Label:       "label",
		Epochs:      20,
		BatchSize:   64,
		LR:          1e-3,
		Warmup:      0.05,
		Optimizer:   opt.Kind,
		Momentum:    opt.Momentum,
		WeightDecay: opt.WeightDecay,
		Clip:        1,
		FactorLR:    compute.FactorLRAuto,
		Standardize: StandardizeAuto,
		Precision:   PrecisionFloat32,
		Shards:      compute.DefaultShards,
	}
}

// FinetuneProgress reports one step to FinetuneConfig.Progress.
type FinetuneProgress struct {
	Step, TotalSteps int // Step counts from 1
	Epoch, Epochs    int // Epoch counts from 1
	Loss, LR         float64
	// EpochEnd marks the last step of an epoch; ValidLoss and
	// ValidAccuracy are then set when there is validation data (NaN
	// otherwise, and the accuracy of a regression model always).
	EpochEnd                 bool
	ValidLoss, ValidAccuracy float64
}

// FinetuneInputs are the input files with their hashes.
type FinetuneInputs struct {
	Model *provenance.File `json:"model,omitempty"`
	Train provenance.File  `json:"train"`
	Valid *provenance.File `json:"valid,omitempty"`
}

// FinetuneData describes the data the run used.
type FinetuneData struct {
	TrainRows int `json:"train_rows"`
	ValidRows int `json:"valid_rows"`
	Features  int `json:"features"`
	Outputs   int `json:"outputs"`
}

// EpochMetrics are validation metrics after an epoch (counted from 1).
// Accuracy is null for regression.
type EpochMetrics struct {
	Epoch    int                      `json:"epoch"`
	Loss     validation.NullableFloat `json:"loss"`
	Accuracy validation.NullableFloat `json:"accuracy"`
}

// FinetuneOutputs names the files Finetune wrote, relative to Out.
type FinetuneOutputs struct {
	Model string `json:"model"`
	// Materialized is the trained S + R made dense, in the input's format
	// (MaterializedName).
	Materialized string `json:"materialized"`
	Log          string `json:"log"`
	Report       string `json:"report"`
}

// FinetuneResult is finetune.json.
type FinetuneResult struct {
	SchemaVersion int             `json:"schema_version"`
	Tool          provenance.Tool `json:"tool"`
	Inputs        FinetuneInputs  `json:"inputs"`
	Config        FinetuneConfig  `json:"config"`
	Data          FinetuneData    `json:"data"`
	// Params counts the trained scalars, ParamsFrozen the frozen ones.
	Params       int `json:"params"`
	ParamsFrozen int `json:"params_frozen"`
	// Standardization is how the inputs were standardised: "model"
	// (kept), "fitted" (on the training split) or "none".
	Standardization string `json:"standardization"`
	StepsPerEpoch   int    `json:"steps_per_epoch"`
	WarmupSteps     int    `json:"warmup_steps"`
	// Steps and Epochs are what ran (fewer than planned on early stop).
	Steps        int  `json:"steps"`
	Epochs       int  `json:"epochs"`
	EarlyStopped bool `json:"early_stopped"`
	// RestoredEpoch is the epoch whose weights were written when
	// Patience > 0 restored the best-validation weights.
	RestoredEpoch int `json:"restored_epoch,omitempty"`
	// ResumedFromStep is the checkpoint step this process started from.
	ResumedFromStep int `json:"resumed_from_step,omitempty"`
	// FinalTrainLoss is the mean training loss over the last epoch's
	// steps (weighted by batch size).
	FinalTrainLoss validation.NullableFloat `json:"final_train_loss"`
	FinalValid     *EpochMetrics            `json:"final_valid,omitempty"`
	BestValid      *EpochMetrics            `json:"best_valid,omitempty"`
	// WallSeconds is this process's time; TrainSeconds the time spent in
	// optimisation steps over every attempt; SamplesPerSecond this
	// process's training throughput.
	WallSeconds      float64         `json:"wall_seconds"`
	TrainSeconds     float64         `json:"train_seconds"`
	SamplesPerSecond float64         `json:"samples_per_second"`
	Outputs          FinetuneOutputs `json:"outputs"`
}

// Finetune trains a model (decomposed or dense, or a fresh dense MLP from
// Init) on the training data and writes Out/model.arrow, its dense
// materialisation (model.materialized.arrow, or
// model.materialized.safetensors for a safetensors input),
// Out/train_log.arrow (docs/TRAIN_LOG.md) and
// Out/finetune.json, all or nothing.
//
// Training checkpoints to Out/checkpoint (CheckpointEvery) and, when ctx
// is cancelled, at the current step boundary before returning an error
// wrapping ctx's (context.Canceled): no final output is written then, and
// a run with Resume continues to the byte-identical result an
// uninterrupted run gives. The checkpoint is removed once the outputs are
// written.
//
// Bad input (a model or data file that does not read, data whose width
// or labels do not fit the model, a generic checkpoint, a bad flag, a
// checkpoint of another config or other inputs) returns an error wrapping
// ErrInput and writes nothing.
func Finetune(ctx context.Context, cfg FinetuneConfig) (*FinetuneResult, error) {
	start := time.Now()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	out, err := claimOutput("finetune", "out", cfg.Out)
	if err != nil {
		return nil, err
	}
	defer out.release()
	p, err := prepareFinetune(ctx, cfg)
	if err != nil {
		return nil, err
	}
	p.start = start
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if cfg.Resume {
		if res := p.finished(); res != nil {
			cfg.Logger.Info("finetune already done: its outputs are in place", "out", cfg.Out)
			return res, nil
		}
	}
	if cfg.Precision == PrecisionFloat64 {
		return runFinetune[float64](ctx, p)
	}
	return runFinetune[float32](ctx, p)
}

func (cfg *FinetuneConfig) validate() error {
	switch {
	case (cfg.Model == "") == (cfg.Init == ""):
		return inputerr.Fieldf("finetune", "exactly one of {model} and {init} is required")
	case cfg.Train == "":
		return inputerr.Fieldf("finetune", "{train} is required")
	case cfg.Out == "":
		return inputerr.Fieldf("finetune", "{out} is required")
	case cfg.Label == "":
		return inputerr.Fieldf("finetune", "{label} must not be empty")
	case cfg.Model != "" && cfg.Task != "":
		return inputerr.Fieldf("finetune", "{task} applies to {init} only (a model file has its task)")
	case cfg.Valid != "" && cfg.ValidFraction != 0:
		return inputerr.Fieldf("finetune", "give {valid} or {valid_fraction}, not both")
	case cfg.ValidFraction != 0 && !(cfg.ValidFraction > 0 && cfg.ValidFraction < 1):
		return inputerr.Fieldf("finetune", "{valid_fraction} %v: want a value in (0, 1)", cfg.ValidFraction)
	case cfg.Epochs < 1:
		return inputerr.Fieldf("finetune", "{epochs} %d: want at least 1", cfg.Epochs)
	case cfg.Epochs > limits.TrainSteps:
		return inputerr.Fieldf("finetune", "{epochs} %d: over the limit of %s training steps (docs/FORMATS.md, Input limits)", cfg.Epochs, limits.Count(limits.TrainSteps))
	case cfg.BatchSize < 1:
		return inputerr.Fieldf("finetune", "{batch_size} %d: want at least 1", cfg.BatchSize)
	case !(cfg.LR > 0) || math.IsInf(cfg.LR, 0):
		return inputerr.Fieldf("finetune", "{lr} %v: want a positive number", cfg.LR)
	case !(cfg.Warmup >= 0) || math.IsInf(cfg.Warmup, 0) || (cfg.Warmup >= 1 && cfg.Warmup != math.Trunc(cfg.Warmup)):
		return inputerr.Fieldf("finetune", "{warmup} %v: want a fraction of the steps in [0, 1) or a whole number of steps", cfg.Warmup)
	case cfg.Patience < 0:
		return inputerr.Fieldf("finetune", "{patience} %d: want 0 (off) or more", cfg.Patience)
	case cfg.Patience > 0 && cfg.Valid == "" && cfg.ValidFraction == 0:
		return inputerr.Fieldf("finetune", "{patience} needs validation data ({valid} or {valid_fraction})")
	case cfg.CheckpointEvery < 0:
		return inputerr.Fieldf("finetune", "{checkpoint_every} %d: want 0 (every epoch) or more", cfg.CheckpointEvery)
	case cfg.Retract && cfg.Freeze == compute.RoleTrunk:
		return inputerr.Fieldf("finetune", "{retract} re-projects the trunk, which {freeze} trunk keeps fixed")
	}
	switch cfg.Freeze {
	case "", compute.RoleTrunk, compute.RoleCorrection:
	default:
		return inputerr.Fieldf("finetune", "{freeze} %q: want trunk or correction", cfg.Freeze)
	}
	switch cfg.Standardize {
	case StandardizeAuto, StandardizeFit, StandardizeNone:
	default:
		return inputerr.Fieldf("finetune", "{standardize} %q: want auto, fit or none", cfg.Standardize)
	}
	switch cfg.Precision {
	case PrecisionFloat32, PrecisionFloat64:
	default:
		return inputerr.Fieldf("finetune", "{precision} %q: want float32 or float64", cfg.Precision)
	}
	tc := cfg.trainerConfig()
	if err := tc.Optimizer.Validate(); err != nil {
		return inputerr.Errorf("finetune: %w", err)
	}
	switch tc.FactorLR {
	case compute.FactorLRAuto, compute.FactorLRMuP, compute.FactorLRNone:
	default:
		return inputerr.Fieldf("finetune", "{factor_lr} %q: want auto, mup or none", cfg.FactorLR)
	}
	if !(cfg.Clip >= 0) || math.IsInf(cfg.Clip, 0) || !(cfg.ResidualL2 >= 0) || math.IsInf(cfg.ResidualL2, 0) {
		return inputerr.Fieldf("finetune", "{clip} and {residual_l2} must be finite and >= 0")
	}
	if cfg.Shards < 1 || cfg.Shards > 256 {
		return inputerr.Fieldf("finetune", "{shards} %d: want 1 to 256", cfg.Shards)
	}
	if cfg.Init != "" {
		if _, err := InitArchitecture(cfg.Init, cfg.Task); err != nil {
			return err
		}
	}
	return nil
}

// trainerConfig returns the engine's configuration of cfg.
func (cfg *FinetuneConfig) trainerConfig() compute.TrainerConfig {
	tc := compute.DefaultTrainerConfig()
	tc.Optimizer.Kind = cfg.Optimizer
	tc.Optimizer.Momentum = cfg.Momentum
	tc.Optimizer.WeightDecay = cfg.WeightDecay
	tc.Shards = cfg.Shards
	tc.ClipNorm = cfg.Clip
	tc.ResidualL2 = cfg.ResidualL2
	tc.Retract = cfg.Retract
	tc.FactorLR = cfg.FactorLR
	return tc
}

// finetunePlan is everything a run needs, prepared and checked before any
// training: the datasets (standardised), the architecture, the input
// model, and the schedule.
type finetunePlan struct {
	cfg    FinetuneConfig
	start  time.Time
	inputs FinetuneInputs
	lm     *loadedModel // nil for --init
	arch   arrowio.Architecture
	// standardization is "model", "fitted" or "none".
	standardization string
	train, valid    *arrowio.Dataset // standardised; valid may be nil
	outputs         int
	stepsPerEpoch   int
	totalSteps      int
	warmupSteps     int
}

// prepareFinetune reads and checks every input.
func prepareFinetune(ctx context.Context, cfg FinetuneConfig) (*finetunePlan, error) {
	p := &finetunePlan{cfg: cfg}
	train, trainIn, err := readData(ctx, cfg.Train, cfg.Label)
	if err != nil {
		return nil, err
	}
	p.inputs.Train = trainIn
	var valid *arrowio.Dataset
	switch {
	case cfg.Valid != "":
		var in provenance.File
		valid, in, err = readData(ctx, cfg.Valid, cfg.Label)
		if err != nil {
			return nil, err
		}
		p.inputs.Valid = &in
	case cfg.ValidFraction > 0:
		train, valid, err = Split(train, cfg.ValidFraction, cfg.Seed)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", cfg.Train, err)
		}
	}

	if cfg.Model != "" {
		lm, err := loadModel(ctx, cfg.Model, cfg.Activation)
		if err != nil {
			return nil, err
		}
		if lm.model.Arch.Kind == arrowio.ArchGeneric {
			return nil, inputerr.Errorf("%s: %w", cfg.Model, modelmap.ErrGeneric)
		}
		p.lm, p.inputs.Model, p.arch = lm, &lm.input, lm.model.Arch
	} else {
		p.arch, err = InitArchitecture(cfg.Init, cfg.Task)
		if err != nil {
			return nil, err
		}
	}
	spec, err := modelmap.NetworkSpec(p.arch)
	if err != nil {
		return nil, inputerr.InFile(cfg.Model, err)
	}
	p.outputs = spec.Outputs()

	if train.D != p.arch.Inputs {
		return nil, inputerr.Errorf("%s: the data has %d features, the model takes %d", cfg.Train, train.D, p.arch.Inputs)
	}
	if valid != nil && valid.D != p.arch.Inputs {
		return nil, inputerr.Errorf("%s: the data has %d features, the model takes %d", cfg.Valid, valid.D, p.arch.Inputs)
	}
	if err := checkLabels(cfg.Train, train, p.arch.Task, p.outputs); err != nil {
		return nil, err
	}
	if valid != nil {
		name := cfg.Valid
		if name == "" {
			name = cfg.Train + " (validation split)"
		}
		if err := checkLabels(name, valid, p.arch.Task, p.outputs); err != nil {
			return nil, err
		}
	}

	switch {
	case cfg.Standardize == StandardizeNone:
		p.arch.Standardization, p.standardization = nil, "none"
	case cfg.Standardize == StandardizeFit || (cfg.Init != "" && p.arch.Standardization == nil):
		p.arch.Standardization, p.standardization = modelmap.FitStandardization(train), "fitted"
	case p.arch.Standardization != nil:
		p.standardization = "model"
	default:
		p.standardization = "none"
	}
	if p.train, err = modelmap.Standardize(train, &p.arch); err != nil {
		return nil, inputerr.InFile(cfg.Train, err)
	}
	if valid != nil {
		if p.valid, err = modelmap.Standardize(valid, &p.arch); err != nil {
			return nil, inputerr.InFile(cfg.Valid, err)
		}
	}

	p.stepsPerEpoch = ceilDiv(p.train.N, cfg.BatchSize)
	// No overflow: epochs <= TrainSteps and rows <= DatasetValues.
	if int64(cfg.Epochs)*int64(p.stepsPerEpoch) > limits.TrainSteps {
		return nil, inputerr.Fieldf("finetune", "{epochs} %d of %d steps each: over the limit of %s training steps (docs/FORMATS.md, Input limits)",
			cfg.Epochs, p.stepsPerEpoch, limits.Count(limits.TrainSteps))
	}
	p.totalSteps = cfg.Epochs * p.stepsPerEpoch
	p.warmupSteps = int(cfg.Warmup)
	if cfg.Warmup < 1 {
		p.warmupSteps = int(math.Round(cfg.Warmup * float64(p.totalSteps)))
	}
	if p.warmupSteps >= p.totalSteps {
		return nil, inputerr.Fieldf("finetune", "{warmup} of %d steps leaves none of the %d steps after it", p.warmupSteps, p.totalSteps)
	}
	return p, nil
}

// readData reads a dataset with its hash, stopping when ctx is done.
// Problems are input errors.
func readData(ctx context.Context, path, label string) (*arrowio.Dataset, provenance.File, error) {
	in, err := provenance.HashFile(ctx, path)
	if err != nil {
		return nil, provenance.File{}, err
	}
	// Values beyond the float32 range would train and run as infinities.
	ds, err := arrowio.ReadDataset(path, arrowio.WithLabel(label), arrowio.WithContext(ctx), arrowio.WithFloat32Range())
	if err != nil {
		return nil, provenance.File{}, classify(err)
	}
	return ds, in, nil
}

// checkLabels checks that a classifier's labels are class indices in [0,
// outputs) and that a regressor has one output for the one target per row.
func checkLabels(name string, ds *arrowio.Dataset, task compute.Task, outputs int) error {
	if task == compute.TaskRegression {
		if outputs != 1 {
			return inputerr.Errorf("%s: the regression model has %d outputs, a dataset holds one target per row", name, outputs)
		}
		return nil
	}
	for i, y := range ds.Y {
		if y != math.Trunc(y) || y < 0 || y >= float64(outputs) {
			return inputerr.Errorf("%s: row %d: label %v is not a class index in [0, %d) (the model has %d outputs)", name, i, y, outputs, outputs)
		}
	}
	return nil
}

// outputNames returns the output files of a run.
func (p *finetunePlan) outputNames() FinetuneOutputs {
	dense := MaterializedName(FormatArrow)
	if p.lm != nil {
		dense = MaterializedName(p.lm.format)
	}
	return FinetuneOutputs{Model: "model.arrow", Materialized: dense, Log: "train_log.arrow", Report: "finetune.json"}
}

// writeFinetuneOutputs writes the final outputs, all or nothing, and then
// removes the checkpoint.
func (p *finetunePlan) writeOutputs(m *arrowio.Model, log *arrowio.TrainLog, res *FinetuneResult) error {
	dense, err := modelmap.Materialize(m)
	if err != nil {
		return err
	}
	lm := p.lm
	if lm == nil {
		lm = &loadedModel{format: FormatArrow}
	}
	names := res.Outputs
	res.WallSeconds = time.Since(p.start).Seconds()
	err = writeOutputs(p.cfg.Out, func(dir string) error {
		if err := arrowio.WriteModel(filepath.Join(dir, names.Model), m); err != nil {
			return err
		}
		if err := writeDense(filepath.Join(dir, names.Materialized), lm, dense); err != nil {
			return err
		}
		if err := arrowio.WriteTrainLog(filepath.Join(dir, names.Log), log); err != nil {
			return err
		}
		return writeJSON(filepath.Join(dir, names.Report), res)
	})
	if err != nil {
		return fmt.Errorf("finetune: write %s: %w", p.cfg.Out, err)
	}
	if err := os.RemoveAll(checkpointDir(p.cfg.Out)); err != nil {
		p.cfg.Logger.Warn("could not remove the checkpoint", "dir", checkpointDir(p.cfg.Out), "err", err)
	}
	return nil
}
