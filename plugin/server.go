package plugin

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/internal/dirlock"
	"github.com/strata-ml/strata/internal/provenance"
)

// Server implements Service in process by calling the stages functions
// the CLI calls. It holds no state shared between runs besides the
// read-only stage registry: every run decodes its own config, gets its
// own private directory and its own logger.
type Server struct {
	// WorkDir holds the private directory of every run (streamed inputs,
	// streamed outputs), removed when the run ends; empty means
	// os.TempDir().
	WorkDir string
	// Logger, when set, receives one line per run (start, end, error).
	Logger *slog.Logger

	runs   sync.WaitGroup
	dirsMu sync.Mutex
	dirs   map[string]bool // the private directories of the runs in progress
	baseMu sync.Mutex
	base   context.Context // cancelled by Shutdown; nil until first use
	cancel context.CancelFunc
}

var _ Service = (*Server)(nil)

// Describe implements Service.
func (s *Server) Describe(ctx context.Context) (*Description, error) {
	v := provenance.Version()
	d := &Description{
		ProtocolVersion: ProtocolVersion,
		Tool:            Tool{Version: v.Version, Commit: v.Commit, GoVersion: v.GoVersion},
	}
	for _, def := range registry {
		d.Stages = append(d.Stages, def.describe())
	}
	return d, nil
}

// Stages returns the names of the stages the server runs, in Describe's
// order.
func Stages() []string {
	names := make([]string, len(registry))
	for i, def := range registry {
		names[i] = def.name
	}
	return names
}

// Shutdown cancels every run in progress and waits, at most until ctx
// ends, for them to return and remove their private directories. The
// directories of runs still going then are removed under them: the
// caller is about to exit.
func (s *Server) Shutdown(ctx context.Context) error {
	s.baseContext()
	s.cancel()
	done := make(chan struct{})
	go func() { s.runs.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.dirsMu.Lock()
		defer s.dirsMu.Unlock()
		for d := range s.dirs {
			os.RemoveAll(d)
		}
		return ctx.Err()
	}
}

func (s *Server) baseContext() context.Context {
	s.baseMu.Lock()
	defer s.baseMu.Unlock()
	if s.base == nil {
		s.base, s.cancel = context.WithCancel(context.Background())
	}
	return s.base
}

