package cli

import (
	"context"

	"github.com/strata-ml/strata/stages"
)

type exportCommand struct{ env }

func (c *exportCommand) Usage() string {
	return `Usage: strata export --model FILE --format safetensors|arrow|onnx --out FILE [--factors]

Materialises a model: every decomposed layer becomes its dense weight
W = S + R (accumulated in float64, written as float32). An Arrow model file
or a safetensors checkpoint is written as safetensors or arrow; a
structured ONNX model (the model.onnx strata convert writes) as onnx, each
S + R subgraph back to one dense Gemm, MatMul or Conv.

With --factors the model is written as it is instead: --format safetensors
writes every tensor (the trunk and correction factors <layer>.trunk.<P> and
<layer>.correction.<P>, biases, undecomposed weights; float32 as F32,
integer and bool tensors in their own dtype) with the architecture JSON in
__metadata__ ("strata.architecture", "strata.format_version"), for training
in your own trainer (examples/pytorch/strata_torch.py builds or swaps
PyTorch modules from it); --format arrow writes the model file itself. For
a structured ONNX model, --factors writes its layers' factors and biases
(what convert wrote as model.arrow beside it).

Flags:
` + flagUsages(c.flags(new(stages.DefaultExportConfig())))
}

func (c *exportCommand) flags(cfg *stages.ExportConfig) *flagSet {
	fs := newFlagSet("export", c.env, c.Usage)
	fs.StringVar(&cfg.Model, "model", cfg.Model, "model file to materialise (.arrow, .safetensors or a structured .onnx)")
	fs.StringVar(&cfg.Format, "format", cfg.Format, "output format: safetensors, arrow or onnx")
	fs.StringVar(&cfg.Out, "out", cfg.Out, "output file")
	nameVar(fs, &cfg.Activation, "activation", "activation of an nn.Sequential safetensors input without metadata")
	fs.BoolVar(&cfg.Factors, "factors", cfg.Factors, "write the trunk and correction factors as they are, with the architecture (no materialising)")
	return fs
}

func (c *exportCommand) Run(ctx context.Context, args []string) error {
	cfg := stages.DefaultExportConfig()
	fs := c.flags(&cfg)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageErrorf("export takes no positional arguments, got %q", fs.Args())
	}
	return stages.Export(ctx, cfg)
}
