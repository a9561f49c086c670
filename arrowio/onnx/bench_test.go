package onnx

import (
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/strata-ml/strata/arrowio/onnx/onnxpb"
)

// bigModel encodes an MLP of layers Gemm(transB=1) + Relu of width x width
// float32 weights: 4 width^2 bytes each.
func bigModel(b *testing.B, layers, width int) []byte {
	b.Helper()
	vi := func(name string) *onnxpb.ValueInfoProto {
		return &onnxpb.ValueInfoProto{Name: proto.String(name), Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
			TensorType: &onnxpb.TypeProto_Tensor{ElemType: proto.Int32(int32(Float)), Shape: &onnxpb.TensorShapeProto{
				Dim: []*onnxpb.TensorShapeProto_Dimension{{Value: &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: "batch"}},
					{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: int64(width)}}}}}}}}
	}
	g := &onnxpb.GraphProto{Name: proto.String("mlp"), Input: []*onnxpb.ValueInfoProto{vi("x")}}
	in := "x"
	w := make([]float64, width*width)
	for i := range w {
		w[i] = float64(i%7) / 7
	}
	for l := range layers {
		wn, h, out := fmt.Sprintf("fc%d.weight", l), fmt.Sprintf("h%d", l), fmt.Sprintf("r%d", l)
		g.Initializer = append(g.Initializer, Float32Tensor(wn, []int64{int64(width), int64(width)}, w))
		g.Node = append(g.Node, NewNode("Gemm", fmt.Sprintf("fc%d", l), []string{in, wn}, []string{h}, IntAttr("transB", 1)),
			NewNode("Relu", fmt.Sprintf("act%d", l), []string{h}, []string{out}))
		in = out
	}
	g.Output = []*onnxpb.ValueInfoProto{vi(in)}
	m := &onnxpb.ModelProto{IrVersion: proto.Int64(7), Graph: g,
		OpsetImport: []*onnxpb.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(13)}}}
	data, err := proto.Marshal(m)
	if err != nil {
		b.Fatal(err)
	}
	return data
}

// BenchmarkDecode decodes and validates a 32 MiB model (8 Gemm layers of
// 1024 x 1024 float32), beside proto.Unmarshal alone (the floor) and
// Linears (which decodes every weight to float64).
func BenchmarkDecode(b *testing.B) {
	data := bigModel(b, 8, 1024)
	b.Run("unmarshal", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			if err := proto.Unmarshal(data, &onnxpb.ModelProto{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			if _, err := Decode(data, "big.onnx"); err != nil {
				b.Fatal(err)
			}
		}
	})
	m, err := Decode(data, "big.onnx")
	if err != nil {
		b.Fatal(err)
	}
	b.Run("linears", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			if ls, _ := m.Linears(); len(ls) != 8 {
				b.Fatalf("%d linears", len(ls))
			}
		}
	})
	b.Run("encode", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			if _, err := m.Encode(); err != nil {
				b.Fatal(err)
			}
		}
	})
}
