package plugin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/internal/datasets"
	"github.com/strata-ml/strata/stages"
	"github.com/strata-ml/strata/validation"
)

// These tests run the Server in process, with no gRPC: the stage logic
// of the plugin is testable on its own (the adapters and the real
// process are tested in plugin/host).

// streamOf returns an input carrying an Arrow IPC stream.
func streamOf(t *testing.T, field string, encode func(*bytes.Buffer) error) Input {
	t.Helper()
	var b bytes.Buffer
	if err := encode(&b); err != nil {
		t.Fatal(err)
	}
	return Input{Field: field, Encoding: EncodingArrowStream, Data: bytes.NewReader(b.Bytes())}
}

func datasetInput(t *testing.T, field string, ds *arrowio.Dataset) Input {
	return streamOf(t, field, func(b *bytes.Buffer) error { return arrowio.EncodeDatasetStream(b, ds) })
}

// outputInput turns a streamed output into an input of a further run.
func outputInput(t *testing.T, res *Result, name, field string) Input {
	t.Helper()
	a, ok := res.Output(name)
	if !ok {
		t.Fatalf("%s has no output %q", res.Stage, name)
	}
	if a.Encoding == EncodingFile {
		return Input{Field: field, Encoding: EncodingFile, FileName: a.File, Data: bytes.NewReader(a.Data)}
	}
	return Input{Field: field, Encoding: EncodingArrowStream, Data: bytes.NewReader(a.Data)}
}

func mustJSON(t *testing.T, v any) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// irisRuns is a small pilot on the iris data, each stage's request as a
// function of the earlier results, so it can be replayed.
type irisRuns struct {
	train, test *arrowio.Dataset
	baseline    *Result
	requests    map[string]func() *Request // convert, finetune, validate, report
	results     map[string]*Result
}

func newIrisRuns(t *testing.T, s Service) *irisRuns {
	t.Helper()
	ds, err := datasets.Iris()
	if err != nil {
		t.Fatal(err)
	}
	r := &irisRuns{results: map[string]*Result{}}
	if r.train, r.test, err = stages.Split(ds, 0.3, 1); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r.baseline, err = s.Run(ctx, &Request{
		Stage:  "finetune",
		Config: mustJSON(t, map[string]any{"init": "mlp:4-16-16-3:relu", "epochs": 8, "lr": 0.01, "seed": 1, "valid_fraction": 0.2}),
		Inputs: []Input{datasetInput(t, "train", r.train)},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r.requests = map[string]func() *Request{
		"convert": func() *Request {
			return &Request{Stage: "convert", Config: mustJSON(t, map[string]any{"blocks": 2, "residual_rank": 2, "seed": 3}),
				Inputs: []Input{outputInput(t, r.baseline, "model", "model")}}
		},
		"finetune": func() *Request {
			return &Request{Stage: "finetune", Config: mustJSON(t, map[string]any{"epochs": 4, "seed": 1, "valid_fraction": 0.2}),
				Inputs: []Input{outputInput(t, r.results["convert"], "model", "model"), datasetInput(t, "train", r.train)}}
		},
		"validate": func() *Request {
			return &Request{Stage: "validate", Config: mustJSON(t, map[string]any{"bootstrap": 100, "latency_runs": 3, "seed": 1}),
				Inputs: []Input{
					outputInput(t, r.baseline, "model", "baseline"),
					outputInput(t, r.results["finetune"], "model", "candidate"),
					datasetInput(t, "data", r.test),
					outputInput(t, r.results["finetune"], "log", "train_log"),
				}}
		},
		"report": func() *Request {
			return &Request{Stage: "report", Config: mustJSON(t, map[string]any{"title": "iris"}),
				Inputs: []Input{{Field: "validation", Encoding: EncodingFile, FileName: "validation.json",
					Data: bytes.NewReader(r.results["validate"].JSON)}}}
		},
	}
	for _, stage := range []string{"convert", "finetune", "validate", "report"} {
		res, err := s.Run(ctx, r.requests[stage](), nil)
		if err != nil {
			t.Fatalf("%s: %v", stage, err)
		}
		r.results[stage] = res
	}
	return r
}

// comparable returns a run's result with what depends on the wall clock
// or on the run's private directory normalised away: JSON keys named
// seconds, wall_seconds, train_seconds, samples_per_second and the
// latency metric are dropped, and every path is cut to its part below the
// run's directory.
func comparable(t *testing.T, res *Result) string {
	t.Helper()
	var v any
	if err := json.Unmarshal(res.JSON, &v); err != nil {
		t.Fatalf("%s: result is not JSON: %v", res.Stage, err)
	}
	b, _ := json.MarshalIndent(normalise(v), "", " ")
	var out strings.Builder
	out.Write(b)
	for _, a := range res.Outputs {
		if a.Name == "report" {
			continue // the JSON above
		}
		fmt.Fprintf(&out, "\n%s %s %v\n", a.Name, a.File, a.Encoding)
		if a.Encoding == EncodingArrowStream || strings.HasSuffix(a.File, ".safetensors") {
			fmt.Fprintf(&out, "%x", a.Data) // models and logs: byte for byte
		} else {
			out.WriteString(runDir.ReplaceAllString(string(a.Data), "$$RUN")) // text
		}
	}
	return out.String()
}

// runDir matches a run's private directory.
var runDir = regexp.MustCompile(`/[^ "'<>]*/strata-run-[0-9]+`)

var volatileKeys = map[string]bool{"seconds": true, "wall_seconds": true, "train_seconds": true, "samples_per_second": true, "latency_ms": true}

func normalise(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if volatileKeys[k] {
				delete(x, k)
				continue
			}
			x[k] = normalise(e)
		}
	case []any:
		for i := range x {
			x[i] = normalise(x[i])
		}
	case string:
		if i := strings.Index(x, "/strata-run-"); i >= 0 {
			rest := x[i+len("/strata-run-"):]
			if j := strings.IndexByte(rest, '/'); j >= 0 {
				return "$RUN" + rest[j:]
			}
			return "$RUN"
		}
	}
	return v
}

