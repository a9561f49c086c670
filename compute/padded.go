package compute

// padded presents the top-left out x in corner of an inner operator whose
// shape is larger: inputs are zero-padded to the inner width and the extra
// outputs are dropped. Families that need divisible dimensions build one
// when the Spec's shape does not divide.
type padded[T Float] struct {
	out, in int
	inner   Operator[T]
}

// maybePad wraps inner so that it presents shape out x in, or returns inner
// when its shape already is out x in.
func maybePad[T Float](inner Operator[T], out, in int) Operator[T] {
	po, pi := inner.Shape()
	if po == out && pi == in {
		return inner
	}
	if po < out || pi < in {
		panic(ErrShape)
	}
	return &padded[T]{out: out, in: in, inner: inner}
}

func (p *padded[T]) Shape() (int, int) { return p.out, p.in }

// Spec returns the inner Spec with the logical shape.
func (p *padded[T]) Spec() Spec {
	s := p.inner.Spec()
	s.Out, s.In = p.out, p.in
	return s
}

func (p *padded[T]) Params() []Param[T] { return p.inner.Params() }
func (p *padded[T]) FLOPs() int         { return p.inner.FLOPs() }

// Unpadded returns the inner operator.
func (p *padded[T]) Unpadded() Operator[T] { return p.inner }

func (p *padded[T]) padInput(x []T, n int, ws *Workspace[T]) []T {
	_, pi := p.inner.Shape()
	if pi == p.in {
		return x
	}
	xp := ws.take(n * pi)
	for r := range n {
		copy(xp[r*pi:r*pi+p.in], x[r*p.in:(r+1)*p.in])
	}
	return xp
}

func (p *padded[T]) padOutput(y []T, n int, ws *Workspace[T]) []T {
	po, _ := p.inner.Shape()
	if po == p.out {
		return y
	}
	yp := ws.take(n * po)
	for r := range n {
		copy(yp[r*po:r*po+p.out], y[r*p.out:(r+1)*p.out])
	}
	return yp
}

// crop copies the leading cols of each of n rows of src (row length
// stride) into dst (row length cols).
func crop[T Float](dst, src []T, n, cols, stride int) {
	for r := range n {
		copy(dst[r*cols:(r+1)*cols], src[r*stride:r*stride+cols])
	}
}

func (p *padded[T]) Apply(y, x []T, n int, ws *Workspace[T]) {
	checkLen(x, n*p.in)
	checkLen(y, n*p.out)
	mark := ws.mark()
	defer ws.release(mark)
	po, _ := p.inner.Shape()
	xp := p.padInput(x, n, ws)
	yp := y
	if po != p.out {
		yp = ws.take(n * po)
	}
	p.inner.Apply(yp, xp, n, ws)
	if po != p.out {
		crop(y, yp, n, p.out, po)
	}
}

func (p *padded[T]) ApplyT(x, y []T, n int, ws *Workspace[T]) {
	checkLen(x, n*p.in)
	checkLen(y, n*p.out)
	mark := ws.mark()
	defer ws.release(mark)
	_, pi := p.inner.Shape()
	yp := p.padOutput(y, n, ws)
	xp := x
	if pi != p.in {
		xp = ws.take(n * pi)
	}
	p.inner.ApplyT(xp, yp, n, ws)
	if pi != p.in {
		crop(x, xp, n, p.in, pi)
	}
}

func (p *padded[T]) Backward(dx, x, dy []T, n int, grads [][]T, ws *Workspace[T]) {
	checkLen(x, n*p.in)
	checkLen(dy, n*p.out)
	mark := ws.mark()
	defer ws.release(mark)
	_, pi := p.inner.Shape()
	xp := p.padInput(x, n, ws)
	dyp := p.padOutput(dy, n, ws)
	var dxp []T
	if dx != nil {
		dxp = dx
		if pi != p.in {
			dxp = ws.take(n * pi)
		}
	}
	p.inner.Backward(dxp, xp, dyp, n, grads, ws)
	if dx != nil && pi != p.in {
		crop(dx, dxp, n, p.in, pi)
	}
}

func (p *padded[T]) DenseTo(dst []float64) {
	checkLen(dst, p.out*p.in)
	po, pi := p.inner.Shape()
	full := make([]float64, po*pi)
	p.inner.DenseTo(full)
	crop(dst, full, p.out, p.in, pi)
}

func (p *padded[T]) SingularValues(dst []float64) []float64 { return denseSingularValues[T](p, dst) }
