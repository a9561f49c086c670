package mlflow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"sort"
	"time"

	"github.com/strata-ml/strata/internal/inputfile"
	"github.com/strata-ml/strata/internal/limits"
)

// Handoff is what a pilot hands to MLflow.
type Handoff struct {
	// Report is the report.json of strata report; the files beside it
	// (report.html, report.md, the plots) become artifacts under report/.
	Report string
	// Model is the structured model (model.arrow of finetune), uploaded
	// under model/ and registered when the decision is GO. Optional.
	Model string
	// Experiment is the experiment's name (created when missing).
	Experiment string
	// RunName names the run, e.g. the pipeline run's name.
	RunName string
	// Params are logged as the run's parameters, in this order.
	Params []Param
	// RegisteredModel is the registered model a GO candidate becomes a
	// version of; empty registers nothing.
	RegisteredModel string
	// Now gives the run's timestamps; nil is time.Now.
	Now func() time.Time
}

// Result is what a hand-off did.
type Result struct {
	ExperimentID string
	RunID        string
	Decision     string
	Artifacts    []string // artifact paths, in upload order
	ModelVersion string   // empty unless registered
}

// report is the part of report.json the hand-off reads.
type report struct {
	Decision string `json:"decision"`
	Tool     struct {
		Version string `json:"version"`
		Commit  string `json:"commit"`
		Backend string `json:"backend"`
	} `json:"tool"`
	Metrics []map[string]any `json:"metrics"`
	Outputs struct {
		JSON     string   `json:"json"`
		Markdown string   `json:"markdown"`
		HTML     string   `json:"html"`
		Plots    []string `json:"plots"`
	} `json:"outputs"`
}

// metricFields are the numbers of a report.json metric logged to MLflow,
// as METRIC.FIELD.
var metricFields = []string{"baseline", "candidate", "control", "delta", "delta_vs_control"}

// readReport reads and checks report.json.
func readReport(path string) (*report, error) {
	b, err := inputfile.ReadFile(path, limits.JSONBytes, "JSON file")
	if err != nil {
		return nil, fmt.Errorf("%w: report %s: %v", ErrRejected, path, err)
	}
	var r report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%w: report %s: not a report.json: %v", ErrRejected, path, err)
	}
	switch r.Decision {
	case "go", "no-go", "inconclusive":
	default:
		return nil, fmt.Errorf("%w: report %s: decision %q, want go, no-go or inconclusive", ErrRejected, path, r.Decision)
	}
	if r.Outputs.HTML == "" {
		return nil, fmt.Errorf("%w: report %s: outputs.html is empty: want the report.json of strata report", ErrRejected, path)
	}
	return &r, nil
}

// metrics returns the report's numbers as MLflow metrics, sorted by key;
// null (non-finite) values are left out.
func (r *report) metrics(ts int64) []Metric {
	var out []Metric
	for _, m := range r.Metrics {
		name, _ := m["metric"].(string)
		for _, f := range metricFields {
			if v, ok := m[f].(float64); ok && name != "" && !math.IsNaN(v) && !math.IsInf(v, 0) {
				out = append(out, Metric{Key: name + "." + f, Value: v, Timestamp: ts})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// HandOff hands h to the tracking server of c: it creates the run, logs the
// parameters, the metrics and the decision (tag strata.decision, and
// metric strata.go: 1 for GO, else 0), uploads the report files and, on
// GO, the model, registers it as a version of h.RegisteredModel, and ends
// the run FINISHED. A failure after the run was created ends it FAILED
// (best effort) and is returned.
func HandOff(ctx context.Context, c *Client, h Handoff) (*Result, error) {
	now := h.Now
	if now == nil {
		now = time.Now
	}
	rep, err := readReport(h.Report)
	if err != nil {
		return nil, err
	}
	if h.Model != "" {
		f, _, err := inputfile.Open(h.Model)
		if err != nil {
			return nil, fmt.Errorf("%w: model %s: %v", ErrRejected, h.Model, err)
		}
		f.Close()
	}
	res := &Result{Decision: rep.Decision}
	if res.ExperimentID, err = c.ExperimentID(ctx, h.Experiment); err != nil {
		return nil, err
	}
	tags := []Tag{
		{Key: "strata.decision", Value: rep.Decision},
		{Key: "strata.version", Value: rep.Tool.Version},
		{Key: "strata.commit", Value: rep.Tool.Commit},
		{Key: "strata.backend", Value: rep.Tool.Backend},
	}
	run, err := c.CreateRun(ctx, res.ExperimentID, h.RunName, now(), tags)
	if err != nil {
		return nil, err
	}
	res.RunID = run.ID
	if err := handoff(ctx, c, h, rep, run, res, now); err != nil {
		if ferr := c.FinishRun(context.WithoutCancel(ctx), run.ID, "FAILED", now()); ferr != nil {
			err = errors.Join(err, ferr)
		}
		return res, err
	}
	return res, c.FinishRun(ctx, run.ID, "FINISHED", now())
}

func handoff(ctx context.Context, c *Client, h Handoff, rep *report, run Run, res *Result, now func() time.Time) error {
	ts := now().UnixMilli()
	metrics := rep.metrics(ts)
	goFlag := 0.0
	if rep.Decision == "go" {
		goFlag = 1
	}
	metrics = append(metrics, Metric{Key: "strata.go", Value: goFlag, Timestamp: ts})
	if err := c.LogBatch(ctx, run.ID, h.Params, metrics, nil); err != nil {
		return err
	}
	dir := filepath.Dir(h.Report)
	files := append([]string{rep.Outputs.HTML, rep.Outputs.Markdown, filepath.Base(h.Report)}, rep.Outputs.Plots...)
	for _, name := range files {
		if name == "" {
			continue
		}
		if err := upload(ctx, c, run, filepath.Join(dir, name), "report/"+name, res); err != nil {
			return err
		}
	}
	if rep.Decision != "go" || h.Model == "" {
		return nil
	}
	if err := upload(ctx, c, run, h.Model, "model/"+filepath.Base(h.Model), res); err != nil {
		return err
	}
	if h.RegisteredModel == "" {
		return nil
	}
	v, err := c.RegisterModelVersion(ctx, h.RegisteredModel, run.ArtifactURI+"/model", run.ID,
		[]Tag{{Key: "strata.decision", Value: rep.Decision}})
	res.ModelVersion = v
	return err
}

func upload(ctx context.Context, c *Client, run Run, file, path string, res *Result) error {
	b, err := inputfile.ReadFile(file, 0, "")
	if err != nil {
		return fmt.Errorf("%w: %v", ErrRejected, err)
	}
	if err := c.UploadArtifact(ctx, run, path, b); err != nil {
		return err
	}
	res.Artifacts = append(res.Artifacts, path)
	return nil
}
