package plugin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/strata-ml/strata/plugin/proto"
)

// This file holds the two gRPC adapters. Each method only translates
// between the Go types of interface.go and the messages of
// proto/strata.proto; the stage logic is in server.go.

// ErrUnavailable is wrapped by the error of a call whose connection to the
// plugin broke (the plugin process exited or was killed). Such a run is
// safe to retry with a new plugin process.
var ErrUnavailable = errors.New("strata plugin unavailable")

// GRPCClient is the host side: it implements Service over gRPC.
type GRPCClient struct {
	client proto.StagesClient
}

var _ Service = (*GRPCClient)(nil)

// Describe implements Service.
func (c *GRPCClient) Describe(ctx context.Context) (*Description, error) {
	resp, err := c.client.Describe(ctx, &proto.DescribeRequest{})
	if err != nil {
		return nil, fromStatus(ctx, "describe", err)
	}
	d := &Description{ProtocolVersion: int(resp.ProtocolVersion)}
	if t := resp.Tool; t != nil {
		d.Tool = Tool{Version: t.Version, Commit: t.Commit, GoVersion: t.GoVersion}
	}
	for _, s := range resp.Stages {
		si := StageInfo{Name: s.Name, Doc: s.Doc, OutField: s.OutField}
		for _, f := range s.Fields {
			si.Fields = append(si.Fields, Field{Name: f.Name, Type: f.Type, Default: []byte(f.DefaultJson), Doc: f.Doc})
		}
		si.Inputs = artifactInfos(s.Inputs)
		si.Outputs = artifactInfos(s.Outputs)
		d.Stages = append(d.Stages, si)
	}
	return d, nil
}

func artifactInfos(in []*proto.ArtifactInfo) []ArtifactInfo {
	var out []ArtifactInfo
	for _, a := range in {
		out = append(out, ArtifactInfo{Name: a.Name, Kind: a.Kind, Doc: a.Doc})
	}
	return out
}

// Run implements Service: it sends the request and the inputs' bytes in
// chunks, then receives progress events, the outputs' chunks and the
// result.
func (c *GRPCClient) Run(ctx context.Context, req *Request, progress func(Event)) (*Result, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.client.Run(ctx)
	if err != nil {
		return nil, fromStatus(ctx, req.Stage, err)
	}
	start := &proto.RunStart{Stage: req.Stage, ConfigJson: req.Config}
	for _, in := range req.Inputs {
		start.Inputs = append(start.Inputs, &proto.InputHeader{
			Field: in.Field, Encoding: encodingToProto(in.Encoding), FileName: in.FileName,
		})
	}
	send := func(m *proto.RunRequest) error { return stream.Send(m) }
	err = send(&proto.RunRequest{Msg: &proto.RunRequest_Start{Start: start}})
	for i := 0; err == nil && i < len(req.Inputs); i++ {
		in := req.Inputs[i]
		err = sendChunks(in.Field, in.Data, func(ch *proto.Chunk) error {
			return send(&proto.RunRequest{Msg: &proto.RunRequest_Chunk{Chunk: ch}})
		})
		var re *readError
		if errors.As(err, &re) {
			return nil, fmt.Errorf("strata plugin: %s: read input %q: %w", req.Stage, in.Field, re.err)
		}
	}
	if err == nil {
		err = stream.CloseSend()
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fromStatus(ctx, req.Stage, err)
	}
	// On io.EOF the plugin ended the run early; Recv returns its status.
	data := map[string]*bytes.Buffer{}
	for {
		msg, err := stream.Recv()
		if err == io.EOF {
			return nil, fmt.Errorf("strata plugin: %s: the run ended without a result: %w", req.Stage, ErrUnavailable)
		}
		if err != nil {
			return nil, fromStatus(ctx, req.Stage, err)
		}
		switch m := msg.Msg.(type) {
		case *proto.RunResponse_Progress:
			if progress != nil {
				p := m.Progress
				progress(Event{Stage: p.Stage, Step: int(p.Step), Total: int(p.Total), Message: p.Message, Level: p.Level, Attrs: p.Attrs})
			}
		case *proto.RunResponse_Chunk:
			b := data[m.Chunk.Artifact]
			if b == nil {
				b = new(bytes.Buffer)
				data[m.Chunk.Artifact] = b
			}
			b.Write(m.Chunk.Data)
		case *proto.RunResponse_Result:
			r := m.Result
			res := &Result{Stage: r.Stage, JSON: r.ResultJson, Decision: r.Decision}
			for _, a := range r.Outputs {
				art := Artifact{Name: a.Name, File: a.File, Kind: a.Kind, Path: a.Path, Size: a.Size, Encoding: encodingFromProto(a.Encoding)}
				if a.Streamed {
					b := data[a.Name]
					if b == nil {
						b = new(bytes.Buffer)
					}
					art.Data = b.Bytes()
				} else {
					art.Encoding = EncodingPath
				}
				res.Outputs = append(res.Outputs, art)
			}
			return res, nil
		}
	}
}

