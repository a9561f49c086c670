package compute

import (
	"math"
	"slices"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"

	"gonum.org/v1/gonum/mat"
)

// fitKroneckerCalibrated minimises F over sums of r Kronecker products,
// A[a m2 + b, c n2 + d] = sum_i A_i[a, c] B_i[b, d], by alternating least
// squares on the factors. The problem has local minima, so it runs from
// up to three starts and keeps the lowest F: the weight-only (Van
// Loan-Pitsianis) projection of t, init when it is a Kronecker of the same
// shape and rank, and the Kronecker-whitened projection
// (kroneckerWhitenedStart).
//
// A is linear in the A_i with the B_i fixed, and the rows a m2 + b of
// different a involve different rows of the A_i, so the A-step splits
// into one least-squares problem per a: with alpha_a = (A_i[a, c]) indexed
// (i, c), the normal equations are alpha_a G = H_a,
//
//	G[(i, c), (i', c')] = sum_{b visible} <B_i[b,:]^T B_i'[b,:], M_cc'>_F,
//	H_a[(i, c)]         = sum_b <(T M)[a m2 + b, c n2 : (c+1) n2], B_i[b, :]>,
//
// M_cc' the n2 x n2 block (c, c') of M; G is shared by every a whose rows
// are all visible. The B-step is the mirror image, one problem per b with
// G'[(i, d), (i', d')] = sum_{a visible} sum_{c, c'} A_i[a, c] A_i'[a, c']
// M[c n2 + d, c' n2 + d']. Each step is an exact minimisation over a block
// of variables (a singular G, from linearly dependent factors, is solved
// by pseudo-inverse), so F never rises; F after a step is F(0) - theta . h
// for free. The iteration stops when a sweep (A then B) lowers F by less
// than cfg.Tol relative, or after cfg.Sweeps sweeps. Building G costs
// O(r^2 in^2), each right-hand side O(r out in), on top of one T M.
//
// Padding: the corner alone is fitted, unlike the weight-only projection,
// which fits zeros to the padding. Padded rows carry weight 0, and padded
// columns the weight 1e-10 tr(C)/in: the factors reach the visible corner
// through entries in padded columns too, and any real weight there pulls
// the fit off the corner's optimum (by 20% of F on a 7 x 9 case with the
// weight lambda), while this one only keeps the normal equations definite.
func fitKroneckerCalibrated(t *mat.Dense, s Spec, cal *Calibration, init Operator[float64], cfg CalibratedConfig, seed uint64) (Operator[float64], error) {
	m1, n1, m2, n2, err := kroneckerShape(s)
	if err != nil {
		return nil, err
	}
	weightOnly, err := Project(t, s, seed)
	if err != nil {
		return nil, err
	}
	starts := []*Kronecker[float64]{unpad(weightOnly).(*Kronecker[float64])}
	if k, ok := unpad(init).(*Kronecker[float64]); ok && k.m1 == m1 && k.n1 == n1 && k.m2 == m2 && k.n2 == n2 && k.r == s.Rank {
		starts = append(starts, k)
	}
	if k, ok := kroneckerWhitenedStart(t, s, cal, seed); ok {
		starts = append(starts, k)
	}
	var best *Kronecker[float64]
	bestF := math.Inf(1)
	for _, start := range starts {
		k := Clone[float64](start).(*Kronecker[float64])
		f, err := newKronFit(k, t, cal, s.Out).run(cfg)
		if err != nil {
			return nil, err
		}
		if f < bestF {
			best, bestF = k, f
		}
	}
	return maybePad[float64](best, s.Out, s.In), nil
}

