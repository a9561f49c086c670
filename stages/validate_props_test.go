package stages

import (
	"context"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/compute"
	"github.com/strata-ml/strata/validation"
)

// This file holds the invariance properties of validate's metric
// definitions: jacobian_condition and the last layer's condition do not
// depend on the units of the features nor on a shift of the logits that
// no softmax sees.

// quantize rounds every weight of m to a multiple of 2^-12, so that the
// sums and power-of-two scalings the tests apply are exact in float32.
func quantize(m *arrowio.Model) {
	for _, t := range m.Tensors {
		for i, v := range t.Data {
			t.Data[i] = float32(math.Round(float64(v)*4096) / 4096)
		}
	}
}

// propsData writes n rows of d seeded features (float32 values) and
// labels of k classes.
func propsData(t *testing.T, path string, n, d, k int, seed uint64, colScale []float64) *arrowio.Dataset {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 2))
	ds := &arrowio.Dataset{N: n, D: d}
	for i := range n {
		for j := range d {
			v := float64(float32(rng.NormFloat64()*(1+float64(j)) + float64(j)))
			if colScale != nil {
				v *= colScale[j]
			}
			ds.X = append(ds.X, v)
		}
		ds.Y = append(ds.Y, float64(i%k))
	}
	if err := arrowio.WriteDataset(path, ds); err != nil {
		t.Fatal(err)
	}
	return ds
}

// validateQuick validates candidate against baseline on data with small
// settings.
func validateQuick(t *testing.T, baseline, candidate, data, out string) *validation.Result {
	t.Helper()
	cfg := validation.DefaultConfig()
	cfg.Baseline, cfg.Candidate, cfg.Data, cfg.Out = baseline, candidate, data, out
	cfg.Bootstrap, cfg.LatencyRuns, cfg.LatencyWarmup = 50, 2, 0
	res, err := Validate(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func relDiff(a, b *validation.NullableFloat) float64 {
	if a == nil || b == nil {
		return math.Inf(1)
	}
	return math.Abs(float64(*a)-float64(*b)) / math.Abs(float64(*a))
}

// part returns the part of m named name.
func part(t *testing.T, m *validation.Metric, name string) *validation.Metric {
	t.Helper()
	for _, p := range m.Parts {
		if p.Name == name {
			return p
		}
	}
	t.Fatalf("no part %q", name)
	return nil
}

// TestJacobianFeatureScaling: scaling feature j of the data by c_j and
// the first layer's weight column j by 1 / c_j (a model without
// standardisation), or the recorded standardisation's mean and std by c_j
// (a model with one), computes the same function of the data in other
// units: jacobian_condition, on the standardised input, is unchanged to
// 1e-9 while its raw_input part moves. The factors are powers of two so
// that the scaled float32 data and weights are exact.
func TestJacobianFeatureScaling(t *testing.T) {
	c := []float64{1, 4, 0.125, 1, 16, 0.5}
	for _, standardised := range []bool{false, true} {
		name := map[bool]string{false: "no standardisation", true: "recorded standardisation"}[standardised]
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			dataA, dataB := filepath.Join(dir, "a.arrow"), filepath.Join(dir, "b.arrow")
			ds := propsData(t, dataA, 80, 6, 4, 1, nil)
			propsData(t, dataB, 80, 6, 4, 1, c)
			a := testMLP([]int{6, 16, 12, 4}, 3)
			b := testMLP([]int{6, 16, 12, 4}, 3)
			if standardised {
				mean, std := compute.FitStandardization(ds.X, ds.N, ds.D)
				a.Arch.Standardization = &arrowio.Standardization{Mean: mean, Std: std}
				b.Arch.Standardization = &arrowio.Standardization{Mean: slices.Clone(mean), Std: slices.Clone(std)}
				for j := range c {
					b.Arch.Standardization.Mean[j] *= c[j]
					b.Arch.Standardization.Std[j] *= c[j]
				}
			} else {
				w := b.Tensors[0].Data // "0.weight", 16 x 6
				for r := range 16 {
					for j := range 6 {
						w[r*6+j] /= float32(c[j])
					}
				}
			}
			ma, mb := writeTestModel(t, dir, "model-a.arrow", a), writeTestModel(t, dir, "model-b.arrow", b)
			ra := validateQuick(t, ma, ma, dataA, filepath.Join(dir, "va"))
			rb := validateQuick(t, mb, mb, dataB, filepath.Join(dir, "vb"))
			ja, jb := ra.Metrics[validation.MetricJacobianCondition], rb.Metrics[validation.MetricJacobianCondition]
			if d := relDiff(ja.Baseline, jb.Baseline); d > 1e-9 {
				t.Errorf("jacobian_condition %s -> %s (relative %g): the units of the features moved it", fv(ja.Baseline), fv(jb.Baseline), d)
			}
			if d := relDiff(part(t, ja, "log_sigma_std").Baseline, part(t, jb, "log_sigma_std").Baseline); d > 1e-9 {
				t.Errorf("log_sigma_std moved by %g", d)
			}
			if d := relDiff(part(t, ja, "raw_input").Baseline, part(t, jb, "raw_input").Baseline); d < 0.01 {
				t.Errorf("the raw-input condition moved by only %g: the test scaled nothing that matters", d)
			}
			if *ra.Metrics[validation.MetricAccuracy].Baseline != *rb.Metrics[validation.MetricAccuracy].Baseline {
				t.Error("the rescaled model computes another function")
			}
		})
	}
}

