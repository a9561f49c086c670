package stages

import (
	"context"
	"errors"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"gonum.org/v1/gonum/mat"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/compute"
	"github.com/strata-ml/strata/modelmap"
)

// TestConvertConditionPolicy: convert.json's errors and condition numbers
// are those of W and of what the files store, computed independently from
// the input and the factors model (the errors to the bit: convert now
// takes them into W's own buffer against the input's rows, in a weight
// stored [out, in] and one stored [in, out]); --condition off leaves the
// condition numbers null with the reason.
func TestConvertConditionPolicy(t *testing.T) {
	dir := t.TempDir()
	const out, in = 48, 40
	w := make([]float32, out*in)
	for i := range w {
		w[i] = float32(math.Sin(float64(i)*0.37)) + float32(i%7)/10
	}
	// [in, out] with a bias of out values: read transposed (Conv1D).
	model := filepath.Join(dir, "m.safetensors")
	ts := []arrowio.Tensor{
		{Name: "a.weight", Shape: []int64{out, in}, Data: w},
		{Name: "b.weight", Shape: []int64{in, out}, Data: w},
		{Name: "b.bias", Shape: []int64{out}, Data: make([]float32, out)},
	}
	if err := arrowio.WriteSafetensors(model, ts, nil); err != nil {
		t.Fatal(err)
	}
	for _, policy := range []string{"", ConditionAuto, ConditionEstimate, ConditionOff} {
		t.Run("condition="+policy, func(t *testing.T) {
			cfg := DefaultConvertConfig()
			cfg.Model, cfg.Out, cfg.Condition, cfg.Blocks, cfg.ResidualRank = model, filepath.Join(dir, "out-"+policy), policy, 4, 2
			res, err := Convert(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			factors, err := arrowio.ReadModel(filepath.Join(cfg.Out, res.Outputs.Factors))
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Layers) != 2 {
				t.Fatalf("%d layers converted, want 2", len(res.Layers))
			}
			for _, l := range res.Layers {
				wm := mat.NewDense(out, in, nil)
				for i := range out {
					for j := range in {
						v := w[i*in+j]
						if l.Layout == arrowio.LayoutInOut {
							v = w[j*out+i]
						}
						wm.Set(i, j, float64(v))
					}
				}
				op, err := modelmap.Operator[float64](factors, l.Name, l.Hyperparameters)
				if err != nil {
					t.Fatal(err)
				}
				sum := op.(*compute.Sum[float64])
				trunk := compute.Dense(sum.Trunk())
				if got, want := float64(l.RelativeError), compute.RelativeError(wm, compute.Dense[float64](sum)); got != want {
					t.Errorf("%s: relative_error %.17g, the files give %.17g", l.Name, got, want)
				}
				if got, want := float64(l.TrunkRelativeError), compute.RelativeError(wm, trunk); got != want {
					t.Errorf("%s: trunk_relative_error %.17g, the files give %.17g", l.Name, got, want)
				}
				if policy == ConditionOff {
					if !math.IsNaN(float64(l.ConditionDense)) || !math.IsNaN(float64(l.ConditionTrunk)) || l.ConditionExact ||
						!strings.Contains(l.ConditionNote, "{condition} off") {
						t.Errorf("%s: off gave %v, %v (exact %v), note %q", l.Name, l.ConditionDense, l.ConditionTrunk, l.ConditionExact, l.ConditionNote)
					}
					continue
				}
				cd, exactD := compute.Condition(wm, 0)
				ct, exactT := compute.Condition(trunk, 0)
				if float64(l.ConditionDense) != cd || float64(l.ConditionTrunk) != ct || l.ConditionExact != (exactD && exactT) || l.ConditionNote != "" {
					t.Errorf("%s: conditions %v, %v (exact %v, note %q), want %v, %v (exact)", l.Name, l.ConditionDense, l.ConditionTrunk,
						l.ConditionExact, l.ConditionNote, cd, ct)
				}
			}
		})
	}
	cfg := DefaultConvertConfig()
	cfg.Model, cfg.Out, cfg.Condition = model, filepath.Join(dir, "bad"), "always"
	if _, err := Convert(context.Background(), cfg); !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), "condition") {
		t.Errorf("--condition always: %v, want bad input naming the field", err)
	}
}

// TestConvertConditionsAboveLimit: above compute's exact limit the
// condition numbers are null with a note naming the limit by default,
// and estimates with --condition estimate.
func TestConvertConditionsAboveLimit(t *testing.T) {
	limit := compute.ConditionExactLimit()
	for _, policy := range []string{ConditionAuto, ConditionEstimate} {
		cfg := DefaultConvertConfig()
		cfg.Condition = policy
		ok, note := cfg.conditions(limit+1, limit+8)
		if ok != (policy == ConditionEstimate) || (policy == ConditionAuto && !strings.Contains(note, "above 2048")) {
			t.Errorf("%s: conditions %v, note %q", policy, ok, note)
		}
		if ok, _ := cfg.conditions(limit, limit+8); !ok {
			t.Errorf("%s: no condition numbers at the limit", policy)
		}
	}
}
