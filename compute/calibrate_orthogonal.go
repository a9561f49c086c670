package compute

import (
	"math"

	"gonum.org/v1/gonum/mat"
)

// fitOrthogonalCalibrated minimises F(s Q) = tr((T - s Q) M (T - s Q)^T)
// over scalars s and (semi-)orthogonal Q (out x in). Expanding,
//
//	F = tr(T M T^T) - 2 s tr(Q^T T M) + s^2 tr(Q M Q^T).
//
// Tall or square (out >= in, Q^T Q = I): tr(Q M Q^T) = tr(M Q^T Q) =
// tr(M) whatever Q is, so the problem is to maximise tr(Q^T T M): Q is the
// polar factor of T M (weighted Procrustes with a closed form) and s =
// ||T M||_* / tr(M). That is the exact minimiser.
//
// Wide (out < in, Q Q^T = I): tr(Q M Q^T) depends on Q and there is no
// closed form (the unbalanced Procrustes problem). With mu >= the largest
// eigenvalue of M, Q -> tr(Q (M - mu I) Q^T) is concave, so its
// linearisation at the current Q_t majorises it (Kiers 1990), and
// minimising the majoriser is again a Procrustes problem:
//
//	Q_{t+1} = polar(T M + s Q_t (mu I - M)) = polar(Q_t - (Q_t M - T M / s) / mu),
//	s_{t+1} = tr(Q M T^T) / tr(Q M Q^T),
//
// a projected gradient step of length 1/mu that never raises F. A
// strongly anisotropic M makes 1/mu short and this slow, so each step
// first tries the Barzilai-Borwein length eta (from the last two iterates
// and gradients), polar(Q_t - eta (Q_t M - T M / s)), kept when F falls,
// else eta shrinks fourfold down to 1/mu, where the majorisation
// guarantees descent; so F never rises. It starts from
// the best of the weight-only projection, init, and polar(T M) with its
// best s, and stops when an accepted step lowers F by less than cfg.Tol
// relative, when even the step 1/mu does not lower F, or after cfg.Sweeps
// steps. The problem has local minima; the result is a stationary point,
// not certifiably the global minimiser.
func fitOrthogonalCalibrated(t *mat.Dense, s Spec, cal *Calibration, init Operator[float64], cfg CalibratedConfig, seed uint64) (Operator[float64], error) {
	var tm mat.Dense
	tm.Mul(t, cal.m)
	q, err := PolarFactor(&tm)
	if err != nil {
		return nil, err
	}
	if s.Out >= s.In {
		scale := frobeniusDot(q, &tm) / mat.Trace(cal.m)
		return NewOrthogonal(s.Out, s.In, rowMajor(q), scale), nil
	}
	p := procrustes{t: t, tm: &tm, m: cal.m}
	best := p.state(q)
	weightOnly, err := Project(t, s, seed)
	if err != nil {
		return nil, err
	}
	for _, start := range []Operator[float64]{weightOnly, init} {
		if o, ok := start.(*Orthogonal[float64]); ok {
			if st := p.state(factorDense(o.q, s.Out, s.In)); st.f < best.f {
				best = st
			}
		}
	}
	best, err = p.iterate(best, largestEigenvalue(cal.m), cfg)
	if err != nil {
		return nil, err
	}
	return NewOrthogonal(s.Out, s.In, rowMajor(best.q), best.s), nil
}

// procrustes is the wide weighted Procrustes problem of
// fitOrthogonalCalibrated.
type procrustes struct {
	t, tm *mat.Dense
	m     *mat.SymDense
}

// procrustesState is a point (s, Q) with its objective f up to the
// constant tr(T M T^T).
type procrustesState struct {
	q    *mat.Dense
	s, f float64
}

// state returns Q with its best scale s = tr(Q^T T M) / tr(Q M Q^T)
// (clamped at 0: -Q is as orthogonal as Q, and the iteration keeps s >= 0
// by flipping Q instead) and f = s^2 tr(Q M Q^T) - 2 s tr(Q^T T M).
func (p procrustes) state(q *mat.Dense) procrustesState {
	var qm mat.Dense
	qm.Mul(q, p.m)
	quad := frobeniusDot(&qm, q)
	lin := frobeniusDot(q, p.tm)
	if lin < 0 {
		q = mat.DenseCopyOf(q)
		q.Scale(-1, q)
		lin = -lin
	}
	if !(quad > 0) {
		return procrustesState{q: q, f: 0}
	}
	s := lin / quad
	return procrustesState{q: q, s: s, f: s*s*quad - 2*s*lin}
}

// iterate runs the adaptive majorisation from st with mu >=
// lambda_max(M).
func (p procrustes) iterate(st procrustesState, mu float64, cfg CalibratedConfig) (procrustesState, error) {
	total := frobeniusDot(p.t, p.tm) // tr(T M T^T), for relative steps
	eta := 1 / mu
	var prevQ, prevG *mat.Dense
	for range cfg.Sweeps {
		if !(st.s > 0) {
			break
		}
		g := p.gradient(st)
		if prevQ != nil {
			eta = bbStep(st.q, prevQ, g, prevG, eta, mu)
		}
		var next procrustesState
		var z mat.Dense
		for {
			z.Scale(-eta, g)
			z.Add(&z, st.q)
			q, err := PolarFactor(&z)
			if err != nil {
				return st, err
			}
			next = p.state(q)
			if next.f < st.f || eta <= 1/mu {
				break
			}
			eta = max(eta/4, 1/mu)
		}
		if next.f >= st.f {
			break
		}
		done := converged(total+st.f, total+next.f, cfg.Tol)
		prevQ, prevG, st = st.q, g, next
		if done {
			break
		}
	}
	return st, nil
}

// gradient returns G = Q M - T M / s, the gradient of F in Q over 2 s^2.
func (p procrustes) gradient(st procrustesState) *mat.Dense {
	var g, z mat.Dense
	g.Mul(st.q, p.m)
	z.Scale(1/st.s, p.tm)
	g.Sub(&g, &z)
	return &g
}

// bbStep returns the Barzilai-Borwein step <dQ, dQ> / <dQ, dG> between two
// iterates, within [1/mu, 1e8/mu]; eta when the curvature is not positive.
func bbStep(q, prevQ, g, prevG *mat.Dense, eta, mu float64) float64 {
	var dq, dg mat.Dense
	dq.Sub(q, prevQ)
	dg.Sub(g, prevG)
	curv := frobeniusDot(&dq, &dg)
	if !(curv > 0) {
		return eta
	}
	return min(max(frobeniusDot(&dq, &dq)/curv, 1/mu), 1e8/mu)
}

// frobeniusDot returns <a, b>_F = tr(a^T b).
func frobeniusDot(a, b mat.Matrix) float64 {
	r, c := a.Dims()
	var s float64
	for i := range r {
		for j := range c {
			s += a.At(i, j) * b.At(i, j)
		}
	}
	return s
}

// largestEigenvalue returns lambda_max of a symmetric positive
// semi-definite m, from its eigenvalues (no vectors), nudged up by a few
// ulps so that it bounds the true value despite rounding.
func largestEigenvalue(m *mat.SymDense) float64 {
	var eig mat.EigenSym
	if !eig.Factorize(m, false) {
		// Gershgorin: the largest absolute row sum bounds every eigenvalue.
		var g float64
		n := m.SymmetricDim()
		for i := range n {
			var r float64
			for j := range n {
				r += math.Abs(m.At(i, j))
			}
			g = max(g, r)
		}
		return g
	}
	v := eig.Values(nil)
	return v[len(v)-1] * (1 + 1e-12)
}
