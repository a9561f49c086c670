package compute

import (
	"errors"
	"math"
	"slices"
	"testing"

	"gonum.org/v1/gonum/mat"
)

// monarchTests covers square and rectangular shapes, r = 1 and r > 1, b = 1,
// and shapes b does not divide (padded).
var monarchTests = []struct {
	name          string
	out, in, b, r int
}{
	{"classic 16 b4 r1", 16, 16, 4, 1},
	{"square 16 b2 r2", 16, 16, 2, 2},
	{"square 32 b2 r3", 32, 32, 2, 3},
	{"square 18 b3 r2", 18, 18, 3, 2},
	{"tall 24x12 b3 r2", 24, 12, 3, 2},
	{"wide 12x32 b2 r2", 12, 32, 2, 2},
	{"wide 8x20 b4 r2", 8, 20, 4, 2},
	{"b1 lowrank 8x6 r3", 8, 6, 1, 3},
	{"padded 10x7 b3 r2", 10, 7, 3, 2},
	{"padded 5x9 b4 r1", 5, 9, 4, 1},
	{"padded 13x11 b4 r3", 13, 11, 4, 3},
	{"padded rows 9x8 b2 r2", 9, 8, 2, 2},
}

func monarchSpec(out, in, b, r int) Spec {
	return Spec{Family: FamilyMonarch, Out: out, In: in, Blocks: b, Rank: r}
}

func TestMonarchOperator(t *testing.T) {
	for i, tt := range monarchTests {
		t.Run(tt.name, func(t *testing.T) {
			rng := newRand(uint64(200 + i))
			spec := monarchSpec(tt.out, tt.in, tt.b, tt.r)
			op := randomMember(t, spec, rng)
			checkOperator(t, op, rng)
			checkRecovery(t, spec, rng)

			po, pi := ceilTo(tt.out, tt.b), ceilTo(tt.in, tt.b)
			if got, want := NumParams(op), tt.b*tt.r*(po+pi); got != want {
				t.Errorf("NumParams = %d, want b r (out + in) = %d", got, want)
			}
			if got, want := op.FLOPs(), 2*tt.b*tt.r*(po+pi); got != want {
				t.Errorf("FLOPs = %d, want %d", got, want)
			}
			shapes, names, err := ParamShapes(spec)
			if err != nil {
				t.Fatal(err)
			}
			want := [][]int{{tt.b, po / tt.b, tt.b * tt.r}, {tt.b, pi / tt.b, tt.b * tt.r}}
			if len(names) != 2 || names[0] != "L" || names[1] != "R" ||
				!slices.Equal(shapes[0], want[0]) || !slices.Equal(shapes[1], want[1]) {
				t.Errorf("params %v %v, want [L R] %v", names, shapes, want)
			}
			_, isMonarch := op.(*Monarch[float64])
			if padded := po != tt.out || pi != tt.in; padded == isMonarch {
				t.Errorf("padded = %v but operator is %T", padded, op)
			}
		})
	}
}

// monarchSubmatrix returns the visible part of submatrix (j, k) of w under
// the Monarch convention, written out independently of monarch.go: rows
// j, j+b, ... below out, columns k*mi ... (k+1)*mi - 1 below in, with
// mi = ceil(in/b). It returns nil when that part is empty.
func monarchSubmatrix(w *mat.Dense, b, j, k int) *mat.Dense {
	out, in := w.Dims()
	mi := (in + b - 1) / b
	var rows []int
	for row := j; row < out; row += b {
		rows = append(rows, row)
	}
	c0, c1 := k*mi, min((k+1)*mi, in)
	if len(rows) == 0 || c1 <= c0 {
		return nil
	}
	sub := mat.NewDense(len(rows), c1-c0, nil)
	for i, row := range rows {
		for c := c0; c < c1; c++ {
			sub.Set(i, c-c0, w.At(row, c))
		}
	}
	return sub
}

