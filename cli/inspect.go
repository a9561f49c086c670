package cli

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/strata-ml/strata/compute"
	"github.com/strata-ml/strata/stages"
)

type inspectCommand struct{ env }

func (c *inspectCommand) Usage() string {
	return `Usage: strata inspect [--json] FILE

Describes a model file (Arrow model file, safetensors or ONNX): its
architecture, the structure of each decomposed layer and every tensor. For
an ONNX model also its opsets, inputs and outputs, the Gemm, MatMul and Conv
weights convert would decompose (with the layout each is stored in and W's
shape, out x in), the weights it would keep dense with the reason, and for
a structured model (the model.onnx convert writes) its recorded structure.

Flags:
` + flagUsages(c.flags(new(bool), new(string)))
}

func (c *inspectCommand) flags(asJSON *bool, activation *string) *flagSet {
	fs := newFlagSet("inspect", c.env, c.Usage)
	fs.BoolVar(asJSON, "json", false, "print JSON for machines instead of a table")
	fs.StringVar(activation, "activation", "", "activation of an nn.Sequential safetensors checkpoint without strata's metadata (without it such a checkpoint is refused)")
	return fs
}

func (c *inspectCommand) Run(ctx context.Context, args []string) error {
	var asJSON bool
	var activation string
	fs := c.flags(&asJSON, &activation)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageErrorf("inspect takes exactly one FILE, got %d arguments", fs.NArg())
	}
	res, err := stages.Inspect(ctx, fs.Arg(0), compute.Activation(activation))
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	fmt.Fprintf(c.stdout, "%s: %s model file, %s", res.Input.Path, res.Format, res.Kind)
	if res.Task != "" {
		fmt.Fprintf(c.stdout, ", %s, %d inputs", res.Task, res.Inputs)
	}
	if x := res.ONNX; x != nil {
		var opsets []string
		for _, o := range x.Opsets {
			opsets = append(opsets, fmt.Sprintf("%s %d", cmp.Or(o.Domain, "ai.onnx"), o.Version))
		}
		fmt.Fprintf(c.stdout, ", ir_version %d, opsets %s, %d nodes", x.IRVersion, strings.Join(opsets, ", "), x.Nodes)
	}
	fmt.Fprintf(c.stdout, ", %d tensors, %d values\nsha256 %s\n\n", len(res.Tensors), res.Params, res.Input.SHA256)
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	if res.ONNX != nil {
		printONNX(tw, res.ONNX)
	}
	if len(res.Layers) > 0 {
		fmt.Fprintln(tw, "LAYER\tKIND\tSHAPE\tSTRUCTURE\tPARAMS")
		for _, l := range res.Layers {
			shape, structure, params := "", "", ""
			if l.Kind == compute.KindLinear {
				shape = fmt.Sprintf("%dx%d", l.Out, l.In)
				structure = "dense"
				params = fmt.Sprint(l.Params)
			}
			if l.Activation != "" {
				structure = string(l.Activation)
			}
			if s := l.Structure; s != nil {
				structure = s.String()
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", l.Name, l.Kind, shape, structure, params)
		}
		fmt.Fprintln(tw)
	}
	fmt.Fprintln(tw, "TENSOR\tROLE\tSHAPE\tVALUES\tDTYPE")
	for _, t := range res.Tensors {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", t.Name, t.Role, dims(t.Shape), t.Numel, cmp.Or(t.DType, "F32"))
	}
	return tw.Flush()
}

// printONNX prints what an ONNX model adds: its inputs and outputs, the
// linear maps convert would decompose and the weights it would keep dense.
func printONNX(tw *tabwriter.Writer, x *stages.InspectONNX) {
	fmt.Fprintln(tw, "VALUE\tNAME\tTYPE\tSHAPE")
	for _, io := range []struct {
		what string
		vs   []stages.InspectValue
	}{{"input", x.Inputs}, {"output", x.Outputs}} {
		for _, v := range io.vs {
			fmt.Fprintf(tw, "%s\t%s\t%s\t[%s]\n", io.what, v.Name, v.Type, strings.Join(v.Shape, " "))
		}
	}
	fmt.Fprintln(tw)
	if len(x.Linears) > 0 {
		fmt.Fprintln(tw, "NODE\tOP\tWEIGHT\tLAYOUT\tW (OUT x IN)\tKERNEL\tBIAS")
		for _, l := range x.Linears {
			kernel := "-"
			if len(l.Kernel) > 0 {
				kernel = dims(l.Kernel)
				if !l.Pointwise {
					kernel += " (lowrank only)"
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%dx%d\t%s\t%s\n", l.Node, l.Op, l.Weight, l.Layout, l.Shape[0], l.Shape[1], kernel, cmp.Or(l.Bias, "-"))
		}
		fmt.Fprintln(tw)
	}
	if len(x.Skipped) > 0 {
		fmt.Fprintln(tw, "KEPT DENSE\tNODE\tREASON")
		for _, s := range x.Skipped {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", s.Tensor, s.Node, s.Reason)
		}
		fmt.Fprintln(tw)
	}
}

// dims formats a shape as [2 3 4].
func dims(shape []int64) string {
	s := make([]string, len(shape))
	for i, d := range shape {
		s[i] = fmt.Sprint(d)
	}
	return "[" + strings.Join(s, " ") + "]"
}
