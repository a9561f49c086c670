package cli_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSweepCommand runs a small sweep from flags (candidates given both
// ways), checks what it printed and wrote, judges it with report
// --select-best DIR, and refuses bad input with exit 2 and nothing
// written.
func TestSweepCommand(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "sweep")
	r := run(t, "sweep", "--data", "iris", "--init", "mlp:4-16-16-3:relu", "--baseline-epochs", "20", "--epochs", "2",
		"--candidate", "name=mon,structure=monarch,blocks=4,residual-rank=2",
		"--candidates", `[{"name":"low","structure":"lowrank","rank":"2","residual":"none"}]`,
		"--lrs", "1e-3,1e-2", "--seeds", "0,1", "--jobs", "2", "--bootstrap", "50", "--out", out)
	if r.code != 0 {
		t.Fatalf("sweep: exit %d\n%s", r.code, r.stderr)
	}
	for _, want := range []string{"Sweep: 2 candidates x 2 seeds", "mon ", "low ", "lr robustness delta", "report --select-best " + out} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, r.stdout)
		}
	}
	var sw struct {
		Candidates []struct {
			Name string
			Runs []struct{ Validation string }
		}
	}
	b, err := os.ReadFile(filepath.Join(out, "sweep.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &sw); err != nil {
		t.Fatal(err)
	}
	if len(sw.Candidates) != 2 || sw.Candidates[0].Name != "mon" || sw.Candidates[1].Name != "low" || len(sw.Candidates[1].Runs) != 2 {
		t.Fatalf("sweep.json candidates %+v", sw.Candidates)
	}
	for _, c := range sw.Candidates {
		for _, run := range c.Runs {
			if _, err := os.Stat(filepath.Join(out, run.Validation)); err != nil {
				t.Error(err)
			}
		}
	}
	rep := run(t, "report", "--select-best", out, "--out", filepath.Join(dir, "report"), "--no-fail")
	if rep.code != 0 || !strings.Contains(rep.stdout+rep.stderr, "candidates") {
		t.Errorf("report --select-best DIR: exit %d\n%s%s", rep.code, rep.stdout, rep.stderr)
	}

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"bad spec", []string{"--candidate", "structure=monarch,colour=red"}, "colour"},
		{"bad json", []string{"--candidates", "{"}, "JSON list"},
		{"bad lrs", []string{"--candidate", "structure=monarch", "--lrs", "0.1"}, "--lrs"},
		{"no candidates", nil, "no candidates"},
		{"bad structure", []string{"--candidate", "structure=fractal"}, "fractal"},
	} {
		bad := filepath.Join(dir, "bad-"+strings.ReplaceAll(tc.name, " ", "-"))
		args := append([]string{"sweep", "--data", "iris", "--out", bad}, tc.args...)
		r := run(t, args...)
		if r.code != 2 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%s: exit %d, stderr %q; want 2 naming %q", tc.name, r.code, r.stderr, tc.want)
		}
		if _, err := os.Stat(bad); err == nil {
			t.Errorf("%s: created %s", tc.name, bad)
		}
	}
}
