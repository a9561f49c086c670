package stages

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/compute"
	"github.com/strata-ml/strata/gate"
	"github.com/strata-ml/strata/internal/datasets"
	"github.com/strata-ml/strata/internal/inputerr"
	"github.com/strata-ml/strata/internal/inputfile"
	"github.com/strata-ml/strata/internal/limits"
	"github.com/strata-ml/strata/internal/provenance"
	"github.com/strata-ml/strata/internal/yamlstrict"
	"github.com/strata-ml/strata/modelmap"
	"github.com/strata-ml/strata/validation"
)

// PilotSchemaVersion is the schema_version of pilot.json.
const PilotSchemaVersion = 1

// PilotConfig configures Pilot: the whole pilot, convert -> finetune ->
// validate -> report, from one YAML file (docs/PILOT.md). Fields tagged
// yaml come from the file; the others are set by the caller.
type PilotConfig struct {
	// Version of the config format: 1 (also when absent).
	Version int `yaml:"version" json:"version"`

	// Data names a data set embedded in the binary (digits, wine, iris)
	// instead of files. Otherwise Train is the training data and Test the
	// evaluation data of validate; without Test, TestFraction of Train
	// is held out (seeded). Valid is the validation data of every
	// training run; without it, each holds out its ValidFraction.
	Data         string  `yaml:"data" json:"data,omitempty"`
	Train        string  `yaml:"train" json:"train,omitempty"`
	Valid        string  `yaml:"valid" json:"valid,omitempty"`
	Test         string  `yaml:"test" json:"test,omitempty"`
	TestFraction float64 `yaml:"test_fraction" json:"test_fraction"`
	// Label names the target column of the data.
	Label string `yaml:"label" json:"label"`

	// Model is the dense baseline (Arrow, safetensors or ONNX). Empty:
	// Pilot trains one as Baseline describes. An ONNX model is converted
	// and validated, not fine-tuned (see Pilot).
	Model string `yaml:"model" json:"model,omitempty"`
	// Activation is for a safetensors nn.Sequential Model without
	// architecture metadata (default relu).
	Activation compute.Activation `yaml:"activation" json:"activation,omitempty"`
	// Baseline is the training of the dense baseline Pilot trains when
	// Model is empty: its Init (empty: mlp:D-128-128-K for D features and
	// K classes, 1 output for regression), Task and training options.
	Baseline FinetuneConfig `yaml:"baseline" json:"baseline"`
	// Convert chooses the structure of the candidate.
	Convert ConvertConfig `yaml:"convert" json:"convert"`
	// Finetune is the candidate's training budget, and the control's (no
	// init or task: both start from a model).
	Finetune FinetuneConfig `yaml:"finetune" json:"finetune"`
	// Control also fine-tunes the dense baseline with the candidate's
	// budget and validates against it (default true); for an ONNX model,
	// whose candidate has no budget, the baseline itself is the control.
	Control bool `yaml:"control" json:"control"`
	// Validate configures the metrics.
	Validate validation.Config `yaml:"validate" json:"validate"`
	// Policy is the gate policy file; empty: the embedded default.
	Policy string `yaml:"policy" json:"policy,omitempty"`
	// Seed drives every stage.
	Seed uint64 `yaml:"seed" json:"seed"`

	// Workdir receives each stage's outputs in its own subdirectory
	// (data, baseline, convert, finetune, control, validate, report) and
	// pilot.json.
	Workdir string `yaml:"-" json:"workdir"`
	// ConfigFile is the file the config came from ("" when built in Go).
	ConfigFile string `yaml:"-" json:"config_file,omitempty"`
	// DecisionFile, XComFile, MetricsFile and NoFail are passed to Report.
	DecisionFile string `yaml:"-" json:"decision_file,omitempty"`
	XComFile     string `yaml:"-" json:"xcom_file,omitempty"`
	MetricsFile  string `yaml:"-" json:"metrics_file,omitempty"`
	NoFail       bool   `yaml:"-" json:"no_fail,omitempty"`
	// Resume makes every training run continue from its checkpoint, or
	// return at once when it had finished (FinetuneConfig.Resume): a
	// pilot or sweep run again after an interruption redoes only what
	// was not done.
	Resume bool `yaml:"-" json:"resume,omitempty"`
	// Logger receives one line per stage; StageLogger the stages' own
	// logs (nil: discarded).
	Logger      *slog.Logger `yaml:"-" json:"-"`
	StageLogger *slog.Logger `yaml:"-" json:"-"`
	// TrainProgress, when set, is called after every training step of
	// the stage named (baseline, finetune, control).
	TrainProgress func(stage string, p FinetuneProgress) `yaml:"-" json:"-"`

	// lines holds the line of every key of ConfigFile, for the checks'
	// errors to cite; nil for a config built in Go. kind names the config
	// in errors when there is no file (default "pilot config").
	lines map[string]int
	kind  string
}

