// Command torchsweep runs the PyTorch path of the evidence (`make
// evidence`) for one classifier of examples/evidence/mnist_models.py, per
// seed and candidate, and writes its outputs in the layout of `strata
// sweep`, so that `go run ./examples/evidence` reads it beside the MLP
// sweeps:
//
//	go run ./examples/evidence/torchsweep -class MnistCNN \
//	  -train DATA/train.csv -test DATA/test.csv -out bin/evidence/mnist-cnn
//
// Per seed S: python3 mnist_models.py trains the dense classifier
// (seed-S/baseline/model.safetensors). Per candidate C: strata convert
// (seed-S/C/convert), strata export --factors, examples/pytorch/
// finetune_loop.py (strata_torch.apply, the fine-tuning next to the
// equal-budget control, torch.onnx.export of baseline, candidate and
// control into seed-S/C/tuned), then strata validate of the three ONNX
// files in ONNX Runtime on the test file (seed-S/C/validate). Every run
// is seeded with S.
//
// OUT/sweep.json is a stages.SweepResult: the candidates' validations
// aggregated over the seeds by validation.AggregateSeeds, Config.Model
// naming the classifier (its baseline is trained by PyTorch, not by
// strata). OUT/torch.json is a torchResult: the command, the recipe and
// the wall time of every step. Both are written last, under temporary
// names: a failed run leaves neither.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/strata-ml/strata/stages"
	"github.com/strata-ml/strata/validation"
)

// candidate is one conversion of the classifier: strata convert's flags.
type candidate struct {
	Name  string   `json:"name"`
	Flags []string `json:"flags"`
	// Convert is how sweep.json describes it (structure, blocks, ranks).
	Convert stages.ConvertConfig `json:"-"`
}

// classes are the classifiers with their input shape and candidates: a
// Monarch trunk with 4 blocks and a low-rank trunk of a quarter of the
// hidden width, each with a rank-4 residual. The CNN's 3x3 convolutions
// can only be factored low-rank (--conv-structure lowrank); the
// transformer's attention stays dense, as strata_torch.apply requires.
var classes = map[string]struct {
	shape      string
	candidates []candidate
}{
	"MnistCNN": {"1,28,28", []candidate{
		monarch("--conv-structure", "lowrank"),
		lowrank(64),
	}},
	"MnistTransformer": {"28,28", []candidate{
		monarch("--exclude", "encoder.self_attn.*"),
		lowrank(16, "--exclude", "encoder.self_attn.*"),
	}},
}

func monarch(extra ...string) candidate {
	return candidate{"monarch-b4-res4", append([]string{"--structure", "monarch", "--blocks", "4", "--residual", "lowrank", "--residual-rank", "4"}, extra...),
		stages.ConvertConfig{Structure: "monarch", Blocks: 4, Residual: "lowrank", ResidualRank: 4}}
}

func lowrank(rank int, extra ...string) candidate {
	return candidate{fmt.Sprintf("lowrank-r%d-res4", rank), append([]string{"--structure", "lowrank", "--rank", strconv.Itoa(rank), "--residual", "lowrank", "--residual-rank", "4"}, extra...),
		stages.ConvertConfig{Structure: "lowrank", Rank: rank, Residual: "lowrank", ResidualRank: 4}}
}

// validate's settings on the PyTorch path: the MLP sweeps' 10 timing
// rounds, and the Jacobian at 16 inputs instead of 64: on ONNX Runtime it
// is taken by finite differences, 2 x 784 forward passes an input, and on
// these ReLU and max-pool models validate finds it unreliable (kinks
// within the step) at almost every input anyway.
const (
	latencyRuns     = 10
	jacobianSamples = 16
)

// torchResult is OUT/torch.json.
type torchResult struct {
	Command        string      `json:"command"`
	Class          string      `json:"class"`
	Shape          string      `json:"shape"`
	BaselineEpochs int         `json:"baseline_epochs"`
	Epochs         int         `json:"epochs"`
	LR             float64     `json:"lr"`
	Candidates     []candidate `json:"candidates"`
	// Validate lists the flags validate ran with beyond its defaults.
	Validate []string `json:"validate"`
	// BaselineSeconds is the dense training's wall time per seed.
	BaselineSeconds []float64 `json:"baseline_seconds"`
	// Steps holds, per candidate and seed, the wall time of each step.
	Steps   map[string][]stepTimes `json:"steps"`
	Seconds float64                `json:"seconds"`
}

