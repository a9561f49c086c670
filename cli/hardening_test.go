package cli_test

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/internal/dirlock"
	"github.com/strata-ml/strata/internal/testbin"
)

// These tests hold strata to its contract with hostile input: bad input
// exits 2 at once with a strata: line, nothing is left half-written, and
// a signal stops any command within 2 s.

// fixtureDir holds the outputs of one `strata pilot --demo` (every kind
// of file the commands read), made once for the package's tests and
// removed by TestMain.
var (
	fixtureDir  string
	fixtureOnce sync.Once
	fixtureErr  error
)

// demo returns the work directory of a finished pilot --demo.
func demo(t *testing.T) string {
	t.Helper()
	fixtureOnce.Do(func() {
		if fixtureDir, fixtureErr = os.MkdirTemp("", "strata-cli-fixtures-"); fixtureErr != nil {
			return
		}
		cmd := exec.Command(strataBin, "pilot", "--demo", "--workdir", filepath.Join(fixtureDir, "demo"))
		if out, err := cmd.CombinedOutput(); err != nil {
			fixtureErr = fmt.Errorf("pilot --demo: %v\n%s", err, out)
		}
	})
	if fixtureErr != nil {
		t.Fatal(fixtureErr)
	}
	return filepath.Join(fixtureDir, "demo")
}

// timed runs strata and returns its result with the time it took.
func timed(t *testing.T, args ...string) (result, time.Duration) {
	t.Helper()
	start := time.Now()
	r := run(t, args...)
	return r, time.Since(start)
}

// special makes in dir a path of the kind named: a symlink to /dev/zero
// or /dev/urandom, a named pipe nobody writes, an empty directory.
func special(t *testing.T, dir, kind, name string) string {
	t.Helper()
	path := filepath.Join(dir, kind+"-"+name)
	var err error
	switch kind {
	case "zero", "urandom":
		err = os.Symlink("/dev/"+kind, path)
	case "fifo":
		err = syscall.Mkfifo(path, 0o644)
	case "dir":
		err = os.Mkdir(path, 0o755)
	}
	if err != nil {
		t.Fatal(err)
	}
	return path
}

var specialKinds = []string{"zero", "urandom", "fifo", "dir"}

