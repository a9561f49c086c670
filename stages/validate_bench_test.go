package stages

import (
	"context"
	"flag"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/internal/datasets"
	"github.com/strata-ml/strata/validation"
)

// validateBenchDir keeps BenchmarkValidate's models and data in a
// directory, made on the first run and reused after (empty: a temporary
// directory per run). `make bench` keeps them under bin/.
var validateBenchDir = flag.String("validate-bench-dir", "", "BenchmarkValidate: keep (and reuse) its models and data in this directory")

// wideDigits returns n rows of 784 features: the digits images (8 x 8)
// drawn with replacement, scaled to 28 x 28 by bilinear interpolation at a
// random shift of up to 2 pixels each way, with Gaussian pixel noise of
// std 2 (intensities 0..16), and their class. A stand-in for MNIST at its
// width, seeded.
func wideDigits(tb testing.TB, n int, seed uint64) *arrowio.Dataset {
	tb.Helper()
	src, err := datasets.Digits()
	if err != nil {
		tb.Fatal(err)
	}
	const side, small = 28, 8
	rng := rand.New(rand.NewPCG(seed, 0x5EED))
	ds := &arrowio.Dataset{N: n, D: side * side, X: make([]float64, n*side*side), Y: make([]float64, n)}
	for i := range n {
		k := rng.IntN(src.N)
		img := src.X[k*small*small : (k+1)*small*small]
		dx, dy := 4*rng.Float64()-2, 4*rng.Float64()-2
		at := func(r, c int) float64 {
			if r < 0 || r >= small || c < 0 || c >= small {
				return 0
			}
			return img[r*small+c]
		}
		row := ds.X[i*side*side : (i+1)*side*side]
		for r := range side {
			for c := range side {
				// The centre of output pixel (r, c) in input pixel units.
				y := (float64(r)+0.5-dy)*small/side - 0.5
				x := (float64(c)+0.5-dx)*small/side - 0.5
				r0, c0 := int(math.Floor(y)), int(math.Floor(x))
				fy, fx := y-float64(r0), x-float64(c0)
				v := (1-fy)*((1-fx)*at(r0, c0)+fx*at(r0, c0+1)) + fy*((1-fx)*at(r0+1, c0)+fx*at(r0+1, c0+1))
				row[r*side+c] = v + 2*rng.NormFloat64()
			}
		}
		ds.Y[i] = src.Y[k]
	}
	return ds
}

// wideValidateFiles makes (or finds in dir) a pilot at realistic width: a
// 784-1024-1024-10 dense baseline trained for 2 epochs on 8,000 rows of
// wideDigits, the candidate (convert's defaults: monarch b=4 + rank-8)
// fine-tuned for 1 epoch, the control (the baseline fine-tuned for 1
// epoch), and 2,000 evaluation rows.
func wideValidateFiles(tb testing.TB, dir string) validateFiles {
	tb.Helper()
	f := validateFiles{dir: dir, train: filepath.Join(dir, "train.arrow"), test: filepath.Join(dir, "eval.arrow"),
		dense: filepath.Join(dir, "dense", "model.arrow"), candidate: filepath.Join(dir, "candidate", "model.arrow"),
		control:      filepath.Join(dir, "control", "model.arrow"),
		candidateOut: filepath.Join(dir, "candidate"), controlOut: filepath.Join(dir, "control")}
	if _, err := os.Stat(f.control); err == nil {
		return f
	}
	ctx := context.Background()
	for _, d := range []struct {
		path string
		n    int
		seed uint64
	}{{f.train, 8000, 1}, {f.test, 2000, 2}} {
		if err := arrowio.WriteDataset(d.path, wideDigits(tb, d.n, d.seed)); err != nil {
			tb.Fatal(err)
		}
	}
	run := func(cfg FinetuneConfig) {
		tb.Helper()
		cfg.Train, cfg.Seed = f.train, 1
		if _, err := Finetune(ctx, cfg); err != nil {
			tb.Fatal(err)
		}
	}
	cfg := DefaultFinetuneConfig()
	cfg.Init, cfg.Out, cfg.Epochs = "mlp:784-1024-1024-10:relu", filepath.Join(dir, "dense"), 2
	run(cfg)
	ccfg := DefaultConvertConfig()
	ccfg.Model, ccfg.Out = f.dense, filepath.Join(dir, "converted")
	if _, err := Convert(ctx, ccfg); err != nil {
		tb.Fatal(err)
	}
	cfg = DefaultFinetuneConfig()
	cfg.Model, cfg.Out, cfg.Epochs = filepath.Join(ccfg.Out, "model.arrow"), f.candidateOut, 1
	run(cfg)
	cfg.Model, cfg.Out = f.dense, f.controlOut
	run(cfg)
	return f
}

// BenchmarkValidate is validate in a pilot at realistic width
// (wideValidateFiles): three 784-1024-1024-10 models, 2,000 evaluation
// rows, the default settings, the training logs given. The target is
// 5 s on 2 cores.
func BenchmarkValidate(b *testing.B) {
	dir := *validateBenchDir
	if dir == "" {
		dir = b.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	f := wideValidateFiles(b, dir)
	cfg := validation.DefaultConfig()
	cfg.Baseline, cfg.Candidate, cfg.Control = f.dense, f.candidate, f.control
	cfg.TrainLog, cfg.BaselineTrainLog, cfg.ControlTrainLog = f.candidateOut, filepath.Join(dir, "dense"), f.controlOut
	cfg.Data = f.test
	for b.Loop() {
		cfg.Out = filepath.Join(b.TempDir(), "val")
		if _, err := Validate(context.Background(), cfg); err != nil {
			b.Fatal(err)
		}
	}
}
