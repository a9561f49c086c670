// Package host is the Go SDK for loading strata as a hashicorp/go-plugin
// plugin: a pipeline written in Go (an in-house orchestrator, a
// controller) opens the strata binary and runs the pilot stages in it,
// sending models and datasets as Arrow record batches and getting the
// output models back the same way, with no files; or passing paths when
// the artifacts are on a volume both sides see.
//
//	client, err := host.Open(ctx, "/usr/local/bin/strata")
//	if err != nil { ... }
//	defer client.Close()
//	res, err := client.Run(ctx, "convert",
//		map[string]any{"structure": "monarch", "blocks": 4},
//		host.Inputs{"model": host.Model(m)},
//		func(e plugin.Event) { log.Print(e.Message) })
//	decomposed, err := res.Model("model")
//
// The plugin process lives until Close. When the host process receives
// SIGINT or SIGTERM, every plugin process the SDK started is killed (see
// Open); a plugin whose host died stops by itself.
package host

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/plugin"
)

// ErrExited is wrapped by the error of a call made while or after the
// plugin process exited (it crashed or was killed). A Run that fails with
// it is safe to retry on a newly opened Client.
var ErrExited = errors.New("strata plugin process exited")

// Event is a progress event of a running stage.
type Event = plugin.Event

// Description is what Describe returns: the stages with their config
// fields, the protocol and tool versions.
type Description = plugin.Description

// Artifact is one output of a run.
type Artifact = plugin.Artifact

// Client is a running strata plugin process. Its methods may be called
// from several goroutines at once: runs proceed concurrently in the one
// process.
type Client struct {
	pc  *goplugin.Client
	svc plugin.Service
}

// Option configures Open.
type Option func(*options)

type options struct {
	logger       hclog.Logger
	workDir      string
	env          []string
	startTimeout time.Duration
}

// WithLogger sets the logger that receives the plugin's log lines
// (go-plugin re-logs the plugin's hclog JSON through it: a line per run
// at Info, problems at Warn). The default logs warnings and errors to
// os.Stderr.
func WithLogger(l hclog.Logger) Option {
	return func(o *options) { o.logger = l }
}

// WithWorkDir sets the directory where the plugin keeps the private
// directory of each run (streamed inputs and outputs, removed when the
// run ends). The default is the plugin's system temp directory.
func WithWorkDir(dir string) Option {
	return func(o *options) { o.workDir = dir }
}

// WithEnv adds "KEY=value" entries to the plugin's environment, which is
// otherwise the host's.
func WithEnv(env ...string) Option {
	return func(o *options) { o.env = append(o.env, env...) }
}

// WithStartTimeout bounds the plugin's start-up (default 1 minute).
func WithStartTimeout(d time.Duration) Option {
	return func(o *options) { o.startTimeout = d }
}

// Open starts the strata binary at path as a plugin ("path plugin"),
// performs go-plugin's handshake (magic cookie, protocol version 1,
// automatic mutual TLS) and returns a Client. ctx bounds the start-up
// only; the process lives until Close.
//
// Open installs no signal handler: the host owns its process. A host
// that wants its plugin processes killed on SIGINT or SIGTERM calls
// HandleSignals once, or KillAll from its own handling; a plugin whose
// host died without either stops by itself within half a second.
func Open(ctx context.Context, path string, opts ...Option) (*Client, error) {
	o := options{startTimeout: time.Minute}
	for _, opt := range opts {
		opt(&o)
	}
	if o.logger == nil {
		o.logger = hclog.New(&hclog.LoggerOptions{Output: os.Stderr, Level: hclog.Warn})
	}
	args := []string{"plugin"}
	if o.workDir != "" {
		args = append(args, "--work-dir", o.workDir)
	}
	cmd := exec.Command(path, args...)
	cmd.Env = o.env
	pc := goplugin.NewClient(&goplugin.ClientConfig{
		HandshakeConfig:  plugin.Handshake,
		VersionedPlugins: plugin.VersionedPlugins,
		Cmd:              cmd,
		AllowedProtocols: []goplugin.Protocol{goplugin.ProtocolGRPC},
		AutoMTLS:         true,
		Logger:           o.logger,
		StartTimeout:     o.startTimeout,
		GRPCDialOptions: []grpc.DialOption{grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(plugin.MaxMessageSize),
			grpc.MaxCallSendMsgSize(plugin.MaxMessageSize),
		)},
	})
	track(pc, true)

	type started struct {
		svc plugin.Service
		err error
	}
	done := make(chan started, 1)
	go func() {
		rpc, err := pc.Client()
		if err != nil {
			done <- started{err: err}
			return
		}
		raw, err := rpc.Dispense(plugin.PluginName)
		if err != nil {
			done <- started{err: err}
			return
		}
		svc, ok := raw.(plugin.Service)
		if !ok {
			done <- started{err: fmt.Errorf("dispensed %T, want a plugin.Service", raw)}
			return
		}
		done <- started{svc: svc}
	}()
	select {
	case s := <-done:
		if s.err != nil {
			pc.Kill()
			track(pc, false)
			return nil, fmt.Errorf("strata plugin: start %s: %w", path, s.err)
		}
		return &Client{pc: pc, svc: s.svc}, nil
	case <-ctx.Done():
		pc.Kill()
		track(pc, false)
		return nil, fmt.Errorf("strata plugin: start %s: %w", path, ctx.Err())
	}
}