// TestSpecialInputs gives every input of every command, in turn, a
// symlink to /dev/zero or /dev/urandom, a named pipe and a directory, the
// other inputs valid: each exits 2 within a second naming the input, and
// leaves no output. (Read to EOF, the first two took 400 MB/s for ever
// and ignored SIGTERM; a pipe's open blocked.)
func TestSpecialInputs(t *testing.T) {
	d := demo(t)
	base, cand, ctrl := filepath.Join(d, "baseline", "model.arrow"), filepath.Join(d, "finetune", "model.arrow"), filepath.Join(d, "control", "model.arrow")
	conv, train, test := filepath.Join(d, "convert", "model.arrow"), filepath.Join(d, "data", "train.arrow"), filepath.Join(d, "data", "test.arrow")
	val, rep := filepath.Join(d, "validate", "validation.json"), filepath.Join(d, "report", "report.json")
	dir := t.TempDir()
	logits := filepath.Join(dir, "logits.arrow")
	ds, err := arrowio.ReadDataset(test)
	if err != nil {
		t.Fatal(err)
	}
	ds.X, ds.D, ds.FeatureNames = make([]float64, ds.N*10), 10, nil
	if err := arrowio.WriteDataset(logits, ds); err != nil {
		t.Fatal(err)
	}
	// A config file naming bad as key.
	config := func(kind, key, bad string) string {
		src := "data: digits\nbaseline: {init: 'mlp:64-8-10', epochs: 1}\nfinetune: {epochs: 1}\n"
		if key != "" {
			src = fmt.Sprintf("train: %s\ntest: %s\nbaseline: {init: 'mlp:64-8-10', epochs: 1}\nfinetune: {epochs: 1}\n%s: %s\n", train, test, key, bad)
			if key == "train" || key == "test" {
				src = strings.Replace(src, key+": "+map[string]string{"train": train, "test": test}[key]+"\n", "", 1)
			}
		}
		src += "candidates: [{structure: monarch}]\n"
		path := filepath.Join(dir, fmt.Sprintf("%s-%s.yaml", kind, key))
		if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	shard := func(bad string) string {
		s := filepath.Join(dir, "shard-"+filepath.Base(bad))
		if err := os.MkdirAll(s, 0o755); err != nil {
			t.Fatal(err)
		}
		os.Remove(filepath.Join(s, "convert.json"))
		if err := os.Symlink(bad, filepath.Join(s, "convert.json")); err != nil {
			t.Fatal(err)
		}
		return s
	}
	tests := []struct {
		input string
		args  func(kind, bad, out string) []string
	}{
		{"convert --model", func(_, x, out string) []string { return []string{"convert", "--model", x, "--out", out} }},
		{"finetune --model", func(_, x, out string) []string {
			return []string{"finetune", "--model", x, "--train", train, "--out", out}
		}},
		{"finetune --train", func(_, x, out string) []string {
			return []string{"finetune", "--model", conv, "--train", x, "--out", out}
		}},
		{"finetune --valid", func(_, x, out string) []string {
			return []string{"finetune", "--model", conv, "--train", train, "--valid", x, "--valid-fraction", "0", "--out", out}
		}},
		{"validate --baseline", func(_, x, out string) []string {
			return []string{"validate", "--baseline", x, "--candidate", cand, "--data", test, "--out", out}
		}},
		{"validate --candidate", func(_, x, out string) []string {
			return []string{"validate", "--baseline", base, "--candidate", x, "--data", test, "--out", out}
		}},
		{"validate --control", func(_, x, out string) []string {
			return []string{"validate", "--baseline", base, "--candidate", cand, "--control", x, "--data", test, "--out", out}
		}},
		{"validate --data", func(_, x, out string) []string {
			return []string{"validate", "--baseline", base, "--candidate", cand, "--data", x, "--out", out}
		}},
		{"validate --train-log", func(_, x, out string) []string {
			return []string{"validate", "--baseline", base, "--candidate", cand, "--data", test, "--train-log", x, "--out", out}
		}},
		{"validate --baseline-train-log", func(_, x, out string) []string {
			return []string{"validate", "--baseline", base, "--candidate", cand, "--data", test, "--baseline-train-log", x, "--out", out}
		}},
		{"validate --control-train-log", func(_, x, out string) []string {
			return []string{"validate", "--baseline", base, "--candidate", cand, "--control", ctrl, "--data", test, "--control-train-log", x, "--out", out}
		}},
		{"validate --lr-sweep", func(_, x, out string) []string {
			return []string{"validate", "--baseline", base, "--candidate", cand, "--data", test, "--lr-sweep", x, "--out", out}
		}},
		{"validate --baseline-logits", func(_, x, out string) []string {
			return []string{"validate", "--baseline-logits", x, "--candidate-logits", logits, "--data", test, "--out", out}
		}},
		{"validate --candidate-logits", func(_, x, out string) []string {
			return []string{"validate", "--baseline-logits", logits, "--candidate-logits", x, "--data", test, "--out", out}
		}},
		{"validate --control-logits", func(_, x, out string) []string {
			return []string{"validate", "--baseline-logits", logits, "--candidate-logits", logits, "--control-logits", x, "--data", test, "--out", out}
		}},
		{"report --validation", func(_, x, out string) []string { return []string{"report", "--validation", x, "--out", out} }},
		{"report --select-best", func(_, x, out string) []string { return []string{"report", "--select-best", val, x, "--out", out} }},
		{"report --policy", func(_, x, out string) []string {
			return []string{"report", "--validation", val, "--policy", x, "--out", out}
		}},
		{"report --train-log", func(_, x, out string) []string {
			return []string{"report", "--validation", val, "--train-log", x, "--out", out}
		}},
		{"report --baseline-train-log", func(_, x, out string) []string {
			return []string{"report", "--validation", val, "--baseline-train-log", x, "--out", out}
		}},
		{"report --control-train-log", func(_, x, out string) []string {
			return []string{"report", "--validation", val, "--control-train-log", x, "--out", out}
		}},
		{"pilot --config", func(_, x, out string) []string { return []string{"pilot", "--config", x, "--workdir", out} }},
		{"pilot config train", func(k, x, out string) []string {
			return []string{"pilot", "--config", config(k, "train", x), "--workdir", out}
		}},
		{"pilot config test", func(k, x, out string) []string {
			return []string{"pilot", "--config", config(k, "test", x), "--workdir", out}
		}},
		{"pilot config valid", func(k, x, out string) []string {
			return []string{"pilot", "--config", config(k, "valid", x), "--workdir", out}
		}},
		{"pilot config model", func(k, x, out string) []string {
			return []string{"pilot", "--config", config(k, "model", x), "--workdir", out}
		}},
		{"pilot config policy", func(k, x, out string) []string {
			return []string{"pilot", "--config", config(k, "policy", x), "--workdir", out}
		}},
		{"sweep --config", func(_, x, out string) []string { return []string{"sweep", "--config", x, "--out", out} }},
		{"sweep --candidates @FILE", func(k, x, out string) []string {
			return []string{"sweep", "--config", config(k, "", ""), "--candidates", "@" + x, "--out", out}
		}},
		{"sweep config train", func(k, x, out string) []string {
			return []string{"sweep", "--config", config(k, "train", x), "--out", out}
		}},
		{"sweep config model", func(k, x, out string) []string {
			return []string{"sweep", "--config", config(k, "model", x), "--out", out}
		}},
		{"merge SHARD/convert.json", func(_, x, out string) []string { return []string{"merge", "--out", out, shard(x)} }},
		{"inspect FILE", func(_, x, _ string) []string { return []string{"inspect", x} }},
		{"export --model", func(_, x, out string) []string {
			return []string{"export", "--model", x, "--out", out + ".safetensors"}
		}},
		{"mlflow --report", func(_, x, _ string) []string {
			return []string{"mlflow", "--report", x, "--tracking-uri", "http://127.0.0.1:9"}
		}},
		{"mlflow --model", func(_, x, _ string) []string {
			return []string{"mlflow", "--report", rep, "--model", x, "--tracking-uri", "http://127.0.0.1:9"}
		}},
	}
	for _, tt := range tests {
		for _, kind := range specialKinds {
			t.Run(tt.input+"/"+kind, func(t *testing.T) {
				dir := t.TempDir()
				ext := ".arrow"
				if strings.Contains(tt.input, "config") || strings.Contains(tt.input, "policy") {
					ext = ".yaml"
				} else if strings.Contains(tt.input, "validation") || strings.Contains(tt.input, "report") || strings.Contains(tt.input, "sweep") {
					ext = ".json"
				}
				bad := special(t, dir, kind, "input"+ext)
				out := filepath.Join(dir, "out")
				r, took := timed(t, tt.args(kind, bad, out)...)
				if r.code != 2 || !strings.Contains(r.stderr, "strata: ") {
					t.Fatalf("exit %d, want 2 with a strata: line\n%s", r.code, r.stderr)
				}
				if took > time.Second {
					t.Errorf("took %v, want at most 1s", took)
				}
				for _, o := range []string{out, out + ".safetensors"} {
					if _, err := os.Stat(o); err == nil {
						t.Errorf("bad input left %s", o)
					}
				}
			})
		}
	}
}

// TestSpecialOutputFiles gives the orchestrator files of report and
// pilot a device, a pipe with a reader, a directory and a missing
// directory: a device or pipe is written in place and stays what it is,
// /dev/full is a runtime error (exit 1, never the decision's code) that
// leaves no report, and a path no retry can write is exit 2 before any
// work.
func TestSpecialOutputFiles(t *testing.T) {
	d := demo(t)
	val := filepath.Join(d, "validate", "validation.json")
	flags := []string{"--decision-file", "--xcom-file", "--metrics-file"}
	tests := []struct {
		name   string
		target func(t *testing.T, dir string) (path string, got func() string)
		code   int
		want   string // in what the target received
	}{
		{"/dev/null", func(*testing.T, string) (string, func() string) { return "/dev/null", nil }, 0, ""},
		{"/dev/stdout", func(*testing.T, string) (string, func() string) { return "/dev/stdout", nil }, 0, "go"},
		{"a pipe with a reader", func(t *testing.T, dir string) (string, func() string) {
			p := special(t, dir, "fifo", "out")
			got := make(chan string, 1)
			go func() {
				f, err := os.Open(p) // blocks until strata opens it
				if err != nil {
					got <- err.Error()
					return
				}
				var b bytes.Buffer
				b.ReadFrom(f)
				f.Close()
				got <- b.String()
			}()
			return p, func() string {
				select {
				case s := <-got:
					return s
				case <-time.After(10 * time.Second):
					return "(nothing)"
				}
			}
		}, 0, "go"},
		{"/dev/full", func(*testing.T, string) (string, func() string) { return "/dev/full", nil }, 1, ""},
		{"a directory", func(t *testing.T, dir string) (string, func() string) { return special(t, dir, "dir", "out"), nil }, 2, ""},
		{"a missing directory", func(_ *testing.T, dir string) (string, func() string) {
			return filepath.Join(dir, "missing", "decision"), nil
		}, 2, ""},
	}
	for _, flag := range flags {
		for _, tt := range tests {
			t.Run("report "+flag+"/"+tt.name, func(t *testing.T) {
				dir := t.TempDir()
				path, got := tt.target(t, dir)
				out := filepath.Join(dir, "report")
				r := run(t, "report", "--validation", val, "--out", out, flag, path)
				if r.code != tt.code {
					t.Fatalf("exit %d, want %d\n%s", r.code, tt.code, r.stderr)
				}
				_, err := os.Stat(filepath.Join(out, "report.json"))
				if (tt.code == 0) != (err == nil) {
					t.Errorf("report.json: %v after exit %d", err, r.code)
				}
				received := r.stdout
				if got != nil {
					received = got()
				}
				if tt.want != "" && !strings.Contains(received, tt.want) {
					t.Errorf("the target received %q, want it to contain %q", received, tt.want)
				}
				if st, err := os.Lstat(path); err == nil && st.Mode().IsRegular() {
					t.Errorf("%s is now a regular file", path)
				}
			})
		}
	}
	for _, tt := range tests {
		if tt.code != 2 {
			continue // the work itself is report's, tested above
		}
		t.Run("pilot --decision-file/"+tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path, _ := tt.target(t, dir)
			work := filepath.Join(dir, "work")
			r, took := timed(t, "pilot", "--demo", "--workdir", work, "--decision-file", path)
			if r.code != 2 || took > time.Second {
				t.Fatalf("exit %d after %v, want 2 before any work\n%s", r.code, took, r.stderr)
			}
			if _, err := os.Stat(work); err == nil {
				t.Errorf("left %s", work)
			}
		})
	}
}

