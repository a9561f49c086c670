package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-ml/strata/internal/testbin"
)

// TestWalkthrough runs README.md's commands as written (from the
// repository root, with bin/ moved to a temporary directory) and checks
// what each prints: an output line without "..." must be a line of its
// stdout; the pieces of a line with "..." must each appear in its stdout or
// stderr.
func TestWalkthrough(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "bin")
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	type command struct {
		line string
		want []string
	}
	var cmds []command
	inSh := false
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(line, "```sh"):
			inSh = true
		case strings.HasPrefix(line, "```"):
			inSh = false
		case inSh && strings.HasPrefix(line, "$ "):
			cmds = append(cmds, command{line: strings.TrimPrefix(line, "$ ")})
		case inSh && len(cmds) > 0:
			cmds[len(cmds)-1].want = append(cmds[len(cmds)-1].want, line)
		}
	}
	if len(cmds) < 8 {
		t.Fatalf("README.md: %d commands, want the whole walkthrough", len(cmds))
	}
	for _, c := range cmds {
		line := c.line
		if line == "make build" {
			// The binary make build makes, built once for every test.
			strata, err := testbin.Path()
			if err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(bin, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(strata, filepath.Join(bin, "strata")); err != nil {
				t.Fatal(err)
			}
			continue
		}
		// bin/ is the temporary directory's, and printed paths say so.
		run := strings.ReplaceAll(line, "bin/", bin+"/")
		cmd := exec.Command("sh", "-c", run)
		cmd.Dir = root
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("%s: %v\n%s", line, err, stderr.String())
		}
		out := strings.ReplaceAll(stdout.String(), bin+"/", "bin/")
		all := out + strings.ReplaceAll(stderr.String(), bin+"/", "bin/")
		var outLines []string
		for _, l := range strings.Split(out, "\n") {
			outLines = append(outLines, strings.TrimRight(l, " "))
		}
		for _, w := range c.want {
			if !strings.Contains(w, "...") {
				found := false
				for _, l := range outLines {
					if l == strings.TrimRight(w, " ") {
						found = true
						break
					}
				}
				if !found {
					t.Errorf("%s: stdout has no line %q:\n%s", line, w, out)
				}
				continue
			}
			for _, piece := range strings.Split(w, "...") {
				if p := strings.TrimSpace(piece); p != "" && !strings.Contains(all, p) {
					t.Errorf("%s: output has no %q:\n%s", line, p, all)
				}
			}
		}
	}
}