// Close kills the plugin process (a graceful shutdown first, which
// cancels runs in progress; a kill after 2 s) and waits for it to exit.
func (c *Client) Close() error {
	c.pc.Kill()
	track(c.pc, false)
	return nil
}

// Pid returns the plugin process's id, 0 once it exited.
func (c *Client) Pid() int {
	if c.pc.Exited() {
		return 0
	}
	if rc := c.pc.ReattachConfig(); rc != nil {
		return rc.Pid
	}
	return 0
}

// Exited reports whether the plugin process has exited.
func (c *Client) Exited() bool { return c.pc.Exited() }

// Describe returns the stages, their config fields (name, type, default,
// doc) and artifacts, the protocol version and the tool version.
func (c *Client) Describe(ctx context.Context) (*Description, error) {
	d, err := c.svc.Describe(ctx)
	return d, c.wrap(err)
}

// Run runs stage with config in the plugin and returns its result.
//
// config is anything that encodes as a JSON object of the stage's config
// fields (a map, json.RawMessage, or the stages package's config struct):
// it is applied over the stage's defaults, the ones the CLI starts from,
// and unknown keys are bad input. Paths in it are the plugin's (a shared
// volume); inputs replaces config fields with artifacts sent from memory.
// When config leaves the stage's output location ("out") empty, every
// output comes back in the Result and nothing stays on disk; otherwise
// the outputs are written there and the Result gives their paths.
//
// progress, when not nil, is called with each progress event, on the
// goroutine calling Run. Cancelling ctx stops the stage promptly in the
// plugin, and Run returns an error wrapping ctx.Err(). Bad input returns
// an error wrapping plugin.ErrInput (stages.ErrInput); a plugin that
// died, one wrapping ErrExited.
func (c *Client) Run(ctx context.Context, stage string, config any, inputs Inputs, progress func(Event)) (Result, error) {
	raw, err := configJSON(config)
	if err != nil {
		return Result{}, fmt.Errorf("strata plugin: %s: config: %w", stage, err)
	}
	raw, err = withPaths(raw, inputs)
	if err != nil {
		return Result{}, fmt.Errorf("strata plugin: %s: config: %w", stage, err)
	}
	req := &plugin.Request{Stage: stage, Config: raw}
	var closers []io.Closer
	defer func() {
		for _, cl := range closers {
			cl.Close()
		}
	}()
	for _, field := range inputs.fields() {
		in := inputs[field]
		if in.encoding == plugin.EncodingPath {
			continue // in the config
		}
		if in.open == nil {
			return Result{}, fmt.Errorf("strata plugin: %s: input %q is empty", stage, field)
		}
		r, err := in.open()
		if err != nil {
			return Result{}, fmt.Errorf("strata plugin: %s: input %q: %w", stage, field, err)
		}
		if cl, ok := r.(io.Closer); ok {
			closers = append(closers, cl)
		}
		req.Inputs = append(req.Inputs, plugin.Input{Field: field, Encoding: in.encoding, FileName: in.fileName, Data: r})
	}
	res, err := c.svc.Run(ctx, req, progress)
	if err != nil {
		return Result{}, c.wrap(err)
	}
	return Result{Result: *res}, nil
}

// wrap marks an error as ErrExited when the plugin process is gone.
func (c *Client) wrap(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, plugin.ErrUnavailable) || c.pc.Exited() {
		// The connection breaks as the process dies; give the exit a
		// moment to be observed so the error says what happened.
		for i := 0; i < 20 && !c.pc.Exited(); i++ {
			time.Sleep(25 * time.Millisecond)
		}
		if c.pc.Exited() {
			return fmt.Errorf("%w: %w", ErrExited, err)
		}
	}
	return err
}