// readError marks an error of the host's own input reader.
type readError struct{ err error }

func (e *readError) Error() string { return e.err.Error() }

// sendChunks sends r's bytes as chunks of at most ChunkSize bytes, the
// last one marked (an empty reader sends one empty, marked chunk). Each
// chunk gets its own buffer: gRPC may hold a sent message.
func sendChunks(name string, r io.Reader, send func(*proto.Chunk) error) error {
	if r == nil {
		return send(&proto.Chunk{Artifact: name, Last: true})
	}
	for {
		buf := make([]byte, ChunkSize)
		n, err := io.ReadFull(r, buf)
		last := err == io.EOF || err == io.ErrUnexpectedEOF
		if err != nil && !last {
			return &readError{err}
		}
		if n == 0 && !last {
			continue
		}
		if err := send(&proto.Chunk{Artifact: name, Data: buf[:n], Last: last}); err != nil {
			return err
		}
		if last {
			return nil
		}
	}
}

// GRPCServer is the plugin side: it serves Impl over gRPC.
type GRPCServer struct {
	proto.UnimplementedStagesServer
	Impl Service
}

// Describe implements proto.StagesServer.
func (s *GRPCServer) Describe(ctx context.Context, _ *proto.DescribeRequest) (*proto.DescribeResponse, error) {
	d, err := s.Impl.Describe(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &proto.DescribeResponse{
		ProtocolVersion: uint32(d.ProtocolVersion),
		Tool:            &proto.Tool{Version: d.Tool.Version, Commit: d.Tool.Commit, GoVersion: d.Tool.GoVersion},
	}
	for _, st := range d.Stages {
		ps := &proto.StageInfo{Name: st.Name, Doc: st.Doc, OutField: st.OutField}
		for _, f := range st.Fields {
			ps.Fields = append(ps.Fields, &proto.ConfigField{Name: f.Name, Type: f.Type, DefaultJson: string(f.Default), Doc: f.Doc})
		}
		for _, a := range st.Inputs {
			ps.Inputs = append(ps.Inputs, &proto.ArtifactInfo{Name: a.Name, Kind: a.Kind, Doc: a.Doc})
		}
		for _, a := range st.Outputs {
			ps.Outputs = append(ps.Outputs, &proto.ArtifactInfo{Name: a.Name, Kind: a.Kind, Doc: a.Doc})
		}
		resp.Stages = append(resp.Stages, ps)
	}
	return resp, nil
}

// Run implements proto.StagesServer.
func (s *GRPCServer) Run(stream proto.Stages_RunServer) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	start := first.GetStart()
	if start == nil {
		return status.Error(codes.InvalidArgument, "strata plugin: a run must begin with RunStart")
	}
	req := &Request{Stage: start.Stage, Config: start.ConfigJson}
	in := &inputStream{recv: stream.Recv}
	for i, h := range start.Inputs {
		req.Inputs = append(req.Inputs, Input{
			Field: h.Field, Encoding: encodingFromProto(h.Encoding), FileName: h.FileName,
			Data: &inputReader{s: in, idx: i, name: h.Field},
		})
	}
	var mu sync.Mutex // grpc streams allow one Send at a time
	progress := func(e Event) {
		mu.Lock()
		defer mu.Unlock()
		// A failed send means the host is gone; the stream's context
		// is then cancelled and the stage stops.
		_ = stream.Send(&proto.RunResponse{Msg: &proto.RunResponse_Progress{Progress: &proto.Progress{
			Stage: e.Stage, Step: int64(e.Step), Total: int64(e.Total), Message: e.Message, Level: e.Level, Attrs: e.Attrs,
		}}})
	}
	res, err := s.Impl.Run(stream.Context(), req, progress)
	if err != nil {
		return toStatus(err)
	}
	mu.Lock()
	defer mu.Unlock()
	out := &proto.RunResult{Stage: res.Stage, ResultJson: res.JSON, Decision: res.Decision}
	for _, a := range res.Outputs {
		pa := &proto.Artifact{Name: a.Name, File: a.File, Kind: a.Kind, Path: a.Path, Size: a.Size, Encoding: encodingToProto(a.Encoding)}
		if a.Encoding != EncodingPath {
			pa.Streamed = true
			data := a.Data
			for {
				n := min(len(data), ChunkSize)
				ch := &proto.Chunk{Artifact: a.Name, Data: data[:n], Last: n == len(data)}
				if err := stream.Send(&proto.RunResponse{Msg: &proto.RunResponse_Chunk{Chunk: ch}}); err != nil {
					return err
				}
				if data = data[n:]; len(data) == 0 {
					break
				}
			}
		}
		out.Outputs = append(out.Outputs, pa)
	}
	return stream.Send(&proto.RunResponse{Msg: &proto.RunResponse_Result{Result: out}})
}

