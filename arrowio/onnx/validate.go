package onnx

import (
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/arrowio/onnx/onnxpb"
)

// MinOpset is the oldest default-domain opset strata reads.
const MinOpset = 13

// Validate checks what strata relies on, and returns the first problem as an
// *arrowio.FormatError (see the package documentation):
//   - the model has a graph and an ir_version; the default domain (ai.onnx)
//     is imported once, at opset MinOpset or later (earlier is
//     ErrUnsupported);
//   - every tensor (initializers, Constant values, tensor attributes,
//     sparse initializers, in subgraphs too) keeps its data in the file
//     (external data is ErrUnsupported) and holds as many values as its dims
//     say, in the field its element type uses;
//   - every name is defined once: graph inputs, initializers (which may
//     repeat a graph input's name, as a default) and node outputs; no
//     subgraph redefines a name of an enclosing graph;
//   - every node input is a graph input, an initializer or the output of an
//     earlier node (of this graph or, in a subgraph, of an enclosing one), so
//     the graph is acyclic and in topological order, and every graph output
//     is defined;
//   - in the main graph, the shapes that Gemm, MatMul and Conv need agree
//     with their weights and with every input shape known from the model's
//     value_info, its inputs and outputs, or propagated from them (see
//     checkShapes).
func (m *Model) Validate() error {
	g := m.Proto.GetGraph()
	if g == nil {
		if proto.Size(m.Proto) == 0 {
			return formatErr(m.File, "", "", arrowio.ErrFormat, "empty: not an ONNX model")
		}
		return formatErr(m.File, "", "", arrowio.ErrFormat, "no graph: not an ONNX model")
	}
	if m.Proto.GetIrVersion() <= 0 {
		return formatErr(m.File, "", "", arrowio.ErrFormat, "ir_version is not set: not an ONNX model")
	}
	if err := m.checkOpsets(); err != nil {
		return err
	}
	v := validator{file: m.File}
	if err := v.graph(g, "", nil); err != nil {
		return err
	}
	return checkShapes(m.File, g)
}

// canonicalDomain maps the default domain's two spellings to "".
func canonicalDomain(d string) string {
	if d == "ai.onnx" {
		return ""
	}
	return d
}

func (m *Model) checkOpsets() error {
	seen := map[string]bool{}
	def := int64(-1)
	for _, o := range m.Proto.OpsetImport {
		d := canonicalDomain(o.GetDomain())
		if seen[d] {
			return formatErr(m.File, "opset_import", domainName(d), arrowio.ErrFormat, "imported more than once")
		}
		seen[d] = true
		if d == "" {
			def = o.GetVersion()
		}
	}
	if def < 0 {
		return formatErr(m.File, "", "", arrowio.ErrFormat, "no opset_import for the default domain (ai.onnx)")
	}
	if def < MinOpset {
		return formatErr(m.File, "opset_import", "ai.onnx", arrowio.ErrUnsupported,
			"opset %d: strata reads opset %d and later (export with opset_version=%d or later, or upgrade with onnx.version_converter)",
			def, MinOpset, MinOpset)
	}
	return nil
}

func domainName(d string) string {
	if d == "" {
		return "ai.onnx"
	}
	return d
}

// nodeLabel names node i of a graph in errors: its name, or its position and
// op type when it has none.
func nodeLabel(i int, n *onnxpb.NodeProto) string {
	if n.GetName() != "" {
		return n.GetName()
	}
	return fmt.Sprintf("#%d %s", i, n.GetOpType())
}

// scope maps the names a graph defines to what defines them; a subgraph's
// scope sees its enclosing graphs' names through outer.
type scope struct {
	names map[string]string
	outer *scope
}

func (s *scope) lookup(name string) (string, bool) {
	for ; s != nil; s = s.outer {
		if what, ok := s.names[name]; ok {
			return what, true
		}
	}
	return "", false
}

type validator struct{ file string }