// withPaths sets the config field of every File input to its path.
func withPaths(raw json.RawMessage, inputs Inputs) (json.RawMessage, error) {
	paths := map[string]string{}
	for field, in := range inputs {
		if in.encoding == plugin.EncodingPath {
			paths[field] = strings.TrimPrefix(in.fileName, "file://")
		}
	}
	if len(paths) == 0 {
		return raw, nil
	}
	obj := map[string]json.RawMessage{}
	if len(bytes.TrimSpace(raw)) > 0 {
		if err := json.Unmarshal(raw, &obj); err != nil {
			return nil, err
		}
	}
	for field, p := range paths {
		obj[field], _ = json.Marshal(p)
	}
	return json.Marshal(obj)
}

func configJSON(config any) (json.RawMessage, error) {
	switch c := config.(type) {
	case nil:
		return nil, nil
	case json.RawMessage:
		return c, nil
	case []byte:
		return c, nil
	}
	return json.Marshal(config)
}

// Result is the result of a run.
type Result struct {
	plugin.Result
}

// Model decodes the output model named name (e.g. "model" or "materialized")
// from its Arrow IPC stream, or reads it from its path when it stayed on
// disk. An ONNX model (convert's outputs for an ONNX input) is read with
// ONNX instead.
func (r Result) Model(name string) (*arrowio.Model, error) {
	a, ok := r.Output(name)
	if !ok {
		return nil, fmt.Errorf("strata plugin: %s has no output %q", r.Stage, name)
	}
	switch {
	case a.Kind == plugin.KindONNX:
		return nil, fmt.Errorf("strata plugin: %s output %q (%s) is an ONNX model: read its bytes with Result.ONNX, its factors with Result.Factors", r.Stage, name, a.File)
	case a.Encoding == plugin.EncodingPath:
		return arrowio.ReadModel(a.Path)
	case a.Encoding == plugin.EncodingArrowStream:
		return arrowio.ReadModelStream(bytes.NewReader(a.Data), int64(len(a.Data)), a.Name)
	}
	return nil, fmt.Errorf("strata plugin: %s output %q (%s) is not an Arrow model", r.Stage, name, a.File)
}

// Factors returns convert's factors output, model.arrow: every converted
// layer's trunk and correction factors with the architecture, whatever the
// input's format (for an ONNX input, the converted layers and their biases
// only; the structured graph is the "model" output, see ONNX). It is what
// finetune and `strata export --factors` read.
func (r Result) Factors() (*arrowio.Model, error) { return r.Model("factors") }

// ONNX returns the ONNX model output named name as its protobuf bytes,
// streamed or read from its path: for an ONNX input, convert's structured
// model ("model": each converted node replaced by its S + R subgraph), its
// dense materialisation ("materialized") and the input's byte copy
// ("input"). An output of another kind is an error. The bytes are the
// file's; ONNX (the Input) sends them to a further run as they are.
func (r Result) ONNX(name string) ([]byte, error) {
	a, ok := r.Output(name)
	if !ok {
		return nil, fmt.Errorf("strata plugin: %s has no output %q", r.Stage, name)
	}
	if a.Kind != plugin.KindONNX {
		return nil, fmt.Errorf("strata plugin: %s output %q (%s) is of kind %s, not an ONNX model", r.Stage, name, a.File, a.Kind)
	}
	return r.Bytes(name)
}

// Bytes returns the output named name: its streamed bytes (an Arrow IPC
// stream for Arrow outputs), or its file's content when it stayed on
// disk.
func (r Result) Bytes(name string) ([]byte, error) {
	a, ok := r.Output(name)
	if !ok {
		return nil, fmt.Errorf("strata plugin: %s has no output %q", r.Stage, name)
	}
	if a.Encoding == plugin.EncodingPath {
		return os.ReadFile(a.Path)
	}
	return a.Data, nil
}

// Input returns the output named name as an input of a further run: the
// streamed bytes sent back as they came, or the path.
func (r Result) Input(name string) (Input, error) {
	a, ok := r.Output(name)
	if !ok {
		return Input{}, fmt.Errorf("strata plugin: %s has no output %q", r.Stage, name)
	}
	switch a.Encoding {
	case plugin.EncodingPath:
		return File(a.Path), nil
	case plugin.EncodingArrowStream:
		return Arrow(bytes.NewReader(a.Data)), nil
	}
	return Bytes(a.File, a.Data), nil
}

// Inputs maps config fields (e.g. "model", "train") to the artifacts
// sent for them. Streamed inputs go in sorted field order.
type Inputs map[string]Input

func (in Inputs) fields() []string { return slices.Sorted(maps.Keys(in)) }

