package cli_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	fixtureArrow = "../testdata/models/mlp-16-32-24-4.arrow"
	fixtureSafe  = "../testdata/models/mlp-16-32-24-4.safetensors"
	fixtureNaN   = "../testdata/models/nan.safetensors"
)

func TestUsageAndExitCodes(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		code       int
		wantStdout string
		wantStderr string
	}{
		{"no arguments", nil, 2, "", "Usage:"},
		{"unknown command", []string{"frobnicate"}, 2, "", `unknown command "frobnicate"`},
		{"help", []string{"help"}, 0, "convert", ""},
		{"help command", []string{"help", "convert"}, 0, "--structure", ""},
		{"help unknown", []string{"help", "nope"}, 2, "", "unknown command"},
		{"command --help", []string{"convert", "--help"}, 0, "", "--residual-rank"},
		{"unknown flag", []string{"convert", "--bogus"}, 2, "", "unknown flag: --bogus"},
		{"flag bad value", []string{"convert", "--blocks", "four"}, 2, "", "invalid argument"},
		{"version", []string{"version"}, 0, "strata ", ""},
		{"version extra arg", []string{"version", "x"}, 2, "", "no arguments"},
		{"inspect no file", []string{"inspect"}, 2, "", "exactly one FILE"},
		{"inspect missing file", []string{"inspect", "absent.arrow"}, 2, "", "absent.arrow"},
		{"inspect NaN", []string{"inspect", fixtureNaN}, 2, "", `tensor "0.weight"`},
		{"convert needs model", []string{"convert", "--out", "x"}, 2, "", "--model is required"},
		{"export bad format", []string{"export", "--model", fixtureArrow, "--format", "tflite", "--out", "x"}, 2, "", "want safetensors, arrow or onnx"},
		{"export arrow to onnx", []string{"export", "--model", fixtureArrow, "--format", "onnx", "--out", "x"}, 2, "", "--format onnx materialises a structured ONNX model"},
		{"merge no shards", []string{"merge", "--out", "x"}, 2, "", "at least one shard"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := run(t, tt.args...)
			if r.code != tt.code {
				t.Errorf("exit code %d, want %d\nstderr: %s", r.code, tt.code, r.stderr)
			}
			if !strings.Contains(r.stdout, tt.wantStdout) {
				t.Errorf("stdout %q does not contain %q", r.stdout, tt.wantStdout)
			}
			if !strings.Contains(r.stderr, tt.wantStderr) {
				t.Errorf("stderr %q does not contain %q", r.stderr, tt.wantStderr)
			}
		})
	}
}

func TestConvertInspectExport(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "conv")
	r := run(t, "convert", "--model", fixtureSafe, "--out", out, "--structure", "monarch", "--blocks", "4",
		"--rank", "2", "--residual", "lowrank", "--residual-rank", "2", "--exclude", "4.*", "--log-format", "json")
	if r.code != 0 {
		t.Fatalf("convert: exit %d: %s", r.code, r.stderr)
	}
	if r.stdout != "" {
		t.Errorf("convert wrote to stdout: %q", r.stdout)
	}
	var rep struct {
		Layers []struct {
			Name          string  `json:"name"`
			Family        string  `json:"family"`
			RelativeError float64 `json:"relative_error"`
		} `json:"layers"`
		Input struct {
			SHA256 string `json:"sha256"`
		} `json:"input"`
	}
	b, err := os.ReadFile(filepath.Join(out, "convert.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Layers) != 2 || rep.Layers[0].Family != "monarch" || len(rep.Input.SHA256) != 64 {
		t.Errorf("convert.json: %+v", rep)
	}
	for _, f := range []string{"model.arrow", "model.materialized.safetensors"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Error(err)
		}
	}

	r = run(t, "inspect", "--json", filepath.Join(out, "model.arrow"))
	if r.code != 0 {
		t.Fatalf("inspect: exit %d: %s", r.code, r.stderr)
	}
	var ins struct {
		Layers []struct {
			Name      string `json:"name"`
			Structure *struct {
				Trunk struct {
					Family string `json:"family"`
				} `json:"trunk"`
			} `json:"structure"`
		} `json:"layers"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &ins); err != nil {
		t.Fatalf("inspect --json output is not JSON: %v\n%s", err, r.stdout)
	}
	if ins.Layers[0].Structure == nil || ins.Layers[0].Structure.Trunk.Family != "monarch" || ins.Layers[4].Structure != nil {
		t.Errorf("inspect layers: %+v", ins.Layers)
	}
	r = run(t, "inspect", filepath.Join(out, "model.arrow"))
	if r.code != 0 || !strings.Contains(r.stdout, "monarch b=4 r=2 + lowrank r=2") {
		t.Errorf("inspect table: exit %d\n%s", r.code, r.stdout)
	}

	exported := filepath.Join(dir, "dense.safetensors")
	r = run(t, "export", "--model", filepath.Join(out, "model.arrow"), "--format", "safetensors", "--out", exported)
	if r.code != 0 {
		t.Fatalf("export: exit %d: %s", r.code, r.stderr)
	}
	a, _ := os.ReadFile(exported)
	c, _ := os.ReadFile(filepath.Join(out, "model.materialized.safetensors"))
	if string(a) != string(c) {
		t.Error("export differs from convert's dense copy")
	}
}

// TestConvertBadInputWritesNothing feeds a checkpoint with a NaN weight:
// exit 2, a message naming the file and tensor, and no output directory
// content.
func TestConvertBadInputWritesNothing(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	r := run(t, "convert", "--model", fixtureNaN, "--out", out)
	if r.code != 2 {
		t.Fatalf("exit %d, want 2; stderr %s", r.code, r.stderr)
	}
	if !strings.Contains(r.stderr, "nan.safetensors") || !strings.Contains(r.stderr, "0.weight") {
		t.Errorf("message does not name the file and tensor: %s", r.stderr)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("output directory exists after bad input: %v", err)
	}
	r = run(t, "convert", "--model", fixtureArrow, "--out", out, "--include", "nothing.*")
	if r.code != 2 || !strings.Contains(r.stderr, "no weight matches") {
		t.Errorf("glob matching nothing: exit %d, %s", r.code, r.stderr)
	}
}

func TestShardedConvertAndMerge(t *testing.T) {
	dir := t.TempDir()
	for _, shard := range []struct{ dir, layers string }{{"full", ""}, {"s0", "0"}, {"s1", "1-2"}} {
		args := []string{"convert", "--model", fixtureArrow, "--out", filepath.Join(dir, shard.dir), "--structure", "blockdiag", "--seed", "3"}
		if shard.layers != "" {
			args = append(args, "--layers", shard.layers)
		}
		if r := run(t, args...); r.code != 0 {
			t.Fatalf("convert %v: exit %d: %s", args, r.code, r.stderr)
		}
	}
	if r := run(t, "merge", "--out", filepath.Join(dir, "merged"), filepath.Join(dir, "s0"), filepath.Join(dir, "s1")); r.code != 0 {
		t.Fatalf("merge: exit %d: %s", r.code, r.stderr)
	}
	a, _ := os.ReadFile(filepath.Join(dir, "full", "model.arrow"))
	b, _ := os.ReadFile(filepath.Join(dir, "merged", "model.arrow"))
	if len(a) == 0 || string(a) != string(b) {
		t.Error("merged model.arrow differs from the full convert")
	}
}
