package compute

import (
	"errors"
	"math"
	"slices"
	"testing"

	"gonum.org/v1/gonum/mat"
)

// blockDiagTests covers square and rectangular blocks, b = 1 (dense), b =
// min(out, in), and shapes b does not divide (padded).
var blockDiagTests = []struct {
	name       string
	out, in, b int
}{
	{"square 12 b3", 12, 12, 3},
	{"tall 12x8 b4", 12, 8, 4},
	{"wide 6x15 b3", 6, 15, 3},
	{"b1 dense 4x6", 4, 6, 1},
	{"diagonal 6 b6", 6, 6, 6},
	{"padded 10x7 b3", 10, 7, 3},
	{"padded 5x9 b4", 5, 9, 4},
	{"padded cols 8x11 b2", 8, 11, 2},
}

func blockDiagSpec(out, in, b int) Spec {
	return Spec{Family: FamilyBlockDiag, Out: out, In: in, Blocks: b}
}

func TestBlockDiagOperator(t *testing.T) {
	for i, tt := range blockDiagTests {
		t.Run(tt.name, func(t *testing.T) {
			rng := newRand(uint64(500 + i))
			spec := blockDiagSpec(tt.out, tt.in, tt.b)
			op := randomMember(t, spec, rng)
			checkOperator(t, op, rng)
			checkRecovery(t, spec, rng)

			po, pi := ceilTo(tt.out, tt.b), ceilTo(tt.in, tt.b)
			if got, want := NumParams(op), po*pi/tt.b; got != want {
				t.Errorf("NumParams = %d, want out in / b = %d", got, want)
			}
			p := op.Params()
			if want := []int{tt.b, po / tt.b, pi / tt.b}; len(p) != 1 || p[0].Name != "D" || !slices.Equal(p[0].Shape, want) {
				t.Errorf("params %q %v, want D %v", p[0].Name, p[0].Shape, want)
			}
			// Unpadded shapes take the structural singular values
			// (checked against the dense SVD by checkOperator).
			_, structural := op.(*BlockDiag[float64])
			if padded := po != tt.out || pi != tt.in; padded == structural {
				t.Errorf("padded = %v but operator is %T", padded, op)
			}
		})
	}
}

// blockDiagMask reports whether (row, col) of an out x in matrix lies in a
// diagonal block, written out independently of blockdiag.go: the padded
// block sizes are ceil(out/b) x ceil(in/b).
func blockDiagMask(out, in, b, row, col int) bool {
	mo, mi := (out+b-1)/b, (in+b-1)/b
	return row/mo == col/mi
}

func TestBlockDiagProjectionOptimal(t *testing.T) {
	for i, tt := range blockDiagTests {
		t.Run(tt.name, func(t *testing.T) {
			rng := newRand(uint64(600 + i))
			w := randDense(rng, tt.out, tt.in)
			op, err := Project(w, blockDiagSpec(tt.out, tt.in, tt.b), 0)
			if err != nil {
				t.Fatal(err)
			}
			var want float64 // mass outside the blocks
			for r := range tt.out {
				for c := range tt.in {
					if !blockDiagMask(tt.out, tt.in, tt.b, r, c) {
						want += w.At(r, c) * w.At(r, c)
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
			if math.Abs(got-want) > 1e-10*max(want, 1) {
				t.Errorf("error^2 %.15g, off-diagonal mass %.15g", got, want)
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
			// The projection is zero outside the blocks.
			d := Dense(op)
			for r := range tt.out {
				for c := range tt.in {
					if !blockDiagMask(tt.out, tt.in, tt.b, r, c) && d.At(r, c) != 0 {
						t.Fatalf("entry (%d, %d) = %g outside the blocks", r, c, d.At(r, c))
					}
				}
			}
		})
	}
}

// TestBlockDiagConvention pins the layout: for 6 x 4 with b = 2, block 1
// covers rows 3..5 and columns 2..3, stored at D[1].
func TestBlockDiagConvention(t *testing.T) {
	d := make([]float64, 12)
	for i := range 6 {
		d[6+i] = float64(i + 1) // D[1] = [[1 2] [3 4] [5 6]]
	}
	w := Dense[float64](NewBlockDiag(6, 4, 2, d))
	want := mat.NewDense(6, 4, []float64{
		0, 0, 0, 0,
		0, 0, 0, 0,
		0, 0, 0, 0,
		0, 0, 1, 2,
		0, 0, 3, 4,
		0, 0, 5, 6,
	})
	if !mat.Equal(w, want) {
		t.Errorf("W =\n%v\nwant\n%v", mat.Formatted(w), mat.Formatted(want))
	}
}

// TestBlockDiagSingularValues checks the structural path on a hand-made
// example: blocks diag(3, 1) and [[0 2] [0 0]] have singular values
// {3, 1} and {2, 0}, so W has 3, 2, 1, 0.
func TestBlockDiagSingularValues(t *testing.T) {
	bd := NewBlockDiag(4, 4, 2, []float64{3, 0, 0, 1, 0, 2, 0, 0})
	got := bd.SingularValues(make([]float64, 0, 8))
	want := []float64{3, 2, 1, 0}
	if !withinAbs(got, want, 1e-14) {
		t.Errorf("singular values %v, want %v", got, want)
	}
	// Rectangular blocks: 2 blocks of 1 x 3, rows [1 0 0] and [0 0 -4].
	bd = NewBlockDiag(2, 6, 2, []float64{1, 0, 0, 0, 0, -4})
	if got, want := bd.SingularValues(nil), []float64{4, 1}; !withinAbs(got, want, 1e-14) {
		t.Errorf("rectangular: singular values %v, want %v", got, want)
	}
}

func withinAbs(a, b []float64, tol float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Abs(a[i]-b[i]) > tol {
			return false
		}
	}
	return true
}

func TestBlockDiagBadSpecs(t *testing.T) {
	tests := []struct {
		name       string
		out, in, b int
	}{
		{"zero blocks", 8, 8, 0},
		{"negative blocks", 8, 8, -1},
		{"blocks above in", 8, 3, 4},
		{"blocks above out", 2, 8, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := blockDiagSpec(tt.out, tt.in, tt.b)
			if _, err := New[float64](spec); !errors.Is(err, ErrSpec) {
				t.Errorf("New: err = %v, want ErrSpec", err)
			}
			if _, err := Project(mat.NewDense(tt.out, tt.in, nil), spec, 0); !errors.Is(err, ErrSpec) {
				t.Errorf("Project: err = %v, want ErrSpec", err)
			}
		})
	}
}

func TestBlockDiagNoAllocations(t *testing.T) {
	rng := newRand(6)
	for _, spec := range []Spec{blockDiagSpec(32, 24, 4), blockDiagSpec(30, 21, 4)} {
		op := randomMember(t, spec, rng)
		const n = 8
		x := randSlice(rng, n*spec.In)
		y := make([]float64, n*spec.Out)
		dx := make([]float64, n*spec.In)
		grads := [][]float64{make([]float64, len(op.Params()[0].Data))}
		ws := NewWorkspace[float64]()
		op.Backward(dx, x, y, n, grads, ws)
		if a := testing.AllocsPerRun(10, func() { op.Apply(y, x, n, ws) }); a != 0 {
			t.Errorf("%+v Apply: %v allocations per run", spec, a)
		}
		if a := testing.AllocsPerRun(10, func() { op.Backward(dx, x, y, n, grads, ws) }); a != 0 {
			t.Errorf("%+v Backward: %v allocations per run", spec, a)
		}
	}
}