// Run implements Service. Streamed inputs are materialised in the run's
// private directory (Arrow streams as Arrow IPC files, the bytes the same
// records give in a file) and their config fields pointed at them. When
// the config leaves the stage's output location empty, the stage writes
// into the private directory and every output comes back in the Result
// (Arrow files as Arrow IPC streams); otherwise the outputs stay where the
// config says and the Result lists their paths. The private directory is
// removed before Run returns, whatever happens.
func (s *Server) Run(ctx context.Context, req *Request, progress func(Event)) (res *Result, err error) {
	s.runs.Add(1)
	defer s.runs.Done()
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	defer context.AfterFunc(s.baseContext(), stop)()
	if progress == nil {
		progress = func(Event) {}
	}

	def, err := lookupStage(req.Stage)
	if err != nil {
		return nil, err
	}
	cfg := def.config()
	if err := decodeConfig(def.name, req.Config, cfg); err != nil {
		return nil, err
	}
	dir, lock, err := s.runDir()
	if err != nil {
		return nil, fmt.Errorf("%s: create the run's directory: %w", def.name, err)
	}
	s.track(dir, true)
	defer func() {
		os.RemoveAll(dir)
		lock.Unlock()
		s.track(dir, false)
	}()

	start := time.Now()
	if s.Logger != nil {
		s.Logger.Info("run start", "stage", def.name, "streamed_inputs", len(req.Inputs))
		defer func() {
			if err != nil {
				s.Logger.Warn("run failed", "stage", def.name, "seconds", time.Since(start).Seconds(), "err", err)
			} else {
				s.Logger.Info("run done", "stage", def.name, "seconds", time.Since(start).Seconds())
			}
		}()
	}

	for i, in := range req.Inputs {
		slot, ok := def.input(in.Field)
		if !ok {
			return nil, inputErrorf("%s: %q is not an input of the stage (inputs: %s)", def.name, in.Field, def.inputNames())
		}
		for _, prev := range req.Inputs[:i] {
			if prev.Field == in.Field {
				return nil, inputErrorf("%s: input %q is streamed twice", def.name, in.Field)
			}
		}
		path, err := materialise(filepath.Join(dir, "in"), slot, in)
		if err != nil {
			return nil, fmt.Errorf("%s: input %q: %w", def.name, in.Field, err)
		}
		setString(cfg, in.Field, path)
	}

	out := getString(cfg, def.outField)
	streamed := out == ""
	if streamed {
		out = filepath.Join(dir, "out")
		if def.outFile != nil {
			// The stage writes a file; its directory must exist.
			if err := os.Mkdir(out, 0o700); err != nil {
				return nil, fmt.Errorf("%s: %w", def.name, err)
			}
			out = filepath.Join(out, def.outFile(cfg))
		}
		setString(cfg, def.outField, out)
	}

	rep := &reporter{stage: def.name, emit: progress}
	run, err := runStage(ctx, def, cfg, rep)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
			err = fmt.Errorf("%w (%w)", err, ctxErr)
		}
		return nil, err
	}

	res = &Result{Stage: def.name, Decision: run.decision}
	outDir := out
	if def.outFile != nil {
		outDir = filepath.Dir(out)
	}
	for _, f := range run.files {
		path := filepath.Join(outDir, f.file)
		st, err := os.Stat(path)
		if err != nil {
			return nil, fmt.Errorf("%s: output %s: %w", def.name, f.name, err)
		}
		a := Artifact{Name: f.name, File: f.file, Kind: f.kind, Size: st.Size()}
		if f.name == def.resultOutput {
			if res.JSON, err = os.ReadFile(path); err != nil {
				return nil, fmt.Errorf("%s: read %s: %w", def.name, f.file, err)
			}
		}
		if !streamed {
			a.Path = path
			res.Outputs = append(res.Outputs, a)
			continue
		}
		if a.Encoding, a.Data, err = readOutput(path); err != nil {
			return nil, fmt.Errorf("%s: output %s: %w", def.name, f.name, err)
		}
		res.Outputs = append(res.Outputs, a)
	}
	if res.JSON == nil {
		if res.JSON, err = json.Marshal(run.result); err != nil {
			return nil, fmt.Errorf("%s: encode the result: %w", def.name, err)
		}
	}
	return res, nil
}

// runDirPrefix names the private directory of a run in WorkDir.
const runDirPrefix = "strata-run-"

// runDir creates and locks the private directory of a run: made under a
// name RemoveStale does not look at, locked (dirlock), then renamed, so
// that no plugin process ever sees it unlocked. The lock, released by
// the kernel when this process dies however it dies, tells the next
// plugin that a directory left behind is stale.
func (s *Server) runDir() (string, *dirlock.Held, error) {
	tmp, err := os.MkdirTemp(s.WorkDir, ".strata-new-")
	if err != nil {
		return "", nil, err
	}
	lock, err := dirlock.Lock(tmp)
	if err != nil {
		os.RemoveAll(tmp)
		return "", nil, err
	}
	dir := filepath.Join(filepath.Dir(tmp), runDirPrefix+strings.TrimPrefix(filepath.Base(tmp), ".strata-new-"))
	if err := os.Rename(tmp, dir); err != nil {
		lock.Unlock()
		os.RemoveAll(tmp)
		return "", nil, err
	}
	lock.Moved(dir)
	return dir, lock, nil
}

// track records the private directory of a run in progress (add), or
// forgets it.
func (s *Server) track(dir string, add bool) {
	s.dirsMu.Lock()
	defer s.dirsMu.Unlock()
	if s.dirs == nil {
		s.dirs = map[string]bool{}
	}
	if add {
		s.dirs[dir] = true
	} else {
		delete(s.dirs, dir)
	}
}