// stepTimes are the wall times of one candidate's pilot at one seed, in
// seconds: convert with the factors export, the PyTorch loop (the
// candidate's fine-tuning, the control's and the three exports) and
// validate.
type stepTimes struct {
	Convert  float64 `json:"convert"`
	Loop     float64 `json:"loop"`
	Validate float64 `json:"validate"`
}

type options struct {
	class, train, test, out, strata, python, source string
	seeds                                           []uint64
	baselineEpochs, epochs                          int
	lr                                              float64
}

func main() {
	var o options
	seeds := flag.String("seeds", "0,1,2", "seeds, comma-separated")
	flag.StringVar(&o.class, "class", "MnistCNN", "the classifier of mnist_models.py: MnistCNN or MnistTransformer")
	flag.StringVar(&o.train, "train", "", "training data (CSV, the label column \"label\")")
	flag.StringVar(&o.test, "test", "", "validate's evaluation data (CSV)")
	flag.StringVar(&o.out, "out", "", "output directory")
	flag.StringVar(&o.strata, "strata", "bin/strata", "the strata binary (built with -tags onnxruntime)")
	flag.StringVar(&o.python, "python", "/usr/bin/python3", "Python with torch and onnx (Debian's python3-torch, python3-onnx)")
	flag.StringVar(&o.source, "source", "MNIST (Yann LeCun and Corinna Cortes, CC BY-SA 3.0)", "the data's description")
	flag.IntVar(&o.baselineEpochs, "baseline-epochs", 2, "epochs of the dense classifier's training")
	flag.IntVar(&o.epochs, "epochs", 1, "epochs of the candidate's and the control's fine-tuning")
	flag.Float64Var(&o.lr, "lr", 1e-3, "learning rate of every training")
	flag.Parse()
	var err error
	if o.seeds, err = stages.ParseSeeds(*seeds); err != nil || o.train == "" || o.test == "" || o.out == "" || o.baselineEpochs < 1 || o.epochs < 1 || flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "torchsweep: want -train, -test, -out, positive epochs and -seeds (%v)\n", err)
		os.Exit(2)
	}
	if _, ok := classes[o.class]; !ok {
		fmt.Fprintf(os.Stderr, "torchsweep: -class %q: want MnistCNN or MnistTransformer\n", o.class)
		os.Exit(2)
	}
	cmd := "go run ./examples/evidence/torchsweep " + strings.Join(os.Args[1:], " ")
	if err := run(o, cmd); err != nil {
		fmt.Fprintln(os.Stderr, "torchsweep:", err)
		os.Exit(1)
	}
}

