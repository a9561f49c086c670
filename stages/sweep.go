package stages

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/compute"
	"github.com/strata-ml/strata/gate"
	"github.com/strata-ml/strata/internal/inputerr"
	"github.com/strata-ml/strata/internal/inputfile"
	"github.com/strata-ml/strata/internal/limits"
	"github.com/strata-ml/strata/internal/provenance"
	"github.com/strata-ml/strata/internal/yamlstrict"
	"github.com/strata-ml/strata/render"
	"github.com/strata-ml/strata/validation"
)

// SweepSchemaVersion is the schema_version of sweep.json.
const SweepSchemaVersion = 1

// SweepConfig configures Sweep: many pilots against one baseline. The
// pilot keys (data, baseline, finetune, control, validate, policy) mean
// what they mean in a pilot config (docs/PILOT.md); convert is the
// default every candidate starts from. Fields tagged yaml come from the
// sweep config file; the others are set by the caller.
type SweepConfig struct {
	PilotConfig `yaml:",inline" json:"pilot"`
	// Candidates are the structures to try, each converted, fine-tuned
	// and validated against the baseline and the control.
	Candidates []SweepCandidate `yaml:"candidates" json:"candidates"`
	// LRs, when set, repeats the fine-tuning of the dense baseline and of
	// every candidate once per learning rate for lr_robustness (at least
	// MinLRs, increasing).
	LRs []float64 `yaml:"lrs" json:"lrs"`
	// Seeds repeats everything per seed: the data split, the baseline's
	// training, convert, every fine-tuning and validate's draws. Empty:
	// the pilot's Seed alone.
	Seeds []uint64 `yaml:"seeds" json:"seeds"`
	// Jobs is how many stage runs go at once (default 1).
	Jobs int `yaml:"jobs" json:"jobs"`
	// Out receives sweep.json, sweep.md and one directory per seed.
	Out string `yaml:"-" json:"out"`
	// Progress, when set, is called after each finished stage run with
	// the count done and the total.
	Progress func(done, total int, what string) `yaml:"-" json:"-"`
}

// SweepCandidate is one candidate structure of a sweep.
type SweepCandidate struct {
	// Name labels the candidate and its directory: letters, digits, '.',
	// '_' and '-'. Empty: derived from the structure.
	Name string `yaml:"name" json:"name"`
	// ConvertConfig holds its convert options (the keys of a pilot
	// config's convert section); a key left out keeps the sweep's convert
	// value.
	ConvertConfig `yaml:",inline" json:"convert"`
	// Retract, when set, overrides the fine-tuning's polar retraction for
	// this candidate (and its learning-rate runs).
	Retract *bool `yaml:"retract" json:"retract,omitempty"`
}

var candidateName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// DefaultName derives a candidate name from its structure, e.g.
// "monarch-b4-lowrank8", "orthogonal-retract-none" or, data-aware,
// "monarch-b4-lowrank8-calib".
func (c *SweepCandidate) DefaultName() string {
	parts := []string{c.Structure}
	if c.Blocks > 0 {
		parts = append(parts, "b"+strconv.Itoa(c.Blocks))
	}
	if c.Rank > 0 {
		parts = append(parts, "r"+strconv.Itoa(c.Rank))
	}
	if c.Retract != nil && *c.Retract {
		parts = append(parts, "retract")
	}
	res := string(c.Residual)
	if c.Residual == compute.ResidualLowRank {
		res += strconv.Itoa(c.ResidualRank)
	}
	parts = append(parts, res)
	if c.ModelBudget > 0 {
		parts = append(parts, "mb"+strconv.FormatFloat(c.ModelBudget, 'g', -1, 64))
	}
	if c.Calibration != "" && !strings.EqualFold(c.Calibration, "false") {
		parts = append(parts, "calib")
	}
	return strings.Join(parts, "-")
}

// inherit sets every convert option (a field with a yaml key) whose key
// is not present from base.
func (c *SweepCandidate) inherit(base ConvertConfig, present func(key string) bool) {
	dst, src := reflect.ValueOf(&c.ConvertConfig).Elem(), reflect.ValueOf(base)
	for i := range dst.NumField() {
		key, _, _ := strings.Cut(dst.Type().Field(i).Tag.Get("yaml"), ",")
		if key != "" && key != "-" && !present(key) {
			dst.Field(i).Set(src.Field(i))
		}
	}
}

