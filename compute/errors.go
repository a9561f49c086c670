package compute

// Error is the type of the sentinel values that compute panics with on
// programmer errors such as mismatched dimensions. Data-dependent failures
// (bad hyper-parameters from a user, non-convergence) are returned as error
// values wrapping ErrSpec or ErrNoConvergence instead.
type Error struct{ string }

func (err Error) Error() string { return err.string }

var (
	// ErrShape is the panic value for slices or matrices whose dimensions
	// do not match the operator.
	ErrShape = Error{"compute: dimension mismatch"}
	// ErrSpec is wrapped by errors about a Spec that cannot be built:
	// unknown family, non-positive sizes, ranks beyond the shape.
	ErrSpec = Error{"compute: invalid operator spec"}
	// ErrNoConvergence is wrapped when an iterative method fails.
	ErrNoConvergence = Error{"compute: iteration did not converge"}
	// ErrNotFinite is wrapped when an input matrix holds NaN or Inf.
	ErrNotFinite = Error{"compute: matrix has NaN or Inf entries"}
)
