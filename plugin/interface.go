// Package plugin serves strata's pilot stages over hashicorp/go-plugin
// (gRPC) and holds the pieces a host and the plugin share: the Service
// interface, the handshake and the plugin map. The Go host SDK is
// plugin/host; the wire format is plugin/proto/strata.proto.
//
// The layout follows go-plugin's examples/grpc: this file is the plain Go
// interface (no proto types), grpc.go the two adapters that only
// translate, server.go the implementation, which calls the same stages
// functions the CLI calls.
package plugin

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/strata-ml/strata/plugin/proto"
	"github.com/strata-ml/strata/stages"
)

// ProtocolVersion is the plugin protocol version, negotiated by go-plugin
// through VersionedPlugins. It changes only with an incompatible change
// of the service.
const ProtocolVersion = 1

// PluginName is the name the stages are dispensed under.
const PluginName = "stages"

// Message limits. Every gRPC message stays below MaxMessageSize, which
// both sides raise their limits to; artifacts travel in chunks of at most
// ChunkSize bytes whatever their size.
const (
	MaxMessageSize = 64 << 20
	ChunkSize      = 4 << 20
)

// Handshake is the go-plugin handshake: the plugin refuses to serve
// unless the host set the magic cookie, which is how a binary run by hand
// tells that it was not launched by a host.
var Handshake = goplugin.HandshakeConfig{
	MagicCookieKey:   "STRATA_PLUGIN",
	MagicCookieValue: "d3c0mp0se-S+R-v1",
}

// VersionedPlugins is the plugin map per protocol version, for
// go-plugin's ClientConfig and ServeConfig. The zero-value GRPCPlugin is
// what a host dispenses; the plugin binary sets Impl.
var VersionedPlugins = map[int]goplugin.PluginSet{
	ProtocolVersion: {PluginName: &GRPCPlugin{}},
}

// Service is what the plugin offers: describe the stages, run one.
// GRPCClient implements it over gRPC and Server implements it in
// process; a host uses it through plugin/host.
type Service interface {
	// Describe lists the stages and their configs.
	Describe(ctx context.Context) (*Description, error)
	// Run runs req.Stage. progress, when not nil, is called with each
	// progress event, from one goroutine at a time. Cancelling ctx stops
	// the stage at its next check (between layers, steps or metrics) and
	// Run then returns an error wrapping ctx.Err(). Bad input returns an
	// error wrapping ErrInput.
	Run(ctx context.Context, req *Request, progress func(Event)) (*Result, error)
}

// ErrInput is wrapped by every error caused by what the host fed in (a
// bad config, stage name or artifact): such a run must not be retried.
// It is stages.ErrInput, so errors.Is works with either on both sides.
var ErrInput = stages.ErrInput

// Description is what Describe returns.
type Description struct {
	ProtocolVersion int
	Tool            Tool
	Stages          []StageInfo
}

// Stage returns the stage named name.
func (d *Description) Stage(name string) (*StageInfo, bool) {
	for i := range d.Stages {
		if d.Stages[i].Name == name {
			return &d.Stages[i], true
		}
	}
	return nil, false
}

// Tool identifies the strata build serving the plugin.
type Tool struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	GoVersion string `json:"go_version"`
}

// StageInfo describes one stage.
type StageInfo struct {
	Name string
	Doc  string
	// Fields are the keys of the stage's JSON config in declaration order.
	Fields []Field
	// Inputs are the config fields that name an input artifact, which a
	// host may stream instead of giving a path.
	Inputs []ArtifactInfo
	// Outputs are the artifacts a run returns.
	Outputs []ArtifactInfo
	// OutField is the config field naming the output directory (or file
	// for export). Set, the outputs stay there and Result lists their
	// paths; empty, they are written to a private directory of the
	// plugin, streamed back and removed.
	OutField string
}

// Field describes one key of a stage's JSON config.
type Field struct {
	// Name is the JSON key.
	Name string
	// Type is the JSON type as Go names it: string, bool, int, uint,
	// float, duration, []string, []float, ...
	Type string
	// Default is the default value as JSON.
	Default json.RawMessage
	// Doc is the field's documentation, from the stages package.
	Doc string
}

// ArtifactInfo describes one input or output artifact of a stage.
type ArtifactInfo struct {
	Name string
	Kind string // see the Kind constants
	Doc  string
}

// Artifact kinds.
const (
	KindModel    = "model"     // Arrow model file (or safetensors by path)
	KindONNX     = "onnx"      // an ONNX model's protobuf bytes (EncodingFile)
	KindDataset  = "dataset"   // Arrow / Parquet / CSV table
	KindLogits   = "logits"    // a table of logits, one row per example
	KindTrainLog = "train_log" // finetune's training log (Arrow)
	KindJSON     = "json"
	KindYAML     = "yaml"
	KindText     = "text" // Markdown, OpenMetrics, a decision word
	KindHTML     = "html"
	KindFile     = "file" // anything else, as bytes
)

