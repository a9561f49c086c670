package compute

import (
	"errors"
	"math"
	"testing"

	"gonum.org/v1/gonum/mat"
)

var orthogonalShapes = []struct {
	name    string
	out, in int
}{
	{"square", 8, 8},
	{"tall", 12, 5},
	{"wide", 5, 12},
	{"row", 1, 7},
	{"column", 6, 1},
}

func TestOrthogonalOperator(t *testing.T) {
	for i, tt := range orthogonalShapes {
		spec := Spec{Family: FamilyOrthogonal, Out: tt.out, In: tt.in}
		// A generic member: randomMember perturbs Q off the orthogonal
		// set, so SingularValues takes the dense path.
		t.Run(tt.name+" perturbed", func(t *testing.T) {
			rng := newRand(uint64(600 + i))
			op := randomMember(t, spec, rng)
			if op.(*Orthogonal[float64]).isOrthogonal() {
				t.Fatal("perturbed Q still orthogonal")
			}
			checkOperator(t, op, rng)
		})
		// The projection itself: Q orthogonal, the structural path
		// (every singular value |s|).
		t.Run(tt.name+" projected", func(t *testing.T) {
			rng := newRand(uint64(650 + i))
			op, err := Project(randDense(rng, tt.out, tt.in), spec, 0)
			if err != nil {
				t.Fatal(err)
			}
			o := op.(*Orthogonal[float64])
			if !o.isOrthogonal() {
				t.Fatal("projected Q is not orthogonal to 1e-12")
			}
			checkOperator(t, op, rng)
			for _, v := range op.SingularValues(nil) {
				if v != math.Abs(o.Scale()) {
					t.Errorf("singular value %v, want |s| = %v", v, math.Abs(o.Scale()))
				}
			}
			if got, want := NumParams(op), tt.out*tt.in+1; got != want {
				t.Errorf("NumParams = %d, want %d", got, want)
			}
		})
	}
}

// In-family matrices s Q are recovered. (checkRecovery does not apply:
// its randomMember perturbs Q off the family; Retract puts it back.)
func TestOrthogonalRecovery(t *testing.T) {
	for i, tt := range orthogonalShapes {
		t.Run(tt.name, func(t *testing.T) {
			rng := newRand(uint64(700 + i))
			spec := Spec{Family: FamilyOrthogonal, Out: tt.out, In: tt.in}
			member := randomMember(t, spec, rng).(*Orthogonal[float64])
			if err := member.Retract(); err != nil {
				t.Fatal(err)
			}
			w := Dense(member)
			op, err := Project(w, spec, 0)
			if err != nil {
				t.Fatal(err)
			}
			if e := RelativeError(w, Dense(op)); e > tolRecovery {
				t.Errorf("recovery error %g > %g", e, tolRecovery)
			}
			if s := op.(*Orthogonal[float64]).Scale(); math.Abs(s-member.Scale()) > 1e-12*math.Abs(member.Scale()) {
				t.Errorf("scale %v, want %v", s, member.Scale())
			}
		})
	}
}

// s Q with Q = polar(W), s = mean singular value minimises ||W - s Q||_F:
// the squared error is ||W||_F^2 - (sum sigma)^2 / min(m, n), and moving Q
// along the orthogonal set or s never lowers it.
func TestOrthogonalOptimality(t *testing.T) {
	for i, tt := range orthogonalShapes {
		t.Run(tt.name, func(t *testing.T) {
			rng := newRand(uint64(800 + i))
			w := randDense(rng, tt.out, tt.in)
			op, err := Project(w, Spec{Family: FamilyOrthogonal}, 0)
			if err != nil {
				t.Fatal(err)
			}
			var nuclear float64
			for _, v := range SingularValuesOf(w, nil) {
				nuclear += v
			}
			norm := FrobeniusNorm(w)
			want := math.Sqrt(norm*norm - nuclear*nuclear/float64(min(tt.out, tt.in)))
			var diff mat.Dense
			diff.Sub(w, Dense(op))
			got := FrobeniusNorm(&diff)
			if math.Abs(got-want) > 1e-12*norm {
				t.Errorf("error %.15g, want %.15g", got, want)
			}
			o := op.(*Orthogonal[float64])
			for range 20 {
				q := mat.NewDense(tt.out, tt.in, nil)
				for r := range tt.out {
					for c := range tt.in {
						q.Set(r, c, o.q[r*tt.in+c]+1e-3*rng.NormFloat64())
					}
				}
				qp, err := PolarFactor(q)
				if err != nil {
					t.Fatal(err)
				}
				p := NewOrthogonal(tt.out, tt.in, qp.RawMatrix().Data, o.Scale()+1e-3*rng.NormFloat64())
				diff.Sub(w, Dense[float64](p))
				if e := FrobeniusNorm(&diff); e < got-1e-14*norm {
					t.Errorf("perturbed error %.15g below optimum %.15g", e, got)
				}
			}
		})
	}
}