// kroneckerWhitenedStart is the start that is exact when M is itself a
// Kronecker product: with M ~ M1 (x) M2 (the nearest Kronecker product,
// Van Loan-Pitsianis on M, whose factors of a positive definite M are
// symmetric) and M1 = L1 L1^T, M2 = L2 L2^T, (A (x) B)(L1 (x) L2) =
// A L1 (x) B L2, so the weight-only projection of T (L1 (x) L2) unwhitened
// by L1^(-1) and L2^(-1) minimises F for that M. ok is false when a factor
// is not positive definite.
func kroneckerWhitenedStart(t *mat.Dense, s Spec, cal *Calibration, seed uint64) (*Kronecker[float64], bool) {
	m1, n1, m2, n2, _ := kroneckerShape(s)
	pi := n1 * n2
	mp := mat.DenseCopyOf(cal.paddedM(pi, kronPadWeight))
	u, sv, v, err := TruncatedSVD(kroneckerRearrange(mp.RawMatrix().Data, n1, n1, n2, n2), 1, seed)
	if err != nil {
		return nil, false
	}
	lower := func(vec *mat.Dense, n int) *mat.TriDense {
		f := mat.NewSymDense(n, nil)
		sign := 1.0
		if vec.At(0, 0) < 0 {
			sign = -1 // the factors' signs are arbitrary; make them positive
		}
		for i := range n {
			for j := i; j < n; j++ {
				f.SetSym(i, j, sign*math.Sqrt(sv[0])*(vec.At(i*n+j, 0)+vec.At(j*n+i, 0))/2)
			}
		}
		var ch mat.Cholesky
		if !ch.Factorize(f) {
			return nil
		}
		l := new(mat.TriDense)
		ch.LTo(l)
		return l
	}
	l1, l2 := lower(u, n1), lower(v, n2)
	if l1 == nil || l2 == nil {
		return nil, false
	}
	lk := NewKronecker(n1, n1, n2, n2, 1, rowMajor(l1), rowMajor(l2))
	ld := make([]float64, pi*pi)
	lk.DenseTo(ld)
	var tl mat.Dense
	tl.Mul(padDense(t, m1*m2, pi), mat.NewDense(pi, pi, ld))
	ws := s
	ws.Out, ws.In = m1*m2, pi
	op, err := Project(&tl, ws, seed)
	if err != nil {
		return nil, false
	}
	k := op.(*Kronecker[float64])
	for i := range k.r {
		unwhiten(k.a[i*m1*n1:(i+1)*m1*n1], m1, n1, l1)
		unwhiten(k.b[i*m2*n2:(i+1)*m2*n2], m2, n2, l2)
	}
	return k, allFinite(k.a) && allFinite(k.b)
}

// unwhiten sets x (rows x cols, row-major) to x L^(-1).
func unwhiten(x []float64, rows, cols int, l *mat.TriDense) {
	blas64.Trsm(blas.Right, blas.NoTrans, 1, l.RawTriangular(), general(rows, cols, x))
}

// run iterates the alternating steps from the fit's factors and returns
// the final F.
func (f *kronFit) run(cfg CalibratedConfig) (float64, error) {
	k := f.k
	prev := f.objective()
	for range cfg.Sweeps {
		a, b := slices.Clone(k.a), slices.Clone(k.b)
		if err := f.stepA(); err != nil {
			return 0, err
		}
		next, err := f.stepB()
		if err != nil {
			return 0, err
		}
		if next > prev {
			copy(k.a, a) // rounding at convergence: keep the better point
			copy(k.b, b)
			break
		}
		done := converged(prev, next, cfg.Tol)
		prev = next
		if done {
			break
		}
	}
	return prev, nil
}

// kronPadWeight is the weight of padded columns relative to tr(C)/in.
const kronPadWeight = 1e-10

// kronFit holds one data-aware Kronecker fit on the padded shape.
type kronFit struct {
	k      *Kronecker[float64]
	out    int       // visible rows
	mp     []float64 // padded M, in' x in' row-major
	tm     []float64 // padded T M, out' x in'
	ftotal float64   // F(0) = tr(T M T^T)
}

func newKronFit(k *Kronecker[float64], t *mat.Dense, cal *Calibration, out int) *kronFit {
	po, pi := k.Shape()
	mp := mat.DenseCopyOf(cal.paddedM(pi, kronPadWeight))
	tp := padDense(t, po, pi)
	var tm mat.Dense
	tm.Mul(tp, mp)
	return &kronFit{k: k, out: out, mp: mp.RawMatrix().Data, tm: tm.RawMatrix().Data, ftotal: frobeniusDot(tp, &tm)}
}

