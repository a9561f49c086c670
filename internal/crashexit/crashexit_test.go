package crashexit

import (
	"errors"
	"os"
	"os/exec"
	"runtime/debug"
	"strings"
	"syscall"
	"testing"
)

// crashEnv makes the test binary crash after Setup, in the way it names.
const crashEnv = "STRATA_TEST_CRASH"

func TestMain(m *testing.M) {
	switch os.Getenv(crashEnv) {
	case "":
		os.Exit(m.Run())
	case "panic":
		Setup()
		done := make(chan bool)
		go func() { panic("a bug") }() // not the main goroutine: nothing recovers it
		<-done
	case "fatal":
		Setup()
		debug.SetMaxStack(1 << 16)
		var recurse func(n int) int
		recurse = func(n int) int { return recurse(n+1) + 1 }
		recurse(0) // fatal error: stack overflow, which no recover catches
	}
	os.Exit(0)
}

// TestCrashIsNotExitTwo: a panic and a fatal runtime error end by SIGABRT
// with their stack trace, never with the bad-input code 2.
func TestCrashIsNotExitTwo(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"panic", "fatal"} {
		t.Run(kind, func(t *testing.T) {
			cmd := exec.Command(self, "-test.run=^$")
			cmd.Env = append(os.Environ(), crashEnv+"="+kind)
			cmd.Env = slicesWithout(cmd.Env, "GOTRACEBACK=")
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) {
				t.Fatalf("got %v, want a crash", err)
			}
			ws := ee.Sys().(syscall.WaitStatus)
			if !ws.Signaled() || ws.Signal() != syscall.SIGABRT || ee.ExitCode() == 2 {
				t.Errorf("ended with %v (exit code %d), want SIGABRT", ws, ee.ExitCode())
			}
			if want := map[string]string{"panic": "panic: a bug", "fatal": "stack overflow"}[kind]; !strings.Contains(string(out), want) {
				t.Errorf("stderr does not show %q:\n%.2000s", want, out)
			}
		})
	}
}

// slicesWithout returns env without the entries starting with prefix.
func slicesWithout(env []string, prefix string) []string {
	var out []string
	for _, e := range env {
		if !strings.HasPrefix(e, prefix) {
			out = append(out, e)
		}
	}
	return out
}
