package stages

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/strata-ml/strata/gate"
	"github.com/strata-ml/strata/internal/inputerr"
	"github.com/strata-ml/strata/internal/inputfile"
	"github.com/strata-ml/strata/internal/limits"
)

// expandSweeps replaces every sweep output directory or sweep.json in
// files by its runs' validation.json files, in the sweep's order, and
// returns which candidate and seed each expanded file is. A candidate
// with a run that failed before validation (SweepRun.Failed) is left out,
// with a warning saying why: it cannot be selected.
func expandSweeps(files []string) ([]string, map[string]gate.SweepRun, []string, error) {
	var out, warnings []string
	groups := map[string]gate.SweepRun{}
	for _, f := range files {
		path := f
		if st, err := os.Stat(f); err == nil && st.IsDir() {
			path = filepath.Join(f, "sweep.json")
			if _, err := os.Stat(path); err != nil {
				return nil, nil, nil, inputerr.Errorf("report: %s is a directory without a sweep.json (want a validation.json or a strata sweep output)", f)
			}
		} else if filepath.Base(f) != "sweep.json" {
			out = append(out, f)
			continue
		}
		b, err := inputfile.ReadFile(path, limits.JSONBytes, "JSON file")
		if err != nil {
			return nil, nil, nil, fmt.Errorf("report: %w", err)
		}
		var sw SweepResult
		if err := json.Unmarshal(b, &sw); err != nil {
			return nil, nil, nil, inputerr.Errorf("report: %s: not a sweep.json: %v", path, err)
		}
		if sw.SchemaVersion != SweepSchemaVersion || len(sw.Candidates) == 0 {
			return nil, nil, nil, inputerr.Errorf("report: %s: schema_version %d with %d candidates: want version %d with at least one",
				path, sw.SchemaVersion, len(sw.Candidates), SweepSchemaVersion)
		}
		dir := filepath.Dir(path)
	candidates:
		for _, c := range sw.Candidates {
			if len(c.Runs) == 0 {
				return nil, nil, nil, inputerr.Errorf("report: %s: candidate %q has no runs", path, c.Name)
			}
			for _, r := range c.Runs {
				if r.Failed != "" {
					warnings = append(warnings, fmt.Sprintf("%s: candidate %q failed at seed %d and is not judged: %s", path, c.Name, r.Seed, r.Failed))
					continue candidates
				}
			}
			for _, r := range c.Runs {
				v := r.Validation
				if !filepath.IsAbs(v) {
					v = filepath.Join(dir, v)
				}
				out = append(out, v)
				groups[v] = gate.SweepRun{Candidate: c.Name, Seed: r.Seed}
			}
		}
	}
	if len(out) == 0 && len(warnings) > 0 {
		return nil, nil, nil, inputerr.Errorf("report: no candidate to judge: %s", strings.Join(warnings, "; "))
	}
	return out, groups, warnings, nil
}
