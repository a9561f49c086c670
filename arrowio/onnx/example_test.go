package onnx_test

import (
	"fmt"

	"github.com/strata-ml/strata/arrowio/onnx"
)

// Read a model and list its linear maps: the MatMul's weight is stored
// [in, out] behind a Transpose, yet W is out x in.
func ExampleModel_Linears() {
	m, err := onnx.Read("testdata/matmul_transposed.onnx")
	if err != nil {
		fmt.Println(err)
		return
	}
	linears, skipped := m.Linears()
	for _, l := range linears {
		fmt.Printf("%s %s: W %d x %d from %q (%s, via %v), W[0][0] = %.4f\n",
			l.Op, l.Node, l.Out, l.In, l.Weight, l.Layout, l.Via, l.W[0])
	}
	fmt.Println(len(skipped), "skipped")
	// Output:
	// MatMul a: W 5 x 4 from "a.wt" (out-in, via [a_t a_id]), W[0][0] = 0.0877
	// MatMul b: W 3 x 5 from "b.wt" (out-in, via [b_t]), W[0][0] = 0.7353
	// 0 skipped
}

// Malformed models fail with an error that names the file, the node and
// what was expected.
func ExampleRead_error() {
	_, err := onnx.Read("testdata/malformed/missing_initializer.onnx")
	fmt.Println(err)
	// Output:
	// testdata/malformed/missing_initializer.onnx: node "fc": input "fc.weight" is not a graph input, an initializer or the output of any node (a missing initializer?)
}
