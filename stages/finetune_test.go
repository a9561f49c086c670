package stages

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/compute"
	"github.com/strata-ml/strata/internal/datasets"
	"github.com/strata-ml/strata/modelmap"
)

// digitsSplit writes the embedded digits data as a seeded 75/25 split
// (train.arrow, test.arrow) into dir.
func digitsSplit(t *testing.T, dir string) (train, test string, testDS *arrowio.Dataset) {
	t.Helper()
	ds, err := datasets.Digits()
	if err != nil {
		t.Fatal(err)
	}
	tr, te, err := Split(ds, 0.25, 1)
	if err != nil {
		t.Fatal(err)
	}
	train, test = filepath.Join(dir, "train.arrow"), filepath.Join(dir, "test.arrow")
	if err := arrowio.WriteDataset(train, tr); err != nil {
		t.Fatal(err)
	}
	if err := arrowio.WriteDataset(test, te); err != nil {
		t.Fatal(err)
	}
	return train, test, te
}

// irisFile writes the embedded iris data to dir/iris.csv.
func irisFile(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "iris.csv")
	if err := datasets.Write("iris", path); err != nil {
		t.Fatal(err)
	}
	return path
}

// modelAccuracy evaluates a model file on raw (unstandardised) data in
// float64, applying the model's own standardisation.
func modelAccuracy(t *testing.T, path string, ds *arrowio.Dataset) float64 {
	t.Helper()
	m, err := arrowio.ReadModel(path)
	if err != nil {
		t.Fatal(err)
	}
	net, err := modelmap.Network[float64](m)
	if err != nil {
		t.Fatal(err)
	}
	s, err := modelmap.Standardize(ds, &m.Arch)
	if err != nil {
		t.Fatal(err)
	}
	_, acc := evaluate(net, s.X, s.Y, s.N, compute.NewWorkspace[float64]())
	return acc
}

