package cli_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"testing"

	"github.com/strata-ml/strata/internal/testbin"
)

// strataBin is the binary the CLI is tested through, as a black box
// (internal/testbin builds it once for every package's tests).
var strataBin string

func TestMain(m *testing.M) {
	code := testbin.Main(m, &strataBin)
	if fixtureDir != "" {
		os.RemoveAll(fixtureDir)
	}
	os.Exit(code)
}

// result is what one run of the binary produced.
type result struct {
	code           int
	stdout, stderr string
}

// run runs strata with args and returns its exit code and output.
func run(t *testing.T, args ...string) result {
	t.Helper()
	cmd := exec.Command(strataBin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run strata %v: %v", args, err)
	}
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}
