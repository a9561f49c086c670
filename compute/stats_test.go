package compute

import (
	"math"
	"math/big"
	"math/rand/v2"
	"runtime"
	"sync/atomic"
	"testing"
)

func TestMedianQuantileMAD(t *testing.T) {
	tests := []struct {
		name    string
		x       []float64
		median  float64
		mad     float64
		q25     float64 // type 7 on the sorted values
		q975    float64
		wantNaN bool
	}{
		{"odd", []float64{3, 1, 2}, 2, 1, 1.5, 2.95, false},
		{"even", []float64{4, 1, 3, 2}, 2.5, 1, 1.75, 3.925, false},
		{"one", []float64{7}, 7, 0, 7, 7, false},
		// |x - 2.5| = 1.5, 0.5, 0.5, 7.5 -> MAD 1.
		{"outlier", []float64{1, 2, 3, 10}, 2.5, 1, 1.75, 9.475, false},
		{"empty", nil, 0, 0, 0, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := Median(tt.x)
			if tt.wantNaN {
				if !math.IsNaN(m) || !math.IsNaN(MAD(tt.x)) || !math.IsNaN(Quantile(nil, 0.5)) {
					t.Fatalf("got %v, want NaN", m)
				}
				return
			}
			sorted := append([]float64(nil), tt.x...)
			for i := range sorted { // insertion sort, independent of slices.Sort
				for j := i; j > 0 && sorted[j] < sorted[j-1]; j-- {
					sorted[j], sorted[j-1] = sorted[j-1], sorted[j]
				}
			}
			checks := []struct {
				what      string
				got, want float64
			}{
				{"median", m, tt.median},
				{"q25", Quantile(sorted, 0.25), tt.q25},
				{"q975", Quantile(sorted, 0.975), tt.q975},
				{"mad", MAD(tt.x), tt.mad},
			}
			for _, c := range checks {
				if math.Abs(c.got-c.want) > 1e-12 {
					t.Errorf("%s: got %v, want %v", c.what, c.got, c.want)
				}
			}
		})
	}
	if got := Median([]float64{1, math.NaN()}); !math.IsNaN(got) {
		t.Errorf("Median with NaN: got %v, want NaN", got)
	}
	if got := Std([]float64{1, 3, 1, 3}); got != 1 {
		t.Errorf("Std: got %v, want 1", got)
	}
}

// TestMcNemarExact checks p-values of known 2 x 2 tables. The references
// are the doubled binomial tails 2 sum_{i<=k} C(n,i) / 2^n worked by hand
// (small n) or in exact integer arithmetic with math/big (large n).
func TestMcNemarExact(t *testing.T) {
	tests := []struct {
		b, c int
		want float64
	}{
		{0, 0, 1},
		{3, 3, 1},
		{2, 3, 1},                     // 2 (1+5+10)/32 = 1
		{1, 5, 14.0 / 64},             // 2 (1+6)/64
		{5, 1, 14.0 / 64},             // symmetric
		{0, 10, 2.0 / 1024},           // 2/2^10
		{2, 8, 112.0 / 1024},          // 2 (1+10+45)/1024
		{0, 1, 1},                     // 2 * 1/2
		{0, 2, 0.5},                   // 2 * 1/4
		{4, 16, 2 * 6196.0 / 1048576}, // C(20,0..4) = 1+20+190+1140+4845
	}
	for _, tt := range tests {
		got := McNemarExact(tt.b, tt.c)
		if math.Abs(got-tt.want) > 1e-14*max(1, tt.want) {
			t.Errorf("McNemarExact(%d, %d) = %.17g, want %.17g", tt.b, tt.c, got, tt.want)
		}
	}
	for _, tc := range [][2]int{{40, 60}, {90, 130}, {480, 520}, {9800, 10200}, {49500, 50500}, {3, 1000}} {
		want := bigMcNemar(tc[0], tc[1])
		got := McNemarExact(tc[0], tc[1])
		rel := math.Abs(got-want) / want
		t.Logf("McNemarExact(%d, %d) = %.6g, relative error %.1g", tc[0], tc[1], got, rel)
		if rel > 1e-12 {
			t.Errorf("McNemarExact(%d, %d) = %.15g, exact %.15g (relative error %.2g)", tc[0], tc[1], got, want, rel)
		}
	}
}

