package stages

import (
	"fmt"
	"strings"

	"github.com/strata-ml/strata/arrowio/onnx/onnxpb"
	"github.com/strata-ml/strata/compute"
	"github.com/strata-ml/strata/lowering"
)

// InspectONNX describes an ONNX model: what it imports, what it takes and
// gives, the linear maps convert would decompose and the weights it would
// keep dense, and for a structured model (one convert wrote) the
// structure it records.
type InspectONNX struct {
	IRVersion int64          `json:"ir_version"`
	Opsets    []InspectOpset `json:"opsets"`
	Producer  string         `json:"producer,omitempty"`
	Inputs    []InspectValue `json:"inputs"`
	Outputs   []InspectValue `json:"outputs"`
	Nodes     int            `json:"nodes"`
	// Linears are the Gemm, MatMul and Conv nodes whose weight convert can
	// decompose, in graph order (after naming unnamed nodes as convert
	// does); in a structured model, those outside its lowered subgraphs.
	Linears []InspectLinear `json:"linears"`
	// Skipped are the weights of such nodes that convert keeps dense, with
	// the reason.
	Skipped []SkippedWeight `json:"skipped"`
	// Structure is the record of a structured model (lowering.MetadataKey),
	// nil for any other model.
	Structure *lowering.Structure `json:"structure,omitempty"`
}

// InspectOpset is one imported operator set ("" is the default domain).
type InspectOpset struct {
	Domain  string `json:"domain"`
	Version int64  `json:"version"`
}

// InspectValue is a graph input or output: its element type and shape
// ("batch" or "?" for a dynamic dimension).
type InspectValue struct {
	Name  string   `json:"name"`
	Type  string   `json:"type"`
	Shape []string `json:"shape"`
}

// InspectLinear is one linear map of an ONNX graph: its node, its weight
// initializer with the layout it is stored in, W's shape out x in (a
// convolution's in is its channels times its kernel), and its bias.
type InspectLinear struct {
	Node   string  `json:"node"`
	Op     string  `json:"op"`
	Layer  string  `json:"layer"`
	Weight string  `json:"weight"`
	Layout string  `json:"layout"`
	Shape  [2]int  `json:"shape"`
	Kernel []int64 `json:"kernel,omitempty"`
	// Pointwise is false for a convolution only the low-rank family
	// factors (see ConvertConfig.ConvStructure).
	Pointwise bool   `json:"pointwise"`
	Bias      string `json:"bias,omitempty"`
	DType     string `json:"dtype"`
}

// inspectONNX is Inspect for an ONNX model.
func inspectONNX(path string) (*InspectResult, error) {
	m, _, input, err := readONNX(path)
	if err != nil {
		return nil, err
	}
	m.NameNodes()
	g := m.Proto.GetGraph()
	x := &InspectONNX{IRVersion: m.Proto.GetIrVersion(), Nodes: len(g.GetNode()),
		Producer: strings.TrimSpace(m.Proto.GetProducerName() + " " + m.Proto.GetProducerVersion())}
	for _, o := range m.Proto.GetOpsetImport() {
		x.Opsets = append(x.Opsets, InspectOpset{Domain: o.GetDomain(), Version: o.GetVersion()})
	}
	x.Inputs, x.Outputs = valueInfos(g.GetInput(), g.GetInitializer()), valueInfos(g.GetOutput(), nil)
	res := &InspectResult{Input: input, Format: FormatONNX, Kind: FormatONNX, ONNX: x}
	roles := map[string]compute.Role{}
	lowered := func(string) bool { return false }
	if lowering.HasStructure(m) {
		if x.Structure, err = lowering.ReadStructure(m); err != nil {
			return nil, classify(err)
		}
		ops, err := lowering.Operators(m)
		if err != nil {
			return nil, classify(err)
		}
		res.Kind = "structured onnx"
		for i, rec := range x.Structure.Layers {
			res.Layers = append(res.Layers, InspectLayer{Name: rec.Name, Kind: compute.KindLinear, In: rec.Spec.In, Out: rec.Spec.Out,
				Structure: &x.Structure.Layers[i].Spec, Params: compute.NumParams(ops[i].Op)})
			for _, p := range rec.Params {
				roles[p.Initializer] = compute.Role(strings.SplitN(p.Name, ".", 2)[0])
			}
			if rec.Bias != "" {
				roles[rec.Bias] = compute.RoleBias
			}
		}
		lowered = func(node string) bool {
			for _, rec := range x.Structure.Layers {
				if node == rec.Node || strings.HasPrefix(node, rec.Node+"/") {
					return true
				}
			}
			return false
		}
	}
	linears, skipped := m.Linears()
	for _, l := range linears {
		if lowered(l.Node) {
			continue
		}
		x.Linears = append(x.Linears, InspectLinear{Node: l.Node, Op: l.Op, Layer: lowering.DefaultName(l), Weight: l.Weight,
			Layout: l.Layout.String(), Shape: [2]int{l.Out, l.In}, Kernel: l.Kernel, Pointwise: l.Pointwise, Bias: l.Bias, DType: l.DType.String()})
		res.Layers = append(res.Layers, InspectLayer{Name: lowering.DefaultName(l), Kind: compute.KindLinear, In: l.In, Out: l.Out, Params: l.In * l.Out})
		roles[l.Weight] = compute.RoleWeight
		if l.Bias != "" {
			roles[l.Bias] = compute.RoleBias
		}
	}
	for _, s := range skipped {
		if !lowered(s.Node) {
			x.Skipped = append(x.Skipped, SkippedWeight{Tensor: s.Weight, Node: s.Node, Op: s.Op, Code: SkipGraph, Reason: s.Reason})
		}
	}
	for _, t := range g.GetInitializer() {
		it := InspectTensor{Name: t.GetName(), Role: roles[t.GetName()], Shape: append([]int64{}, t.GetDims()...),
			DType: onnxpb.TensorProto_DataType(t.GetDataType()).String()}
		if it.Role == "" {
			it.Role = "initializer"
		}
		it.Numel = 1
		for _, d := range it.Shape {
			it.Numel *= d
		}
		res.Tensors = append(res.Tensors, it)
		res.Params += it.Numel
	}
	return res, nil
}

// valueInfos describes graph inputs or outputs, leaving out the inputs
// that only give an initializer its default.
func valueInfos(vis []*onnxpb.ValueInfoProto, inits []*onnxpb.TensorProto) []InspectValue {
	isInit := map[string]bool{}
	for _, t := range inits {
		isInit[t.GetName()] = true
	}
	var out []InspectValue
	for _, vi := range vis {
		if isInit[vi.GetName()] {
			continue
		}
		v := InspectValue{Name: vi.GetName(), Type: "?"}
		if tt := vi.GetType().GetTensorType(); tt != nil {
			v.Type = onnxpb.TensorProto_DataType(tt.GetElemType()).String()
			for _, d := range tt.GetShape().GetDim() {
				switch d.GetValue().(type) {
				case *onnxpb.TensorShapeProto_Dimension_DimParam:
					v.Shape = append(v.Shape, d.GetDimParam())
				case *onnxpb.TensorShapeProto_Dimension_DimValue:
					v.Shape = append(v.Shape, fmt.Sprint(d.GetDimValue()))
				default:
					v.Shape = append(v.Shape, "?")
				}
			}
		}
		out = append(out, v)
	}
	return out
}
