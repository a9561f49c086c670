package compute

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"sync"
	"sync/atomic"

	"gonum.org/v1/gonum/mat"
)

// Monarch is a block-wise low-rank matrix (Dao et al. 2022, "Monarch:
// Expressive Structured Matrices for Efficient and Accurate Training"),
// generalised to rank r per block and to rectangular shapes.
//
// With b blocks and rank r, the in columns of W (out x in) split into b
// contiguous chunks of in/b columns and the out rows into b strided row
// sets: row set j holds rows j, j+b, j+2b, ... Each of the b x b
// submatrices
//
//	W_jk = W[j::b, k*in/b : (k+1)*in/b]    ((out/b) x (in/b))
//
// has rank at most r: W_jk = L_jk R_jk^T with L_jk (out/b) x r and R_jk
// (in/b) x r. With r = 1 and b = sqrt(n) this is the classic Monarch
// matrix P L P^T R of the paper; larger r trades parameters for accuracy.
//
// The factors are stored in two parameters, grouped so that each apply
// stage is one GEMM per block:
//
//	"L" has shape [b, out/b, b*r]: L[j][i][k*r+t] = L_jk[i, t], the
//	    weight of output row j + i*b (i-th row of row set j);
//	"R" has shape [b, in/b, b*r]:  R[k][c][j*r+t] = R_jk[c, t], the
//	    weight of input column k*in/b + c (c-th column of chunk k).
//
// So W[j + i*b, k*in/b + c] = sum_t L[j][i][k*r+t] R[k][c][j*r+t].
//
// Apply (Y = X W^T) is two batched GEMMs with a permutation between: for
// each chunk k, Z_k = X[:, chunk k] R_k (n x b*r, R_k = R[k]); then for each
// row set j the gathered U_j[:, k*r+t] = Z_k[:, j*r+t] gives Y_j = U_j L_j^T
// (L_j = L[j]), scattered into the output columns j, j+b, ... Per input row
// that is 2 b r (in + out) flops against 2 in out for dense, plus an
// O(b^2 r + out) permutation; the parameters number b r (out + in): 2 n b r
// for an n x n layer, which is 2 n^1.5 = 2 n^2 / b for classic Monarch (r =
// 1, b = sqrt(n)). The transpose and the gradients run the same stages in
// reverse, with the same cost.
//
// Shapes that b does not divide are zero-padded to multiples of b (see
// the package documentation): the Monarch operator is built at
// ceil(out/b)*b x ceil(in/b)*b and its top-left out x in corner is
// presented. Row set j then has the rows j + i*b < out and chunk k the
// columns k*in'/b ... below in, where in' is the padded width; trailing
// chunks may be short or empty. A Spec is valid when 1 <= b <= min(out,
// in) and 1 <= r <= min(out', in')/b for the padded out' x in'.
//
// Project takes the truncated SVD of each submatrix, which is the exact
// Frobenius optimum over the family, padded shapes included (see
// projectMonarch). SingularValues is exact: from a (b^2 r) x (b^2 r) core
// when that is smaller than the matrix, otherwise from the dense matrix.
type Monarch[T Float] struct {
	out, in     int // divisible by b
	b, r        int
	left, right []T
}

var _ Operator[float64] = (*Monarch[float64])(nil)

func init() {
	register(FamilyMonarch, newMonarchFromSpec[float64], newMonarchFromSpec[float32], projectMonarch)
}

// monarchPadded validates the Monarch hyper-parameters of s and returns the
// padded shape.
func monarchPadded(s Spec) (po, pi int, err error) {
	b, r := s.Blocks, s.Rank
	if b < 1 || b > min(s.Out, s.In) {
		return 0, 0, fmt.Errorf("%w: monarch blocks %d must be in [1, %d] for %dx%d", ErrSpec, b, min(s.Out, s.In), s.Out, s.In)
	}
	po, pi = ceilTo(s.Out, b), ceilTo(s.In, b)
	if hi := min(po/b, pi/b); r < 1 || r > hi {
		return 0, 0, fmt.Errorf("%w: monarch rank %d must be in [1, %d] for %dx%d with %d blocks", ErrSpec, r, hi, s.Out, s.In, b)
	}
	return po, pi, nil
}

