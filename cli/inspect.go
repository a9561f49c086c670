package cli

import (
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

Describes a model file (Arrow model file or safetensors): its architecture,
the structure of each decomposed layer and every tensor.

Flags:
` + flagUsages(c.flags(new(bool), new(string)))
}

func (c *inspectCommand) flags(asJSON *bool, activation *string) *flagSet {
	fs := newFlagSet("inspect", c.env, c.Usage)
	fs.BoolVar(asJSON, "json", false, "print JSON for machines instead of a table")
	fs.StringVar(activation, "activation", "", "activation of an nn.Sequential safetensors checkpoint without metadata (default relu)")
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
	fmt.Fprintf(c.stdout, ", %d tensors, %d values\nsha256 %s\n\n", len(res.Tensors), res.Params, res.Input.SHA256)
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
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
	fmt.Fprintln(tw, "TENSOR\tROLE\tSHAPE\tVALUES")
	for _, t := range res.Tensors {
		dims := make([]string, len(t.Shape))
		for i, d := range t.Shape {
			dims[i] = fmt.Sprint(d)
		}
		fmt.Fprintf(tw, "%s\t%s\t[%s]\t%d\n", t.Name, t.Role, strings.Join(dims, " "), t.Numel)
	}
	return tw.Flush()
}
