package compute

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"gonum.org/v1/gonum/mat"
)

// Operator is a linear map W of shape out x in with structured parameters.
// The trunk S and the correction R of a decomposed layer are both
// Operators, and so is their Sum.
//
// Batches are row-major: x holds n rows of length in, y n rows of length
// out. Implementations keep no per-call state, so one Operator may be applied
// concurrently by several goroutines, each with its own Workspace.
type Operator[T Float] interface {
	// Shape returns the logical dimensions of W.
	Shape() (out, in int)
	// Spec returns the family and hyper-parameters that, with the
	// parameter values, rebuild the operator through New.
	Spec() Spec
	// Params returns the parameter tensors. Their Data alias the
	// operator's storage: writing to them changes the operator. The order
	// is fixed and is the order Backward's grads follow.
	Params() []Param[T]
	// Apply sets y = x W^T for x n x in and y n x out.
	Apply(y, x []T, n int, ws *Workspace[T])
	// ApplyT sets x = y W for y n x out and x n x in.
	ApplyT(x, y []T, n int, ws *Workspace[T])
	// Backward takes the input x (n x in) of a forward Apply and the
	// gradient dy (n x out) of a loss with respect to its output. It adds
	// the gradient with respect to each parameter into grads[i] (same
	// order and lengths as Params; nil entries are skipped) and, when dx
	// is not nil, sets dx (n x in) to the gradient with respect to x.
	Backward(dx, x, dy []T, n int, grads [][]T, ws *Workspace[T])
	// FLOPs returns the floating-point operations of Apply per input row,
	// counting a multiply-add as two.
	FLOPs() int
	// DenseTo writes W, accumulated in float64, to dst (out x in,
	// row-major).
	DenseTo(dst []float64)
	// SingularValues returns the min(out, in) singular values of W in
	// decreasing order, in dst if it has room. Families compute them from
	// their structure where that is exact and cheap, otherwise from the
	// dense matrix.
	SingularValues(dst []float64) []float64
}

// Param is one parameter tensor of an Operator.
type Param[T Float] struct {
	// Name is unique within the operator, e.g. "L" or "trunk.L".
	Name string
	// Shape is the tensor's shape, row-major; its product is len(Data).
	Shape []int
	// Data aliases the operator's storage.
	Data []T
	// Frozen marks tensors that are state rather than trainable weights
	// (the indices of a sparse operator). Backward leaves their gradient
	// untouched.
	Frozen bool
}

// Spec names an operator's family and hyper-parameters. It is what the
// model file stores per layer; New builds a zero operator from it.
type Spec struct {
	Family string `json:"family"`
	Out    int    `json:"out"`
	In     int    `json:"in"`
	// Blocks is b for monarch (b x b submatrices) and blockdiag (b
	// diagonal blocks).
	Blocks int `json:"blocks,omitempty"`
	// Rank is the rank of each monarch submatrix, of a lowrank operator,
	// and the number of Kronecker terms.
	Rank int `json:"rank,omitempty"`
	// FactorShape is the shape m1 x n1 of each Kronecker factor A_i; B_i
	// is (out/m1) x (in/n1) after padding. Zero means closest to square.
	FactorShape [2]int `json:"factor_shape,omitempty"`
	// NNZ is the number of stored entries of a sparse operator.
	NNZ int `json:"nnz,omitempty"`
	// Trunk and Correction are the parts of a sum.
	Trunk      *Spec `json:"trunk,omitempty"`
	Correction *Spec `json:"correction,omitempty"`
}

// String renders a Spec for people, e.g. "monarch b=4 r=16 + lowrank r=8"
// (the shape is left out).
func (s Spec) String() string {
	if s.Family == FamilySum && s.Trunk != nil && s.Correction != nil {
		return s.Trunk.String() + " + " + s.Correction.String()
	}
	var b strings.Builder
	b.WriteString(s.Family)
	if s.Blocks > 0 {
		fmt.Fprintf(&b, " b=%d", s.Blocks)
	}
	if s.Rank > 0 {
		fmt.Fprintf(&b, " r=%d", s.Rank)
	}
	if s.FactorShape != [2]int{} {
		fmt.Fprintf(&b, " A=%dx%d", s.FactorShape[0], s.FactorShape[1])
	}
	if s.NNZ > 0 {
		fmt.Fprintf(&b, " nnz=%d", s.NNZ)
	}
	return b.String()
}

// Family names.
const (
	FamilyDense      = "dense"
	FamilyOrthogonal = "orthogonal"
	FamilyMonarch    = "monarch"
	FamilyKronecker  = "kronecker"
	FamilyBlockDiag  = "blockdiag"
	FamilyCirculant  = "circulant"
	FamilyToeplitz   = "toeplitz"
	FamilyLowRank    = "lowrank"
	FamilySparse     = "sparse"
	FamilyZero       = "zero"
	FamilySum        = "sum"
)

// TrunkFamilies lists the structured trunk families in a fixed order.
var TrunkFamilies = []string{
	FamilyOrthogonal, FamilyMonarch, FamilyKronecker, FamilyBlockDiag,
	FamilyCirculant, FamilyToeplitz, FamilyLowRank,
}

