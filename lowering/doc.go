// Package lowering writes strata's structured layers into ONNX graphs and
// reads them back: the structured model a pipeline serves.
//
// Lower replaces the Gemm, MatMul or Conv node of every converted weight
// (an onnx.Linear) by a subgraph of standard ONNX ops that computes
// y = x (S + R)^T, plus the node's bias, as the layer's compute.Operator
// computes it: the same parameters in the same layouts and the same stages
// in the same order, so ONNX Runtime's float32 output agrees with
// compute's float32 Apply to float32 rounding (1e-5 relative, tested for
// every family, residual and node kind). Every parameter is an
// initializer named as in strata's model files, "<layer>.trunk.<param>"
// and "<layer>.correction.<param>", holding the compute.Param's values in
// its shape (a sparse operator's rows and cols as INT64): ops the
// runtime folds into constants when it loads the model (Transpose,
// Reshape, Slice, Concat, Mul of initializers) rearrange them where an op
// wants another layout, so the model holds exactly the operator's
// parameters. The record under MetadataKey in metadata_props (a JSON
// Structure) names, per layer, the replaced node, the compute.Spec and the
// initializer of each parameter; Operators rebuilds the operators from it.
// Materialize writes the dense twin: the original graph with each weight
// overwritten by S + R made dense.
//
// # Families
//
// For an input x of n rows of in features (see Views), out x in layers:
//
//	lowrank     x V, then times U^T: two MatMuls (a Gemm for the second)
//	orthogonal  x (s Q)^T: one Gemm or MatMul by Q times the scale
//	monarch     b MatMuls by the blocks R_k of x's column chunks, a
//	            Transpose (the Monarch permutation), b MatMuls by L_j^T, a
//	            Transpose back to the strided output order
//	blockdiag   b MatMuls by D_j^T of x's column chunks, a Concat
//	kronecker   rows as n1 x n2 matrices: one MatMul by [B_i]^T, a
//	            Transpose, one MatMul by [A_0 ... A_{r-1}], a Transpose
//	circulant,  the first out entries of IDFT(DFT(kernel) DFT(x)) with a
//	toeplitz    power-of-two DFT length (see ConvolutionForm)
//	sparse      a correction only: Gather x's columns cols, times values,
//	            ScatterElements(reduction add) into the trunk's output at
//	            rows
//
// The blocks of monarch and blockdiag are sliced from the 3-D parameters
// in the graph: ONNX Runtime packs a constant 2-D MatMul operand once at
// load, and repacks a batched 3-D one on every run. Families that pad
// (monarch, blockdiag, kronecker when b or the factor shape does not
// divide) Pad the input with zeros and Slice the output, as compute does.
// A lowrank correction is added by the Gemm of its second product (C = the
// trunk's output); a lowrank correction of a lowrank trunk is folded into
// the same pair, [U1 U2] [V1 V2]^T; a sparse one is scattered into the
// trunk's output. A Zero correction adds nothing.
//
// # Views
//
// Gemm: its 2-D input. MatMul: the last axis of an input of any rank;
// lowrank, orthogonal and sparse act on it as it is, the other families
// reshape it to [-1, in] and the output back to the input's leading shape
// (read at run time). Conv with a 1x1 kernel (stride 1, no padding): the
// channel axis; lowrank is a 1x1 Conv to rank r then a 1x1 Conv, orthogonal
// one 1x1 Conv, sparse a Gather and ScatterElements on axis 1, and the
// other families run on the channels-last pixels (Transpose, reshape, and
// back). Conv with a k x k kernel: lowrank only (and orthogonal), as a
// k x k Conv with the node's strides, pads, dilations and auto_pad to rank
// r followed by a 1x1 Conv carrying the bias; a sparse correction of a
// k x k Conv is scattered into a dense kernel (folded at load: correct, but
// at the dense conv's cost). The last node of each subgraph takes the
// replaced node's name and writes its output, so the rest of the graph is
// untouched; a MatMul's bias Add stays its own node.
//
// # Opsets
//
// The model's default-domain opset is kept when it is enough (every form
// above is opset 13 except): a sparse correction needs 16 (ScatterElements
// with reduction) and the DFT form 17 (DFT). Lower then raises the import,
// and ir_version to 8, unless the graph holds an op whose meaning changed
// in between (RoiAlign at 16), which is refused.
package lowering
