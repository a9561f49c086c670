package host_test

import (
	"context"
	"fmt"
	"log"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/internal/datasets"
	"github.com/strata-ml/strata/plugin/host"
	"github.com/strata-ml/strata/stages"
)

// Open the plugin, train a small dense model on in-memory data, convert
// it to S + R and get the decomposed model back, with no files.
func ExampleOpen() {
	ctx := context.Background()
	client, err := host.Open(ctx, "/usr/local/bin/strata")
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	iris, err := datasets.Iris()
	if err != nil {
		log.Fatal(err)
	}
	baseline, err := client.Run(ctx, "finetune",
		map[string]any{"init": "mlp:4-16-16-3:relu", "epochs": 20, "seed": 1},
		host.Inputs{"train": host.Dataset(iris)},
		func(e host.Event) { log.Printf("%d/%d %s", e.Step, e.Total, e.Message) })
	if err != nil {
		log.Fatal(err)
	}
	model, err := baseline.Input("model") // the trained model, as Arrow
	if err != nil {
		log.Fatal(err)
	}
	cfg := stages.DefaultConvertConfig()
	cfg.Structure, cfg.Blocks = "blockdiag", 2
	converted, err := client.Run(ctx, "convert", cfg, host.Inputs{"model": model}, nil)
	if err != nil {
		log.Fatal(err)
	}
	var res stages.ConvertResult
	if err := converted.Decode(&res); err != nil {
		log.Fatal(err)
	}
	var m *arrowio.Model
	if m, err = converted.Model("model"); err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Totals.Params, "parameters in", len(m.Tensors), "tensors")
}