// inputStream hands out the streamed inputs' chunks, one input after the
// other, to the inputReaders of a run.
type inputStream struct {
	recv func() (*proto.RunRequest, error)
	cur  int // index of the input being received
}

// inputReader reads the bytes of input idx from its chunks.
type inputReader struct {
	s    *inputStream
	idx  int
	name string
	buf  []byte
	done bool
}

func (r *inputReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		if r.done {
			return 0, io.EOF
		}
		if r.s.cur != r.idx {
			return 0, fmt.Errorf("input %q read out of order", r.name)
		}
		msg, err := r.s.recv()
		if err == io.EOF {
			return 0, fmt.Errorf("input %q: the host closed the stream before its last chunk: %w", r.name, io.ErrUnexpectedEOF)
		}
		if err != nil {
			return 0, err
		}
		ch := msg.GetChunk()
		if ch == nil || ch.Artifact != r.name {
			return 0, fmt.Errorf("input %q: got a chunk of %q: %w", r.name, ch.GetArtifact(), ErrInput)
		}
		r.buf = ch.Data
		if ch.Last {
			r.done = true
			r.s.cur++
		}
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

func encodingToProto(e Encoding) proto.Encoding {
	switch e {
	case EncodingArrowStream:
		return proto.Encoding_ENCODING_ARROW_STREAM
	case EncodingFile:
		return proto.Encoding_ENCODING_FILE
	}
	return proto.Encoding_ENCODING_UNSPECIFIED
}

func encodingFromProto(e proto.Encoding) Encoding {
	switch e {
	case proto.Encoding_ENCODING_ARROW_STREAM:
		return EncodingArrowStream
	case proto.Encoding_ENCODING_FILE:
		return EncodingFile
	}
	return EncodingPath
}

// toStatus maps a run's error to a gRPC status: bad input is
// InvalidArgument (never retry), a cancelled or expired context Canceled
// or DeadlineExceeded, anything else Unknown (a runtime error, safe to
// retry).
func toStatus(err error) error {
	code := codes.Unknown
	switch {
	case errors.Is(err, ErrInput):
		code = codes.InvalidArgument
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	}
	return status.Error(code, err.Error())
}

// remoteError is an error the plugin returned or the connection broke
// with; it unwraps to ErrInput, a context error or ErrUnavailable by its
// gRPC code.
type remoteError struct {
	msg  string
	kind error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.kind }

// fromStatus translates the error of a call back into Go errors.
func fromStatus(ctx context.Context, what string, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("strata plugin: %s: %w", what, cerr)
	}
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("strata plugin: %s: %w", what, err)
	}
	e := &remoteError{msg: st.Message()}
	switch st.Code() {
	case codes.InvalidArgument:
		e.kind = ErrInput
	case codes.Canceled:
		e.kind = context.Canceled
	case codes.DeadlineExceeded:
		e.kind = context.DeadlineExceeded
	case codes.Unavailable:
		e.kind = ErrUnavailable
		e.msg = fmt.Sprintf("strata plugin: %s: %s", what, st.Message())
	}
	return e
}
