package stages

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gonum.org/v1/gonum/mat"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/calib"
	"github.com/strata-ml/strata/compute"
	"github.com/strata-ml/strata/modelmap"
)

// writeCalibrationCSV writes n rows of d anisotropic features (feature j
// scaled by 1/(1+j), and correlated through a few shared factors, as
// activations are) with labels in [0, classes) to path.
func writeCalibrationCSV(t *testing.T, path string, n, d, classes int, seed uint64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 5))
	var b strings.Builder
	for j := range d {
		fmt.Fprintf(&b, "f%d,", j)
	}
	b.WriteString("label\n")
	for range n {
		f := [3]float64{rng.NormFloat64(), rng.NormFloat64(), rng.NormFloat64()}
		for j := range d {
			v := (f[j%3]*2 + rng.NormFloat64()*0.5) / float64(1+j)
			fmt.Fprintf(&b, "%g,", v)
		}
		fmt.Fprintf(&b, "%d\n", rng.IntN(classes))
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// calibrationFixture is a 32-64-64-4 MLP and 400 calibration rows.
func calibrationFixture(t *testing.T) (dir, model, data string) {
	t.Helper()
	dir = t.TempDir()
	model = writeTestModel(t, dir, "mlp.arrow", testMLP([]int{32, 64, 64, 4}, 7))
	data = filepath.Join(dir, "calib.csv")
	writeCalibrationCSV(t, data, 400, 32, 4, 8)
	return dir, model, data
}

// heldOutRows collects layer i's held-out calibration rows of cfg's run
// again, as convert does.
func heldOutRows(t *testing.T, cfg ConvertConfig, tensors []string, i int) *calib.Activations {
	t.Helper()
	set, rec, err := cfg.readCalibration(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	m, err := arrowio.ReadModel(cfg.Model)
	if err != nil {
		t.Fatal(err)
	}
	r, err := calib.NewMLP(m, tensors, set)
	if err != nil {
		t.Fatal(err)
	}
	acts, err := r.Collect(context.Background(), []int{i}, rec.Caps)
	if err != nil {
		t.Fatal(err)
	}
	return acts[0]
}

// The data-aware convert of an MLP: at the same structure (so the same
// parameters) every layer's held-out output error is lower fitted to its
// activations than to its weights; what is written is what convert.json
// says (its held-out error recomputed from model.arrow); and the run is
// deterministic.
func TestConvertCalibrationMLP(t *testing.T) {
	dir, model, data := calibrationFixture(t)
	cfg := DefaultConvertConfig()
	cfg.Model, cfg.Out, cfg.ResidualRank, cfg.Seed = model, filepath.Join(dir, "wo"), 4, 3
	wo, err := Convert(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Out, cfg.Calibration = filepath.Join(dir, "da"), data
	da, err := Convert(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if c := da.Calibration; c == nil || c.Rows != 400 || c.Fit != 300 || c.Held != 100 || c.Engine != "strata" || c.Passes != 1 {
		t.Fatalf("calibration record %+v, want 400 rows, 300 fit, 100 held, strata, 1 pass", c)
	}
	// The 4 x 64 head is kept dense: S + R would not be smaller.
	if len(da.Layers) != 2 || len(wo.Layers) != 2 {
		t.Fatalf("%d and %d layers converted, want 2", len(da.Layers), len(wo.Layers))
	}
	written, err := arrowio.ReadModel(filepath.Join(cfg.Out, "model.arrow"))
	if err != nil {
		t.Fatal(err)
	}
	net, err := modelmap.Network[float64](written)
	if err != nil {
		t.Fatal(err)
	}
	orig, err := arrowio.ReadModel(model)
	if err != nil {
		t.Fatal(err)
	}
	tensors := []string{"0.weight", "2.weight", "4.weight"}
	for i, l := range da.Layers {
		c := l.Calibration
		if l.Params != wo.Layers[i].Params {
			t.Errorf("%s: %d parameters, weight-only %d", l.Name, l.Params, wo.Layers[i].Params)
		}
		if !(c.DataAwareError < c.WeightOnlyError) || c.Written != WrittenDataAware {
			t.Errorf("%s: held-out error data-aware %.4g, weight-only %.4g, written %s", l.Name, c.DataAwareError, c.WeightOnlyError, c.Written)
		}
		if c.FitRows != 300 || c.HeldRows != 100 || c.Ridge != compute.DefaultRidge {
			t.Errorf("%s: %d fit and %d held rows at ridge %g, want 300, 100 and %g", l.Name, c.FitRows, c.HeldRows, c.Ridge, compute.DefaultRidge)
		}
		a := heldOutRows(t, cfg, tensors, i)
		wt, _ := orig.Tensor(tensors[i])
		w := mat.NewDense(l.Shape[0], l.Shape[1], nil)
		for k, v := range wt.Data {
			w.RawMatrix().Data[k] = float64(v)
		}
		got := compute.OutputRelativeError(w, compute.Dense(net.Operator(2*i)), a.Held, a.HeldRows)
		if math.Abs(got-float64(c.DataAwareError)) > 1e-9 {
			t.Errorf("%s: model.arrow's held-out error %.12g, convert.json says %.12g", l.Name, got, c.DataAwareError)
		}
	}
	cfg.Out = filepath.Join(dir, "da2")
	if _, err := Convert(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readFile(t, filepath.Join(dir, "da", "model.arrow")), readFile(t, filepath.Join(dir, "da2", "model.arrow"))) {
		t.Error("same input and seed gave different model.arrow bytes")
	}
}

// --calibration-fit residual keeps the weight-only trunk and fits only
// the correction to the activations: the trunk's tensors are the
// weight-only run's, bit for bit, and the held-out error is lower.
func TestConvertCalibrationResidualFit(t *testing.T) {
	dir, model, data := calibrationFixture(t)
	cfg := DefaultConvertConfig()
	cfg.Model, cfg.Out, cfg.ResidualRank, cfg.Seed = model, filepath.Join(dir, "wo"), 4, 3
	if _, err := Convert(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	cfg.Out, cfg.Calibration, cfg.CalibrationFit = filepath.Join(dir, "res"), data, CalibrationFitResidual
	res, err := Convert(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	wo, err := arrowio.ReadModel(filepath.Join(dir, "wo", "model.arrow"))
	if err != nil {
		t.Fatal(err)
	}
	fit, err := arrowio.ReadModel(filepath.Join(dir, "res", "model.arrow"))
	if err != nil {
		t.Fatal(err)
	}
	var trunks, corrections int
	for _, tw := range wo.Tensors {
		tf, _ := fit.Tensor(tw.Name)
		same := fmt.Sprint(tw.Data) == fmt.Sprint(tf.Data)
		switch tw.Role {
		case compute.RoleTrunk:
			trunks++
			if !same {
				t.Errorf("trunk tensor %s differs from the weight-only trunk", tw.Name)
			}
		case compute.RoleCorrection:
			if !same {
				corrections++
			}
		}
	}
	if trunks == 0 || corrections == 0 {
		t.Errorf("%d trunk tensors compared, %d corrections refitted; want both", trunks, corrections)
	}
	for _, l := range res.Layers {
		if c := l.Calibration; !(c.DataAwareError < c.WeightOnlyError) {
			t.Errorf("%s: held-out error data-aware %.4g, weight-only %.4g", l.Name, c.DataAwareError, c.WeightOnlyError)
		}
	}
}

// --structure auto --model-budget: the assignment meets the budget, each
// layer's written structure and parameters are its chosen option's, and
// the chosen options have the least total measured loss increase of all
// combinations within the budget (brute force over the recorded options).
// --loss-tolerance meets its tolerance.
func TestConvertModelBudget(t *testing.T) {
	dir, model, data := calibrationFixture(t)
	cfg := DefaultConvertConfig()
	cfg.Model, cfg.Out, cfg.Calibration, cfg.Structure, cfg.ModelBudget, cfg.Seed = model, filepath.Join(dir, "budget"), data, StructureAuto, 0.3, 3
	res, err := Convert(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ma := res.ModelAuto
	if ma == nil || !ma.Met || ma.ParamsDense != 32*64+64*64+64*4 || ma.Params > ma.ParamsLimit || ma.ParamsLimit != int(0.3*float64(ma.ParamsDense)) {
		t.Fatalf("assignment %+v does not meet the budget 0.3", ma)
	}
	if !isFinite(float64(ma.MeasuredLossIncrease)) || ma.Forwards < 3 {
		t.Errorf("measured increase %v after %d forwards", ma.MeasuredLossIncrease, ma.Forwards)
	}
	converted := map[string]ConvertedLayer{}
	for _, l := range res.Layers {
		converted[l.Name] = l
	}
	for _, l := range ma.Layers {
		o := l.Options[l.Chosen]
		c, ok := converted[l.Name]
		if o.Structure == compute.FamilyDense {
			if ok {
				t.Errorf("%s: chosen dense, converted", l.Name)
			}
			continue
		}
		if !ok || c.Params != o.Params || c.Hyperparameters.String() != o.Structure {
			t.Errorf("%s: chose %s (%d parameters), wrote %s (%d)", l.Name, o.Structure, o.Params, c.Hyperparameters, c.Params)
		}
	}
	best := math.Inf(1)
	var walk func(k, params int, loss float64)
	walk = func(k, params int, loss float64) {
		if params > ma.ParamsLimit {
			return
		}
		if k == len(ma.Layers) {
			best = min(best, loss)
			return
		}
		for _, o := range ma.Layers[k].Options {
			walk(k+1, params+o.Params, loss+o.LossIncrease)
		}
	}
	walk(0, 0, 0)
	if math.Abs(best-ma.LossIncrease) > 1e-12 {
		t.Errorf("assignment's total increase %.12g, the best within the budget %.12g", ma.LossIncrease, best)
	}

	cfg.Out, cfg.ModelBudget, cfg.LossTolerance = filepath.Join(dir, "tolerance"), 0, 0.05
	tol, err := Convert(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if mt := tol.ModelAuto; !mt.Met || mt.LossIncrease > 0.05 || mt.Params >= mt.ParamsDense {
		t.Errorf("tolerance 0.05: %+v", *mt)
	}
}

// Bad calibration input and options are bad input, refused before
// anything is written.
func TestConvertCalibrationBadInput(t *testing.T) {
	dir, model, data := calibrationFixture(t)
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	header := "f0,f1,label\n"
	generic := filepath.Join(dir, "generic.safetensors")
	if err := arrowio.WriteSafetensors(generic, []arrowio.Tensor{{Name: "enc.q.weight", Shape: []int64{8, 32}, Data: seq32(256)}}, nil); err != nil {
		t.Fatal(err)
	}
	wide := filepath.Join(dir, "wide.csv")
	writeCalibrationCSV(t, wide, 20, 33, 4, 1)
	tests := []struct {
		name string
		mod  func(*ConvertConfig)
		want string
	}{
		{"missing file", func(c *ConvertConfig) { c.Calibration = filepath.Join(dir, "absent.csv") }, "absent.csv"},
		{"no rows", func(c *ConvertConfig) { c.Calibration = write("empty.csv", header) }, "empty.csv"},
		{"one row", func(c *ConvertConfig) { c.Calibration = write("one.csv", header+"1,2,0\n") }, "at least 2"},
		{"NaN", func(c *ConvertConfig) { c.Calibration = write("nan.csv", header+"1,NaN,0\n2,3,1\n") }, "nan.csv"},
		{"wrong width", func(c *ConvertConfig) { c.Calibration = wide }, "33 features"},
		{"no label column", func(c *ConvertConfig) { c.Label = "target" }, "target"},
		{"generic checkpoint", func(c *ConvertConfig) { c.Model = generic }, "no architecture"},
		{"holdout of 1", func(c *ConvertConfig) { c.CalibrationHoldout = 1 }, "calibration_holdout"},
		{"unknown fit", func(c *ConvertConfig) { c.CalibrationFit = "both" }, "calibration_fit"},
		{"negative ridge", func(c *ConvertConfig) { c.CalibrationRidge = -1 }, "calibration_ridge"},
		{"budget without auto", func(c *ConvertConfig) { c.ModelBudget = 0.5 }, "structure auto"},
		{"budget without calibration", func(c *ConvertConfig) {
			c.Calibration, c.Structure, c.ModelBudget = "", StructureAuto, 0.5
		}, "need calibration"},
		{"budget over 1", func(c *ConvertConfig) { c.Structure, c.ModelBudget = StructureAuto, 1.5 }, "model_budget"},
		{"budget and tolerance", func(c *ConvertConfig) { c.Structure, c.ModelBudget, c.LossTolerance = StructureAuto, 0.5, 0.1 }, "one of"},
		{"budget and target error", func(c *ConvertConfig) { c.Structure, c.ModelBudget, c.TargetError = StructureAuto, 0.5, 0.1 }, "one kind"},
		{"unknown auto family", func(c *ConvertConfig) {
			c.Structure, c.ParamBudget, c.AutoFamilies = StructureAuto, 0.5, []string{"fourier"}
		}, "fourier"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConvertConfig()
			cfg.Model, cfg.Calibration, cfg.Out = model, data, filepath.Join(dir, "out-"+tt.name)
			tt.mod(&cfg)
			_, err := Convert(context.Background(), cfg)
			if !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want bad input naming %q", err, tt.want)
			}
			if got := dirEntries(t, cfg.Out); len(got) != 0 {
				t.Errorf("bad input left output %v", got)
			}
		})
	}
}
