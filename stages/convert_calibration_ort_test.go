//go:build onnxruntime

package stages

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-ml/strata/compute"
	"github.com/strata-ml/strata/internal/testmodels"
	"github.com/strata-ml/strata/onnxrt"
)

// This file is the evidence of data-aware conversion on the test models
// (digits): an MLP trained here by finetune, and the PyTorch-trained CNN
// and transformer of internal/testmodels in ONNX Runtime. Calibration is
// on the training rows, accuracy on the evaluation rows the models never
// saw, before any fine-tuning. The tables are logged (go test -v -run
// 'TestDataAware|TestModelBudget' -tags 'openblas onnxruntime' ./stages/).

// digitsModel is a model of the evidence and how to score a converted
// copy of it.
type digitsModel struct {
	name  string
	path  string
	score func(t *testing.T, res *ConvertResult, dir string) float64
	// conv is --conv-structure for the k x k convolutions.
	conv string
}

// evidenceModels returns the MLP (trained into dir), the CNN and the
// transformer.
func evidenceModels(t *testing.T, dir string) (*testmodels.Set, []digitsModel) {
	t.Helper()
	set := testmodels.Build(t)
	eval, _, err := readData(context.Background(), set.EvalCSV, "label")
	if err != nil {
		t.Fatal(err)
	}
	ft := DefaultFinetuneConfig()
	ft.Init, ft.Train, ft.Out, ft.Epochs, ft.LR, ft.Seed = "mlp:64-128-128-10:relu", set.TrainCSV, filepath.Join(dir, "mlp"), 40, 3e-3, 1
	fres, err := Finetune(context.Background(), ft)
	if err != nil {
		t.Fatal(err)
	}
	mlp := digitsModel{name: "digits MLP (strata)", path: filepath.Join(ft.Out, fres.Outputs.Model),
		score: func(t *testing.T, res *ConvertResult, dir string) float64 {
			path := filepath.Join(ft.Out, fres.Outputs.Model)
			if res != nil {
				path = filepath.Join(dir, res.Outputs.Model)
			}
			_, acc, _, err := scoreModelFile(context.Background(), path, "", eval)
			if err != nil {
				t.Fatal(err)
			}
			return float64(*acc)
		}}
	onnxModel := func(m *testmodels.Model) digitsModel {
		return digitsModel{name: m.Name + " (ONNX)", path: m.ONNX, conv: compute.FamilyLowRank,
			score: func(t *testing.T, res *ConvertResult, dir string) float64 {
				path := m.ONNX
				if res != nil {
					path = filepath.Join(dir, res.Outputs.Model)
				}
				return onnxAccuracy(t, path, m, set)
			}}
	}
	return set, []digitsModel{mlp, onnxModel(set.CNN), onnxModel(set.Transformer)}
}

