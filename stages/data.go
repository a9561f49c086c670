package stages

import (
	"slices"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/compute"
)

// Split divides ds into a training part and a held-out part of
// round(fraction * N) rows by compute.SplitRows' seeded shuffle: the same
// seed gives the same split on any machine. Both parts keep the rows in
// their original order. A fraction outside (0, 1) or fewer than two rows
// are bad input.
func Split(ds *arrowio.Dataset, fraction float64, seed uint64) (train, held *arrowio.Dataset, err error) {
	tr, he, err := compute.SplitRows(ds.N, fraction, seed)
	if err != nil {
		return nil, nil, classify(err)
	}
	return rows(ds, tr), rows(ds, he), nil
}

// rows returns the rows idx of ds, in that order.
func rows(ds *arrowio.Dataset, idx []int) *arrowio.Dataset {
	out := &arrowio.Dataset{D: ds.D, N: len(idx), FeatureNames: slices.Clone(ds.FeatureNames),
		X: make([]float64, 0, len(idx)*ds.D), Y: make([]float64, 0, len(idx))}
	for _, i := range idx {
		out.X = append(out.X, ds.X[i*ds.D:(i+1)*ds.D]...)
		out.Y = append(out.Y, ds.Y[i])
	}
	return out
}

// The PCG streams of the stages' own draws from a seed (compute.SplitRows
// has the split's): each use of the seed draws from its own stream, so
// that changing one never shifts another.
const (
	shuffleStream  uint64 = 0x5EED_5A0F // finetune's shuffle of every epoch
	initStream     uint64 = 0x5EED_1417 // finetune's initialisation of a fresh model
	jacobianStream uint64 = 0x5EED_7AC0 // validate's sample of Jacobian inputs
)