// TestOutputDirectories: an --out that is a file or lies under one, and
// an export --out that is a directory, exit 2 before any work, for every
// command that writes; a directory another run holds is refused with
// exit 2; a run that fails leaves no directory it created.
func TestOutputDirectories(t *testing.T) {
	d := demo(t)
	conv, train, test := filepath.Join(d, "convert", "model.arrow"), filepath.Join(d, "data", "train.arrow"), filepath.Join(d, "data", "test.arrow")
	base, cand := filepath.Join(d, "baseline", "model.arrow"), filepath.Join(d, "finetune", "model.arrow")
	val := filepath.Join(d, "validate", "validation.json")
	commands := []struct {
		name string
		args func(out string) []string
	}{
		{"convert", func(o string) []string { return []string{"convert", "--model", base, "--out", o} }},
		{"finetune", func(o string) []string { return []string{"finetune", "--model", conv, "--train", train, "--out", o} }},
		{"validate", func(o string) []string {
			return []string{"validate", "--baseline", base, "--candidate", cand, "--data", test, "--out", o}
		}},
		{"report", func(o string) []string { return []string{"report", "--validation", val, "--out", o} }},
		{"merge", func(o string) []string { return []string{"merge", "--out", o, filepath.Join(d, "convert")} }},
		{"pilot", func(o string) []string { return []string{"pilot", "--demo", "--workdir", o} }},
		{"sweep", func(o string) []string {
			return []string{"sweep", "--data", "iris", "--candidate", "structure=monarch", "--out", o}
		}},
		{"export", func(o string) []string { return []string{"export", "--model", cand, "--out", o} }},
	}
	for _, c := range commands {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			file := filepath.Join(dir, "file")
			if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
			targets := []struct {
				name, out, want string
			}{
				{"a file", file, "is a file"},
				{"under a file", filepath.Join(file, "out"), "not a directory"},
			}
			if c.name == "export" {
				targets = []struct{ name, out, want string }{{"a directory", dir, "is a directory"}, {"under a file", filepath.Join(file, "m.safetensors"), "is a file, not a directory"}}
			}
			for _, tg := range targets {
				r, took := timed(t, c.args(tg.out)...)
				if r.code != 2 || !strings.Contains(r.stderr, tg.want) || took > time.Second {
					t.Errorf("%s: exit %d after %v, want 2 at once saying %q\n%s", tg.name, r.code, took, tg.want, r.stderr)
				}
			}
			if c.name == "export" {
				return
			}
			held := filepath.Join(dir, "held")
			unlock := holdLock(t, held)
			r := run(t, c.args(held)...)
			unlock()
			if r.code != 2 || !strings.Contains(r.stderr, "another run is writing into it") {
				t.Errorf("a held directory: exit %d\n%s", r.code, r.stderr)
			}
		})
	}
	// A run that fails after creating its directory leaves none.
	dir := t.TempDir()
	out := filepath.Join(dir, "a", "b", "out")
	if r := run(t, "finetune", "--model", conv, "--train", filepath.Join(dir, "missing.csv"), "--out", out); r.code != 2 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	if got := entries(t, dir); len(got) != 0 {
		t.Errorf("a failed run left %v", got)
	}
}

