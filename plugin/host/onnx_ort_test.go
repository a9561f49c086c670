//go:build onnxruntime

package host_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/internal/testmodels"
	"github.com/strata-ml/strata/plugin"
	"github.com/strata-ml/strata/plugin/host"
	"github.com/strata-ml/strata/stages"
	"github.com/strata-ml/strata/validation"
)

// TestONNXThroughPlugin converts PyTorch's ONNX MLP of internal/testmodels
// and validates the structured model against it through the real plugin
// process, with no files on the host's side: the model goes in as its
// bytes (host.ONNX), convert's structured model.onnx, its materialisation
// and the input's copy come back as ONNX bytes (Result.ONNX; the input's
// byte for byte) and its factors as an Arrow model (Result.Factors, one
// layer per converted weight), and the structured model goes on to
// validate as it came (Result.Input) with the evaluation rows as an Arrow
// stream. Every output is what the CLI writes on the same inputs, the
// validated candidate is the structured model (its SHA-256), the
// baseline's accuracy is PyTorch's exactly, and no run directory is left.
func TestONNXThroughPlugin(t *testing.T) {
	set := testmodels.Build(t)
	mlp, err := os.ReadFile(set.MLP.ONNX)
	if err != nil {
		t.Fatal(err)
	}
	eval, err := arrowio.ReadDataset(set.EvalCSV)
	if err != nil {
		t.Fatal(err)
	}
	c, work := open(t)
	ctx := context.Background()
	conv, err := c.Run(ctx, "convert", map[string]any{"seed": 1}, host.Inputs{"model": host.ONNX(mlp)}, nil)
	if err != nil {
		t.Fatal(err)
	}

	kinds := map[string]string{}
	for _, a := range conv.Outputs {
		kinds[a.Name] = a.Kind
	}
	want := map[string]string{"model": plugin.KindONNX, "materialized": plugin.KindONNX, "input": plugin.KindONNX, "factors": plugin.KindModel, "report": plugin.KindJSON}
	for name, kind := range want {
		if kinds[name] != kind {
			t.Errorf("convert output %q: kind %q, want %q", name, kinds[name], kind)
		}
	}
	structured, err := conv.ONNX("model")
	if err != nil {
		t.Fatal(err)
	}
	if in, err := conv.ONNX("input"); err != nil || !bytes.Equal(in, mlp) {
		t.Errorf("the input's copy: %v, or not the model sent byte for byte", err)
	}
	if _, err := conv.Model("model"); err == nil || !strings.Contains(err.Error(), "Result.ONNX") {
		t.Errorf("Model of the ONNX output: %v, want an error pointing to Result.ONNX", err)
	}
	if _, err := conv.ONNX("factors"); err == nil {
		t.Error("ONNX of the factors output: no error")
	}
	var res stages.ConvertResult
	if err := conv.Decode(&res); err != nil {
		t.Fatal(err)
	}
	factors, err := conv.Factors()
	if err != nil {
		t.Fatal(err)
	}
	var layers, converted []string
	for _, l := range factors.Arch.Layers {
		if l.Structure != nil {
			layers = append(layers, l.Name)
		}
	}
	for _, l := range res.Layers {
		converted = append(converted, l.Name)
	}
	if len(converted) == 0 || !slices.Equal(layers, converted) {
		t.Errorf("the factors hold the structured layers %v, convert.json converted %v", layers, converted)
	}

	candidate, err := conv.Input("model")
	if err != nil {
		t.Fatal(err)
	}
	valInputs := host.Inputs{"baseline": host.ONNX(mlp), "candidate": candidate, "data": host.Dataset(eval)}
	valConfig := map[string]any{"bootstrap": 100, "latency_runs": 3, "seed": 1}
	val, err := c.Run(ctx, "validate", valConfig, valInputs, nil)
	if err != nil {
		t.Fatal(err)
	}
	v, err := validation.Parse(val.JSON, "validation.json")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(structured)
	if v.Inputs.Candidate == nil || v.Inputs.Candidate.SHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("validate's candidate %+v is not the structured model", v.Inputs.Candidate)
	}
	acc, params := v.Metrics[validation.MetricAccuracy], v.Metrics[validation.MetricParams]
	if acc.Baseline == nil || float64(*acc.Baseline) != set.MLP.Accuracy || acc.Candidate == nil {
		t.Errorf("accuracy baseline %v (PyTorch %v), candidate %v", acc.Baseline, set.MLP.Accuracy, acc.Candidate)
	}
	if params.Candidate == nil || params.Baseline == nil || *params.Candidate >= *params.Baseline {
		t.Errorf("params candidate %v, baseline %v", params.Candidate, params.Baseline)
	}
	if left := runDirs(t, work); len(left) > 0 {
		t.Errorf("run directories left: %v", left)
	}

	// The CLI on the same inputs, written where the plugin stores them.
	root := t.TempDir()
	for _, s := range []struct {
		name   string
		res    host.Result
		inputs host.Inputs
		flags  []string
	}{
		{"convert", conv, host.Inputs{"model": host.ONNX(mlp)}, []string{"--seed", "1"}},
		{"validate", val, valInputs, []string{"--bootstrap", "100", "--latency-runs", "3", "--seed", "1"}},
	} {
		t.Run("as the CLI/"+s.name, func(t *testing.T) {
			dir := filepath.Join(root, s.name, "strata-run-0")
			args := append([]string{s.name}, s.flags...)
			for field, in := range s.inputs {
				args = append(args, "--"+field, writeInput(t, filepath.Join(dir, "in"), field, in))
			}
			out := filepath.Join(dir, "out")
			cliRun(t, []int{0}, append(args, "--out", out)...)
			matchesCLI(t, s.res, out)
		})
	}
}
