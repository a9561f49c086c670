package stages

import (
	"fmt"
	"path/filepath"
	"strings"
)

// PilotSkip is a stage a pilot did not run, with the reason, in pilot.json
// and in the report's warnings.
type PilotSkip struct {
	Stage  string `json:"stage"`
	Reason string `json:"reason"`
}

// String is the skip as the report states it.
func (s PilotSkip) String() string { return s.Stage + " stage skipped: " + s.Reason }

// onnxPilot reports whether the pilot's baseline is an ONNX model, which
// the pilot converts and validates but does not fine-tune.
func (cfg *PilotConfig) onnxPilot() bool {
	return strings.EqualFold(filepath.Ext(cfg.Model), ".onnx")
}

// skipTraining is the fine-tuning of an ONNX pilot, which is the host's:
// the candidate is convert's structured model as converted (structured,
// at convert's path) and, with cfg.Control, the equal-budget control is
// the baseline itself, the dense model fine-tuned with the candidate's
// budget of zero epochs. Both are recorded in res.Skipped with the reason.
// It returns the candidate and the control ("" without).
func (res *PilotResult) skipTraining(cfg *PilotConfig, structured string) (candidate, control string) {
	res.Skipped = append(res.Skipped, PilotSkip{Stage: "finetune", Reason: fmt.Sprintf(
		"%s is an ONNX model and strata fine-tunes models of its MLP family only: the candidate is convert's structured %s "+
			"as converted, not fine-tuned (the finetune section of the config is not used). Fine-tune it in your own trainer "+
			"(examples/pytorch: strata_torch.apply on the module, your training loop, torch.onnx.export) and validate the export "+
			"against the baseline and a control fine-tuned with the same budget",
		filepath.Base(cfg.Model), filepath.Base(structured))})
	if !cfg.Control {
		return structured, ""
	}
	res.Skipped = append(res.Skipped, PilotSkip{Stage: "control", Reason: "nothing was fine-tuned, so the equal-budget control " +
		"(the dense baseline fine-tuned with the candidate's budget, here zero epochs) is the baseline itself, unchanged, " +
		"and is validated as the control: a versus: control rule judges the candidate against it"})
	return structured, cfg.Model
}

// notes returns the skipped stages as the report's sentences.
func (res *PilotResult) notes() []string {
	var out []string
	for _, s := range res.Skipped {
		out = append(out, s.String())
	}
	return out
}