// bigMcNemar is 2 sum_{i<=min(b,c)} C(n,i) / 2^n in exact integers.
func bigMcNemar(b, c int) float64 {
	n, k := b+c, min(b, c)
	sum := big.NewInt(0)
	term := big.NewInt(1) // C(n, 0)
	for i := 0; i <= k; i++ {
		sum.Add(sum, term)
		term.Mul(term, big.NewInt(int64(n-i)))
		term.Quo(term, big.NewInt(int64(i+1)))
	}
	sum.Lsh(sum, 1)
	f := new(big.Float).SetPrec(200).SetInt(sum)
	f.SetMantExp(f, -n)
	v, _ := f.Float64()
	return min(v, 1)
}

// TestPairedBootstrapCoverage checks, on synthetic paired data with a
// known mean difference, that the 95% interval covers it in about 95% of
// seeded repeats (a coarse check: 300 repeats, accepted in [0.90, 0.985]).
func TestPairedBootstrapCoverage(t *testing.T) {
	const (
		repeats = 300
		n       = 120
		delta   = 0.3
	)
	covered := 0
	for r := range repeats {
		rng := rand.New(rand.NewPCG(uint64(r), 77))
		a := make([]float64, n)
		b := make([]float64, n)
		for i := range a {
			// Correlated pairs: a shared example effect plus noise.
			ex := rng.NormFloat64()
			a[i] = ex + 0.5*rng.NormFloat64()
			b[i] = ex + delta + 0.5*rng.NormFloat64()
		}
		lo, hi := PairedBootstrapCI(a, b, 1000, 0.95, uint64(r))
		if lo <= delta && delta <= hi {
			covered++
		}
	}
	rate := float64(covered) / repeats
	t.Logf("coverage %.3f over %d repeats", rate, repeats)
	if rate < 0.90 || rate > 0.985 {
		t.Errorf("coverage %.3f, want about 0.95", rate)
	}
}

func TestBootstrapDeterministicAndDegenerate(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	a := make([]float64, 50)
	for i := range a {
		a[i] = rng.NormFloat64()
	}
	if lo, hi := PairedBootstrapCI(a, a, 500, 0.95, 3); lo != 0 || hi != 0 {
		t.Errorf("identical samples: interval [%v, %v], want [0, 0]", lo, hi)
	}
	b := make([]float64, len(a))
	for i := range b {
		b[i] = a[i] + 2 // a constant shift: every resample's delta is 2
	}
	lo, hi := PairedBootstrapCI(a, b, 500, 0.95, 3)
	if math.Abs(lo-2) > 1e-12 || math.Abs(hi-2) > 1e-12 {
		t.Errorf("constant shift: interval [%v, %v], want [2, 2]", lo, hi)
	}
	b[0] += 1
	lo1, hi1 := PairedBootstrapCI(a, b, 500, 0.95, 9)
	lo2, hi2 := PairedBootstrapCI(a, b, 500, 0.95, 9)
	if lo1 != lo2 || hi1 != hi2 {
		t.Errorf("same seed, different intervals: [%v, %v] and [%v, %v]", lo1, hi1, lo2, hi2)
	}
	if lo, hi := BootstrapCI(0, 10, 0.95, 1, func([]int) float64 { return 0 }); !math.IsNaN(lo) || !math.IsNaN(hi) {
		t.Errorf("no items: [%v, %v], want NaN", lo, hi)
	}
	// The index draws are uniform: over many resamples of 4 items each
	// index is drawn about a quarter of the time.
	counts := make([]atomic.Int64, 4)
	BootstrapCI(4, 20000, 0.95, 5, func(idx []int) float64 {
		for _, i := range idx {
			counts[i].Add(1)
		}
		return 0
	})
	for i := range counts {
		if f := float64(counts[i].Load()) / 80000; math.Abs(f-0.25) > 0.01 {
			t.Errorf("index %d drawn with frequency %.4f, want 0.25", i, f)
		}
	}
}

