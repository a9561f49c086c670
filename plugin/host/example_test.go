package host_test

import (
	"context"
	"fmt"
	"log"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/plugin/host"
	"github.com/strata-ml/strata/stages"
)

// Open the plugin, train a small dense model on in-memory data, convert
// it to S + R and get the decomposed model back, with no files on the
// host's side. (strataBin is the path of the strata binary.) The 3 x 16
// head stays dense: its S + R would not be smaller.
func ExampleOpen() {
	ctx := context.Background()
	client, err := host.Open(ctx, strataBin)
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	// 60 rows of 4 features, 3 classes: the largest of three sums.
	data := &arrowio.Dataset{N: 60, D: 4}
	for i := range data.N {
		x := []float64{float64(i % 7), float64(i % 5), float64(i % 3), float64(i % 11)}
		sums := []float64{x[0] + x[1], x[2] + x[3], x[1] + x[3]}
		label := 0
		for k, s := range sums {
			if s > sums[label] {
				label = k
			}
		}
		data.X, data.Y = append(data.X, x...), append(data.Y, float64(label))
	}
	baseline, err := client.Run(ctx, "finetune",
		map[string]any{"init": "mlp:4-16-16-3:relu", "epochs": 5, "seed": 1},
		host.Inputs{"train": host.Dataset(data)},
		nil) // or a func(host.Event) receiving the training's progress
	if err != nil {
		log.Fatal(err)
	}
	model, err := baseline.Input("model") // the trained model, as Arrow
	if err != nil {
		log.Fatal(err)
	}
	cfg := stages.DefaultConvertConfig()
	cfg.Structure, cfg.Blocks, cfg.ResidualRank = "blockdiag", 2, 1
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
	fmt.Println(res.Totals.Layers, "layers converted:", res.Totals.Params, "of", res.Totals.ParamsDense, "parameters, in", len(m.Tensors), "tensors")
	// Output:
	// 2 layers converted: 212 of 320 parameters, in 10 tensors
}
