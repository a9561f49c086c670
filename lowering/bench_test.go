//go:build onnxruntime

package lowering

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/strata-ml/strata/arrowio/onnx"
	"github.com/strata-ml/strata/arrowio/onnx/onnxpb"
	"github.com/strata-ml/strata/compute"
	"github.com/strata-ml/strata/onnxrt"
)

// benchThreads is the intra-op thread count of every benchmark session:
// one thread, so dense and structured are measured alike on a shared
// machine.
const benchThreads = 1

// mlp builds a dense MLP of depth Gemm(transB=1) + Relu layers of width n
// with random weights.
func mlp(tb testing.TB, n, depth int, rng *rand.Rand) *onnx.Model {
	tb.Helper()
	g := &onnxpb.GraphProto{Name: proto.String("mlp")}
	x := "x"
	for i := range depth {
		w := make([]float64, n*n)
		for j := range w {
			w[j] = rng.NormFloat64() / 64
		}
		name := fmt.Sprintf("fc%d", i)
		g.Initializer = append(g.Initializer, onnx.Float32Tensor(name+".weight", []int64{int64(n), int64(n)}, w),
			onnx.Float32Tensor(name+".bias", []int64{int64(n)}, make([]float64, n)))
		y := name + "_out"
		g.Node = append(g.Node, onnx.NewNode("Gemm", name, []string{x, name + ".weight", name + ".bias"}, []string{y},
			onnx.IntAttr("transB", 1)))
		x = y
		if i < depth-1 {
			x = name + "_relu"
			g.Node = append(g.Node, onnx.NewNode("Relu", name+"_relu", []string{y}, []string{x}))
		}
	}
	g.Input = []*onnxpb.ValueInfoProto{valueInfo("x", []int64{-1, int64(n)})}
	g.Output = []*onnxpb.ValueInfoProto{valueInfo(x, []int64{-1, int64(n)})}
	b, err := proto.Marshal(&onnxpb.ModelProto{IrVersion: proto.Int64(8), Graph: g,
		OpsetImport: []*onnxpb.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(13)}}})
	if err != nil {
		tb.Fatal(err)
	}
	m, err := onnx.Decode(b, "mlp.onnx")
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

// structure converts every layer of m to spec with random parameters (the
// cost of a run does not depend on the values).
func structure(tb testing.TB, m *onnx.Model, spec func(out, in int) compute.Spec, rng *rand.Rand, opts ...Option) *onnx.Model {
	tb.Helper()
	linears, _ := m.Linears()
	var layers []Layer
	for _, l := range linears {
		layers = append(layers, Layer{Name: DefaultName(l), Node: l.Node, Op: randomOp(tb, spec(l.Out, l.In), rng)})
	}
	s, err := Lower(m, layers, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

var mlp4096 struct {
	once              sync.Once
	dense, structured *onnx.Model
}

// buildMLP4096 builds the models of BenchmarkMLP4096 once.
func buildMLP4096(tb testing.TB) {
	mlp4096.once.Do(func() {
		rng := rand.New(rand.NewPCG(4096, 1))
		mlp4096.dense = mlp(tb, 4096, 3, rng)
		mlp4096.structured = structure(tb, mlp4096.dense, func(out, in int) compute.Spec {
			return compute.Spec{Family: compute.FamilySum, Out: out, In: in,
				Trunk:      &compute.Spec{Family: compute.FamilyMonarch, Blocks: 4, Rank: 256},
				Correction: &compute.Spec{Family: compute.FamilyLowRank, Rank: 16}}
		}, rng)
	})
}

// BenchmarkMLP4096 runs a 3-layer 4096-wide MLP in ONNX Runtime (one
// thread), dense against structured at monarch b=4 (r=256, convert's
// default) + a rank-16 lowrank residual, at batch 1 and 64. The two models
// run alternately, one Run each per iteration, so that both see the same
// machine; ns/op is the pair's time, and the metrics are each model's
// ms/run, the speedup (dense / structured) and the parameter ratio
// (structured / dense float values).
func BenchmarkMLP4096(b *testing.B) {
	buildMLP4096(b)
	dense, structured := mlp4096.dense, mlp4096.structured
	for _, batch := range []int{1, 64} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			shape := []int64{int64(batch), 4096}
			runDense, closeDense := runner(b, dense, shape)
			defer closeDense()
			runStructured, closeStructured := runner(b, structured, shape)
			defer closeStructured()
			var td, ts time.Duration
			b.ResetTimer()
			for range b.N {
				t0 := time.Now()
				runDense()
				t1 := time.Now()
				runStructured()
				td, ts = td+t1.Sub(t0), ts+time.Since(t1)
			}
			b.ReportMetric(float64(td)/1e6/float64(b.N), "dense-ms")
			b.ReportMetric(float64(ts)/1e6/float64(b.N), "structured-ms")
			b.ReportMetric(float64(td)/float64(ts), "speedup")
			b.ReportMetric(float64(floatCount(structured))/float64(floatCount(dense)), "param-ratio")
		})
	}
}

// runner opens m (one thread) and returns a function that runs it on a
// random input of the given shape, after one warm-up run.
func runner(b *testing.B, m *onnx.Model, shape []int64) (run func(), close func()) {
	bytes, err := m.Encode()
	if err != nil {
		b.Fatal(err)
	}
	s, err := onnxrt.Open(bytes, onnxrt.Options{Name: m.File, IntraOpThreads: benchThreads})
	if err != nil {
		b.Fatal(err)
	}
	n := 1
	for _, d := range shape {
		n *= int(d)
	}
	x := make([]float32, n)
	rng := rand.New(rand.NewPCG(1, 1))
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	in := []onnxrt.Tensor{onnxrt.NewFloat32(shape, x)}
	run = func() {
		if _, err := s.Run(in); err != nil {
			b.Fatal(err)
		}
	}
	run()
	return run, func() { s.Close() }
}

// benchRun times Run of m on a random input of the given shape.
func benchRun(b *testing.B, m *onnx.Model, shape []int64) {
	run, close := runner(b, m, shape)
	defer close()
	b.ResetTimer()
	for range b.N {
		run()
	}
	b.ReportMetric(float64(floatCount(m)), "params")
}
