package compute

// Workspace is scratch memory for Apply, ApplyT and Backward. Operators take
// what they need and give it back before returning, so one Workspace serves
// any number of calls without allocating once it has grown to the largest
// request. A Workspace is not safe for concurrent use: give each goroutine
// its own. A nil *Workspace is valid and allocates on every request.
//
// Operators whose products split into independent parts (Monarch's
// blocks) run the parts of a large call on parallel goroutines, unless the
// workspace is serial: the Trainer's shards, one goroutine per core
// already, use serial workspaces.
type Workspace[T Float] struct {
	buf    []T
	off    int
	serial bool
}

// NewWorkspace returns an empty Workspace.
func NewWorkspace[T Float]() *Workspace[T] { return &Workspace[T]{} }

// take returns a zeroed slice of length n valid until release(mark) for a
// mark taken before it.
func (w *Workspace[T]) take(n int) []T {
	if w == nil {
		return make([]T, n)
	}
	if w.off+n > len(w.buf) {
		// Earlier slices keep the old buffer alive; the next call
		// starts afresh in the larger one.
		size := max(2*len(w.buf), w.off+n)
		w.buf = make([]T, size)
		w.off = 0
	}
	s := w.buf[w.off : w.off+n : w.off+n]
	w.off += n
	clear(s)
	return s
}

// takeDirty is take without the clearing, for a buffer the caller
// overwrites entirely before reading it.
func (w *Workspace[T]) takeDirty(n int) []T {
	if w == nil || w.off+n > len(w.buf) {
		return w.take(n)
	}
	s := w.buf[w.off : w.off+n : w.off+n]
	w.off += n
	return s
}

// mark returns the current position, to be passed to release.
func (w *Workspace[T]) mark() int {
	if w == nil {
		return 0
	}
	return w.off
}

// release frees everything taken since mark.
func (w *Workspace[T]) release(mark int) {
	if w == nil {
		return
	}
	if mark > len(w.buf) {
		mark = 0
	}
	w.off = min(w.off, mark)
}