// ParseCandidate reads a candidate from key=value options, the form of
// `strata sweep --candidate` and of an Argo item: the keys of a candidate
// in a sweep config (name, retract and the convert options: structure,
// blocks, rank, kron_factors, residual, residual_rank, residual_density,
// target_error, param_budget, conv_structure, weight_layout,
// allow_larger, condition, calibration and its options, model_budget,
// loss_tolerance, auto_families), '-' standing for '_' as on the command
// line, each value read as in the config file. Keys left out keep base's
// values.
func ParseCandidate(kv map[string]string, base ConvertConfig) (SweepCandidate, error) {
	c := SweepCandidate{ConvertConfig: base}
	c.Include, c.Exclude = slices.Clone(base.Include), slices.Clone(base.Exclude)
	fields := make(map[string]string, len(kv))
	for k, v := range kv {
		key := strings.ReplaceAll(strings.TrimSpace(k), "-", "_")
		if _, dup := fields[key]; dup {
			return c, fmt.Errorf("key %q given twice", key)
		}
		fields[key] = v
	}
	err := yamlstrict.DecodeFields("candidate", fields, &c)
	return c, err
}

// ParseCandidateSpec reads a candidate from "key=value,key=value".
func ParseCandidateSpec(spec string, base ConvertConfig) (SweepCandidate, error) {
	kv := map[string]string{}
	for _, f := range strings.Split(spec, ",") {
		if strings.TrimSpace(f) == "" {
			continue
		}
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return SweepCandidate{}, fmt.Errorf("%q: want key=value", f)
		}
		k = strings.TrimSpace(k)
		if _, dup := kv[k]; dup {
			return SweepCandidate{}, fmt.Errorf("key %q given twice", k)
		}
		kv[k] = v
	}
	return ParseCandidate(kv, base)
}

// ParseSeeds parses a comma-separated list of distinct seeds.
func ParseSeeds(s string) ([]uint64, error) {
	var seeds []uint64
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.ParseUint(strings.TrimSpace(f), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%q is not a seed (a non-negative integer)", f)
		}
		if slices.Contains(seeds, v) {
			return nil, fmt.Errorf("seed %d is listed twice", v)
		}
		seeds = append(seeds, v)
	}
	return seeds, nil
}

// DefaultSweepConfig returns the pilot defaults with one job.
func DefaultSweepConfig() SweepConfig {
	cfg := SweepConfig{PilotConfig: DefaultPilotConfig(), Jobs: 1}
	cfg.kind = "sweep config"
	return cfg
}

// LoadSweepConfig reads a sweep config file onto DefaultSweepConfig as
// strictly as LoadPilotConfig, resolving relative paths against the
// file's directory.
func LoadSweepConfig(path string) (SweepConfig, error) {
	src, err := inputfile.ReadFile(path, limits.ConfigBytes, "config file")
	if err != nil {
		return DefaultSweepConfig(), fmt.Errorf("sweep: %w", err)
	}
	return parseSweepConfig(path, src)
}

// parseSweepConfig is LoadSweepConfig of the file path holding src.
func parseSweepConfig(path string, src []byte) (SweepConfig, error) {
	cfg := DefaultSweepConfig()
	if err := decodeConfig(path, src, &cfg, &cfg.PilotConfig); err != nil {
		return cfg, err
	}
	// A candidate's convert key left out keeps the sweep's convert value.
	for i := range cfg.Candidates {
		present := func(key string) bool {
			_, ok := cfg.lines[fmt.Sprintf("candidates[%d].%s", i, key)]
			return ok
		}
		cfg.Candidates[i].inherit(cfg.Convert, present)
		if present("calibration") {
			cfg.Candidates[i].resolveCalibration(filepath.Dir(path))
		}
	}
	return cfg, cfg.Check()
}