// RemoveStale removes the run directories in WorkDir whose process is
// gone (a plugin killed in the middle of a run: SIGKILL leaves no time to
// clean up), as Serve does when it starts. A directory another live
// process holds, or that cannot be locked, is left alone.
func (s *Server) RemoveStale() {
	dirs, err := filepath.Glob(filepath.Join(cmp.Or(s.WorkDir, os.TempDir()), runDirPrefix+"*"))
	if err != nil {
		return
	}
	for _, d := range dirs {
		if dirlock.Free(d) {
			if err := os.RemoveAll(d); err == nil && s.Logger != nil {
				s.Logger.Info("removed the run directory of a plugin that is gone", "dir", d)
			}
		}
	}
}

// runStage runs def, turning a panic into an error: one run's bug must
// not take down the process and every other run with it.
func runStage(ctx context.Context, def *stageDef, cfg any, rep *reporter) (run *stageRun, err error) {
	defer func() {
		if p := recover(); p != nil {
			run, err = nil, fmt.Errorf("%s: internal error: %v", def.name, p)
		}
	}()
	return def.run(ctx, cfg, rep)
}

// inputErrorf returns an error wrapping ErrInput.
func inputErrorf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInput, fmt.Sprintf(format, args...))
}

func lookupStage(name string) (*stageDef, error) {
	for _, def := range registry {
		if def.name == name {
			return def, nil
		}
	}
	return nil, inputErrorf("unknown stage %q (stages: %s)", name, strings.Join(Stages(), ", "))
}

// decodeConfig applies the JSON object raw over cfg (a pointer to the
// stage's defaults), strictly: unknown keys and trailing data are bad
// input.
func decodeConfig(stage string, raw json.RawMessage, cfg any) error {
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(cfg); err != nil {
		return inputErrorf("%s: config: %v", stage, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return inputErrorf("%s: config: data after the JSON object", stage)
	}
	return nil
}

// materialise writes a streamed input into dir and returns its path: an
// Arrow stream as "<field>.arrow", an Arrow IPC file holding the same
// record batches (verified on the way), a file's bytes under its own
// base name in "<field>/".
func materialise(dir string, slot inputSlot, in Input) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	switch in.Encoding {
	case EncodingArrowStream:
		spool := filepath.Join(dir, in.Field+".arrows")
		if err := writeFile(spool, in.Data); err != nil {
			return "", err
		}
		defer os.Remove(spool)
		f, err := os.Open(spool)
		if err != nil {
			return "", err
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			return "", err
		}
		path := filepath.Join(dir, in.Field+".arrow")
		err = arrowio.WriteFileAtomic(path, func(w io.Writer) error {
			return arrowio.StreamToFile(w, f, st.Size(), in.Field)
		})
		if err != nil {
			var fe *arrowio.FormatError
			if errors.As(err, &fe) {
				return "", inputErrorf("%v", err)
			}
			return "", err
		}
		return path, nil
	case EncodingFile:
		name := filepath.Base(filepath.Clean("/" + in.FileName))
		if in.FileName == "" || name == "/" || name == "." {
			return "", inputErrorf("a file input needs a file name (e.g. %q)", slot.example)
		}
		sub := filepath.Join(dir, in.Field)
		if err := os.MkdirAll(sub, 0o700); err != nil {
			return "", err
		}
		path := filepath.Join(sub, name)
		return path, writeFile(path, in.Data)
	}
	return "", inputErrorf("unsupported encoding %v (want an Arrow stream or a file's bytes)", in.Encoding)
}

func writeFile(path string, r io.Reader) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if r != nil {
		if _, err := io.Copy(f, r); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}

// readOutput returns an output file's bytes for streaming: an Arrow IPC
// file as an Arrow IPC stream of the same record batches, anything else
// as it is.
func readOutput(path string) (Encoding, []byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, nil, err
	}
	if !bytes.HasPrefix(data, []byte("ARROW1")) {
		return EncodingFile, data, nil
	}
	var stream bytes.Buffer
	if err := arrowio.FileToStream(&stream, bytes.NewReader(data), int64(len(data)), filepath.Base(path)); err != nil {
		return 0, nil, err
	}
	return EncodingArrowStream, stream.Bytes(), nil
}