// DefaultPilotConfig returns the defaults a pilot config file starts from:
// each stage's defaults, a held-out test share of 0.25, a validation
// share of 0.15 for every training run, and the control on.
func DefaultPilotConfig() PilotConfig {
	// The pilot sets each stage run's label (the config's), paths and
	// seed; the stages' own defaults for everything else.
	ft := DefaultFinetuneConfig()
	ft.Label, ft.ValidFraction = "", 0.15
	va := validation.DefaultConfig()
	va.Label = ""
	return PilotConfig{
		Version: 1, TestFraction: 0.25, Label: DefaultFinetuneConfig().Label,
		Baseline: ft, Convert: DefaultConvertConfig(), Finetune: ft, Control: true, Validate: va,
	}
}

// DemoPilotConfig is `strata pilot --demo`: the embedded digits data
// (UCI, CC BY 4.0) split 75/25, a dense 64-128-128-10 baseline, one
// Monarch + low-rank structure fine-tuned next to its equal-budget
// control, and the default policy. Workdir is left to the caller.
func DemoPilotConfig() PilotConfig {
	cfg := DefaultPilotConfig()
	cfg.Data = "digits"
	cfg.Seed = 1
	cfg.Baseline.Init = "mlp:64-128-128-10:relu"
	cfg.Baseline.Epochs = 40
	cfg.Baseline.LR = 3e-3
	cfg.Convert.Structure = "monarch"
	cfg.Convert.Blocks = 4
	cfg.Convert.ResidualRank = 4
	cfg.Finetune.Epochs = 15
	cfg.Finetune.LR = 1e-3
	return cfg
}

// LoadPilotConfig reads a pilot config file onto DefaultPilotConfig,
// strictly (an unknown key or a value of the wrong type is a *yamlstrict.ConfigError
// naming the line and the key), resolves its relative paths against the
// file's directory and checks every setting (PilotConfig.Check).
func LoadPilotConfig(path string) (PilotConfig, error) {
	src, err := inputfile.ReadFile(path, limits.ConfigBytes, "config file")
	if err != nil {
		return DefaultPilotConfig(), fmt.Errorf("pilot: %w", err)
	}
	return parsePilotConfig(path, src)
}

// parsePilotConfig is LoadPilotConfig of the file path holding src.
func parsePilotConfig(path string, src []byte) (PilotConfig, error) {
	cfg := DefaultPilotConfig()
	if err := decodeConfig(path, src, &cfg, &cfg); err != nil {
		return cfg, err
	}
	return cfg, cfg.Check()
}

// decodeConfig decodes the config file path, holding src, strictly into
// v, which is or embeds pc, checks its version and resolves pc's relative
// paths against the file's directory. pc keeps the line of every key.
func decodeConfig(path string, src []byte, v any, pc *PilotConfig) error {
	lines, err := yamlstrict.Decode(path, src, v)
	if err != nil {
		return err
	}
	pc.ConfigFile, pc.lines = path, lines
	if pc.Version != 1 {
		return &yamlstrict.ConfigError{File: path, Line: lines["version"], Key: "version", Err: fmt.Errorf("%d: want 1", pc.Version)}
	}
	base := filepath.Dir(path)
	for _, p := range []*string{&pc.Train, &pc.Valid, &pc.Test, &pc.Model, &pc.Policy} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(base, *p)
		}
	}
	pc.Convert.resolveCalibration(base)
	return nil
}