func TestMonarchProjectionOptimal(t *testing.T) {
	for i, tt := range monarchTests {
		t.Run(tt.name, func(t *testing.T) {
			rng := newRand(uint64(400 + i))
			w := randDense(rng, tt.out, tt.in)
			op, err := Project(w, monarchSpec(tt.out, tt.in, tt.b, tt.r), 3)
			if err != nil {
				t.Fatal(err)
			}
			// Eckart-Young per submatrix: the optimum is the tail mass
			// of each submatrix's singular values.
			var want float64
			for j := range tt.b {
				for k := range tt.b {
					sub := monarchSubmatrix(w, tt.b, j, k)
					if sub == nil {
						continue
					}
					for s, v := range SingularValuesOf(sub, nil) {
						if s >= tt.r {
							want += v * v
						}
					}
				}
			}
			errSq := func(o Operator[float64]) float64 {
				var d mat.Dense
				d.Sub(w, Dense(o))
				e := mat.Norm(&d, 2)
				return e * e
			}
			got := errSq(op)
			// Relative 1e-10, with an absolute floor for full-rank
			// blocks (want = 0).
			wn := mat.Norm(w, 2)
			if math.Abs(got-want) > 1e-10*want+1e-14*wn*wn {
				t.Errorf("error^2 %.15g, per-submatrix tail mass %.15g", got, want)
			}
			for range 20 {
				p := Clone(op)
				for _, par := range p.Params() {
					for j := range par.Data {
						par.Data[j] += 1e-3 * rng.NormFloat64()
					}
				}
				if e := errSq(p); e < got*(1-1e-12) {
					t.Errorf("perturbed error^2 %.15g below optimum %.15g", e, got)
				}
			}
			// Deterministic in (w, spec, seed).
			again, err := Project(w, monarchSpec(tt.out, tt.in, tt.b, tt.r), 3)
			if err != nil {
				t.Fatal(err)
			}
			if !mat.Equal(Dense(op), Dense(again)) {
				t.Error("two projections with the same seed differ")
			}
		})
	}
}

// TestMonarchPaddedRecovery takes an unpadded-shape member, crops it to a
// shape b does not divide, and checks that the projection recovers the
// crop: every visible submatrix still has rank <= r.
func TestMonarchPaddedRecovery(t *testing.T) {
	rng := newRand(17)
	full := randomMember(t, monarchSpec(16, 12, 4, 2), rng)
	w := mat.DenseCopyOf(Dense(full).Slice(0, 14, 0, 10))
	op, err := Project(w, monarchSpec(14, 10, 4, 2), 1)
	if err != nil {
		t.Fatal(err)
	}
	// 14 and 10 pad to 16 and 12: the same convention as the full one.
	if e := RelativeError(w, Dense(op)); e > tolRecovery {
		t.Errorf("cropped member: recovery error %g > %g", e, tolRecovery)
	}
	// The invisible part of the padded result is zero.
	inner := op.(interface{ Unpadded() Operator[float64] }).Unpadded()
	wp := Dense(inner)
	for i := range 16 {
		for j := range 12 {
			if (i >= 14 || j >= 10) && wp.At(i, j) != 0 {
				t.Fatalf("padded entry (%d, %d) = %g, want 0", i, j, wp.At(i, j))
			}
		}
	}
}

// TestMonarchRandomizedRecovery uses submatrices above exactSVDLimit, so
// each block goes through the randomized SVD.
func TestMonarchRandomizedRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("large SVDs")
	}
	checkRecovery(t, monarchSpec(340, 344, 2, 4), newRand(23))
}

