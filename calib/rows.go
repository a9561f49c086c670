package calib

import (
	"fmt"

	"github.com/strata-ml/strata/compute"
)

// rowSource is the rows one layer sees in one batch.
type rowSource interface {
	// rows returns the number of rows.
	rows() int
	// row writes row i into dst (the layer's in values).
	row(i int, dst []float64)
}

// matrixRows are the rows of a row-major matrix of width in: a Gemm's A,
// a MatMul's input over its leading axes, an MLP layer's input.
type matrixRows[T float32 | float64] struct {
	data []T
	in   int
}

func (m matrixRows[T]) rows() int { return len(m.data) / m.in }

func (m matrixRows[T]) row(i int, dst []float64) {
	for j, v := range m.data[i*m.in : (i+1)*m.in] {
		dst[j] = float64(v)
	}
}

// gramBatch is the number of rows handed to Gram.Add at once.
const gramBatch = 256

// collector gathers one layer's rows over the batches of a set.
type collector struct {
	layer int // the layer's index, for the sample's hash
	caps  Caps
	acts  *Activations
	// examples[part] is the set's number of examples of each part;
	// rate[part] the share of rows kept (set at the part's first batch);
	// seen[part] the rows seen so far.
	examples [2]int
	rate     [2]float64
	seen     [2]int
	// buf[f] holds the fit rows of fold f waiting for Gram.Add.
	buf  [2][]float64
	nbuf [2]int
	// fitExamples counts the fit examples seen, for the folds.
	fitExamples int
}

func newCollector(layer, in int, caps Caps, fitN, heldN int) *collector {
	return &collector{layer: layer, caps: caps, examples: [2]int{fitN, heldN},
		acts: &Activations{In: in, Gram: compute.NewGram(in), Folds: [2]*compute.Gram{compute.NewGram(in), compute.NewGram(in)}}}
}

// add takes the rows src of a batch of n examples of part (0 fit, 1
// held).
func (c *collector) add(part, n int, src rowSource) error {
	rows, in := src.rows(), c.acts.In
	limit := c.caps.FitRows
	if part == 1 {
		limit = c.caps.heldCap(in)
	}
	if c.seen[part] == 0 && rows > 0 {
		// The rows per example of the first batch set the sample's rate
		// so that the part's expected rows meet its cap.
		expected := float64(rows) / float64(max(n, 1)) * float64(c.examples[part])
		c.rate[part] = min(1, float64(limit)/max(expected, 1))
	}
	row := make([]float64, in)
	for i := range rows {
		g := c.seen[part] + i
		if !keep(c.caps.Seed, c.layer, part, g, c.rate[part]) {
			continue
		}
		if part == 1 {
			if c.acts.HeldRows >= limit {
				continue
			}
			src.row(i, row)
			if err := finiteRow(row); err != nil {
				return err
			}
			c.acts.Held = append(c.acts.Held, row...)
			c.acts.HeldRows++
			continue
		}
		if c.acts.Gram.Rows()+c.nbuf[0]+c.nbuf[1] >= limit {
			continue
		}
		src.row(i, row)
		// The fold is the example's parity: the rows of one example (a
		// convolution's patches) stay in one fold.
		f := (c.fitExamples + i*n/rows) % 2
		c.buf[f] = append(c.buf[f], row...)
		c.nbuf[f]++
		if c.nbuf[f] == gramBatch {
			if err := c.flush(f); err != nil {
				return err
			}
		}
	}
	c.seen[part] += rows
	if part == 0 {
		c.fitExamples += n
	}
	return nil
}

// flush adds the waiting fit rows of fold f to the Gram matrices.
func (c *collector) flush(f int) error {
	if c.nbuf[f] == 0 {
		return nil
	}
	err := c.acts.Gram.Add(c.buf[f], c.nbuf[f])
	if err == nil {
		err = c.acts.Folds[f].Add(c.buf[f], c.nbuf[f])
	}
	c.buf[f], c.nbuf[f] = c.buf[f][:0], 0
	return err
}

// finish returns the layer's activations.
func (c *collector) finish() (*Activations, error) {
	for f := range 2 {
		if err := c.flush(f); err != nil {
			return nil, err
		}
	}
	c.acts.FitSeen, c.acts.HeldSeen = c.seen[0], c.seen[1]
	return c.acts, nil
}

func finiteRow(row []float64) error {
	for _, v := range row {
		if !isFinite(v) {
			return fmt.Errorf("calibration rows: %w", compute.ErrNotFinite)
		}
	}
	return nil
}
