package compute

import (
	"math"
	"testing"
)

// optPair returns the same two parameters (a decayed weight, a bias) as
// float32 and float64 NetParams, with seeded values.
func optPair(n int, seed uint64) ([]NetParam[float32], []NetParam[float64]) {
	rng := newRand(seed)
	p32 := []NetParam[float32]{{Name: "w", Role: RoleWeight}, {Name: "b", Role: RoleBias}}
	p64 := []NetParam[float64]{{Name: "w", Role: RoleWeight}, {Name: "b", Role: RoleBias}}
	for i := range p32 {
		p32[i].Data = make([]float32, n)
		p64[i].Data = make([]float64, n)
		for j := range n {
			v := float32(rng.NormFloat64())
			p32[i].Data[j], p64[i].Data[j] = v, float64(v)
		}
	}
	return p32, p64
}

// TestOptimizer32MatchesFloat64 runs the float32 kernels (adamW32, sgd32)
// and the float64 update side by side for 200 steps on the same float32
// gradients, with weight decay, a learning-rate multiplier and clipping,
// and bounds their difference: each step rounds p, m and v to float32
// (relative 6e-8) and the kernels compute in float32, so after 200 steps
// the parameters agree to a few 1e-6 relative to their scale.
func TestOptimizer32MatchesFloat64(t *testing.T) {
	const n, steps, tol = 1000, 200, 5e-6
	for _, cfg := range []OptimizerConfig{
		DefaultOptimizerConfig(),
		{Kind: OptimizerAdamW, Beta1: 0.8, Beta2: 0.99, Eps: 1e-6, WeightDecay: 0.1},
		{Kind: OptimizerSGD, Momentum: 0.9, WeightDecay: 0.01},
		{Kind: OptimizerSGD},
	} {
		t.Run(cfg.Kind, func(t *testing.T) {
			p32, p64 := optPair(n, 5)
			mult := []float64{0.5, 1}
			o32, err := NewOptimizer(cfg, p32, mult)
			if err != nil {
				t.Fatal(err)
			}
			o64, err := NewOptimizer(cfg, p64, mult)
			if err != nil {
				t.Fatal(err)
			}
			rng := newRand(6)
			g32 := [][]float32{make([]float32, n), make([]float32, n)}
			g64 := [][]float64{make([]float64, n), make([]float64, n)}
			for s := range steps {
				for i := range g32 {
					for j := range n {
						v := float32(rng.NormFloat64() * math.Pow(10, float64(rng.IntN(5)-3)))
						g32[i][j], g64[i][j] = v, float64(v)
					}
				}
				lr := LR(s, steps, 10, 1e-2)
				// A clip scale that is not a power of two, every other step.
				gscale := 1.0
				if s%2 == 1 {
					gscale = 0.37
				}
				o32.begin()
				o64.begin()
				for i := range p32 {
					o32.update(i, p32[i].Data, g32[i], 0, n, lr, gscale)
					o64.update(i, p64[i].Data, g64[i], 0, n, lr, gscale)
				}
			}
			var worst float64
			for i := range p32 {
				for j := range n {
					d := math.Abs(float64(p32[i].Data[j])-p64[i].Data[j]) / max(1, math.Abs(p64[i].Data[j]))
					worst = max(worst, d)
				}
			}
			if worst > tol {
				t.Errorf("float32 vs float64 after %d steps: max relative difference %g > %g", steps, worst, tol)
			}
			if worst == 0 {
				t.Error("float32 and float64 agree exactly: the float32 kernel did not run")
			}
		})
	}
}

// TestOptimizer32SplitInvariant checks that updating a parameter in one
// range or in many arbitrary ranges gives the same bits: the property
// that makes a step independent of how chunks are spread over goroutines.
func TestOptimizer32SplitInvariant(t *testing.T) {
	const n = 1<<12 + 37
	for _, kind := range []string{OptimizerAdamW, OptimizerSGD} {
		t.Run(kind, func(t *testing.T) {
			cfg := DefaultOptimizerConfig()
			cfg.Kind = kind
			whole, _ := optPair(n, 7)
			split, _ := optPair(n, 7)
			ow, _ := NewOptimizer(cfg, whole, nil)
			osplit, _ := NewOptimizer(cfg, split, nil)
			g := randSlice32(n)
			cuts := []int{0, 1, 2, 7, 64, 65, 1000, 4095, n}
			for range 3 {
				ow.begin()
				osplit.begin()
				ow.update(0, whole[0].Data, g, 0, n, 1e-2, 0.5)
				for k := 0; k+1 < len(cuts); k++ {
					osplit.update(0, split[0].Data, g, cuts[k], cuts[k+1], 1e-2, 0.5)
				}
			}
			if d := bitDiffs(whole[0].Data, split[0].Data); d != 0 {
				t.Errorf("%d of %d parameters differ between one range and many", d, n)
			}
		})
	}
}

// TestReluBackward32 compares the branch-free float32 ReLU backward and
// the max-based forward with their definitions, bit for bit, on the
// special values (signed zeros, infinities, NaNs of both signs,
// subnormals).
func TestReluBackward32(t *testing.T) {
	xs := []float32{
		0, float32(math.Copysign(0, -1)), 1, -1, math.SmallestNonzeroFloat32, -math.SmallestNonzeroFloat32,
		math.MaxFloat32, -math.MaxFloat32, float32(math.Inf(1)), float32(math.Inf(-1)),
		math.Float32frombits(0x7fc00000), math.Float32frombits(0xffc00000), math.Float32frombits(0x7f800001), math.Float32frombits(0xff800001),
	}
	ds := []float32{2.5, -3, float32(math.Copysign(0, -1)), float32(math.Inf(-1)), math.Float32frombits(0x7fc00001)}
	for _, x := range xs {
		for _, d := range ds {
			want := d
			if x <= 0 {
				want = 0
			}
			dst := []float32{7}
			reluBackward32(dst, []float32{d}, []float32{x})
			if math.Float32bits(dst[0]) != math.Float32bits(want) {
				t.Errorf("x %v (%#08x), d %v: got %v (%#08x), want %v (%#08x)", x, math.Float32bits(x), d, dst[0], math.Float32bits(dst[0]), want, math.Float32bits(want))
			}
		}
		y := []float32{7}
		activate(actReLU, y, []float32{x})
		want := x
		if x <= 0 {
			want = 0
		}
		if x == x && math.Float32bits(y[0]) != math.Float32bits(want) || x != x && y[0] == y[0] {
			t.Errorf("relu(%v) = %v (%#08x), want %v", x, y[0], math.Float32bits(y[0]), want)
		}
	}
}
