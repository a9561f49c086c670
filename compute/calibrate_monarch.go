package compute

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"

	"gonum.org/v1/gonum/mat"
)

// fitMonarchCalibrated minimises F over Monarch matrices by block
// coordinate descent on the submatrices. Row set j (rows j, j+b, ...) of
// A involves only the b submatrices B_jk = L_jk R_jk^T, so the row sets
// are independent problems (run in parallel). Within one, with the
// residual E_j = T_j - A_j (row set j, padded width in'), the best B_jk
// with the others fixed minimises
//
//	tr((E + (B_old - B) P_k) M (E + (B_old - B) P_k)^T)
//	    = ||(B0 - B) L_kk||_F^2 + const,   B0 = B_old + (E M)_k M_kk^(-1),
//
// where P_k places a block in chunk k, (E M)_k is the chunk-k columns of
// E M and M_kk = L_kk L_kk^T the chunk's diagonal block of M: the
// whitened rank-r truncation of B0 (whitenedTruncation), an exact
// minimisation of a block, so F never rises. E M is kept up to date by
// E M -= (B - B_old) M_k (M_k the chunk's rows of M). A sweep visits k =
// 0 ... b-1; the row set stops when a sweep lowers its F by less than
// cfg.Tol relative, or after cfg.Sweeps sweeps.
//
// Padding: columns beyond in get the weight tr(C)/in on the diagonal of
// M and zero target; a block's whitened truncation then leaves them zero
// (the padded columns of B0 L are zero) whatever that weight, as it leaves
// padded rows, whose target is zero, so the padded fit is the fit of the
// visible corner. The start is init when it is a Monarch of
// the same shape, else the weight-only projection of t.
func fitMonarchCalibrated(t *mat.Dense, s Spec, cal *Calibration, init Operator[float64], cfg CalibratedConfig, seed uint64) (Operator[float64], error) {
	po, pi, err := monarchPadded(s)
	if err != nil {
		return nil, err
	}
	start, ok := unpad(init).(*Monarch[float64])
	if !ok || start.out != po || start.in != pi || start.b != s.Blocks || start.r != s.Rank {
		op, err := Project(t, s, seed)
		if err != nil {
			return nil, err
		}
		start = unpad(op).(*Monarch[float64])
	}
	m := Clone[float64](start).(*Monarch[float64])
	mp := cal.paddedM(pi, 1)
	f := monarchFit{m: m, t: padDense(t, po, pi), mp: mp, mpRows: mat.DenseCopyOf(mp), cfg: cfg, seed: seed}
	if err := f.chunkFactors(); err != nil {
		return nil, err
	}
	if err := parallelEach(m.b, f.rowSet); err != nil {
		return nil, err
	}
	return maybePad[float64](m, s.Out, s.In), nil
}

// monarchFit holds one data-aware Monarch fit.
type monarchFit struct {
	m      *Monarch[float64] // updated in place, row set by row set
	t      *mat.Dense        // padded target, po x pi
	mp     *mat.SymDense     // padded M, pi x pi
	mpRows *mat.Dense        // the same, dense, for row slices
	lower  []*mat.TriDense   // L_kk per chunk
	minv   []*mat.Cholesky   // factorisation of M_kk per chunk
	cfg    CalibratedConfig
	seed   uint64
}

// chunkFactors factorises the diagonal block M_kk of each chunk.
func (f *monarchFit) chunkFactors() error {
	b, mi := f.m.b, f.m.in/f.m.b
	for k := range b {
		blk := mat.NewSymDense(mi, nil)
		blk.CopySym(f.mp.SliceSym(k*mi, (k+1)*mi))
		ch := new(mat.Cholesky)
		if !ch.Factorize(blk) {
			return fmt.Errorf("%w: chunk %d of the second moment is not positive definite", ErrCalibration, k)
		}
		l := new(mat.TriDense)
		ch.LTo(l)
		f.lower = append(f.lower, l)
		f.minv = append(f.minv, ch)
	}
	return nil
}

// block returns B_jk = L_jk R_jk^T (mo x mi).
func (f *monarchFit) block(j, k int) *mat.Dense {
	m := f.m
	mo, mi, br := m.out/m.b, m.in/m.b, m.b*m.r
	l := mat.NewDense(mo, br, m.left[j*mo*br:(j+1)*mo*br]).Slice(0, mo, k*m.r, (k+1)*m.r)
	r := mat.NewDense(mi, br, m.right[k*mi*br:(k+1)*mi*br]).Slice(0, mi, j*m.r, (j+1)*m.r)
	var blk mat.Dense
	blk.Mul(l, r.T())
	return &blk
}