// configError is a problem with the setting key of the config, at its
// line in the file when the config came from one.
func (cfg *PilotConfig) configError(key, format string, args ...any) error {
	return &yamlstrict.ConfigError{File: cmp.Or(cfg.ConfigFile, cfg.kind, "pilot config"), Line: cfg.lines[key], Key: key, Err: fmt.Errorf(format, args...)}
}

// sectionError is the config error of err, a stage's check of the
// config's section (baseline, convert, candidates[2], ...): a field the
// stage names is the key section.field, at its line (the section's when
// the file does not set it).
func (cfg *PilotConfig) sectionError(section string, err error) error {
	var fe *inputerr.FieldError
	if !errors.As(err, &fe) || len(fe.Fields()) == 0 {
		return cfg.configError(section, "%w", err)
	}
	line, ok := cfg.lines[section+"."+fe.Fields()[0]]
	if !ok {
		line = cfg.lines[section]
	}
	msg := fe.Message(func(key string) string { return section + "." + key })
	return &yamlstrict.ConfigError{File: cmp.Or(cfg.ConfigFile, cfg.kind, "pilot config"), Line: line, Err: inputerr.Errorf("%s", msg)}
}

// Check validates the whole config before any work, as Pilot and Sweep
// do first: the data sources, every stage's settings (the baseline's and
// the candidate's training, convert and validate: each stage's own
// check, on placeholder paths) and the orchestrator files. Problems are
// *yamlstrict.ConfigError citing the key and its line. The inputs it
// names are checked by checkInputs.
func (cfg *PilotConfig) Check() error {
	bad := cfg.configError
	switch {
	case cfg.Data != "" && (cfg.Train != "" || cfg.Test != "" || cfg.Valid != ""):
		return bad("data", "give an embedded data set or train/test files, not both")
	case cfg.Data != "" && !slices.Contains(datasets.Names, cfg.Data):
		return bad("data", "%q: want one of %s", cfg.Data, strings.Join(datasets.Names, ", "))
	case cfg.Data == "" && cfg.Train == "":
		return bad("train", "no data: set train (and test), or data: digits")
	case cfg.Test == "" && !(cfg.TestFraction > 0 && cfg.TestFraction < 1):
		return bad("test_fraction", "%v: want a share in (0, 1) of the data to hold out for validate", cfg.TestFraction)
	case cfg.Label == "":
		return bad("label", "must not be empty")
	case cfg.Finetune.Init != "":
		return bad("finetune.init", "belongs under baseline: the candidate and the control fine-tune a model")
	case cfg.Finetune.Task != "":
		return bad("finetune.task", "belongs under baseline: the candidate and the control fine-tune a model")
	}
	// Every stage's own check, on placeholders for the paths the pilot
	// fills in per run.
	const placeholder = "-"
	data := PilotData{Train: placeholder, Valid: cfg.Valid}
	if cfg.Model == "" {
		ft := cfg.training(cfg.Baseline, data, cfg.Seed, placeholder)
		if ft.Init == "" {
			ft.Init = "mlp:1-2" // the data's default, made once the data is read
		}
		if err := ft.validate(); err != nil {
			return cfg.sectionError("baseline", err)
		}
	}
	ft := cfg.training(cfg.Finetune, data, cfg.Seed, placeholder)
	ft.Model = placeholder
	if err := ft.validate(); err != nil {
		return cfg.sectionError("finetune", err)
	}
	cv := cfg.Convert
	cv.Model, cv.Out = placeholder, placeholder
	if err := cv.validate(); err != nil {
		return cfg.sectionError("convert", err)
	}
	va := cfg.Validate
	va.Baseline, va.Candidate, va.Data, va.Out, va.Label = placeholder, placeholder, placeholder, placeholder, cfg.Label
	if err := va.Check(); err != nil {
		return cfg.sectionError("validate", err)
	}
	for _, f := range []struct{ key, path string }{{"decision_file", cfg.DecisionFile}, {"xcom_file", cfg.XComFile}, {"metrics_file", cfg.MetricsFile}} {
		if f.path == "" || cfg.inWorkdir(f.path) {
			continue
		}
		if err := arrowio.CheckTarget(f.path); err != nil {
			return inputerr.Fieldf("pilot", "{"+f.key+"} %w", err)
		}
	}
	return nil
}

