// Package mlflowtest is a stand-in MLflow tracking server for tests: the
// REST API endpoints a strata hand-off uses, as MLflow's REST API
// reference documents them, with every request body decoded strictly
// against the documented request message (an unknown field, a field of the
// wrong type or a missing required field is a protocol error) and the
// documented limits of runs/log-batch enforced. It keeps what it was sent
// so a test can check it.
package mlflowtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
)

// Run is a run as the server holds it.
type Run struct {
	ExperimentID string
	Name         string
	Status       string
	StartTime    int64
	EndTime      int64
	Params       map[string]string
	Tags         map[string]string
	Metrics      map[string]float64
}

// ModelVersion is a created model version.
type ModelVersion struct {
	Name, Version, Source, RunID string
}

// Server is the stand-in. Lock it (or read after the client is done).
type Server struct {
	*httptest.Server
	// Token, when set, is the bearer token every request must carry.
	Token string

	mu               sync.Mutex
	Requests         []string // "METHOD PATH", in order
	Errors           []string // protocol errors: what the real server would reject
	Experiments      map[string]string
	Runs             map[string]*Run
	Artifacts        map[string][]byte // by path under mlflow-artifacts/artifacts/
	RegisteredModels map[string]bool
	ModelVersions    []ModelVersion
}

// NewServer starts a stand-in; Close it when done.
func NewServer() *Server {
	s := &Server{
		Experiments:      map[string]string{},
		Runs:             map[string]*Run{},
		Artifacts:        map[string][]byte{},
		RegisteredModels: map[string]bool{},
	}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// The documented request messages (fields as the REST API reference
// names them).
type (
	tag struct {
		Key   *string `json:"key"`
		Value *string `json:"value"`
	}
	metric struct {
		Key       *string  `json:"key"`
		Value     *float64 `json:"value"`
		Timestamp *int64   `json:"timestamp"`
		Step      *int64   `json:"step"`
		RunID     string   `json:"run_id"`
	}
	createExperiment struct {
		Name             *string `json:"name"`
		ArtifactLocation string  `json:"artifact_location"`
		Tags             []tag   `json:"tags"`
	}
	createRun struct {
		ExperimentID *string `json:"experiment_id"`
		UserID       string  `json:"user_id"`
		RunName      string  `json:"run_name"`
		StartTime    *int64  `json:"start_time"`
		Tags         []tag   `json:"tags"`
	}
	logBatch struct {
		RunID   *string  `json:"run_id"`
		Metrics []metric `json:"metrics"`
		Params  []tag    `json:"params"`
		Tags    []tag    `json:"tags"`
	}
	updateRun struct {
		RunID   *string `json:"run_id"`
		RunUUID string  `json:"run_uuid"`
		Status  string  `json:"status"`
		EndTime int64   `json:"end_time"`
		RunName string  `json:"run_name"`
	}
	createRegisteredModel struct {
		Name        *string `json:"name"`
		Tags        []tag   `json:"tags"`
		Description string  `json:"description"`
	}
	createModelVersion struct {
		Name        *string `json:"name"`
		Source      *string `json:"source"`
		RunID       string  `json:"run_id"`
		Tags        []tag   `json:"tags"`
		RunLink     string  `json:"run_link"`
		Description string  `json:"description"`
	}
)

// answer writes an error answer as MLflow does.
func answer(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error_code": code, "message": msg})
}

// fail answers an error; a 400 is a protocol error the test sees.
func (s *Server) fail(w http.ResponseWriter, status int, code, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if status == http.StatusBadRequest {
		s.Errors = append(s.Errors, msg)
	}
	answer(w, status, code, msg)
}

func reply(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// decode reads a request body strictly into v.
func decode(r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return fmt.Errorf("Content-Type %q, want application/json", ct)
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

func tagsOK(tags []tag) bool {
	for _, t := range tags {
		if t.Key == nil || *t.Key == "" || t.Value == nil {
			return false
		}
	}
	return true
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Requests = append(s.Requests, r.Method+" "+r.URL.Path)
	if s.Token != "" && r.Header.Get("Authorization") != "Bearer "+s.Token {
		s.fail(w, http.StatusUnauthorized, "UNAUTHENTICATED", "want the bearer token")
		return
	}
	const api = "/api/2.0/mlflow/"
	if p, ok := strings.CutPrefix(r.URL.Path, "/api/2.0/mlflow-artifacts/artifacts/"); ok {
		if r.Method != http.MethodPut {
			s.fail(w, http.StatusMethodNotAllowed, "BAD_REQUEST", "%s on an artifact", r.Method)
			return
		}
		b, _ := io.ReadAll(r.Body)
		s.Artifacts[p] = b
		reply(w, map[string]any{})
		return
	}
	endpoint, ok := strings.CutPrefix(r.URL.Path, api)
	if !ok {
		s.fail(w, http.StatusNotFound, "ENDPOINT_NOT_FOUND", "no endpoint %s", r.URL.Path)
		return
	}
	if endpoint == "experiments/get-by-name" {
		if r.Method != http.MethodGet {
			s.fail(w, http.StatusBadRequest, "INVALID_PARAMETER_VALUE", "experiments/get-by-name: %s, want GET", r.Method)
			return
		}
		name := r.URL.Query().Get("experiment_name")
		id, ok := s.Experiments[name]
		if !ok {
			s.fail(w, http.StatusNotFound, "RESOURCE_DOES_NOT_EXIST", "no experiment %q", name)
			return
		}
		reply(w, map[string]any{"experiment": map[string]string{"experiment_id": id, "name": name}})
		return
	}
	if r.Method != http.MethodPost {
		s.fail(w, http.StatusBadRequest, "INVALID_PARAMETER_VALUE", "%s: %s, want POST", endpoint, r.Method)
		return
	}
	switch endpoint {
	case "experiments/create":
		var in createExperiment
		if err := decode(r, &in); err != nil || in.Name == nil || *in.Name == "" {
			s.fail(w, http.StatusBadRequest, "INVALID_PARAMETER_VALUE", "experiments/create: %v, name %v", err, in.Name)
			return
		}
		if _, ok := s.Experiments[*in.Name]; ok {
			s.fail(w, http.StatusConflict, "RESOURCE_ALREADY_EXISTS", "experiment %q exists", *in.Name)
			return
		}
		id := strconv.Itoa(len(s.Experiments) + 1)
		s.Experiments[*in.Name] = id
		reply(w, map[string]string{"experiment_id": id})
	case "runs/create":
		var in createRun
		if err := decode(r, &in); err != nil || in.ExperimentID == nil || in.StartTime == nil || !tagsOK(in.Tags) {
			s.fail(w, http.StatusBadRequest, "INVALID_PARAMETER_VALUE", "runs/create: %v (experiment_id, start_time and tags with key and value required)", err)
			return
		}
		id := fmt.Sprintf("%032x", len(s.Runs)+1)
		run := &Run{ExperimentID: *in.ExperimentID, Name: in.RunName, Status: "RUNNING", StartTime: *in.StartTime,
			Params: map[string]string{}, Tags: map[string]string{}, Metrics: map[string]float64{}}
		for _, t := range in.Tags {
			run.Tags[*t.Key] = *t.Value
		}
		s.Runs[id] = run
		reply(w, map[string]any{"run": map[string]any{"info": map[string]any{
			"run_id": id, "experiment_id": run.ExperimentID, "run_name": run.Name, "status": run.Status,
			"artifact_uri": "mlflow-artifacts:/" + run.ExperimentID + "/" + id + "/artifacts",
		}}})
	case "runs/log-batch":
		var in logBatch
		if err := decode(r, &in); err != nil || in.RunID == nil || !tagsOK(in.Params) || !tagsOK(in.Tags) {
			s.fail(w, http.StatusBadRequest, "INVALID_PARAMETER_VALUE", "runs/log-batch: %v (run_id required, params and tags with key and value)", err)
			return
		}
		run, ok := s.Runs[*in.RunID]
		switch {
		case !ok:
			s.fail(w, http.StatusNotFound, "RESOURCE_DOES_NOT_EXIST", "no run %s", *in.RunID)
			return
		case len(in.Metrics) > 1000 || len(in.Params) > 100 || len(in.Tags) > 100 || len(in.Metrics)+len(in.Params)+len(in.Tags) > 1000:
			s.fail(w, http.StatusBadRequest, "INVALID_PARAMETER_VALUE", "runs/log-batch: over the limits (1000 metrics, 100 params, 100 tags, 1000 in all)")
			return
		}
		for _, p := range in.Params {
			if old, ok := run.Params[*p.Key]; ok && old != *p.Value {
				s.fail(w, http.StatusBadRequest, "INVALID_PARAMETER_VALUE", "param %s changed from %q to %q", *p.Key, old, *p.Value)
				return
			}
			run.Params[*p.Key] = *p.Value
		}
		for _, m := range in.Metrics {
			if m.Key == nil || m.Value == nil || m.Timestamp == nil {
				s.fail(w, http.StatusBadRequest, "INVALID_PARAMETER_VALUE", "metric without key, value or timestamp")
				return
			}
			run.Metrics[*m.Key] = *m.Value
		}
		for _, t := range in.Tags {
			run.Tags[*t.Key] = *t.Value
		}
		reply(w, map[string]any{})
	case "runs/update":
		var in updateRun
		valid := map[string]bool{"RUNNING": true, "SCHEDULED": true, "FINISHED": true, "FAILED": true, "KILLED": true}
		if err := decode(r, &in); err != nil || in.RunID == nil || !valid[in.Status] {
			s.fail(w, http.StatusBadRequest, "INVALID_PARAMETER_VALUE", "runs/update: %v, status %q", err, in.Status)
			return
		}
		run, ok := s.Runs[*in.RunID]
		if !ok {
			s.fail(w, http.StatusNotFound, "RESOURCE_DOES_NOT_EXIST", "no run %s", *in.RunID)
			return
		}
		run.Status, run.EndTime = in.Status, in.EndTime
		reply(w, map[string]any{"run_info": map[string]any{"run_id": *in.RunID, "status": in.Status}})
	case "registered-models/create":
		var in createRegisteredModel
		if err := decode(r, &in); err != nil || in.Name == nil || *in.Name == "" || !tagsOK(in.Tags) {
			s.fail(w, http.StatusBadRequest, "INVALID_PARAMETER_VALUE", "registered-models/create: %v", err)
			return
		}
		if s.RegisteredModels[*in.Name] {
			answer(w, http.StatusBadRequest, "RESOURCE_ALREADY_EXISTS", "registered model "+*in.Name+" exists")
			return
		}
		s.RegisteredModels[*in.Name] = true
		reply(w, map[string]any{"registered_model": map[string]string{"name": *in.Name}})
	case "model-versions/create":
		var in createModelVersion
		if err := decode(r, &in); err != nil || in.Name == nil || in.Source == nil || *in.Source == "" || !tagsOK(in.Tags) {
			s.fail(w, http.StatusBadRequest, "INVALID_PARAMETER_VALUE", "model-versions/create: %v (name and source required)", err)
			return
		}
		if !s.RegisteredModels[*in.Name] {
			s.fail(w, http.StatusNotFound, "RESOURCE_DOES_NOT_EXIST", "no registered model %q", *in.Name)
			return
		}
		n := 1
		for _, v := range s.ModelVersions {
			if v.Name == *in.Name {
				n++
			}
		}
		mv := ModelVersion{Name: *in.Name, Version: strconv.Itoa(n), Source: *in.Source, RunID: in.RunID}
		s.ModelVersions = append(s.ModelVersions, mv)
		reply(w, map[string]any{"model_version": map[string]string{"name": mv.Name, "version": mv.Version, "source": mv.Source, "run_id": mv.RunID}})
	default:
		s.fail(w, http.StatusNotFound, "ENDPOINT_NOT_FOUND", "no endpoint %s", r.URL.Path)
	}
}

// Artifact returns an uploaded artifact of a run, by its path under the
// run's artifact root.
func (s *Server) Artifact(runID, path string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, v := range s.Artifacts {
		if strings.HasSuffix(k, "/"+runID+"/artifacts/"+path) {
			return bytes.Clone(v), true
		}
	}
	return nil, false
}
