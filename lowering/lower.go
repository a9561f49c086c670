package lowering

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"google.golang.org/protobuf/proto"

	"github.com/strata-ml/strata/arrowio/onnx"
	"github.com/strata-ml/strata/arrowio/onnx/onnxpb"
	"github.com/strata-ml/strata/compute"
)

// Errors of Lower and Materialize, wrapped with the layer and node at
// fault; test with errors.Is.
var (
	// ErrLayer: a Layer does not fit the model: no convertible linear node
	// of that name, an operator whose shape is not the weight's, a name
	// used twice.
	ErrLayer = errors.New("lowering: layer does not fit the model")
	// ErrUnsupported: valid input that lowering does not write: a family
	// other than lowrank or orthogonal (or a sparse correction) for a k x k
	// Conv, a weight that is not FLOAT, an opset that cannot be raised.
	ErrUnsupported = errors.New("lowering: unsupported")
)

// Layer is one converted weight: the linear node it belongs to and its
// operator W ~ S + R.
type Layer struct {
	// Name is the layer's name, the prefix of its new initializers
	// ("<Name>.trunk.L", "<Name>.correction.U"), as in strata's model
	// files. DefaultName gives the usual one.
	Name string
	// Node is the Gemm, MatMul or Conv node (onnx.Linear.Node).
	Node string
	// Op is the operator, out x in as onnx.Linear reports W: Gemm's alpha
	// folded in, a Conv's in = channels x kernel. A *compute.Sum is lowered
	// part by part (a Zero correction adds nothing); any other operator is
	// lowered whole, its initializers then named "<Name>.<param>".
	Op compute.Operator[float32]
}

// DefaultName is the layer name strata gives the weight of l: the weight
// initializer's name less a trailing ".weight" ("fc1.weight" -> "fc1"), or
// the node's name when the weight has no such name.
func DefaultName(l onnx.Linear) string {
	if name, ok := cutSuffix(l.Weight, ".weight"); ok && name != "" {
		return name
	}
	return l.Node
}

func cutSuffix(s, suffix string) (string, bool) {
	if len(s) >= len(suffix) && s[len(s)-len(suffix):] == suffix {
		return s[:len(s)-len(suffix)], true
	}
	return s, false
}

// Option configures Lower.
type Option func(*config)

type config struct {
	form ConvolutionForm
}

// WithConvolutionForm chooses how circulant and Toeplitz layers are written
// (default DFT; see ConvolutionForm for the measured costs).
func WithConvolutionForm(f ConvolutionForm) Option { return func(c *config) { c.form = f } }

// MetadataKey is the key of the model's metadata_props entry in which Lower
// records the structure (a JSON Structure) that Operators reads back.
const MetadataKey = "strata.structure"

// FormatVersion is the version of the Structure record Lower writes.
const FormatVersion = 1

// Structure is the record of a structured model: every lowered layer, in
// the order of Lower's layers.
type Structure struct {
	FormatVersion int           `json:"format_version"`
	Layers        []LayerRecord `json:"layers"`
}

// LayerRecord describes one lowered layer.
type LayerRecord struct {
	Name string `json:"name"` // Layer.Name
	// Node is the replaced node's name, now borne by the last node of its
	// subgraph, which writes the replaced node's output.
	Node string `json:"node"`
	// Op is the replaced node's type: "Gemm", "MatMul" or "Conv".
	Op   string       `json:"op"`
	Spec compute.Spec `json:"spec"` // the operator's; compute.New rebuilds it
	// Params maps each of the operator's parameters, in Params order, to
	// the initializer holding it with the parameter's shape: FLOAT, or
	// INT64 for a sparse operator's rows and cols.
	Params []ParamRecord `json:"params"`
	// Weight, WeightShape and Layout are the replaced weight initializer
	// as it was (it is gone from the structured model); Alpha is the
	// replaced Gemm's alpha, folded into the operator; Kernel a Conv's
	// kernel. With them the dense weight can be written back.
	Weight      string  `json:"weight"`
	WeightShape []int64 `json:"weight_shape"`
	Layout      string  `json:"layout"`
	Alpha       float64 `json:"alpha"`
	Kernel      []int64 `json:"kernel,omitempty"`
	// Bias is the initializer the subgraph adds as the bias ("" if none; a
	// MatMul's bias stays in its own Add node). A Gemm whose beta is not 1
	// gets a new one, "<Name>.bias", holding beta C.
	Bias string `json:"bias,omitempty"`
}