// builder allocates a zero operator of a family from a Spec whose Family
// matches; it validates the hyper-parameters and returns errors wrapping
// ErrSpec.
type builder[T Float] func(s Spec) (Operator[T], error)

// projector returns the operator of a family nearest to w in Frobenius
// norm (or as near as the family's documented algorithm gets), for the
// hyper-parameters of s; s.Out and s.In equal w's shape.
type projector func(ctx context.Context, w *mat.Dense, s Spec, seed uint64) (Operator[float64], error)

var (
	builders64 = map[string]builder[float64]{}
	builders32 = map[string]builder[float32]{}
	projectors = map[string]projector{}
)

// register records a family's constructors for both precisions and its
// projection; project may be nil for families that are not projected to.
func register(family string, b64 builder[float64], b32 builder[float32], project projector) {
	builders64[family] = b64
	builders32[family] = b32
	if project != nil {
		projectors[family] = project
	}
}

// New returns an operator of the given Spec with every parameter zero.
// Errors wrap ErrSpec.
func New[T Float](s Spec) (Operator[T], error) {
	if s.Out <= 0 || s.In <= 0 {
		return nil, fmt.Errorf("%w: %s shape %dx%d must be positive", ErrSpec, s.Family, s.Out, s.In)
	}
	var zero T
	switch any(zero).(type) {
	case float32:
		b, ok := builders32[s.Family]
		if !ok {
			return nil, fmt.Errorf("%w: unknown family %q", ErrSpec, s.Family)
		}
		op, err := b(s)
		if err != nil {
			return nil, err
		}
		return any(op).(Operator[T]), nil
	default:
		b, ok := builders64[s.Family]
		if !ok {
			return nil, fmt.Errorf("%w: unknown family %q", ErrSpec, s.Family)
		}
		op, err := b(s)
		if err != nil {
			return nil, err
		}
		return any(op).(Operator[T]), nil
	}
}

// Convert returns a copy of op with parameters of element type U.
func Convert[U, T Float](op Operator[T]) Operator[U] {
	dst, err := New[U](op.Spec())
	if err != nil {
		panic(fmt.Sprintf("compute: rebuilding %s from its own spec: %v", op.Spec().Family, err))
	}
	src := op.Params()
	for i, p := range dst.Params() {
		for j, v := range src[i].Data {
			p.Data[j] = U(v)
		}
	}
	return dst
}

// RoundToFloat32 rounds every parameter of op to float32 in place: op
// then holds what Convert[float32] of it stores, with the values
// Convert[float64](Convert[float32, float64](op)) would have, without the
// two copies.
func RoundToFloat32(op Operator[float64]) {
	for _, p := range op.Params() {
		for j, v := range p.Data {
			p.Data[j] = float64(float32(v))
		}
	}
}

// Clone returns a deep copy of op.
func Clone[T Float](op Operator[T]) Operator[T] { return Convert[T](op) }

// NumParams returns the number of trainable scalars of op.
func NumParams[T Float](op Operator[T]) int {
	n := 0
	for _, p := range op.Params() {
		if !p.Frozen {
			n += len(p.Data)
		}
	}
	return n
}

// StoredValues returns the number of scalars op stores, frozen ones included.
func StoredValues[T Float](op Operator[T]) int {
	n := 0
	for _, p := range op.Params() {
		n += len(p.Data)
	}
	return n
}

// Dense returns W as a float64 matrix.
func Dense[T Float](op Operator[T]) *mat.Dense {
	out, in := op.Shape()
	data := make([]float64, out*in)
	op.DenseTo(data)
	return mat.NewDense(out, in, data)
}

// SetParams copies values into op's parameters in Params order. Each
// slice must have exactly the length of its parameter.
func SetParams[T Float](op Operator[T], values [][]T) error {
	ps := op.Params()
	if len(values) != len(ps) {
		return fmt.Errorf("%w: %s has %d parameter tensors, got %d", ErrSpec, op.Spec().Family, len(ps), len(values))
	}
	for i, p := range ps {
		if len(values[i]) != len(p.Data) {
			return fmt.Errorf("%w: %s parameter %q has %d values, got %d", ErrSpec, op.Spec().Family, p.Name, len(p.Data), len(values[i]))
		}
		copy(p.Data, values[i])
	}
	return nil
}

// ParamShapes returns the shape of each parameter of a Spec without
// keeping the operator.
func ParamShapes(s Spec) ([][]int, []string, error) {
	op, err := New[float32](s)
	if err != nil {
		return nil, nil, err
	}
	var shapes [][]int
	var names []string
	for _, p := range op.Params() {
		shapes = append(shapes, slices.Clone(p.Shape))
		names = append(names, p.Name)
	}
	return shapes, names, nil
}

// denseSingularValues is the fallback for families without a cheap exact
// formula: the singular values of the materialised matrix.
func denseSingularValues[T Float](op Operator[T], dst []float64) []float64 {
	return SingularValuesOf(Dense(op), dst)
}