// inWorkdir reports whether path is a file directly in a work directory
// that does not exist yet: the pilot creates it (a Kubernetes job writes
// its decision beside the run's outputs), so its absence is no error.
func (cfg *PilotConfig) inWorkdir(path string) bool {
	if cfg.Workdir == "" {
		return false
	}
	dir, err1 := filepath.Abs(filepath.Dir(path))
	wd, err2 := filepath.Abs(cfg.Workdir)
	_, err3 := os.Stat(wd)
	return err1 == nil && err2 == nil && dir == wd && errors.Is(err3, fs.ErrNotExist)
}

// pilotInputs is the data checkInputs read, for the run to reuse.
type pilotInputs struct {
	// source describes the data (PilotData.Source).
	source string
	// train is the embedded set or the Train file; test the Test file
	// (nil without).
	train, test *arrowio.Dataset
}

// checkInputs reads and checks, before any work, what the config names:
// the policy, the data (which must read with the label) and the baseline,
// a model file or an init, which must fit the data's width and labels.
func (cfg *PilotConfig) checkInputs(ctx context.Context) (*pilotInputs, error) {
	if _, err := gate.LoadPolicy(cfg.Policy); err != nil {
		return nil, err
	}
	in := &pilotInputs{}
	switch {
	case cfg.Data != "":
		set, err := datasets.Load(cfg.Data)
		if err != nil {
			return nil, cfg.configError("data", "%w", err)
		}
		in.train, in.source = set.Dataset, set.Describe()
	case cfg.Test == "":
		in.source = "files: " + cfg.Train + " split"
	default:
		in.source = "files"
	}
	for _, f := range []struct {
		path string
		ds   **arrowio.Dataset
	}{{cfg.Train, &in.train}, {cfg.Valid, nil}, {cfg.Test, &in.test}} {
		if f.path == "" {
			continue
		}
		ds, _, err := readData(ctx, f.path, cfg.Label)
		if err != nil {
			return nil, err
		}
		if f.ds != nil {
			*f.ds = ds
		}
		if ds.D != in.train.D {
			return nil, inputerr.Errorf("%s: the data has %d features, %s has %d", f.path, ds.D, cfg.Train, in.train.D)
		}
	}
	if f := cfg.Convert.pilotCalibration("", cfg.Label).Calibration; f != "" { // a calibration file, not the training split
		if _, _, err := readData(ctx, f, cfg.Label); err != nil {
			return nil, err
		}
	}
	name := cmp.Or(cfg.Train, cfg.Data)
	if cfg.onnxPilot() {
		// ONNX Runtime checks the model's widths against the data when
		// validate feeds it; here the file must be an ONNX model strata
		// reads.
		if _, _, _, err := readONNX(cfg.Model); err != nil {
			return nil, inputerr.InFile(cfg.Model, err)
		}
		return in, nil
	}
	if cfg.Model != "" {
		lm, err := mapModel(ctx, cfg.Model, cfg.Activation)
		if err != nil {
			return nil, inputerr.InFile(cfg.Model, err)
		}
		defer lm.close()
		if lm.model.Arch.Kind == arrowio.ArchGeneric {
			return nil, cfg.configError("model", "%s: %w", cfg.Model, modelmap.ErrGeneric)
		}
		return in, cfg.fits("model", cfg.Model, lm.model.Arch, in.train, name)
	}
	if cfg.Baseline.Init == "" {
		return in, nil
	}
	arch, err := InitArchitecture(cfg.Baseline.Init, cfg.Baseline.Task)
	if err != nil {
		return nil, cfg.sectionError("baseline", err)
	}
	return in, cfg.fits("baseline.init", cfg.Baseline.Init, arch, in.train, name)
}

