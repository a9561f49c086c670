package host_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/strata-ml/strata/internal/datasets"
	"github.com/strata-ml/strata/internal/testbin"
	"github.com/strata-ml/strata/plugin/host"
)

// These tests run the real binary as a plugin through the SDK: no mocks.

// strataBin is the strata binary (internal/testbin's: with -race when
// the tests run with -race, so the plugin process is checked too).
var strataBin string

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(helperHost())
	}
	os.Exit(testbin.Main(m, &strataBin))
}

// syncBuffer collects the plugin's log lines, shown when a test fails.
type syncBuffer = testbin.Buffer

// open starts the plugin with a private work directory, closed when the
// test ends.
func open(t *testing.T) (*host.Client, string) {
	t.Helper()
	work := t.TempDir()
	logs := &syncBuffer{}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := host.Open(ctx, strataBin, host.WithWorkDir(work),
		host.WithLogger(hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Debug})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		if t.Failed() {
			t.Logf("plugin log:\n%s", logs.String())
		}
	})
	return c, work
}

// alive reports whether process pid exists and is not a zombie.
func alive(pid int) bool {
	if pid <= 0 || syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return !errors.Is(err, os.ErrNotExist)
	}
	// pid (comm) STATE ...; comm may hold spaces and parentheses.
	s := string(stat)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}

// waitGone waits up to d for process pid to be gone.
func waitGone(t *testing.T, pid int, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("plugin process %d still alive after %v", pid, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runDirs returns the run directories left in a work directory.
func runDirs(t *testing.T, work string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(work, "strata-run-*"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestNoCookie runs the binary by hand: it says what it is for, writes
// nothing to stdout and exits 2.
func TestNoCookie(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"bare", []string{"plugin"}},
		{"with flags", []string{"plugin", "--work-dir", t.TempDir()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(strataBin, tt.args...)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			cmd.Env = os.Environ() // no STRATA_PLUGIN cookie
			err := cmd.Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 2 {
				t.Fatalf("got %v, want exit status 2", err)
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout: got %q, want nothing", stdout.String())
			}
			for _, want := range []string{"started by that program", "host.Open", "strata convert"} {
				if !strings.Contains(stderr.String(), want) {
					t.Errorf("stderr does not say %q:\n%s", want, stderr.String())
				}
			}
		})
	}
}

// helperEnv makes the test binary a host that installs the SDK's signal
// handler, opens the plugin, prints the plugin's pid and waits to be
// signalled (TestHostSignal).
const helperEnv = "STRATA_TEST_HOST_HELPER"

func helperHost() int {
	host.HandleSignals()
	opts := []host.Option{host.WithLogger(hclog.New(&hclog.LoggerOptions{Output: io.Discard}))}
	work := os.Getenv(helperWorkEnv)
	if work != "" {
		opts = append(opts, host.WithWorkDir(work))
	}
	c, err := host.Open(context.Background(), os.Getenv(helperEnv), opts...)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if work == "" {
		fmt.Println(c.Pid())
		select {} // until a signal ends the process
	}
	// With a work directory: a long finetune, the pid printed once it
	// trains (its run directory holds the input copy and, soon, a
	// checkpoint).
	ds, err := datasets.Digits()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var once sync.Once
	_, err = c.Run(context.Background(), "finetune",
		map[string]any{"init": "mlp:64-256-256-10", "epochs": 100000, "seed": 1, "checkpoint_every": 1},
		host.Inputs{"train": host.Dataset(ds)}, func(e host.Event) {
			if e.Step > 2 {
				once.Do(func() { fmt.Println(c.Pid()) })
			}
		})
	fmt.Fprintln(os.Stderr, err)
	select {}
}

// helperWorkEnv gives the helper host a work directory and a run.
const helperWorkEnv = "STRATA_TEST_HOST_WORK"

// TestHostSignal: a host that gets SIGTERM kills its plugin processes
// (the handler HandleSignals installs), and a plugin whose host was
// SIGKILLed (no handler runs) stops by itself.
func TestHostSignal(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		t.Run(sig.String(), func(t *testing.T) {
			waitGone(t, startHelper(t, sig), 5*time.Second)
		})
	}
}

// TestHostDiesMidRun: whether its host is terminated (its handler kills
// the plugin) or killed (the plugin sees it gone), a plugin in the middle
// of a run leaves no run directory behind: neither the input copy nor
// the checkpoint.
func TestHostDiesMidRun(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		t.Run(sig.String(), func(t *testing.T) {
			work := t.TempDir()
			pid := startHelper(t, sig, helperWorkEnv+"="+work)
			if len(runDirs(t, work)) == 0 {
				t.Fatal("no run directory while the run trains")
			}
			waitGone(t, pid, 10*time.Second)
			if left := runDirs(t, work); len(left) > 0 {
				t.Errorf("the plugin left %v", left)
			}
		})
	}
}

// TestStaleRunDirs: the run directory of a plugin that was killed (no
// handler runs) is removed by the next plugin that serves from the same
// work directory; a live run's is not.
func TestStaleRunDirs(t *testing.T) {
	c, work := open(t)
	cfg, inputs := longFinetune(t)
	var once sync.Once
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Run(context.Background(), "finetune", cfg, inputs, func(e host.Event) {
			if e.Step > 0 {
				once.Do(func() { syscall.Kill(c.Pid(), syscall.SIGKILL) })
			}
		})
	}()
	<-done
	waitGone(t, c.Pid(), 5*time.Second)
	stale := runDirs(t, work)
	if len(stale) == 0 {
		t.Fatal("a killed plugin left no run directory: nothing to test")
	}
	live, err := host.Open(context.Background(), strataBin, host.WithWorkDir(work),
		host.WithLogger(hclog.New(&hclog.LoggerOptions{Output: io.Discard})))
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	if _, err := live.Describe(context.Background()); err != nil {
		t.Fatal(err)
	}
	if left := runDirs(t, work); len(left) > 0 {
		t.Errorf("the next plugin left the stale %v", left)
	}
}

// startHelper starts the helper host with env, waits for the plugin pid
// it prints, signals the host with sig and returns the plugin's pid.
func startHelper(t *testing.T, sig syscall.Signal, env ...string) int {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "-test.run=^$")
	cmd.Env = append(append(os.Environ(), helperEnv+"="+strataBin), env...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line := make([]byte, 32)
	n, _ := out.Read(line)
	pid, err := strconv.Atoi(strings.TrimSpace(string(line[:n])))
	if err != nil || !alive(pid) {
		t.Fatalf("helper host printed %q (%v), want a live plugin pid", line[:n], err)
	}
	if err := cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	return pid
}

// TestOpenLeavesSignalsAlone: Open installs no signal handler (the host
// owns its process). This process catches SIGINT itself; were a handler of
// the SDK's installed too, it would kill the plugin.
func TestOpenLeavesSignalsAlone(t *testing.T) {
	c, _ := open(t)
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt)
	defer signal.Stop(ch)
	if err := syscall.Kill(os.Getpid(), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("SIGINT did not arrive")
	}
	time.Sleep(200 * time.Millisecond) // what a handler of the SDK's would need to kill
	if !alive(c.Pid()) {
		t.Fatal("the plugin died on the host's SIGINT: Open installed a handler")
	}
	if _, err := c.Describe(context.Background()); err != nil {
		t.Errorf("the plugin does not answer after the host's SIGINT: %v", err)
	}
}
