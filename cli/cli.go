// Package cli implements the strata command line: one file per
// subcommand, each a type with Run and Usage, dispatched by Main.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"strings"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/strata-ml/strata/internal/inputerr"
	"github.com/strata-ml/strata/stages"
)

// Exit codes shared by every subcommand (PRODUCT.md section 6). The
// gate's decisions exit with gate.ExitCode (3 NO-GO, 4 INCONCLUSIVE),
// which the gate decides and the CLI only passes on.
const (
	ExitOK      = 0
	ExitRuntime = 1 // runtime error, safe to retry
	ExitUsage   = 2 // bad input or usage, never retry
)

// ExitError carries the exit code an error maps to.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// usageErrorf returns an error that exits with ExitUsage.
func usageErrorf(format string, args ...any) error {
	return &ExitError{Code: ExitUsage, Err: fmt.Errorf(format, args...)}
}

// command is one subcommand.
type command interface {
	// Run parses args (without the subcommand name) and runs it.
	Run(ctx context.Context, args []string) error
	// Usage is the help text.
	Usage() string
}

// env is what every command writes to.
type env struct {
	stdout, stderr io.Writer
	// parsed records the flag set the command builds, for exitCode to
	// name config fields in errors by their flags; nil records nothing.
	parsed *parsedFlags
}

// parsedFlags holds the flag set of the command that runs.
type parsedFlags struct{ fs *pflag.FlagSet }

// commands lists the subcommands for help, in display order.
var commands = []struct{ name, summary string }{
	{"convert", "decompose a dense checkpoint's layers into S + R"},
	{"finetune", "train a decomposed (or fresh dense) model, with checkpoints and resume"},
	{"validate", "compare a candidate with its baseline: every metric side by side, with intervals"},
	{"report", "judge validation.json against a gate policy: GO / NO-GO / INCONCLUSIVE, and the report"},
	{"pilot", "run the whole pilot from one config (or --demo on embedded data)"},
	{"sweep", "run many candidates (and learning rates, and seeds) against one baseline and summarise them"},
	{"merge", "join the shards of a sharded convert"},
	{"inspect", "describe a model file (Arrow or safetensors)"},
	{"export", "materialise a model to one dense file"},
	{"mlflow", "hand a pilot's report and, on GO, its model to an MLflow tracking server"},
	{"plugin", "serve the stages to a Go host over hashicorp/go-plugin"},
	{"version", "print the version, commit and Go version"},
	{"help", "show help for strata or a subcommand"},
}

// lookup returns the command of a name; adding a command is one file and
// one case here.
func lookup(name string, e env) command {
	switch name {
	case "convert":
		return &convertCommand{env: e}
	case "finetune":
		return &finetuneCommand{env: e}
	case "validate":
		return &validateCommand{env: e}
	case "report":
		return &reportCommand{env: e}
	case "pilot":
		return &pilotCommand{env: e}
	case "sweep":
		return &sweepCommand{env: e}
	case "merge":
		return &mergeCommand{env: e}
	case "inspect":
		return &inspectCommand{env: e}
	case "export":
		return &exportCommand{env: e}
	case "mlflow":
		return &mlflowCommand{env: e}
	case "plugin":
		return &pluginCommand{env: e}
	case "version":
		return &versionCommand{env: e}
	}
	return nil
}

// Main runs strata with args (without the program name) and returns the
// process exit code. Only main exits.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	e := env{stdout: stdout, stderr: stderr, parsed: &parsedFlags{}}
	if len(args) == 0 {
		fmt.Fprint(stderr, topUsage())
		return ExitUsage
	}
	name, rest := args[0], args[1:]
	switch name {
	case "help", "-h", "--help":
		if len(rest) == 0 {
			fmt.Fprint(stdout, topUsage())
			return ExitOK
		}
		if c := lookup(rest[0], e); c != nil {
			fmt.Fprint(stdout, c.Usage())
			return ExitOK
		}
		fmt.Fprintf(stderr, "strata: unknown command %q\n\n%s", rest[0], topUsage())
		return ExitUsage
	}
	c := lookup(name, e)
	if c == nil {
		fmt.Fprintf(stderr, "strata: unknown command %q\n\n%s", name, topUsage())
		return ExitUsage
	}
	err := c.Run(ctx, rest)
	return exitCode(err, stderr, e.parsed.fs)
}

// exitCode reports err on stderr, the config fields its messages name
// called by their flags in flags (nameFields), and maps it to an exit code.
func exitCode(err error, stderr io.Writer, flags *pflag.FlagSet) int {
	if err == nil {
		return ExitOK
	}
	if errors.Is(err, pflag.ErrHelp) {
		return ExitOK
	}
	code := ExitRuntime
	var ee *ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.Code
	case errors.Is(err, stages.ErrInput):
		code = ExitUsage
	case errors.Is(err, fs.ErrPermission), errors.Is(err, syscall.EROFS):
		// An input that cannot be read or an output that cannot be
		// written for want of permission (the pod's user, a read-only
		// mount) is configuration: a retry meets the same wall.
		code = ExitUsage
	}
	if ee == nil || ee.Err != nil {
		fmt.Fprintf(stderr, "strata: %s\n", nameFields(err, flags))
	}
	return code
}

// nameFields returns err's message with every config field a
// *inputerr.FieldError in it names called by its flag in fs: the stages
// name fields by their config keys (batch_size, as a plugin host and a
// config file know them), the CLI by the flag bound to the field
// (--batch-size). This is the one place the CLI maps one to the other: a
// key (dots and underscores read as dashes, so baseline.epochs is
// --baseline-epochs) names the flag of that name when fs has one, and
// stays the key otherwise.
func nameFields(err error, fs *pflag.FlagSet) string {
	msg := err.Error()
	if fs == nil {
		return msg
	}
	flag := func(key string) string {
		name := strings.NewReplacer("_", "-", ".", "-").Replace(key)
		if fs.Lookup(name) != nil {
			return "--" + name
		}
		return key
	}
	for _, fe := range fieldErrors(err) {
		msg = strings.Replace(msg, fe.Error(), fe.Render(flag), 1)
	}
	return msg
}

