package compute

import (
	"fmt"
	"math"
	"testing"
)

// benchSizes are the layer widths of the structure families' benchmark
// table (`make bench`).
var benchSizes = []int{1024, 4096}

// benchBatch is the batch size of the apply benchmarks.
const benchBatch = 256

// benchSpecs returns the operators the benchmark table compares at width
// n: dense, and each family at a typical setting.
func benchSpecs(n int) []struct {
	name string
	spec Spec
} {
	sq := int(math.Sqrt(float64(n)))
	return []struct {
		name string
		spec Spec
	}{
		{"dense", Spec{Family: FamilyDense, Out: n, In: n}},
		{"orthogonal", Spec{Family: FamilyOrthogonal, Out: n, In: n}},
		{"monarch_b4", Spec{Family: FamilyMonarch, Out: n, In: n, Blocks: 4, Rank: n / 16}},
		{fmt.Sprintf("monarch_b%d_r1", sq), Spec{Family: FamilyMonarch, Out: n, In: n, Blocks: sq, Rank: 1}},
		{"kronecker_r1", Spec{Family: FamilyKronecker, Out: n, In: n, Rank: 1}},
		{"blockdiag_b4", Spec{Family: FamilyBlockDiag, Out: n, In: n, Blocks: 4}},
		{"circulant", Spec{Family: FamilyCirculant, Out: n, In: n}},
		{"toeplitz", Spec{Family: FamilyToeplitz, Out: n, In: n}},
		{"lowrank_n16", Spec{Family: FamilyLowRank, Out: n, In: n, Rank: n / 16}},
	}
}

// randomOp32 returns a float32 operator of spec with random parameters
// (valid for every family: frozen sparse indices stay zero).
func randomOp32(b *testing.B, spec Spec) Operator[float32] {
	op, err := New[float32](spec)
	if err != nil {
		b.Fatal(err)
	}
	rng := newRand(1)
	for _, p := range op.Params() {
		if p.Frozen {
			continue
		}
		for i := range p.Data {
			p.Data[i] = float32(rng.NormFloat64() / math.Sqrt(float64(spec.In)))
		}
	}
	return op
}

func randSlice32(n int) []float32 {
	rng := newRand(2)
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(rng.NormFloat64())
	}
	return s
}

// BenchmarkApply measures Y = X W^T in float32 (the training precision),
// batch 256.
func BenchmarkApply(b *testing.B) {
	for _, n := range benchSizes {
		for _, c := range benchSpecs(n) {
			b.Run(fmt.Sprintf("n=%d/%s", n, c.name), func(b *testing.B) {
				op := randomOp32(b, c.spec)
				x, y := randSlice32(benchBatch*n), make([]float32, benchBatch*n)
				ws := NewWorkspace[float32]()
				b.ReportMetric(float64(NumParams(op)), "params")
				for b.Loop() {
					op.Apply(y, x, benchBatch, ws)
				}
			})
		}
	}
}

// BenchmarkApplyGrad measures a forward Apply plus Backward with parameter
// and input gradients, float32, batch 256.
func BenchmarkApplyGrad(b *testing.B) {
	for _, n := range benchSizes {
		for _, c := range benchSpecs(n) {
			b.Run(fmt.Sprintf("n=%d/%s", n, c.name), func(b *testing.B) {
				op := randomOp32(b, c.spec)
				x, y := randSlice32(benchBatch*n), make([]float32, benchBatch*n)
				dy, dx := randSlice32(benchBatch*n), make([]float32, benchBatch*n)
				var grads [][]float32
				for _, p := range op.Params() {
					grads = append(grads, make([]float32, len(p.Data)))
				}
				ws := NewWorkspace[float32]()
				for b.Loop() {
					op.Apply(y, x, benchBatch, ws)
					op.Backward(dx, x, dy, benchBatch, grads, ws)
				}
			})
		}
	}
}

// BenchmarkProject measures the projection of a random dense n x n matrix
// onto each family (float64). Run with -benchtime 1x: the 4096 cases take
// seconds each.
func BenchmarkProject(b *testing.B) {
	for _, n := range benchSizes {
		w := randDense(newRand(3), n, n)
		for _, c := range benchSpecs(n)[1:] {
			b.Run(fmt.Sprintf("n=%d/%s", n, c.name), func(b *testing.B) {
				for b.Loop() {
					if _, err := Project(w, c.spec, 1); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