// stageDef is one entry of the registry: how to build a stage's config,
// which of its fields take artifacts, how to run it and what it writes.
type stageDef struct {
	name, doc string
	// config returns a pointer to the stage's defaults
	// (stages.DefaultXxxConfig).
	config func() any
	inputs []inputSlot
	// outField is the config field of the output directory; outFile,
	// when set, says the field is a file and names it for a streamed run.
	outField string
	outFile  func(cfg any) string
	outputs  []ArtifactInfo
	// resultOutput is the output whose bytes are Result.JSON.
	resultOutput string
	run          func(ctx context.Context, cfg any, rep *reporter) (*stageRun, error)
}

// inputSlot is a config field that names an input artifact.
type inputSlot struct {
	field, kind, doc string
	example          string // a file name, for errors
}

// stageRun is what a stage's run function reports.
type stageRun struct {
	result   any
	decision string
	files    []outputFile
}

// outputFile is one output, named relative to the output directory.
type outputFile struct {
	name, file, kind string
}

func (d *stageDef) input(field string) (inputSlot, bool) {
	for _, s := range d.inputs {
		if s.field == field {
			return s, true
		}
	}
	return inputSlot{}, false
}

func (d *stageDef) inputNames() string {
	var names []string
	for _, s := range d.inputs {
		names = append(names, s.field)
	}
	return strings.Join(names, ", ")
}

func (d *stageDef) describe() StageInfo {
	si := StageInfo{Name: d.name, Doc: d.doc, OutField: d.outField, Outputs: append([]ArtifactInfo(nil), d.outputs...)}
	for _, s := range d.inputs {
		si.Inputs = append(si.Inputs, ArtifactInfo{Name: s.field, Kind: s.kind, Doc: s.doc})
	}
	cfg := reflect.ValueOf(d.config()).Elem()
	t := cfg.Type()
	for _, f := range jsonFields(t) {
		def, err := json.Marshal(cfg.FieldByIndex(f.index).Interface())
		if err != nil {
			def = []byte("null")
		}
		si.Fields = append(si.Fields, Field{Name: f.name, Type: typeName(f.typ), Default: def, Doc: fieldDocs[t.String()+"."+f.goName]})
	}
	return si
}

// jsonField is one JSON key of a config struct.
type jsonField struct {
	name, goName string
	index        []int
	typ          reflect.Type
}

// jsonFields returns the JSON keys of struct type t in declaration order,
// skipping fields tagged "-".
func jsonFields(t reflect.Type) []jsonField {
	var out []jsonField
	for _, f := range reflect.VisibleFields(t) {
		if !f.IsExported() || f.Anonymous {
			continue
		}
		tag := f.Tag.Get("json")
		name, _, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out = append(out, jsonField{name: name, goName: f.Name, index: f.Index, typ: f.Type})
	}
	return out
}

var durationType = reflect.TypeFor[time.Duration]()

// typeName names a config field's JSON type.
func typeName(t reflect.Type) string {
	if t == durationType {
		return "duration"
	}
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "bool"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "int"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "uint"
	case reflect.Float32, reflect.Float64:
		return "float"
	case reflect.Slice, reflect.Array:
		return "[]" + typeName(t.Elem())
	case reflect.Map:
		return "map[" + typeName(t.Key()) + "]" + typeName(t.Elem())
	case reflect.Pointer:
		return typeName(t.Elem())
	}
	return "object"
}

// fieldByJSON returns the settable field of *cfg with JSON key name.
func fieldByJSON(cfg any, name string) reflect.Value {
	v := reflect.ValueOf(cfg).Elem()
	for _, f := range jsonFields(v.Type()) {
		if f.name == name {
			return v.FieldByIndex(f.index)
		}
	}
	panic(fmt.Sprintf("plugin: %s has no field %q", v.Type(), name)) // a registry bug
}

func setString(cfg any, name, value string) { fieldByJSON(cfg, name).SetString(value) }
func getString(cfg any, name string) string { return fieldByJSON(cfg, name).String() }

