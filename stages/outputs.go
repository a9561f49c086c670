package stages

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"syscall"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/internal/dirlock"
	"github.com/strata-ml/strata/internal/inputerr"
)

// outputDir is the output directory of a stage run, claimed for the
// whole run by claimOutput: created when missing and locked against every
// other run (dirlock), so that two runs never interleave their
// checkpoints and outputs in one directory.
type outputDir struct {
	path string
	// created are the directories claimOutput created, deepest first.
	created []string
	lock    *dirlock.Held
}

// claimOutput claims dir, the output directory the config field field of
// stage names, before the run reads anything. What no retry can change is
// bad input, found here rather than after the work: dir or a directory on
// its path is a file, dir cannot be created or written for want of
// permission, or another run holds it.
func claimOutput(stage, field, dir string) (*outputDir, error) {
	bad := func(why string, args ...any) error {
		return inputerr.Fieldf(stage, "{"+field+"} %s: "+why, append([]any{dir}, args...)...)
	}
	if st, err := os.Stat(dir); err == nil && !st.IsDir() {
		return nil, bad("is a file, want a directory")
	}
	o := &outputDir{path: dir}
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		if _, err := os.Lstat(d); !errors.Is(err, fs.ErrNotExist) {
			break
		}
		o.created = append(o.created, d)
		if filepath.Dir(d) == d {
			break
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		if errors.Is(err, syscall.ENOTDIR) || errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS) {
			return nil, bad("%w", err)
		}
		return nil, fmt.Errorf("%s: create output directory: %w", stage, err)
	}
	lock, err := dirlock.Lock(dir)
	if err != nil {
		o.release()
		if errors.Is(err, dirlock.ErrLocked) {
			return nil, bad("another run is writing into it (it holds %s); give each run its own directory", dirlock.Name)
		}
		if errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS) {
			return nil, bad("%w", err)
		}
		return nil, fmt.Errorf("%s: %w", stage, err)
	}
	o.lock = lock
	return o, nil
}

// release unlocks the directory and removes the directories claimOutput
// created that are empty again: a run that failed before writing leaves
// nothing behind.
func (o *outputDir) release() {
	o.lock.Unlock()
	for _, d := range o.created {
		if os.Remove(d) != nil {
			return
		}
	}
}

// alternativeOutputs are output names of which a run writes one and an
// earlier run into the same directory may have written another (the
// dense materialisation is in the input's format): writeOutputs removes
// those the run did not write, so that no stale model sits beside the new
// one.
var alternativeOutputs = []string{"model.dense." + FormatArrow, "model.dense." + FormatSafetensors}

// writeOutputs creates dir if needed, lets write put every output file in
// a fresh staging directory inside dir, then renames them into dir in name
// order with any file named "*.json" last, so a reader that sees the JSON
// summary sees the artifacts it describes, and removes the
// alternativeOutputs it did not write. On error nothing is moved and the
// staging directory is removed: a failed run leaves no output that looks
// valid.
func writeOutputs(dir string, write func(staging string) error) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create output directory: %w", err)
	}
	staging, err := os.MkdirTemp(dir, ".staging-")
	if err != nil {
		return fmt.Errorf("create staging directory in %s: %w", dir, err)
	}
	defer os.RemoveAll(staging)
	if err := write(staging); err != nil {
		return err
	}
	entries, err := os.ReadDir(staging)
	if err != nil {
		return err
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.SliceStable(names, func(i, j int) bool {
		ji, jj := filepath.Ext(names[i]) == ".json", filepath.Ext(names[j]) == ".json"
		if ji != jj {
			return jj
		}
		return names[i] < names[j]
	})
	for _, n := range alternativeOutputs {
		if !slices.Contains(names, n) {
			if err := os.Remove(filepath.Join(dir, n)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("remove the stale %s from %s: %w", n, dir, err)
			}
		}
	}
	for _, n := range names {
		if err := os.Rename(filepath.Join(staging, n), filepath.Join(dir, n)); err != nil {
			return fmt.Errorf("move %s into %s: %w", n, dir, err)
		}
	}
	return arrowio.SyncDir(dir)
}

// writeJSON writes v as indented JSON, atomically.
func writeJSON(path string, v any) error {
	return arrowio.WriteFileAtomic(path, func(w io.Writer) error {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	})
}
