package compute_test

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/mat"

	"github.com/strata-ml/strata/compute"
)

// exampleRows returns n rows of width 4 whose features have scales 4, 2,
// 1, 1/2: a layer that mostly sees its first inputs.
func exampleRows(n int, phase float64) []float64 {
	x := make([]float64, n*4)
	for i := range n {
		for j := range 4 {
			x[i*4+j] = math.Sin(phase+float64(i*(j+2))) * math.Pow(2, 2-float64(j))
		}
	}
	return x
}

// A rank-1 replacement of a 3 x 4 layer, fitted to the weights and to the
// activations the layer sees, scored on held-out rows.
func ExampleProjectCalibrated() {
	w := mat.NewDense(3, 4, []float64{
		1, 0, 2, 0,
		0, 1, 0, 3,
		1, 1, 1, 1,
	})
	cal, err := compute.NewCalibration(exampleRows(200, 0), 200, 4, compute.DefaultRidge)
	if err != nil {
		panic(err)
	}
	spec := compute.Spec{Family: compute.FamilyLowRank, Rank: 1}
	weightOnly, _ := compute.Project(w, spec, 1)
	dataAware, err := compute.ProjectCalibrated(w, spec, cal, compute.CalibratedConfig{}, 1)
	if err != nil {
		panic(err)
	}
	held := exampleRows(500, 1)
	fmt.Printf("weight-only %.3f\n", compute.OutputRelativeError(w, compute.Dense(weightOnly), held, 500))
	fmt.Printf("data-aware  %.3f\n", compute.OutputRelativeError(w, compute.Dense(dataAware), held, 500))
	// Output:
	// weight-only 0.791
	// data-aware  0.423
}

// A block-diagonal trunk with a rank-1 correction, both fitted to the
// activations, against the weight-only decomposition; then a
// training-free correction for a trunk fixed in advance.
func ExampleDecomposeCalibrated() {
	w := mat.NewDense(4, 4, []float64{
		2.0, 0.5, -1.0, 0.3,
		0.4, 1.5, 0.8, -0.6,
		-0.7, 1.1, 2.2, 0.9,
		1.3, -0.2, 0.6, 1.8,
	})
	cal, _ := compute.NewCalibration(exampleRows(200, 0), 200, 4, compute.DefaultRidge)
	held := exampleRows(500, 1)
	trunk := compute.Spec{Family: compute.FamilyBlockDiag, Blocks: 2}
	res := compute.Residual{Kind: "lowrank", Rank: 1}
	weightOnly, _ := compute.Decompose(w, trunk, res, 1)
	dataAware, err := compute.DecomposeCalibrated(w, trunk, res, cal, compute.CalibratedConfig{}, 1)
	if err != nil {
		panic(err)
	}
	fmt.Println(dataAware.Spec())
	fmt.Printf("weight-only %.3f\n", compute.OutputRelativeError(w, compute.Dense[float64](weightOnly), held, 500))
	fmt.Printf("data-aware  %.3f\n", compute.OutputRelativeError(w, compute.Dense[float64](dataAware), held, 500))

	s, _ := compute.Project(w, trunk, 1)
	fixed, _ := compute.FitResidual(w, s, res, cal, 1)
	fmt.Printf("fixed trunk %.3f\n", compute.OutputRelativeError(w, compute.Dense[float64](fixed), held, 500))
	// Output:
	// blockdiag b=2 + lowrank r=1
	// weight-only 0.222
	// data-aware  0.192
	// fixed trunk 0.192
}

// Three layers, each with options measured on calibration rows; the
// budget is 100 parameters.
func ExampleAssignBudget() {
	layers := [][]compute.LayerOption{
		{{Params: 64, Loss: 0}, {Params: 32, Loss: 0.01}, {Params: 8, Loss: 0.20}},
		{{Params: 64, Loss: 0}, {Params: 32, Loss: 0.05}, {Params: 8, Loss: 0.06}},
		{{Params: 40, Loss: 0}, {Params: 20, Loss: 0.02}, {Params: 4, Loss: 0.30}},
	}
	a, err := compute.AssignBudget(layers, 100)
	if err != nil {
		panic(err)
	}
	fmt.Printf("choice %v: %d params, loss %.2f, met %v\n", a.Choice, a.Params, a.Loss, a.Met)
	// The dual: the fewest parameters within a loss increase of 0.05.
	b, _ := compute.AssignTolerance(layers, 0.05)
	fmt.Printf("choice %v: %d params, loss %.2f, met %v\n", b.Choice, b.Params, b.Loss, b.Met)
	// Output:
	// choice [1 2 0]: 80 params, loss 0.07, met true
	// choice [1 0 1]: 116 params, loss 0.03, met true
}