// Input is an artifact for one config field. Build it with Model, ONNX,
// Dataset, Records, Arrow, Bytes or File.
type Input struct {
	encoding plugin.Encoding
	fileName string
	// open returns the bytes to send; a returned io.Closer is closed
	// after the run.
	open func() (io.Reader, error)
}

// Model sends m as an Arrow IPC stream (arrowio.EncodeModelStream); the
// plugin stores it as the model file EncodeModel would write, byte for
// byte.
func Model(m *arrowio.Model) Input {
	return streamInput(func(w io.Writer) error { return arrowio.EncodeModelStream(w, m) })
}

// ONNX sends an ONNX model's bytes (a torch.onnx.export, the bytes of
// Result.ONNX) as the file model.onnx, which convert converts and validate
// runs in ONNX Runtime. The model must hold its initializers: an external
// data file beside it is not sent (onnx.save_model with
// save_as_external_data=False, or host.File on a shared volume).
func ONNX(data []byte) Input { return Bytes("model.onnx", data) }

// Dataset sends ds as an Arrow IPC stream (arrowio.EncodeDatasetStream
// with opts: features as one fixed_size_list<float32> column by default,
// the target in "label").
func Dataset(ds *arrowio.Dataset, opts ...arrowio.Option) Input {
	return streamInput(func(w io.Writer) error { return arrowio.EncodeDatasetStream(w, ds, opts...) })
}

// Records sends record batches of one schema as an Arrow IPC stream: a
// dataset, logits, or a model in the model file's schema. The records
// are not released.
func Records(recs ...arrow.RecordBatch) Input {
	return streamInput(func(w io.Writer) error {
		if len(recs) == 0 {
			return errors.New("no record batches")
		}
		sw := ipc.NewWriter(w, ipc.WithSchema(recs[0].Schema()))
		for _, rec := range recs {
			if err := sw.Write(rec); err != nil {
				sw.Close()
				return err
			}
		}
		return sw.Close()
	})
}

// Arrow sends the Arrow IPC stream r yields, as it is.
func Arrow(r io.Reader) Input {
	return Input{encoding: plugin.EncodingArrowStream, open: func() (io.Reader, error) { return r, nil }}
}

// Bytes sends a file's content (a policy YAML, a validation.json, a
// safetensors checkpoint) under the file name name, whose extension
// tells the stage its format.
func Bytes(name string, data []byte) Input {
	return Input{encoding: plugin.EncodingFile, fileName: name, open: func() (io.Reader, error) { return bytes.NewReader(data), nil }}
}

// File names a file the plugin reads itself: a path (or file:// URI) on a
// volume the plugin sees. Nothing is sent; the config field is set to
// the path.
func File(path string) Input {
	return Input{encoding: plugin.EncodingPath, fileName: path}
}

// streamInput encodes through a pipe as the run sends, so a large model
// is never held twice in memory.
func streamInput(encode func(io.Writer) error) Input {
	return Input{encoding: plugin.EncodingArrowStream, open: func() (io.Reader, error) {
		pr, pw := io.Pipe()
		go func() { pw.CloseWithError(encode(pw)) }()
		return pr, nil
	}}
}

// The processes the SDK started, for the signal handler.
var (
	procMu     sync.Mutex
	procs      = map[*goplugin.Client]struct{}{}
	signalOnce sync.Once
)

func track(pc *goplugin.Client, open bool) {
	procMu.Lock()
	defer procMu.Unlock()
	if open {
		procs[pc] = struct{}{}
	} else {
		delete(procs, pc)
	}
}

// HandleSignals installs a process-wide handler for SIGINT and SIGTERM
// (once, whatever the number of calls): on either it kills every plugin
// process still open (KillAll), stops handling the signals and raises the
// signal again, so the program's own handling (or the default, exiting)
// follows. It is for hosts that have no signal handling of their own.
func HandleSignals() {
	signalOnce.Do(func() {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
		go func() {
			sig := <-ch
			KillAll()
			signal.Stop(ch)
			if p, err := os.FindProcess(os.Getpid()); err == nil {
				_ = p.Signal(sig)
			}
		}()
	})
}

// KillAll kills every plugin process the SDK started and that is still
// open, as the signal handler does.
func KillAll() {
	procMu.Lock()
	pcs := make([]*goplugin.Client, 0, len(procs))
	for pc := range procs {
		pcs = append(pcs, pc)
	}
	procMu.Unlock()
	var wg sync.WaitGroup
	for _, pc := range pcs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pc.Kill()
			track(pc, false)
		}()
	}
	wg.Wait()
}
