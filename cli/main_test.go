package cli_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// strataBin is the binary built once by TestMain; the CLI is tested as a
// black box through it.
var strataBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "strata-cli-test-")
	if err != nil {
		panic(err)
	}
	strataBin = filepath.Join(dir, "strata")
	if runtime.GOOS == "windows" {
		strataBin += ".exe"
	}
	build := exec.Command("go", "build", "-o", strataBin, "..")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		panic("building strata: " + err.Error())
	}
	code := m.Run()
	os.RemoveAll(dir)
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
