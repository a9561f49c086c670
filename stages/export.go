package stages

import (
	"context"
	"fmt"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/compute"
	"github.com/strata-ml/strata/internal/inputerr"
	"github.com/strata-ml/strata/modelmap"
)

// ExportConfig configures Export.
type ExportConfig struct {
	// Model is a model file, decomposed or dense.
	Model string `json:"model"`
	// Format is "safetensors" or "arrow".
	Format string `json:"format"`
	// Out is the file to write.
	Out string `json:"out"`
	// Activation is for safetensors nn.Sequential input without metadata.
	Activation compute.Activation `json:"activation,omitempty"`
	// Factors writes the decomposed model's tensors as they are (trunk and
	// correction factors, biases, undecomposed weights) instead of
	// materialising it; see exportFactors.
	Factors bool `json:"factors,omitempty"`
}

// DefaultExportConfig returns the defaults the CLI and the plugin start
// from: a safetensors file.
func DefaultExportConfig() ExportConfig {
	return ExportConfig{Format: FormatSafetensors}
}

// Export materialises a model (every decomposed layer as W = S + R) and
// writes it as one dense file in the requested format, atomically.
func Export(ctx context.Context, cfg ExportConfig) error {
	if cfg.Model == "" || cfg.Out == "" {
		return inputerr.Fieldf("export", "{model} and {out} are required")
	}
	if cfg.Format != FormatSafetensors && cfg.Format != FormatArrow {
		return inputerr.Fieldf("export", "{format} %q: want safetensors or arrow", cfg.Format)
	}
	if err := arrowio.CheckTarget(cfg.Out); err != nil {
		return inputerr.Fieldf("export", "{out} %w", err)
	}
	lm, err := mapModel(ctx, cfg.Model, cfg.Activation)
	if err != nil {
		return err
	}
	defer lm.close()
	if cfg.Factors {
		return exportFactors(ctx, cfg, lm)
	}
	dense, err := modelmap.Materialize(lm.model)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if cfg.Format == FormatArrow {
		err = arrowio.WriteModel(cfg.Out, dense)
	} else {
		lm.format = FormatSafetensors
		err = writeDense(cfg.Out, lm, dense)
	}
	if err != nil {
		return fmt.Errorf("export: write %s: %w", cfg.Out, err)
	}
	return nil
}
