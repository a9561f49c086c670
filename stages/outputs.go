package stages

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"github.com/strata-ml/strata/arrowio"
)

// writeOutputs creates dir if needed, lets write put every output file in
// a fresh staging directory inside dir, then renames them into dir in name
// order with any file named "*.json" last, so a reader that sees the JSON
// summary sees the artifacts it describes. On error nothing is moved and
// the staging directory is removed: a failed run leaves no output that
// looks valid.
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
