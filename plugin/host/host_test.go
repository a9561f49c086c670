package host_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/compute"
	"github.com/strata-ml/strata/internal/datasets"
	"github.com/strata-ml/strata/plugin"
	"github.com/strata-ml/strata/plugin/host"
	"github.com/strata-ml/strata/stages"
)

func TestDescribe(t *testing.T) {
	c, _ := open(t)
	d, err := c.Describe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if d.ProtocolVersion != plugin.ProtocolVersion || d.Tool.Version == "" {
		t.Errorf("protocol %d tool %+v", d.ProtocolVersion, d.Tool)
	}
	var names []string
	for _, s := range d.Stages {
		names = append(names, s.Name)
	}
	if got := strings.Join(names, " "); got != "convert finetune validate report export" {
		t.Errorf("stages %q", got)
	}
	st, ok := d.Stage("convert")
	if !ok {
		t.Fatal("no convert stage")
	}
	for _, f := range st.Fields {
		if f.Name == "structure" {
			if string(f.Default) != `"monarch"` || f.Type != "string" || !strings.Contains(f.Doc, "trunk family") {
				t.Errorf("convert.structure: %+v", f)
			}
			return
		}
	}
	t.Error("convert has no structure field")
}

// cliRun runs the strata CLI; exit codes in ok are success.
func cliRun(t *testing.T, ok []int, args ...string) {
	t.Helper()
	cmd := exec.Command(strataBin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	for _, c := range ok {
		if c == code {
			return
		}
	}
	t.Fatalf("strata %s: exit %d\n%s", strings.Join(args, " "), code, stderr.String())
}

// irisData returns the iris data split 70/30.
func irisData(t *testing.T) (train, test *arrowio.Dataset) {
	t.Helper()
	ds, err := datasets.Iris()
	if err != nil {
		t.Fatal(err)
	}
	train, test, err = stages.Split(ds, 0.3, 1)
	if err != nil {
		t.Fatal(err)
	}
	return train, test
}

// stage is one step of the iris pilot: its config, its inputs (the CLI
// flag of each is --<field with dashes>), and its CLI subcommand's extra
// flags.
type stage struct {
	id, name string
	config   map[string]any
	flags    []string
	inputs   func(results map[string]host.Result) host.Inputs
}

func irisPilot(t *testing.T) []stage {
	train, test := irisData(t)
	out := func(id, name string) func(map[string]host.Result) host.Input {
		return func(rs map[string]host.Result) host.Input {
			in, err := rs[id].Input(name)
			if err != nil {
				t.Fatal(err)
			}
			return in
		}
	}
	return []stage{
		{id: "baseline", name: "finetune",
			config: map[string]any{"init": "mlp:4-16-16-3:relu", "epochs": 8, "lr": 0.01, "seed": 1, "valid_fraction": 0.2},
			flags:  []string{"--init", "mlp:4-16-16-3:relu", "--epochs", "8", "--lr", "0.01", "--seed", "1", "--valid-fraction", "0.2"},
			inputs: func(map[string]host.Result) host.Inputs { return host.Inputs{"train": host.Dataset(train)} }},
		{id: "convert", name: "convert",
			config: map[string]any{"blocks": 2, "residual_rank": 2, "seed": 3},
			flags:  []string{"--blocks", "2", "--residual-rank", "2", "--seed", "3"},
			inputs: func(rs map[string]host.Result) host.Inputs { return host.Inputs{"model": out("baseline", "model")(rs)} }},
		{id: "finetune", name: "finetune",
			config: map[string]any{"epochs": 4, "seed": 1, "valid_fraction": 0.2},
			flags:  []string{"--epochs", "4", "--seed", "1", "--valid-fraction", "0.2"},
			inputs: func(rs map[string]host.Result) host.Inputs {
				return host.Inputs{"model": out("convert", "model")(rs), "train": host.Dataset(train)}
			}},
		{id: "validate", name: "validate",
			config: map[string]any{"bootstrap": 100, "latency_runs": 3, "seed": 1},
			flags:  []string{"--bootstrap", "100", "--latency-runs", "3", "--seed", "1"},
			inputs: func(rs map[string]host.Result) host.Inputs {
				return host.Inputs{
					"baseline": out("baseline", "model")(rs), "candidate": out("finetune", "model")(rs),
					"data": host.Dataset(test), "train_log": out("finetune", "log")(rs),
				}
			}},
		{id: "report", name: "report",
			config: map[string]any{"title": "iris"},
			flags:  []string{"--title", "iris"},
			inputs: func(rs map[string]host.Result) host.Inputs {
				return host.Inputs{"validation": host.Bytes("validation.json", rs["validate"].JSON)}
			}},
		{id: "export", name: "export",
			config: map[string]any{"format": "arrow"},
			flags:  []string{"--format", "arrow"},
			inputs: func(rs map[string]host.Result) host.Inputs { return host.Inputs{"model": out("finetune", "model")(rs)} }},
	}
}

// runPilot runs the iris pilot through c with streamed inputs and outputs.
func runPilot(t *testing.T, c *host.Client) ([]stage, map[string]host.Result) {
	t.Helper()
	steps := irisPilot(t)
	results := map[string]host.Result{}
	for _, s := range steps {
		res, err := c.Run(context.Background(), s.name, s.config, s.inputs(results), nil)
		if err != nil {
			t.Fatalf("%s: %v", s.id, err)
		}
		results[s.id] = res
	}
	return steps, results
}

// TestStagesMatchCLI runs every stage through the plugin with no files on
// the host side (Arrow streams in and out), then the CLI on the same
// inputs written as files: the artifacts are byte for byte the same (an
// Arrow stream framed as the file it came from), and so are the JSON
// results and the text reports once the run directories are named alike
// and the wall-clock fields (seconds, latency) are dropped.
func TestStagesMatchCLI(t *testing.T) {
	c, _ := open(t)
	steps, results := runPilot(t, c)
	if d := results["report"].Decision; d != "go" && d != "no-go" && d != "inconclusive" {
		t.Errorf("report decision %q", d)
	}
	root := t.TempDir()
	for _, s := range steps {
		t.Run(s.id, func(t *testing.T) {
			res := results[s.id]
			dir := filepath.Join(root, s.id, "strata-run-0")
			args := append([]string{s.name}, s.flags...)
			// The plugin stores each streamed input as <run>/in/<field>.arrow
			// (files as <run>/in/<field>/<name>); the CLI gets the same.
			ins := s.inputs(results)
			for field, in := range ins {
				path := writeInput(t, filepath.Join(dir, "in"), field, in)
				args = append(args, "--"+strings.ReplaceAll(field, "_", "-"), path)
			}
			out := filepath.Join(dir, "out")
			if s.name == "export" {
				if err := os.MkdirAll(out, 0o755); err != nil {
					t.Fatal(err)
				}
				out = filepath.Join(out, "model.arrow")
			}
			cliRun(t, []int{0, 3, 4}, append(args, "--out", out)...)
			if s.name == "export" {
				out = filepath.Dir(out)
			}
			matchesCLI(t, res, out)
		})
	}
}

// matchesCLI checks that every output of a streamed run is what the CLI
// wrote into out: an Arrow stream framed as the CLI's file byte for byte,
// any other file's bytes alike once normalised.
func matchesCLI(t *testing.T, res host.Result, out string) {
	t.Helper()
	for _, a := range res.Outputs {
		want, err := os.ReadFile(filepath.Join(out, a.File))
		if err != nil {
			t.Fatalf("the CLI did not write %s: %v", a.File, err)
		}
		got := a.Data
		if a.Encoding == plugin.EncodingArrowStream {
			var file bytes.Buffer
			if err := arrowio.StreamToFile(&file, bytes.NewReader(got), int64(len(got)), a.Name); err != nil {
				t.Fatal(err)
			}
			got = file.Bytes()
			if !bytes.Equal(got, want) {
				t.Errorf("%s: the plugin's %d bytes differ from the CLI's %d", a.File, len(got), len(want))
			}
			continue
		}
		if g, w := normalise(t, a.File, got), normalise(t, a.File, want); g != w {
			t.Errorf("%s differs from the CLI's:\n%s", a.File, firstDiff(g, w))
		}
	}
	if a, ok := res.Output("report"); ok && !bytes.Equal(a.Data, res.JSON) {
		t.Error("the result JSON is not the stage's JSON output")
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// writeInput writes what an input streams as the file the plugin makes of
// it and returns the path.
func writeInput(t *testing.T, dir, field string, in host.Input) string {
	t.Helper()
	data, name, err := host.EncodeInput(in)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if name != "" { // a file's bytes
		path := filepath.Join(dir, field, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	var file bytes.Buffer
	if err := arrowio.StreamToFile(&file, bytes.NewReader(data), int64(len(data)), field); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, field+".arrow")
	if err := os.WriteFile(path, file.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// runDir matches a run's private directory, the plugin's or the test's.
var runDir = regexp.MustCompile(`/[^ "'<>\n]*/strata-run-[0-9]+`)

// volatile are the JSON keys that depend on the wall clock.
var volatile = map[string]bool{"seconds": true, "wall_seconds": true, "train_seconds": true, "samples_per_second": true, "latency_ms": true}

// normalise names every run directory $RUN and, for JSON, drops the
// wall-clock fields.
func normalise(t *testing.T, file string, b []byte) string {
	t.Helper()
	s := runDir.ReplaceAllString(string(b), "$$RUN")
	if !strings.HasSuffix(file, ".json") {
		return s
	}
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	var drop func(any)
	drop = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				if volatile[k] {
					delete(x, k)
				} else {
					drop(e)
				}
			}
		case []any:
			for _, e := range x {
				drop(e)
			}
		}
	}
	drop(v)
	out, _ := json.MarshalIndent(v, "", " ")
	return string(out)
}

func firstDiff(got, want string) string {
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	lo := max(0, i-100)
	return fmt.Sprintf("got  ...%s\nwant ...%s", got[lo:min(len(got), i+100)], want[lo:min(len(want), i+100)])
}

// TestConcurrentStages runs four stages at once through one plugin
// process, twice over, and wants what they give run one at a time (no
// state shared between runs; the plugin is built with -race under -race).
func TestConcurrentStages(t *testing.T) {
	c, _ := open(t)
	steps, results := runPilot(t, c)
	want := map[string]string{}
	for id, res := range results {
		want[id] = summary(t, res)
	}
	var wg sync.WaitGroup
	for range 2 {
		for _, s := range steps {
			if s.id == "baseline" || s.id == "export" {
				continue // convert, finetune, validate, report
			}
			inputs := s.inputs(results)
			wg.Add(1)
			go func() {
				defer wg.Done()
				res, err := c.Run(context.Background(), s.name, s.config, inputs, nil)
				if err != nil {
					t.Errorf("%s: %v", s.id, err)
					return
				}
				if got := summary(t, res); got != want[s.id] {
					t.Errorf("%s run concurrently differs from its run alone:\n%s", s.id, firstDiff(got, want[s.id]))
				}
			}()
		}
	}
	wg.Wait()
}

// summary is a run's result and outputs, normalised.
func summary(t *testing.T, res host.Result) string {
	var b strings.Builder
	b.WriteString(normalise(t, "result.json", res.JSON))
	for _, a := range res.Outputs {
		fmt.Fprintf(&b, "\n%s %s %v\n", a.Name, a.File, a.Encoding)
		if a.Encoding == plugin.EncodingArrowStream {
			fmt.Fprintf(&b, "%x", a.Data)
		} else {
			b.WriteString(normalise(t, a.File, a.Data))
		}
	}
	return b.String()
}

// longFinetune is a finetune that runs for minutes unless stopped.
func longFinetune(t *testing.T) (map[string]any, host.Inputs) {
	ds, err := datasets.Digits()
	if err != nil {
		t.Fatal(err)
	}
	return map[string]any{"init": "mlp:64-256-256-10", "epochs": 100000, "seed": 1}, host.Inputs{"train": host.Dataset(ds)}
}

// TestCancel cancels a long finetune from the host: Run returns within
// 2 s with the cancellation, the stage stops in the plugin (its run
// directory is removed), and Close leaves no process behind.
func TestCancel(t *testing.T) {
	c, work := open(t)
	pid := c.Pid()
	cfg, inputs := longFinetune(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var cancelled time.Time
	var once sync.Once
	_, err := c.Run(ctx, "finetune", cfg, inputs, func(e host.Event) {
		if e.Step > 0 {
			once.Do(func() { cancelled = time.Now(); cancel() })
		}
	})
	took := time.Since(cancelled)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want an error wrapping context.Canceled", err)
	}
	if took > 2*time.Second {
		t.Errorf("Run returned %v after the cancellation, want within 2s", took)
	}
	deadline := time.Now().Add(2 * time.Second)
	for len(runDirs(t, work)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the cancelled stage still runs 2s later: %v", runDirs(t, work))
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The process still serves, until Close.
	if _, err := c.Describe(context.Background()); err != nil {
		t.Errorf("after a cancelled run: %v", err)
	}
	c.Close()
	waitGone(t, pid, 2*time.Second)
}

// TestKillPlugin kills the plugin process in the middle of a run: the
// host's Run fails within 5 s with ErrExited, and no process is left.
func TestKillPlugin(t *testing.T) {
	c, _ := open(t)
	pid := c.Pid()
	cfg, inputs := longFinetune(t)
	var killed time.Time
	var once sync.Once
	done := make(chan error, 1)
	go func() {
		_, err := c.Run(context.Background(), "finetune", cfg, inputs, func(e host.Event) {
			if e.Step > 0 {
				once.Do(func() {
					killed = time.Now()
					if p, err := os.FindProcess(pid); err == nil {
						p.Kill()
					}
				})
			}
		})
		done <- err
	}()
	select {
	case err := <-done:
		if took := time.Since(killed); took > 5*time.Second {
			t.Errorf("Run returned %v after the kill", took)
		}
		if !errors.Is(err, host.ErrExited) {
			t.Errorf("got %v, want an error wrapping host.ErrExited", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("Run hangs after the plugin was killed")
	}
	waitGone(t, pid, 5*time.Second)
	if !c.Exited() {
		t.Error("the client does not see the process exited")
	}
}

// TestLargeModel sends a 64 MiB model (a 4096 x 4096 float32 layer) to the
// plugin and gets it back through export, as Arrow streams in 4 MiB
// chunks: the model that returns is byte for byte the one sent.
func TestLargeModel(t *testing.T) {
	if raceEnabled {
		t.Skip("20 s under the race detector, and it runs nothing concurrently")
	}
	const n = 4096
	rng := rand.New(rand.NewPCG(1, 2))
	w := make([]float32, n*n)
	for i := range w {
		w[i] = float32(rng.NormFloat64())
	}
	m := &arrowio.Model{
		Arch: arrowio.Architecture{FormatVersion: arrowio.FormatVersion, Kind: arrowio.ArchMLP, Task: compute.TaskRegression, Inputs: n,
			Layers: []arrowio.Layer{{Name: "fc", Kind: compute.KindLinear, In: n, Out: n}}},
		Tensors: []arrowio.Tensor{{Name: "fc.weight", Role: compute.RoleWeight, Shape: []int64{n, n}, Data: w}},
	}
	c, _ := open(t)
	start := time.Now()
	res, err := c.Run(context.Background(), "export", map[string]any{"format": "arrow"}, host.Inputs{"model": host.Model(m)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := res.Model("model")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("64 MiB round trip in %v", time.Since(start))
	var a, b bytes.Buffer
	if err := arrowio.EncodeModel(&a, m); err != nil {
		t.Fatal(err)
	}
	if err := arrowio.EncodeModel(&b, got); err != nil {
		t.Fatal(err)
	}
	if a.Len() < 64<<20 || !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Errorf("sent %d bytes, got back %d that differ", a.Len(), b.Len())
	}
}

// TestPaths runs convert on files of a shared volume: nothing is
// streamed, the outputs stay where the config says.
func TestPaths(t *testing.T) {
	c, _ := open(t)
	out := filepath.Join(t.TempDir(), "convert")
	res, err := c.Run(context.Background(), "convert", map[string]any{"out": out, "blocks": 2},
		host.Inputs{"model": host.File("file://" + mustAbs(t, "../../testdata/models/mlp-16-32-24-4.arrow"))}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range res.Outputs {
		if a.Encoding != plugin.EncodingPath || a.Data != nil || a.Path != filepath.Join(out, a.File) {
			t.Errorf("%s: %+v, want a path in %s", a.Name, a, out)
		}
	}
	if !bytes.Equal(res.JSON, mustRead(t, filepath.Join(out, "convert.json"))) {
		t.Error("the result JSON is not convert.json")
	}
	if _, err := res.Model("model"); err != nil {
		t.Error(err)
	}
}

func mustAbs(t *testing.T, p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestBadInput: bad input comes back as plugin.ErrInput (never retry) with
// the stage's message, and the plugin keeps serving.
func TestBadInput(t *testing.T) {
	c, _ := open(t)
	// A model large enough that the plugin rejects the config while the
	// host is still sending it.
	const n = 2048
	big := &arrowio.Model{
		Arch: arrowio.Architecture{FormatVersion: arrowio.FormatVersion, Kind: arrowio.ArchMLP, Task: compute.TaskRegression, Inputs: n,
			Layers: []arrowio.Layer{{Name: "fc", Kind: compute.KindLinear, In: n, Out: n}}},
		Tensors: []arrowio.Tensor{{Name: "fc.weight", Role: compute.RoleWeight, Shape: []int64{n, n}, Data: make([]float32, n*n)}},
	}
	tests := []struct {
		name   string
		stage  string
		config any
		inputs host.Inputs
		want   string
	}{
		{"bad config while sending 16 MiB", "convert", map[string]any{"modle": "x"}, host.Inputs{"model": host.Model(big)}, `unknown field "modle"`},
		{"unknown stage", "pilot", nil, nil, `unknown stage "pilot"`},
		{"unknown field", "convert", map[string]any{"modle": "x"}, nil, `unknown field "modle"`},
		{"missing model", "convert", nil, nil, "convert: model is required"},
		{"not Arrow", "convert", nil, host.Inputs{"model": host.Arrow(strings.NewReader("PAR1 not arrow"))}, "not a readable Arrow IPC stream"},
		{"no such file", "finetune", map[string]any{"init": "mlp:4-3"}, host.Inputs{"train": host.File("/nonexistent/train.arrow")}, "nonexistent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Run(context.Background(), tt.stage, tt.config, tt.inputs, nil)
			if !errors.Is(err, plugin.ErrInput) || !errors.Is(err, stages.ErrInput) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an ErrInput containing %q", err, tt.want)
			}
		})
	}
}
