package compute

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// referenceRobustness is LayerRobustness the direct way: every draw a
// full forward pass of the network with the layer replaced, in T.
func referenceRobustness[T Float](net *Network[T], x, target []T, n int, eps float64, draws int, seed uint64) [][]float64 {
	ws := NewWorkspace[T]()
	clean := exampleScores(nil, net, x, target, n, ws)
	work := CloneNetwork(net)
	var drops [][]float64
	for k, l := range LinearLayers(work) {
		orig := work.Operator(l)
		out, in := orig.Shape()
		ln := newLayerNoise(orig)
		row := make([]float64, n)
		for r := range draws {
			noisy := make([]T, out*in)
			noisyWeight(noisy, ln, eps, seed, k, r)
			if err := work.SetOperator(l, NewDenseOp(out, in, noisy)); err != nil {
				panic(err)
			}
			pert := exampleScores(nil, work, x, target, n, ws)
			for e := range n {
				row[e] += clean[e] - pert[e]
			}
		}
		for e := range row {
			row[e] /= float64(max(draws, 1))
		}
		if err := work.SetOperator(l, orig); err != nil {
			panic(err)
		}
		drops = append(drops, row)
	}
	return drops
}

func sameDrops(t *testing.T, what string, got, want [][]float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d layers, want %d", what, len(got), len(want))
	}
	for k := range want {
		if !slices.Equal(got[k], want[k]) {
			diff := 0
			for e := range want[k] {
				if got[k][e] != want[k][e] {
					diff++
				}
			}
			t.Errorf("%s: layer %d: %d of %d examples differ from the full forward passes", what, k, diff, len(want[k]))
		}
	}
}

// robustnessNet is a classifier (or regressor) 12-40-40-c with ReLUs,
// the middle layer monarch + low-rank, randomised.
func robustnessNet(t *testing.T, task Task, c int, rng *rand.Rand) *Network[float64] {
	spec := NetworkSpec{Task: task, Inputs: 12, Layers: []LayerSpec{
		linearLayer(12, 40, true, nil), actLayer(ActReLU),
		linearLayer(40, 40, true, sumOf(Spec{Family: FamilyMonarch, Blocks: 2, Rank: 4}, Spec{Family: FamilyLowRank, Rank: 3})), actLayer(ActReLU),
		linearLayer(40, c, true, nil),
	}}
	return netRandomized(t, spec, rng)
}

// TestLayerRobustnessAgrees: the draws run from the perturbed layer on
// (and, for a float64 classifier, in float32 with near ties re-decided in
// float64) give exactly the drops of full forward passes in the
// network's precision, over several blocks of the clean pass and with
// the clean outputs given or not; for a float32 network and a regressor
// too.
func TestLayerRobustnessAgrees(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	defer func(c int) { robustnessCache = c }(robustnessCache)
	for _, tc := range []struct {
		name  string
		task  Task
		c     int
		n     int
		cache int
	}{
		{"classifier", TaskClassification, 5, 700, 1 << 23},
		{"classifier, blocks of 256 rows", TaskClassification, 5, 700, 256 * 92},
		{"regressor", TaskRegression, 2, 300, 1 << 23},
	} {
		robustnessCache = tc.cache
		net := robustnessNet(t, tc.task, tc.c, rng)
		x := randRows(rng, tc.n, 12)
		target := netTargets(net, tc.n, rng)
		want := referenceRobustness(net, x, target, tc.n, 0.5, 3, 9)
		got, err := LayerRobustness(net, x, target, nil, tc.n, 0.5, 3, 9, nil)
		if err != nil {
			t.Fatal(err)
		}
		sameDrops(t, tc.name, got, want)
		clean := make([]float64, tc.n*tc.c)
		if err := NetworkForward(net, nil)(clean, x, tc.n); err != nil {
			t.Fatal(err)
		}
		got, _ = LayerRobustness(net, x, target, clean, tc.n, 0.5, 3, 9, nil)
		sameDrops(t, tc.name+", clean outputs given", got, want)
		pure, _ := layerRobustness(net, x, target, nil, tc.n, 0.5, 3, 9, nil, false)
		sameDrops(t, tc.name+", float64 only", pure, want)

		net32 := ConvertNetwork[float32](net)
		x32, t32 := convertSlice[float32](nil, x), convertSlice[float32](nil, target)
		got32, _ := LayerRobustness(net32, x32, t32, nil, tc.n, 0.5, 3, 9, nil)
		sameDrops(t, tc.name+", float32", got32, referenceRobustness(net32, x32, t32, tc.n, 0.5, 3, 9))
	}
}

// TestLayerRobustnessTies: a classifier whose logits 0 and 1 differ by
// 1e-9 on every example (equal weight rows, biases 1e-9 apart) ties in
// float32, where the first, 0, wins, and not in float64, where 1 does:
// the mixed path must re-decide every example in float64 to agree with
// the full passes. decide32 leaves near ties and non-finite logits to
// float64.
func TestLayerRobustnessTies(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	net := robustnessNet(t, TaskClassification, 4, rng)
	last := LinearLayers(net)[2]
	w := net.Operator(last).Params()[0].Data
	copy(w[40:80], w[0:40]) // rows 0 and 1 equal
	b := net.layers[last].bias
	b[0] = 10 // logits 0 and 1 the largest, and class 1 the label
	b[1] = b[0] + 1e-9
	if float32(b[1]) != float32(b[0]) {
		t.Fatal("the biases differ in float32: the test would not tie")
	}
	n := 200
	x := randRows(rng, n, 12)
	target := make([]float64, n)
	for i := range target {
		target[i] = 1
	}
	want := referenceRobustness(net, x, target, n, 0.3, 2, 3)
	got, err := LayerRobustness(net, x, target, nil, n, 0.3, 2, 3, nil)
	if err != nil {
		t.Fatal(err)
	}
	sameDrops(t, "tied logits", got, want)
	z := []float32{1, 3, 3 + 1e-6, -2}
	if _, ok := decide32(z, 0); ok {
		t.Errorf("decide32(%v) decided a gap of 1e-6 at scale 3", z)
	}
	if arg, ok := decide32([]float32{1, 3, 2.5, -2}, 1e-4); !ok || arg != 1 {
		t.Errorf("decide32 = %d, %v; want 1, true", arg, ok)
	}
	if _, ok := decide32([]float32{1, float32(math.NaN()), 0}, 0); ok {
		t.Error("decide32 decided a NaN logit")
	}
}