// TestMonarchConvention pins the layout: a single rank-one submatrix at
// row set j = 1, chunk k = 2 with b = 4 occupies rows 1, 5, 9, 13 and
// columns 8..11, and lives in L[1][:, 2] and R[2][:, 1].
func TestMonarchConvention(t *testing.T) {
	const n, b, j, k = 16, 4, 1, 2
	u := []float64{1, 2, 3, 4}
	v := []float64{5, 6, 7, 8}
	l := make([]float64, n*b)
	r := make([]float64, n*b)
	for i := range 4 {
		l[(j*4+i)*b+k] = u[i] // L[j][i][k*r]
		r[(k*4+i)*b+j] = v[i] // R[k][c][j*r]
	}
	m := NewMonarch(n, n, b, 1, l, r)
	w := Dense[float64](m)
	want := mat.NewDense(n, n, nil)
	for i, row := range []int{1, 5, 9, 13} {
		for c, col := range []int{8, 9, 10, 11} {
			want.Set(row, col, u[i]*v[c])
		}
	}
	if !mat.Equal(w, want) {
		t.Errorf("W =\n%v\nwant\n%v", mat.Formatted(w), mat.Formatted(want))
	}
	y := make([]float64, n*n)
	m.Apply(y, identity(n), n, nil)
	if !mat.Equal(mat.NewDense(n, n, y).T(), want) {
		t.Error("Apply(I)^T differs from the pinned matrix")
	}

	// The projection of that matrix puts the factors in the same slots.
	op, err := Project(want, monarchSpec(n, n, b, 1), 0)
	if err != nil {
		t.Fatal(err)
	}
	p := op.(*Monarch[float64])
	for idx, val := range p.left {
		jj, kk := idx/(4*b), idx%b
		if (jj != j || kk != k) && val != 0 {
			t.Errorf("L[%d][%d][%d] = %g, want 0", jj, idx/b%4, kk, val)
		}
	}
	for idx, val := range p.right {
		kk, jj := idx/(4*b), idx%b
		if (jj != j || kk != k) && val != 0 {
			t.Errorf("R[%d][%d][%d] = %g, want 0", kk, idx/b%4, jj, val)
		}
	}
	if e := RelativeError(want, Dense(op)); e > tolRecovery {
		t.Errorf("recovery error %g", e)
	}
}

func TestMonarchBadSpecs(t *testing.T) {
	tests := []struct {
		name          string
		out, in, b, r int
	}{
		{"zero blocks", 8, 8, 0, 1},
		{"negative blocks", 8, 8, -2, 1},
		{"blocks above in", 8, 4, 5, 1},
		{"blocks above out", 3, 8, 4, 1},
		{"zero rank", 8, 8, 2, 0},
		{"rank above block", 8, 8, 2, 5},
		{"rank above short side", 8, 16, 4, 3},
		{"rank above padded block", 5, 9, 4, 3}, // pads to 8x12: blocks 2x3
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := monarchSpec(tt.out, tt.in, tt.b, tt.r)
			if _, err := New[float32](spec); !errors.Is(err, ErrSpec) {
				t.Errorf("New: err = %v, want ErrSpec", err)
			}
			if _, err := Project(mat.NewDense(tt.out, tt.in, nil), spec, 0); !errors.Is(err, ErrSpec) {
				t.Errorf("Project: err = %v, want ErrSpec", err)
			}
		})
	}
	if _, err := New[float64](monarchSpec(5, 9, 4, 2)); err != nil {
		t.Errorf("largest padded rank rejected: %v", err)
	}
}

func TestMonarchNoAllocations(t *testing.T) {
	rng := newRand(5)
	for _, spec := range []Spec{monarchSpec(32, 24, 4, 2), monarchSpec(30, 21, 4, 2)} {
		op := randomMember(t, spec, rng)
		const n = 8
		x := randSlice(rng, n*spec.In)
		y := make([]float64, n*spec.Out)
		dx := make([]float64, n*spec.In)
		grads := [][]float64{make([]float64, len(op.Params()[0].Data)), make([]float64, len(op.Params()[1].Data))}
		ws := NewWorkspace[float64]()
		op.Backward(dx, x, y, n, grads, ws)
		if a := testing.AllocsPerRun(10, func() { op.Apply(y, x, n, ws) }); a != 0 {
			t.Errorf("%+v Apply: %v allocations per run", spec, a)
		}
		if a := testing.AllocsPerRun(10, func() { op.ApplyT(x, y, n, ws) }); a != 0 {
			t.Errorf("%+v ApplyT: %v allocations per run", spec, a)
		}
		if a := testing.AllocsPerRun(10, func() { op.Backward(dx, x, y, n, grads, ws) }); a != 0 {
			t.Errorf("%+v Backward: %v allocations per run", spec, a)
		}
	}
}

func TestTransposeTo(t *testing.T) {
	rng := newRand(12)
	for _, sz := range [][2]int{{1, 1}, {3, 5}, {8, 8}, {9, 17}, {64, 64}, {16, 3}} {
		a := randSlice(rng, sz[0]*sz[1])
		got := make([]float64, len(a))
		transposeTo(got, a, sz[0], sz[1])
		if d := relDiff(got, transpose(a, sz[0], sz[1])); d != 0 {
			t.Errorf("%dx%d: transposeTo differs from the element-wise transpose (rel diff %g)", sz[0], sz[1], d)
		}
	}
}
