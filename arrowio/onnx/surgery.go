package onnx

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"

	"google.golang.org/protobuf/proto"

	"github.com/strata-ml/strata/arrowio/onnx/onnxpb"
)

// ErrReplace is wrapped by every error of ReplaceNode: a replacement that
// would leave the graph invalid. The model is then unchanged.
var ErrReplace = errors.New("onnx: invalid replacement")

// ReplaceNode replaces the main-graph node called name by nodes (in
// data-flow order among themselves) and adds inits to the initializers.
//
// The new nodes take the old node's place, and the graph is then put back in
// topological order by a stable sort (nodes move only when a new node reads
// a value computed later). Every output of the old node that a node or the
// graph still reads must be an output of a new node: keeping the old output
// names keeps the rest of the graph as it is. A new node may take the old
// node's name; new value and node names must otherwise be new (NewName gives
// such names). An initializer of inits may take the name of an initializer
// that only the old node read, and then replaces it in place.
//
// Afterwards every node that only fed the old node and that nothing reads any
// more (the Identity and Transpose of Linear.Via) is removed, then every
// initializer that the old or the removed nodes read and nothing reads now
// (unless it is a graph input or output), and the value_info of values that
// no longer exist. Nothing else changes: other nodes, initializers and
// tensors keep their bytes and their order. The result is validated; on any
// error the model is left as it was, and the error wraps ErrReplace (and the
// validation's *arrowio.FormatError, if that is what failed). The model takes
// ownership of nodes and inits.
func (m *Model) ReplaceNode(name string, nodes []*onnxpb.NodeProto, inits []*onnxpb.TensorProto) error {
	g := m.Proto.GetGraph()
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%w: node %q: %s", ErrReplace, name, fmt.Sprintf(format, args...))
	}
	if name == "" {
		return fail("no name given")
	}
	at := -1
	for i, n := range g.Node {
		if n.GetName() == name {
			if at >= 0 {
				return fail("two nodes bear this name")
			}
			at = i
		}
	}
	if at < 0 {
		return fail("no such node in the main graph")
	}
	old := g.Node[at]
	saved := struct {
		nodes []*onnxpb.NodeProto
		inits []*onnxpb.TensorProto
		info  []*onnxpb.ValueInfoProto
	}{g.Node, g.Initializer, g.ValueInfo}
	restore := func() { g.Node, g.Initializer, g.ValueInfo = saved.nodes, saved.inits, saved.info }

	ix := newGraphIndex(g)
	produced := map[string]bool{}
	for _, n := range nodes {
		for _, o := range n.Output {
			produced[o] = true
		}
		if n.GetName() == "" || (n.GetName() != name && ix.names[n.GetName()] > 0) {
			return fail("a new node must have a name of its own, not %q", n.GetName())
		}
		if ix.names[n.GetName()] < 0 {
			return fail("two new nodes are named %q", n.GetName())
		}
		ix.names[n.GetName()] = -1
	}
	for _, o := range old.Output {
		if o == "" || produced[o] {
			continue
		}
		if readers := without(ix.uses[o], at); len(readers) > 0 || ix.outputs[o] {
			return fail("its output %q is still read (by nodes %s, or as a graph output) but no new node produces it", o, ix.labels(readers))
		}
	}
	initializers, err := mergeInits(g.Initializer, inits, ix, at)
	if err != nil {
		return fail("%v", err)
	}
	g.Node = append(append(append([]*onnxpb.NodeProto{}, g.Node[:at]...), nodes...), g.Node[at+1:]...)
	g.Initializer = initializers
	order, ok := stableTopoSort(g.Node)
	if !ok {
		restore()
		return fail("the new nodes make a cycle")
	}
	g.Node = order
	pruneDead(g, old)
	if err := m.Validate(); err != nil {
		restore()
		return fmt.Errorf("%w: node %q: %w", ErrReplace, name, err)
	}
	m.names = nil
	return nil
}

// without returns idx less every occurrence of i.
func without(idx []int, i int) []int {
	var out []int
	for _, j := range idx {
		if j != i {
			out = append(out, j)
		}
	}
	return out
}