// ParamRecord names the initializer of one parameter.
type ParamRecord struct {
	Name        string `json:"name"`        // the operator's parameter name, e.g. "trunk.L"
	Initializer string `json:"initializer"` // e.g. "fc1.trunk.L"
}

// Lower returns a copy of m in which the node of every layer is replaced by
// a subgraph computing y = x (S + R)^T (+ bias) as the layer's operator
// does (see the package documentation for each family's form), with the
// structure recorded under MetadataKey. m is not changed.
//
// The default-domain opset is raised only when an op needs it: to 16 for a
// sparse correction (ScatterElements with reduction), to 17 for the DFT
// form of circulant and Toeplitz layers; ir_version is raised to 8 with
// it. Errors wrap ErrLayer or ErrUnsupported (or the replacement's
// onnx.ErrReplace) and name the layer and node; nothing is returned then.
func Lower(m *onnx.Model, layers []Layer, opts ...Option) (*onnx.Model, error) {
	cfg := config{form: DFT}
	for _, o := range opts {
		o(&cfg)
	}
	out := &onnx.Model{Proto: proto.Clone(m.Proto).(*onnxpb.ModelProto), File: m.File}
	if metadata(out.Proto, MetadataKey) != nil {
		return nil, fmt.Errorf("%w: %s already holds a lowered structure (%s)", ErrUnsupported, m.File, MetadataKey)
	}
	linears, err := pick(out, layers)
	if err != nil {
		return nil, err
	}
	st := Structure{FormatVersion: FormatVersion}
	opset := out.Opset("")
	for i, layer := range layers {
		rec, need, err := lowerLayer(out, linears[i], layer, cfg)
		if err != nil {
			return nil, fmt.Errorf("layer %q (node %q): %w", layer.Name, layer.Node, err)
		}
		st.Layers = append(st.Layers, rec)
		opset = max(opset, need)
	}
	if err := raiseOpset(out, opset); err != nil {
		return nil, err
	}
	raw, err := json.Marshal(st)
	if err != nil {
		return nil, err
	}
	out.Proto.MetadataProps = append(out.Proto.MetadataProps,
		&onnxpb.StringStringEntryProto{Key: proto.String(MetadataKey), Value: proto.String(string(raw))})
	return out, nil
}

// pick finds the linear of each layer, checking names and shapes.
func pick(m *onnx.Model, layers []Layer) ([]onnx.Linear, error) {
	linears, skipped := m.Linears()
	byNode := map[string]int{}
	for i, l := range linears {
		byNode[l.Node] = i
	}
	seenNode, seenName := map[string]bool{}, map[string]bool{}
	var out []onnx.Linear
	for _, layer := range layers {
		fail := func(format string, args ...any) error {
			return fmt.Errorf("%w: layer %q (node %q): %s", ErrLayer, layer.Name, layer.Node, fmt.Sprintf(format, args...))
		}
		i, ok := byNode[layer.Node]
		switch {
		case layer.Name == "" || seenName[layer.Name]:
			return nil, fail("a layer needs a name of its own")
		case seenNode[layer.Node]:
			return nil, fail("two layers name this node")
		case layer.Op == nil:
			return nil, fail("no operator")
		case !ok:
			for _, s := range skipped {
				if s.Node == layer.Node {
					return nil, fail("not convertible: %s", s.Reason)
				}
			}
			return nil, fail("no Gemm, MatMul or Conv node of this name has a weight")
		}
		seenNode[layer.Node], seenName[layer.Name] = true, true
		l := linears[i]
		if o, in := layer.Op.Shape(); o != l.Out || in != l.In {
			return nil, fail("the operator is %dx%d, the weight %q is %dx%d (out x in)", o, in, l.Weight, l.Out, l.In)
		}
		if l.DType != onnx.Float {
			return nil, fmt.Errorf("%w: layer %q (node %q): the weight %q is %s: only FLOAT weights are lowered",
				ErrUnsupported, layer.Name, layer.Node, l.Weight, l.DType)
		}
		out = append(out, l)
	}
	return out, nil
}

