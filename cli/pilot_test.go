package cli_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestPilotDemo runs the README's first command, `strata pilot --demo`,
// with no other argument: it must print the decision, the headline table
// and the path of report.html, create its work directory under the
// system's temporary directory, and exit 0.
func TestPilotDemo(t *testing.T) {
	tmp := t.TempDir()
	cmd := exec.Command(strataBin, "pilot", "--demo")
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("pilot --demo: %v\n%s", err, errb.String())
	}
	stdout := out.String()
	if !regexp.MustCompile(`^Decision: (GO|NO-GO|INCONCLUSIVE)\n`).MatchString(stdout) {
		t.Errorf("stdout does not start with the decision:\n%s", stdout)
	}
	for _, want := range []string{"metric", "baseline", "control", "candidate", "accuracy", "jacobian_condition", "perturbation_sensitivity", "params", "[95% CI]"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	}
	m := regexp.MustCompile(`(?m)^Report: (.+/report/report\.html)$`).FindStringSubmatch(stdout)
	if m == nil {
		t.Fatalf("stdout names no report.html:\n%s", stdout)
	}
	if !strings.HasPrefix(m[1], tmp+string(filepath.Separator)+"strata-demo-") {
		t.Errorf("report %s is not in a fresh directory under TMPDIR %s", m[1], tmp)
	}
	if _, err := os.Stat(m[1]); err != nil {
		t.Error(err)
	}
	stderr := errb.String()
	for _, want := range []string{"pilot [1/6] training the dense baseline", "pilot [6/6] judging against the gate policy", "pilot done"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks the progress line %q:\n%s", want, stderr)
		}
	}
	t.Logf("stdout:\n%s", stdout)
}

// TestPilotConfig runs a pilot from a config file: its exit code is the
// report's, --no-fail makes it 0, and a bad config is exit 2 naming the
// line and the key.
func TestPilotConfig(t *testing.T) {
	dir := t.TempDir()
	writeData(t, "iris", dir, "iris.csv")
	write := func(name, src string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	// A policy no model meets: NO-GO, exit 3.
	write("strict.yaml", "version: 1\nrules:\n  - {metric: accuracy, min_value: 1.01}\n")
	cfg := write("pilot.yaml", `version: 1
train: iris.csv          # relative to this file
test_fraction: 0.3
seed: 3
baseline:
  init: mlp:4-16-16-3
  epochs: 40
  lr: 0.01
convert:
  structure: blockdiag
  blocks: 2
  residual_rank: 2
finetune:
  epochs: 5
control: false
validate:
  bootstrap: 200
policy: strict.yaml
`)
	work := filepath.Join(dir, "work")
	decision := filepath.Join(dir, "decision")
	r := run(t, "pilot", "--config", cfg, "--workdir", work, "--decision-file", decision)
	if r.code != 3 {
		t.Fatalf("exit %d, want 3 (NO-GO)\n%s", r.code, r.stderr)
	}
	if !strings.HasPrefix(r.stdout, "Decision: NO-GO\n") || strings.Contains(r.stdout, "control") {
		t.Errorf("stdout:\n%s", r.stdout)
	}
	if got := string(readBytes(t, decision)); got != "no-go\n" {
		t.Errorf("decision file %q", got)
	}
	for _, d := range []string{"data", "baseline", "convert", "finetune", "validate", "report"} {
		if _, err := os.Stat(filepath.Join(work, d)); err != nil {
			t.Errorf("workdir lacks %s", d)
		}
	}
	if r := run(t, "pilot", "--config", cfg, "--workdir", work, "--no-fail"); r.code != 0 {
		t.Errorf("--no-fail: exit %d\n%s", r.code, r.stderr)
	}

	bad := write("bad.yaml", "version: 1\ndata: iris\nfinetune:\n  epochs: 2\n  learning_rate: 0.1\n")
	r = run(t, "pilot", "--config", bad, "--workdir", filepath.Join(dir, "bad-work"))
	if r.code != 2 || !strings.Contains(r.stderr, "bad.yaml:5: finetune.learning_rate: unknown key") {
		t.Errorf("bad config: exit %d\n%s", r.code, r.stderr)
	}
	if r := run(t, "pilot", "--workdir", work); r.code != 2 || !strings.Contains(r.stderr, "--config is required") {
		t.Errorf("no config: exit %d\n%s", r.code, r.stderr)
	}
}