func newMonarchFromSpec[T Float](s Spec) (Operator[T], error) {
	po, pi, err := monarchPadded(s)
	if err != nil {
		return nil, err
	}
	return maybePad(NewMonarch[T](po, pi, s.Blocks, s.Rank, nil, nil), s.Out, s.In), nil
}

// NewMonarch returns the Monarch operator of shape out x in with b blocks
// and rank r on the factors l ([b, out/b, b*r]) and rt ([b, in/b, b*r])
// laid out as the type documents, which it keeps; nil slices allocate
// zeros. b must divide out and in (New pads other shapes).
func NewMonarch[T Float](out, in, b, r int, l, rt []T) *Monarch[T] {
	if b < 1 || r < 1 || out%b != 0 || in%b != 0 {
		panic(ErrShape)
	}
	if l == nil {
		l = make([]T, out*b*r)
	}
	if rt == nil {
		rt = make([]T, in*b*r)
	}
	if len(l) != out*b*r || len(rt) != in*b*r {
		panic(ErrShape)
	}
	return &Monarch[T]{out: out, in: in, b: b, r: r, left: l, right: rt}
}

// projectMonarch sets each submatrix W_jk (of w zero-padded to multiples
// of b) to its truncated rank-r SVD U_r S_r V_r^T, split as L_jk = U_r
// S_r^(1/2), R_jk = V_r S_r^(1/2). The submatrices are disjoint, so this is
// the exact Frobenius optimum over the family (Eckart-Young per block):
// ||W - M||_F^2 = sum_jk sum_{t >= r} sigma_t(W_jk)^2. Padding keeps it
// optimal for the visible corner: a padded submatrix is a visible one with
// zero rows or columns appended, which has the same singular values, and its
// rank-r truncation is the visible one's with the same zeros appended, so
// the invisible part of the result is zero as well.
//
// The b^2 SVDs are of (out/b) x (in/b) matrices, exact below the
// TruncatedSVD threshold and randomized (seeded per block from seed)
// above; they run in parallel over GOMAXPROCS workers and the result does
// not depend on the schedule. When ctx is done the workers stop before
// their next block (or pass of a randomized SVD) and ctx's error returns.
func projectMonarch(ctx context.Context, w *mat.Dense, s Spec, seed uint64) (Operator[float64], error) {
	po, pi, err := monarchPadded(s)
	if err != nil {
		return nil, err
	}
	b, r := s.Blocks, s.Rank
	wp := padDense(w, po, pi)
	m := NewMonarch[float64](po, pi, b, r, nil, nil)
	mo, mi, br := po/b, pi/b, b*r

	errs := make([]error, b*b)
	var next atomic.Int64
	var wg sync.WaitGroup
	workers := min(runtime.GOMAXPROCS(0), b*b)
	if workers > 1 {
		// One goroutine per core already: each SVD's BLAS on one thread.
		enterSerialBLAS()
		defer exitSerialBLAS()
	}
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sub := mat.NewDense(mo, mi, nil)
			for {
				blk := int(next.Add(1)) - 1
				if blk >= b*b {
					return
				}
				if err := ctx.Err(); err != nil {
					errs[blk] = err
					continue
				}
				j, k := blk/b, blk%b
				for i := range mo {
					sub.SetRow(i, wp.RawRowView(j + i*b)[k*mi:(k+1)*mi])
				}
				u, sv, v, err := truncatedSVD(ctx, sub, r, monarchBlockSeed(seed+uint64(blk)))
				if err != nil {
					errs[blk] = fmt.Errorf("monarch block (%d, %d): %w", j, k, err)
					continue
				}
				for t, sigma := range sv {
					sq := math.Sqrt(sigma)
					for i := range mo {
						m.left[(j*mo+i)*br+k*r+t] = u.At(i, t) * sq
					}
					for c := range mi {
						m.right[(k*mi+c)*br+j*r+t] = v.At(c, t) * sq
					}
				}
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return maybePad[float64](m, s.Out, s.In), nil
}

// monarchBlockSeed is the SplitMix64 finaliser: it turns a seed plus a
// block index into well-separated per-block seeds.
func monarchBlockSeed(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

func (m *Monarch[T]) Shape() (int, int) { return m.out, m.in }
func (m *Monarch[T]) Spec() Spec {
	return Spec{Family: FamilyMonarch, Out: m.out, In: m.in, Blocks: m.b, Rank: m.r}
}

// Params returns "L" ([b, out/b, b*r]) and "R" ([b, in/b, b*r]).
func (m *Monarch[T]) Params() []Param[T] {
	br := m.b * m.r
	return []Param[T]{
		{Name: "L", Shape: []int{m.b, m.out / m.b, br}, Data: m.left},
		{Name: "R", Shape: []int{m.b, m.in / m.b, br}, Data: m.right},
	}
}
func (m *Monarch[T]) FLOPs() int { return 2 * m.b * m.r * (m.out + m.in) }

// Blocks returns b.
func (m *Monarch[T]) Blocks() int { return m.b }

// Rank returns the rank r of each submatrix.
func (m *Monarch[T]) Rank() int { return m.r }

// Each stage of a product is b independent GEMMs, one per block; a large
// one runs on parallel goroutines by blocks (with single-threaded BLAS: b
// small GEMMs each split over BLAS threads spend their time
// synchronising). The permutations between stages run in parallel by rows.
type monarchStage uint8

const (
	stage1  monarchStage = iota // Z_k = X_k R_k, into dst (n x b*b*r, block k at columns k*b*r)
	stage2                      // Y_j = U_j L_j^T, into dst (n x out, row set j at columns j*out/b)
	stage2T                     // U_j = Yg_j L_j, into dst (n x b*b*r)
	stage1T                     // X_k = Z_k R_k^T, into dst (n x in)
	gradL                       // dL_j += dYg_j^T U_j, src dYg, src2 U
	gradR                       // dR_k += X_k^T dZ_k, src X, src2 dZ
)

// run computes stage st of n rows from src (and src2 for the gradients)
// into dst.
func (m *Monarch[T]) run(st monarchStage, dst, src, src2 []T, n int, ws *Workspace[T]) {
	width := m.in
	if st == stage2 || st == stage2T || st == gradL {
		width = m.out
	}
	if k := ws.workers(m.b, 2*float64(n)*float64(width)*float64(m.b*m.r)); k > 1 {
		parallelFor(k, m.b, true, func(lo, hi int) { m.blocks(st, dst, src, src2, n, lo, hi) })
		return
	}
	m.blocks(st, dst, src, src2, n, 0, m.b)
}

// blocks computes blocks lo..hi-1 of stage st.
func (m *Monarch[T]) blocks(st monarchStage, dst, src, src2 []T, n, lo, hi int) {
	mo, mi, br, w := m.out/m.b, m.in/m.b, m.b*m.r, m.b*m.b*m.r
	for i := lo; i < hi; i++ {
		switch st {
		case stage1:
			gemm(false, false, n, br, mi, 1, src[i*mi:], m.in, m.right[i*mi*br:], br, 0, dst[i*br:], w)
		case stage2:
			gemm(false, true, n, mo, br, 1, src[i*br:], w, m.left[i*mo*br:], br, 0, dst[i*mo:], m.out)
		case stage2T:
			gemm(false, false, n, br, mo, 1, src[i*mo:], m.out, m.left[i*mo*br:], br, 0, dst[i*br:], w)
		case stage1T:
			gemm(false, true, n, mi, br, 1, src[i*br:], w, m.right[i*mi*br:], br, 0, dst[i*mi:], m.in)
		case gradL:
			gemm(true, false, mo, br, n, 1, src[i*mo:], m.out, src2[i*br:], w, 1, dst[i*mo*br:], br)
		case gradR:
			gemm(true, false, mi, br, n, 1, src[i*mi:], m.in, src2[i*br:], w, 1, dst[i*mi*br:], br)
		}
	}
}

// The permutations of a product, by rows.
type monarchPerm uint8

const (
	permSwap    monarchPerm = iota // monarchSwap
	permScatter                    // monarchScatter
	permGather                     // monarchGather
)

func (m *Monarch[T]) permute(p monarchPerm, dst, src []T, n int, ws *Workspace[T]) {
	if k := ws.workers(n, float64(n*max(m.out, m.b*m.b*m.r))); k > 1 {
		parallelFor(k, n, false, func(lo, hi int) { m.permuteRows(p, dst, src, lo, hi) })
		return
	}
	m.permuteRows(p, dst, src, 0, n)
}

func (m *Monarch[T]) permuteRows(p monarchPerm, dst, src []T, lo, hi int) {
	switch p {
	case permSwap:
		w := m.b * m.b * m.r
		monarchSwap(dst[lo*w:hi*w], src[lo*w:hi*w], hi-lo, m.b, m.r)
	case permScatter:
		monarchScatter(dst[lo*m.out:hi*m.out], src[lo*m.out:hi*m.out], hi-lo, m.b, m.out/m.b)
	case permGather:
		monarchGather(dst[lo*m.out:hi*m.out], src[lo*m.out:hi*m.out], hi-lo, m.b, m.out/m.b)
	}
}

func (m *Monarch[T]) Apply(y, x []T, n int, ws *Workspace[T]) {
	checkLen(x, n*m.in)
	checkLen(y, n*m.out)
	if n == 0 {
		return
	}
	mark := ws.mark()
	defer ws.release(mark)
	// Every buffer is written whole (GEMMs with beta 0, permutations)
	// before it is read.
	w := m.b * m.b * m.r
	z := ws.takeDirty(n * w)
	u := ws.takeDirty(n * w)
	m.run(stage1, z, x, nil, n, ws)
	m.permute(permSwap, u, z, n, ws)
	yg := ws.takeDirty(n * m.out)
	m.run(stage2, yg, u, nil, n, ws)
	m.permute(permScatter, y, yg, n, ws)
}

func (m *Monarch[T]) ApplyT(x, y []T, n int, ws *Workspace[T]) {
	checkLen(x, n*m.in)
	checkLen(y, n*m.out)
	if n == 0 {
		return
	}
	mark := ws.mark()
	defer ws.release(mark)
	w := m.b * m.b * m.r
	yg := ws.takeDirty(n * m.out)
	m.permute(permGather, yg, y, n, ws)
	u := ws.takeDirty(n * w)
	m.run(stage2T, u, yg, nil, n, ws)
	z := ws.takeDirty(n * w)
	m.permute(permSwap, z, u, n, ws)
	m.run(stage1T, x, z, nil, n, ws)
}

// Backward: with Yg the gathered dY, dL_j += dYg_j^T U_j, dU_j = dYg_j L_j,
// dZ = the inverse permutation of dU, dR_k += X_k^T dZ_k and dX_k =
// dZ_k R_k^T.
func (m *Monarch[T]) Backward(dx, x, dy []T, n int, grads [][]T, ws *Workspace[T]) {
	checkLen(x, n*m.in)
	checkLen(dy, n*m.out)
	wantL := len(grads) > 0 && grads[0] != nil
	wantR := len(grads) > 1 && grads[1] != nil
	if n == 0 || !wantL && !wantR && dx == nil {
		return
	}
	mark := ws.mark()
	defer ws.release(mark)
	w := m.b * m.b * m.r
	dyg := ws.takeDirty(n * m.out)
	m.permute(permGather, dyg, dy, n, ws)
	z := ws.takeDirty(n * w)
	u := ws.takeDirty(n * w)
	if wantL {
		checkLen(grads[0], len(m.left))
		m.run(stage1, z, x, nil, n, ws)
		m.permute(permSwap, u, z, n, ws)
		m.run(gradL, grads[0], dyg, u, n, ws)
	}
	if !wantR && dx == nil {
		return
	}
	m.run(stage2T, u, dyg, nil, n, ws) // dU
	m.permute(permSwap, z, u, n, ws)
	if wantR {
		checkLen(grads[1], len(m.right))
		m.run(gradR, grads[1], x, z, n, ws)
	}
	if dx != nil {
		checkLen(dx, n*m.in)
		m.run(stage1T, dx, z, nil, n, ws)
	}
}

// monarchSwap views each of n rows of src and dst as b x b blocks of r
// values and sets dst[a][c] = src[c][a]: the Monarch permutation between
// the chunk-major layout of Z and the row-set-major layout of U. It is its
// own inverse.
func monarchSwap[T Float](dst, src []T, n, b, r int) {
	w := b * b * r
	for row := range n {
		d, s := dst[row*w:(row+1)*w], src[row*w:(row+1)*w]
		if r == 1 {
			transposeTo(d, s, b, b)
			continue
		}
		for a := range b {
			for c := range b {
				copy(d[(a*b+c)*r:(a*b+c+1)*r], s[(c*b+a)*r:(c*b+a+1)*r])
			}
		}
	}
}

// monarchScatter scatters each of n rows of yg (b groups of m values) into y
// so that y[i*b+j] = yg[j*m+i]: group j lands on the strided columns j,
// j+b, ... Per row that is the transpose of a b x m matrix.
func monarchScatter[T Float](y, yg []T, n, b, m int) {
	w := b * m
	for row := range n {
		transposeTo(y[row*w:(row+1)*w], yg[row*w:(row+1)*w], b, m)
	}
}

// monarchGather is the inverse of monarchScatter: yg[j*m+i] = y[i*b+j],
// the transpose of an m x b matrix per row.
func monarchGather[T Float](yg, y []T, n, b, m int) {
	w := b * m
	for row := range n {
		transposeTo(yg[row*w:(row+1)*w], y[row*w:(row+1)*w], m, b)
	}
}

// transposeTo sets dst (cols x rows, row-major) to the transpose of src
// (rows x cols): dst is written in order, src read by columns (for a
// Monarch row both fit in the L1 cache).
func transposeTo[T Float](dst, src []T, rows, cols int) {
	src = src[:rows*cols]
	for j := range cols {
		d := dst[j*rows : (j+1)*rows]
		for i := range d {
			d[i] = src[i*cols+j]
		}
	}
}

// DenseTo evaluates W[j + i*b, k*in/b + c] = sum_t L[j][i][k*r+t]
// R[k][c][j*r+t] entry by entry in float64.
func (m *Monarch[T]) DenseTo(dst []float64) {
	checkLen(dst, m.out*m.in)
	b, r := m.b, m.r
	mo, mi, br := m.out/b, m.in/b, b*r
	left, right := float64s(m.left), float64s(m.right)
	// Block (j, k) = L_jk R_jk^T lands on rows j, j+b, ... (row stride
	// b*in) and columns k*mi ...: one GEMM straight into dst each.
	for j := range b {
		for k := range b {
			gemm(false, true, mo, mi, r, 1, left[j*mo*br+k*r:], br, right[k*mi*br+j*r:], br,
				0, dst[j*m.in+k*mi:], b*m.in)
		}
	}
}

// SingularValues uses the factorisation W = P diag(L_j) Pi diag(R_k)^T Q,
// with P and Q permutations and Pi the Monarch permutation of the b*b*r
// rank-one terms: with L_j = Q_j A_j and R_k = Q'_k B_k (thin QR, so A_j
// and B_k are (b r) x (b r)), W has the nonzero singular values of the
// (b^2 r) x (b^2 r) core C whose block (j, k) is A_j[:, k r : k r + r]
// B_k[:, j r : j r + r]^T. That is cheaper than the dense SVD when b^2 r <
// min(out, in), where it is used; otherwise the dense matrix is factorised.
func (m *Monarch[T]) SingularValues(dst []float64) []float64 {
	if m.b*m.b*m.r >= min(m.out, m.in) {
		return denseSingularValues[T](m, dst)
	}
	return m.coreSingularValues(dst)
}

// coreSingularValues computes the singular values from the b^2 r core
// (see SingularValues), for any b and r.
func (m *Monarch[T]) coreSingularValues(dst []float64) []float64 {
	k := min(m.out, m.in)
	if cap(dst) < k {
		dst = make([]float64, k)
	}
	dst = dst[:k]
	clear(dst)
	b, r := m.b, m.r
	mo, mi, br := m.out/b, m.in/b, b*r
	a := make([]*mat.Dense, b)
	bb := make([]*mat.Dense, b)
	for j := range b {
		a[j] = triangularFactor(m.left[j*mo*br:(j+1)*mo*br], mo, br)
		bb[j] = triangularFactor(m.right[j*mi*br:(j+1)*mi*br], mi, br)
	}
	s := b * br
	core := mat.NewDense(s, s, nil)
	for j := range b {
		for k := range b {
			blk := core.Slice(j*br, (j+1)*br, k*br, (k+1)*br).(*mat.Dense)
			blk.Mul(a[j].Slice(0, br, k*r, (k+1)*r), bb[k].Slice(0, br, j*r, (j+1)*r).T())
		}
	}
	sv := SingularValuesOf(core, nil)
	copy(dst, sv[:min(len(sv), k)])
	return dst
}

// String describes the operator for logs.
func (m *Monarch[T]) String() string {
	return fmt.Sprintf("monarch %dx%d b=%d r=%d", m.out, m.in, m.b, m.r)
}
