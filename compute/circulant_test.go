package compute

import (
	"errors"
	"math"
	"math/cmplx"
	"slices"
	"sync"
	"testing"

	"gonum.org/v1/gonum/mat"
)

func TestCirculantOperator(t *testing.T) {
	tests := []struct {
		name    string
		out, in int
		// embedded: N = max(out, in) has a prime factor above 5, so
		// products go through the Toeplitz embedding.
		embedded bool
	}{
		{"square 8", 8, 8, false},
		{"square odd 45", 45, 45, false},
		{"square 64", 64, 64, false},
		{"square prime 7", 7, 7, true},
		{"tall 9x4", 9, 4, false},
		{"tall prime 13x6", 13, 6, true},
		{"wide 5x12", 5, 12, false},
		{"wide prime 3x7", 3, 7, true},
		{"row 1x4", 1, 4, false},
		{"column 6x1", 6, 1, false},
		{"scalar 1x1", 1, 1, false},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rng := newRand(uint64(300 + i))
			spec := Spec{Family: FamilyCirculant, Out: tt.out, In: tt.in}
			op := randomMember(t, spec, rng)
			c := op.(*Circulant[float64])
			if got := c.emb.size != max(tt.out, tt.in); got != tt.embedded {
				t.Errorf("transform size %d for N = %d: embedded %v, want %v", c.emb.size, max(tt.out, tt.in), got, tt.embedded)
			}
			if got, want := NumParams(op), max(tt.out, tt.in); got != want {
				t.Errorf("NumParams = %d, want %d", got, want)
			}
			checkOperator(t, op, rng)
			checkRecovery(t, spec, rng)
		})
	}
}

