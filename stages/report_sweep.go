package stages

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/strata-ml/strata/internal/inputerr"
)

// sweepGroup names the sweep candidate and seed a validation file belongs
// to.
type sweepGroup struct {
	candidate string
	seed      uint64
}

// expandSweeps replaces every sweep output directory or sweep.json in
// files by its runs' validation.json files, in the sweep's order, and
// returns which candidate and seed each expanded file is.
func expandSweeps(files []string) ([]string, map[string]sweepGroup, error) {
	var out []string
	groups := map[string]sweepGroup{}
	for _, f := range files {
		path := f
		if st, err := os.Stat(f); err == nil && st.IsDir() {
			path = filepath.Join(f, "sweep.json")
			if _, err := os.Stat(path); err != nil {
				return nil, nil, inputerr.Errorf("report: %s is a directory without a sweep.json (want a validation.json or a strata sweep output)", f)
			}
		} else if filepath.Base(f) != "sweep.json" {
			out = append(out, f)
			continue
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, nil, inputerr.Errorf("report: %w", err)
		}
		var sw SweepResult
		if err := json.Unmarshal(b, &sw); err != nil {
			return nil, nil, inputerr.Errorf("report: %s: not a sweep.json: %v", path, err)
		}
		if sw.SchemaVersion != SweepSchemaVersion || len(sw.Candidates) == 0 {
			return nil, nil, inputerr.Errorf("report: %s: schema_version %d with %d candidates: want version %d with at least one",
				path, sw.SchemaVersion, len(sw.Candidates), SweepSchemaVersion)
		}
		dir := filepath.Dir(path)
		for _, c := range sw.Candidates {
			if len(c.Runs) == 0 {
				return nil, nil, inputerr.Errorf("report: %s: candidate %q has no runs", path, c.Name)
			}
			for _, r := range c.Runs {
				v := r.Validation
				if !filepath.IsAbs(v) {
					v = filepath.Join(dir, v)
				}
				out = append(out, v)
				groups[v] = sweepGroup{candidate: c.Name, seed: r.Seed}
			}
		}
	}
	return out, groups, nil
}

// mergeSeeds joins the runs of one sweep candidate at several seeds into
// one candidate: its decision is the worst of the runs' (GO only when
// every seed passed), and it shows the first run with that decision.
func mergeSeeds(cands []CandidateReport, groups map[string]sweepGroup) []CandidateReport {
	var out []CandidateReport
	index := map[string]int{}
	runs := map[string][]*CandidateReport{}
	for i := range cands {
		c := &cands[i]
		g, ok := groups[c.Validation.Path]
		if !ok {
			out = append(out, *c)
			continue
		}
		if _, seen := index[g.candidate]; !seen {
			index[g.candidate] = len(out)
			out = append(out, *c)
		}
		runs[g.candidate] = append(runs[g.candidate], c)
	}
	rank := map[Decision]int{DecisionGo: 0, DecisionInconclusive: 1, DecisionNoGo: 2}
	for name, rs := range runs {
		worst := rs[0]
		var seeds []string
		for _, r := range rs {
			if rank[r.Decision] > rank[worst.Decision] {
				worst = r
			}
			seeds = append(seeds, fmt.Sprintf("seed %d %s", groups[r.Validation.Path].seed, r.Decision.Label()))
		}
		m := *worst
		m.Name = name
		if len(rs) > 1 {
			m.Why = fmt.Sprintf("%s over %d seeds (%s); seed %d: %s", m.Decision.Label(), len(rs), strings.Join(seeds, ", "),
				groups[worst.Validation.Path].seed, worst.Why)
		}
		out[index[name]] = m
	}
	return out
}
