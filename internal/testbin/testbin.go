// Package testbin builds the strata binary for the tests that run it as a
// black box (the CLI's, the plugin host's, the manifests' and the
// examples'), once for all of them: the binary is keyed by the content of
// every file it is built from, so the test processes of one `go test
// ./...` build it once and share it, and a change to the sources builds
// it anew.
package testbin

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Main is the body of a TestMain that needs the binary: it sets *bin to
// Path() and returns m.Run()'s exit code, or fails the test process when
// the binary does not build:
//
//	func TestMain(m *testing.M) { os.Exit(testbin.Main(m, &strataBin)) }
func Main(m *testing.M, bin *string) int {
	path, err := Path()
	if err != nil {
		fmt.Fprintln(os.Stderr, "testbin:", err)
		return 1
	}
	*bin = path
	return m.Run()
}

// Path returns the path of the strata binary built from the module's
// sources as they are now, with -race when the calling test is built with
// the race detector and with the backends it is built with (openblas,
// fftw, onnxruntime), building it when no test process has yet.
func Path() (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	flags := buildFlags()
	key, err := sourceKey(root, flags)
	if err != nil {
		return "", err
	}
	cache := filepath.Join(os.TempDir(), "strata-testbin")
	dir := filepath.Join(cache, key)
	bin := filepath.Join(dir, "strata")
	if runtime.GOOS == "windows" {
		bin += ".exe"
	}
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	// Build under a name of this process's and rename: processes that
	// build at once each write their own file, and the rename is atomic.
	tmp := fmt.Sprintf("%s.%d", bin, os.Getpid())
	args := append([]string{"build", "-o", tmp}, flags...)
	if raceEnabled {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, ".")...)
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	if err := os.Rename(tmp, bin); err != nil {
		return "", err
	}
	removeStale(cache, key)
	return bin, nil
}

// moduleRoot is the directory of the main module's go.mod.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("not inside the strata module")
	}
	return filepath.Dir(gomod), nil
}

// sourceKey hashes what the binary is built from: the Go version, the
// race flag, the backends' build flags, CGO_ENABLED, CGO_LDFLAGS and
// GOFLAGS, go.mod and go.sum (the versions of every dependency), and every
// source and embedded file of the module's own packages the main package
// imports with those flags.
func sourceKey(root string, flags []string) (string, error) {
	list := exec.Command("go", append(append([]string{"list"}, flags...), "-deps", "-f",
		`{{if and .Module .Module.Main}}{{.Dir}}{{range .GoFiles}} {{.}}{{end}}{{range .CgoFiles}} {{.}}{{end}}{{range .CFiles}} {{.}}{{end}}{{range .HFiles}} {{.}}{{end}}{{range .SFiles}} {{.}}{{end}}{{range .EmbedFiles}} {{.}}{{end}}{{end}}`, ".")...)
	list.Dir = root
	out, err := list.Output()
	if err != nil {
		return "", fmt.Errorf("go list: %w", err)
	}
	h := sha256.New()
	fmt.Fprintln(h, runtime.Version(), raceEnabled, flags, os.Getenv("CGO_ENABLED"), os.Getenv("CGO_LDFLAGS"), os.Getenv("GOFLAGS"))
	files := []string{filepath.Join(root, "go.mod"), filepath.Join(root, "go.sum")}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		for _, name := range f[1:] {
			files = append(files, filepath.Join(f[0], name))
		}
	}
	for _, name := range files {
		fh, err := os.Open(name)
		if err != nil {
			return "", err
		}
		fmt.Fprintln(h, name)
		_, err = io.Copy(h, fh)
		fh.Close()
		if err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:20], nil
}

// removeStale removes the binaries of other sources not used for a day.
func removeStale(cache, keep string) {
	entries, err := os.ReadDir(cache)
	if err != nil {
		return
	}
	for _, e := range entries {
		if info, err := e.Info(); err == nil && e.Name() != keep && time.Since(info.ModTime()) > 24*time.Hour {
			os.RemoveAll(filepath.Join(cache, e.Name()))
		}
	}
}
