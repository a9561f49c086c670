package compute

import (
	"slices"
	"strings"
)

// The names below are declared once, here, as typed constants: the model
// engine's vocabulary, which the model file format (arrowio) stores and
// the stages read and write. Their string values are those of the files
// and configs.

// Task is what a network's head computes.
type Task string

// The tasks of a NetworkSpec (and of a model file's architecture).
const (
	TaskClassification Task = "classification" // softmax cross-entropy over at least two logits
	TaskRegression     Task = "regression"     // mean squared error
)

// LayerKind is the kind of one step of a network.
type LayerKind string

// The layer kinds of a LayerSpec.
const (
	KindLinear     LayerKind = "linear"
	KindActivation LayerKind = "activation"
	KindLayerNorm  LayerKind = "layernorm"
)

// Role says what a parameter (a tensor of a model file) is.
type Role string

// The roles of a NetParam and of a model file's tensors.
const (
	RoleWeight     Role = "weight"     // the matrix of a dense linear layer (a layer norm's gain, in a file)
	RoleBias       Role = "bias"       // the bias of a linear layer (a layer norm's shift, in a file)
	RoleTrunk      Role = "trunk"      // a parameter of a structured layer's S
	RoleCorrection Role = "correction" // a parameter of a decomposed layer's R
	RoleNorm       Role = "norm"       // the gain or shift of a layer norm, in a network
	// RoleTensor is any other tensor of a generic checkpoint (not a 2-D
	// weight), which convert passes through.
	RoleTensor Role = "tensor"
)

// Activation names an elementwise nonlinearity.
type Activation string

// The activations of a LayerSpec of kind KindActivation.
const (
	ActReLU     Activation = "relu"
	ActGELU     Activation = "gelu"
	ActTanh     Activation = "tanh"
	ActSigmoid  Activation = "sigmoid"
	ActIdentity Activation = "identity"
)

// Activations lists the activations in a fixed order (the order the docs
// give them).
var Activations = []Activation{ActReLU, ActGELU, ActTanh, ActSigmoid, ActIdentity}

// Valid reports whether a is one of Activations.
func (a Activation) Valid() bool { return slices.Contains(Activations, a) }

// ResidualKind is the kind of correction R that Decompose fits to W - S.
type ResidualKind string

// The residual kinds of Residual.
const (
	ResidualLowRank ResidualKind = "lowrank" // rank r, from the SVD of W - S
	ResidualSparse  ResidualKind = "sparse"  // the k largest-magnitude entries of W - S
	ResidualNone    ResidualKind = "none"    // no correction
)

// ResidualKinds lists the residual kinds.
var ResidualKinds = []ResidualKind{ResidualLowRank, ResidualSparse, ResidualNone}

// Valid reports whether k is one of ResidualKinds. Decompose takes an
// empty kind as ResidualLowRank; nothing else outside the list.
func (k ResidualKind) Valid() bool { return slices.Contains(ResidualKinds, k) }

// JoinNames lists names for a message: "relu, gelu, tanh".
func JoinNames[S ~string](names []S) string {
	s := make([]string, len(names))
	for i, n := range names {
		s[i] = string(n)
	}
	return strings.Join(s, ", ")
}