// fieldErrors returns every *inputerr.FieldError in err's tree.
func fieldErrors(err error) []*inputerr.FieldError {
	var out []*inputerr.FieldError
	var walk func(error)
	walk = func(err error) {
		if fe, ok := err.(*inputerr.FieldError); ok {
			out = append(out, fe)
		}
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			if next := u.Unwrap(); next != nil {
				walk(next)
			}
		case interface{ Unwrap() []error }:
			for _, next := range u.Unwrap() {
				walk(next)
			}
		}
	}
	walk(err)
	return out
}

func topUsage() string {
	var b strings.Builder
	b.WriteString("strata pilots structured + residual layers (W = S + R) on a trained dense model.\n\n")
	b.WriteString("Usage:\n  strata COMMAND [flags]\n\nCommands:\n")
	for _, c := range commands {
		fmt.Fprintf(&b, "  %-10s %s\n", c.name, c.summary)
	}
	b.WriteString("\nRun 'strata help COMMAND' or 'strata COMMAND --help' for a command's flags.\n")
	b.WriteString("Exit codes: 0 ok (report: GO), 1 runtime error, 2 bad input, 3 NO-GO, 4 INCONCLUSIVE;\na crash aborts (SIGABRT, status 134).\n")
	return b.String()
}

// flagSet is the flag set type every command builds.
type flagSet = pflag.FlagSet

// flagUsages returns the flag help of fs, every flag with its default:
// pflag leaves out a zero default, which is added here ("(default
// false)", "(default 0)", "(default: none)" for an empty string or list)
// unless the flag's usage already says it.
func flagUsages(fs *flagSet) string {
	fs.VisitAll(func(f *pflag.Flag) {
		one := pflag.NewFlagSet("", pflag.ContinueOnError)
		one.AddFlag(f)
		if strings.Contains(one.FlagUsages(), "(default") {
			return
		}
		switch f.Value.Type() {
		case "bool":
			f.Usage += " (default false)"
		case "string", "stringArray", "stringSlice", "float64Slice", "intSlice":
			f.Usage += " (default: none)"
		default:
			f.Usage += " (default " + f.DefValue + ")"
		}
	})
	return fs.FlagUsages()
}

// newFlagSet returns a flag set for a subcommand that reports errors
// instead of exiting and prints usage on --help.
func newFlagSet(name string, e env, usage func() string) *pflag.FlagSet {
	fs := pflag.NewFlagSet("strata "+name, pflag.ContinueOnError)
	if e.parsed != nil {
		// The flag set of the help text has the same flags.
		e.parsed.fs = fs
	}
	fs.SetOutput(e.stderr)
	fs.Usage = func() { fmt.Fprint(e.stderr, usage()) }
	fs.SortFlags = false
	return fs
}

// parse parses args into fs, mapping bad flags to a usage error.
func parse(fs *pflag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return err
		}
		return &ExitError{Code: ExitUsage, Err: fmt.Errorf("%s: %w", fs.Name(), err)}
	}
	return nil
}

// logOptions are the logging flags every long-running command takes.
type logOptions struct {
	format string
	level  string
}

func (o *logOptions) bind(fs *pflag.FlagSet) {
	fs.StringVar(&o.format, "log-format", "text", "log format on stderr: text or json")
	fs.StringVar(&o.level, "log-level", "info", "log level: debug, info, warn or error")
}

// logger builds the stderr logger the options describe.
func (o *logOptions) logger(w io.Writer) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(o.level)); err != nil {
		return nil, usageErrorf("--log-level %q: want debug, info, warn or error", o.level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch o.format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, usageErrorf("--log-format %q: want text or json", o.format)
}

// stageLogger is the logger of the stages a pilot or a sweep runs: their
// own logs (an epoch line per epoch of every training run) only at debug
// level, warnings always.
func (o logOptions) stageLogger(w io.Writer) (*slog.Logger, error) {
	lvl := slog.LevelWarn.String()
	if o.level == "debug" {
		lvl = o.level
	}
	o.level = lvl
	return o.logger(w)
}

// nameValue binds a flag to a typed name (a compute.Activation, Task,
// Role or ResidualKind): a string flag whose value keeps its type.
type nameValue[S ~string] struct{ p *S }

func (v nameValue[S]) String() string {
	if v.p == nil {
		return ""
	}
	return string(*v.p)
}
func (v nameValue[S]) Set(s string) error { *v.p = S(s); return nil }
func (v nameValue[S]) Type() string       { return "string" }

// nameVar defines a string flag bound to the typed name *p, its current
// value the default.
func nameVar[S ~string](fs *flagSet, p *S, name, usage string) {
	fs.Var(nameValue[S]{p}, name, usage)
}

// configChoice is what a command's config comes from: --config FILE or
// --demo.
type configChoice struct {
	config string
	demo   bool
}

// prescan reads --config and --demo from args before the command binds
// its other flags to the config they choose, so that those flags, given,
// override the file. Every other flag and any error is left to the
// command's own parse.
func prescan(args []string) configChoice {
	var c configChoice
	fs := pflag.NewFlagSet("prescan", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	fs.ParseErrorsAllowlist.UnknownFlags = true
	fs.StringVar(&c.config, "config", "", "")
	fs.BoolVar(&c.demo, "demo", false, "")
	_ = fs.Parse(args)
	return c
}