// parts splits op into the parts lowered one by one.
func parts(op compute.Operator[float32]) (trunk part, corr *part) {
	s, ok := op.(*compute.Sum[float32])
	if !ok {
		return part{op: op}, nil
	}
	trunk = part{name: "trunk", op: s.Trunk()}
	if c := s.Correction(); c.Spec().Family != compute.FamilyZero {
		corr = &part{name: "correction", op: c}
	}
	return trunk, corr
}

// lowerLayer replaces l's node by the subgraph of layer and returns its
// record and the opset it needs.
func lowerLayer(m *onnx.Model, l onnx.Linear, layer Layer, cfg config) (LayerRecord, int64, error) {
	trunk, corr := parts(layer.Op)
	families, err := checkFamilies(trunk, corr)
	if err != nil {
		return LayerRecord{}, 0, err
	}
	node := findNode(m, l.Node)
	weightShape := slices.Clone(findInit(m, l.Weight).Dims)
	lw := &lowering{builder: newBuilder(m, l.Node, layer.Name), linear: &l, node: node, form: cfg.form}
	native := map[string]view{"Gemm": flat, "MatMul": last, "Conv": channels}[l.Op]
	if l.Op == "MatMul" && rankOf(m, node.Input[0]) == 2 {
		native = flat
	}
	lw.v = native
	for _, f := range families {
		if !lowersIn(f, native) {
			lw.v = flat
		}
	}
	if lw.v == flat && native == channels && !l.Pointwise {
		return LayerRecord{}, 0, fmt.Errorf("%w: a %dx%d-kernel Conv is factored by the lowrank and orthogonal families only (with a lowrank or sparse correction), not %s",
			ErrUnsupported, l.Kernel[0], l.Kernel[len(l.Kernel)-1], layer.Op.Spec())
	}
	bias, err := lw.bias(l, node)
	if err != nil {
		return LayerRecord{}, 0, err
	}
	x := node.Input[0]
	var restore func(string) string
	if lw.v == flat && native != flat {
		x, restore = lw.flatten(x, native, l)
	}
	y, added := lw.sum(x, trunk, corr, bias)
	if bias != "" && !added {
		y = lw.add(y, bias)
	}
	if restore != nil {
		y = restore(y)
	}
	lw.finish(y, node)
	if err := m.ReplaceNode(l.Node, lw.nodes, lw.inits); err != nil {
		return LayerRecord{}, 0, err
	}
	rec := LayerRecord{Name: layer.Name, Node: l.Node, Op: l.Op, Spec: layer.Op.Spec(), Weight: l.Weight,
		WeightShape: weightShape, Layout: l.Layout.String(), Alpha: l.Alpha, Kernel: l.Kernel, Bias: bias}
	for _, p := range layer.Op.Params() {
		rec.Params = append(rec.Params, ParamRecord{Name: p.Name, Initializer: lw.params[p.Name]})
	}
	return rec, lw.opset, nil
}

// trunkFamilies and corrections are the families lowered as a trunk (or a
// bare operator) and as a correction.
var (
	trunkFamilies = []string{compute.FamilyLowRank, compute.FamilyOrthogonal, compute.FamilyMonarch,
		compute.FamilyBlockDiag, compute.FamilyKronecker, compute.FamilyCirculant, compute.FamilyToeplitz}
	corrections = append([]string{compute.FamilySparse}, trunkFamilies...)
)

