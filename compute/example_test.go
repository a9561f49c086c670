package compute_test

import (
	"fmt"
	"log"
	"math"

	"gonum.org/v1/gonum/mat"

	"github.com/strata-ml/strata/compute"
)

// A 6 x 4 matrix that is block-diagonal with two 3 x 2 blocks lies in the
// blockdiag family: its projection recovers it exactly, with 12 of the 24
// parameters.
func ExampleProject() {
	w := mat.NewDense(6, 4, []float64{
		1, 2, 0, 0,
		3, 4, 0, 0,
		5, 6, 0, 0,
		0, 0, 7, 8,
		0, 0, 9, 10,
		0, 0, 11, 12,
	})
	op, err := compute.Project(w, compute.Spec{Family: compute.FamilyBlockDiag, Blocks: 2}, 1)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(op.Spec(), "params", compute.NumParams(op))
	fmt.Println("recovered:", compute.RelativeError(w, compute.Dense(op)) < 1e-12)
	// Output:
	// blockdiag b=2 params 12
	// recovered: true
}

// W = S + R with S block-diagonal and R off the diagonal blocks, the two
// off-diagonal blocks of an outer product u v^T (rank 2): the trunk keeps
// the diagonal blocks, and the rank-2 correction fitted to W - S (its
// truncated SVD, Eckart-Young) recovers the rest exactly.
func ExampleDecompose() {
	s := []float64{
		1, 2, 0, 0,
		3, 4, 0, 0,
		0, 0, 5, 6,
		0, 0, 7, 8,
	}
	u, v := []float64{1, -1, 2, 0.5}, []float64{0.5, 1, -1, 2}
	w := mat.NewDense(4, 4, nil)
	for i := range 4 {
		for j := range 4 {
			r := u[i] * v[j]
			if i/2 == j/2 {
				r = 0 // the blocks are S's; R lives off them
			}
			w.Set(i, j, s[4*i+j]+r)
		}
	}
	sum, err := compute.Decompose(w, compute.Spec{Family: compute.FamilyBlockDiag, Blocks: 2},
		compute.Residual{Kind: compute.ResidualLowRank, Rank: 2}, 1)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(sum.Spec())
	fmt.Println("recovered:", compute.RelativeError(w, compute.Dense[float64](sum)) < 1e-12)
	// Output:
	// blockdiag b=2 + lowrank r=2
	// recovered: true
}

// Auto chooses the structure with the fewest parameters that meets a
// target error: for a 32 x 32 matrix of rank 2, a rank-1 low-rank trunk
// with a rank-1 correction (128 parameters instead of 1024; the first of
// the candidates with that count, in increasing trunk size).
func ExampleAuto() {
	n := 32
	w := mat.NewDense(n, n, nil)
	for i := range n {
		for j := range n {
			w.Set(i, j, math.Sin(float64(i+1))*math.Cos(float64(j))+float64(i%3)*float64(j%5)/4)
		}
	}
	sum, res, err := compute.Auto(w, compute.AutoConfig{TargetError: 1e-8}, 1)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Chosen.Trunk.Family, "rank", res.Chosen.Trunk.Rank, "+ residual rank", res.Chosen.ResidualRank)
	fmt.Println("params", compute.NumParams[float64](sum), "met", res.Met)
	// Output:
	// lowrank rank 1 + residual rank 1
	// params 128 met true
}