// TestDigitsDenseThenConverted is the acceptance test of training and
// fine-tuning (PRODUCT.md section 3): a dense
// 64-256-256-10 MLP trained from scratch reaches >= 95% on a held-out
// quarter of digits, and after convert (monarch + low-rank residual, the
// defaults) finetune brings the decomposed model back to within one point
// of it. The held-out split is only measured (patience 0), never used to
// choose weights.
func TestDigitsDenseThenConverted(t *testing.T) {
	dir := t.TempDir()
	train, test, testDS := digitsSplit(t, dir)

	start := time.Now()
	cfg := DefaultFinetuneConfig()
	cfg.Init, cfg.Train, cfg.Valid, cfg.Out = "mlp:64-256-256-10:relu", train, test, filepath.Join(dir, "dense")
	cfg.Seed = 1
	dense, err := Finetune(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	denseAcc := float64(dense.FinalValid.Accuracy)
	t.Logf("dense: test accuracy %.4f after %d epochs (%.1fs, %.0f samples/s)", denseAcc, dense.Epochs, time.Since(start).Seconds(), dense.SamplesPerSecond)
	if denseAcc < 0.95 {
		t.Fatalf("dense test accuracy %.4f, want >= 0.95", denseAcc)
	}
	if got := modelAccuracy(t, filepath.Join(cfg.Out, "model.arrow"), testDS); math.Abs(got-denseAcc) > 1.5/float64(testDS.N) {
		t.Errorf("model.arrow evaluated in float64: accuracy %.4f, finetune.json says %.4f", got, denseAcc)
	}

	ccfg := DefaultConvertConfig()
	ccfg.Model, ccfg.Out = filepath.Join(cfg.Out, "model.arrow"), filepath.Join(dir, "converted")
	conv, err := Convert(context.Background(), ccfg)
	if err != nil {
		t.Fatal(err)
	}
	before := modelAccuracy(t, filepath.Join(ccfg.Out, "model.arrow"), testDS)

	start = time.Now()
	fcfg := DefaultFinetuneConfig()
	fcfg.Model, fcfg.Train, fcfg.Valid, fcfg.Out = filepath.Join(ccfg.Out, "model.arrow"), train, test, filepath.Join(dir, "finetuned")
	fcfg.Epochs, fcfg.Seed = 10, 1
	ft, err := Finetune(context.Background(), fcfg)
	if err != nil {
		t.Fatal(err)
	}
	after := float64(ft.FinalValid.Accuracy)
	t.Logf("converted (%.0f%% of the dense parameters): test accuracy %.4f before finetune, %.4f after (%.1fs, %.0f samples/s)",
		100*conv.Totals.Ratio, before, after, time.Since(start).Seconds(), ft.SamplesPerSecond)
	if after < denseAcc-0.01 {
		t.Errorf("finetuned decomposed model: accuracy %.4f, want within 1 point of the dense %.4f", after, denseAcc)
	}
	if ft.Standardization != "model" {
		t.Errorf("standardization %q, want the model's own", ft.Standardization)
	}

	// The finetuned model keeps convert's structure and tensor names.
	cm, _ := arrowio.ReadModel(ccfg.Out + "/model.arrow")
	fm, _ := arrowio.ReadModel(fcfg.Out + "/model.arrow")
	for i := range cm.Arch.Layers {
		if !bytes.Equal(cm.Arch.Layers[i].Structure, fm.Arch.Layers[i].Structure) {
			t.Errorf("layer %d: structure %s, convert wrote %s", i, fm.Arch.Layers[i].Structure, cm.Arch.Layers[i].Structure)
		}
	}
	if len(cm.Tensors) != len(fm.Tensors) {
		t.Fatalf("%d tensors, convert wrote %d", len(fm.Tensors), len(cm.Tensors))
	}
	for i := range cm.Tensors {
		if cm.Tensors[i].Name != fm.Tensors[i].Name || cm.Tensors[i].Role != fm.Tensors[i].Role {
			t.Errorf("tensor %d: %s (%s), convert wrote %s (%s)", i, fm.Tensors[i].Name, fm.Tensors[i].Role, cm.Tensors[i].Name, cm.Tensors[i].Role)
		}
	}
	// The dense copy computes what the decomposed model computes.
	if got := modelAccuracy(t, filepath.Join(fcfg.Out, "model.materialized.arrow"), testDS); math.Abs(got-after) > 1.5/float64(testDS.N) {
		t.Errorf("dense copy: accuracy %.4f, decomposed %.4f", got, after)
	}
	if got := dirEntries(t, fcfg.Out); !slices.Equal(got, []string{"finetune.json", "model.arrow", "model.materialized.arrow", "train_log.arrow"}) {
		t.Errorf("outputs %v", got)
	}
}

// smallConfig returns a quick run on iris with validation, mid-epoch
// checkpoints and early stopping (a large learning rate on a small
// validation split: the validation loss soon stops improving).
func smallConfig(dir, train string) FinetuneConfig {
	cfg := DefaultFinetuneConfig()
	cfg.Init, cfg.Train, cfg.Out = "mlp:4-16-16-3:tanh+ln", train, filepath.Join(dir, "out")
	cfg.ValidFraction, cfg.Patience = 0.2, 2
	cfg.Epochs, cfg.BatchSize, cfg.LR, cfg.Seed = 30, 16, 0.05, 5
	cfg.CheckpointEvery = 4
	return cfg
}

func outputBytes(t *testing.T, out string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	for _, name := range []string{"model.arrow", "model.materialized.arrow", "train_log.arrow"} {
		files[name] = readFile(t, filepath.Join(out, name))
	}
	return files
}

func sameOutputs(t *testing.T, got, want map[string][]byte) {
	t.Helper()
	for name, w := range want {
		if !bytes.Equal(got[name], w) {
			t.Errorf("%s differs (%d bytes, want %d)", name, len(got[name]), len(w))
		}
	}
}

func TestFinetuneDeterministic(t *testing.T) {
	dir := t.TempDir()
	train := irisFile(t, dir)
	for _, precision := range []string{PrecisionFloat32, PrecisionFloat64} {
		t.Run(precision, func(t *testing.T) {
			var first map[string][]byte
			for run := range 2 {
				cfg := smallConfig(t.TempDir(), train)
				cfg.Precision = precision
				if _, err := Finetune(context.Background(), cfg); err != nil {
					t.Fatal(err)
				}
				files := outputBytes(t, cfg.Out)
				if run == 0 {
					first = files
					continue
				}
				sameOutputs(t, files, first)
			}
		})
	}
}

// TestFinetuneResume interrupts runs at several steps (by cancelling the
// context, as SIGTERM does) and resumes them: the outputs must be the
// bytes of the uninterrupted run. cli's TestFinetuneSIGTERMResume does the
// same with a real signal to a child process.
func TestFinetuneResume(t *testing.T) {
	dir := t.TempDir()
	train := irisFile(t, dir)
	tests := []struct {
		name string
		mod  func(*FinetuneConfig)
		cuts []int // steps after which the context is cancelled, in order
	}{
		{"float32", func(*FinetuneConfig) {}, []int{1, 6, 7, 19, 24, 70}},
		{"float64 sgd", func(c *FinetuneConfig) {
			c.Precision, c.Optimizer, c.CheckpointEvery = PrecisionFloat64, compute.OptimizerSGD, 0
		}, []int{5, 14, 45}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ref := smallConfig(t.TempDir(), train)
			tt.mod(&ref)
			refRes, err := Finetune(context.Background(), ref)
			if err != nil {
				t.Fatal(err)
			}
			want := outputBytes(t, ref.Out)
			if !refRes.EarlyStopped {
				t.Fatalf("the reference run did not stop early (%d steps): the test no longer covers restoring the best weights", refRes.Steps)
			}
			t.Logf("reference: %d steps, best epoch %d", refRes.Steps, refRes.RestoredEpoch)

			cfg := smallConfig(t.TempDir(), train)
			tt.mod(&cfg)
			for _, cut := range tt.cuts {
				ctx, cancel := context.WithCancel(context.Background())
				c := cfg
				c.Resume = true
				c.Progress = func(p FinetuneProgress) {
					if p.Step == cut {
						cancel()
					}
				}
				_, err := Finetune(ctx, c)
				cancel()
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("cut at %d: err = %v, want context.Canceled", cut, err)
				}
				if errors.Is(err, ErrInput) {
					t.Fatalf("an interruption is not bad input: %v", err)
				}
				if got := dirEntries(t, cfg.Out); !slices.Equal(got, []string{"checkpoint"}) {
					t.Fatalf("cut at %d: out holds %v, want only the checkpoint", cut, got)
				}
			}
			cfg.Resume = true
			res, err := Finetune(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if res.ResumedFromStep != tt.cuts[len(tt.cuts)-1] {
				t.Errorf("resumed from step %d, want %d", res.ResumedFromStep, tt.cuts[len(tt.cuts)-1])
			}
			sameOutputs(t, outputBytes(t, cfg.Out), want)
			if res.EarlyStopped != refRes.EarlyStopped || res.RestoredEpoch != refRes.RestoredEpoch || res.Steps != refRes.Steps {
				t.Errorf("resumed run: early stop %v epoch %d steps %d, uninterrupted %v %d %d",
					res.EarlyStopped, res.RestoredEpoch, res.Steps, refRes.EarlyStopped, refRes.RestoredEpoch, refRes.Steps)
			}
			if got := dirEntries(t, cfg.Out); slices.Contains(got, "checkpoint") {
				t.Errorf("the checkpoint is still there after success: %v", got)
			}
		})
	}
}

