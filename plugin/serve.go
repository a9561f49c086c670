package plugin

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

// ErrNoHost is returned by Serve when the process was not launched by a
// go-plugin host (the magic cookie is not in the environment).
var ErrNoHost = errors.New("not launched by a go-plugin host")

// ServeOptions configures Serve.
type ServeOptions struct {
	// WorkDir holds the runs' private directories (Server.WorkDir).
	WorkDir string
	// Stderr receives the plugin's logs as hclog JSON lines, which the
	// host's go-plugin client parses and re-logs. It must be the real
	// stderr: go-plugin redirects os.Stderr once serving.
	Stderr io.Writer
	// Level is the least hclog level logged (default Info).
	Level hclog.Level
	// ParentPoll is how often the plugin checks that its host is still
	// alive (default 500ms); when the host is gone (its parent process
	// changed), the plugin stops.
	ParentPoll time.Duration
}

// Serve serves the stages over go-plugin until the host shuts the plugin
// down (go-plugin's graceful shutdown, or SIGTERM), or the host process
// dies; runs still in progress are then cancelled and their private
// directories removed. It writes nothing to stdout but go-plugin's
// handshake line. Without the magic cookie it returns ErrNoHost at once.
//
// Serve follows go-plugin's convention on SIGINT: a terminal's Ctrl-C
// reaches the whole process group, and it is the host's to decide, so the
// plugin ignores it.
func Serve(opts ServeOptions) error {
	if os.Getenv(Handshake.MagicCookieKey) != Handshake.MagicCookieValue {
		return ErrNoHost
	}
	if opts.Stderr == nil {
		opts.Stderr = os.Stderr
	}
	if opts.Level == hclog.NoLevel {
		opts.Level = hclog.Info
	}
	if opts.ParentPoll <= 0 {
		opts.ParentPoll = 500 * time.Millisecond
	}
	logger := hclog.New(&hclog.LoggerOptions{
		Name:       "plugin",
		Output:     opts.Stderr,
		Level:      opts.Level,
		JSONFormat: true,
	})
	srv := &Server{
		WorkDir: opts.WorkDir,
		Logger:  slog.New(hclogHandler{logger}),
	}
	// Keep SIGTERM for ourselves (and SIGINT away from the default
	// action) before go-plugin starts serving.
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM, os.Interrupt)
	defer signal.Stop(term)
	// A host that dies closes the pipes of our stdout and stderr: the
	// next log line would kill the process by SIGPIPE before it could
	// stop its runs and remove their directories. Ignored, the write
	// fails instead and the parent poll below finds the host gone.
	signal.Ignore(syscall.SIGPIPE)
	srv.RemoveStale()

	ppid := os.Getppid()
	served := make(chan struct{})
	go func() {
		defer close(served)
		goplugin.Serve(&goplugin.ServeConfig{
			HandshakeConfig:  Handshake,
			VersionedPlugins: map[int]goplugin.PluginSet{ProtocolVersion: {PluginName: &GRPCPlugin{Impl: srv}}},
			GRPCServer: func(o []grpc.ServerOption) *grpc.Server {
				return grpc.NewServer(append(o, grpc.MaxRecvMsgSize(MaxMessageSize), grpc.MaxSendMsgSize(MaxMessageSize))...)
			},
			Logger: logger,
		})
	}()
	tick := time.NewTicker(opts.ParentPoll)
	defer tick.Stop()
wait:
	for {
		select {
		case <-served:
			logger.Debug("shut down by the host")
			break wait
		case sig := <-term:
			if sig == os.Interrupt {
				continue
			}
			logger.Info("terminated", "signal", sig.String())
			break wait
		case <-tick.C:
			if os.Getppid() != ppid {
				logger.Warn("the host process is gone; stopping", "host_pid", ppid)
				break wait
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		logger.Warn("runs still in progress at exit", "err", err)
	}
	return nil
}

// hclogHandler is a slog.Handler that logs through an hclog.Logger, so
// the server's run lines are hclog JSON like go-plugin's own.
type hclogHandler struct{ l hclog.Logger }

func (h hclogHandler) Enabled(_ context.Context, l slog.Level) bool {
	return h.l.GetLevel() <= hclogLevel(l)
}

func (h hclogHandler) Handle(_ context.Context, r slog.Record) error {
	args := make([]any, 0, 2*r.NumAttrs())
	r.Attrs(func(a slog.Attr) bool {
		args = append(args, a.Key, a.Value.Resolve().Any())
		return true
	})
	h.l.Log(hclogLevel(r.Level), r.Message, args...)
	return nil
}

func (h hclogHandler) WithAttrs(as []slog.Attr) slog.Handler {
	args := make([]any, 0, 2*len(as))
	for _, a := range as {
		args = append(args, a.Key, a.Value.Resolve().Any())
	}
	return hclogHandler{h.l.With(args...)}
}

func (h hclogHandler) WithGroup(name string) slog.Handler {
	return hclogHandler{h.l.Named(name)}
}

func hclogLevel(l slog.Level) hclog.Level {
	switch {
	case l >= slog.LevelError:
		return hclog.Error
	case l >= slog.LevelWarn:
		return hclog.Warn
	case l >= slog.LevelInfo:
		return hclog.Info
	}
	return hclog.Debug
}