// objective returns F of the current factors, over the visible rows.
func (f *kronFit) objective() float64 {
	po, pi := f.k.Shape()
	a := make([]float64, po*pi)
	f.k.DenseTo(a)
	av := mat.NewDense(f.out, pi, a[:f.out*pi])
	var am mat.Dense
	am.Mul(av, mat.NewDense(pi, pi, f.mp))
	// F = F(0) - 2 <T M, A> + <A M, A> over the visible rows.
	lin := frobeniusDot(mat.NewDense(f.out, pi, f.tm[:f.out*pi]), av)
	return f.ftotal - 2*lin + frobeniusDot(av, &am)
}

// visibleB returns how many of the rows a m2 + b (b < m2) are visible.
func (f *kronFit) visibleB(a int) int { return min(max(f.out-a*f.k.m2, 0), f.k.m2) }

// visibleA returns how many of the rows a m2 + b (a < m1) are visible.
func (f *kronFit) visibleA(b int) int {
	return min(max((f.out-b+f.k.m2-1)/f.k.m2, 0), f.k.m1)
}

// stepA solves for the A factors with the B factors fixed.
func (f *kronFit) stepA() error {
	k := f.k
	r, m1, n1, m2, n2 := k.r, k.m1, k.n1, k.m2, k.n2
	pi := n1 * n2
	p := r * n1
	// H[a][(i, c)] = sum_{b, d} TM[a m2 + b, c n2 + d] B_i[b, d].
	h := mat.NewDense(p, m1, nil) // transposed: column a
	for a := range m1 {
		for i := range r {
			for c := range n1 {
				var s float64
				for b := range m2 {
					row := f.tm[(a*m2+b)*pi+c*n2:][:n2]
					bi := k.b[(i*m2+b)*n2:][:n2]
					for d, v := range row {
						s += v * bi[d]
					}
				}
				h.Set(i*n1+c, a, s)
			}
		}
	}
	clear(k.a)
	return f.solveGroups(m1, f.visibleB, f.gramA, h, func(a int, x []float64) {
		for i := range r {
			for c := range n1 {
				k.a[(i*m1+a)*n1+c] = x[i*n1+c]
			}
		}
	})
}

// stepB solves for the B factors with the A factors fixed and returns F.
func (f *kronFit) stepB() (float64, error) {
	k := f.k
	r, m1, n1, m2, n2 := k.r, k.m1, k.n1, k.m2, k.n2
	pi := n1 * n2
	p := r * n2
	// H[b][(i, d)] = sum_{a, c} TM[a m2 + b, c n2 + d] A_i[a, c].
	h := mat.NewDense(p, m2, nil)
	for b := range m2 {
		for i := range r {
			acc := make([]float64, n2)
			for a := range m1 {
				row := f.tm[(a*m2+b)*pi:][:pi]
				for c := range n1 {
					ai := k.a[(i*m1+a)*n1+c]
					for d, v := range row[c*n2 : (c+1)*n2] {
						acc[d] += ai * v
					}
				}
			}
			for d, v := range acc {
				h.Set(i*n2+d, b, v)
			}
		}
	}
	clear(k.b)
	var gain float64
	err := f.solveGroups(m2, f.visibleA, f.gramB, h, func(b int, x []float64) {
		for i := range r {
			copy(k.b[(i*m2+b)*n2:][:n2], x[i*n2:(i+1)*n2])
		}
		for j, v := range x {
			gain += v * h.At(j, b)
		}
	})
	return f.ftotal - gain, err
}