func TestServerDescribe(t *testing.T) {
	s := &Server{}
	d, err := s.Describe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if d.ProtocolVersion != ProtocolVersion || d.Tool.Version == "" || d.Tool.GoVersion == "" {
		t.Errorf("got protocol %d, tool %+v", d.ProtocolVersion, d.Tool)
	}
	defaults := map[string]any{
		"convert":  stages.DefaultConvertConfig(),
		"finetune": stages.DefaultFinetuneConfig(),
		"validate": validation.DefaultConfig(),
		"report":   stages.ReportConfig{},
		"export":   stages.ExportConfig{Format: stages.FormatSafetensors},
	}
	var names []string
	for _, st := range d.Stages {
		names = append(names, st.Name)
		def, ok := defaults[st.Name]
		if !ok {
			t.Errorf("unexpected stage %q", st.Name)
			continue
		}
		// Every field is documented, typed, and defaults to the value
		// of the stage's DefaultXxxConfig.
		var want map[string]json.RawMessage
		full, _ := json.Marshal(def)
		_ = json.Unmarshal(full, &want)
		if st.Doc == "" || st.OutField != "out" || len(st.Outputs) == 0 {
			t.Errorf("%s: doc %q, out field %q, %d outputs", st.Name, st.Doc, st.OutField, len(st.Outputs))
		}
		for _, f := range st.Fields {
			if f.Doc == "" || f.Type == "" || f.Type == "object" {
				t.Errorf("%s.%s: doc %q type %q", st.Name, f.Name, f.Doc, f.Type)
			}
			if w, ok := want[f.Name]; ok && !bytes.Equal(w, f.Default) {
				t.Errorf("%s.%s: default %s, want %s", st.Name, f.Name, f.Default, w)
			}
		}
		for _, in := range st.Inputs {
			if fieldByJSON(def2ptr(def), in.Name).Kind() != reflect.String {
				t.Errorf("%s: input %q is not a string field", st.Name, in.Name)
			}
		}
	}
	if got, want := strings.Join(names, ","), "convert,finetune,validate,report,export"; got != want {
		t.Errorf("stages %s, want %s", got, want)
	}
	if st, _ := d.Stage("convert"); st == nil || st.Fields[0].Name != "model" {
		t.Errorf("convert's first field: got %+v", st)
	}
}

// def2ptr returns a pointer to a copy of v.
func def2ptr(v any) any {
	p := reflect.New(reflect.TypeOf(v))
	p.Elem().Set(reflect.ValueOf(v))
	return p.Interface()
}