// mergeInits returns the initializers with inits added: one that takes the
// name of an initializer read by node at alone replaces it in place; any
// other clash of names is an error.
func mergeInits(current, inits []*onnxpb.TensorProto, ix *graphIndex, at int) ([]*onnxpb.TensorProto, error) {
	out := append([]*onnxpb.TensorProto{}, current...)
	pos := map[string]int{}
	for i, t := range out {
		pos[t.GetName()] = i
	}
	for _, t := range inits {
		name := t.GetName()
		if name == "" {
			return nil, errors.New("a new initializer has no name")
		}
		if i, ok := pos[name]; ok {
			readers := ix.uses[name]
			if len(readers) != 1 || readers[0] != at || ix.inputs[name] || ix.outputs[name] {
				return nil, fmt.Errorf("the new initializer %q would replace one that other nodes or the graph read", name)
			}
			out[i] = t
			continue
		}
		if _, ok := ix.producer[name]; ok || ix.inputs[name] {
			return nil, fmt.Errorf("the new initializer %q has the name of an existing value", name)
		}
		pos[name] = len(out)
		out = append(out, t)
	}
	return out, nil
}

// stableTopoSort orders nodes so that each comes after the producers of its
// inputs, moving as few as possible: among the nodes that are ready, the one
// that came first goes first. It reports false on a cycle.
func stableTopoSort(nodes []*onnxpb.NodeProto) ([]*onnxpb.NodeProto, bool) {
	producer := map[string]int{}
	for i, n := range nodes {
		for _, o := range n.Output {
			if o != "" {
				producer[o] = i
			}
		}
	}
	waiting := make([]int, len(nodes)) // producers not yet placed, per node
	next := make([][]int, len(nodes))  // the nodes that read each node's outputs
	for i, n := range nodes {
		seen := map[int]bool{}
		for _, in := range reads(n) {
			if p, ok := producer[in]; ok && p != i && !seen[p] {
				seen[p] = true
				waiting[i]++
				next[p] = append(next[p], i)
			}
		}
	}
	var ready []int // kept sorted, smallest first
	for i := range nodes {
		if waiting[i] == 0 {
			ready = append(ready, i)
		}
	}
	out := make([]*onnxpb.NodeProto, 0, len(nodes))
	for len(ready) > 0 {
		i := ready[0]
		ready = ready[1:]
		out = append(out, nodes[i])
		for _, j := range next[i] {
			if waiting[j]--; waiting[j] == 0 {
				k := sort.SearchInts(ready, j)
				ready = append(ready[:k], append([]int{j}, ready[k:]...)...)
			}
		}
	}
	return out, len(out) == len(nodes)
}

// pruneDead removes from g the nodes that fed old and that nothing reads now,
// transitively, then the initializers only they read and the value_info of
// the values that no longer exist.
func pruneDead(g *onnxpb.GraphProto, old *onnxpb.NodeProto) {
	ix := newGraphIndex(g)
	defined := func(ix *graphIndex, name string) bool {
		_, produced := ix.producer[name]
		return produced || ix.inits[name] != nil || ix.inputs[name]
	}
	before := ix
	removed := map[int]bool{}
	candidates := map[string]bool{} // values the removed nodes read
	for _, in := range reads(old) {
		candidates[in] = true
	}
	for changed := true; changed; {
		changed = false
		for v := range candidates {
			p, ok := ix.producer[v]
			if !ok || removed[p] || !unread(ix, g.Node[p], removed) {
				continue
			}
			removed[p], changed = true, true
			for _, in := range reads(g.Node[p]) {
				candidates[in] = true
			}
		}
	}
	var nodes []*onnxpb.NodeProto
	for i, n := range g.Node {
		if !removed[i] {
			nodes = append(nodes, n)
		}
	}
	g.Node = nodes
	ix = newGraphIndex(g)
	var inits []*onnxpb.TensorProto
	for _, t := range g.Initializer {
		name := t.GetName()
		if !candidates[name] || len(ix.uses[name]) > 0 || ix.inputs[name] || ix.outputs[name] {
			inits = append(inits, t)
		}
	}
	g.Initializer = inits
	var info []*onnxpb.ValueInfoProto
	for _, vi := range g.ValueInfo {
		name := vi.GetName()
		gone := slices.Contains(old.Output, name) || defined(before, name)
		if defined(ix, name) || !gone {
			info = append(info, vi)
		}
	}
	g.ValueInfo = info
}