// checkFamilies returns the parts' families, or why one is not lowered.
func checkFamilies(trunk part, corr *part) ([]string, error) {
	families := []string{trunk.op.Spec().Family}
	if !slices.Contains(trunkFamilies, families[0]) {
		return nil, fmt.Errorf("%w: family %q is not lowered as a structured trunk (want one of %v)", ErrUnsupported, families[0], trunkFamilies)
	}
	if corr != nil {
		f := corr.op.Spec().Family
		if !slices.Contains(corrections, f) {
			return nil, fmt.Errorf("%w: family %q is not lowered as a correction", ErrUnsupported, f)
		}
		families = append(families, f)
	}
	return families, nil
}

// sum lowers y = trunk(x) + correction(x) in the lowering's view. The
// trunk's last node adds the bias when it is a Gemm or Conv (lowrank and
// orthogonal trunks, outside the last view); sum reports whether it did.
func (lw *lowering) sum(x string, trunk part, corr *part, bias string) (string, bool) {
	tf := trunk.op.Spec().Family
	if lw.v == last || (tf != compute.FamilyLowRank && tf != compute.FamilyOrthogonal) {
		bias = ""
	}
	if tf == compute.FamilyLowRank && corr != nil && corr.op.Spec().Family == compute.FamilyLowRank {
		// U1 V1^T + U2 V2^T = [U1 U2] [V1 V2]^T: one pair of twice the rank
		// (the Concats of initializers fold into constants at load).
		out, _ := trunk.op.Shape()
		u := lw.concat(1, lw.weight(trunk.name, trunk.param("U")), lw.weight(corr.name, corr.param("U")))
		v := lw.concat(1, lw.weight(trunk.name, trunk.param("V")), lw.weight(corr.name, corr.param("V")))
		return lw.lowRank(x, u, v, out, trunk.op.Spec().Rank+corr.op.Spec().Rank, bias), bias != ""
	}
	y := lw.part(x, trunk, bias)
	switch {
	case corr == nil:
	case corr.op.Spec().Family == compute.FamilySparse:
		y = lw.sparse(x, y, *corr)
	case lw.v == flat && corr.op.Spec().Family == compute.FamilyLowRank:
		// Gemm adds the trunk's output as its C: one op fewer.
		t := lw.matmul(x, lw.weight(corr.name, corr.param("V")))
		y = lw.op("Gemm", []string{t, lw.weight(corr.name, corr.param("U")), y}, onnx.IntAttr("transB", 1))
	default:
		y = lw.add(y, lw.part(x, *corr, ""))
	}
	return y, bias != ""
}

// part lowers one part in the lowering's view.
func (lw *lowering) part(x string, p part, bias string) string {
	out, _ := p.op.Shape()
	switch p.op.Spec().Family {
	case compute.FamilyLowRank:
		return lw.lowRank(x, lw.weight(p.name, p.param("U")), lw.weight(p.name, p.param("V")), out, p.op.Spec().Rank, bias)
	case compute.FamilyOrthogonal:
		return lw.orthogonal(x, p, bias)
	case compute.FamilyMonarch:
		return lw.monarch(x, p)
	case compute.FamilyBlockDiag:
		return lw.blockDiag(x, p)
	case compute.FamilyKronecker:
		return lw.kronecker(x, p)
	case compute.FamilyCirculant, compute.FamilyToeplitz:
		return lw.convolution(x, p)
	}
	panic(fmt.Sprintf("lowering: no lowering for family %q", p.op.Spec().Family))
}

// bias returns the initializer the subgraph adds as the layer's bias: a
// Gemm's C (a new "<layer>.bias" holding beta C when beta is not 1) or a
// Conv's B; "" for a MatMul, whose bias Add stays.
func (lw *lowering) bias(l onnx.Linear, node *onnxpb.NodeProto) (string, error) {
	if l.Bias == "" || l.Op == "MatMul" {
		return "", nil
	}
	if l.Op == "Gemm" && l.Beta != 1 {
		name := lw.m.NewName(lw.layer + ".bias")
		lw.inits = append(lw.inits, onnx.Float32Tensor(name, []int64{int64(l.Out)}, l.B))
		return name, nil
	}
	return l.Bias, nil
}