func run(o options, command string) error {
	start := time.Now()
	cl := classes[o.class]
	here, err := filepath.Abs("examples/evidence")
	if err != nil {
		return err
	}
	models := filepath.Join(here, "mnist_models.py")
	loop := filepath.Join(here, "..", "pytorch", "finetune_loop.py")
	tr := torchResult{Command: command, Class: o.class, Shape: cl.shape, BaselineEpochs: o.baselineEpochs, Epochs: o.epochs, LR: o.lr,
		Candidates: cl.candidates, Steps: map[string][]stepTimes{},
		Validate: []string{"--latency-runs", strconv.Itoa(latencyRuns), "--max-jacobian-samples", strconv.Itoa(jacobianSamples)}}
	res := &stages.SweepResult{SchemaVersion: stages.SweepSchemaVersion}
	res.Config.Model = fmt.Sprintf("PyTorch %s (examples/evidence/mnist_models.py)", o.class)
	res.Config.Control = true
	res.Config.Seeds = o.seeds
	res.Config.Jobs = 1
	res.Config.Finetune.Epochs, res.Config.Finetune.LR, res.Config.Finetune.BatchSize, res.Config.Finetune.Optimizer = o.epochs, o.lr, 64, "adam"
	res.Config.Baseline.Epochs, res.Config.Baseline.LR, res.Config.Baseline.BatchSize, res.Config.Baseline.Optimizer = o.baselineEpochs, o.lr, 64, "adam"
	trainRows, err := countRows(o.train)
	if err != nil {
		return err
	}
	vals := make([][]*validation.Result, len(cl.candidates))
	for _, seed := range o.seeds {
		s := strconv.FormatUint(seed, 10)
		sdir := "seed-" + s
		base := filepath.Join(sdir, "baseline", "model.safetensors")
		if err := os.MkdirAll(filepath.Join(o.out, sdir, "baseline"), 0o755); err != nil {
			return err
		}
		t, err := timed(o.python, models, "--class", o.class, "--train", o.train, "--epochs", strconv.Itoa(o.baselineEpochs),
			"--lr", fmt.Sprint(o.lr), "--seed", s, "--out", filepath.Join(o.out, base))
		if err != nil {
			return err
		}
		tr.BaselineSeconds = append(tr.BaselineSeconds, t)
		res.Seeds = append(res.Seeds, stages.SweepSeed{Seed: seed, Dir: sdir, BaselineModel: base,
			Data: stages.PilotData{Source: o.source, Train: o.train, Test: o.test, TrainRows: trainRows}})
		for i, c := range cl.candidates {
			dir := filepath.Join(o.out, sdir, c.Name)
			conv, tuned, val := filepath.Join(dir, "convert"), filepath.Join(dir, "tuned"), filepath.Join(dir, "validate")
			factors := filepath.Join(conv, "factors.safetensors")
			var st stepTimes
			t1, err := timed(o.strata, append([]string{"convert", "--model", filepath.Join(o.out, base), "--out", conv, "--seed", s}, c.Flags...)...)
			if err != nil {
				return err
			}
			t2, err := timed(o.strata, "export", "--model", filepath.Join(conv, "model.arrow"), "--factors", "--format", "safetensors", "--out", factors)
			if err != nil {
				return err
			}
			st.Convert = t1 + t2
			if st.Loop, err = timed(o.python, loop, "--model-class", models+":"+o.class, "--checkpoint", filepath.Join(o.out, base),
				"--factors", factors, "--train", o.train, "--eval", o.test, "--input-shape", cl.shape,
				"--epochs", strconv.Itoa(o.epochs), "--lr", fmt.Sprint(o.lr), "--seed", s, "--out", tuned); err != nil {
				return err
			}
			onnx := func(n string) string { return filepath.Join(tuned, n+".onnx") }
			if st.Validate, err = timed(o.strata, "validate", "--baseline", onnx("baseline"), "--candidate", onnx("candidate"),
				"--control", onnx("control"), "--data", o.test, "--out", val, "--seed", s,
				"--latency-runs", strconv.Itoa(latencyRuns), "--max-jacobian-samples", strconv.Itoa(jacobianSamples)); err != nil {
				return err
			}
			v, _, err := validation.Read(filepath.Join(val, validation.FileName))
			if err != nil {
				return err
			}
			vals[i] = append(vals[i], v)
			tr.Steps[c.Name] = append(tr.Steps[c.Name], st)
			if len(res.Candidates) <= i {
				res.Candidates = append(res.Candidates, stages.SweepCandidateResult{Name: c.Name, Convert: c.Convert, Structure: c.Convert.Structure})
			}
			rel, _ := filepath.Rel(o.out, filepath.Join(val, validation.FileName))
			res.Candidates[i].Runs = append(res.Candidates[i].Runs, stages.SweepRun{Seed: seed, Dir: filepath.Join(sdir, c.Name), Validation: rel,
				Params: v.Metrics[validation.MetricParams].Candidate, Accuracy: v.Metrics[validation.MetricAccuracy].Candidate})
			res.Tool = v.Tool
			if n := v.NExamples; n > 0 {
				res.Seeds[len(res.Seeds)-1].Data.TestRows = n
			}
		}
	}
	for i := range res.Candidates {
		res.Candidates[i].Metrics = validation.AggregateSeeds(vals[i])
	}
	res.Seconds = time.Since(start).Seconds()
	tr.Seconds = res.Seconds
	res.VaryingFields = []string{"seconds", validation.MetricLatencyMS}
	if err := writeJSON(filepath.Join(o.out, "torch.json"), tr); err != nil {
		return err
	}
	return writeJSON(filepath.Join(o.out, "sweep.json"), res)
}

// countRows counts the data rows of a CSV file with a header: its lines
// but the first.
func countRows(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	n := bytes.Count(b, []byte("\n"))
	if len(b) > 0 && b[len(b)-1] != '\n' {
		n++
	}
	if n < 2 {
		return 0, fmt.Errorf("%s: no data rows", path)
	}
	return n - 1, nil
}

// timed runs a command, its output on stderr, and returns its wall time.
func timed(name string, args ...string) (float64, error) {
	start := time.Now()
	cmd := exec.Command(name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("%s %s: %w\n%s", filepath.Base(name), strings.Join(args, " "), err, out.String())
	}
	return time.Since(start).Seconds(), nil
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", " ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