func TestCirculantLayout(t *testing.T) {
	// C[i][j] = c[(i - j) mod N]: the first column is c.
	tests := []struct {
		name    string
		out, in int
		c       []float64
		want    []float64
	}{
		{"square", 3, 3, []float64{1, 2, 3}, []float64{
			1, 3, 2,
			2, 1, 3,
			3, 2, 1}},
		{"tall corner", 3, 2, []float64{1, 2, 3}, []float64{
			1, 3,
			2, 1,
			3, 2}},
		{"wide corner", 2, 4, []float64{1, 2, 3, 4}, []float64{
			1, 4, 3, 2,
			2, 1, 4, 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Dense[float64](NewCirculant(tt.out, tt.in, tt.c)).RawMatrix().Data
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// groupEntries returns the entries of w grouped by key(i, j).
func groupEntries(w *mat.Dense, key func(i, j int) int) map[int][]float64 {
	m, n := w.Dims()
	g := map[int][]float64{}
	for i := range m {
		for j := range n {
			k := key(i, j)
			g[k] = append(g[k], w.At(i, j))
		}
	}
	return g
}

// withinGroupSS returns the sum over groups of the squared deviations from
// the group mean (count times the variance), computed in two passes.
func withinGroupSS(groups map[int][]float64) float64 {
	var ss float64
	for _, g := range groups {
		var mean float64
		for _, v := range g {
			mean += v
		}
		mean /= float64(len(g))
		for _, v := range g {
			ss += (v - mean) * (v - mean)
		}
	}
	return ss
}

// checkProjectionOptimal asserts that the projection of w under spec has
// squared error wantSS and that random perturbations of its parameters
// never lower the error.
func checkProjectionOptimal(t *testing.T, w *mat.Dense, spec Spec, wantSS float64) {
	t.Helper()
	rng := newRand(77)
	op, err := Project(w, spec, 1)
	if err != nil {
		t.Fatal(err)
	}
	var d mat.Dense
	d.Sub(w, Dense(op))
	gotSS := mat.Norm(&d, 2) * mat.Norm(&d, 2)
	if math.Abs(gotSS-wantSS) > 1e-10*wantSS {
		t.Errorf("squared error %.15g, analytic within-diagonal sum %.15g", gotSS, wantSS)
	}
	got := RelativeError(w, Dense(op))
	for range 30 {
		p := Clone(op)
		for _, par := range p.Params() {
			for j := range par.Data {
				par.Data[j] += 1e-3 * rng.NormFloat64()
			}
		}
		if e := RelativeError(w, Dense(p)); e < got-1e-14 {
			t.Errorf("perturbed error %.15g below the projection's %.15g", e, got)
		}
	}
}

func TestCirculantProjectionOptimal(t *testing.T) {
	tests := []struct {
		name    string
		out, in int
	}{
		{"square", 12, 12},
		{"square prime", 11, 11},
		{"tall", 15, 6},
		{"wide", 4, 10},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := randDense(newRand(uint64(400+i)), tt.out, tt.in)
			n := max(tt.out, tt.in)
			groups := groupEntries(w, func(i, j int) int { return ((i-j)%n + n) % n })
			if len(groups) != n {
				t.Fatalf("%d wrapped diagonals, want %d", len(groups), n)
			}
			for k, g := range groups {
				if len(g) != min(tt.out, tt.in) {
					t.Errorf("wrapped diagonal %d has %d visible entries, want %d", k, len(g), min(tt.out, tt.in))
				}
			}
			checkProjectionOptimal(t, w, Spec{Family: FamilyCirculant}, withinGroupSS(groups))
		})
	}
}

func TestCirculantSingularValues(t *testing.T) {
	// A square circulant is normal with eigenvalues the DFT of c, so its
	// singular values are |sum_j c_j exp(-2 pi i jk / N)|; the reference
	// is that naive O(N^2) sum and the dense SVD. N = 45 and 47 exercise
	// FFT sizes that are not powers of two (47 is prime).
	for i, n := range []int{64, 45, 47} {
		rng := newRand(uint64(500 + i))
		op := NewCirculant(n, n, randSlice(rng, n))
		got := op.SingularValues(nil)

		naive := make([]float64, n)
		for k := range n {
			var s complex128
			for j, v := range op.c {
				s += complex(v, 0) * cmplx.Exp(complex(0, -2*math.Pi*float64(j*k)/float64(n)))
			}
			naive[k] = cmplx.Abs(s)
		}
		slices.Sort(naive)
		slices.Reverse(naive)
		if d := relDiff(got, naive); d > tolSV {
			t.Errorf("N = %d: structural vs naive DFT: rel diff %g", n, d)
		}
		if d := relDiff(got, SingularValuesOf(Dense[float64](op), nil)); d > tolSV {
			t.Errorf("N = %d: structural vs dense SVD: rel diff %g", n, d)
		}
		if dst := make([]float64, 0, n); &op.SingularValues(dst)[0] != &dst[:1][0] {
			t.Errorf("N = %d: SingularValues did not use dst", n)
		}
	}
}

func TestCirculantToeplitzBadSpecs(t *testing.T) {
	tests := []struct {
		name string
		spec Spec
	}{
		{"circulant zero out", Spec{Family: FamilyCirculant, Out: 0, In: 4}},
		{"circulant negative in", Spec{Family: FamilyCirculant, Out: 4, In: -1}},
		{"circulant rank", Spec{Family: FamilyCirculant, Out: 4, In: 4, Rank: 2}},
		{"circulant blocks", Spec{Family: FamilyCirculant, Out: 4, In: 4, Blocks: 2}},
		{"circulant factor shape", Spec{Family: FamilyCirculant, Out: 4, In: 4, FactorShape: [2]int{2, 2}}},
		{"toeplitz zero in", Spec{Family: FamilyToeplitz, Out: 3, In: 0}},
		{"toeplitz nnz", Spec{Family: FamilyToeplitz, Out: 3, In: 5, NNZ: 4}},
		{"toeplitz nested", Spec{Family: FamilyToeplitz, Out: 3, In: 5, Trunk: &Spec{Family: FamilyDense}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New[float64](tt.spec); !errors.Is(err, ErrSpec) {
				t.Errorf("New[float64]: err = %v, want ErrSpec", err)
			}
			if _, err := New[float32](tt.spec); !errors.Is(err, ErrSpec) {
				t.Errorf("New[float32]: err = %v, want ErrSpec", err)
			}
			if tt.spec.Out > 0 && tt.spec.In > 0 {
				w := mat.NewDense(tt.spec.Out, tt.spec.In, nil)
				if _, err := Project(w, tt.spec, 0); !errors.Is(err, ErrSpec) {
					t.Errorf("Project: err = %v, want ErrSpec", err)
				}
			}
		})
	}
}

// fftSpecs are the shapes the FFT-family tests below share: both families,
// with and without the embedding.
var fftSpecs = []Spec{
	{Family: FamilyCirculant, Out: 16, In: 16},
	{Family: FamilyCirculant, Out: 11, In: 7},
	{Family: FamilyToeplitz, Out: 9, In: 14},
	{Family: FamilyToeplitz, Out: 20, In: 20},
}

func TestFFTFamiliesFloat32Backward(t *testing.T) {
	// The harness compares float32 Apply only; Backward and ApplyT convert
	// at the same edges and must agree too.
	const n = 6
	for i, spec := range fftSpecs {
		t.Run(spec.Family, func(t *testing.T) {
			rng := newRand(uint64(600 + i))
			op := randomMember(t, spec, rng)
			op32 := Convert[float32](op)
			x, dy := randSlice(rng, n*spec.In), randSlice(rng, n*spec.Out)
			dx := make([]float64, n*spec.In)
			g := [][]float64{make([]float64, len(op.Params()[0].Data))}
			op.Backward(dx, x, dy, n, g, nil)

			x32, dy32 := to32(x), to32(dy)
			dx32 := make([]float32, n*spec.In)
			g32 := [][]float32{make([]float32, len(g[0]))}
			op32.Backward(dx32, x32, dy32, n, g32, nil)
			if d := relDiff(to64(dx32), dx); d > tolFloat32 {
				t.Errorf("float32 dx: rel diff %g", d)
			}
			if d := relDiff(to64(g32[0]), g[0]); d > tolFloat32 {
				t.Errorf("float32 gradient: rel diff %g", d)
			}
			xt32 := make([]float32, n*spec.In)
			op32.ApplyT(xt32, dy32, n, nil)
			if d := relDiff(to64(xt32), dx); d > tolFloat32 {
				t.Errorf("float32 ApplyT: rel diff %g", d)
			}
		})
	}
}

func to32(s []float64) []float32 {
	r := make([]float32, len(s))
	for i, v := range s {
		r[i] = float32(v)
	}
	return r
}

func to64(s []float32) []float64 {
	r := make([]float64, len(s))
	for i, v := range s {
		r[i] = float64(v)
	}
	return r
}

func TestFFTFamiliesSeeParamWrites(t *testing.T) {
	// Nothing derived from the parameters is cached: a write through
	// Params shows in the next Apply.
	for i, spec := range fftSpecs {
		rng := newRand(uint64(700 + i))
		op := randomMember(t, spec, rng)
		x := randSlice(rng, 3*spec.In)
		y := make([]float64, 3*spec.Out)
		op.Apply(y, x, 3, nil)
		p := op.Params()[0].Data
		for j := range p {
			p[j] = rng.NormFloat64()
		}
		op.Apply(y, x, 3, nil)
		w := make([]float64, spec.Out*spec.In)
		op.DenseTo(w)
		if d := relDiff(y, matmulT(x, 3, spec.In, w, spec.Out)); d > tolExact {
			t.Errorf("%+v: Apply after a parameter write is stale: rel diff %g", spec, d)
		}
	}
}

func TestFFTFamiliesConcurrentApply(t *testing.T) {
	// One operator, many goroutines, each with its own Workspace: the
	// pooled FFT scratch must not be shared (run with -race).
	for i, spec := range fftSpecs {
		rng := newRand(uint64(800 + i))
		op := randomMember(t, spec, rng)
		const n = 4
		w := make([]float64, spec.Out*spec.In)
		op.DenseTo(w)
		var wg sync.WaitGroup
		errs := make([]float64, 8)
		for g := range errs {
			x := randSlice(rng, n*spec.In)
			wg.Go(func() {
				ws := NewWorkspace[float64]()
				y := make([]float64, n*spec.Out)
				for range 20 {
					op.Apply(y, x, n, ws)
					errs[g] = max(errs[g], relDiff(y, matmulT(x, n, spec.In, w, spec.Out)))
				}
			})
		}
		wg.Wait()
		if e := slices.Max(errs); e > tolExact {
			t.Errorf("%+v: concurrent Apply rel diff %g", spec, e)
		}
	}
}

func TestFFTFamiliesAllocations(t *testing.T) {
	// Scratch comes from a pool, so a warm Apply or Backward allocates
	// nothing; the bound leaves room for the pool entries the race
	// detector drops on purpose, and is far below one per row.
	const n = 64
	for i, spec := range fftSpecs {
		rng := newRand(uint64(900 + i))
		op := randomMember(t, spec, rng)
		x, dy := randSlice(rng, n*spec.In), randSlice(rng, n*spec.Out)
		y, dx := make([]float64, n*spec.Out), make([]float64, n*spec.In)
		g := [][]float64{make([]float64, len(op.Params()[0].Data))}
		ws := NewWorkspace[float64]()
		if a := testing.AllocsPerRun(50, func() { op.Apply(y, x, n, ws) }); a > 6 {
			t.Errorf("%+v: Apply made %v allocations", spec, a)
		}
		if a := testing.AllocsPerRun(50, func() { op.Backward(dx, x, dy, n, g, ws) }); a > 6 {
			t.Errorf("%+v: Backward made %v allocations", spec, a)
		}
	}
}

func TestNextFFTSize(t *testing.T) {
	tests := []struct{ n, want int }{
		{1, 1}, {2, 2}, {7, 8}, {11, 12}, {13, 15}, {17, 18}, {31, 32},
		{97, 100}, {4096, 4096}, {4097, 4320}, {8191, 8192},
	}
	for _, tt := range tests {
		if got := nextFFTSize(tt.n); got != tt.want {
			t.Errorf("nextFFTSize(%d) = %d, want %d", tt.n, got, tt.want)
		}
	}
}

func TestFFTFamiliesChunkedMatchesRowByRow(t *testing.T) {
	// Large batches are split over goroutines; the result must equal the
	// row-by-row (single-chunk) computation, and the input gradient the
	// dense product.
	const n = 300
	for i, spec := range []Spec{
		{Family: FamilyCirculant, Out: 512, In: 512},
		{Family: FamilyToeplitz, Out: 300, In: 213},
	} {
		t.Run(spec.Family, func(t *testing.T) {
			rng := newRand(uint64(1200 + i))
			op, err := New[float64](spec)
			if err != nil {
				t.Fatal(err)
			}
			p := op.Params()[0].Data
			copy(p, randSlice(rng, len(p)))
			var emb convEmbed[float64]
			switch o := op.(type) {
			case *Circulant[float64]:
				emb = o.emb
			case *Toeplitz[float64]:
				emb = o.emb
			}
			if k := emb.chunks(n); k < 2 {
				t.Fatalf("%d rows of size %d run in %d chunk(s); the test needs several", n, emb.size, k)
			}
			x, dy := randSlice(rng, n*spec.In), randSlice(rng, n*spec.Out)
			y, dx := make([]float64, n*spec.Out), make([]float64, n*spec.In)
			g := [][]float64{make([]float64, len(p))}
			op.Apply(y, x, n, nil)
			op.Backward(dx, x, dy, n, g, nil)

			w := make([]float64, spec.Out*spec.In)
			op.DenseTo(w)
			if d := relDiff(y, matmulT(x, n, spec.In, w, spec.Out)); d > tolExact {
				t.Errorf("chunked Apply vs X W^T: rel diff %g", d)
			}
			if d := relDiff(dx, matmulT(dy, n, spec.Out, transpose(w, spec.Out, spec.In), spec.In)); d > tolExact {
				t.Errorf("chunked dx vs dY W: rel diff %g", d)
			}
			want := [][]float64{make([]float64, len(p))}
			for r := range n {
				op.Backward(nil, x[r*spec.In:(r+1)*spec.In], dy[r*spec.Out:(r+1)*spec.Out], 1, want, nil)
			}
			if d := relDiff(g[0], want[0]); d > tolExact {
				t.Errorf("chunked gradient vs row by row: rel diff %g", d)
			}
		})
	}
}
