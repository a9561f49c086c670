package lowering

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/strata-ml/strata/arrowio/onnx"
	"github.com/strata-ml/strata/arrowio/onnx/onnxpb"
)

// Materialize returns a copy of m, the model the layers were converted
// from, in which each layer's weight initializer holds S + R made dense
// instead of W, in the weight's own name, shape and orientation: [out, in]
// or [in, out] as stored (transposed back through a Gemm's transB=0, a
// MatMul, or a Transpose before the node), [out, C, k...] for a Conv, and
// divided by the Gemm's alpha, which the node applies again. Nothing else
// changes. m is not changed; errors wrap ErrLayer or ErrUnsupported (a
// Gemm whose alpha is 0).
//
// This is the dense twin of Lower's output: the same map, at the dense
// layer's cost, for runtimes or comparisons that want the original graph.
func Materialize(m *onnx.Model, layers []Layer) (*onnx.Model, error) {
	out := &onnx.Model{Proto: proto.Clone(m.Proto).(*onnxpb.ModelProto), File: m.File}
	linears, err := pick(out, layers)
	if err != nil {
		return nil, err
	}
	for i, layer := range layers {
		l := linears[i]
		if l.Alpha == 0 {
			return nil, fmt.Errorf("%w: layer %q (node %q): Gemm alpha is 0: no weight reproduces S + R", ErrUnsupported, layer.Name, layer.Node)
		}
		w := make([]float64, l.Out*l.In)
		layer.Op.DenseTo(w)
		stored := make([]float64, len(w))
		for r := range l.Out {
			for c := range l.In {
				v := w[r*l.In+c] / l.Alpha
				if l.Layout == onnx.InOut {
					stored[c*l.Out+r] = v
				} else {
					stored[r*l.In+c] = v
				}
			}
		}
		inits := out.Proto.GetGraph().GetInitializer()
		for k, t := range inits {
			if t.GetName() == l.Weight {
				inits[k] = onnx.Float32Tensor(l.Weight, t.Dims, stored)
			}
		}
	}
	return out, nil
}
