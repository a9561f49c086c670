package compute

import (
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
)

// This file holds the statistics validate reports: order statistics, the
// seeded paired bootstrap, McNemar's exact test and the training
// stability summary of a training log. No I/O, no models.

// Mean returns the arithmetic mean of x, NaN when x is empty.
func Mean(x []float64) float64 {
	if len(x) == 0 {
		return math.NaN()
	}
	var s float64
	for _, v := range x {
		s += v
	}
	return s / float64(len(x))
}

// Std returns the population standard deviation sqrt(mean((x - mean)^2))
// of x (two passes), NaN when x is empty.
func Std(x []float64) float64 {
	m := Mean(x)
	if math.IsNaN(m) {
		return m
	}
	var q float64
	for _, v := range x {
		d := v - m
		q += d * d
	}
	return math.Sqrt(q / float64(len(x)))
}

// Median returns the median of x (the mean of the two middle values for
// an even length), NaN when x is empty or holds a NaN. x is not modified.
func Median(x []float64) float64 {
	if len(x) == 0 {
		return math.NaN()
	}
	s := slices.Clone(x)
	for _, v := range s {
		if math.IsNaN(v) {
			return math.NaN()
		}
	}
	slices.Sort(s)
	return Quantile(s, 0.5)
}

// Quantile returns the p-quantile of sorted (ascending, no NaN) by linear
// interpolation between order statistics: with h = p (n - 1), it is
// sorted[floor(h)] + (h - floor(h)) (sorted[floor(h)+1] - sorted[floor(h)]),
// Hyndman and Fan's type 7 (numpy's and R's default). NaN when sorted is
// empty; p is clamped to [0, 1].
func Quantile(sorted []float64, p float64) float64 {
	n := len(sorted)
	if n == 0 {
		return math.NaN()
	}
	p = min(max(p, 0), 1)
	h := p * float64(n-1)
	lo := int(math.Floor(h))
	if lo >= n-1 {
		return sorted[n-1]
	}
	f := h - float64(lo)
	if f == 0 {
		return sorted[lo]
	}
	a, b := sorted[lo], sorted[lo+1]
	if a == b { // exact, and no Inf - Inf
		return a
	}
	return a + f*(b-a)
}

// MAD returns the median absolute deviation median(|x - median(x)|),
// unscaled, NaN when x is empty.
func MAD(x []float64) float64 {
	m := Median(x)
	if math.IsNaN(m) {
		return m
	}
	d := make([]float64, len(x))
	for i, v := range x {
		d[i] = math.Abs(v - m)
	}
	return Median(d)
}

// bootstrapStream is the PCG stream of the bootstrap's index draws.
const bootstrapStream uint64 = 0xB0075_75A9

// BootstrapCI returns the percentile interval at the given level (0.95 for
// a 95% interval) of a statistic over reps resamples of n items: each
// resample draws n indices uniformly with replacement, stat maps them to
// a value, and the interval is the (1-level)/2 and (1+level)/2 quantiles
// (type 7, see Quantile) of the reps values. The draws come from the PCG
// stream (seed, a fixed stream) with a fixed bounded-integer rule
// (Lemire's multiply-shift on 32 random bits), so a seed gives the same
// resamples on every machine and for every statistic: computing two
// statistics with one seed resamples the same examples for both. stat is
// called from up to GOMAXPROCS goroutines at once, each call with its own
// idx, which stat must not keep or modify; the interval does not depend
// on the number of goroutines. The interval is NaN when n or reps is
// below 1, or when stat returns NaN for any resample.
func BootstrapCI(n, reps int, level float64, seed uint64, stat func(idx []int) float64) (lo, hi float64) {
	if n < 1 || reps < 1 {
		return math.NaN(), math.NaN()
	}
	rng := rand.NewPCG(seed, bootstrapStream)
	workers := 1
	if float64(n)*float64(reps) >= parallelMinWork {
		workers = max(1, min(runtime.GOMAXPROCS(0), reps))
	}
	// Rounds of up to batch resamples: drawn in order, then evaluated
	// by the workers.
	batch := min(reps, 8*workers)
	idx := make([]int, batch*n)
	vals := make([]float64, reps)
	for r0 := 0; r0 < reps; r0 += batch {
		g := min(batch, reps-r0)
		for i := range idx[:g*n] {
			idx[i] = int((rng.Uint64() >> 32) * uint64(n) >> 32)
		}
		eval := func(lo, hi int) {
			for j := lo; j < hi; j++ {
				vals[r0+j] = stat(idx[j*n : (j+1)*n : (j+1)*n])
			}
		}
		if k := min(workers, g); k > 1 {
			parallelFor(k, g, false, eval)
		} else {
			eval(0, g)
		}
	}
	for _, v := range vals {
		if math.IsNaN(v) {
			return math.NaN(), math.NaN()
		}
	}
	slices.Sort(vals)
	return Quantile(vals, (1-level)/2), Quantile(vals, (1+level)/2)
}