// setBlock stores the factors u (mo x r) and v (mi x r) of B_jk.
func (f *monarchFit) setBlock(j, k int, u, v *mat.Dense) {
	m := f.m
	mo, mi, br := m.out/m.b, m.in/m.b, m.b*m.r
	for i := range mo {
		for t := range m.r {
			m.left[(j*mo+i)*br+k*m.r+t] = u.At(i, t)
		}
	}
	for c := range mi {
		for t := range m.r {
			m.right[(k*mi+c)*br+j*m.r+t] = v.At(c, t)
		}
	}
}

// rowSet runs the block coordinate descent of row set j.
func (f *monarchFit) rowSet(j int) error {
	m := f.m
	b, mo, mi := m.b, m.out/m.b, m.in/m.b
	// E = T_j - A_j and EM = E M over the padded width.
	e := mat.NewDense(mo, m.in, nil)
	for i := range mo {
		e.SetRow(i, f.t.RawRowView(j+i*b))
	}
	for k := range b {
		sub := e.Slice(0, mo, k*mi, (k+1)*mi).(*mat.Dense)
		sub.Sub(sub, f.block(j, k))
	}
	var em mat.Dense
	em.Mul(e, f.mp)
	prev := frobeniusDot(e, &em)
	for range f.cfg.Sweeps {
		for k := range b {
			if err := f.updateBlock(j, k, e, &em); err != nil {
				return fmt.Errorf("monarch block (%d, %d): %w", j, k, err)
			}
		}
		next := frobeniusDot(e, &em)
		if converged(prev, next, f.cfg.Tol) {
			break
		}
		prev = next
	}
	return nil
}

// updateBlock replaces B_jk by its exact best given the other blocks and
// updates E and E M.
func (f *monarchFit) updateBlock(j, k int, e, em *mat.Dense) error {
	m := f.m
	mo, mi := m.out/m.b, m.in/m.b
	old := f.block(j, k)
	// B0 = B_old + (E M)_k M_kk^(-1), via M_kk X^T = (E M)_k^T.
	var xt mat.Dense
	if err := f.minv[k].SolveTo(&xt, em.Slice(0, mo, k*mi, (k+1)*mi).T()); err != nil {
		return err
	}
	b0 := mat.NewDense(mo, mi, nil)
	b0.Add(old, xt.T())
	u, v, err := whitenedTruncation(b0, f.lower[k], m.r, monarchBlockSeed(f.seed+uint64(j*m.b+k)))
	if err != nil {
		return err
	}
	f.setBlock(j, k, u, v)
	// delta = B_new - B_old; E_k -= delta; EM -= delta M_k.
	delta := f.block(j, k)
	delta.Sub(delta, old)
	ek := e.Slice(0, mo, k*mi, (k+1)*mi).(*mat.Dense)
	ek.Sub(ek, delta)
	var upd mat.Dense
	upd.Mul(delta, f.mpRows.Slice(k*mi, (k+1)*mi, 0, m.in))
	em.Sub(em, &upd)
	return nil
}

// paddedM returns M extended to width pi >= in by mu times the mean
// eigenvalue tr(C)/in on the padded diagonal: the weight of inputs that
// are always zero, a positive tie-break that keeps the padded problem
// definite.
func (c *Calibration) paddedM(pi int, mu float64) *mat.SymDense {
	if pi == c.in {
		return c.m
	}
	mp := mat.NewSymDense(pi, nil)
	mp.SliceSym(0, c.in).(*mat.SymDense).CopySym(c.m)
	w := mu * mat.Trace(c.gram) / float64(c.in)
	for i := c.in; i < pi; i++ {
		mp.SetSym(i, i, w)
	}
	return mp
}

// parallelEach runs fn(0) ... fn(n-1) on up to GOMAXPROCS goroutines and
// returns the error of the lowest failing index. fn must write only to
// state owned by its index, so the result does not depend on the schedule.
func parallelEach(n int, fn func(i int) error) error {
	errs := make([]error, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				errs[i] = fn(i)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