// Check validates the whole config before any work, as PilotConfig.Check
// does, and the sweep's own settings: the candidates (each one's convert
// settings by convert's own check), the learning rates, the seeds and
// the jobs.
func (cfg *SweepConfig) Check() error {
	bad := cfg.configError
	if err := cfg.PilotConfig.Check(); err != nil {
		return err
	}
	if len(cfg.Candidates) == 0 {
		return bad("candidates", "no candidates: list at least one structure")
	}
	seen := map[string]bool{}
	for i := range cfg.Candidates {
		c := &cfg.Candidates[i]
		key := fmt.Sprintf("candidates[%d]", i)
		if c.Name == "" {
			c.Name = c.DefaultName()
		}
		if !candidateName.MatchString(c.Name) {
			return bad(key+".name", "%q: want letters, digits, '.', '_' and '-'", c.Name)
		}
		if seen[c.Name] {
			return bad(key+".name", "%q names two candidates", c.Name)
		}
		seen[c.Name] = true
		cv := c.ConvertConfig
		cv.Model, cv.Out = "-", "-"
		if err := cv.validate(); err != nil {
			return cfg.sectionError(key, err)
		}
	}
	if len(cfg.LRs) > 0 {
		if err := checkLRs(cfg.LRs); err != nil {
			return bad("lrs", "%v", err)
		}
	}
	for i, s := range cfg.Seeds {
		if slices.Contains(cfg.Seeds[:i], s) {
			return bad("seeds", "seed %d is listed twice", s)
		}
	}
	if cfg.Jobs < 1 {
		return bad("jobs", "%d: want at least 1", cfg.Jobs)
	}
	return nil
}

// SweepResult is sweep.json.
type SweepResult struct {
	SchemaVersion int             `json:"schema_version"`
	Tool          provenance.Tool `json:"tool"`
	Config        SweepConfig     `json:"config"`
	// Policy is the gate policy every run was judged against.
	Policy provenance.File `json:"policy"`
	// Seeds are the per-seed shared runs: data, baseline, control and the
	// dense learning-rate sweep. Paths are relative to Out.
	Seeds []SweepSeed `json:"seeds"`
	// Candidates are in the order of the config, each with its runs and
	// its metrics aggregated over the seeds.
	Candidates []SweepCandidateResult `json:"candidates"`
	// VaryingFields depend on the wall clock.
	VaryingFields []string `json:"varying_fields"`
	Seconds       float64  `json:"seconds"`
}

// SweepSeed is what one seed's candidates share.
type SweepSeed struct {
	Seed          uint64    `json:"seed"`
	Dir           string    `json:"dir"`
	Data          PilotData `json:"data"`
	BaselineModel string    `json:"baseline_model"`
	ControlModel  string    `json:"control_model,omitempty"`
	DenseLR       []LRRun   `json:"dense_lr,omitempty"`
}

// SweepRun is one candidate at one seed.
type SweepRun struct {
	Seed uint64 `json:"seed"`
	Dir  string `json:"dir"`
	// Failed says why the run stopped before validation (its convert's
	// --structure auto missed the target, ConvertResult.MissedTarget);
	// its Decision is then NO-GO and Validation empty.
	Failed string `json:"failed,omitempty"`
	// Validation is the run's validation.json, relative to Out.
	Validation string                    `json:"validation"`
	Decision   gate.Decision             `json:"decision"`
	Why        string                    `json:"why"`
	Params     *validation.NullableFloat `json:"params"`
	Accuracy   *validation.NullableFloat `json:"accuracy"`
	// LR is the candidate's learning-rate sweep.
	LR []LRRun `json:"lr,omitempty"`
}

// SweepCandidateResult is one candidate over every seed.
type SweepCandidateResult struct {
	Name      string        `json:"name"`
	Convert   ConvertConfig `json:"convert"`
	Retract   bool          `json:"retract"`
	Structure string        `json:"structure"`
	Runs      []SweepRun    `json:"runs"`
	// Decision is the worst over the seeds: GO only when every seed's
	// run passed the gate, NO-GO when some failed it, else INCONCLUSIVE.
	Decision gate.Decision `json:"decision"`
	// Metrics aggregates every metric (and part) of validation.json over
	// the seeds.
	Metrics validation.Aggregates `json:"metrics"`
}

// sweepSeedRun is the state of one seed while the sweep runs.
type sweepSeedRun struct {
	SweepSeed
	test *arrowio.Dataset
	// testInput is the evaluation data file with its hash.
	testInput provenance.File
}