func TestFinetuneResumeChecks(t *testing.T) {
	dir := t.TempDir()
	train := irisFile(t, dir)
	cfg := smallConfig(dir, train)
	ctx, cancel := context.WithCancel(context.Background())
	c := cfg
	c.Progress = func(p FinetuneProgress) {
		if p.Step == 5 {
			cancel()
		}
	}
	if _, err := Finetune(ctx, c); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}

	changed := cfg
	changed.Resume, changed.LR = true, 0.02
	_, err := Finetune(context.Background(), changed)
	if !errors.Is(err, ErrInput) || !bytes.Contains([]byte(err.Error()), []byte(`lr: 0.05 -> 0.02`)) {
		t.Errorf("other lr: err = %v, want ErrInput naming lr", err)
	}
	other := filepath.Join(dir, "other.csv")
	os.WriteFile(other, append(readFile(t, train), []byte("5,3,1.5,0.2,0\n")...), 0o644)
	changed = cfg
	changed.Resume, changed.Train = true, other
	if _, err := Finetune(context.Background(), changed); !errors.Is(err, ErrInput) {
		t.Errorf("other data: err = %v, want ErrInput", err)
	}
	// The checkpoint survived both refusals; a moved input with the same
	// content resumes.
	moved := filepath.Join(dir, "moved.csv")
	os.WriteFile(moved, readFile(t, train), 0o644)
	changed = cfg
	changed.Resume, changed.Train, changed.CheckpointEvery = true, moved, 0
	res, err := Finetune(context.Background(), changed)
	if err != nil {
		t.Fatal(err)
	}
	if res.ResumedFromStep != 5 {
		t.Errorf("resumed from %d, want 5", res.ResumedFromStep)
	}

	// --resume without a checkpoint starts from step 0.
	fresh := smallConfig(t.TempDir(), train)
	fresh.Resume = true
	if res, err := Finetune(context.Background(), fresh); err != nil || res.ResumedFromStep != 0 {
		t.Errorf("resume with no checkpoint: %v, resumed from %v", err, res)
	}
}