// graph validates g, whose nodes are named in errors with the prefix path
// ("" for the main graph), inside the enclosing scope outer (nil for the
// main graph).
func (v validator) graph(g *onnxpb.GraphProto, path string, outer *scope) error {
	s := &scope{names: map[string]string{}, outer: outer}
	define := func(kind, field, name, what string) error {
		if prev, ok := s.names[name]; ok {
			return formatErr(v.file, kind, field, arrowio.ErrFormat, "%q is defined twice: by %s and by %s", name, prev, what)
		}
		if prev, ok := outer.lookup(name); ok {
			return formatErr(v.file, kind, field, arrowio.ErrFormat, "%q is already defined by %s of an enclosing graph", name, prev)
		}
		s.names[name] = what
		return nil
	}
	for i, in := range g.Input {
		if in.GetName() == "" {
			return formatErr(v.file, "graph", path, arrowio.ErrFormat, "input #%d has no name", i)
		}
		if err := define("input", path+in.GetName(), in.GetName(), "a graph input"); err != nil {
			return err
		}
	}
	for _, t := range g.Initializer {
		if err := v.initializer(s, path, t.GetName(), t, define); err != nil {
			return err
		}
	}
	for _, st := range g.SparseInitializer {
		if err := v.initializer(s, path, st.GetValues().GetName(), st.GetValues(), define); err != nil {
			return err
		}
		if r := checkTensor(st.GetIndices()); st.GetIndices() != nil && r != nil {
			return &arrowio.FormatError{File: v.file, Kind: "tensor", Field: path + st.GetValues().GetName(), Err: r}
		}
	}
	producer := map[string]int{}
	for i, n := range g.Node {
		for _, o := range n.Output {
			if o == "" {
				continue
			}
			if j, ok := producer[o]; ok {
				return formatErr(v.file, "node", path+nodeLabel(i, n), arrowio.ErrFormat,
					"output %q is also an output of node %q: every value must have one producer", o, nodeLabel(j, g.Node[j]))
			}
			producer[o] = i
		}
	}
	for i := range g.Node {
		if err := v.node(g, i, path, s, producer); err != nil {
			return err
		}
	}
	for _, out := range g.Output {
		if _, ok := s.lookup(out.GetName()); !ok {
			return formatErr(v.file, "output", path+out.GetName(), arrowio.ErrFormat,
				"graph output is not a graph input, an initializer or the output of any node")
		}
	}
	return nil
}

// initializer checks the initializer (or sparse initializer's values) t and
// defines its name; an initializer may share its name with a graph input
// (it is then the input's default value).
func (v validator) initializer(s *scope, path, name string, t *onnxpb.TensorProto, define func(kind, field, name, what string) error) error {
	field := path + name
	if t == nil || name == "" {
		return formatErr(v.file, "graph", path, arrowio.ErrFormat, "an initializer has no name")
	}
	if r := checkTensor(t); r != nil {
		return &arrowio.FormatError{File: v.file, Kind: "tensor", Field: field, Err: r}
	}
	if s.names[name] == "a graph input" {
		s.names[name] = "an initializer"
		return nil
	}
	return define("tensor", field, name, "an initializer")
}