// fits checks that the baseline arch (the setting key, what) takes the
// data's features and has an output for every label.
func (cfg *PilotConfig) fits(key, what string, arch arrowio.Architecture, ds *arrowio.Dataset, name string) error {
	if arch.Inputs != ds.D {
		return cfg.configError(key, "%s takes %d features, the data (%s) has %d", what, arch.Inputs, name, ds.D)
	}
	spec, err := modelmap.NetworkSpec(arch)
	if err != nil {
		return cfg.configError(key, "%s: %w", what, err)
	}
	if err := checkLabels(name, ds, arch.Task, spec.Outputs()); err != nil {
		return cfg.configError(key, "%s: %w", what, err)
	}
	return nil
}

// PilotStage is one stage of a pilot run in pilot.json.
type PilotStage struct {
	Name string `json:"name"`
	// Dir is the stage's output directory; Seconds its wall time.
	Dir     string  `json:"dir"`
	Seconds float64 `json:"seconds"`
}

// PilotResult is pilot.json, plus each stage's result in memory.
type PilotResult struct {
	SchemaVersion int             `json:"schema_version"`
	Tool          provenance.Tool `json:"tool"`
	Config        PilotConfig     `json:"config"`
	// Data names where the data came from and the files the stages read.
	Data PilotData `json:"data"`
	// BaselineModel is the dense baseline every comparison is against.
	BaselineModel string        `json:"baseline_model"`
	Stages        []PilotStage  `json:"stages"`
	Decision      gate.Decision `json:"decision"`
	Why           string        `json:"why"`
	// ReportHTML is the path of report.html.
	ReportHTML string  `json:"report_html"`
	Seconds    float64 `json:"seconds"`

	// Skipped lists the stages not run and why: the fine-tuning and the
	// control's training of an ONNX model.
	Skipped []PilotSkip `json:"skipped,omitempty"`

	Baseline   *FinetuneResult    `json:"-"` // nil when Model was given
	Convert    *ConvertResult     `json:"-"`
	Finetune   *FinetuneResult    `json:"-"` // nil for an ONNX model
	Control    *FinetuneResult    `json:"-"` // nil without the control's training
	Validation *validation.Result `json:"-"`
	Report     *ReportResult      `json:"-"`
}

// PilotData describes the pilot's data.
type PilotData struct {
	// Source is the embedded data set's description, or "files".
	Source    string `json:"source"`
	Train     string `json:"train"`
	Valid     string `json:"valid,omitempty"`
	Test      string `json:"test"`
	TrainRows int    `json:"train_rows"`
	TestRows  int    `json:"test_rows"`
}