// holdLock holds dir's lock as another run of strata would.
func holdLock(t *testing.T, dir string) func() {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	l, err := dirlock.Lock(dir)
	if err != nil {
		t.Fatal(err)
	}
	return l.Unlock
}

// TestSIGTERM sends SIGTERM to every command that works for a while, at
// several points of its run: it exits within 2 s, with 1 (or 0 when it
// had finished), and leaves nothing partial. (Convert's time inside one
// layer's numerics is not covered here: this test's layers are small.)
func TestSIGTERM(t *testing.T) {
	d := demo(t)
	dir := t.TempDir()
	digits := writeData(t, "digits", dir, "digits.arrow")
	big := bigModel(t, dir)
	base, cand, ctrl := filepath.Join(d, "baseline", "model.arrow"), filepath.Join(d, "finetune", "model.arrow"), filepath.Join(d, "control", "model.arrow")
	commands := []struct {
		name string
		args func(out string) []string
	}{
		{"finetune", func(o string) []string {
			return []string{"finetune", "--init", "mlp:64-256-256-10", "--train", digits, "--epochs", "200", "--out", o}
		}},
		{"convert", func(o string) []string {
			return []string{"convert", "--model", big, "--structure", "auto", "--target-error", "0.5", "--out", o}
		}},
		{"validate", func(o string) []string {
			return []string{"validate", "--baseline", base, "--candidate", cand, "--control", ctrl,
				"--data", filepath.Join(d, "data", "test.arrow"), "--bootstrap", "100000", "--out", o}
		}},
		{"validate timing", func(o string) []string {
			return []string{"validate", "--baseline", base, "--candidate", cand, "--data", filepath.Join(d, "data", "test.arrow"),
				"--bootstrap", "0", "--latency-runs", "10000", "--out", o}
		}},
		{"report", func(o string) []string {
			return []string{"report", "--validation", filepath.Join(d, "validate", "validation.json"), "--out", o}
		}},
		{"pilot", func(o string) []string { return []string{"pilot", "--demo", "--workdir", o} }},
		{"sweep", func(o string) []string {
			return []string{"sweep", "--data", "iris", "--init", "mlp:4-32-32-3", "--baseline-epochs", "200", "--epochs", "50",
				"--candidate", "structure=monarch,blocks=2", "--candidate", "structure=lowrank,rank=2", "--seeds", "0,1", "--out", o}
		}},
	}
	for _, c := range commands {
		for _, after := range []time.Duration{50 * time.Millisecond, 400 * time.Millisecond, 1500 * time.Millisecond} {
			t.Run(fmt.Sprintf("%s/after %v", c.name, after), func(t *testing.T) {
				out := filepath.Join(t.TempDir(), "out")
				r := terminate(t, after, c.args(out)...)
				// A signal that lands before main installs its handler
				// (the dynamic loader and package init take tens of
				// milliseconds on a loaded machine) ends the process by
				// SIGTERM's default action, before any work: prompt too.
				var ee *exec.ExitError
				if r.err != nil && (!errors.As(r.err, &ee) || (ee.ExitCode() != 1 && !killedByTERM(ee))) {
					t.Errorf("exit %v, want 1 (or 0 when done)\n%s", r.err, r.stderr)
				}
				nothingPartial(t, out)
			})
		}
	}
}