// node checks node i of g: its inputs are defined, its tensor attributes
// hold their data, its subgraphs are valid; then it defines its outputs.
func (v validator) node(g *onnxpb.GraphProto, i int, path string, s *scope, producer map[string]int) error {
	n := g.Node[i]
	label := path + nodeLabel(i, n)
	bad := func(kind error, format string, args ...any) error {
		return formatErr(v.file, "node", label, kind, format, args...)
	}
	if n.GetOpType() == "" {
		return bad(arrowio.ErrFormat, "no op_type")
	}
	for _, in := range n.Input {
		if in == "" {
			continue // an optional input left out
		}
		if _, ok := s.lookup(in); ok {
			continue
		}
		j, later := producer[in]
		if !later {
			return bad(arrowio.ErrFormat, "input %q is not a graph input, an initializer or the output of any node (a missing initializer?)", in)
		}
		if cycle := findCycle(g.Node, producer, i); cycle != nil {
			names := make([]string, len(cycle))
			for k, c := range cycle {
				names[k] = fmt.Sprintf("%q", path+nodeLabel(c, g.Node[c]))
			}
			return formatErr(v.file, "node", path+nodeLabel(cycle[0], g.Node[cycle[0]]), arrowio.ErrFormat,
				"is part of a cycle: %s (each node feeds the next)", strings.Join(names, " -> "))
		}
		return bad(arrowio.ErrFormat, "input %q is the output of node %q, which comes later: the nodes are not in topological order",
			in, path+nodeLabel(j, g.Node[j]))
	}
	for _, a := range n.Attribute {
		if err := v.attribute(a, label, s); err != nil {
			return err
		}
	}
	for _, o := range n.Output {
		if o == "" {
			continue
		}
		if prev, ok := s.lookup(o); ok {
			return bad(arrowio.ErrFormat, "output %q is already defined by %s", o, prev)
		}
		s.names[o] = fmt.Sprintf("node %q", label)
	}
	return nil
}

// attribute checks the tensors and subgraphs held by the attribute a of the
// node label.
func (v validator) attribute(a *onnxpb.AttributeProto, label string, s *scope) error {
	tensors := a.Tensors
	if a.T != nil {
		tensors = append([]*onnxpb.TensorProto{a.T}, tensors...)
	}
	if a.SparseTensor != nil {
		tensors = append(tensors, a.SparseTensor.GetValues(), a.SparseTensor.GetIndices())
	}
	for _, st := range a.SparseTensors {
		tensors = append(tensors, st.GetValues(), st.GetIndices())
	}
	for _, t := range tensors {
		if t == nil {
			continue
		}
		if r := checkTensor(t); r != nil {
			return formatErr(v.file, "node", label, r.kind, "attribute %q: tensor %q: %s", a.GetName(), t.GetName(), r.msg)
		}
	}
	graphs := a.Graphs
	if a.G != nil {
		graphs = append([]*onnxpb.GraphProto{a.G}, graphs...)
	}
	for _, sub := range graphs {
		if err := v.graph(sub, label+"/"+a.GetName()+"/", s); err != nil {
			return err
		}
	}
	return nil
}

// findCycle returns the nodes of a cycle in the graph whose edges run from
// each node to the producers of its inputs (producer maps a value to the
// index of the node that outputs it), in data-flow order and with the first
// node repeated at the end; it looks from node start first, then from every
// node. It returns nil if the graph is acyclic.
func findCycle(nodes []*onnxpb.NodeProto, producer map[string]int, start int) []int {
	const (
		unseen = iota
		onPath
		done
	)
	state := make([]int, len(nodes))
	type frame struct{ node, next int }
	for k := range nodes {
		root := (start + k) % len(nodes)
		if state[root] != unseen {
			continue
		}
		stack := []frame{{root, 0}}
		state[root] = onPath
		for len(stack) > 0 {
			top := &stack[len(stack)-1]
			n := nodes[top.node]
			if top.next == len(n.Input) {
				state[top.node] = done
				stack = stack[:len(stack)-1]
				continue
			}
			p, ok := producer[n.Input[top.next]]
			top.next++
			if !ok {
				continue
			}
			switch state[p] {
			case unseen:
				state[p] = onPath
				stack = append(stack, frame{p, 0})
			case onPath:
				// The stack from p to the top is the cycle, in dependency
				// order; reverse it into data-flow order.
				var cycle []int
				for j := len(stack) - 1; j >= 0; j-- {
					cycle = append(cycle, stack[j].node)
					if stack[j].node == p {
						break
					}
				}
				return append(cycle, cycle[0])
			}
		}
	}
	return nil
}
