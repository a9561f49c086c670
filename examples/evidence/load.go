package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/strata-ml/strata/stages"
	"github.com/strata-ml/strata/validation"
)

// dataSet is one sweep's outputs, as `strata sweep` wrote them to Dir.
type dataSet struct {
	// Name is the embedded data set (or Dir's base name).
	Name string
	// Dir is the sweep's --out as given on the command line.
	Dir string
	Res *stages.SweepResult
	// Finished is sweep.json's modification time: when the sweep ended.
	Finished time.Time
	// Seeds are the per-seed baseline runs, in sweep.json's order.
	Seeds []seedRun
	// Runs holds each candidate's validation.json per seed, in
	// sweep.json's order.
	Runs map[string][]*validation.Result
	// Cost holds each candidate's pilot wall times per seed, in
	// sweep.json's order.
	Cost map[string][]stepCost
	// Torch is torch.json for the outputs of examples/evidence/torchsweep
	// (a PyTorch classifier fine-tuned through the PyTorch loop), nil for
	// a strata sweep.
	Torch *torchRun
}

// mnistSource describes the MNIST files a sweep read (its data source
// is only "files").
const mnistSource = "MNIST (Yann LeCun and Corinna Cortes, CC BY-SA 3.0)"

// stepCost is one candidate's pilot at one seed: the wall time of its
// convert (with the factors export on the PyTorch path), its fine-tuning
// (on the PyTorch path the loop, which also fine-tunes the control and
// exports the three ONNX files) and its validate, in seconds.
type stepCost struct {
	Convert, Finetune, Validate float64
}

// torchRun is what `go run ./examples/evidence/torchsweep` records in
// torch.json beside its sweep.json.
type torchRun struct {
	Command         string
	Class           string
	Shape           string
	BaselineEpochs  int `json:"baseline_epochs"`
	Epochs          int
	LR              float64
	BaselineSeconds []float64 `json:"baseline_seconds"`
	Validate        []string
	Steps           map[string][]struct {
		Convert, Loop, Validate float64
	}
}

// seedRun is what a seed's dense baseline training did, and the test
// accuracy of the baseline and the control.
type seedRun struct {
	Seed     uint64
	Data     stages.PilotData
	Baseline *stages.FinetuneResult
	// Accuracy of the baseline and the control on the seed's test split
	// (NaN when absent).
	BaselineAcc, ControlAcc float64
}

// loadDataSet reads dir/sweep.json, every run's validation.json and each
// seed's baseline finetune.json.
func loadDataSet(dir string) (*dataSet, error) {
	path := filepath.Join(dir, "sweep.json")
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	res := new(stages.SweepResult)
	if err := readJSON(path, res); err != nil {
		return nil, err
	}
	if res.SchemaVersion != stages.SweepSchemaVersion {
		return nil, fmt.Errorf("%s: schema_version %d, want %d", path, res.SchemaVersion, stages.SweepSchemaVersion)
	}
	if len(res.Candidates) == 0 || len(res.Seeds) == 0 {
		return nil, fmt.Errorf("%s: no candidates or no seeds", path)
	}
	ds := &dataSet{Name: res.Config.Data, Dir: dir, Res: res, Finished: st.ModTime().UTC(), Runs: map[string][]*validation.Result{}, Cost: map[string][]stepCost{}}
	if ds.Name == "" {
		ds.Name = filepath.Base(dir)
	}
	for i := range res.Seeds {
		if src := &res.Seeds[i].Data.Source; *src == "files" && strings.HasPrefix(ds.Name, "mnist") {
			*src = mnistSource
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "torch.json")); err == nil {
		ds.Torch = new(torchRun)
		if err := readJSON(filepath.Join(dir, "torch.json"), ds.Torch); err != nil {
			return nil, err
		}
	}
	for _, c := range res.Candidates {
		for k, r := range c.Runs {
			if r.Validation == "" {
				return nil, fmt.Errorf("%s: %s at seed %d stopped before validation (%s): the evidence needs every run", path, c.Name, r.Seed, r.Failed)
			}
			v, _, err := validation.Read(filepath.Join(dir, r.Validation))
			if err != nil {
				return nil, err
			}
			ds.Runs[c.Name] = append(ds.Runs[c.Name], v)
			cost, err := runCost(dir, ds.Torch, c.Name, k, r.Dir, v)
			if err != nil {
				return nil, err
			}
			ds.Cost[c.Name] = append(ds.Cost[c.Name], cost)
		}
	}
	for i, s := range res.Seeds {
		sr := seedRun{Seed: s.Seed, Data: s.Data, BaselineAcc: nan, ControlAcc: nan}
		if s.BaselineModel != "" && res.Config.Model == "" {
			sr.Baseline = new(stages.FinetuneResult)
			if err := readJSON(filepath.Join(dir, filepath.Dir(s.BaselineModel), "finetune.json"), sr.Baseline); err != nil {
				return nil, err
			}
		}
		// Every candidate of a seed is validated against the same
		// baseline and control: the first one's validation has them.
		if vs := ds.Runs[res.Candidates[0].Name]; i < len(vs) {
			if m := vs[i].Metrics[validation.MetricAccuracy]; m != nil {
				sr.BaselineAcc, sr.ControlAcc = floatOr(m.Baseline), floatOr(m.Control)
			}
		}
		ds.Seeds = append(ds.Seeds, sr)
	}
	return ds, nil
}

// runCost reads the wall times of the k-th run of a candidate: from
// torch.json on the PyTorch path, else from the run's convert.json and
// finetune.json; validate's from its validation.json.
func runCost(dir string, tr *torchRun, name string, k int, runDir string, v *validation.Result) (stepCost, error) {
	if tr != nil {
		steps := tr.Steps[name]
		if k >= len(steps) {
			return stepCost{}, fmt.Errorf("%s: no wall times of %s at run %d", filepath.Join(dir, "torch.json"), name, k+1)
		}
		return stepCost{steps[k].Convert, steps[k].Loop, steps[k].Validate}, nil
	}
	var cv struct{ Seconds float64 }
	var ft struct {
		WallSeconds float64 `json:"wall_seconds"`
	}
	if err := readJSON(filepath.Join(dir, runDir, "convert", "convert.json"), &cv); err != nil {
		return stepCost{}, err
	}
	if err := readJSON(filepath.Join(dir, runDir, "finetune", "finetune.json"), &ft); err != nil {
		return stepCost{}, err
	}
	return stepCost{cv.Seconds, ft.WallSeconds, v.WallSeconds}, nil
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// machine describes where the sweeps ran.
type machine struct {
	// CPU is /proc/cpuinfo's model name; CPUs its processor count.
	CPU  string
	CPUs int
	// Backend is the BLAS backend bin/strata was built with.
	Backend string
}

// readCPUInfo reads the CPU model and the number of processors from a
// /proc/cpuinfo file.
func readCPUInfo(path string) (model string, n int, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "processor":
			n++
		case "model name":
			if model == "" {
				model = strings.Join(strings.Fields(v), " ")
			}
		}
	}
	if err := sc.Err(); err != nil {
		return "", 0, err
	}
	if model == "" {
		model = "unknown"
	}
	return model, n, nil
}