// killedByTERM reports whether the process ended by SIGTERM's default
// action.
func killedByTERM(ee *exec.ExitError) bool {
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGTERM
}

// terminated is how a run that terminate signalled ended.
type terminated struct {
	err error // cmd.Wait's
	// signalled is false when the run had ended before the signal;
	// before is its stderr at the signal.
	signalled bool
	before    string
	stderr    string
	took      time.Duration // from the signal to the exit
}

// terminate runs strata with args, sends it SIGTERM after the given time
// and waits for it to exit, failing the test when it still runs 2 s
// after the signal (the time is measured from the signal, so a loaded
// machine's slow start does not count).
func terminate(t *testing.T, after time.Duration, args ...string) terminated {
	t.Helper()
	cmd := exec.Command(strataBin, args...)
	var stderr testbin.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var r terminated
	select {
	case r.err = <-done: // finished before the signal
	case <-time.After(after):
		r.before = stderr.String()
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		r.signalled = true
		start := time.Now()
		select {
		case r.err = <-done:
			r.took = time.Since(start)
		case <-time.After(2 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Fatalf("still running 2s after SIGTERM\n%s", stderr.String())
		}
	}
	r.stderr = stderr.String()
	return r
}

// TestConvertSIGTERMInsideLayer sends SIGTERM to convert while it works
// inside one 2048 x 2048 layer (the monarch projection, the residual's
// randomized SVD, the exact condition numbers, each long one LAPACK call):
// it exits 1 within 2 s of the signal and leaves no output directory.
func TestConvertSIGTERMInsideLayer(t *testing.T) {
	const n = 2048
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(2048, 1))
	w := make([]float32, n*n)
	for i := range w {
		w[i] = float32(rng.NormFloat64() / n)
	}
	model := filepath.Join(dir, "layer.safetensors")
	if err := arrowio.WriteSafetensors(model, []arrowio.Tensor{{Name: "layer.weight", Shape: []int64{n, n}, Data: w}}, nil); err != nil {
		t.Fatal(err)
	}
	for _, after := range []time.Duration{time.Second, 3 * time.Second, 6 * time.Second} {
		t.Run(fmt.Sprintf("after %v", after), func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			r := terminate(t, after, "convert", "--model", model, "--out", out, "--residual-rank", "16")
			if !r.signalled || strings.Contains(r.before, "converted layer") {
				t.Fatalf("the layer was converted before the signal: the test needs a larger one\n%s", r.stderr)
			}
			var ee *exec.ExitError
			if !errors.As(r.err, &ee) || ee.ExitCode() != 1 {
				t.Errorf("exit %v, want 1\n%s", r.err, r.stderr)
			}
			t.Logf("exited %v after SIGTERM", r.took)
			if got := entries(t, filepath.Dir(out)); len(got) != 0 {
				t.Errorf("left %v", got)
			}
		})
	}
}

// nothingPartial fails when dir holds a temporary file, a staging
// directory or a lock, or a directory with an artifact but not the JSON
// summary a reader trusts it by.
func nothingPartial(t *testing.T, dir string) {
	t.Helper()
	artifacts := []string{"model.arrow", "model.dense.arrow", "model.dense.safetensors", "train_log.arrow", "report.html", "report.md", "sweep.md"}
	summaries := []string{"convert.json", "finetune.json", "validation.json", "report.json", "sweep.json"}
	filepath.WalkDir(dir, func(path string, e os.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		name := e.Name()
		if strings.Contains(name, ".tmp-") || strings.HasPrefix(name, ".staging-") || name == ".strata.lock" {
			t.Errorf("left %s", path)
		}
		if e.IsDir() && name == "checkpoint" {
			return filepath.SkipDir // complete or absent by its CURRENT file
		}
		if !e.IsDir() {
			return nil
		}
		names := entries(t, path)
		has := func(list []string) bool {
			for _, n := range names {
				for _, l := range list {
					if n == l {
						return true
					}
				}
			}
			return false
		}
		if has(artifacts) && !has(summaries) {
			t.Errorf("%s holds %v without its summary", path, names)
		}
		return nil
	})
}