// Pilot runs the whole pilot: it prepares the data, trains the dense
// baseline (unless Model is given), converts it, fine-tunes the
// candidate, fine-tunes the dense baseline with the same budget as the
// equal-budget control (unless Control is false), validates the candidate
// against both, and reports against the policy. Each stage is the same
// function its subcommand calls and writes the same files, in its own
// subdirectory of Workdir; Workdir/pilot.json summarises the run. The
// decision is the report's.
//
// An ONNX Model is converted (the structured model.onnx is the candidate)
// and validated in ONNX Runtime, not fine-tuned: fine-tuning a model of
// any architecture is the host's (examples/pytorch). The equal-budget
// control of a candidate fine-tuned for zero epochs is the baseline
// itself, which is then validated as the control. Both are in
// PilotResult.Skipped and in the report's warnings, with the reason.
func Pilot(ctx context.Context, cfg PilotConfig) (*PilotResult, error) {
	start := time.Now()
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Workdir == "" {
		return nil, inputerr.Fieldf("pilot", "{workdir} is required")
	}
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	inputs, err := cfg.checkInputs(ctx)
	if err != nil {
		return nil, err
	}
	wd, err := filepath.Abs(cfg.Workdir)
	if err != nil {
		return nil, fmt.Errorf("pilot: %w", err)
	}
	cfg.Workdir = wd
	out, err := claimOutput("pilot", "workdir", wd)
	if err != nil {
		return nil, err
	}
	defer out.release()
	res := &PilotResult{SchemaVersion: PilotSchemaVersion, Tool: provenance.Version(), Config: cfg}
	dir := func(name string) string { return filepath.Join(wd, name) }
	total := 6
	if cfg.Model != "" {
		total--
	}
	if !cfg.Control || cfg.onnxPilot() {
		total--
	}
	if cfg.onnxPilot() {
		total--
	}
	n := 0
	stage := func(name, what string, run func() error) error {
		n++
		log.Info(fmt.Sprintf("pilot [%d/%d] %s", n, total, what), "stage", name)
		t0 := time.Now()
		if err := run(); err != nil {
			return fmt.Errorf("pilot: %s stage: %w", name, err)
		}
		res.Stages = append(res.Stages, PilotStage{Name: name, Dir: dir(name), Seconds: time.Since(t0).Seconds()})
		if err := ctx.Err(); err != nil {
			return err
		}
		return nil
	}

	if err := cfg.prepareData(dir("data"), &res.Data, inputs); err != nil {
		return nil, err
	}
	res.Stages = append(res.Stages, PilotStage{Name: "data", Dir: dir("data")})
	log.Info("pilot data", "source", res.Data.Source, "train_rows", res.Data.TrainRows, "test_rows", res.Data.TestRows, "workdir", wd)

	training := func(name string, t FinetuneConfig) FinetuneConfig {
		ft := cfg.training(t, res.Data, cfg.Seed, dir(name))
		if cfg.TrainProgress != nil {
			ft.Progress = func(p FinetuneProgress) { cfg.TrainProgress(name, p) }
			ft.LogInterval = -1
		}
		return ft
	}

	res.BaselineModel = cfg.Model
	if cfg.Model == "" {
		ft, err := cfg.baselineInit(ctx, training("baseline", cfg.Baseline), res.Data.Train)
		if err != nil {
			return nil, err
		}
		err = stage("baseline", "training the dense baseline "+ft.Init, func() error {
			res.Baseline, err = Finetune(ctx, ft)
			return err
		})
		if err != nil {
			return nil, err
		}
		res.BaselineModel = filepath.Join(ft.Out, res.Baseline.Outputs.Model)
	}

	cv := cfg.Convert.pilotCalibration(res.Data.Train, cfg.Label)
	cv.Model, cv.Out, cv.Seed, cv.Activation, cv.Logger = res.BaselineModel, dir("convert"), cfg.Seed, cfg.Activation, cfg.StageLogger
	err = stage("convert", "converting to "+cv.Structure+" + "+string(cv.Residual)+" residual", func() error {
		if res.Convert, err = Convert(ctx, cv); err != nil {
			return err
		}
		// The one candidate failed: --structure auto missed its goal.
		return res.Convert.MissedTarget()
	})
	if err != nil {
		return nil, err
	}

	structured := filepath.Join(cv.Out, res.Convert.Outputs.Model)
	candidate, control := structured, ""
	if cfg.onnxPilot() {
		candidate, control = res.skipTraining(&cfg, structured)
		for _, s := range res.Skipped {
			log.Info("pilot: "+s.Stage+" skipped", "reason", s.Reason)
		}
	} else {
		ft := training("finetune", cfg.Finetune)
		ft.Model = structured
		err = stage("finetune", fmt.Sprintf("fine-tuning the candidate S + R (%d epochs)", ft.Epochs), func() error {
			res.Finetune, err = Finetune(ctx, ft)
			return err
		})
		if err != nil {
			return nil, err
		}
		candidate = filepath.Join(ft.Out, res.Finetune.Outputs.Model)
	}

	if cfg.Control && res.Finetune != nil {
		ct := training("control", cfg.Finetune)
		ct.Model = res.BaselineModel
		err = stage("control", fmt.Sprintf("fine-tuning the dense control with the same budget (%d epochs)", ct.Epochs), func() error {
			res.Control, err = Finetune(ctx, ct)
			return err
		})
		if err != nil {
			return nil, err
		}
		control = filepath.Join(ct.Out, res.Control.Outputs.Model)
	}

	va := cfg.Validate
	va.Baseline, va.Candidate, va.Control = res.BaselineModel, candidate, control
	va.Data, va.Label, va.Out, va.Seed, va.Activation, va.Logger = res.Data.Test, cfg.Label, dir("validate"), cfg.Seed, cfg.Activation, cfg.StageLogger
	if res.Finetune != nil {
		va.TrainLog = dir("finetune")
	}
	if res.Baseline != nil {
		va.BaselineTrainLog = dir("baseline")
	}
	if res.Control != nil {
		va.ControlTrainLog = dir("control")
	}
	err = stage("validate", "validating the candidate against the baseline"+map[bool]string{true: " and the control", false: ""}[control != ""], func() error {
		res.Validation, err = Validate(ctx, va)
		return err
	})
	if err != nil {
		return nil, err
	}

	rc := ReportConfig{
		Validation: filepath.Join(va.Out, res.Validation.Outputs.Report), Policy: cfg.Policy, Out: dir("report"),
		DecisionFile: cfg.DecisionFile, XComFile: cfg.XComFile, MetricsFile: cfg.MetricsFile, NoFail: cfg.NoFail,
		Title: "strata pilot report", Notes: res.notes(), Logger: cfg.StageLogger, Convert: filepath.Join(cv.Out, res.Convert.Outputs.Report),
	}
	err = stage("report", "judging against the gate policy", func() error {
		res.Report, err = Report(ctx, rc)
		return err
	})
	if err != nil {
		return nil, err
	}
	res.Decision, res.Why = res.Report.Decision, res.Report.Why
	res.ReportHTML = filepath.Join(rc.Out, res.Report.Outputs.HTML)
	res.Seconds = time.Since(start).Seconds()
	if err := writeJSON(filepath.Join(wd, "pilot.json"), res); err != nil {
		return nil, fmt.Errorf("pilot: write pilot.json: %w", err)
	}
	log.Info("pilot done", "decision", res.Decision.Label(), "seconds", fmt.Sprintf("%.1f", res.Seconds), "report", res.ReportHTML)
	return res, nil
}

