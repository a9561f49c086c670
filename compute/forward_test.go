package compute

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/mat"
)

// TestCentralJacobian compares central differences on a smooth network
// (tanh, layer norm) with the exact Jacobian by backpropagation: the error
// is O(h^2) in float64, and a float32 evaluation with its rounded steps
// stays within the error u^(2/3) the step 4.9e-3 balances.
func TestCentralJacobian(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 5))
	spec := NetworkSpec{Task: TaskClassification, Inputs: 6, Layers: []LayerSpec{
		linearLayer(6, 9, true, nil), actLayer("tanh"), normLayer(), linearLayer(9, 4, true, nil),
	}}
	net := netRandomized(t, spec, rng)
	x := randRows(rng, 1, 6)
	exact := make([]float64, 4*6)
	net.InputJacobians(exact, x, 1, nil)
	scale := mat.Norm(mat.NewDense(4, 6, exact), 2)
	tests := []struct {
		name  string
		f     ForwardFunc
		h     float64
		round func(float64) float64
		tol   float64
	}{
		{"float64", NetworkForward(net, nil), 1e-4, nil, 1e-7},
		{"float32", NetworkForward(ConvertNetwork[float32](net), nil), 4.9e-3, func(v float64) float64 { return float64(float32(v)) }, 2e-4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := make([]float64, 6)
			for i := range h {
				h[i] = tt.h
			}
			got, fwd, bwd, err := CentralJacobian(tt.f, 6, 4, x, h, tt.round)
			if err != nil {
				t.Fatal(err)
			}
			for i := range got {
				if math.Abs(got[i]-exact[i]) > tt.tol*scale {
					t.Errorf("entry %d: %v, exact %v (tolerance %g of ||J||)", i, got[i], exact[i], tt.tol)
				}
				// One-sided: first order in h.
				if math.Abs(fwd[i]-exact[i]) > 10*tt.h*scale || math.Abs(bwd[i]-exact[i]) > 10*tt.h*scale {
					t.Errorf("entry %d: one-sided %v and %v, exact %v", i, fwd[i], bwd[i], exact[i])
				}
			}
		})
	}
	fail := errors.New("runtime gone")
	if _, _, _, err := CentralJacobian(func([]float64, []float64, int) error { return fail }, 6, 4, x, make([]float64, 6), nil); !errors.Is(err, fail) {
		t.Errorf("err = %v, want the forward pass's error", err)
	}
}

// TestCentralJacobianKink: at a ReLU kink within the step the one-sided
// differences disagree by the jump of the slope, and central is their
// average: f(x) = relu(x) has slopes 0 and 1 around 0.
func TestCentralJacobianKink(t *testing.T) {
	relu := func(y, x []float64, n int) error {
		for i := range n {
			y[i] = math.Max(0, x[i])
		}
		return nil
	}
	c, f, b, err := CentralJacobian(relu, 1, 1, []float64{0.25e-3}, []float64{1e-3}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(f[0]-1) > 1e-12 || math.Abs(b[0]-0.25) > 1e-12 || math.Abs(c[0]-0.625) > 1e-12 {
		t.Errorf("central %v forward %v backward %v, want 0.625, 1, 0.25", c[0], f[0], b[0])
	}
}