// sweepCandRun is the state of one candidate at one seed.
type sweepCandRun struct {
	cand      *SweepCandidate
	seed      *sweepSeedRun
	dir       string
	model     string // the fine-tuned candidate
	lr        []LRRun
	validated *validation.Result
	// failed says why the candidate failed before validation at this
	// seed: --structure auto missed its goal (ConvertResult.MissedTarget).
	failed string
}

// Sweep runs many pilots against one baseline. Per seed it prepares the
// data, trains the dense baseline (unless Model is given) and fine-tunes
// the control; per seed and candidate it converts, fine-tunes and
// validates against both, with lr_robustness from a learning-rate sweep
// when LRs is set; every run is judged against the policy. Each stage is
// the function its subcommand calls and writes the same files, under
// Out/seed-S/. Out/sweep.json aggregates the candidates over the seeds
// (mean, seed-to-seed standard deviation, the per-run intervals) and
// Out/sweep.md shows it; `strata report --select-best Out` judges it.
//
// Up to Jobs stage runs go at once; results do not depend on Jobs. Bad
// input is refused before any work starts; a stage that fails stops the
// sweep without writing sweep.json. A candidate whose --structure auto
// misses its target error or budget (ConvertResult.MissedTarget) is not a
// failed stage but a failed candidate: that run stops after convert and
// is NO-GO, with the reason in its SweepRun.Failed and Why.
func Sweep(ctx context.Context, cfg SweepConfig) (*SweepResult, error) {
	start := time.Now()
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Out == "" {
		return nil, inputerr.Fieldf("sweep", "{out} is required")
	}
	if cfg.Jobs == 0 {
		cfg.Jobs = 1
	}
	if len(cfg.Seeds) == 0 {
		cfg.Seeds = []uint64{cfg.Seed}
	}
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	inputs, err := cfg.checkInputs(ctx)
	if err != nil {
		return nil, err
	}
	pol, err := gate.LoadPolicy(cfg.Policy)
	if err != nil {
		return nil, err
	}
	for _, c := range cfg.Candidates {
		if f := c.pilotCalibration("", cfg.Label).Calibration; f != "" { // a calibration file, not the training split
			if _, _, err := readData(ctx, f, cfg.Label); err != nil {
				return nil, err
			}
		}
	}
	out, err := filepath.Abs(cfg.Out)
	if err != nil {
		return nil, fmt.Errorf("sweep: %w", err)
	}
	cfg.Out = out
	claim, err := claimOutput("sweep", "out", out)
	if err != nil {
		return nil, err
	}
	defer claim.release()
	// A summary from an earlier run into Out must not outlive a failure.
	for _, f := range []string{"sweep.json", "sweep.md"} {
		if err := os.Remove(filepath.Join(out, f)); err != nil && !os.IsNotExist(err) {
			return nil, fmt.Errorf("sweep: %w", err)
		}
	}
	pool := &sweepPool{jobs: cfg.Jobs, log: log, progress: cfg.Progress}

	seeds := make([]*sweepSeedRun, len(cfg.Seeds))
	var runs []*sweepCandRun
	for i, s := range cfg.Seeds {
		seeds[i] = &sweepSeedRun{SweepSeed: SweepSeed{Seed: s, Dir: filepath.Join(out, fmt.Sprintf("seed-%d", s))}}
		for j := range cfg.Candidates {
			c := &cfg.Candidates[j]
			runs = append(runs, &sweepCandRun{cand: c, seed: seeds[i], dir: filepath.Join(seeds[i].Dir, c.Name)})
		}
	}
	nLR := len(cfg.LRs)
	own := slices.Index(cfg.LRs, cfg.Finetune.LR)
	pool.total = len(seeds) * (1 + boolInt(cfg.Control) + nLR) // data+baseline, control, dense lrs
	pool.total += len(runs) * (2 + nLR)                        // convert and finetune, lrs, validate
	log.Info("sweep", "candidates", len(cfg.Candidates), "seeds", len(seeds), "lrs", nLR, "stage_runs", pool.total, "jobs", cfg.Jobs, "out", out)

	// Phase 1: data and baseline per seed.
	var tasks []sweepTask
	for _, sd := range seeds {
		tasks = append(tasks, sweepTask{fmt.Sprintf("seed %d: data and baseline", sd.Seed), func(ctx context.Context) error {
			return cfg.prepareSeed(ctx, sd, inputs)
		}})
	}
	if err := pool.run(ctx, tasks); err != nil {
		return nil, err
	}

	// Phase 2: the control, the dense learning-rate runs and every
	// candidate's convert, fine-tune and learning-rate runs.
	tasks = nil
	for _, sd := range seeds {
		if cfg.Control {
			tasks = append(tasks, sweepTask{fmt.Sprintf("seed %d: control", sd.Seed), func(ctx context.Context) error {
				ft := cfg.training(cfg.Finetune, sd.Data, sd.Seed, filepath.Join(sd.Dir, "control"))
				ft.Model = sd.BaselineModel
				res, err := Finetune(ctx, ft)
				if err != nil {
					return err
				}
				sd.ControlModel = filepath.Join(ft.Out, res.Outputs.Model)
				return nil
			}})
		}
		sd.DenseLR = make([]LRRun, nLR)
		for i, lr := range cfg.LRs {
			if i == own && cfg.Control {
				continue // the control itself, scored below
			}
			tasks = append(tasks, sweepTask{fmt.Sprintf("seed %d: dense at lr %g", sd.Seed, lr), func(ctx context.Context) error {
				run, err := cfg.lrRun(ctx, sd, sd.BaselineModel, nil, lr, filepath.Join(sd.Dir, "dense-lr"))
				sd.DenseLR[i] = run
				return err
			}})
		}
	}
	for _, r := range runs {
		tasks = append(tasks, sweepTask{fmt.Sprintf("seed %d: %s convert and fine-tune", r.seed.Seed, r.cand.Name), func(ctx context.Context) error {
			return cfg.convertAndTune(ctx, r)
		}})
	}
	if err := pool.run(ctx, tasks); err != nil {
		return nil, err
	}
	// The learning-rate runs at the fine-tuning's own rate are the
	// control and the candidates' fine-tuning: score those instead of
	// training them again (same seed and config, so the same model).
	tasks = nil
	for _, sd := range seeds {
		if own >= 0 && cfg.Control {
			tasks = append(tasks, sweepTask{fmt.Sprintf("seed %d: dense at lr %g (the control)", sd.Seed, cfg.LRs[own]), func(ctx context.Context) error {
				run, err := cfg.scoreRun(ctx, sd, sd.ControlModel, cfg.LRs[own])
				sd.DenseLR[own] = run
				return err
			}})
		}
	}
	for _, r := range runs {
		if r.failed != "" {
			pool.skip(nLR + 1) // its learning rates and its validation
			continue
		}
		r.lr = make([]LRRun, nLR)
		for i, lr := range cfg.LRs {
			if i == own {
				tasks = append(tasks, sweepTask{fmt.Sprintf("seed %d: %s at lr %g (its fine-tuning)", r.seed.Seed, r.cand.Name, lr), func(ctx context.Context) error {
					run, err := cfg.scoreRun(ctx, r.seed, r.model, lr)
					r.lr[i] = run
					return err
				}})
				continue
			}
			tasks = append(tasks, sweepTask{fmt.Sprintf("seed %d: %s at lr %g", r.seed.Seed, r.cand.Name, lr), func(ctx context.Context) error {
				run, err := cfg.lrRun(ctx, r.seed, filepath.Join(r.dir, "convert", "model.arrow"), r.cand.Retract, lr, filepath.Join(r.dir, "lr"))
				r.lr[i] = run
				return err
			}})
		}
	}
	if err := pool.run(ctx, tasks); err != nil {
		return nil, err
	}

	// Phase 3: validate every run.
	tasks = nil
	for _, r := range runs {
		if r.failed != "" {
			continue
		}
		tasks = append(tasks, sweepTask{fmt.Sprintf("seed %d: %s validate", r.seed.Seed, r.cand.Name), func(ctx context.Context) error {
			return cfg.validateRun(ctx, r)
		}})
	}
	if err := pool.run(ctx, tasks); err != nil {
		return nil, err
	}

	res := &SweepResult{
		SchemaVersion: SweepSchemaVersion, Tool: provenance.Version(), Config: cfg, Policy: pol.Input,
		VaryingFields: []string{"seconds", "candidates[].metrics[latency_ms]"},
	}
	rel := func(p string) string { return relTo(out, p) }
	relRuns := func(rs []LRRun) []LRRun {
		rs = slices.Clone(rs)
		for i := range rs {
			rs[i].Dir = rel(rs[i].Dir)
		}
		return rs
	}
	for _, sd := range seeds {
		s := sd.SweepSeed
		s.Dir, s.BaselineModel, s.DenseLR = rel(s.Dir), rel(s.BaselineModel), relRuns(s.DenseLR)
		if s.ControlModel != "" {
			s.ControlModel = rel(s.ControlModel)
		}
		s.Data.Train, s.Data.Test = rel(s.Data.Train), rel(s.Data.Test)
		res.Seeds = append(res.Seeds, s)
	}
	for j := range cfg.Candidates {
		c := &cfg.Candidates[j]
		cr := SweepCandidateResult{Name: c.Name, Convert: c.ConvertConfig, Retract: cfg.Finetune.Retract}
		if c.Retract != nil {
			cr.Retract = *c.Retract
		}
		var vals []*validation.Result
		var decisions []gate.Decision
		for _, r := range runs {
			if r.cand != c {
				continue
			}
			if r.failed != "" {
				cr.Runs = append(cr.Runs, SweepRun{Seed: r.seed.Seed, Dir: rel(r.dir), Decision: gate.DecisionNoGo,
					Why: "NO-GO: the candidate failed before validation: " + r.failed, Failed: r.failed})
				decisions = append(decisions, gate.DecisionNoGo)
				continue
			}
			g, err := gate.Judge(pol.Input.Path, &pol.Policy, r.validated)
			if err != nil {
				return nil, err
			}
			run := SweepRun{
				Seed: r.seed.Seed, Dir: rel(r.dir), Validation: rel(filepath.Join(r.dir, "validate", r.validated.Outputs.Report)),
				Decision: g.Decision, Why: g.Why, LR: relRuns(r.lr),
			}
			if m := r.validated.Metrics[validation.MetricParams]; m != nil {
				run.Params = m.Candidate
			}
			if m := r.validated.Metrics[validation.MetricAccuracy]; m != nil {
				run.Accuracy = m.Candidate
			}
			cr.Runs = append(cr.Runs, run)
			decisions = append(decisions, run.Decision)
			vals = append(vals, r.validated)
		}
		cr.Structure = c.Structure
		if len(vals) > 0 {
			cr.Structure, _ = vals[0].Describe()
			cr.Metrics = validation.AggregateSeeds(vals)
		}
		cr.Decision = gate.Worst(decisions...)
		res.Candidates = append(res.Candidates, cr)
	}
	res.Seconds = time.Since(start).Seconds()
	md := append(render.SweepMarkdown(res.summary()), res.failedMarkdown()...)
	err = writeFileAtomic(filepath.Join(out, "sweep.md"), md)
	if err == nil {
		err = writeJSON(filepath.Join(out, "sweep.json"), res)
	}
	if err != nil {
		return nil, fmt.Errorf("sweep: %w", err)
	}
	log.Info("sweep done", "out", out, "seconds", fmt.Sprintf("%.1f", res.Seconds))
	return res, nil
}

