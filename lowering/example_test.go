package lowering_test

import (
	"fmt"

	"gonum.org/v1/gonum/mat"

	"github.com/strata-ml/strata/arrowio/onnx"
	"github.com/strata-ml/strata/compute"
	"github.com/strata-ml/strata/lowering"
)

// Lower a Gemm to a rank-1 trunk plus a rank-1 residual, then read the
// operator back from the structured model alone. The two pairs fold into
// one; the node's beta (2) is folded into a new bias, "fc.bias_1".
func ExampleLower() {
	m, err := onnx.Read("../arrowio/onnx/testdata/gemm_transb1.onnx")
	if err != nil {
		fmt.Println(err)
		return
	}
	linears, _ := m.Linears()
	l := linears[0]
	sum, err := compute.Decompose(mat.NewDense(l.Out, l.In, l.W), compute.Spec{Family: compute.FamilyLowRank, Rank: 1},
		compute.Residual{Kind: "lowrank", Rank: 1}, 1)
	if err != nil {
		fmt.Println(err)
		return
	}
	layers := []lowering.Layer{{Name: lowering.DefaultName(l), Node: l.Node, Op: compute.Convert[float32, float64](sum)}}
	s, err := lowering.Lower(m, layers)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, n := range s.Proto.GetGraph().GetNode() {
		fmt.Println(n.GetOpType(), n.GetName(), n.GetInput(), "->", n.GetOutput())
	}
	back, err := lowering.Operators(s)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(back[0].Name, back[0].Node, back[0].Op.Spec())
	// Output:
	// Concat fc/Concat [fc.trunk.U fc.correction.U] -> [fc/Concat_out]
	// Concat fc/Concat_1 [fc.trunk.V fc.correction.V] -> [fc/Concat_out_1]
	// MatMul fc/MatMul [x fc/Concat_out_1] -> [fc/MatMul_out]
	// Gemm fc [fc/MatMul_out fc/Concat_out fc.bias_1] -> [y]
	// fc fc lowrank r=1 + lowrank r=1
}
