package compute

import (
	"fmt"
	"strings"
)

// Sum is a decomposed layer W = S + R: a structured trunk S plus a
// correction R of the same shape. Its parameters are the trunk's, named
// "trunk.NAME", followed by the correction's, named "correction.NAME".
type Sum[T Float] struct {
	trunk, correction Operator[T]
	nTrunk            int // number of trunk parameter tensors
}

var _ Operator[float64] = (*Sum[float64])(nil)

func init() {
	register(FamilySum, newSumFromSpec[float64], newSumFromSpec[float32], nil)
}

func newSumFromSpec[T Float](s Spec) (Operator[T], error) {
	if s.Trunk == nil || s.Correction == nil {
		return nil, fmt.Errorf("%w: sum needs a trunk and a correction", ErrSpec)
	}
	ts, cs := *s.Trunk, *s.Correction
	ts.Out, ts.In, cs.Out, cs.In = s.Out, s.In, s.Out, s.In
	if ts.Family == FamilySum || cs.Family == FamilySum {
		return nil, fmt.Errorf("%w: a sum cannot nest another sum", ErrSpec)
	}
	t, err := New[T](ts)
	if err != nil {
		return nil, fmt.Errorf("trunk: %w", err)
	}
	c, err := New[T](cs)
	if err != nil {
		return nil, fmt.Errorf("correction: %w", err)
	}
	return NewSum(t, c), nil
}

// NewSum returns S + R. The two must have the same shape.
func NewSum[T Float](trunk, correction Operator[T]) *Sum[T] {
	to, ti := trunk.Shape()
	co, ci := correction.Shape()
	if to != co || ti != ci {
		panic(ErrShape)
	}
	return &Sum[T]{trunk: trunk, correction: correction, nTrunk: len(trunk.Params())}
}

// Trunk returns S.
func (s *Sum[T]) Trunk() Operator[T] { return s.trunk }

// Correction returns R.
func (s *Sum[T]) Correction() Operator[T] { return s.correction }

func (s *Sum[T]) Shape() (int, int) { return s.trunk.Shape() }

func (s *Sum[T]) Spec() Spec {
	out, in := s.Shape()
	ts, cs := s.trunk.Spec(), s.correction.Spec()
	return Spec{Family: FamilySum, Out: out, In: in, Trunk: &ts, Correction: &cs}
}

func (s *Sum[T]) Params() []Param[T] {
	var ps []Param[T]
	for _, p := range s.trunk.Params() {
		p.Name = "trunk." + p.Name
		ps = append(ps, p)
	}
	for _, p := range s.correction.Params() {
		p.Name = "correction." + p.Name
		ps = append(ps, p)
	}
	return ps
}

// SplitParamName splits a Sum parameter name into its part (RoleTrunk or
// RoleCorrection) and the name within that part.
func SplitParamName(name string) (part Role, local string, ok bool) {
	p, local, ok := strings.Cut(name, ".")
	if part = Role(p); !ok || (part != RoleTrunk && part != RoleCorrection) {
		return "", name, false
	}
	return part, local, true
}

func (s *Sum[T]) FLOPs() int {
	out, _ := s.Shape()
	if isZero(s.correction) {
		return s.trunk.FLOPs()
	}
	return s.trunk.FLOPs() + s.correction.FLOPs() + out
}

func isZero[T Float](op Operator[T]) bool {
	_, ok := op.(*Zero[T])
	return ok
}

func (s *Sum[T]) Apply(y, x []T, n int, ws *Workspace[T]) {
	s.trunk.Apply(y, x, n, ws)
	if isZero(s.correction) {
		return
	}
	out, _ := s.Shape()
	mark := ws.mark()
	defer ws.release(mark)
	r := ws.take(n * out)
	s.correction.Apply(r, x, n, ws)
	for i := range r {
		y[i] += r[i]
	}
}

func (s *Sum[T]) ApplyT(x, y []T, n int, ws *Workspace[T]) {
	s.trunk.ApplyT(x, y, n, ws)
	if isZero(s.correction) {
		return
	}
	_, in := s.Shape()
	mark := ws.mark()
	defer ws.release(mark)
	r := ws.take(n * in)
	s.correction.ApplyT(r, y, n, ws)
	for i := range r {
		x[i] += r[i]
	}
}

func (s *Sum[T]) Backward(dx, x, dy []T, n int, grads [][]T, ws *Workspace[T]) {
	var tg, cg [][]T
	if grads != nil {
		tg, cg = grads[:s.nTrunk], grads[s.nTrunk:]
	}
	s.trunk.Backward(dx, x, dy, n, tg, ws)
	if isZero(s.correction) {
		return
	}
	if dx == nil {
		s.correction.Backward(nil, x, dy, n, cg, ws)
		return
	}
	_, in := s.Shape()
	mark := ws.mark()
	defer ws.release(mark)
	r := ws.take(n * in)
	s.correction.Backward(r, x, dy, n, cg, ws)
	for i := range r {
		dx[i] += r[i]
	}
}

// denseAdder is a correction that adds its dense matrix to dst in place
// (the same values as DenseTo and a sum), without a buffer of its size.
type denseAdder interface{ denseAddTo(dst []float64) }

func (s *Sum[T]) DenseTo(dst []float64) {
	out, in := s.Shape()
	checkLen(dst, out*in)
	s.trunk.DenseTo(dst)
	if isZero(s.correction) {
		return
	}
	if a, ok := s.correction.(denseAdder); ok {
		a.denseAddTo(dst)
		return
	}
	r := make([]float64, out*in)
	s.correction.DenseTo(r)
	for i := range r {
		dst[i] += r[i]
	}
}

func (s *Sum[T]) SingularValues(dst []float64) []float64 {
	if isZero(s.correction) {
		return s.trunk.SingularValues(dst)
	}
	return denseSingularValues[T](s, dst)
}
