// Package mlflow hands a strata pilot to an MLflow tracking server over
// MLflow's REST API (version 2.0): a run with the pilot's parameters,
// metrics and decision, report.html and the other report files as
// artifacts, and on GO the structured model registered as a new version
// of a registered model.
//
// It speaks HTTP and JSON only (no MLflow client library): the endpoints
// are those of MLflow's REST API reference, and artifacts go through the
// tracking server's artifact proxy (mlflow server --serve-artifacts, the
// default since MLflow 2.0), so no cloud storage SDK is needed.
package mlflow

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// ErrRejected is wrapped by the errors a retry cannot change: the server
// answered a request with a client error (4xx other than 408 and 429), or
// the configuration cannot work (no tracking URI, artifacts stored where
// the server does not proxy them). Other errors (network, 5xx) may pass.
var ErrRejected = errors.New("mlflow: rejected")

// APIError is an error answer of the REST API.
type APIError struct {
	Method, Path string
	Status       int
	Code         string // error_code, e.g. RESOURCE_DOES_NOT_EXIST
	Message      string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("mlflow: %s %s: HTTP %d %s: %s", e.Method, e.Path, e.Status, e.Code, e.Message)
}

// Is makes a client error (not 408 or 429) match ErrRejected.
func (e *APIError) Is(target error) bool {
	return target == ErrRejected && e.Status >= 400 && e.Status < 500 && e.Status != 408 && e.Status != 429
}

// Client calls one tracking server. The zero HTTP uses a client with a
// one-minute timeout per request.
type Client struct {
	// URI is the tracking server, http(s)://host[:port][/prefix].
	URI string
	// Token is sent as a bearer token (MLFLOW_TRACKING_TOKEN); else
	// Username and Password as basic authentication.
	Token, Username, Password string
	HTTP                      *http.Client
}

// NewClientFromEnv returns a client for uri, or for MLFLOW_TRACKING_URI
// when uri is empty, with the credentials of MLFLOW_TRACKING_TOKEN or
// MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD.
func NewClientFromEnv(uri string) (*Client, error) {
	if uri == "" {
		uri = os.Getenv("MLFLOW_TRACKING_URI")
	}
	u, err := url.Parse(uri)
	if uri == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: tracking URI %q: want http(s)://host[:port] (--tracking-uri or MLFLOW_TRACKING_URI)", ErrRejected, uri)
	}
	return &Client{
		URI:      strings.TrimSuffix(uri, "/"),
		Token:    os.Getenv("MLFLOW_TRACKING_TOKEN"),
		Username: os.Getenv("MLFLOW_TRACKING_USERNAME"),
		Password: os.Getenv("MLFLOW_TRACKING_PASSWORD"),
	}, nil
}

// do sends one request; a JSON body in, the JSON answer decoded into out
// (when out is not nil).
func (c *Client) do(ctx context.Context, method, path string, query url.Values, body io.Reader, contentType string, out any) error {
	u := c.URI + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return fmt.Errorf("mlflow: %s %s: %w", method, path, err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	switch {
	case c.Token != "":
		req.Header.Set("Authorization", "Bearer "+c.Token)
	case c.Username != "":
		req.SetBasicAuth(c.Username, c.Password)
	}
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: time.Minute}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("mlflow: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return fmt.Errorf("mlflow: %s %s: reading the answer: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		e := &APIError{Method: method, Path: path, Status: resp.StatusCode}
		var answer struct {
			ErrorCode string `json:"error_code"`
			Message   string `json:"message"`
		}
		if json.Unmarshal(raw, &answer) == nil {
			e.Code, e.Message = answer.ErrorCode, answer.Message
		} else {
			e.Message = strings.TrimSpace(string(raw[:min(len(raw), 200)]))
		}
		return e
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("mlflow: %s %s: the answer is not the documented JSON: %w", method, path, err)
	}
	return nil
}

// post sends in as JSON to an endpoint of the REST API.
func (c *Client) post(ctx context.Context, endpoint string, in, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodPost, "/api/2.0/mlflow/"+endpoint, nil, bytes.NewReader(b), "application/json", out)
}

// ExperimentID returns the ID of the experiment name, creating it when
// there is none.
func (c *Client) ExperimentID(ctx context.Context, name string) (string, error) {
	var got struct {
		Experiment struct {
			ExperimentID string `json:"experiment_id"`
		} `json:"experiment"`
	}
	err := c.do(ctx, http.MethodGet, "/api/2.0/mlflow/experiments/get-by-name", url.Values{"experiment_name": {name}}, nil, "", &got)
	var ae *APIError
	switch {
	case err == nil:
		return got.Experiment.ExperimentID, nil
	case errors.As(err, &ae) && ae.Code == "RESOURCE_DOES_NOT_EXIST":
	default:
		return "", err
	}
	var created struct {
		ExperimentID string `json:"experiment_id"`
	}
	if err := c.post(ctx, "experiments/create", map[string]string{"name": name}, &created); err != nil {
		return "", err
	}
	return created.ExperimentID, nil
}

