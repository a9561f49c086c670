package cli

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/strata-ml/strata/internal/inputerr"
	"github.com/strata-ml/strata/stages"
	"github.com/strata-ml/strata/validation"
)

// stageConfigs are the configs whose fields the stages' errors name, by
// the command (and plugin stage) of the same name.
var stageConfigs = map[string]any{
	"convert": stages.ConvertConfig{}, "finetune": stages.FinetuneConfig{}, "validate": validation.Config{},
	"report": stages.ReportConfig{}, "export": stages.ExportConfig{}, "merge": stages.MergeConfig{},
	"pilot": stages.PilotConfig{}, "sweep": stages.SweepConfig{},
}

// TestFieldErrorsNameFlags reads every inputerr.Fieldf and Hintf call of
// the stages: each field a message names is a JSON key of its stage's
// config (what the plugin prints) and the CLI command of that stage has
// the flag nameFields maps it to. A message of no stage ("") names a
// field some command has.
func TestFieldErrorsNameFlags(t *testing.T) {
	calls := fieldCalls(t, "../stages", "../validation")
	if len(calls) < 40 {
		t.Fatalf("found %d Fieldf calls; the scan is broken", len(calls))
	}
	usages := map[string]string{}
	for name := range stageConfigs {
		usages[name] = lookup(name, env{stdout: io.Discard, stderr: io.Discard}).Usage()
	}
	for _, c := range calls {
		for _, key := range c.keys {
			stage := c.stage
			var found bool
			for name, cfg := range stageConfigs {
				if (stage == "" || stage == name) && jsonKeys(reflect.TypeOf(cfg))[key] {
					flag := "--" + strings.NewReplacer("_", "-", ".", "-").Replace(key)
					if regexp.MustCompile(regexp.QuoteMeta(flag) + `[ \[]`).MatchString(usages[name]) {
						found = true
					} else if stage != "" {
						t.Errorf("%s: %s names %s, which strata %s has no %s for", c.pos, stage, key, name, flag)
						found = true
					}
				}
			}
			if !found {
				t.Errorf("%s: %q names %q, a key of no stage config with a flag", c.pos, stage, key)
			}
		}
	}
}

// TestNameFields: the CLI names a field by its flag, through the
// wrappers around the error, and leaves a key without a flag alone.
func TestNameFields(t *testing.T) {
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	fs.Int("batch-size", 1, "")
	fs.Int("baseline-epochs", 1, "")
	err := wrapf("pilot: baseline stage: %w", fieldf("finetune", "{batch_size} %d and {baseline.epochs} and {other}", 0))
	want := "pilot: baseline stage: finetune: --batch-size 0 and --baseline-epochs and other"
	if got := nameFields(err, fs); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

type fieldCall struct {
	pos   string
	stage string
	keys  []string
}

var fieldRef = regexp.MustCompile(`\{([a-z][a-z0-9_.]*)\}`)

// fieldCalls returns every inputerr.Fieldf and Hintf call in the
// non-test Go files of dirs whose stage and format are literals.
func fieldCalls(t *testing.T, dirs ...string) []fieldCall {
	t.Helper()
	var out []fieldCall
	fset := token.NewFileSet()
	for _, dir := range dirs {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range files {
			if strings.HasSuffix(name, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(fset, name, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			ast.Inspect(f, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok || len(call.Args) < 2 {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if !ok || (sel.Sel.Name != "Fieldf" && sel.Sel.Name != "Hintf") {
					return true
				}
				stage, ok1 := stringLit(call.Args[0])
				format, ok2 := stringLit(call.Args[1])
				if !ok1 || !ok2 {
					return true // a format built at run time: checked by its callers' tests
				}
				c := fieldCall{pos: fset.Position(call.Pos()).String(), stage: stage}
				for _, m := range fieldRef.FindAllStringSubmatch(format, -1) {
					c.keys = append(c.keys, m[1])
				}
				out = append(out, c)
				return true
			})
		}
	}
	return out
}

func stringLit(e ast.Expr) (string, bool) {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(lit.Value)
	return s, err == nil
}

// jsonKeys returns the JSON keys of struct type t, descending into
// embedded structs and, by "key.sub", into struct fields.
func jsonKeys(t reflect.Type) map[string]bool {
	keys := map[string]bool{}
	for _, f := range reflect.VisibleFields(t) {
		if !f.IsExported() || f.Anonymous {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || name == "" {
			continue
		}
		keys[name] = true
		if f.Type.Kind() == reflect.Struct {
			for sub := range jsonKeys(f.Type) {
				keys[name+"."+sub] = true
			}
		}
	}
	return keys
}

func wrapf(format string, err error) error { return fmt.Errorf(format, err) }

func fieldf(stage, format string, args ...any) error { return inputerr.Fieldf(stage, format, args...) }
