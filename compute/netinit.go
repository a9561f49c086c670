package compute

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"gonum.org/v1/gonum/mat"
)

// This file holds structure-aware initialisation and the per-factor
// learning-rate multipliers of structured layers.
//
// The reference is PyTorch's nn.Linear: W and b uniform in
// (-1/sqrt(in), 1/sqrt(in)), so that Var(W_ij) = 1/(3 in) and an input of
// unit-variance entries gives outputs of variance 1/3. A structured layer is
// initialised so that its output has that same variance: every factor but
// the last one applied keeps unit variance (entries uniform with variance
// 1/fan-in, bound sqrt(3/fan-in)) and the last one applied gives variance
// 1/3 (bound 1/sqrt(fan-in), as nn.Linear). The fan-in of a factor is the
// number of terms summed for one of its outputs; per family (shapes as the
// operator's Params report them, padded where the family pads):
//
//	dense       W            fan-in in                 (nn.Linear)
//	lowrank     V (in x k)   fan-in in, applied first
//	            U (out x k)  fan-in k, applied last
//	monarch     R [b, in'/b, b r]   fan-in in'/b, applied first
//	            L [b, out'/b, b r]  fan-in b r, applied last
//	blockdiag   D [b, out'/b, in'/b] fan-in in'/b
//	circulant   c, toeplitz t        fan-in in (each output sums in terms)
//	kronecker   B [r, m2, n2]  fan-in n2, applied first
//	            A [r, m1, n1]  fan-in r n1, applied last
//	orthogonal  Q              fan-in in: Q is the polar factor of a Gaussian
//	            matrix and the scale sqrt(max(out, in) / (3 in)) gives
//	            outputs of variance 1/3
//	sparse      values         fan-in nnz/out (entries per row), at distinct
//	            positions drawn uniformly and sorted
//
// A correction R trained from scratch starts at zero with gradients that
// flow, as LoRA does: its last-applied factor is zero (U of a lowrank R, L
// of a monarch R, A of a kronecker R, the values of a sparse R, the scale
// of an orthogonal R, the whole of a single-factor family), the others as
// above. So a decomposed layer S + R starts as S, with the variance of the
// dense layer it replaces. A family not in the table is initialised as the
// projection onto it of an nn.Linear-initialised dense matrix.
//
// The learning-rate multiplier of a factor (LRMultipliers) is in / fan-in:
// the structured muP rule of Qiu et al. 2024 ("Compute Better Spent:
// Replacing Dense Layers with Structured Matrices"), under which a factor
// with a small fan-in takes proportionally larger Adam steps so that its
// effect on the layer's output matches that of a dense layer's update. It is
// 1 for dense, circulant, toeplitz and orthogonal parameters, biases and
// norm parameters; the monarch L gets in / (b r), R in / (in'/b) (about
// b); lowrank U in / k, V 1; blockdiag D in / (in'/b); kronecker A
// in / (r n1), B in / n2; sparse values in out / nnz.

// InitStructured initialises every layer from rng (see InitLayer), in
// layer order, so the result is a deterministic function of the rng state.
func (net *Network[T]) InitStructured(rng *rand.Rand) error {
	for i := range net.layers {
		if err := net.InitLayer(i, rng); err != nil {
			return err
		}
	}
	return nil
}

// InitLayer initialises layer i from rng: a linear layer's operator as the
// table of this file's documentation says and its bias uniform in
// (-1/sqrt(in), 1/sqrt(in)); a layer norm's gain to 1 and bias to 0. The
// layer then counts as initialised from scratch (FromScratch).
func (net *Network[T]) InitLayer(i int, rng *rand.Rand) error {
	l := &net.layers[i]
	switch l.kind {
	case layerLinear:
		if err := initOperator(l.op, l.in, false, rng); err != nil {
			return fmt.Errorf("layer %d: %w", i, err)
		}
		bound := 1 / math.Sqrt(float64(l.in))
		fillUniform(l.bias, bound, rng)
		l.scratch = true
	case layerNorm:
		for j := range l.gain {
			l.gain[j], l.shift[j] = 1, 0
		}
	}
	return nil
}

// fillUniform sets every entry of p uniform in (-bound, bound).
func fillUniform[T Float](p []T, bound float64, rng *rand.Rand) {
	for j := range p {
		p[j] = T((2*rng.Float64() - 1) * bound)
	}
}