// summary is what sweep.md shows of r.
func (r *SweepResult) summary() *render.Sweep {
	cfg := &r.Config
	s := &render.Sweep{
		Seeds: cfg.Seeds, LRs: cfg.LRs, Data: r.Seeds[0].Data.Source, Policy: r.Policy.Path,
		Baseline: cmp.Or(cfg.Model, "dense "+cfg.Baseline.Init+" trained per seed"),
	}
	for _, c := range r.Candidates {
		if len(c.Metrics) == 0 {
			continue // failed at every seed: failedMarkdown says why
		}
		sc := render.SweepCandidate{Name: c.Name, Structure: c.Structure, Decision: c.Decision, Metrics: c.Metrics}
		for _, run := range c.Runs {
			sc.Decisions = append(sc.Decisions, run.Decision)
		}
		s.Candidates = append(s.Candidates, sc)
	}
	return s
}

// failedMarkdown is the section of sweep.md that lists the runs that
// failed before validation (SweepRun.Failed), or nothing when none did.
func (r *SweepResult) failedMarkdown() []byte {
	var b strings.Builder
	for _, c := range r.Candidates {
		for _, run := range c.Runs {
			if run.Failed != "" {
				fmt.Fprintf(&b, "- %s, seed %d: %s\n", c.Name, run.Seed, run.Failed)
			}
		}
	}
	if b.Len() == 0 {
		return nil
	}
	return []byte("\n## Failed candidates\n\nNO-GO without validation:\n\n" + b.String())
}

