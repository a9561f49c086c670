package main

import (
	"bytes"
	"context"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/strata-ml/strata/stages"
	"github.com/strata-ml/strata/validation"
)

// TestEvidenceIris is the CI variant of `make evidence`: the
// iris sweep of iris.yaml at its first seed alone, run in-process, then
// rendered. It checks the document's structure, not its numbers: the
// sections, one row per candidate with its name in both tables, every
// cell a number or a dash whose note says why, and the reading with a
// verdict per candidate and claim. It is itself the short variant, so it
// runs under -short too (about 20 s on 2 cores).
func TestEvidenceIris(t *testing.T) {
	cfg, err := stages.LoadSweepConfig("iris.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Seeds = cfg.Seeds[:1]
	cfg.Out = filepath.Join(t.TempDir(), "iris")
	if _, err := stages.Sweep(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	ds, err := loadDataSet(cfg.Out)
	if err != nil {
		t.Fatal(err)
	}
	d := &doc{Sets: []*dataSet{ds}, Machine: machine{CPU: "test CPU", CPUs: 2, Backend: "gonum"},
		Strata: "bin/strata", Render: "go run ./examples/evidence -out EVIDENCE.md iris"}
	md := render(d)
	if again := render(d); !bytes.Equal(md, again) {
		t.Error("two renderings of the same outputs differ")
	}
	lines := strings.Split(string(md), "\n")

	for _, h := range []string{
		"# Evidence: strata measures its own method", "## How it was run", "## Protocol", "## How to read the tables",
		"## iris", "### iris: candidates vs baseline", "### iris: candidates vs control",
		"## A plain reading", "### Summary", "### Closing note",
	} {
		if !slices.Contains(lines, h) {
			t.Errorf("no line %q", h)
		}
	}
	if !strings.Contains(string(md), "bin/strata sweep --config iris.yaml --out "+cfg.Out+"\n") {
		t.Error("the sweep's command is not shown")
	}

	var names []string
	for _, c := range cfg.Candidates {
		names = append(names, c.Name)
	}
	header := []string{"candidate"}
	for _, c := range columns {
		header = append(header, c.header)
	}
	number := `[+-]?\d+(?:\.\d+)?(?:e[+-]\d+)?`
	valueCell := regexp.MustCompile(`^` + number + `(?: ± ` + number + `)?(?: \(n=\d+\))?(?: \(±` + number + `\)| \(no CI\))?(?: \[\d+/\d+\])?$`)
	dashCell := regexp.MustCompile(`^- \(([a-z])\)$`)
	for _, s := range []string{"vs baseline", "vs control"} {
		heading := "### iris: candidates " + s
		rows, after := table(t, lines, heading)
		if len(rows) == 0 {
			continue
		}
		if !slices.Equal(rows[0], header) {
			t.Errorf("%s: header %q, want %q", heading, rows[0], header)
		}
		body := rows[2:]
		if len(body) != len(names) {
			t.Fatalf("%s: %d rows, want one per candidate (%d)", heading, len(body), len(names))
		}
		for i, row := range body {
			if row[0] != names[i] {
				t.Errorf("%s: row %d is %q, want %q", heading, i, row[0], names[i])
			}
			if len(row) != len(header) {
				t.Errorf("%s: row %q has %d cells, want %d", heading, row[0], len(row), len(header))
				continue
			}
			for j, c := range row[1:] {
				if valueCell.MatchString(c) {
					continue
				}
				m := dashCell.FindStringSubmatch(c)
				if m == nil {
					t.Errorf("%s: %s, %s: %q is neither a number nor a dash with a note", heading, row[0], header[j+1], c)
					continue
				}
				if !slices.ContainsFunc(after, func(l string) bool { return strings.HasPrefix(l, "("+m[1]+") ") && len(l) > 4 }) {
					t.Errorf("%s: %s, %s: dash without its note (%s)", heading, row[0], header[j+1], m[1])
				}
			}
		}
	}

	verdicts := []string{"holds", "contradicted", "mixed", "no clear effect"}
	for _, cl := range claims {
		heading := "### " + capitalise(cl.name)
		rows, after := table(t, lines, heading)
		if len(rows) == 0 {
			continue
		}
		if want := []string{"candidate", "iris vs baseline", "iris vs control"}; !slices.Equal(rows[0], want) {
			t.Errorf("%s: header %q, want %q", heading, rows[0], want)
		}
		body := rows[2:]
		if len(body) != len(names) {
			t.Fatalf("%s: %d rows, want %d", heading, len(body), len(names))
		}
		for i, row := range body {
			if row[0] != names[i] {
				t.Errorf("%s: row %d is %q, want %q", heading, i, row[0], names[i])
			}
			for _, c := range row[1:] {
				if !slices.Contains(verdicts, c) {
					t.Errorf("%s: %s: verdict %q", heading, row[0], c)
				}
			}
		}
		if len(after) == 0 || !strings.HasPrefix(after[0], "- Holds vs baseline") {
			t.Errorf("%s: the verdicts are not listed after the table", heading)
		}
	}
	closing := slices.Index(lines, "### Closing note")
	if closing < 0 || closing+2 >= len(lines) || !strings.HasPrefix(lines[closing+2], "On iris (1 seed each), S + R kept accuracy") {
		t.Error("no closing note")
	}
}

// table returns the markdown table following heading, split into cells,
// and the lines after it up to the next heading.
func table(t *testing.T, lines []string, heading string) (rows [][]string, after []string) {
	t.Helper()
	i := slices.Index(lines, heading)
	if i < 0 {
		t.Errorf("no %q", heading)
		return nil, nil
	}
	i++
	for i < len(lines) && !strings.HasPrefix(lines[i], "|") {
		i++
	}
	for ; i < len(lines) && strings.HasPrefix(lines[i], "|"); i++ {
		cells := strings.Split(strings.Trim(lines[i], "|"), "|")
		for k := range cells {
			cells[k] = strings.TrimSpace(cells[k])
		}
		rows = append(rows, cells)
	}
	for ; i < len(lines) && !strings.HasPrefix(lines[i], "#"); i++ {
		if lines[i] != "" {
			after = append(after, lines[i])
		}
	}
	if len(rows) < 3 {
		t.Errorf("%s: no table", heading)
		return nil, nil
	}
	return rows, after
}

// TestJudge checks the verdict criteria of claims.go on crafted
// aggregates: the direction of the mean, the quorum of significant seeds,
// no seed against, the accuracy margin, and the control's side.
func TestJudge(t *testing.T) {
	spread := func(mean float64) *validation.Spread {
		return &validation.Spread{N: 5, Mean: validation.NullableFloat(mean)}
	}
	lower := criterion{metric: validation.MetricJacobianCondition}
	higher := criterion{metric: validation.MetricLRRobustness}
	acc := criterion{metric: validation.MetricAccuracy, margin: accuracyMargin}
	metric := func(better string, mean float64, b, w int) *validation.Aggregate {
		return &validation.Aggregate{Better: better, Delta: spread(mean), BetterRuns: b, WorseRuns: w, Runs: 5}
	}
	tests := []struct {
		name string
		m    *validation.Aggregate
		s    side
		c    criterion
		want verdict
	}{
		{"lower: 3 of 5 better, none worse", metric(validation.BetterLower, -2, 3, 0), vsBaseline, lower, holds},
		{"lower: 5 of 5 better", metric(validation.BetterLower, -2, 5, 0), vsBaseline, lower, holds},
		{"lower: 2 of 5 better", metric(validation.BetterLower, -2, 2, 0), vsBaseline, lower, noClearEffect},
		{"lower: 3 better, 1 worse", metric(validation.BetterLower, -2, 3, 1), vsBaseline, lower, noClearEffect},
		{"lower: mean against, 3 better", metric(validation.BetterLower, 2, 3, 0), vsBaseline, lower, noClearEffect},
		{"lower: 3 of 5 worse, none better", metric(validation.BetterLower, 2, 0, 3), vsBaseline, lower, contradicted},
		{"lower: 4 worse, 1 better", metric(validation.BetterLower, 2, 1, 4), vsBaseline, lower, noClearEffect},
		{"lower: mean for, 3 worse", metric(validation.BetterLower, -2, 0, 3), vsBaseline, lower, noClearEffect},
		{"lower: mean 0", metric(validation.BetterLower, 0, 0, 0), vsBaseline, lower, noClearEffect},
		{"higher: 3 of 5 better", metric(validation.BetterHigher, 0.02, 3, 0), vsBaseline, higher, holds},
		{"higher: 3 of 5 worse", metric(validation.BetterHigher, -0.02, 0, 3), vsBaseline, higher, contradicted},
		{"reported: no direction", metric(validation.BetterReported, 0.3, 5, 0), vsBaseline, lower, noClearEffect},
		{"no metric", nil, vsBaseline, lower, noClearEffect},
		{"no delta", &validation.Aggregate{Better: validation.BetterLower, BetterRuns: 5, Runs: 5}, vsBaseline, lower, noClearEffect},
		{"accuracy: -0.5 points, none worse", metric(validation.BetterHigher, -0.005, 0, 0), vsBaseline, acc, holds},
		{"accuracy: -1 point exactly", metric(validation.BetterHigher, -0.01, 0, 0), vsBaseline, acc, holds},
		{"accuracy: better", metric(validation.BetterHigher, 0.02, 2, 0), vsBaseline, acc, holds},
		{"accuracy: -0.5 points, 1 seed worse", metric(validation.BetterHigher, -0.005, 0, 1), vsBaseline, acc, noClearEffect},
		{"accuracy: -3 points, none worse", metric(validation.BetterHigher, -0.03, 0, 0), vsBaseline, acc, noClearEffect},
		{"accuracy: -3 points, 2 worse", metric(validation.BetterHigher, -0.03, 0, 2), vsBaseline, acc, noClearEffect},
		{"accuracy: -3 points, 3 worse", metric(validation.BetterHigher, -0.03, 0, 3), vsBaseline, acc, contradicted},
		{"accuracy: -3 points, 3 worse, 1 better", metric(validation.BetterHigher, -0.03, 1, 3), vsBaseline, acc, noClearEffect},
		{"control: its own delta and counts", &validation.Aggregate{Better: validation.BetterLower, Delta: spread(2), WorseRuns: 5,
			DeltaVsControl: spread(-1), BetterRunsVsControl: 3, Runs: 5}, vsControl, lower, holds},
		{"control: absent", metric(validation.BetterLower, -2, 5, 0), vsControl, lower, noClearEffect},
		{"one seed: 1 of 1 better", &validation.Aggregate{Better: validation.BetterLower, Delta: spread(-1), BetterRuns: 1, Runs: 1}, vsBaseline, lower, holds},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := judge(tt.m, tt.s, tt.c).verdict; got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func TestCombine(t *testing.T) {
	tests := []struct {
		in   []verdict
		want verdict
	}{
		{[]verdict{holds}, holds},
		{[]verdict{holds, holds}, holds},
		{[]verdict{holds, noClearEffect}, noClearEffect},
		{[]verdict{holds, contradicted}, mixed},
		{[]verdict{contradicted, noClearEffect}, contradicted},
		{[]verdict{contradicted, contradicted}, contradicted},
		{[]verdict{noClearEffect, noClearEffect}, noClearEffect},
		{nil, noClearEffect},
	}
	for _, tt := range tests {
		if got := combine(tt.in); got != tt.want {
			t.Errorf("combine(%v) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestQuorum(t *testing.T) {
	for n, want := range map[int]int{1: 1, 2: 2, 3: 2, 4: 3, 5: 3, 10: 6} {
		if got := quorum(n); got != want {
			t.Errorf("quorum(%d) = %d, want %d", n, got, want)
		}
	}
}

// TestConfigs checks the three configs load and run the same protocol:
// the same candidates (up to the low-rank trunk's rank), learning rates,
// seeds, budgets and validation settings.
func TestConfigs(t *testing.T) {
	var first stages.SweepConfig
	for i, name := range []string{"digits", "wine", "iris"} {
		cfg, err := stages.LoadSweepConfig(name + ".yaml")
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Data != name || cfg.TestFraction != 0.25 || !cfg.Control || len(cfg.Candidates) != 10 || len(cfg.Seeds) != 5 || len(cfg.LRs) != 6 {
			t.Errorf("%s: data %q, test fraction %v, control %v, %d candidates, %d seeds, %d lrs", name, cfg.Data, cfg.TestFraction, cfg.Control, len(cfg.Candidates), len(cfg.Seeds), len(cfg.LRs))
		}
		if i == 0 {
			first = cfg
			continue
		}
		// The baselines' training alike (their architectures fit each data set).
		base, firstBase := cfg.Baseline, first.Baseline
		base.Init, firstBase.Init = "", ""
		if !reflect.DeepEqual(cfg.Finetune, first.Finetune) || !reflect.DeepEqual(base, firstBase) ||
			!slices.Equal(cfg.LRs, first.LRs) || !slices.Equal(cfg.Seeds, first.Seeds) || cfg.Validate.Bootstrap != first.Validate.Bootstrap {
			t.Errorf("%s: the protocol differs from digits'", name)
		}
		for j, c := range cfg.Candidates {
			f := first.Candidates[j]
			sameRetract := (c.Retract == nil) == (f.Retract == nil) && (c.Retract == nil || *c.Retract == *f.Retract)
			if c.Structure != f.Structure || c.Blocks != f.Blocks || c.Residual != f.Residual || c.ResidualRank != f.ResidualRank || !sameRetract {
				t.Errorf("%s: candidate %d differs from digits'", name, j)
			}
		}
	}
}

func TestSigned(t *testing.T) {
	tests := []struct {
		format string
		v      float64
		want   string
	}{
		{"%+.2f", -0.001, "+0.00"},
		{"%+.2f", -0.5, "-0.50"},
		{"%+.2f", 0.004, "+0.00"},
		{"%.3f", -0.0001, "0.000"},
		{"%.3g", -2, "-2"},
	}
	for _, tt := range tests {
		if got := signed(tt.format, tt.v); got != tt.want {
			t.Errorf("signed(%q, %v) = %q, want %q", tt.format, tt.v, got, tt.want)
		}
	}
}

// TestCellDash checks a value that could not be computed becomes a dash
// whose note gives the validations' reason, and a ratio whose reference is
// 0 says so.
func TestCellDash(t *testing.T) {
	one := validation.NullableFloat(1)
	c := stages.SweepCandidateResult{Name: "c", Metrics: []validation.Aggregate{
		{Metric: validation.MetricJacobianCondition, Better: validation.BetterLower, Runs: 1},
		{Metric: validation.MetricPredictionFlipRate, Better: validation.BetterLower, Runs: 1, Delta: &validation.Spread{N: 1, Mean: 0.01}},
	}}
	ds := &dataSet{
		Res: &stages.SweepResult{Candidates: []stages.SweepCandidateResult{c}},
		Runs: map[string][]*validation.Result{"c": {{Metrics: map[string]*validation.Metric{
			validation.MetricJacobianCondition: {Better: validation.BetterLower, Candidate: &one, Reason: "baseline: numerically singular Jacobian"},
		}}}},
	}
	ds.Res.Config.Control = true
	n := &notes{}
	if got := cell(ds, &c, column{metric: validation.MetricJacobianCondition, kind: colRatio}, vsBaseline, n); got != "- (a)" {
		t.Errorf("Jacobian cell %q, want - (a)", got)
	}
	if got := cell(ds, &c, column{metric: validation.MetricPredictionFlipRate, kind: colRatio}, vsBaseline, n); got != "- (b)" {
		t.Errorf("flip rate ratio cell %q, want - (b)", got)
	}
	if got := cell(ds, &c, column{metric: validation.MetricPredictionFlipRate, kind: colPoints}, vsBaseline, n); got != "+1.00 [0/0]" {
		t.Errorf("flip rate delta cell %q, want +1.00 [0/0]", got)
	}
	if len(n.reasons) != 2 || !strings.Contains(n.reasons[0], "numerically singular") || !strings.Contains(n.reasons[1], "reference's value is 0") {
		t.Errorf("notes %q", n.reasons)
	}
}