// TestBootstrapWorkers: the interval of a statistic large enough to be
// evaluated on several goroutines is the same on one, and a NaN on any
// resample still makes it NaN.
func TestBootstrapWorkers(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	n, reps := 3000, 700 // n reps above parallelMinWork
	v := make([]float64, n)
	for i := range v {
		v[i] = rng.ExpFloat64()
	}
	mean := func(idx []int) float64 {
		var s float64
		for _, i := range idx {
			s += v[i]
		}
		return s / float64(len(idx))
	}
	calls := atomic.Int64{}
	withNaN := func(idx []int) float64 {
		if calls.Add(1) == 500 {
			return math.NaN()
		}
		return mean(idx)
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	var got [2][2]float64
	for k, procs := range []int{1, 4} {
		runtime.GOMAXPROCS(procs)
		got[k][0], got[k][1] = BootstrapCI(n, reps, 0.95, 11, mean)
		calls.Store(0)
		if lo, hi := BootstrapCI(n, reps, 0.95, 11, withNaN); !math.IsNaN(lo) || !math.IsNaN(hi) {
			t.Errorf("GOMAXPROCS %d: a NaN resample gave [%v, %v]", procs, lo, hi)
		}
	}
	if got[0] != got[1] || !(got[0][0] < got[0][1]) {
		t.Errorf("interval [%v, %v] on one goroutine, [%v, %v] on four", got[0][0], got[0][1], got[1][0], got[1][1])
	}
}

func TestTrainingStability(t *testing.T) {
	// 100 steps of a loss alternating 1.00 / 1.02 (window median 1.01,
	// MAD 0.01, threshold 1.01 + 3 * 1.4826 * 0.01 = 1.0545), with spikes
	// of 1.5 at steps 10 (first half: not counted), 60 and 80.
	n := 100
	loss := make([]float64, n)
	grad := make([]float64, n)
	for i := range loss {
		loss[i] = 1 + 0.02*float64(i%2)
		grad[i] = 1 + 2*float64(i%2) // second half: 1, 3, ... -> std 1
	}
	for _, s := range []int{10, 60, 80} {
		loss[s] = 1.5
	}
	loss[90] = 1.05 // below the threshold: not a spike
	st := TrainingStability(loss, grad, n/2, 20, 3)
	if st.GradStd != 1 || st.GradMean != 2 {
		t.Errorf("gradient norm mean %v std %v, want 2 and 1", st.GradMean, st.GradStd)
	}
	if st.Spikes != 2 {
		t.Errorf("spikes %d, want 2", st.Spikes)
	}
	if st.Judged != 50 {
		t.Errorf("judged %d steps, want 50", st.Judged)
	}
	// From step 70: the spike at 80 only, 30 steps judged.
	if st := TrainingStability(loss, grad, 70, 20, 3); st.Spikes != 1 || st.Judged != 30 {
		t.Errorf("from step 70: %d spikes of %d judged, want 1 of 30", st.Spikes, st.Judged)
	}
	// A flat loss has no spike; a rise from a flat window is one.
	flat := make([]float64, 20)
	for i := range flat {
		flat[i] = 0.5
	}
	if st := TrainingStability(flat, make([]float64, 20), 10, 8, 3); st.Spikes != 0 {
		t.Errorf("flat loss: %d spikes, want 0", st.Spikes)
	}
	flat[15] = 0.5000001
	if st := TrainingStability(flat, make([]float64, 20), 10, 8, 3); st.Spikes != 1 {
		t.Errorf("rise from a flat window: %d spikes, want 1", st.Spikes)
	}
	// Too short to judge.
	if st := TrainingStability([]float64{1, 2, 3}, []float64{1, 1, 1}, 1, 20, 3); st.Spikes != 0 || st.Judged != 0 || st.GradStd != 0 {
		t.Errorf("3 steps: %+v, want no spike, nothing judged, std 0", st)
	}
}