// relTo returns p relative to base when it lies under base, else p.
func relTo(base, p string) string {
	if r, err := filepath.Rel(base, p); err == nil && !strings.HasPrefix(r, "..") {
		return r
	}
	return p
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// training is a training run of the pilot (or of a sweep at one seed)
// with the options t on the data d, writing to out.
func (cfg *PilotConfig) training(t FinetuneConfig, d PilotData, seed uint64, out string) FinetuneConfig {
	t.Train, t.Valid, t.Label, t.Seed = d.Train, d.Valid, cfg.Label, seed
	if t.Valid != "" {
		t.ValidFraction = 0
	}
	t.Out, t.Activation, t.Logger, t.Resume = out, cfg.Activation, cfg.StageLogger, cfg.Resume
	return t
}

// prepareSeed writes the seed's data and trains its baseline.
func (cfg *SweepConfig) prepareSeed(ctx context.Context, sd *sweepSeedRun, in *pilotInputs) error {
	pc := cfg.PilotConfig
	pc.Seed = sd.Seed
	if err := pc.prepareData(filepath.Join(sd.Dir, "data"), &sd.Data, in); err != nil {
		return err
	}
	test, testInput, err := readData(ctx, sd.Data.Test, cfg.Label)
	if err != nil {
		return err
	}
	sd.test, sd.testInput = test, testInput
	sd.BaselineModel = cfg.Model
	if cfg.Model != "" {
		return nil
	}
	ft, err := cfg.baselineInit(ctx, cfg.training(cfg.Baseline, sd.Data, sd.Seed, filepath.Join(sd.Dir, "baseline")), sd.Data.Train)
	if err != nil {
		return err
	}
	res, err := Finetune(ctx, ft)
	if err != nil {
		return err
	}
	sd.BaselineModel = filepath.Join(ft.Out, res.Outputs.Model)
	return nil
}

// convertAndTune converts the seed's baseline to the candidate and
// fine-tunes it, or marks the run failed when auto missed its goal.
func (cfg *SweepConfig) convertAndTune(ctx context.Context, r *sweepCandRun) error {
	cv := r.cand.ConvertConfig.pilotCalibration(r.seed.Data.Train, cfg.Label)
	cv.Model, cv.Out, cv.Seed, cv.Activation, cv.Logger = r.seed.BaselineModel, filepath.Join(r.dir, "convert"), r.seed.Seed, cfg.Activation, cfg.StageLogger
	cres, err := Convert(ctx, cv)
	if err != nil {
		return err
	}
	if err := cres.MissedTarget(); err != nil {
		r.failed = "convert: " + err.Error()
		if cfg.Logger != nil {
			cfg.Logger.Warn("sweep: candidate failed", "candidate", r.cand.Name, "seed", r.seed.Seed, "why", r.failed)
		}
		return nil
	}
	ft := cfg.training(cfg.Finetune, r.seed.Data, r.seed.Seed, filepath.Join(r.dir, "finetune"))
	ft.Model = filepath.Join(cv.Out, cres.Outputs.Model)
	if r.cand.Retract != nil {
		ft.Retract = *r.cand.Retract
	}
	fres, err := Finetune(ctx, ft)
	if err != nil {
		return err
	}
	r.model = filepath.Join(ft.Out, fres.Outputs.Model)
	return nil
}

// lrRun fine-tunes model with the candidate's budget at learning rate lr
// under dir/lr-LR and scores it on the seed's evaluation data.
func (cfg *SweepConfig) lrRun(ctx context.Context, sd *sweepSeedRun, model string, retract *bool, lr float64, dir string) (LRRun, error) {
	t := cfg.Finetune
	t.LR = lr
	ft := cfg.training(t, sd.Data, sd.Seed, filepath.Join(dir, "lr-"+strconv.FormatFloat(lr, 'g', -1, 64)))
	ft.Model = model
	if retract != nil {
		ft.Retract = *retract
	}
	res, err := Finetune(ctx, ft)
	if err != nil {
		return LRRun{}, err
	}
	return cfg.scoreRun(ctx, sd, filepath.Join(ft.Out, res.Outputs.Model), lr)
}

// scoreRun scores a fine-tuned model of a learning-rate sweep on the
// seed's evaluation data; the run's directory is the model's.
func (cfg *SweepConfig) scoreRun(ctx context.Context, sd *sweepSeedRun, model string, lr float64) (LRRun, error) {
	_, acc, loss, err := scoreModelFile(ctx, model, cfg.Activation, sd.test)
	return LRRun{LR: lr, Accuracy: acc, Loss: loss, Dir: filepath.Dir(model)}, err
}

// validateRun writes the run's lr_sweep.json (with LRs) and validates the
// candidate against the seed's baseline and control.
func (cfg *SweepConfig) validateRun(ctx context.Context, r *sweepCandRun) error {
	va := cfg.Validate
	sd := r.seed
	va.Baseline, va.Candidate, va.Control = sd.BaselineModel, r.model, sd.ControlModel
	va.Data, va.Label, va.Out, va.Seed, va.Activation, va.Logger = sd.Data.Test, cfg.Label, filepath.Join(r.dir, "validate"), sd.Seed, cfg.Activation, cfg.StageLogger
	va.TrainLog = filepath.Join(r.dir, "finetune")
	if cfg.Model == "" {
		va.BaselineTrainLog = filepath.Join(sd.Dir, "baseline")
	}
	if sd.ControlModel != "" {
		va.ControlTrainLog = filepath.Join(sd.Dir, "control")
	}
	if len(cfg.LRs) > 0 {
		// Paths relative to the file: its bytes (and validation.json's
		// hash of it) do not depend on where Out is.
		rel := func(runs []LRRun) []LRRun {
			runs = slices.Clone(runs)
			for i := range runs {
				runs[i].Dir, _ = filepath.Rel(r.dir, runs[i].Dir)
			}
			return runs
		}
		data, _ := filepath.Rel(r.dir, sd.Data.Test)
		f := LRSweepFile{
			SchemaVersion: LRSweepSchemaVersion, Task: compute.TaskRegression,
			Data: provenance.File{Path: data, SHA256: sd.testInput.SHA256}, Dense: rel(sd.DenseLR), Candidate: rel(r.lr),
		}
		if sd.DenseLR[0].Accuracy != nil {
			f.Task = compute.TaskClassification
		}
		va.LRSweep = filepath.Join(r.dir, "lr_sweep.json")
		if err := writeJSON(va.LRSweep, f); err != nil {
			return fmt.Errorf("sweep: %w", err)
		}
	}
	res, err := Validate(ctx, va)
	r.validated = res
	return err
}

// sweepTask is one stage run of a sweep phase.
type sweepTask struct {
	what string
	run  func(ctx context.Context) error
}

// sweepPool runs the tasks of a phase, up to jobs at once.
type sweepPool struct {
	jobs, done, total int
	log               *slog.Logger
	progress          func(done, total int, what string)
	mu                sync.Mutex
}

// skip takes n stage runs that will not run (a failed candidate's) off
// the total the progress counts to.
func (p *sweepPool) skip(n int) {
	p.mu.Lock()
	p.total -= n
	p.mu.Unlock()
}

// run runs tasks and returns the first error (in task order) after every
// started task has stopped; an error cancels the tasks not yet started.
func (p *sweepPool) run(ctx context.Context, tasks []sweepTask) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make([]error, len(tasks))
	sem := make(chan struct{}, p.jobs)
	var wg sync.WaitGroup
	for i, t := range tasks {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if ctx.Err() != nil {
				return
			}
			t0 := time.Now()
			if err := t.run(ctx); err != nil {
				errs[i] = fmt.Errorf("sweep: %s: %w", t.what, err)
				cancel()
				return
			}
			p.mu.Lock()
			p.done++
			done := p.done
			p.mu.Unlock()
			p.log.Info(fmt.Sprintf("sweep [%d/%d] %s", done, p.total, t.what), "seconds", fmt.Sprintf("%.1f", time.Since(t0).Seconds()))
			if p.progress != nil {
				p.progress(done, p.total, t.what)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return ctx.Err()
}