// Encoding is how an artifact's bytes travel.
type Encoding int

const (
	// EncodingPath: nothing travels; the artifact is a path or file URI
	// on a volume both sides see.
	EncodingPath Encoding = iota
	// EncodingArrowStream: an Arrow IPC stream (models, datasets,
	// logits, training logs): record batches, not ad-hoc blobs.
	EncodingArrowStream
	// EncodingFile: a file's bytes as they are (JSON, YAML, Markdown).
	EncodingFile
)

func (e Encoding) String() string {
	switch e {
	case EncodingPath:
		return "path"
	case EncodingArrowStream:
		return "arrow-stream"
	case EncodingFile:
		return "file"
	}
	return fmt.Sprintf("Encoding(%d)", int(e))
}

// Request asks for one stage run.
type Request struct {
	Stage string
	// Config is a JSON object applied over the stage's defaults (its
	// DefaultXxxConfig); unknown keys are bad input. Path inputs and the
	// output location are ordinary config fields.
	Config json.RawMessage
	// Inputs are the streamed inputs, each standing for a config field.
	Inputs []Input
}

// Input is an artifact streamed to the plugin for one config field.
type Input struct {
	// Field is the config field, e.g. "model" or "train".
	Field string
	// Encoding is EncodingArrowStream or EncodingFile.
	Encoding Encoding
	// FileName is the name an EncodingFile input is stored under: its
	// extension tells the stage its format (e.g. "policy.yaml").
	FileName string
	// Data yields the bytes; it is read once, to the end, in the order
	// of Request.Inputs.
	Data io.Reader
}

// Event is one progress event of a running stage.
type Event struct {
	Stage string
	// Step of Total, as the stage last reported them (layers converted,
	// optimisation steps, metrics computed); 0 of 0 before the first.
	Step, Total int
	Message     string
	// Level is the log level: DEBUG, INFO, WARN or ERROR.
	Level string
	// Attrs are the event's structured fields, formatted as text.
	Attrs map[string]string
}

// Result is what a run returns.
type Result struct {
	Stage string
	// JSON is the stage's result: what it writes as convert.json,
	// finetune.json, validation.json or report.json. Paths in it are the
	// plugin's (a private directory when artifacts were streamed).
	JSON json.RawMessage
	// Decision is the report stage's decision: go, no-go or inconclusive
	// (empty for the other stages). NO-GO is a result, not an error.
	Decision string
	// Outputs are the run's output artifacts in a fixed order.
	Outputs []Artifact
}

// Output returns the output artifact named name.
func (r Result) Output(name string) (*Artifact, bool) {
	for i := range r.Outputs {
		if r.Outputs[i].Name == name {
			return &r.Outputs[i], true
		}
	}
	return nil, false
}

// Decode unmarshals the stage's JSON result into v, e.g. a
// *stages.ConvertResult.
func (r Result) Decode(v any) error {
	return json.Unmarshal(r.JSON, v)
}

// Artifact is one output of a run.
type Artifact struct {
	// Name is the output's name, e.g. "model", "materialized", "log", "report".
	Name string
	// File is its file name, e.g. "model.arrow".
	File string
	// Kind is one of the Kind constants.
	Kind string
	// Encoding is EncodingPath when the artifact stayed where the config
	// said (Path), else how Data is encoded: an Arrow IPC stream for
	// Arrow files, the file's bytes otherwise.
	Encoding Encoding
	// Path is where the plugin wrote it (EncodingPath only).
	Path string
	// Data holds the streamed bytes.
	Data []byte
	// Size is the file's size in bytes (of the file, not of Data).
	Size int64
}

// GRPCPlugin is the go-plugin plugin.GRPCPlugin of the stages: Impl is
// served by the plugin binary, and a host dispenses a *GRPCClient.
type GRPCPlugin struct {
	goplugin.NetRPCUnsupportedPlugin
	// Impl is the implementation the plugin serves (plugin side only).
	Impl Service
}

var _ goplugin.GRPCPlugin = (*GRPCPlugin)(nil)

// GRPCServer registers the service on the plugin's gRPC server.
func (p *GRPCPlugin) GRPCServer(_ *goplugin.GRPCBroker, s *grpc.Server) error {
	proto.RegisterStagesServer(s, &GRPCServer{Impl: p.Impl})
	return nil
}

// GRPCClient returns the host's client of the service.
func (p *GRPCPlugin) GRPCClient(_ context.Context, _ *goplugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return &GRPCClient{client: proto.NewStagesClient(c)}, nil
}
