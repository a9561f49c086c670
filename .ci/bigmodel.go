//go:build ignore

// bigmodel writes a one-layer nn.Sequential safetensors checkpoint with
// an n x n float32 weight of seeded Gaussian entries (std 1/sqrt(n)), for
// timing convert on a large layer:
//
//	go run .ci/bigmodel.go -n 4096 -out /tmp/big.safetensors
//	/usr/bin/time -v bin/strata convert --model /tmp/big.safetensors --out /tmp/big \
//	    --structure monarch --blocks 4 --residual-rank 16 --activation identity
package main

import (
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"

	"github.com/strata-ml/strata/arrowio"
)

func main() {
	n := flag.Int("n", 4096, "layer width")
	out := flag.String("out", "big.safetensors", "output file")
	seed := flag.Uint64("seed", 1, "random seed")
	flag.Parse()
	rng := rand.New(rand.NewPCG(*seed, 1))
	w := make([]float32, *n**n)
	for i := range w {
		w[i] = float32(rng.NormFloat64() / math.Sqrt(float64(*n)))
	}
	b := make([]float32, *n)
	ts := []arrowio.Tensor{
		{Name: "0.weight", Shape: []int64{int64(*n), int64(*n)}, Data: w},
		{Name: "0.bias", Shape: []int64{int64(*n)}, Data: b},
	}
	if err := arrowio.WriteSafetensors(*out, ts, nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