// solveGroups solves G(v) x_g = h[:, g] for every group g < n, where v =
// visible(g) counts the group's visible rows and gram(v) builds G for it;
// groups with no visible row get x = 0 (they were cleared). set stores
// each solution.
func (f *kronFit) solveGroups(n int, visible func(int) int, gram func(int) *mat.SymDense, h *mat.Dense, set func(g int, x []float64)) error {
	p, _ := h.Dims()
	byCount := map[int][]int{}
	var counts []int
	for g := range n {
		v := visible(g)
		if v == 0 {
			continue
		}
		if _, ok := byCount[v]; !ok {
			counts = append(counts, v)
		}
		byCount[v] = append(byCount[v], g)
	}
	for _, v := range counts {
		groups := byCount[v]
		rhs := mat.NewDense(p, len(groups), nil)
		for j, g := range groups {
			rhs.SetCol(j, mat.Col(nil, g, h))
		}
		x, err := solveSPD(gram(v), rhs)
		if err != nil {
			return err
		}
		for j, g := range groups {
			set(g, mat.Col(nil, j, x))
		}
	}
	return nil
}

// gramA returns G for an A-step group whose first nb rows b are visible:
// G[(i, c), (i', c')] = sum_{d, d'} P_ii'[d, d'] M[c n2 + d, c' n2 + d'],
// P_ii' = sum_{b < nb} B_i[b, :]^T B_i'[b, :].
func (f *kronFit) gramA(nb int) *mat.SymDense {
	k := f.k
	r, n1, m2, n2 := k.r, k.n1, k.m2, k.n2
	pi := n1 * n2
	pm := factorGrams(k.b, r, m2, n2, nb)
	g := mat.NewSymDense(r*n1, nil)
	for i := range r {
		for ii := range r {
			pii := pm[(i*r+ii)*n2*n2:][:n2*n2]
			for c := range n1 {
				for cc := range n1 {
					if i*n1+c > ii*n1+cc {
						continue
					}
					var s float64
					for d := range n2 {
						mrow := f.mp[(c*n2+d)*pi+cc*n2:][:n2]
						prow := pii[d*n2:][:n2]
						for dd, v := range mrow {
							s += prow[dd] * v
						}
					}
					g.SetSym(i*n1+c, ii*n1+cc, s)
				}
			}
		}
	}
	return g
}

// gramB returns G' for a B-step group whose first na rows a are visible:
// G'[(i, d), (i', d')] = sum_{c, c'} Q_ii'[c, c'] M[c n2 + d, c' n2 + d'],
// Q_ii' = sum_{a < na} A_i[a, :]^T A_i'[a, :].
func (f *kronFit) gramB(na int) *mat.SymDense {
	k := f.k
	r, m1, n1, n2 := k.r, k.m1, k.n1, k.n2
	pi := n1 * n2
	q := factorGrams(k.a, r, m1, n1, na)
	g := mat.NewDense(r*n2, r*n2, nil)
	for i := range r {
		for ii := range r {
			qii := q[(i*r+ii)*n1*n1:][:n1*n1]
			for c := range n1 {
				for cc := range n1 {
					w := qii[c*n1+cc]
					if w == 0 {
						continue
					}
					for d := range n2 {
						mrow := f.mp[(c*n2+d)*pi+cc*n2:][:n2]
						grow := g.RawRowView(i*n2 + d)[ii*n2:][:n2]
						for dd, v := range mrow {
							grow[dd] += w * v
						}
					}
				}
			}
		}
	}
	sym := mat.NewSymDense(r*n2, nil)
	for i := range r * n2 {
		for j := i; j < r*n2; j++ {
			sym.SetSym(i, j, (g.At(i, j)+g.At(j, i))/2)
		}
	}
	return sym
}

// factorGrams returns, for factors x (r x rows x cols), the r^2 products
// x_i[:rows', :]^T x_i'[:rows', :] (cols x cols each, [i][i'] order) over
// the first rows' = use rows.
func factorGrams(x []float64, r, rows, cols, use int) []float64 {
	out := make([]float64, r*r*cols*cols)
	for i := range r {
		for ii := range r {
			gemm(true, false, cols, cols, use, 1, x[i*rows*cols:], cols, x[ii*rows*cols:], cols, 0, out[(i*r+ii)*cols*cols:], cols)
		}
	}
	return out
}
