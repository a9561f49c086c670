// Command digits writes the digits data embedded in strata (UCI optical
// digits, CC BY 4.0; see internal/datasets/README.md) as a seeded train/test
// split, the first step of the walkthrough in README.md:
//
//	go run ./examples/digits --out digits
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/internal/datasets"
	"github.com/strata-ml/strata/stages"
)

func main() {
	out := flag.String("out", "digits", "output directory")
	format := flag.String("format", "parquet", "file format: parquet, arrow or csv")
	testFraction := flag.Float64("test-fraction", 0.25, "share of the rows held out as test data")
	seed := flag.Uint64("seed", 7, "seed of the split")
	flag.Parse()
	if err := run(*out, *format, *testFraction, *seed); err != nil {
		fmt.Fprintln(os.Stderr, "digits:", err)
		os.Exit(1)
	}
}

func run(out, format string, testFraction float64, seed uint64) error {
	ds, err := datasets.Digits()
	if err != nil {
		return err
	}
	train, test, err := stages.Split(ds, testFraction, seed)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		ds   *arrowio.Dataset
	}{{"train", train}, {"test", test}} {
		path := filepath.Join(out, f.name+"."+format)
		if err := arrowio.WriteDataset(path, f.ds); err != nil {
			return err
		}
		fmt.Printf("%s: %d rows, %d features, label column \"label\"\n", path, f.ds.N, f.ds.D)
	}
	return nil
}