// onnxAccuracy is the accuracy of the ONNX model at path, in ONNX
// Runtime, on the evaluation rows shaped as m's input.
func onnxAccuracy(t *testing.T, path string, m *testmodels.Model, set *testmodels.Set) float64 {
	t.Helper()
	s, err := onnxrt.OpenFile(path, onnxrt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	y, err := s.Run([]onnxrt.Tensor{onnxrt.NewFloat32(m.Input.Shape, m.Input.Float32)})
	if err != nil {
		t.Fatal(err)
	}
	z := y[0].Float32
	n := len(set.EvalY.Int64)
	c := len(z) / n
	right := 0
	for i, label := range set.EvalY.Int64 {
		arg := 0
		for k := range c {
			if z[i*c+k] > z[i*c+arg] {
				arg = k
			}
		}
		if int64(arg) == label {
			right++
		}
	}
	return float64(right) / float64(n)
}

// convertTimed converts as cfg says into dir and returns the result with
// its wall time.
func convertTimed(t *testing.T, cfg ConvertConfig) (*ConvertResult, time.Duration) {
	t.Helper()
	start := time.Now()
	res, err := Convert(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return res, time.Since(start)
}

// At equal parameters (the same structure: monarch b=4 with a rank-8
// residual, the k x k convolutions lowrank), every converted layer of
// every test model has a lower output error on the held-out calibration
// rows fitted to its activations than fitted to its weights, and the
// data-aware model classifies the evaluation rows better before any
// fine-tuning.
func TestDataAwareBeatsWeightOnly(t *testing.T) {
	dir := t.TempDir()
	set, models := evidenceModels(t, dir)
	var table strings.Builder
	fmt.Fprintf(&table, "\n| model | dense | weight-only | data-aware | convert s (weight-only / data-aware) | layer: held-out output error weight-only -> data-aware |\n|---|---|---|---|---|---|\n")
	for k, m := range models {
		t.Run(m.name, func(t *testing.T) {
			cfg := DefaultConvertConfig()
			cfg.Model, cfg.ConvStructure, cfg.Seed = m.path, m.conv, 1
			cfg.Out = filepath.Join(dir, fmt.Sprint("wo", k))
			wo, woTime := convertTimed(t, cfg)
			cfg.Out, cfg.Calibration = filepath.Join(dir, fmt.Sprint("da", k)), set.TrainCSV
			da, daTime := convertTimed(t, cfg)
			if len(da.Layers) == 0 || len(da.Layers) != len(wo.Layers) {
				t.Fatalf("%d layers data-aware, %d weight-only", len(da.Layers), len(wo.Layers))
			}
			var layers []string
			for i, l := range da.Layers {
				c := l.Calibration
				if l.Params != wo.Layers[i].Params || l.Hyperparameters.String() != wo.Layers[i].Hyperparameters.String() {
					t.Errorf("%s: %s with %d parameters, weight-only %s with %d", l.Name, l.Hyperparameters, l.Params, wo.Layers[i].Hyperparameters, wo.Layers[i].Params)
				}
				if !(c.DataAwareError < c.WeightOnlyError) || c.Written != WrittenDataAware {
					t.Errorf("%s: held-out output error data-aware %.4g, weight-only %.4g (written %s)", l.Name, c.DataAwareError, c.WeightOnlyError, c.Written)
				}
				layers = append(layers, fmt.Sprintf("%s %.3f -> %.3f", l.Name, c.WeightOnlyError, c.DataAwareError))
			}
			base, accWO, accDA := m.score(t, nil, ""), m.score(t, wo, wo.Config.Out), m.score(t, da, da.Config.Out)
			if !(accDA > accWO) {
				t.Errorf("accuracy before fine-tuning: data-aware %.4f, weight-only %.4f", accDA, accWO)
			}
			fmt.Fprintf(&table, "| %s | %.4f | %.4f | %.4f | %.2f / %.2f | %s |\n", m.name, base, accWO, accDA,
				woTime.Seconds(), daTime.Seconds(), strings.Join(layers, "; "))
		})
	}
	t.Log(table.String())
}

// --structure auto with --model-budget meets the budget and classifies
// the evaluation rows better before fine-tuning than the best
// single-family conversion at that budget: per family, every layer
// within the same share of its dense parameters (--structure auto
// --param-budget B --auto-families F, the structure auto picks on the
// weights, fitted to the activations as well).
func TestModelBudgetBeatsSingleFamily(t *testing.T) {
	dir := t.TempDir()
	set, models := evidenceModels(t, dir)
	budgets := map[string]float64{models[0].name: 0.25, models[1].name: 0.3}
	var table strings.Builder
	fmt.Fprintf(&table, "\n| model | budget | auto (params, s) | best single family | every family |\n|---|---|---|---|---|\n")
	for k, m := range models[:2] {
		t.Run(m.name, func(t *testing.T) {
			b := budgets[m.name]
			cfg := DefaultConvertConfig()
			cfg.Model, cfg.Seed, cfg.Calibration, cfg.Structure, cfg.ModelBudget = m.path, 1, set.TrainCSV, StructureAuto, b
			cfg.Out = filepath.Join(dir, fmt.Sprint("auto", k))
			auto, autoTime := convertTimed(t, cfg)
			ma := auto.ModelAuto
			if !ma.Met || ma.Params > ma.ParamsLimit || float64(ma.Params) > b*float64(ma.ParamsDense) {
				t.Fatalf("assignment %+v misses the budget %g", *ma, b)
			}
			accAuto := m.score(t, auto, auto.Config.Out)
			best, bestName := math.Inf(-1), ""
			var every []string
			for _, f := range compute.TrunkFamilies {
				fc := DefaultConvertConfig()
				fc.Model, fc.Seed, fc.Calibration, fc.Structure, fc.ParamBudget, fc.AutoFamilies = m.path, 1, set.TrainCSV, StructureAuto, b, []string{f}
				fc.Out = filepath.Join(dir, fmt.Sprint(f, k))
				start := time.Now()
				res, err := Convert(context.Background(), fc)
				if errors.Is(err, compute.ErrSpec) || (err == nil && res.MissedTarget() != nil) {
					every = append(every, f+" cannot") // no candidate of the family fits some layer's share
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("%s: %.1f s", f, time.Since(start).Seconds())
				if r := float64(res.Totals.Params) / float64(ma.ParamsDense); r > b {
					t.Fatalf("%s: %d parameters over the budget", f, res.Totals.Params)
				}
				acc := m.score(t, res, fc.Out)
				every = append(every, fmt.Sprintf("%s %.4f", f, acc))
				if acc > best {
					best, bestName = acc, f
				}
			}
			if !(accAuto > best) {
				t.Errorf("auto at budget %g: accuracy %.4f, the best single family (%s) %.4f", b, accAuto, bestName, best)
			}
			fmt.Fprintf(&table, "| %s | %g | %.4f (%d of %d, %.1f s) | %s %.4f | %s |\n", m.name, b, accAuto, ma.Params, ma.ParamsDense,
				autoTime.Seconds(), bestName, best, strings.Join(every, ", "))
		})
	}
	t.Log(table.String())
}