// Tag, Param and Metric are the entities of the REST API.
type (
	Tag struct {
		Key   string `json:"key"`
		Value string `json:"value"`
	}
	Param  = Tag
	Metric struct {
		Key       string  `json:"key"`
		Value     float64 `json:"value"`
		Timestamp int64   `json:"timestamp"` // milliseconds since the epoch
		Step      int64   `json:"step"`
	}
)

// Run is a created run.
type Run struct {
	ID          string
	ArtifactURI string
}

// CreateRun starts a run in the experiment.
func (c *Client) CreateRun(ctx context.Context, experimentID, name string, start time.Time, tags []Tag) (Run, error) {
	var got struct {
		Run struct {
			Info struct {
				RunID       string `json:"run_id"`
				ArtifactURI string `json:"artifact_uri"`
			} `json:"info"`
		} `json:"run"`
	}
	in := map[string]any{"experiment_id": experimentID, "run_name": name, "start_time": start.UnixMilli(), "tags": tags}
	if err := c.post(ctx, "runs/create", in, &got); err != nil {
		return Run{}, err
	}
	return Run{ID: got.Run.Info.RunID, ArtifactURI: got.Run.Info.ArtifactURI}, nil
}

// The REST API's limits of one runs/log-batch request.
const (
	maxBatchMetrics = 1000
	maxBatchParams  = 100
	maxBatchTags    = 100
)

// LogBatch logs params, metrics and tags to a run, in as many requests as
// the API's limits per request ask.
func (c *Client) LogBatch(ctx context.Context, runID string, params []Param, metrics []Metric, tags []Tag) error {
	for len(params)+len(metrics)+len(tags) > 0 {
		np, nm, nt := min(len(params), maxBatchParams), min(len(metrics), maxBatchMetrics), min(len(tags), maxBatchTags)
		in := map[string]any{"run_id": runID, "params": params[:np], "metrics": metrics[:nm], "tags": tags[:nt]}
		if err := c.post(ctx, "runs/log-batch", in, nil); err != nil {
			return err
		}
		params, metrics, tags = params[np:], metrics[nm:], tags[nt:]
	}
	return nil
}

// UploadArtifact puts body at path (slash-separated, under the run's
// artifact root) through the tracking server's artifact proxy. The run's
// artifact URI must be a proxied one (mlflow-artifacts:/...).
func (c *Client) UploadArtifact(ctx context.Context, run Run, path string, body []byte) error {
	root, ok := strings.CutPrefix(run.ArtifactURI, "mlflow-artifacts:")
	if !ok {
		return fmt.Errorf("%w: run %s stores its artifacts at %q, which the tracking server does not proxy: start it with --serve-artifacts (the default since MLflow 2.0) and an experiment whose artifact location is mlflow-artifacts:",
			ErrRejected, run.ID, run.ArtifactURI)
	}
	// mlflow-artifacts:/0/RUN/artifacts or mlflow-artifacts://host/0/RUN/artifacts
	if u, err := url.Parse(run.ArtifactURI); err == nil && u.Host != "" {
		root = u.Path
	}
	full := strings.Trim(root, "/") + "/" + strings.TrimPrefix(path, "/")
	return c.do(ctx, http.MethodPut, "/api/2.0/mlflow-artifacts/artifacts/"+escapePath(full), nil, bytes.NewReader(body), "application/octet-stream", nil)
}

// escapePath escapes each segment of a slash-separated path.
func escapePath(p string) string {
	parts := strings.Split(p, "/")
	for i, s := range parts {
		parts[i] = url.PathEscape(s)
	}
	return strings.Join(parts, "/")
}

// FinishRun ends a run with status FINISHED or FAILED.
func (c *Client) FinishRun(ctx context.Context, runID, status string, end time.Time) error {
	return c.post(ctx, "runs/update", map[string]any{"run_id": runID, "status": status, "end_time": end.UnixMilli()}, nil)
}

// RegisterModelVersion creates the registered model name when it does not
// exist, then a version of it from source (the model's artifact URI),
// linked to the run; it returns the version.
func (c *Client) RegisterModelVersion(ctx context.Context, name, source, runID string, tags []Tag) (string, error) {
	err := c.post(ctx, "registered-models/create", map[string]any{"name": name}, nil)
	var ae *APIError
	if err != nil && !(errors.As(err, &ae) && ae.Code == "RESOURCE_ALREADY_EXISTS") {
		return "", err
	}
	var got struct {
		ModelVersion struct {
			Version string `json:"version"`
		} `json:"model_version"`
	}
	in := map[string]any{"name": name, "source": source, "run_id": runID, "tags": tags}
	if err := c.post(ctx, "model-versions/create", in, &got); err != nil {
		return "", err
	}
	return got.ModelVersion.Version, nil
}
