package compute

import (
	"fmt"
	"sync"
	"testing"
)

// The benchmarks of the performance table (README.md) beyond
// BenchmarkTrainStep and
// BenchmarkApplyGrad; `make bench` runs them and .ci/benchperf.go prints
// the table.

var printBackend sync.Once

// BenchmarkBackend prints the backends the other benchmarks of the run
// used, for the table's header:
//
//	backend: openblas core=Cooperlake threads=2 fft=fftw simd=avx512
func BenchmarkBackend(b *testing.B) {
	printBackend.Do(func() {
		fmt.Printf("backend: %s core=%s threads=%d fft=%s simd=%s\n", Backend(), BLASCore(), BLASThreads(), FFTBackend(), SIMDKernels())
	})
	for b.Loop() {
	}
}

// BenchmarkTrainShards compares, for the dense MLP of BenchmarkTrainStep,
// one shard (every GEMM given all BLAS threads) with two shards (each on
// its own goroutine with one BLAS thread).
func BenchmarkTrainShards(b *testing.B) {
	const batch, in, classes = 128, 64, 10
	for _, h := range []int{512, 2048} {
		for _, shards := range []int{1, 2} {
			b.Run(fmt.Sprintf("%d-%d-%d-%d/shards=%d", in, h, h, classes, shards), func(b *testing.B) {
				cfg := DefaultTrainerConfig()
				cfg.Shards = shards
				benchTrain(b, mlpSpec(in, h, classes), cfg, batch, classes)
			})
		}
	}
}

func mlpSpec(in, h, classes int) NetworkSpec {
	return NetworkSpec{Task: TaskClassification, Inputs: in, Layers: []LayerSpec{
		linearLayer(in, h, true, nil), actLayer(ActReLU),
		linearLayer(h, h, true, nil), actLayer(ActReLU),
		linearLayer(h, classes, true, nil),
	}}
}

// BenchmarkConvertLayer measures what convert does to one 4096 x 4096
// layer for monarch (b = 4, rank n/16) + a rank-16 low-rank residual
// (float64). Run with -benchtime 1x.
func BenchmarkConvertLayer(b *testing.B) {
	const n = 4096
	w := randDense(newRand(3), n, n)
	trunk := Spec{Family: FamilyMonarch, Out: n, In: n, Blocks: 4, Rank: n / 16}
	for b.Loop() {
		if _, err := Decompose(w, trunk, Residual{Kind: "lowrank", Rank: 16}, 1); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPolar measures the orthogonal family's polar factor at 2048
// (PolarFactor: QR + scaled Newton) against U V^T from the full SVD
// (thinSVD: dgesdd under the openblas tag, as numpy/scipy compute it).
// Run with -benchtime 1x.
func BenchmarkPolar(b *testing.B) {
	const n = 2048
	w := randDense(newRand(4), n, n)
	b.Run(fmt.Sprintf("n=%d/newton", n), func(b *testing.B) {
		for b.Loop() {
			if _, err := PolarFactor(w); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run(fmt.Sprintf("n=%d/svd", n), func(b *testing.B) {
		for b.Loop() {
			if _, err := svdPolar(w); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkOptimizerStep measures one float32 optimiser step (single
// goroutine) over the 301,066 parameters of the 64-512-512-10 MLP, the
// update phase of BenchmarkTrainStep without its sharding.
func BenchmarkOptimizerStep(b *testing.B) {
	net, err := NewNetwork[float32](mlpSpec(64, 512, 10))
	if err != nil {
		b.Fatal(err)
	}
	if err := net.InitStructured(newRand(1)); err != nil {
		b.Fatal(err)
	}
	params := net.Params()
	grads := net.NewGrads()
	for _, g := range grads {
		copy(g, randSlice32(len(g)))
	}
	for _, kind := range []string{OptimizerAdamW, OptimizerSGD} {
		b.Run(kind, func(b *testing.B) {
			cfg := DefaultOptimizerConfig()
			cfg.Kind = kind
			opt, err := NewOptimizer(cfg, params, nil)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(4 * net.NumParams()))
			b.ReportAllocs()
			for b.Loop() {
				opt.Step(params, grads, 1e-6)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(net.NumParams()), "ns/param")
		})
	}
}
