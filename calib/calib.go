// Package calib runs a model on calibration examples for data-aware
// conversion. It collects the input activations of the layers convert
// decomposes, in the orientation compute's calibrated fits take (one row
// of the layer's in features per application of its W), accumulated into
// a Gram matrix batch by batch with a cap on the rows per layer, and it
// measures the model's loss with some layers' weights replaced. Models of
// the MLP family run in strata's engine, with the model's recorded
// standardisation applied to the examples exactly as the model sees them;
// ONNX models run in ONNX Runtime (package onnxrt), on the examples as
// they are (an ONNX model carries its own preprocessing), with the input
// of every collected node added to the graph's outputs.
//
// What a row is, per node (W is out x in as onnx.Linear and the model
// file read it):
//
//	MLP linear layer   the layer's input row: one row per example
//	Gemm               a row of A: one per example
//	MatMul on [B, T.., in]   every row over the leading axes: B T.. rows
//	Conv [N, C, d..]   the patch of C x k.. values under the kernel at each
//	                   output position (im2col, with the node's pads,
//	                   strides, dilations and auto_pad), in W's (channel,
//	                   kernel) order: N x (output positions) rows; a 1x1
//	                   kernel gives the C channels of each pixel
//
// so that the layer's output on a row x is W x (plus the bias).
//
// Caps (Caps, DefaultCaps) bound the memory and the work: at most 65536
// rows per layer enter its Gram matrix (in^2 float64 values, whatever the
// rows) and at most 16384 held-out rows or 2^22 values are kept per layer;
// a layer that sees more rows (a convolution sees one per output position)
// keeps a seeded, uniform sample of them. Groups splits the layers into
// passes whose Grams fit a memory budget.
package calib

import (
	"context"
	"math"

	"github.com/strata-ml/strata/compute"
)

// Examples are calibration examples in the model's data space: N rows of
// D features as the data set holds them (before any standardisation the
// model records) and their N targets (class indices or values).
type Examples struct {
	X    []float64
	Y    []float64
	N, D int
}

// Set is a calibration set: the examples whose activations the
// conversion fits (Fit) and those held out (Held), on which output errors
// and losses are measured.
type Set struct {
	Fit, Held Examples
}

// Caps bound the activation rows kept per layer. The zero value of a
// field selects its default (DefaultCaps).
type Caps struct {
	// FitRows bounds the rows that enter a layer's Gram matrix.
	FitRows int `json:"fit_rows"`
	// HeldRows and HeldValues bound the held-out rows kept in memory
	// per layer: at most HeldRows rows and HeldRows x in <= HeldValues.
	HeldRows   int `json:"held_rows"`
	HeldValues int `json:"held_values"`
	// Seed drives the sample of rows when a layer sees more than a cap.
	Seed uint64 `json:"seed"`
}

// DefaultCaps are the caps of a zero Caps.
var DefaultCaps = Caps{FitRows: 1 << 16, HeldRows: 1 << 14, HeldValues: 1 << 22}

func (c Caps) withDefaults() Caps {
	if c.FitRows <= 0 {
		c.FitRows = DefaultCaps.FitRows
	}
	if c.HeldRows <= 0 {
		c.HeldRows = DefaultCaps.HeldRows
	}
	if c.HeldValues <= 0 {
		c.HeldValues = DefaultCaps.HeldValues
	}
	return c
}

// heldCap is the number of held-out rows of width in that c keeps.
func (c Caps) heldCap(in int) int {
	return max(1, min(c.HeldRows, c.HeldValues/max(in, 1)))
}

// Activations are one layer's input rows on a calibration set.
type Activations struct {
	// In is the row width, W's in.
	In int
	// Gram holds the second moment of the kept rows of the fit examples,
	// and Folds that of the rows of the even and of the odd fit examples
	// (by position in the set), for cross-validation.
	Gram  *compute.Gram
	Folds [2]*compute.Gram
	// Held holds the kept rows of the held-out examples, HeldRows x In,
	// row-major.
	Held     []float64
	HeldRows int
	// FitSeen and HeldSeen count the rows the layer saw; fewer were kept
	// when they exceed the caps.
	FitSeen, HeldSeen int
}

// Swap replaces the weight of one layer (an index into the runner's
// layers) by an operator of its shape for Runner.Loss.
type Swap struct {
	Layer int
	Op    compute.Operator[float32]
}

// Runner runs one model on one calibration set. It is not safe for
// concurrent use.
type Runner interface {
	// Collect runs the model on the set and returns the activations of
	// the layers whose indices it is given, in that order.
	Collect(ctx context.Context, layers []int, caps Caps) ([]*Activations, error)
	// Loss returns the model's mean loss on the held-out examples with
	// the swaps applied (none: the model as it is): softmax cross-entropy
	// against class indices, or the mean squared error for a regressor.
	// Targets that do not fit the model are bad input.
	Loss(ctx context.Context, swaps ...Swap) (float64, error)
	// Engine names what runs the model: "strata" or "onnxruntime".
	Engine() string
	// Close releases the runner.
	Close() error
}

// GramBytes is the memory one layer of width in holds while it is
// collected: its Gram matrices (the whole and the two folds) and its
// held-out rows under caps.
func GramBytes(in int, caps Caps) int {
	caps = caps.withDefaults()
	return 8 * (3*in*in + caps.heldCap(in)*in)
}

// Groups splits the layers of widths ins, in order, into consecutive
// groups whose GramBytes sum to at most budget bytes (a layer over the
// budget alone is a group): one pass of Collect per group keeps the
// memory of a model's calibration bounded.
func Groups(ins []int, caps Caps, budget int) [][]int {
	var groups [][]int
	var cur []int
	used := 0
	for i, in := range ins {
		b := GramBytes(in, caps)
		if len(cur) > 0 && used+b > budget {
			groups = append(groups, cur)
			cur, used = nil, 0
		}
		cur = append(cur, i)
		used += b
	}
	if len(cur) > 0 {
		groups = append(groups, cur)
	}
	return groups
}

// keep reports whether row row of part part (0 fit, 1 held) of layer
// layer is in the seeded sample of the given rate: a hash of the four,
// so the sample does not depend on how the examples were batched.
func keep(seed uint64, layer, part, row int, rate float64) bool {
	if rate >= 1 {
		return true
	}
	h := seed ^ uint64(layer+1)*0x9e3779b97f4a7c15 ^ uint64(part+1)*0xd1b54a32d192ed03 ^ uint64(row+1)*0xbf58476d1ce4e5b9
	// splitmix64's finaliser.
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return float64(h>>11)/(1<<53) < rate
}

// isFinite reports whether v is neither NaN nor infinite.
func isFinite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