// reporter turns a run's progress hooks and log records into Events.
type reporter struct {
	stage string
	emit  func(Event)

	mu          sync.Mutex
	step, total int
	lastStep    time.Time
	// emitMu keeps emit calls one at a time: stages may log from
	// several goroutines.
	emitMu sync.Mutex
}

// setStep records step of total and, unless an event went out less than
// interval ago, emits one; force emits regardless.
func (r *reporter) setStep(step, total int, interval time.Duration, force bool, msg string, attrs map[string]string) {
	r.mu.Lock()
	r.step, r.total = step, total
	due := force || time.Since(r.lastStep) >= interval
	if due {
		r.lastStep = time.Now()
	}
	r.mu.Unlock()
	if due {
		r.event("INFO", msg, attrs)
	}
}

func (r *reporter) event(level, msg string, attrs map[string]string) {
	r.mu.Lock()
	e := Event{Stage: r.stage, Step: r.step, Total: r.total, Message: msg, Level: level, Attrs: attrs}
	r.mu.Unlock()
	r.emitMu.Lock()
	defer r.emitMu.Unlock()
	r.emit(e)
}

// logger returns a logger whose records become events; steps, when set,
// reads a step count out of a record's attributes (called under the
// reporter's lock, so it may keep state).
func (r *reporter) logger(steps func(attrs map[string]string) (step, total int, ok bool)) *slog.Logger {
	return slog.New(&eventHandler{r: r, steps: steps})
}

// eventHandler is a slog.Handler that turns records into Events: the
// message with its attributes appended as key=value, and the attributes
// as Event.Attrs. Records below Info are dropped.
type eventHandler struct {
	r      *reporter
	steps  func(map[string]string) (int, int, bool)
	attrs  []slog.Attr
	prefix string // group prefix, "g1.g2."
}

func (h *eventHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }

func (h *eventHandler) Handle(_ context.Context, rec slog.Record) error {
	attrs := map[string]string{}
	var keys []string
	var walk func(prefix string, a slog.Attr)
	walk = func(prefix string, a slog.Attr) {
		v := a.Value.Resolve()
		if v.Kind() == slog.KindGroup {
			p := prefix
			if a.Key != "" {
				p += a.Key + "."
			}
			for _, g := range v.Group() {
				walk(p, g)
			}
			return
		}
		if a.Key == "" {
			return
		}
		k := prefix + a.Key
		if _, dup := attrs[k]; !dup {
			keys = append(keys, k)
		}
		attrs[k] = v.String()
	}
	for _, a := range h.attrs {
		walk("", a)
	}
	rec.Attrs(func(a slog.Attr) bool {
		walk(h.prefix, a)
		return true
	})
	var msg strings.Builder
	msg.WriteString(rec.Message)
	for _, k := range keys {
		v := attrs[k]
		if v == "" || strings.ContainsAny(v, " \t\n\"=") {
			v = fmt.Sprintf("%q", v)
		}
		fmt.Fprintf(&msg, " %s=%s", k, v)
	}
	if h.steps != nil {
		h.r.mu.Lock()
		if step, total, ok := h.steps(attrs); ok {
			h.r.step, h.r.total = step, total
		}
		h.r.mu.Unlock()
	}
	h.r.event(rec.Level.String(), msg.String(), attrs)
	return nil
}

func (h *eventHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append([]slog.Attr(nil), h.attrs...)
	for _, a := range as {
		if h.prefix != "" {
			a = slog.Attr{Key: strings.TrimSuffix(h.prefix, ".") + "." + a.Key, Value: a.Value}
		}
		c.attrs = append(c.attrs, a)
	}
	return &c
}

func (h *eventHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	c := *h
	c.prefix += name + "."
	return &c
}

// intAttrs reads the integer attributes a and b.
func intAttrs(attrs map[string]string, a, b string) (int, int, bool) {
	var x, y int
	_, err1 := fmt.Sscan(attrs[a], &x)
	_, err2 := fmt.Sscan(attrs[b], &y)
	return x, y, err1 == nil && err2 == nil && attrs[a] != "" && attrs[b] != ""
}