// bigModel writes a model of many mid-sized layers, each converted in a
// fraction of a second, to dir.
func bigModel(t *testing.T, dir string) string {
	t.Helper()
	var ts []arrowio.Tensor
	for i := range 24 {
		w := make([]float32, 256*256)
		for j := range w {
			w[j] = float32((j*7919+i*104729)%1000)/1000 - 0.5
		}
		ts = append(ts, arrowio.Tensor{Name: fmt.Sprintf("layer%d.weight", i), Shape: []int64{256, 256}, Data: w})
	}
	path := filepath.Join(dir, "big.safetensors")
	if err := arrowio.WriteSafetensors(path, ts, nil); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestConfigCheckedFirst: pilot and sweep find every bad setting, of any
// stage, before any work (the baseline used to train first, for hours
// with a real one): exit 2 at once, the key and its line named, nothing
// written.
func TestConfigCheckedFirst(t *testing.T) {
	tests := []struct {
		name, setting, want string
	}{
		{"negative epochs", "baseline: {epochs: -2}", ":3: baseline.epochs -2: want at least 1"},
		{"negative lr", "finetune: {lr: -0.01}", ":3: finetune.lr -0.01: want a positive number"},
		{"zero batch", "finetune: {batch_size: 0}", ":3: finetune.batch_size 0: want at least 1"},
		{"unknown structure", "convert: {structure: spiral}", `:3: convert.structure "spiral": want auto or one of`},
		{"repeated noise levels", "validate: {noise: [0.1, 0.1]}", ":3: validate.noise [0.1 0.1]: want distinct positive levels"},
		{"init narrower than the data", "baseline: {init: 'mlp:5-8-10'}", ":3: baseline.init: mlp:5-8-10 takes 5 features, the data (digits) has 64"},
		{"init with too few classes", "baseline: {init: 'mlp:64-8-3'}", "label 3 is not a class index in [0, 3)"},
		{"bootstrap past the limit", "validate: {bootstrap: 2000000000}", ":3: validate.bootstrap 2000000000: over the limit of 100,000"},
		{"epochs overflow", "finetune: {epochs: 9223372036854775807}", ":3: finetune.epochs 9223372036854775807: over the limit"},
		{"epochs past the limit", "baseline: {epochs: 10000001}", ":3: baseline.epochs 10000001: over the limit of 10,000,000"},
		{"fraction for a whole number", "baseline: {epochs: 2.5}", `:3: baseline.epochs: want a whole number, got "2.5"`},
		{"a model too large to allocate", "baseline: {init: 'mlp:64-4000000000-10'}", "parameters: over the limit of 268,435,456"},
		{"unknown policy", "policy: nowhere.yaml", "nowhere.yaml"},
	}
	for _, cmd := range []string{"pilot", "sweep"} {
		for _, tt := range tests {
			t.Run(cmd+"/"+tt.name, func(t *testing.T) {
				dir := t.TempDir()
				src := "data: digits\nseed: 1\n" + tt.setting + "\n"
				if cmd == "sweep" {
					src += "candidates: [{structure: monarch}]\n"
				}
				config := filepath.Join(dir, "c.yaml")
				if err := os.WriteFile(config, []byte(src), 0o644); err != nil {
					t.Fatal(err)
				}
				out := filepath.Join(dir, "out")
				outFlag := map[string]string{"pilot": "--workdir", "sweep": "--out"}[cmd]
				r, took := timed(t, cmd, "--config", config, outFlag, out)
				if r.code != 2 || !strings.Contains(r.stderr, tt.want) || took > 2*time.Second {
					t.Fatalf("exit %d after %v, want 2 at once saying %q\n%s", r.code, took, tt.want, r.stderr)
				}
				if _, err := os.Stat(out); err == nil {
					t.Errorf("left %s: %v", out, entries(t, out))
				}
			})
		}
	}
}

// TestInputLimits: each bound of the limit table, exceeded through the
// command that reads the input, is exit 2 with a strata: line naming the
// bound, at once.
func TestInputLimits(t *testing.T) {
	d := demo(t)
	dir := t.TempDir()
	val := filepath.Join(d, "validate", "validation.json")
	write := func(name string, b []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	bigConfig := write("big.yaml", append([]byte("data: digits\n"), bytes.Repeat([]byte("# padding\n"), 110_000)...))
	rules := write("rules.yaml", append([]byte("version: 1\nrules:\n"), bytes.Repeat([]byte("  - {metric: loss, max_value: 1}\n"), 1001)...))
	bigJSON := write("cands.json", append([]byte("["), append(bytes.Repeat([]byte(" "), 1<<20), ']')...))
	longLine := write("long.csv", append([]byte("a,label\n"), bytes.Repeat([]byte("1"), 9<<20)...))
	tensors := write("many.safetensors", manyTensors(65537))
	levels := make([]string, 101)
	for i := range levels {
		levels[i] = fmt.Sprint(0.001 * float64(i+1))
	}
	noise101 := strings.Join(levels, ",")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"pilot config size", []string{"pilot", "--config", bigConfig, "--workdir", filepath.Join(dir, "w")}, "over the limit of 1 MiB for a config file"},
		{"sweep config size", []string{"sweep", "--config", bigConfig, "--out", filepath.Join(dir, "w")}, "over the limit of 1 MiB for a config file"},
		{"report policy size", []string{"report", "--validation", val, "--policy", bigConfig, "--out", filepath.Join(dir, "w")}, "over the limit of 1 MiB"},
		{"sweep --candidates @FILE size", []string{"sweep", "--data", "iris", "--candidates", "@" + bigJSON, "--out", filepath.Join(dir, "w")}, "over the limit of 1 MiB"},
		{"policy rules", []string{"report", "--validation", val, "--policy", rules, "--out", filepath.Join(dir, "w")}, "1001 rules: over the limit of 1,000"},
		{"finetune CSV line", []string{"finetune", "--init", "mlp:1-2", "--train", longLine, "--out", filepath.Join(dir, "w")}, "a CSV record longer than the limit of 8 MiB"},
		{"validate CSV line", []string{"validate", "--baseline-logits", longLine, "--candidate-logits", longLine, "--data", longLine, "--out", filepath.Join(dir, "w")}, "a CSV record longer than the limit of 8 MiB"},
		{"inspect tensors", []string{"inspect", tensors}, "more than 65,536 tensors"},
		{"convert tensors", []string{"convert", "--model", tensors, "--out", filepath.Join(dir, "w")}, "more than 65,536 tensors"},
		{"finetune --init size", []string{"finetune", "--init", "mlp:4-4000000000-3:relu", "--train", longLine, "--out", filepath.Join(dir, "w")}, "over the limit of 268,435,456 for a fresh model"},
		{"validate --bootstrap", []string{"validate", "--baseline", val, "--candidate", val, "--data", val, "--bootstrap", "2000000000", "--out", filepath.Join(dir, "w")}, "--bootstrap 2000000000: over the limit of 100,000"},
		{"validate --noise", []string{"validate", "--baseline", val, "--candidate", val, "--data", val, "--noise", noise101, "--out", filepath.Join(dir, "w")}, "--noise: 101 levels, over the limit of 100"},
		{"validate --robustness-draws", []string{"validate", "--baseline", val, "--candidate", val, "--data", val, "--robustness-draws", "2000000000", "--out", filepath.Join(dir, "w")}, "--robustness-draws 2000000000: over the limit of 100"},
		{"validate --latency-runs", []string{"validate", "--baseline", val, "--candidate", val, "--data", val, "--latency-runs", "2000000000", "--out", filepath.Join(dir, "w")}, "--latency-runs 2000000000 or --latency-warmup 5: over the limit of 10,000"},
		{"finetune --epochs", []string{"finetune", "--init", "mlp:1-2", "--train", longLine, "--epochs", "9223372036854775807", "--out", filepath.Join(dir, "w")}, "--epochs 9223372036854775807: over the limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, took := timed(t, tt.args...)
			if r.code != 2 || !strings.Contains(r.stderr, tt.want) || took > 2*time.Second {
				t.Errorf("exit %d after %v, want 2 at once saying %q\n%s", r.code, took, tt.want, r.stderr)
			}
			if _, err := os.Stat(filepath.Join(dir, "w")); err == nil {
				t.Errorf("left %s", filepath.Join(dir, "w"))
			}
		})
	}
}