func TestOrthogonalRetract(t *testing.T) {
	rng := newRand(13)
	for _, tt := range orthogonalShapes {
		t.Run(tt.name, func(t *testing.T) {
			op := randomMember(t, Spec{Family: FamilyOrthogonal, Out: tt.out, In: tt.in}, rng).(*Orthogonal[float64])
			s := op.Scale()
			want, err := PolarFactor(factorDense(op.q, tt.out, tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if err := op.Retract(); err != nil {
				t.Fatal(err)
			}
			if op.Scale() != s {
				t.Errorf("scale changed from %v to %v", s, op.Scale())
			}
			if !op.isOrthogonal() {
				t.Error("Q not orthogonal after Retract")
			}
			if d := relDiff(op.q, want.RawMatrix().Data); d > 1e-15 {
				t.Errorf("Q differs from its polar factor by %g", d)
			}
		})
	}
	// float32: Q is orthogonal to float32 rounding after Retract.
	op := Convert[float32](randomMember(t, Spec{Family: FamilyOrthogonal, Out: 9, In: 4}, rng)).(*Orthogonal[float32])
	if err := op.Retract(); err != nil {
		t.Fatal(err)
	}
	q := factorDense(op.q, 9, 4)
	var g mat.Dense
	g.Mul(q.T(), q)
	if d := mat.Norm(&g, 2) - 2; math.Abs(d) > 1e-6 { // ||I_4||_F = 2
		t.Errorf("float32 Q^T Q has norm off by %g", d)
	}
	// NaN in Q: an error, Q unchanged.
	op64 := NewOrthogonal(2, 2, []float64{1, math.NaN(), 0, 1}, 1)
	if err := op64.Retract(); !errors.Is(err, ErrNotFinite) {
		t.Errorf("Retract with NaN: err = %v, want ErrNotFinite", err)
	}
	if op64.q[0] != 1 || op64.q[3] != 1 {
		t.Error("failed Retract changed Q")
	}
}

func TestOrthogonalRejects(t *testing.T) {
	tests := []struct {
		name string
		w    *mat.Dense
		spec Spec
		want error
	}{
		{"nan", mat.NewDense(2, 2, []float64{1, math.NaN(), 0, 1}), Spec{Family: FamilyOrthogonal}, ErrNotFinite},
		{"inf", mat.NewDense(2, 1, []float64{math.Inf(1), 0}), Spec{Family: FamilyOrthogonal}, ErrNotFinite},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Project(tt.w, tt.spec, 0); !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
		})
	}
	for _, s := range []Spec{{Family: FamilyOrthogonal, Out: 0, In: 3}, {Family: FamilyOrthogonal, Out: 3, In: -1}} {
		if _, err := New[float64](s); !errors.Is(err, ErrSpec) {
			t.Errorf("New(%+v): err = %v, want ErrSpec", s, err)
		}
	}
}

func TestOrthogonalWorkspaceReuseDoesNotAllocate(t *testing.T) {
	rng := newRand(19)
	for _, tt := range orthogonalShapes {
		assertNoAllocs(t, randomMember(t, Spec{Family: FamilyOrthogonal, Out: tt.out, In: tt.in}, rng), 8)
	}
}