// PairedBootstrapCI returns the percentile interval of the difference of
// means mean(b) - mean(a) of paired per-example values (a[i] and b[i]
// belong to the same example): every resample draws one set of example
// indices and uses it for both, so the interval reflects the correlation
// of the pair. See BootstrapCI for the level, the seed and NaN. a and b
// must have the same length.
func PairedBootstrapCI(a, b []float64, reps int, level float64, seed uint64) (lo, hi float64) {
	if len(a) != len(b) {
		panic(ErrShape)
	}
	n := float64(len(a))
	return BootstrapCI(len(a), reps, level, seed, func(idx []int) float64 {
		var sa, sb float64
		for _, i := range idx {
			sa += a[i]
			sb += b[i]
		}
		return sb/n - sa/n
	})
}

// McNemarExact returns the two-sided p-value of McNemar's exact test for
// paired binary outcomes with b pairs where only the first is a success
// and c pairs where only the second is: under the null hypothesis each of
// the n = b + c discordant pairs goes either way with probability 1/2, and
//
//	p = min(1, 2 sum_{i=0}^{min(b,c)} C(n, i) / 2^n),
//
// the doubled smaller binomial tail (the binomial is symmetric, so this is
// also the test that sums every outcome no more likely than the one
// observed). p is 1 when n is 0. The sum is computed from its largest term
// C(n, k) / 2^n, k = min(b, c), built as the product of the factors
// (n-k+j)/j with its binary exponent kept apart (so nothing overflows),
// and the ratios C(n, i-1) / C(n, i) = i / (n-i+1) of the terms below it:
// the relative error is a few ulps per factor, below 1e-12 for n up to
// 10^5 (the test checks it against exact integers), and p underflows to 0
// only below about 1e-308. Negative counts panic with ErrShape.
func McNemarExact(b, c int) float64 {
	if b < 0 || c < 0 {
		panic(ErrShape)
	}
	n := b + c
	if n == 0 {
		return 1
	}
	k := min(b, c)
	if 2*k == n {
		return 1 // the tail holds at least half the mass
	}
	// C(n, k) = m 2^e, built as the product of (n-k+j)/j with the
	// exponent taken out at every step (no overflow, two roundings per
	// factor).
	m, e := 1.0, 0
	for j := 1; j <= k; j++ {
		m = m * float64(n-k+j) / float64(j)
		var ex int
		m, ex = math.Frexp(m)
		e += ex
	}
	// sum_{i<=k} C(n,i)/C(n,k), terms decreasing as i goes down.
	s, t := 1.0, 1.0
	for i := k; i > 0; i-- {
		t *= float64(i) / float64(n-i+1)
		s += t
		if t < 1e-17*s {
			break
		}
	}
	p := math.Ldexp(2*m*s, e-n)
	return min(p, 1)
}

// SpikeMADScale scales a median absolute deviation to a consistent
// estimate of the standard deviation of normal data (1 / Phi^-1(3/4)).
const SpikeMADScale = 1.4826

// Stability summarises a stretch of a training run (TrainingStability).
type Stability struct {
	// GradMean and GradStd are the mean and the population standard
	// deviation of the global gradient norms of the stretch.
	GradMean, GradStd float64
	// Spikes counts the steps of the stretch whose loss is a spike,
	// Judged the steps that could be judged.
	Spikes, Judged int
}

// TrainingStability summarises the steps t >= start of a training run
// from its per-step losses and global gradient norms (same length, step
// order):
//
//   - GradMean and GradStd over the gradient norms of those steps;
//   - Spikes counts the steps whose loss is a spike: with W the window
//     losses[max(0, t-window) : t] of the (up to) window steps before t
//     (which may lie before start), m its median and s = SpikeMADScale *
//     MAD(W), the step is a spike when losses[t] > m + k s (when s is 0,
//     any loss above m). A step whose window has fewer than 5 losses is
//     not judged; Judged counts the others.
//
// GradMean and GradStd are NaN when no step is at or after start.
// Mismatched lengths or a negative start panic with ErrShape.
func TrainingStability(losses, gradNorms []float64, start, window int, k float64) Stability {
	if len(losses) != len(gradNorms) || start < 0 {
		panic(ErrShape)
	}
	start = min(start, len(losses))
	st := Stability{GradMean: Mean(gradNorms[start:]), GradStd: Std(gradNorms[start:])}
	const minWindow = 5
	for t := start; t < len(losses); t++ {
		w := losses[max(0, t-window):t]
		if len(w) < minWindow {
			continue
		}
		st.Judged++
		m := Median(w)
		s := SpikeMADScale * MAD(w)
		if losses[t] > m+k*s {
			st.Spikes++
		}
	}
	return st
}
