package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/strata-ml/strata/internal/inputfile"
	"github.com/strata-ml/strata/internal/limits"
	"github.com/strata-ml/strata/render/number"
	"github.com/strata-ml/strata/stages"
	"github.com/strata-ml/strata/validation"
)

type sweepCommand struct{ env }

// sweepOptions are the flags of sweep that are not fields of the config;
// the others are bound to the config itself, loaded from --config first,
// so that a flag given overrides the file.
type sweepOptions struct {
	config, out                string
	candidates                 []string
	candidatesJSON, lrs, seeds string
	log                        logOptions
}

func (c *sweepCommand) Usage() string {
	return `Usage: strata sweep --config sweep.yaml --out DIR [flags]
       strata sweep --data digits --candidate structure=monarch,blocks=4 ... --out DIR [flags]

Runs many pilots against one baseline: each candidate structure is converted,
fine-tuned and validated against the dense baseline and the equal-budget
control, at every seed of --seeds; with --lrs, the fine-tuning of the
baseline and of each candidate is repeated at every learning rate, and
validation.json gains lr_robustness (the worst accuracy over the rates and
the best-minus-worst range). Up to --jobs stage runs go at once; the results
do not depend on --jobs.

A sweep config is a pilot config (docs/PILOT.md) plus candidates, lrs, seeds
and jobs (docs/SWEEP.md). A candidate is key=value options: name, structure,
blocks, rank, kron-factors, residual, residual-rank, residual-density,
target-error, param-budget, retract; keys left out keep the config's convert
values. --candidates takes a JSON list of such objects (values may be
strings, as Argo passes them), or @FILE.

Writes DIR/seed-S/CANDIDATE/validate/validation.json per seed and candidate,
DIR/sweep.json (every metric aggregated over the seeds: mean, seed-to-seed
standard deviation, the per-run intervals) and DIR/sweep.md, and prints the
candidates' summary. 'strata report --select-best DIR' judges the sweep.

Exit codes: 0 done, 2 bad input (nothing run), 1 runtime error.

Flags:
` + flagUsages(c.flags(new(sweepOptions), new(stages.DefaultSweepConfig())))
}

func (c *sweepCommand) flags(o *sweepOptions, cfg *stages.SweepConfig) *flagSet {
	fs := newFlagSet("sweep", c.env, c.Usage)
	fs.StringVar(&o.config, "config", o.config, "sweep config YAML (a pilot config plus candidates, lrs, seeds, jobs)")
	fs.StringVar(&o.out, "out", o.out, "output directory")
	fs.StringArrayVar(&o.candidates, "candidate", nil, "a candidate as key=value,... (repeatable; with --candidates, these come first; replaces the config's candidates)")
	fs.StringVar(&o.candidatesJSON, "candidates", "", "candidates as a JSON list of objects, or @FILE (replaces the config's)")
	fs.StringVar(&o.lrs, "lrs", "", "learning rates of the learning-rate sweep, e.g. 1e-4,3e-4,1e-3,3e-3,1e-2,3e-2")
	fs.StringVar(&o.seeds, "seeds", "", "seeds to repeat everything over, e.g. 0,1,2,3,4 (default: the config's seed)")
	fs.IntVar(&cfg.Jobs, "jobs", cfg.Jobs, "stage runs at once")
	fs.StringVar(&cfg.Data, "data", cfg.Data, "an embedded data set: digits, wine or iris")
	fs.StringVar(&cfg.Train, "train", cfg.Train, "training data (Arrow, Parquet or CSV)")
	fs.StringVar(&cfg.Valid, "valid", cfg.Valid, "validation data of every training run (optional)")
	fs.StringVar(&cfg.Test, "test", cfg.Test, "evaluation data of validate (default: a seeded share of --train)")
	fs.StringVar(&cfg.Label, "label", cfg.Label, "target column")
	fs.StringVar(&cfg.Model, "model", cfg.Model, "the dense baseline (default: train one per seed, --init)")
	nameVar(fs, &cfg.Activation, "activation", "activation of a safetensors nn.Sequential baseline without metadata")
	fs.StringVar(&cfg.Baseline.Init, "init", cfg.Baseline.Init, "architecture of the baseline trained per seed, e.g. mlp:64-256-256-10:relu")
	fs.IntVar(&cfg.Baseline.Epochs, "baseline-epochs", cfg.Baseline.Epochs, "epochs of the baseline trained per seed")
	fs.IntVar(&cfg.Finetune.Epochs, "epochs", cfg.Finetune.Epochs, "fine-tuning epochs of every candidate and the control")
	fs.Float64Var(&cfg.Finetune.LR, "lr", cfg.Finetune.LR, "fine-tuning learning rate of every candidate and the control")
	fs.BoolVar(&cfg.Control, "control", cfg.Control, "fine-tune the dense baseline with the same budget and compare with it too")
	fs.IntVar(&cfg.Validate.Bootstrap, "bootstrap", cfg.Validate.Bootstrap, "bootstrap resamples of every interval")
	fs.StringVar(&cfg.Policy, "policy", cfg.Policy, "gate policy each run is judged against (default: the embedded one)")
	fs.BoolVar(&cfg.Resume, "resume", cfg.Resume, "continue an interrupted sweep in the same --out: each training run from its checkpoint, a finished one not again")
	o.log.bind(fs)
	return fs
}