// initOperator initialises op of a layer with in inputs; correction marks
// the R of a decomposed layer, which starts at zero.
func initOperator[T Float](op Operator[T], in int, correction bool, rng *rand.Rand) error {
	if s, ok := op.(*Sum[T]); ok {
		if err := initOperator(s.Trunk(), in, false, rng); err != nil {
			return fmt.Errorf("trunk: %w", err)
		}
		if err := initOperator(s.Correction(), in, true, rng); err != nil {
			return fmt.Errorf("correction: %w", err)
		}
		return nil
	}
	spec := op.Spec()
	ps := op.Params()
	fin := float64(in)
	// first sets a factor applied first (unit output variance); last a
	// factor applied last (output variance 1/3, or zero for a
	// correction).
	first := func(p []T, fanIn float64) { fillUniform(p, math.Sqrt(3/fanIn), rng) }
	last := func(p []T, fanIn float64) {
		if correction {
			clear(p)
			return
		}
		fillUniform(p, 1/math.Sqrt(fanIn), rng)
	}
	switch spec.Family {
	case FamilyZero:
	case FamilyDense, FamilyCirculant, FamilyToeplitz:
		last(ps[0].Data, fin)
	case FamilyLowRank:
		first(ps[1].Data, fin)
		last(ps[0].Data, float64(spec.Rank))
	case FamilyMonarch:
		first(ps[1].Data, float64(ps[1].Shape[1]))
		last(ps[0].Data, float64(ps[0].Shape[2]))
	case FamilyBlockDiag:
		last(ps[0].Data, float64(ps[0].Shape[2]))
	case FamilyKronecker:
		first(ps[1].Data, float64(ps[1].Shape[2]))
		last(ps[0].Data, float64(ps[0].Shape[0]*ps[0].Shape[2]))
	case FamilyOrthogonal:
		out := spec.Out
		g := mat.NewDense(out, spec.In, nil)
		raw := g.RawMatrix().Data
		for j := range raw {
			raw[j] = rng.NormFloat64()
		}
		q, err := PolarFactor(g)
		if err != nil {
			return err
		}
		for j, v := range q.RawMatrix().Data[:out*spec.In] {
			ps[0].Data[j] = T(v)
		}
		ps[1].Data[0] = T(math.Sqrt(float64(max(out, spec.In)) / (3 * fin)))
		if correction {
			ps[1].Data[0] = 0
		}
	case FamilySparse:
		samplePositions(ps[1].Data, ps[2].Data, spec.Out, spec.In, rng)
		last(ps[0].Data, max(1, float64(len(ps[0].Data))/float64(spec.Out)))
	default:
		return initByProjection(op, in, correction, rng)
	}
	return nil
}

// initByProjection initialises an operator of a family without a rule of
// its own as the projection of an nn.Linear-initialised dense matrix; a
// correction then has its first trainable parameter zeroed.
func initByProjection[T Float](op Operator[T], in int, correction bool, rng *rand.Rand) error {
	spec := op.Spec()
	w := mat.NewDense(spec.Out, spec.In, nil)
	raw := w.RawMatrix().Data
	fillUniform(raw, 1/math.Sqrt(float64(in)), rng)
	p, err := Project(w, spec, rng.Uint64())
	if err != nil {
		return err
	}
	src := p.Params()
	zeroed := false
	for i, dst := range op.Params() {
		for j, v := range src[i].Data {
			dst.Data[j] = T(v)
		}
		if correction && !zeroed && !dst.Frozen {
			clear(dst.Data)
			zeroed = true
		}
	}
	return nil
}

// samplePositions draws len(rows) distinct positions of an out x in
// matrix uniformly (Floyd's algorithm) and stores them sorted by row, then
// column.
func samplePositions[T Float](rows, cols []T, out, in int, rng *rand.Rand) {
	total := out * in
	k := len(rows)
	chosen := make(map[int]struct{}, k)
	for j := total - k; j < total; j++ {
		t := rng.IntN(j + 1)
		if _, dup := chosen[t]; dup {
			t = j
		}
		chosen[t] = struct{}{}
	}
	pos := make([]int, 0, k)
	for p := range chosen {
		pos = append(pos, p)
	}
	slices.Sort(pos)
	for e, p := range pos {
		rows[e], cols[e] = T(p/in), T(p%in)
	}
}

// LRMultipliers returns the structured-muP learning-rate multiplier of
// every parameter of net, aligned with Params: in / fan-in for each factor
// of a structured layer (see the table of this file's documentation), 1
// for dense weights, biases and norm parameters (and frozen ones).
func LRMultipliers[T Float](net *Network[T]) []float64 {
	mult := make([]float64, len(net.params))
	for i := range mult {
		mult[i] = 1
	}
	for _, l := range net.layers {
		if l.kind != layerLinear {
			continue
		}
		operatorMultipliers(mult[l.p0:l.p0+l.nOp], l.op, l.in)
	}
	return mult
}

// operatorMultipliers sets mult (one per parameter of op) to in / fan-in.
func operatorMultipliers[T Float](mult []float64, op Operator[T], in int) {
	if s, ok := op.(*Sum[T]); ok {
		nt := len(s.Trunk().Params())
		operatorMultipliers(mult[:nt], s.Trunk(), in)
		operatorMultipliers(mult[nt:], s.Correction(), in)
		return
	}
	spec := op.Spec()
	ps := op.Params()
	fin := float64(in)
	switch spec.Family {
	case FamilyLowRank:
		mult[0] = fin / float64(spec.Rank)
	case FamilyMonarch:
		mult[0] = fin / float64(ps[0].Shape[2])
		mult[1] = fin / float64(ps[1].Shape[1])
	case FamilyBlockDiag:
		mult[0] = fin / float64(ps[0].Shape[2])
	case FamilyKronecker:
		mult[0] = fin / float64(ps[0].Shape[0]*ps[0].Shape[2])
		mult[1] = fin / float64(ps[1].Shape[2])
	case FamilySparse:
		mult[0] = fin / max(1, float64(len(ps[0].Data))/float64(spec.Out))
	}
}
