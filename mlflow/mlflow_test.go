package mlflow_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/strata-ml/strata/mlflow"
	"github.com/strata-ml/strata/mlflow/mlflowtest"
)

// writeReport writes a report directory as strata report leaves it (the
// fields the hand-off reads) and a model file; it returns their paths.
func writeReport(t *testing.T, decision string) (report, model string) {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"report.json": fmt.Sprintf(`{"decision": %q, "tool": {"version": "v0.1.0", "commit": "abc", "backend": "openblas"},
  "metrics": [
    {"metric": "accuracy", "baseline": 0.97, "candidate": 0.96, "control": 0.975, "delta": -0.01, "delta_vs_control": -0.015},
    {"metric": "params", "baseline": 26122, "candidate": 14434, "delta": -11688, "control": null},
    {"metric": "latency_ms", "baseline": null, "candidate": 1.5}
  ],
  "outputs": {"json": "report.json", "markdown": "report.md", "html": "report.html", "plots": ["plot-spectra.svg"]}}`, decision),
		"report.md":        "# report\n",
		"report.html":      "<html>report</html>\n",
		"plot-spectra.svg": "<svg/>\n",
		"model.arrow":      "ARROW1 model bytes",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "report.json"), filepath.Join(dir, "model.arrow")
}

func handoff(report, model string) mlflow.Handoff {
	return mlflow.Handoff{
		Report: report, Model: model, Experiment: "strata-pilot", RunName: "pilot-1",
		Params:          []mlflow.Param{{Key: "structure", Value: "monarch"}, {Key: "blocks", Value: "4"}},
		RegisteredModel: "strata-candidate",
		Now:             func() time.Time { return time.UnixMilli(1_767_225_600_000) },
	}
}

// TestHandOff runs hand-offs of each decision against the stand-in and
// checks what the server received: the documented requests only (no
// protocol error), the run's params, metrics, decision and status, the
// report files and, on GO only, the model uploaded and registered.
func TestHandOff(t *testing.T) {
	tests := []struct {
		decision     string
		wantRegister bool
	}{
		{"go", true},
		{"no-go", false},
		{"inconclusive", false},
	}
	for _, tt := range tests {
		t.Run(tt.decision, func(t *testing.T) {
			s := mlflowtest.NewServer()
			defer s.Close()
			s.Token = "s3cret"
			t.Setenv("MLFLOW_TRACKING_TOKEN", "s3cret")
			c, err := mlflow.NewClientFromEnv(s.URL)
			if err != nil {
				t.Fatal(err)
			}
			report, model := writeReport(t, tt.decision)
			res, err := mlflow.HandOff(context.Background(), c, handoff(report, model))
			if err != nil {
				t.Fatal(err)
			}
			if len(s.Errors) != 0 {
				t.Fatalf("protocol errors: %q", s.Errors)
			}
			run := s.Runs[res.RunID]
			if run == nil || run.Status != "FINISHED" || run.Name != "pilot-1" || run.EndTime != 1_767_225_600_000 {
				t.Fatalf("run %+v, want pilot-1 FINISHED at the given time", run)
			}
			if run.Tags["strata.decision"] != tt.decision || run.Tags["strata.version"] != "v0.1.0" {
				t.Errorf("tags %v", run.Tags)
			}
			if run.Params["structure"] != "monarch" || run.Params["blocks"] != "4" || len(run.Params) != 2 {
				t.Errorf("params %v", run.Params)
			}
			wantMetrics := map[string]float64{"accuracy.baseline": 0.97, "accuracy.candidate": 0.96, "accuracy.control": 0.975,
				"accuracy.delta": -0.01, "accuracy.delta_vs_control": -0.015, "params.baseline": 26122, "params.candidate": 14434,
				"params.delta": -11688, "latency_ms.candidate": 1.5, "strata.go": map[bool]float64{true: 1, false: 0}[tt.decision == "go"]}
			if len(run.Metrics) != len(wantMetrics) {
				t.Errorf("metrics %v, want %v", run.Metrics, wantMetrics)
			}
			for k, v := range wantMetrics {
				if got, ok := run.Metrics[k]; !ok || got != v {
					t.Errorf("metric %s = %v (%v), want %v", k, got, ok, v)
				}
			}
			for _, name := range []string{"report.html", "report.md", "report.json", "plot-spectra.svg"} {
				want, _ := os.ReadFile(filepath.Join(filepath.Dir(report), name))
				if got, ok := s.Artifact(res.RunID, "report/"+name); !ok || string(got) != string(want) {
					t.Errorf("artifact report/%s: %q (%v), want the file", name, got, ok)
				}
			}
			_, uploaded := s.Artifact(res.RunID, "model/model.arrow")
			if uploaded != tt.wantRegister || (len(s.ModelVersions) == 1) != tt.wantRegister {
				t.Fatalf("model uploaded %v, versions %+v; want both only on GO", uploaded, s.ModelVersions)
			}
			if tt.wantRegister {
				mv := s.ModelVersions[0]
				wantSource := "mlflow-artifacts:/" + run.ExperimentID + "/" + res.RunID + "/artifacts/model"
				if mv.Name != "strata-candidate" || mv.Source != wantSource || mv.RunID != res.RunID || res.ModelVersion != "1" {
					t.Errorf("model version %+v (result %q), want strata-candidate 1 from %s", mv, res.ModelVersion, wantSource)
				}
			}
		})
	}
}

