// Package onnx reads, checks and edits ONNX models: the format layer under
// strata's ONNX path (ONNX in, structured ONNX out).
//
// Read and Decode return a *Model wrapping the decoded onnxpb.ModelProto
// after Validate has checked what strata relies on: default-domain opset 13
// or later, every tensor stored in the file with as many values as its dims
// say, every value defined once and before it is read (no cycles), and the
// shapes Gemm, MatMul and Conv need agreeing with their weights and known
// inputs. Encode writes it back deterministically: an untouched model
// encodes to the bytes python's onnx.save wrote.
//
// Linears finds the linear maps strata converts, each with its weight W as
// float64 out x in whatever the stored layout (Gemm's transB, MatMul's
// [in, out], a Transpose before the MatMul, a Conv's [out, in, kh, kw]),
// and lists the weights it cannot convert with the reason. ReplaceNode
// swaps one node for a subgraph and keeps the graph valid; NewName,
// NameNodes, SetOpset, NewNode, the attribute helpers and Float32Tensor and
// Int64Tensor build what a replacement needs. Tensors that are not converted
// weights (int64 buffers, bool masks, float16 constants, ...) are never
// decoded or rewritten: they keep their bytes.
//
// # Errors
//
// A problem with a model is an *arrowio.FormatError: File is the name given
// to Read or Decode; Kind is "node", "tensor", "input", "output",
// "opset_import" or "graph" and Field the node (its name, or "#i Op" for an
// unnamed node i; "If_1/then_branch/Add" inside a subgraph), tensor or
// domain at fault, empty when the problem is file-wide. Err wraps
// arrowio.ErrFormat (corrupt or invalid) or arrowio.ErrUnsupported (valid
// ONNX that strata does not read: opsets before 13, external data,
// segmented tensors, more than the size bounds). For example:
//
//	model.onnx: node "fc": Gemm: B "fc.weight" has shape [3 5], read as [out, in] (transB=1): it takes 5 inputs, but A "x" has shape [2 4]: 4 features (transA=0)
//
// No input makes Decode panic, and memory stays bounded by the size bounds
// (WithMaxBytes, WithMaxElements): FuzzDecode fuzzes it.
//
// The format is described in docs/FORMATS.md at the repository root.
package onnx