// unread reports whether no node outside removed reads any output of n and
// none is a graph output.
func unread(ix *graphIndex, n *onnxpb.NodeProto, removed map[int]bool) bool {
	for _, o := range n.Output {
		if ix.outputs[o] {
			return false
		}
		for _, r := range ix.uses[o] {
			if !removed[r] {
				return false
			}
		}
	}
	return true
}

// NewName returns a name that no node, value or initializer of the model
// (its subgraphs included) bears and that NewName has not returned before:
// base itself if it is free, else base_1, base_2, ... The model's names are
// collected at the first call after Decode or ReplaceNode; names given to
// Proto directly in between are not seen.
func (m *Model) NewName(base string) string {
	if m.names == nil {
		m.names = map[string]bool{}
		collectNames(m.Proto.GetGraph(), m.names)
	}
	if m.reserved == nil {
		m.reserved = map[string]bool{}
	}
	name := base
	for k := 1; m.names[name] || m.reserved[name] || name == ""; k++ {
		name = base + "_" + strconv.Itoa(k)
	}
	m.reserved[name] = true
	return name
}

func collectNames(g *onnxpb.GraphProto, names map[string]bool) {
	if g == nil {
		return
	}
	for _, list := range [][]*onnxpb.ValueInfoProto{g.Input, g.Output, g.ValueInfo} {
		for _, vi := range list {
			names[vi.GetName()] = true
		}
	}
	for _, t := range g.Initializer {
		names[t.GetName()] = true
	}
	for _, st := range g.SparseInitializer {
		names[st.GetValues().GetName()] = true
	}
	for _, n := range g.Node {
		names[n.GetName()] = true
		for _, v := range append(append([]string{}, n.Input...), n.Output...) {
			names[v] = true
		}
		for _, a := range n.Attribute {
			for _, sub := range append([]*onnxpb.GraphProto{a.G}, a.Graphs...) {
				collectNames(sub, names)
			}
		}
	}
}

// NameNodes gives every unnamed node of the main graph a new name, its op
// type made unique by NewName ("Gemm", "Gemm_1", ...), so that Linears and
// ReplaceNode can refer to it. Named nodes keep their names. It returns how
// many nodes it named.
func (m *Model) NameNodes() int {
	named := 0
	for _, n := range m.Proto.GetGraph().GetNode() {
		if n.GetName() == "" {
			n.Name = proto.String(m.NewName(n.GetOpType()))
			named++
		}
	}
	return named
}

// Opset returns the version of domain that the model imports ("" and
// "ai.onnx" both name the default domain), or 0 if it imports none.
func (m *Model) Opset(domain string) int64 {
	for _, o := range m.Proto.OpsetImport {
		if canonicalDomain(o.GetDomain()) == canonicalDomain(domain) {
			return o.GetVersion()
		}
	}
	return 0
}

// SetOpset makes the model import domain at version: it changes the existing
// import or adds one. Raising the default domain's version changes the
// meaning of the ops whose definition changed in between; the caller
// answers for that. Lowering writes custom-domain ops with a new import, and
// the default domain only with ops whose definition is the same in every
// opset from MinOpset on (MatMul, Add, Reshape, Transpose, ...).
func (m *Model) SetOpset(domain string, version int64) {
	for _, o := range m.Proto.OpsetImport {
		if canonicalDomain(o.GetDomain()) == canonicalDomain(domain) {
			o.Version = proto.Int64(version)
			return
		}
	}
	m.Proto.OpsetImport = append(m.Proto.OpsetImport, &onnxpb.OperatorSetIdProto{
		Domain: proto.String(domain), Version: proto.Int64(version)})
}

// NewNode returns a default-domain node.
func NewNode(op, name string, inputs, outputs []string, attrs ...*onnxpb.AttributeProto) *onnxpb.NodeProto {
	return &onnxpb.NodeProto{OpType: proto.String(op), Name: proto.String(name),
		Input: append([]string(nil), inputs...), Output: append([]string(nil), outputs...), Attribute: attrs}
}

// IntAttr returns an INT attribute.
func IntAttr(name string, v int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_INT.Enum(), I: proto.Int64(v)}
}

// IntsAttr returns an INTS attribute (a Transpose's perm, a Conv's pads).
func IntsAttr(name string, v ...int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_INTS.Enum(), Ints: append([]int64{}, v...)}
}

// FloatAttr returns a FLOAT attribute.
func FloatAttr(name string, v float32) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_FLOAT.Enum(), F: proto.Float32(v)}
}
