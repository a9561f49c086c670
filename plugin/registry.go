package plugin

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"time"

	"github.com/strata-ml/strata/stages"
	"github.com/strata-ml/strata/validation"
)

// progressInterval is the least time between two step events of a
// finetune run (the first and last steps always go out).
const progressInterval = 250 * time.Millisecond

// registry maps stage names to their configs and functions, in the order
// Describe lists them: the four pilot stages, then the tools. Each run
// function calls the stages function the CLI's subcommand calls, with the
// config decoded over the same DefaultXxxConfig.
var registry = []*stageDef{convertStage, finetuneStage, validateStage, reportStage, exportStage}

var convertStage = &stageDef{
	name: "convert",
	doc:  "Decompose the selected weights of a dense model (Arrow, safetensors or ONNX) into a structured trunk S plus a correction R (strata convert).",
	config: func() any {
		c := stages.DefaultConvertConfig()
		return &c
	},
	inputs: []inputSlot{
		{field: "model", kind: KindModel, doc: "the dense model (Arrow, safetensors, or an ONNX model's bytes named *.onnx)", example: "model.safetensors"},
	},
	outField: "out",
	outputs: []ArtifactInfo{
		{Name: "model", Kind: KindModel, Doc: "the structured model: for an ONNX input model.onnx, of kind onnx (its bytes); else model.arrow"},
		{Name: "factors", Kind: KindModel, Doc: "the trunk and correction factors (model.arrow), for every input format"},
		{Name: "materialized", Kind: KindModel, Doc: "S + R made dense, in the input's format (model.materialized.*; of kind onnx for an ONNX input)"},
		{Name: "input", Kind: KindONNX, Doc: "an ONNX input, byte for byte (model.input.onnx)"},
		{Name: "report", Kind: KindJSON, Doc: "convert.json"},
	},
	resultOutput: "report",
	run: func(ctx context.Context, cfg any, rep *reporter) (*stageRun, error) {
		c := cfg.(*stages.ConvertConfig)
		c.Logger = rep.logger(func(a map[string]string) (int, int, bool) { return intAttrs(a, "n", "of") })
		res, err := stages.Convert(ctx, *c)
		if err != nil {
			return nil, err
		}
		// An ONNX input's structured and materialised models are ONNX too.
		kind := KindModel
		if res.Format == stages.FormatONNX {
			kind = KindONNX
		}
		files := []outputFile{
			{"model", res.Outputs.Model, kind},
			{"factors", res.Outputs.Factors, KindModel},
			{"materialized", res.Outputs.Materialized, kind},
		}
		if res.Outputs.Input != "" {
			files = append(files, outputFile{"input", res.Outputs.Input, KindONNX})
		}
		return &stageRun{result: res, files: append(files, outputFile{"report", res.Outputs.Report, KindJSON})}, nil
	},
}

var finetuneStage = &stageDef{
	name: "finetune",
	doc:  "Train a decomposed (or dense, or fresh --init) model, trunk and correction jointly (strata finetune).",
	config: func() any {
		c := stages.DefaultFinetuneConfig()
		return &c
	},
	inputs: []inputSlot{
		{field: "model", kind: KindModel, doc: "the model to train", example: "model.arrow"},
		{field: "train", kind: KindDataset, doc: "the training data", example: "train.parquet"},
		{field: "valid", kind: KindDataset, doc: "the validation data", example: "valid.parquet"},
	},
	outField: "out",
	outputs: []ArtifactInfo{
		{Name: "model", Kind: KindModel, Doc: "the trained model (model.arrow)"},
		{Name: "materialized", Kind: KindModel, Doc: "the trained S + R made dense (model.materialized.*)"},
		{Name: "log", Kind: KindTrainLog, Doc: "the training log (train_log.arrow)"},
		{Name: "report", Kind: KindJSON, Doc: "finetune.json"},
	},
	resultOutput: "report",
	run: func(ctx context.Context, cfg any, rep *reporter) (*stageRun, error) {
		c := cfg.(*stages.FinetuneConfig)
		c.Logger = rep.logger(nil)
		c.Progress = func(p stages.FinetuneProgress) {
			attrs := map[string]string{
				"step": strconv.Itoa(p.Step), "of": strconv.Itoa(p.TotalSteps),
				"epoch": strconv.Itoa(p.Epoch), "epochs": strconv.Itoa(p.Epochs),
				"loss": strconv.FormatFloat(p.Loss, 'g', 6, 64), "lr": strconv.FormatFloat(p.LR, 'g', 6, 64),
			}
			msg := fmt.Sprintf("step %d/%d epoch %d/%d loss %.4f", p.Step, p.TotalSteps, p.Epoch, p.Epochs, p.Loss)
			rep.setStep(p.Step, p.TotalSteps, progressInterval, p.Step == 1 || p.Step == p.TotalSteps, msg, attrs)
		}
		res, err := stages.Finetune(ctx, *c)
		if err != nil {
			return nil, err
		}
		return &stageRun{result: res, files: []outputFile{
			{"model", res.Outputs.Model, KindModel},
			{"materialized", res.Outputs.Materialized, KindModel},
			{"log", res.Outputs.Log, KindTrainLog},
			{"report", res.Outputs.Report, KindJSON},
		}}, nil
	},
}

