package calib

import (
	"context"
	"fmt"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/compute"
	"github.com/strata-ml/strata/internal/inputerr"
	"github.com/strata-ml/strata/modelmap"
)

// batchExamples is the number of examples of one forward pass.
const batchExamples = 64

// mlp runs a model of the MLP family in strata's engine, in float64.
type mlp struct {
	net *compute.Network[float64]
	// layers[i] is the network layer of the runner's layer i, and
	// original[i] its operator as loaded.
	layers   []int
	original []compute.Operator[float64]
	// x are the set's examples standardised as the model records, y
	// their targets.
	x, y [2][]float64
	n    [2]int
	ws   *compute.Workspace[float64]
}

// NewMLP returns a Runner of the MLP model m on set, whose layers are the
// linear layers with the given weight tensors ("<layer>.weight"), in that
// order. The examples go through m's recorded standardisation as the
// model sees them. A width other than the model's inputs, a generic
// checkpoint and an unknown tensor are bad input.
func NewMLP(m *arrowio.Model, tensors []string, set Set) (Runner, error) {
	net, err := modelmap.Network[float64](m)
	if err != nil {
		return nil, err
	}
	r := &mlp{net: net, ws: compute.NewWorkspace[float64]()}
	byName := map[string]int{}
	for _, p := range net.Params() {
		if p.Role == compute.RoleWeight && net.Operator(p.Layer) != nil {
			byName[p.Name] = p.Layer
		}
	}
	for _, t := range tensors {
		l, ok := byName[t]
		if !ok {
			return nil, inputerr.Errorf("the model has no dense linear layer of weight %q", t)
		}
		r.layers = append(r.layers, l)
		r.original = append(r.original, net.Operator(l))
	}
	for part, ex := range [2]Examples{set.Fit, set.Held} {
		ds, err := modelmap.Standardize(&arrowio.Dataset{X: ex.X, Y: ex.Y, N: ex.N, D: ex.D}, &m.Arch)
		if err != nil {
			return nil, err
		}
		if ds.D != net.Inputs() {
			return nil, inputerr.Errorf("the calibration data has %d features, the model takes %d", ds.D, net.Inputs())
		}
		r.x[part], r.y[part], r.n[part] = ds.X, ds.Y, ds.N
	}
	return r, nil
}

func (r *mlp) Engine() string { return "strata" }

func (r *mlp) Close() error { return nil }

func (r *mlp) Collect(ctx context.Context, layers []int, caps Caps) ([]*Activations, error) {
	caps = caps.withDefaults()
	cols := make([]*collector, len(layers))
	for i, l := range layers {
		_, in := r.original[l].Shape()
		cols[i] = newCollector(l, in, caps, r.n[0], r.n[1])
	}
	spec := r.net.Spec()
	outs := make([][]float64, len(spec.Layers))
	for part := range 2 {
		in := r.net.Inputs()
		for lo := 0; lo < r.n[part]; lo += batchExamples {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			n := min(batchExamples, r.n[part]-lo)
			for l := range outs {
				outs[l] = make([]float64, n*width(spec, l))
			}
			x := r.x[part][lo*in : (lo+n)*in]
			r.net.ForwardLayers(outs, x, n, r.ws)
			for i, l := range layers {
				src, w := x, in
				if nl := r.layers[l]; nl > 0 {
					src, w = outs[nl-1], width(spec, nl-1)
				}
				if err := cols[i].add(part, n, matrixRows[float64]{src, w}); err != nil {
					return nil, err
				}
			}
		}
	}
	acts := make([]*Activations, len(cols))
	for i, c := range cols {
		var err error
		if acts[i], err = c.finish(); err != nil {
			return nil, err
		}
	}
	return acts, nil
}

// width is the output width of layer l of a network spec.
func width(spec compute.NetworkSpec, l int) int {
	w := spec.Inputs
	for i := 0; i <= l; i++ {
		if spec.Layers[i].Kind == compute.KindLinear {
			w = spec.Layers[i].Out
		}
	}
	return w
}

func (r *mlp) Loss(ctx context.Context, swaps ...Swap) (float64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	for _, s := range swaps {
		if err := r.net.SetOperator(r.layers[s.Layer], compute.Convert[float64](s.Op)); err != nil {
			return 0, err
		}
	}
	defer func() {
		for _, s := range swaps {
			_ = r.net.SetOperator(r.layers[s.Layer], r.original[s.Layer])
		}
	}()
	loss, err := r.net.Loss(r.x[1], r.y[1], r.n[1], r.ws)
	if err != nil {
		return 0, inputerr.Errorf("calibration targets: %w", err)
	}
	if !isFinite(loss) {
		return 0, fmt.Errorf("the model's loss on the held-out calibration rows is %v", loss)
	}
	return loss, nil
}
