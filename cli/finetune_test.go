package cli_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/internal/datasets"
)

// writeData writes an embedded data set to dir/name.
func writeData(t *testing.T, set, dir, name string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := datasets.Write(set, path); err != nil {
		t.Fatal(err)
	}
	return path
}

func readBytes(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func entries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

// TestFinetuneSIGTERMResume sends a real SIGTERM to a child `strata
// finetune` mid-run, as Kubernetes does before killing a pod, then runs
// it again with --resume: the outputs must be the bytes of an
// uninterrupted run.
func TestFinetuneSIGTERMResume(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no SIGTERM on Windows")
	}
	dir := t.TempDir()
	train := writeData(t, "digits", dir, "digits.arrow")
	const totalSteps = 12 * 57 // 12 epochs of ceil(1797 / 32) batches
	args := func(out string) []string {
		return []string{"finetune", "--init", "mlp:64-256-256-10:relu", "--train", train, "--out", out,
			"--epochs", "12", "--batch-size", "32", "--checkpoint-every", "20", "--seed", "3", "--log-format", "json"}
	}

	refOut := filepath.Join(dir, "uninterrupted")
	if r := run(t, args(refOut)...); r.code != 0 {
		t.Fatalf("uninterrupted run: exit %d\n%s", r.code, r.stderr)
	}

	out := filepath.Join(dir, "interrupted")
	cmd := exec.Command(strataBin, args(out)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	current := filepath.Join(out, "checkpoint", "CURRENT")
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(5 * time.Millisecond) {
		if _, err := os.Stat(current); err == nil {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("no checkpoint appeared\n%s", stderr.String())
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("after SIGTERM: %v, want exit code 1 (retryable)\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "rerun with --resume") {
		t.Errorf("stderr does not say how to resume:\n%s", stderr.String())
	}
	if got := entries(t, out); !slices.Equal(got, []string{"checkpoint"}) {
		t.Fatalf("after SIGTERM the output directory holds %v, want only the checkpoint", got)
	}
	name := strings.TrimSpace(string(readBytes(t, current)))
	step, err := strconv.Atoi(strings.TrimPrefix(name, "step-"))
	if err != nil || step < 20 || step >= totalSteps {
		t.Fatalf("checkpoint %q: want a step in [20, %d)", name, totalSteps)
	}

	r := run(t, append(args(out), "--resume")...)
	if r.code != 0 {
		t.Fatalf("resumed run: exit %d\n%s", r.code, r.stderr)
	}
	for _, f := range []string{"model.arrow", "model.materialized.arrow", "train_log.arrow"} {
		if !bytes.Equal(readBytes(t, filepath.Join(out, f)), readBytes(t, filepath.Join(refOut, f))) {
			t.Errorf("%s of the resumed run differs from the uninterrupted run's", f)
		}
	}
	var res struct {
		ResumedFromStep int `json:"resumed_from_step"`
		Steps           int `json:"steps"`
	}
	if err := json.Unmarshal(readBytes(t, filepath.Join(out, "finetune.json")), &res); err != nil {
		t.Fatal(err)
	}
	if res.ResumedFromStep != step || res.Steps != totalSteps {
		t.Errorf("finetune.json: resumed from %d after %d steps, want %d and %d", res.ResumedFromStep, res.Steps, step, totalSteps)
	}
	t.Logf("interrupted after step %d of %d, resumed to identical bytes", step, totalSteps)
}

func TestFinetuneBadInputExitCode(t *testing.T) {
	dir := t.TempDir()
	iris := writeData(t, "iris", dir, "iris.csv")
	// Tensors not named like an nn.Sequential: a generic checkpoint.
	generic := filepath.Join(dir, "generic.safetensors")
	err := arrowio.WriteSafetensors(generic, []arrowio.Tensor{
		{Name: "encoder.proj.weight", Role: "weight", Shape: []int64{3, 4}, Data: make([]float32, 12)},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		args       []string
		wantStderr string
	}{
		{"feature width", []string{"--init", "mlp:64-32-10", "--train", iris}, "4 features, the model takes 64"},
		{"label range", []string{"--init", "mlp:4-8-2", "--train", iris}, "label 2 is not a class index in [0, 2)"},
		{"generic model", []string{"--model", generic, "--train", iris}, "this checkpoint is generic"},
		{"no model", []string{"--train", iris}, "--model and --init"},
		{"positional", []string{"--init", "mlp:4-8-3", "--train", iris, "extra"}, "no positional arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := filepath.Join(dir, "out-"+strings.ReplaceAll(tt.name, " ", "-"))
			r := run(t, append([]string{"finetune", "--out", out}, tt.args...)...)
			if r.code != 2 {
				t.Errorf("exit %d, want 2\n%s", r.code, r.stderr)
			}
			if !strings.Contains(r.stderr, tt.wantStderr) {
				t.Errorf("stderr %q does not contain %q", r.stderr, tt.wantStderr)
			}
			if r.stdout != "" {
				t.Errorf("stdout %q, want nothing", r.stdout)
			}
			if got := entries(t, out); len(got) != 0 {
				t.Errorf("bad input left %v", got)
			}
		})
	}
}

func TestFinetuneIrisLogsAndOutputs(t *testing.T) {
	dir := t.TempDir()
	iris := writeData(t, "iris", dir, "iris.csv")
	out := filepath.Join(dir, "out")
	r := run(t, "finetune", "--init", "mlp:4-16-3", "--train", iris, "--valid-fraction", "0.25", "--out", out,
		"--epochs", "5", "--lr", "0.01", "--log-format", "json")
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	if r.stdout != "" {
		t.Errorf("stdout %q, want nothing", r.stdout)
	}
	// Not a terminal: one JSON log line per epoch, and no progress bar.
	epochs := 0
	for _, line := range strings.Split(strings.TrimSpace(r.stderr), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("stderr line is not JSON: %q", line)
		}
		if rec["msg"] == "epoch done" {
			epochs++
		}
	}
	if epochs != 5 {
		t.Errorf("%d epoch lines, want 5\n%s", epochs, r.stderr)
	}
	if got := entries(t, out); !slices.Equal(got, []string{"finetune.json", "model.arrow", "model.materialized.arrow", "train_log.arrow"}) {
		t.Errorf("outputs %v", got)
	}
	insp := run(t, "inspect", "--json", filepath.Join(out, "model.arrow"))
	if insp.code != 0 || !strings.Contains(insp.stdout, `"standardization"`) {
		t.Errorf("inspect: exit %d, architecture without standardization:\n%s", insp.code, insp.stdout)
	}
}
