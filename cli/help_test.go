package cli_test

import (
	"regexp"
	"strings"
	"testing"
)

// TestHelpShowsDefaults: `strata help COMMAND` lists every flag of every
// command with its default, the zero ones included, so that nobody has
// to read the source to know what a flag left out does.
func TestHelpShowsDefaults(t *testing.T) {
	flagLine := regexp.MustCompile(`^\s+(-\w, )?--[a-z]`)
	for _, cmd := range []string{"convert", "finetune", "validate", "report", "pilot", "sweep", "merge", "inspect", "export", "mlflow", "plugin"} {
		r := run(t, "help", cmd)
		if r.code != 0 {
			t.Fatalf("help %s: exit %d\n%s", cmd, r.code, r.stderr)
		}
		flags := 0
		for _, line := range strings.Split(r.stdout, "\n") {
			if !flagLine.MatchString(line) {
				continue
			}
			flags++
			if !strings.Contains(line, "(default") {
				t.Errorf("%s: %s: no default", cmd, strings.TrimSpace(line))
			}
		}
		if flags == 0 {
			t.Errorf("%s: no flag lines in its help", cmd)
		}
	}
}
