//go:build onnxruntime

package cli_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/strata-ml/strata/gate"
	"github.com/strata-ml/strata/internal/testmodels"
	"github.com/strata-ml/strata/onnxrt"
	"github.com/strata-ml/strata/render"
	"github.com/strata-ml/strata/stages"
	"github.com/strata-ml/strata/validation"
)

// TestPilotONNX runs `strata pilot` on PyTorch's ONNX MLP and CNN of
// internal/testmodels, with the split they were trained on: the pilot
// converts (monarch b=4 + rank 8 at the defaults), skips the fine-tuning
// and the control's training with the reason in pilot.json, on stdout and
// first among the report's warnings, validates in ONNX Runtime the
// structured model.onnx against the baseline and the baseline itself as
// the zero-budget control, and ends in a decision: its exit code is the
// decision's, the decision file holds its word. validation.json is about
// those files (their SHA-256), the baseline's accuracy is PyTorch's
// exactly, the control's metrics are the baseline's, the candidate has
// fewer parameters, and the versus: control rule of the default policy is
// judged, not failed for want of a control. report.html renders in
// Chromium with the decision and the skip.
func TestPilotONNX(t *testing.T) {
	if err := onnxrt.Available(); err != nil {
		t.Fatalf("ONNX Runtime: %v (make deps, then test with -tags onnxruntime)", err)
	}
	set := testmodels.Build(t)
	for _, m := range []*testmodels.Model{set.MLP, set.CNN} {
		t.Run(m.Name, func(t *testing.T) {
			dir := t.TempDir()
			config := filepath.Join(dir, "pilot.yaml")
			src := "version: 1\nmodel: " + m.ONNX + "\ntrain: " + set.TrainCSV + "\ntest: " + set.EvalCSV + "\nseed: 1\n"
			if err := os.WriteFile(config, []byte(src), 0o644); err != nil {
				t.Fatal(err)
			}
			work, decisionFile := filepath.Join(dir, "work"), filepath.Join(dir, "decision.txt")
			r := run(t, "pilot", "--config", config, "--workdir", work, "--decision-file", decisionFile)

			var pj struct {
				Decision gate.Decision
				Skipped  []stages.PilotSkip
				Stages   []stages.PilotStage
			}
			readJSONFile(t, filepath.Join(work, "pilot.json"), &pj)
			word := strings.TrimSpace(string(readBytes(t, decisionFile)))
			if !slices.Contains([]int{0, 3, 4}, r.code) || r.code != int(pj.Decision.ExitCode(false)) || word != string(pj.Decision) {
				t.Fatalf("exit %d, decision %q, decision file %q\n%s", r.code, pj.Decision, word, r.stderr)
			}
			var ran, skipped []string
			for _, s := range pj.Stages {
				ran = append(ran, s.Name)
			}
			for _, s := range pj.Skipped {
				skipped = append(skipped, s.Stage)
				if s.Reason == "" {
					t.Errorf("%s skipped without a reason", s.Stage)
				}
			}
			if !slices.Equal(ran, []string{"data", "convert", "validate", "report"}) || !slices.Equal(skipped, []string{"finetune", "control"}) {
				t.Errorf("stages run %v, skipped %v", ran, skipped)
			}
			for _, want := range []string{"as converted (not fine-tuned)", "Control:   the baseline itself", "Skipped:   finetune stage skipped: " + filepath.Base(m.ONNX) + " is an ONNX model"} {
				if !strings.Contains(r.stdout, want) {
					t.Errorf("stdout lacks %q:\n%s", want, r.stdout)
				}
			}

			v, _, err := validation.Read(filepath.Join(work, "validate", validation.FileName))
			if err != nil {
				t.Fatal(err)
			}
			structured, input := hashFile(t, filepath.Join(work, "convert", "model.onnx")), hashFile(t, m.ONNX)
			if v.Inputs.Candidate == nil || v.Inputs.Candidate.SHA256 != structured || v.Inputs.Baseline == nil || v.Inputs.Baseline.SHA256 != input ||
				v.Inputs.Control == nil || v.Inputs.Control.SHA256 != input || v.Inputs.TrainLog != nil {
				t.Errorf("validation.json inputs: %+v", v.Inputs)
			}
			acc, params := v.Metrics[validation.MetricAccuracy], v.Metrics[validation.MetricParams]
			if acc.Baseline == nil || float64(*acc.Baseline) != m.Accuracy || acc.Control == nil || *acc.Control != *acc.Baseline {
				t.Errorf("accuracy baseline %v control %v, PyTorch %v", acc.Baseline, acc.Control, m.Accuracy)
			}
			if params.Candidate == nil || params.Baseline == nil || *params.Candidate >= *params.Baseline {
				t.Errorf("params candidate %v, baseline %v", params.Candidate, params.Baseline)
			}

			var rep stages.ReportResult
			readJSONFile(t, filepath.Join(work, "report", "report.json"), &rep)
			if len(rep.Warnings) < 2 || rep.Warnings[0] != pj.Skipped[0].String() || rep.Warnings[1] != pj.Skipped[1].String() {
				t.Errorf("report warnings do not start with the skips: %q", rep.Warnings)
			}
			judged := false
			for _, rr := range rep.Rules {
				if rr.Versus == gate.VersusControl {
					judged = rr.Reference != nil && *rr.Reference == *acc.Baseline && !strings.Contains(rr.Sentence, gate.NoControlReason)
				}
			}
			if !rep.HasControl || !judged {
				t.Errorf("the versus: control rule was not judged against the baseline as the control: %+v", rep.Rules)
			}
			checkReportRenders(t, filepath.Join(work, "report", "report.html"), pj.Decision, pj.Skipped[0].Reason)
			t.Logf("%s: %s; %v parameters -> %v", m.Name, rep.Why, *params.Baseline, *params.Candidate)
		})
	}
}

// checkReportRenders opens a report.html in headless Chromium: the DOM it
// builds shows the decision's label and the sentence want.
func checkReportRenders(t *testing.T, page string, d gate.Decision, want string) {
	t.Helper()
	bin := chromium(t)
	dom, stderr := runChromium(t, bin, filepath.Join(t.TempDir(), "profile"), page, "--dump-dom")
	checkConsole(t, stderr)
	label := regexp.MustCompile(`<h2 id="` + render.HTMLLabelID + `">([^<]*)</h2>`).FindStringSubmatch(dom)
	if label == nil || label[1] != d.Label() {
		t.Errorf("report.html: decision label %v in the DOM, want %q", label, d.Label())
	}
	if !strings.Contains(dom, strings.ReplaceAll(want, "'", "&#39;")) && !strings.Contains(dom, want) {
		t.Errorf("report.html does not show %q", want)
	}
}

func readJSONFile(t *testing.T, path string, v any) {
	t.Helper()
	if err := json.Unmarshal(readBytes(t, path), v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func hashFile(t *testing.T, path string) string {
	t.Helper()
	sum := sha256.Sum256(readBytes(t, path))
	return hex.EncodeToString(sum[:])
}