// prepareData writes the pilot's data files (a split of the embedded set
// or of Train, which checkInputs read into in) to dir and fills d.
func (cfg *PilotConfig) prepareData(dir string, d *PilotData, in *pilotInputs) error {
	d.Source = in.source
	if in.test != nil {
		d.Train, d.Valid, d.Test = cfg.Train, cfg.Valid, cfg.Test
		d.TrainRows, d.TestRows = in.train.N, in.test.N
		return nil
	}
	ds := in.train
	train, test, err := Split(ds, cfg.TestFraction, cfg.Seed)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("pilot: %w", err)
	}
	d.Train, d.Test, d.Valid = filepath.Join(dir, "train.arrow"), filepath.Join(dir, "test.arrow"), cfg.Valid
	d.TrainRows, d.TestRows = train.N, test.N
	// Datasets carry the label under the configured name.
	opts := []arrowio.Option{arrowio.WithLabel(cfg.Label)}
	if err := arrowio.WriteDataset(d.Train, train, opts...); err != nil {
		return fmt.Errorf("pilot: %w", err)
	}
	if err := arrowio.WriteDataset(d.Test, test, opts...); err != nil {
		return fmt.Errorf("pilot: %w", err)
	}
	return nil
}

// baselineInit gives ft, the training of the dense baseline, its default
// architecture (defaultInit of the training data) when Baseline has no
// Init.
func (cfg *PilotConfig) baselineInit(ctx context.Context, ft FinetuneConfig, train string) (FinetuneConfig, error) {
	if ft.Init != "" {
		return ft, nil
	}
	var err error
	ft.Init, err = defaultInit(ctx, train, cfg.Label, cfg.Baseline.Task)
	return ft, err
}

// defaultInit is the baseline architecture for data without one given:
// mlp:D-128-128-K.
func defaultInit(ctx context.Context, train, label string, task compute.Task) (string, error) {
	ds, _, err := readData(ctx, train, label)
	if err != nil {
		return "", err
	}
	k := 1
	if task != "regression" {
		for _, y := range ds.Y {
			if y >= float64(k) && y == math.Trunc(y) {
				k = int(y) + 1
			}
		}
		k = max(k, 2)
	}
	return fmt.Sprintf("mlp:%d-128-128-%d:relu", ds.D, k), nil
}