// TestJacobianLogitShift: adding one vector u to every class row of the
// last weight moves every logit of a row by the same u.h, which no
// probability sees: predictions and loss stay, and so do
// jacobian_condition and the last layer's condition (to 1e-9), taken on
// the centred logits and rows. For two classes, u = -(w0 + w1) / 2
// rewrites the layer as z' = +-(z0 - z1) / 2.
func TestJacobianLogitShift(t *testing.T) {
	tests := []struct {
		name  string
		sizes []int
		u     func(w []float32, k, in int) []float32
	}{
		{"ten classes, a random u", []int{6, 32, 10}, func(_ []float32, _, in int) []float32 {
			rng := rand.New(rand.NewPCG(4, 4))
			u := make([]float32, in)
			for i := range u {
				u[i] = float32(math.Round(rng.NormFloat64()*0.5*4096) / 4096)
			}
			return u
		}},
		{"two classes, z' = +-(z0 - z1)/2", []int{8, 16, 2}, func(w []float32, _, in int) []float32 {
			u := make([]float32, in)
			for i := range u {
				u[i] = -(w[i] + w[in+i]) / 2
			}
			return u
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			k := tt.sizes[len(tt.sizes)-1]
			data := filepath.Join(dir, "data.arrow")
			propsData(t, data, 60, tt.sizes[0], k, 5, nil)
			a := testMLP(tt.sizes, 6)
			quantize(a)
			b := testMLP(tt.sizes, 6)
			quantize(b)
			last := b.Tensors[len(b.Tensors)-2] // the last weight, k x in
			in := int(last.Shape[1])
			u := tt.u(last.Data, k, in)
			for r := range k {
				for i := range in {
					last.Data[r*in+i] += u[i]
				}
			}
			res := validateQuick(t, writeTestModel(t, dir, "a.arrow", a), writeTestModel(t, dir, "b.arrow", b), data, filepath.Join(dir, "val"))
			acc, loss := res.Metrics[validation.MetricAccuracy], res.Metrics[validation.MetricLoss]
			if *acc.Delta != 0 || math.Abs(float64(*loss.Delta)) > 1e-6 {
				t.Fatalf("accuracy delta %v, loss delta %v: the shift changed the predictions", *acc.Delta, *loss.Delta)
			}
			jc := res.Metrics[validation.MetricJacobianCondition]
			if d := relDiff(jc.Baseline, jc.Candidate); d > 1e-9 {
				t.Errorf("jacobian_condition %s -> %s (relative %g; %s)", fv(jc.Baseline), fv(jc.Candidate), d, jc.Reason)
			}
			if d := relDiff(part(t, jc, "log_sigma_std").Baseline, part(t, jc, "log_sigma_std").Candidate); d > 1e-9 && k > 2 {
				t.Errorf("log_sigma_std moved by %g", d)
			}
			l := res.Layers[len(res.Layers)-1]
			if d := relDiff(l.LayerCondition.Baseline, l.LayerCondition.Candidate); d > 1e-9 {
				t.Errorf("last layer's condition %s -> %s (relative %g; %s)", fv(l.LayerCondition.Baseline), fv(l.LayerCondition.Candidate), d, l.LayerCondition.Reason)
			}
			lc := res.Metrics[validation.MetricLayerCondition]
			if d := relDiff(lc.Baseline, lc.Candidate); d > 1e-9 {
				t.Errorf("layer_condition %s -> %s", fv(lc.Baseline), fv(lc.Candidate))
			}
			// Without centring the shift shows: the rows' own spectrum moved.
			wa := compute.NewDenseOp(k, in, a.Tensors[len(a.Tensors)-2].Data).SingularValues(nil)
			wb := compute.NewDenseOp(k, in, last.Data).SingularValues(nil)
			if math.Abs(wa[0]-wb[0]) < 0.01*wa[0] && math.Abs(wa[len(wa)-1]-wb[len(wb)-1]) < 0.01*wa[len(wa)-1] {
				t.Errorf("the shift left the uncentred spectrum (%v -> %v): the test changes nothing", wa, wb)
			}
		})
	}
}

// TestGradNormRatioFewBatches: 142 rows in batches of 64 are 2 gradient
// batches, fewer than the 20 units an interval needs: grad_norm_ratio has
// its value and a null interval with the reason.
func TestGradNormRatioFewBatches(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data.arrow")
	propsData(t, data, 142, 6, 3, 7, nil)
	m := writeTestModel(t, dir, "m.arrow", testMLP([]int{6, 10, 3}, 8))
	res := validateQuick(t, m, m, data, filepath.Join(dir, "val"))
	g := res.Metrics[validation.MetricGradNormRatio]
	if g.Baseline == nil || g.CI95 != nil || !strings.Contains(g.CIReason, "2 evaluation batches, fewer than the 20 units") {
		t.Errorf("grad_norm_ratio over 2 batches: value %s, interval %v (%q); want a value and no interval, with the reason", fv(g.Baseline), g.CI95, g.CIReason)
	}
	if a := res.Metrics[validation.MetricAccuracy]; a.CI95 == nil || a.Units != 142 || a.UnitName != validation.UnitExamples {
		t.Errorf("accuracy over 142 rows: interval %v, units %d %q", a.CI95, a.Units, a.UnitName)
	}
}