// TestFinetuneResumeFinished: resuming a run whose outputs are in place
// (a retried step that had finished) returns the recorded result and
// trains nothing; another config or other data trains.
func TestFinetuneResumeFinished(t *testing.T) {
	dir := t.TempDir()
	train := irisFile(t, dir)
	cfg := smallConfig(filepath.Join(dir, "out"), train)
	first, err := Finetune(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	before := outputBytes(t, cfg.Out)
	again := cfg
	again.Resume = true
	steps := 0
	again.Progress = func(FinetuneProgress) { steps++ }
	res, err := Finetune(context.Background(), again)
	if err != nil {
		t.Fatal(err)
	}
	if steps != 0 || res.WallSeconds != first.WallSeconds {
		t.Errorf("resuming a finished run trained %d steps (wall %v, recorded %v)", steps, res.WallSeconds, first.WallSeconds)
	}
	sameOutputs(t, outputBytes(t, cfg.Out), before)
	other := again
	other.LR = 0.02
	if _, err := Finetune(context.Background(), other); err != nil || steps == 0 {
		t.Errorf("another lr: %v after %d steps, want a run that trains", err, steps)
	}
}

func TestFinetuneEarlyStopping(t *testing.T) {
	dir := t.TempDir()
	train := irisFile(t, dir)
	cfg := smallConfig(dir, train)
	res, err := Finetune(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !res.EarlyStopped || res.Epochs >= cfg.Epochs {
		t.Fatalf("early_stopped %v after %d of %d epochs, want an early stop", res.EarlyStopped, res.Epochs, cfg.Epochs)
	}
	if res.BestValid.Epoch != res.Epochs-cfg.Patience || res.RestoredEpoch != res.BestValid.Epoch {
		t.Errorf("best epoch %d, restored %d, stopped after %d with patience %d", res.BestValid.Epoch, res.RestoredEpoch, res.Epochs, cfg.Patience)
	}
	log, err := arrowio.ReadTrainLog(filepath.Join(cfg.Out, "train_log.arrow"))
	if err != nil {
		t.Fatal(err)
	}
	if len(log.Rows) != res.Steps {
		t.Fatalf("%d log rows, %d steps", len(log.Rows), res.Steps)
	}
	var validRows int
	for i, r := range log.Rows {
		if r.Step != int64(i+1) || r.Epoch != int64(i/res.StepsPerEpoch+1) {
			t.Fatalf("row %d: step %d epoch %d", i, r.Step, r.Epoch)
		}
		if !math.IsNaN(r.ValidLoss) {
			validRows++
			if (i+1)%res.StepsPerEpoch != 0 {
				t.Errorf("row %d: validation loss on a step that ends no epoch", i)
			}
		}
		if len(r.LayerGradNorms) != 3 || r.GradNorm <= 0 {
			t.Fatalf("row %d: grad norms %v (global %v)", i, r.LayerGradNorms, r.GradNorm)
		}
		var sq float64
		for _, g := range r.LayerGradNorms {
			sq += g * g
		}
		// The global norm also counts the layer norms' parameters.
		if math.Sqrt(sq) > r.GradNorm*(1+1e-9) {
			t.Errorf("row %d: layer norms %v exceed the global %v", i, r.LayerGradNorms, r.GradNorm)
		}
	}
	if validRows != res.Epochs {
		t.Errorf("%d rows with validation metrics, want one per epoch (%d)", validRows, res.Epochs)
	}
	if !slices.Equal(log.Layers, []string{"0", "3", "6"}) {
		t.Errorf("log layers %q", log.Layers)
	}
	// The written model is the best epoch's: its validation loss in
	// finetune.json is the best one.
	var js struct {
		BestValid EpochMetrics `json:"best_valid"`
	}
	if err := json.Unmarshal(readFile(t, filepath.Join(cfg.Out, "finetune.json")), &js); err != nil {
		t.Fatal(err)
	}
	if js.BestValid.Loss != res.BestValid.Loss {
		t.Errorf("finetune.json best loss %v, result %v", js.BestValid.Loss, res.BestValid.Loss)
	}
}

// TestFinetuneFreeze checks that a frozen part of a decomposed model is
// bit for bit unchanged, weight decay included, while the rest trains.
func TestFinetuneFreeze(t *testing.T) {
	dir := t.TempDir()
	train := irisFile(t, dir)
	dense := writeTestModel(t, dir, "dense.arrow", testMLP([]int{4, 16, 3}, 2))
	ccfg := DefaultConvertConfig()
	ccfg.Model, ccfg.Out, ccfg.Blocks, ccfg.ResidualRank = dense, filepath.Join(dir, "conv"), 2, 2
	ccfg.AllowLarger = true // 16 x 4 and 3 x 16: S + R is larger than these layers
	if _, err := Convert(context.Background(), ccfg); err != nil {
		t.Fatal(err)
	}
	converted := filepath.Join(ccfg.Out, "model.arrow")
	in, _ := arrowio.ReadModel(converted)
	for _, frozen := range []compute.Role{compute.RoleTrunk, compute.RoleCorrection} {
		t.Run(string(frozen), func(t *testing.T) {
			cfg := DefaultFinetuneConfig()
			cfg.Model, cfg.Train, cfg.Out, cfg.Freeze = converted, train, filepath.Join(dir, string(frozen)), frozen
			cfg.Epochs, cfg.WeightDecay, cfg.LR = 3, 0.5, 0.01
			res, err := Finetune(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if res.ParamsFrozen == 0 {
				t.Error("params_frozen is 0")
			}
			out, _ := arrowio.ReadModel(filepath.Join(cfg.Out, "model.arrow"))
			for i, ts := range out.Tensors {
				same := slices.Equal(ts.Data, in.Tensors[i].Data)
				if ts.Role == frozen && !same {
					t.Errorf("frozen %s changed", ts.Name)
				}
				if ts.Role != frozen && same {
					t.Errorf("trained %s did not change", ts.Name)
				}
			}
		})
	}
}

func TestFinetuneRegression(t *testing.T) {
	dir := t.TempDir()
	ds := &arrowio.Dataset{N: 64, D: 3}
	for i := range ds.N {
		a, b, c := float64(i%8), float64(i/8), float64(i%5)
		ds.X = append(ds.X, a, b, c)
		ds.Y = append(ds.Y, 0.5*a-0.25*b+c+1)
	}
	train := filepath.Join(dir, "reg.parquet")
	if err := arrowio.WriteDataset(train, ds); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultFinetuneConfig()
	cfg.Init, cfg.Task, cfg.Train, cfg.Out = "mlp:3-16-1", compute.TaskRegression, train, filepath.Join(dir, "out")
	cfg.ValidFraction, cfg.Epochs, cfg.LR, cfg.BatchSize = 0.25, 40, 0.01, 8
	res, err := Finetune(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !math.IsNaN(float64(res.FinalValid.Accuracy)) {
		t.Errorf("regression accuracy %v, want none", res.FinalValid.Accuracy)
	}
	// The targets have variance about 4.6; a trained model does far better.
	if l := float64(res.FinalValid.Loss); !(l < 0.5) {
		t.Errorf("validation MSE %v, want < 0.5", l)
	}
	var js map[string]any
	json.Unmarshal(readFile(t, filepath.Join(cfg.Out, "finetune.json")), &js)
	if acc := js["final_valid"].(map[string]any)["accuracy"]; acc != nil {
		t.Errorf("finetune.json accuracy %v, want null", acc)
	}
}

// TestFinetuneBadInput checks that every kind of bad input is an ErrInput
// and that nothing is written.
func TestFinetuneBadInput(t *testing.T) {
	dir := t.TempDir()
	train := irisFile(t, dir)
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	nan := write("nan.csv", "a,b,c,d,label\n1,2,3,4,0\n1,NaN,3,4,1\n")
	empty := write("empty.csv", "a,b,c,d,label\n")
	wide := write("wide.csv", "a,b,c,d,e,label\n1,2,3,4,5,0\n1,2,3,4,5,1\n")
	label := write("label.csv", "a,b,c,d,label\n1,2,3,4,0\n1,2,3,4,3\n")
	frac := write("frac.csv", "a,b,c,d,label\n1,2,3,4,0\n1,2,3,4,0.5\n")
	model := writeTestModel(t, dir, "mlp.arrow", testMLP([]int{4, 8, 3}, 1))
	generic := testMLP([]int{4, 8, 3}, 1)
	generic.Arch.Kind = arrowio.ArchGeneric
	genericPath := writeTestModel(t, dir, "generic.arrow", generic)

	tests := []struct {
		name string
		mod  func(*FinetuneConfig)
		want string
	}{
		{"no model or init", func(c *FinetuneConfig) { c.Init = "" }, "model and init"},
		{"model and init", func(c *FinetuneConfig) { c.Model = model }, "model and init"},
		{"NaN in the data", func(c *FinetuneConfig) { c.Train = nan }, "NaN"},
		{"empty data", func(c *FinetuneConfig) { c.Train = empty }, "empty"},
		{"feature width", func(c *FinetuneConfig) { c.Train = wide }, "5 features, the model takes 4"},
		{"label out of range", func(c *FinetuneConfig) { c.Train = label }, "label 3 is not a class index in [0, 3)"},
		{"fractional label", func(c *FinetuneConfig) { c.Train = frac }, "label 0.5"},
		{"validation label", func(c *FinetuneConfig) { c.Valid = label }, "label 3"},
		{"missing label column", func(c *FinetuneConfig) { c.Label = "species" }, "species"},
		{"missing data file", func(c *FinetuneConfig) { c.Train = filepath.Join(dir, "absent.csv") }, "absent.csv"},
		{"generic model", func(c *FinetuneConfig) { c.Init, c.Model = "", genericPath }, "this checkpoint is generic"},
		{"model width", func(c *FinetuneConfig) { c.Init = "mlp:5-8-3" }, "4 features, the model takes 5"},
		{"bad init", func(c *FinetuneConfig) { c.Init = "mlp:4-8:swish" }, "init \"mlp:4-8:swish\""},
		{"freeze a dense model", func(c *FinetuneConfig) { c.Freeze = compute.RoleTrunk }, "no trunk parameters"},
		{"patience without validation", func(c *FinetuneConfig) { c.Patience = 2 }, "patience needs validation"},
		{"both validations", func(c *FinetuneConfig) { c.Valid, c.ValidFraction = train, 0.2 }, "not both"},
		{"warmup too long", func(c *FinetuneConfig) { c.Warmup = 1000 }, "warmup of 1000 steps"},
		{"warmup not whole", func(c *FinetuneConfig) { c.Warmup = 2.5 }, "warmup 2.5"},
		{"bad optimizer", func(c *FinetuneConfig) { c.Optimizer = "lion" }, "lion"},
		{"bad precision", func(c *FinetuneConfig) { c.Precision = "float16" }, "precision \"float16\""},
		{"zero epochs", func(c *FinetuneConfig) { c.Epochs = 0 }, "epochs 0"},
		{"diverges", func(c *FinetuneConfig) { c.LR, c.Clip = 1e30, 0 }, "try a lower lr"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultFinetuneConfig()
			cfg.Init, cfg.Train, cfg.Out = "mlp:4-8-3", train, filepath.Join(dir, "out-"+tt.name)
			cfg.Epochs = 2
			tt.mod(&cfg)
			_, err := Finetune(context.Background(), cfg)
			if !errors.Is(err, ErrInput) {
				t.Fatalf("err = %v, want ErrInput", err)
			}
			if !bytes.Contains([]byte(err.Error()), []byte(tt.want)) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
			if got := dirEntries(t, cfg.Out); len(got) != 0 {
				t.Errorf("bad input left %v in --out", got)
			}
		})
	}
}

// TestFinetuneSafetensorsModel trains an nn.Sequential safetensors
// checkpoint: the dense copy is written in the input's format and holds
// the weights of model.arrow.
func TestFinetuneSafetensorsModel(t *testing.T) {
	dir := t.TempDir()
	model := writeTestModel(t, dir, "mlp.safetensors", testMLP([]int{16, 32, 24, 4}, 7))
	ds := &arrowio.Dataset{N: 40, D: 16}
	for i := range ds.N {
		for j := range ds.D {
			ds.X = append(ds.X, math.Sin(float64(i*ds.D+j)))
		}
		ds.Y = append(ds.Y, float64(i%4))
	}
	train := filepath.Join(dir, "train.arrow")
	if err := arrowio.WriteDataset(train, ds); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultFinetuneConfig()
	cfg.Model, cfg.Train, cfg.Out, cfg.Epochs = model, train, filepath.Join(dir, "out"), 2
	res, err := Finetune(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Outputs.Materialized != "model.materialized.safetensors" || res.Standardization != "none" {
		t.Errorf("dense output %q, standardization %q; want model.materialized.safetensors and none (the model has none)", res.Outputs.Materialized, res.Standardization)
	}
	lm, err := loadModel(context.Background(), filepath.Join(cfg.Out, res.Outputs.Materialized), "")
	if err != nil {
		t.Fatal(err)
	}
	m, _ := arrowio.ReadModel(filepath.Join(cfg.Out, "model.arrow"))
	for _, ts := range m.Tensors {
		got, ok := lm.model.Tensor(ts.Name)
		if !ok || !slices.Equal(got.Data, ts.Data) {
			t.Errorf("dense copy: tensor %s missing or different", ts.Name)
		}
	}
}
