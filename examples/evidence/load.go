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
	ds := &dataSet{Name: res.Config.Data, Dir: dir, Res: res, Finished: st.ModTime().UTC(), Runs: map[string][]*validation.Result{}}
	if ds.Name == "" {
		ds.Name = filepath.Base(dir)
	}
	for _, c := range res.Candidates {
		for _, r := range c.Runs {
			v, _, err := validation.Read(filepath.Join(dir, r.Validation))
			if err != nil {
				return nil, err
			}
			ds.Runs[c.Name] = append(ds.Runs[c.Name], v)
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