func TestServerBadInput(t *testing.T) {
	model, err := arrowio.ReadModel("../testdata/models/mlp-16-32-24-4.arrow")
	if err != nil {
		t.Fatal(err)
	}
	good := func() Input {
		return streamOf(t, "model", func(b *bytes.Buffer) error { return arrowio.EncodeModelStream(b, model) })
	}
	tests := []struct {
		name string
		req  *Request
		want string
	}{
		{"unknown stage", &Request{Stage: "pilot"}, `unknown stage "pilot"`},
		{"unknown config key", &Request{Stage: "convert", Config: json.RawMessage(`{"modle": "x"}`)}, `unknown field "modle"`},
		{"config of the wrong type", &Request{Stage: "convert", Config: json.RawMessage(`{"blocks": "four"}`)}, "blocks"},
		{"config not an object", &Request{Stage: "convert", Config: json.RawMessage(`[1]`)}, "config"},
		{"not an input field", &Request{Stage: "convert", Inputs: []Input{{Field: "structure", Encoding: EncodingArrowStream}}}, `"structure" is not an input`},
		{"input twice", &Request{Stage: "convert", Inputs: []Input{good(), good()}}, "streamed twice"},
		{"garbage Arrow", &Request{Stage: "convert", Inputs: []Input{{Field: "model", Encoding: EncodingArrowStream, Data: strings.NewReader("garbage!")}}}, "not a readable Arrow IPC stream"},
		{"file without a name", &Request{Stage: "report", Inputs: []Input{{Field: "validation", Encoding: EncodingFile, Data: strings.NewReader("{}")}}}, "needs a file name"},
		{"stage's own check", &Request{Stage: "convert", Config: json.RawMessage(`{"structure": "hexagonal"}`), Inputs: []Input{good()}}, "hexagonal"},
	}
	work := t.TempDir()
	s := &Server{WorkDir: work}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Run(context.Background(), tt.req, nil)
			if !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an ErrInput containing %q", err, tt.want)
			}
		})
	}
	if left, _ := os.ReadDir(work); len(left) != 0 {
		t.Errorf("runs left %d entries in the work directory", len(left))
	}
}

func TestServerCancel(t *testing.T) {
	ds, err := datasets.Digits()
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	s := &Server{WorkDir: work}
	ctx, cancel := context.WithCancel(context.Background())
	var once sync.Once
	_, err = s.Run(ctx, &Request{
		Stage:  "finetune",
		Config: mustJSON(t, map[string]any{"init": "mlp:64-64-10", "epochs": 10000}),
		Inputs: []Input{datasetInput(t, "train", ds)},
	}, func(e Event) {
		if e.Step > 0 {
			once.Do(cancel)
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if left, _ := os.ReadDir(work); len(left) != 0 {
		t.Errorf("the cancelled run left %d entries in the work directory", len(left))
	}
}

// TestServerConcurrent runs the four pilot stages at once in one Server,
// twice over, and wants the results of running them one at a time: no
// state is shared between runs. Run it under -race.
func TestServerConcurrent(t *testing.T) {
	s := &Server{WorkDir: t.TempDir()}
	r := newIrisRuns(t, s)
	if d := r.results["report"].Decision; d == "" {
		t.Errorf("report has no decision")
	}
	want := map[string]string{}
	for stage, res := range r.results {
		want[stage] = comparable(t, res)
	}
	var wg sync.WaitGroup
	for range 2 {
		for stage, req := range r.requests {
			wg.Add(1)
			req := req()
			go func() {
				defer wg.Done()
				res, err := s.Run(context.Background(), req, nil)
				if err != nil {
					t.Errorf("%s: %v", stage, err)
					return
				}
				if got := comparable(t, res); got != want[stage] {
					t.Errorf("%s run concurrently differs from its run alone:\n%s", stage, firstDiff(got, want[stage]))
				}
			}()
		}
	}
	wg.Wait()
}

// firstDiff shows where two strings first differ.
func firstDiff(got, want string) string {
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	lo := max(0, i-80)
	return fmt.Sprintf("got  ...%s\nwant ...%s", got[lo:min(len(got), i+80)], want[lo:min(len(want), i+80)])
}

func TestEventHandler(t *testing.T) {
	var got []Event
	rep := &reporter{stage: "convert", emit: func(e Event) { got = append(got, e) }}
	log := rep.logger(func(a map[string]string) (int, int, bool) { return intAttrs(a, "n", "of") })
	log.Debug("dropped")
	log.With("run", 7).Info("converted layer", "layer", "fc 1", "n", 2, "of", 3)
	log.WithGroup("g").Warn("capped", slog.Group("shape", "out", 8))
	want := []Event{
		{Stage: "convert", Step: 2, Total: 3, Level: "INFO", Message: `converted layer run=7 layer="fc 1" n=2 of=3`,
			Attrs: map[string]string{"run": "7", "layer": "fc 1", "n": "2", "of": "3"}},
		{Stage: "convert", Step: 2, Total: 3, Level: "WARN", Message: "capped g.shape.out=8", Attrs: map[string]string{"g.shape.out": "8"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}