func (c *sweepCommand) Run(ctx context.Context, args []string) error {
	// The config file first, then the flags over it.
	cfg := stages.DefaultSweepConfig()
	if path := prescan(args).config; path != "" {
		var err error
		if cfg, err = stages.LoadSweepConfig(path); err != nil {
			return err
		}
	}
	var o sweepOptions
	fs := c.flags(&o, &cfg)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageErrorf("sweep takes no positional arguments, got %q", fs.Args())
	}
	if o.out == "" {
		return usageErrorf("sweep: --out is required")
	}
	if o.lrs != "" {
		lrs, err := stages.ParseLRs(o.lrs)
		if err != nil {
			return usageErrorf("sweep: --lrs: %v", err)
		}
		cfg.LRs = lrs
	}
	if o.seeds != "" {
		seeds, err := stages.ParseSeeds(o.seeds)
		if err != nil {
			return usageErrorf("sweep: --seeds: %v", err)
		}
		cfg.Seeds = seeds
	}
	if err := c.candidates(&o, &cfg); err != nil {
		return err
	}
	cfg.Out = o.out

	pr := newProgress(c.stderr, "sweep")
	defer pr.finish()
	log, err := o.log.logger(pr.logWriter())
	if err != nil {
		return err
	}
	cfg.Logger = log
	if cfg.StageLogger, err = o.log.stageLogger(pr.logWriter()); err != nil {
		return err
	}
	if pr.active() {
		cfg.Progress = func(done, total int, what string) { pr.update(done, total, what) }
	}
	res, err := stages.Sweep(ctx, cfg)
	if err != nil {
		return err
	}
	pr.finish()
	printSweepSummary(c.stdout, res)
	return nil
}

// candidates applies --candidate and --candidates.
func (c *sweepCommand) candidates(o *sweepOptions, cfg *stages.SweepConfig) error {
	var list []stages.SweepCandidate
	for _, spec := range o.candidates {
		cand, err := stages.ParseCandidateSpec(spec, cfg.Convert)
		if err != nil {
			return usageErrorf("sweep: --candidate %q: %v", spec, err)
		}
		list = append(list, cand)
	}
	if src := o.candidatesJSON; src != "" {
		what := "--candidates"
		if name, ok := strings.CutPrefix(src, "@"); ok {
			b, err := inputfile.ReadFile(name, limits.ConfigBytes, "config file")
			if err != nil {
				return usageErrorf("sweep: --candidates: %v", err)
			}
			src, what = string(b), name
		}
		var raw []map[string]any
		if err := json.Unmarshal([]byte(src), &raw); err != nil {
			return usageErrorf("sweep: %s: want a JSON list of candidate objects: %v", what, err)
		}
		for i, obj := range raw {
			kv := map[string]string{}
			for k, v := range obj {
				switch v := v.(type) {
				case string:
					kv[k] = v
				case float64, bool:
					kv[k] = fmt.Sprint(v)
				default:
					return usageErrorf("sweep: %s: candidate %d: %s: want a string, number or boolean", what, i, k)
				}
			}
			cand, err := stages.ParseCandidate(kv, cfg.Convert)
			if err != nil {
				return usageErrorf("sweep: %s: candidate %d: %v", what, i, err)
			}
			list = append(list, cand)
		}
	}
	if list != nil {
		cfg.Candidates = list
	}
	return nil
}

// printSweepSummary prints one line per candidate: its decision per seed
// and the headline deltas over the seeds.
func printSweepSummary(w io.Writer, res *stages.SweepResult) {
	fmt.Fprintf(w, "Sweep: %d candidates x %d seeds in %.0f s\n\n", len(res.Candidates), len(res.Seeds), res.Seconds)
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, "candidate\tdecision\tparams ratio\taccuracy delta\tJacobian condition ratio\tlr robustness delta")
	for i := range res.Candidates {
		c := &res.Candidates[i]
		cell := func(key string, ratio bool) string {
			m := c.Metrics.Get(key)
			if m == nil {
				return "-"
			}
			if ratio {
				return number.Spread(m.Ratio, 1, false)
			}
			return number.Spread(m.Delta, 1, true)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", c.Name, c.Decision.Label(), cell(validation.MetricParams, true),
			cell(validation.MetricAccuracy, false), cell(validation.MetricJacobianCondition, true), cell(validation.MetricLRRobustness, false))
	}
	tw.Flush()
	fmt.Fprintf(w, "\nSummary: %s\nJudge it: strata report --select-best %s --out DIR\n", res.Config.Out+"/sweep.md", res.Config.Out)
}