var validateStage = &stageDef{
	name: "validate",
	doc:  "Compare a candidate with its baseline (and an equal-budget control) on evaluation data: every metric side by side, with intervals (strata validate).",
	config: func() any {
		c := validation.DefaultConfig()
		return &c
	},
	inputs: []inputSlot{
		{field: "baseline", kind: KindModel, doc: "the baseline model (Arrow, safetensors, or an ONNX model's bytes named *.onnx)", example: "baseline.arrow"},
		{field: "candidate", kind: KindModel, doc: "the candidate model (as the baseline: convert's ONNX model output goes in as it came)", example: "candidate.onnx"},
		{field: "control", kind: KindModel, doc: "the equal-budget control model (as the baseline)", example: "control.arrow"},
		{field: "baseline_logits", kind: KindLogits, doc: "the baseline's logits (logits mode)", example: "baseline_logits.arrow"},
		{field: "candidate_logits", kind: KindLogits, doc: "the candidate's logits (logits mode)", example: "candidate_logits.arrow"},
		{field: "control_logits", kind: KindLogits, doc: "the control's logits (logits mode)", example: "control_logits.arrow"},
		{field: "data", kind: KindDataset, doc: "the evaluation data", example: "test.parquet"},
		{field: "train_log", kind: KindTrainLog, doc: "the candidate's training log", example: "train_log.arrow"},
		{field: "baseline_train_log", kind: KindTrainLog, doc: "the baseline's training log", example: "train_log.arrow"},
		{field: "control_train_log", kind: KindTrainLog, doc: "the control's training log", example: "train_log.arrow"},
		{field: "lr_sweep", kind: KindJSON, doc: "a learning-rate sweep for lr_robustness (lr_sweep.json, written by strata sweep)", example: "lr_sweep.json"},
	},
	outField: "out",
	outputs: []ArtifactInfo{
		{Name: "report", Kind: KindJSON, Doc: "validation.json"},
	},
	resultOutput: "report",
	run: func(ctx context.Context, cfg any, rep *reporter) (*stageRun, error) {
		c := cfg.(*validation.Config)
		// One step per model evaluated.
		total, done := 2, 0
		if c.Control != "" {
			total++
		}
		c.Logger = rep.logger(func(a map[string]string) (int, int, bool) {
			if a["model"] == "" || a["seconds"] == "" {
				return 0, 0, false
			}
			done++
			return min(done, total), total, true
		})
		res, err := stages.Validate(ctx, *c)
		if err != nil {
			return nil, err
		}
		return &stageRun{result: res, files: []outputFile{{"report", res.Outputs.Report, KindJSON}}}, nil
	},
}

// ExportResult is the JSON result of the export stage, which writes no
// JSON of its own.
type ExportResult struct {
	Config  stages.ExportConfig `json:"config"`
	Outputs struct {
		Model string `json:"model"`
	} `json:"outputs"`
}

var exportStage = &stageDef{
	name: "export",
	doc:  "Materialise a model (every decomposed layer as W = S + R) as one dense file (strata export).",
	config: func() any {
		c := stages.DefaultExportConfig()
		return &c
	},
	inputs: []inputSlot{
		{field: "model", kind: KindModel, doc: "the model to materialise", example: "model.arrow"},
	},
	outField: "out",
	outFile: func(cfg any) string {
		return "model." + cfg.(*stages.ExportConfig).Format
	},
	outputs: []ArtifactInfo{
		{Name: "model", Kind: KindModel, Doc: "the dense model (the out file)"},
	},
	run: func(ctx context.Context, cfg any, rep *reporter) (*stageRun, error) {
		c := cfg.(*stages.ExportConfig)
		if err := stages.Export(ctx, *c); err != nil {
			return nil, err
		}
		res := &ExportResult{Config: *c}
		res.Outputs.Model = filepath.Base(c.Out)
		return &stageRun{result: res, files: []outputFile{{"model", res.Outputs.Model, KindModel}}}, nil
	},
}