// manyTensors is a safetensors file of n one-value tensors.
func manyTensors(n int) []byte {
	ts := make([]arrowio.Tensor, n)
	for i := range ts {
		ts[i] = arrowio.Tensor{Name: fmt.Sprintf("t%d", i), Shape: []int64{1}, Data: []float32{1}}
	}
	var b bytes.Buffer
	if err := arrowio.EncodeSafetensors(&b, ts, nil); err != nil {
		panic(err)
	}
	return b.Bytes()
}

// TestDataNotLostSilently: data that would lose rows or values without a
// word (a stream cut at a batch boundary, a Parquet file with a wrong
// magic, a value beyond float32) is exit 2 through every command that
// reads a data set, and the CSV pandas writes with encoding="utf-8-sig"
// and QUOTE_ALL reads.
func TestDataNotLostSilently(t *testing.T) {
	d := demo(t)
	dir := t.TempDir()
	test := filepath.Join(d, "data", "test.arrow")
	ds, err := arrowio.ReadDataset(test)
	if err != nil {
		t.Fatal(err)
	}
	stream := filepath.Join(dir, "full.arrows")
	if err := arrowio.WriteDataset(stream, ds); err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	full := readBytes(t, stream)
	cut := write("cut.arrows", full[:len(full)-8]) // the end-of-stream marker gone
	pq := filepath.Join(dir, "full.parquet")
	if err := arrowio.WriteDataset(pq, ds); err != nil {
		t.Fatal(err)
	}
	wrongMagic := write("magic.parquet", append([]byte("PAR0"), readBytes(t, pq)[4:]...))
	var csv strings.Builder
	for j := range 64 {
		fmt.Fprintf(&csv, "\"f%d\",", j)
	}
	csv.WriteString("\"label\"\n")
	for i := range 20 {
		for j := range 64 {
			fmt.Fprintf(&csv, "\"%d\",", (i+j)%16)
		}
		fmt.Fprintf(&csv, "\"%d\"\n", i%10)
	}
	pandas := write("pandas.csv", append([]byte("\ufeff"), csv.String()...))
	huge := write("huge.csv", []byte(strings.Replace(csv.String(), "\"1\",", "\"1e39\",", 1)))

	conv, base, cand := filepath.Join(d, "convert", "model.arrow"), filepath.Join(d, "baseline", "model.arrow"), filepath.Join(d, "finetune", "model.arrow")
	readers := []struct {
		name string
		args func(data, out string) []string
	}{
		{"finetune --train", func(x, o string) []string {
			return []string{"finetune", "--model", conv, "--train", x, "--epochs", "1", "--valid-fraction", "0", "--out", o}
		}},
		{"finetune --valid", func(x, o string) []string {
			return []string{"finetune", "--model", conv, "--train", pandas, "--valid", x, "--valid-fraction", "0", "--epochs", "1", "--out", o}
		}},
		{"validate --data", func(x, o string) []string {
			return []string{"validate", "--baseline", base, "--candidate", cand, "--data", x, "--bootstrap", "10", "--out", o}
		}},
		{"pilot config test", func(x, o string) []string {
			c := write("pilot-"+filepath.Base(x)+".yaml", []byte(fmt.Sprintf("train: %s\ntest: %s\nbaseline: {init: 'mlp:64-8-10', epochs: 1}\nfinetune: {epochs: 1}\nvalidate: {bootstrap: 10}\n", pandas, x)))
			return []string{"pilot", "--config", c, "--workdir", o, "--no-fail"}
		}},
	}
	for _, rd := range readers {
		for _, tt := range []struct {
			name, data string
			code       int
			want       string
		}{
			{"stream cut at a batch boundary", cut, 2, "no end-of-stream marker"},
			{"Parquet with a wrong magic", wrongMagic, 2, "not a Parquet file"},
			{"a value beyond float32", huge, 2, "beyond the float32 range"},
			{"pandas utf-8-sig and QUOTE_ALL", pandas, 0, ""},
		} {
			t.Run(rd.name+"/"+tt.name, func(t *testing.T) {
				r := run(t, rd.args(tt.data, filepath.Join(t.TempDir(), "out"))...)
				if r.code != tt.code || !strings.Contains(r.stderr, tt.want) {
					t.Errorf("exit %d, want %d saying %q\n%s", r.code, tt.code, tt.want, r.stderr)
				}
			})
		}
	}
}

