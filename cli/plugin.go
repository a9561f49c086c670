package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/hashicorp/go-hclog"

	"github.com/strata-ml/strata/plugin"
)

type pluginCommand struct{ env }

func (c *pluginCommand) Usage() string {
	return `Usage: strata plugin [flags]

Serves the stages (` + strings.Join(plugin.Stages(), ", ") + `) to a Go
host over hashicorp/go-plugin (gRPC, protocol version ` + fmt.Sprint(plugin.ProtocolVersion) + `): a pipeline
loads strata with the host SDK, github.com/strata-ml/strata/plugin/host,
whose Open runs this command. It is not meant to be run by hand: without
the magic cookie a host sets, it explains that and exits 2.

Models and datasets cross the boundary as Arrow IPC streams, or as paths
on a shared volume. Logs go to stderr as hclog JSON; stdout carries only
go-plugin's handshake line. See docs/PLUGIN.md.

Flags:
` + flagUsages(c.flags(new(plugin.ServeOptions), new(string)))
}

func (c *pluginCommand) flags(opts *plugin.ServeOptions, level *string) *flagSet {
	fs := newFlagSet("plugin", c.env, c.Usage)
	fs.StringVar(&opts.WorkDir, "work-dir", opts.WorkDir, "directory of the runs' private directories (default: the system temp directory)")
	fs.StringVar(level, "log-level", "info", "log level: trace, debug, info, warn or error")
	return fs
}

// Run serves until the host shuts the plugin down. ctx is not used: the
// plugin ignores SIGINT as go-plugin plugins do (the host decides) and
// handles SIGTERM itself.
func (c *pluginCommand) Run(_ context.Context, args []string) error {
	opts := plugin.ServeOptions{Stderr: c.stderr}
	level := "info"
	fs := c.flags(&opts, &level)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageErrorf("plugin takes no positional arguments, got %q", fs.Args())
	}
	opts.Level = hclog.LevelFromString(level)
	if opts.Level == hclog.NoLevel {
		return usageErrorf("--log-level %q: want trace, debug, info, warn or error", level)
	}
	err := plugin.Serve(opts)
	if errors.Is(err, plugin.ErrNoHost) {
		fmt.Fprint(c.stderr, `strata plugin serves strata's pilot stages to a Go program through
hashicorp/go-plugin; it is started by that program, not by hand.

To load it from Go:

    client, err := host.Open(ctx, "/path/to/strata") // github.com/strata-ml/strata/plugin/host
    res, err := client.Run(ctx, "convert", cfg, inputs, progress)

To run a stage yourself, use its subcommand instead: strata convert,
strata finetune, strata validate, strata report (see strata help).
`)
		return &ExitError{Code: ExitUsage}
	}
	return err
}
