package onnx

import (
	"fmt"
	"sort"
	"strings"

	"github.com/strata-ml/strata/arrowio/onnx/onnxpb"
)

// graphIndex is what Linears needs to know about the main graph.
type graphIndex struct {
	g        *onnxpb.GraphProto
	inits    map[string]*onnxpb.TensorProto
	inputs   map[string]bool // graph inputs
	outputs  map[string]bool // graph outputs
	producer map[string]int
	uses     map[string][]int // the nodes that read each value, a node holding a subgraph that reads it included
	names    map[string]int   // how many nodes bear each name
	constant map[string]bool  // values computed from initializers alone
}

func newGraphIndex(g *onnxpb.GraphProto) *graphIndex {
	ix := &graphIndex{g: g, inits: map[string]*onnxpb.TensorProto{}, inputs: map[string]bool{},
		outputs: map[string]bool{}, producer: map[string]int{}, uses: map[string][]int{},
		names: map[string]int{}, constant: map[string]bool{}}
	for _, in := range g.Input {
		ix.inputs[in.GetName()] = true
	}
	for _, out := range g.Output {
		ix.outputs[out.GetName()] = true
	}
	for _, t := range g.Initializer {
		ix.inits[t.GetName()] = t
		ix.constant[t.GetName()] = !ix.inputs[t.GetName()]
	}
	for i, n := range g.Node {
		ix.names[n.GetName()]++
		isConst := !hasSubgraph(n)
		for _, name := range reads(n) {
			ix.uses[name] = append(ix.uses[name], i)
			isConst = isConst && ix.constant[name]
		}
		for _, o := range n.Output {
			ix.producer[o] = i
			ix.constant[o] = isConst
		}
	}
	return ix
}

func hasSubgraph(n *onnxpb.NodeProto) bool {
	for _, a := range n.Attribute {
		if a.G != nil || len(a.Graphs) > 0 {
			return true
		}
	}
	return false
}

// subgraphReads adds to read every name that g (nil allowed) and its own
// subgraphs read: node inputs and graph outputs, outer-scope or not.
func subgraphReads(g *onnxpb.GraphProto, read map[string]bool) {
	if g == nil {
		return
	}
	for _, n := range g.Node {
		for _, in := range n.Input {
			read[in] = true
		}
		for _, a := range n.Attribute {
			for _, sub := range append([]*onnxpb.GraphProto{a.G}, a.Graphs...) {
				subgraphReads(sub, read)
			}
		}
	}
	for _, out := range g.Output {
		read[out.GetName()] = true
	}
}

// labels returns the labels of the nodes idx.
func (ix *graphIndex) labels(idx []int) string {
	s := make([]string, len(idx))
	for k, i := range idx {
		s[k] = fmt.Sprintf("%q", nodeLabel(i, ix.g.Node[i]))
	}
	return strings.Join(s, ", ")
}

// reads returns the names node n reads, each once, in order: its inputs
// and what its subgraphs read ("" for a left-out input is not a name).
func reads(n *onnxpb.NodeProto) []string {
	var out []string
	seen := map[string]bool{"": true}
	add := func(name string) {
		if !seen[name] {
			seen[name] = true
			out = append(out, name)
		}
	}
	for _, in := range n.Input {
		add(in)
	}
	if hasSubgraph(n) {
		set := map[string]bool{}
		for _, a := range n.Attribute {
			for _, sub := range append([]*onnxpb.GraphProto{a.G}, a.Graphs...) {
				subgraphReads(sub, set)
			}
		}
		names := make([]string, 0, len(set))
		for name := range set {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			add(name)
		}
	}
	return out
}
