package stages

import (
	"errors"
	"strings"
	"testing"

	"github.com/strata-ml/strata/internal/limits"
)

// FuzzParseShard feeds arbitrary --layers values: the parser either
// returns distinct in-range positions or a bad-input error, never panics.
func FuzzParseShard(f *testing.F) {
	for _, s := range []string{"", "0", "0-3", "0,2,5-7", "3-1", "-1", "a-b", "1,1,1", "0-99999999999999999999"} {
		f.Add(s, 8)
	}
	f.Fuzz(func(t *testing.T, s string, n int) {
		if n < 0 || n > 1<<16 {
			return
		}
		idx, err := parseShard(s, n)
		if err != nil {
			if !errors.Is(err, ErrInput) {
				t.Fatalf("parseShard(%q, %d): error %v is not a bad-input error", s, n, err)
			}
			return
		}
		seen := map[int]bool{}
		for _, i := range idx {
			if i < 0 || i >= n || seen[i] {
				t.Fatalf("parseShard(%q, %d) = %v: position %d out of range or repeated", s, n, idx, i)
			}
			seen[i] = true
		}
	})
}

// FuzzParseKronFactors feeds arbitrary --kron-factors values.
func FuzzParseKronFactors(f *testing.F) {
	for _, s := range []string{"", "8x8", "1x7", "0x3", "x", "8by8", "-2x3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fs, err := parseKronFactors(s)
		if err != nil {
			if !errors.Is(err, ErrInput) {
				t.Fatalf("parseKronFactors(%q): error %v is not a bad-input error", s, err)
			}
			return
		}
		if s != "" && (fs[0] < 1 || fs[1] < 1) {
			t.Fatalf("parseKronFactors(%q) = %v", s, fs)
		}
	})
}

// configSeeds are pilot config files the config fuzz targets start from.
var configSeeds = []string{
	"data: digits\nseed: 1\n",
	"version: 1\ntrain: train.csv\ntest: test.csv\nlabel: y\nbaseline: {init: 'mlp:4-8-3', epochs: 5}\nfinetune: {epochs: 2, lr: 0.01}\n",
	"data: iris\nconvert: {structure: auto, target_error: 0.1}\nvalidate: {noise: [0.1, 0.2], bootstrap: 10}\ncontrol: false\n",
	"data: wine\nbaseline: {epochs: -2}\n", "data: digits\nfinetune: {epochs: 2.5}\n", "data: digits\nbaseline: {init: 'mlp:64-4000000000-10'}\n",
	"data: digits\nvalidate: {bootstrap: 2000000000}\n", "a: &a [1, 2]\ndata: digits\n", "{", "- - -", "version: 2\n",
}

// checkFuzzedConfig is what FuzzPilotConfig and FuzzSweepConfig require of
// any file: a bad-input error naming the file, or a config whose stages'
// settings all pass (Check again, and the bounds Check enforces).
func checkFuzzedConfig(t *testing.T, err error, pc *PilotConfig, check func() error) {
	if err != nil {
		if !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), "c.yaml") {
			t.Fatalf("error %v is not bad input naming the file", err)
		}
		return
	}
	if err := check(); err != nil {
		t.Fatalf("an accepted config fails its check again: %v", err)
	}
	for _, ft := range []FinetuneConfig{pc.Baseline, pc.Finetune} {
		if ft.Epochs < 1 || ft.Epochs > limits.TrainSteps || ft.BatchSize < 1 || !(ft.LR > 0) {
			t.Fatalf("accepted epochs %d, batch size %d, lr %v", ft.Epochs, ft.BatchSize, ft.LR)
		}
	}
	if pc.Validate.Bootstrap > limits.Bootstrap || pc.Label == "" {
		t.Fatalf("accepted bootstrap %d, label %q", pc.Validate.Bootstrap, pc.Label)
	}
}

// FuzzPilotConfig feeds arbitrary pilot config files to the decoder and
// the check Pilot runs before any work: never a panic, and what is
// accepted is within every stage's bounds.
func FuzzPilotConfig(f *testing.F) {
	for _, s := range configSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		cfg, err := parsePilotConfig("c.yaml", src)
		checkFuzzedConfig(t, err, &cfg, cfg.Check)
	})
}

// FuzzSweepConfig is FuzzPilotConfig for sweep configs: the candidates
// too must pass convert's check.
func FuzzSweepConfig(f *testing.F) {
	for _, s := range configSeeds {
		f.Add([]byte(s + "candidates:\n  - {structure: monarch, blocks: 4}\n  - {name: lr, structure: lowrank, rank: 2}\nlrs: [0.001, 0.01]\nseeds: [1, 2]\n"))
	}
	f.Add([]byte("data: digits\ncandidates: [{structure: monarch}, {structure: monarch}]\n"))
	f.Add([]byte("data: digits\ncandidates: [{structure: monarch, blocks: -1}]\njobs: 0\n"))
	f.Fuzz(func(t *testing.T, src []byte) {
		cfg, err := parseSweepConfig("c.yaml", src)
		checkFuzzedConfig(t, err, &cfg.PilotConfig, cfg.Check)
		if err == nil {
			for _, c := range cfg.Candidates {
				if !candidateName.MatchString(c.Name) || c.Blocks < 0 || c.Rank < 0 {
					t.Fatalf("accepted candidate %+v", c)
				}
			}
		}
	})
}
