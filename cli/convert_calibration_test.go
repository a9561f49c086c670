package cli_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-ml/strata/stages"
)

// calibrationCSV writes n rows of d features and a label column to path.
func calibrationCSV(t *testing.T, path string, n, d int) {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	var b strings.Builder
	for j := range d {
		fmt.Fprintf(&b, "f%d,", j)
	}
	b.WriteString("label\n")
	for range n {
		for range d {
			fmt.Fprintf(&b, "%g,", rng.NormFloat64())
		}
		fmt.Fprintf(&b, "%d\n", rng.IntN(4))
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// convert --calibration through the binary: bad calibration data exits
// 2, naming the problem, and writes nothing; good data writes convert.json
// with every converted layer's held-out errors, and --model-budget its
// assignment.
func TestConvertCalibration(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := filepath.Join(dir, "good.csv")
	calibrationCSV(t, good, 200, 16)
	wide := filepath.Join(dir, "wide.csv")
	calibrationCSV(t, wide, 20, 17)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no rows", []string{"--calibration", write("empty.csv", "f0,f1,label\n")}, "empty.csv"},
		{"wrong width", []string{"--calibration", wide}, "17 features"},
		{"NaN", []string{"--calibration", write("nan.csv", "f0,f1,label\n1,NaN,0\n0,1,1\n")}, "nan.csv"},
		{"missing file", []string{"--calibration", filepath.Join(dir, "absent.csv")}, "absent.csv"},
		{"one row", []string{"--calibration", write("one.csv", "f0,label\n1,0\n")}, "at least 2"},
		{"budget without calibration", []string{"--structure", "auto", "--model-budget", "0.5"}, "--calibration"},
		{"bad holdout", []string{"--calibration", good, "--calibration-holdout", "2"}, "--calibration-holdout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := filepath.Join(dir, "out-"+strings.ReplaceAll(tt.name, " ", "-"))
			r := run(t, append([]string{"convert", "--model", fixtureArrow, "--out", out}, tt.args...)...)
			if r.code != 2 || !strings.Contains(r.stderr, tt.want) {
				t.Fatalf("exit %d, want 2 naming %q; stderr %s", r.code, tt.want, r.stderr)
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("output directory exists after bad input: %v", err)
			}
		})
	}
	t.Run("good", func(t *testing.T) {
		out := filepath.Join(dir, "out-good")
		r := run(t, "convert", "--model", fixtureArrow, "--out", out, "--calibration", good, "--structure", "auto", "--model-budget", "0.6")
		if r.code != 0 {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		var res stages.ConvertResult
		if err := json.Unmarshal(readFileT(t, filepath.Join(out, "convert.json")), &res); err != nil {
			t.Fatal(err)
		}
		if res.Calibration == nil || res.Calibration.Rows != 200 || res.ModelAuto == nil || !res.ModelAuto.Met {
			t.Fatalf("convert.json: calibration %+v, model_auto %+v", res.Calibration, res.ModelAuto)
		}
		for _, l := range res.Layers {
			if l.Calibration == nil || l.Calibration.HeldRows != 50 {
				t.Errorf("layer %s: calibration record %+v, want 50 held-out rows", l.Name, l.Calibration)
			}
		}
	})
}

func readFileT(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