// flatten reshapes the input x of a MatMul of unknown rank ([..., in]) or
// of a 1x1 Conv ([N, C, spatial...], made channels-last first) into a
// matrix [n, in], and returns it with the function that brings the flat
// output [n, out] back to the node's output shape.
func (lw *lowering) flatten(x string, native view, l onnx.Linear) (string, func(string) string) {
	rank := int64(2 + len(l.Kernel))
	if native == channels {
		perm := []int64{0}
		for a := int64(2); a < rank; a++ {
			perm = append(perm, a)
		}
		x = lw.transpose(x, append(perm, 1)...)
	}
	lead := lw.slice(lw.op("Shape", []string{x}), 0, 0, -1)
	restore := func(y string) string {
		y = lw.op("Reshape", []string{y, lw.concat(0, lead, lw.int64s(int64(l.Out)))})
		if native != channels {
			return y
		}
		perm := []int64{0, rank - 1}
		for a := int64(1); a < rank-1; a++ {
			perm = append(perm, a)
		}
		return lw.transpose(y, perm...)
	}
	return lw.reshape(x, -1, int64(l.In)), restore
}

// finish makes the node that computes y write the replaced node's output
// under its name, and bear the replaced node's name.
func (lw *lowering) finish(y string, node *onnxpb.NodeProto) {
	for _, n := range lw.nodes {
		if len(n.Output) == 1 && n.Output[0] == y {
			n.Output[0] = node.Output[0]
			n.Name = proto.String(node.GetName())
			return
		}
	}
	panic("lowering: the subgraph's output has no producer")
}

func findNode(m *onnx.Model, name string) *onnxpb.NodeProto {
	for _, n := range m.Proto.GetGraph().GetNode() {
		if n.GetName() == name {
			return n
		}
	}
	return nil
}

func findInit(m *onnx.Model, name string) *onnxpb.TensorProto {
	for _, t := range m.Proto.GetGraph().GetInitializer() {
		if t.GetName() == name {
			return t
		}
	}
	return nil
}

// rankOf returns the rank of value as the graph's inputs, value_info or
// outputs state it, or 0 when they do not.
func rankOf(m *onnx.Model, value string) int {
	g := m.Proto.GetGraph()
	for _, list := range [][]*onnxpb.ValueInfoProto{g.Input, g.ValueInfo, g.Output} {
		for _, vi := range list {
			if vi.GetName() == value {
				if s := vi.GetType().GetTensorType().GetShape(); s != nil {
					return len(s.Dim)
				}
			}
		}
	}
	return 0
}

// metadata returns the model's metadata_props entry key, or nil.
func metadata(p *onnxpb.ModelProto, key string) *onnxpb.StringStringEntryProto {
	for _, e := range p.MetadataProps {
		if e.GetKey() == key {
			return e
		}
	}
	return nil
}

// changedAt lists, by opset, the default-domain ops whose meaning for an
// inference model changed in that opset (type-only changes, new optional
// attributes whose default keeps the old meaning, and new ops are left
// out). Raising a model's opset past one of them is refused.
var changedAt = map[int64][]string{
	16: {"RoiAlign"}, // coordinate_transformation_mode added, defaulting to half_pixel
}

// raiseOpset makes m import the default domain at version v or later, and
// raises ir_version to 8 (the first that holds opsets 16 and 17) with it.
func raiseOpset(m *onnx.Model, v int64) error {
	cur := m.Opset("")
	if v <= cur {
		return nil
	}
	for at := cur + 1; at <= v; at++ {
		for _, n := range m.Proto.GetGraph().GetNode() {
			if slices.Contains(changedAt[at], n.GetOpType()) && n.GetDomain() == "" {
				return fmt.Errorf("%w: the lowered layers need opset %d (the model imports %d), but node %q (%s) changed meaning in opset %d",
					ErrUnsupported, v, cur, n.GetName(), n.GetOpType(), at)
			}
		}
	}
	m.SetOpset("", v)
	if m.Proto.GetIrVersion() < 8 {
		m.Proto.IrVersion = proto.Int64(8)
	}
	return nil
}