// TestOneRunPerDirectory: a second finetune into the directory a first
// one trains in is refused at once (exit 2) and the first finishes
// untroubled; a dense copy of another format an earlier run left is
// removed by the next run's outputs.
func TestOneRunPerDirectory(t *testing.T) {
	d := demo(t)
	dir := t.TempDir()
	digits := writeData(t, "digits", dir, "digits.arrow")
	out := filepath.Join(dir, "out")
	first := exec.Command(strataBin, "finetune", "--init", "mlp:64-128-10", "--train", digits, "--epochs", "8", "--out", out)
	var stderr bytes.Buffer
	first.Stderr = &stderr
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(filepath.Join(out, ".strata.lock")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			first.Process.Kill()
			t.Fatal("the first run never took its directory")
		}
	}
	r := run(t, "finetune", "--init", "mlp:64-128-10", "--train", digits, "--epochs", "8", "--out", out)
	if r.code != 2 || !strings.Contains(r.stderr, "another run is writing into it") {
		t.Errorf("second run: exit %d\n%s", r.code, r.stderr)
	}
	if err := first.Wait(); err != nil {
		t.Fatalf("first run: %v\n%s", err, stderr.String())
	}
	sequential := []string{".strata.lock"}
	if got := entries(t, out); slices.Contains(got, sequential[0]) {
		t.Errorf("the lock outlived the run: %v", got)
	}

	// A safetensors model's dense copy is .safetensors; an Arrow one's
	// .arrow: the second run into the directory leaves only its own.
	st := filepath.Join(dir, "base.safetensors")
	if r := run(t, "export", "--model", filepath.Join(d, "baseline", "model.arrow"), "--out", st); r.code != 0 {
		t.Fatalf("export: %s", r.stderr)
	}
	test := filepath.Join(d, "data", "test.arrow")
	out2 := filepath.Join(dir, "out2")
	for _, model := range []string{st, filepath.Join(d, "baseline", "model.arrow")} {
		if r := run(t, "finetune", "--model", model, "--train", test, "--epochs", "1", "--out", out2); r.code != 0 {
			t.Fatalf("finetune %s: exit %d\n%s", model, r.code, r.stderr)
		}
	}
	if got := entries(t, out2); slices.Contains(got, "model.dense.safetensors") {
		t.Errorf("a stale dense copy stayed: %v", got)
	}
}

// TestFieldsNamedByFlags: the CLI names a stage's config field by the
// flag bound to it (the plugin by the field: plugin/host's TestBadInput).
func TestFieldsNamedByFlags(t *testing.T) {
	d := demo(t)
	train := filepath.Join(d, "data", "train.arrow")
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"finetune", "--init", "mlp:64-10", "--train", train, "--epochs", "0", "--out", t.TempDir()}, "strata: finetune: --epochs 0: want at least 1"},
		{[]string{"finetune", "--init", "mlp:64-10", "--train", train, "--batch-size", "0", "--out", t.TempDir()}, "strata: finetune: --batch-size 0: want at least 1"},
		{[]string{"convert", "--model", train, "--residual-density", "2", "--residual", "sparse", "--out", t.TempDir()}, "strata: convert: --residual-density 2: want (0, 1]"},
	} {
		if r := run(t, tt.args...); r.code != 2 || !strings.Contains(r.stderr, tt.want) {
			t.Errorf("%v: exit %d, want 2 saying %q\n%s", tt.args, r.code, tt.want, r.stderr)
		}
	}
}