// TestHandOffAgain: a second hand-off finds the experiment and the
// registered model and adds version 2.
func TestHandOffAgain(t *testing.T) {
	s := mlflowtest.NewServer()
	defer s.Close()
	c := &mlflow.Client{URI: s.URL}
	report, model := writeReport(t, "go")
	for i := 0; i < 2; i++ {
		if _, err := mlflow.HandOff(context.Background(), c, handoff(report, model)); err != nil {
			t.Fatal(err)
		}
	}
	if len(s.Errors) != 0 || len(s.Experiments) != 1 || len(s.Runs) != 2 || len(s.ModelVersions) != 2 || s.ModelVersions[1].Version != "2" {
		t.Errorf("errors %q, experiments %v, runs %d, versions %+v", s.Errors, s.Experiments, len(s.Runs), s.ModelVersions)
	}
}

// TestLogBatchLimits: more params and metrics than one runs/log-batch
// may carry go in several requests, each within the limits.
func TestLogBatchLimits(t *testing.T) {
	s := mlflowtest.NewServer()
	defer s.Close()
	c := &mlflow.Client{URI: s.URL}
	id, err := c.ExperimentID(context.Background(), "e")
	if err != nil {
		t.Fatal(err)
	}
	run, err := c.CreateRun(context.Background(), id, "r", time.Unix(0, 0), nil)
	if err != nil {
		t.Fatal(err)
	}
	var params []mlflow.Param
	var metrics []mlflow.Metric
	for i := range 250 {
		params = append(params, mlflow.Param{Key: fmt.Sprint("p", i), Value: "v"})
		metrics = append(metrics, mlflow.Metric{Key: fmt.Sprint("m", i), Value: float64(i)})
	}
	if err := c.LogBatch(context.Background(), run.ID, params, metrics, nil); err != nil {
		t.Fatal(err)
	}
	batches := 0
	for _, r := range s.Requests {
		if r == "POST /api/2.0/mlflow/runs/log-batch" {
			batches++
		}
	}
	if len(s.Errors) != 0 || batches != 3 || len(s.Runs[run.ID].Params) != 250 || len(s.Runs[run.ID].Metrics) != 250 {
		t.Errorf("errors %q, %d batches, %d params: want 3 batches of at most 100 params", s.Errors, batches, len(s.Runs[run.ID].Params))
	}
}

// TestHandOffErrors: what a retry cannot change is ErrRejected (exit 2);
// a server error is not (exit 1, retried); a failure after the run was
// created ends the run FAILED.
func TestHandOffErrors(t *testing.T) {
	report, model := writeReport(t, "go")
	// answering returns a client of a server answering every request with code.
	answering := func(code int) func(t *testing.T) (*mlflow.Client, mlflow.Handoff) {
		return func(t *testing.T) (*mlflow.Client, mlflow.Handoff) {
			s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(code)
				fmt.Fprint(w, `{"error_code": "X", "message": "m"}`)
			}))
			t.Cleanup(s.Close)
			return &mlflow.Client{URI: s.URL}, handoff(report, model)
		}
	}
	tests := []struct {
		name     string
		setup    func(t *testing.T) (*mlflow.Client, mlflow.Handoff)
		rejected bool
	}{
		{"server error", answering(http.StatusServiceUnavailable), false},
		{"too many requests", answering(http.StatusTooManyRequests), false},
		{"forbidden", answering(http.StatusForbidden), true},
		{"not a report", func(t *testing.T) (*mlflow.Client, mlflow.Handoff) {
			s := mlflowtest.NewServer()
			t.Cleanup(s.Close)
			return &mlflow.Client{URI: s.URL}, handoff(model, model)
		}, true},
		{"missing model", func(t *testing.T) (*mlflow.Client, mlflow.Handoff) {
			s := mlflowtest.NewServer()
			t.Cleanup(s.Close)
			return &mlflow.Client{URI: s.URL}, handoff(report, model+".missing")
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, h := tt.setup(t)
			_, err := mlflow.HandOff(context.Background(), c, h)
			if err == nil {
				t.Fatal("no error")
			}
			if got := errors.Is(err, mlflow.ErrRejected); got != tt.rejected {
				t.Errorf("%v: ErrRejected %v, want %v", err, got, tt.rejected)
			}
		})
	}
	for _, uri := range []string{"", "file:///tmp/mlruns", "databricks", "http://"} {
		if _, err := mlflow.NewClientFromEnv(uri); uri != "" && !errors.Is(err, mlflow.ErrRejected) {
			t.Errorf("tracking URI %q: %v, want ErrRejected", uri, err)
		}
	}
}

// TestHandOffUnproxiedArtifacts: a run whose artifacts the server does
// not proxy cannot take the report: rejected, and the run ends FAILED.
func TestHandOffUnproxiedArtifacts(t *testing.T) {
	s := mlflowtest.NewServer()
	defer s.Close()
	inner := s.Config.Handler
	s.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/2.0/mlflow/runs/create" {
			rec := httptest.NewRecorder()
			inner.ServeHTTP(rec, r)
			body := rec.Body.String()
			w.WriteHeader(rec.Code)
			fmt.Fprint(w, replaceArtifactURI(body))
			return
		}
		inner.ServeHTTP(w, r)
	})
	report, model := writeReport(t, "go")
	res, err := mlflow.HandOff(context.Background(), &mlflow.Client{URI: s.URL}, handoff(report, model))
	if !errors.Is(err, mlflow.ErrRejected) {
		t.Fatalf("err %v, want ErrRejected", err)
	}
	if run := s.Runs[res.RunID]; run == nil || run.Status != "FAILED" {
		t.Errorf("run %+v, want FAILED", run)
	}
	if slices.Contains(s.Requests, "POST /api/2.0/mlflow/model-versions/create") {
		t.Error("registered a model it could not upload")
	}
}

// replaceArtifactURI points a runs/create answer at an S3 artifact root.
func replaceArtifactURI(body string) string {
	return regexp.MustCompile(`"artifact_uri":"[^"]*"`).ReplaceAllString(body, `"artifact_uri":"s3://bucket/mlflow"`)
}
