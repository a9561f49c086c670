package stages

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"time"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/compute"
	"github.com/strata-ml/strata/internal/inputerr"
	"github.com/strata-ml/strata/internal/provenance"
	"github.com/strata-ml/strata/modelmap"
	"github.com/strata-ml/strata/validation"
)

// trainState is the progress of a run: everything besides the network
// and the optimiser that a checkpoint must hold for a resumed run to
// continue exactly. Nothing in it is random: the batch of a step is a
// function of (Seed, step), so the step counter is the whole data state.
type trainState[T compute.Float] struct {
	step    int
	stopped bool // early stopping fired
	// best is the epoch with the lowest validation loss so far and
	// sinceBest the epochs since; bestParams its weights, aligned with
	// Params, kept only when Patience > 0.
	best       *EpochMetrics
	sinceBest  int
	bestParams [][]T
	// trainSeconds is the time spent in optimisation steps, over every
	// attempt.
	trainSeconds float64
	log          arrowio.TrainLog
	// checkpointed is the step of the last checkpoint written or loaded,
	// -1 for none.
	checkpointed int
}

// runFinetune trains in precision T and writes the outputs.
func runFinetune[T compute.Float](ctx context.Context, p *finetunePlan) (*FinetuneResult, error) {
	cfg := p.cfg
	log := cfg.Logger
	st := &trainState[T]{checkpointed: -1, log: arrowio.TrainLog{Layers: linearLayers(p.arch)}}
	var (
		net      *compute.Network[T]
		optState *compute.OptimizerState[T]
		err      error
	)
	resumedFrom := 0
	if cfg.Resume {
		ck, err := loadCheckpoint[T](p)
		if err != nil {
			return nil, err
		}
		if ck != nil {
			net, optState, st = ck.net, &ck.opt, ck.state
			resumedFrom = st.step
			log.Info("resuming from checkpoint", "dir", checkpointDir(cfg.Out), "step", st.step, "of", p.totalSteps)
		} else {
			log.Info("no checkpoint to resume from; starting at step 0", "dir", checkpointDir(cfg.Out))
		}
	}
	fresh := net == nil
	if fresh {
		if net, err = initialNetwork[T](p); err != nil {
			return nil, err
		}
	}
	trainable := net.NumParams()
	if cfg.Freeze != "" && net.Freeze(cfg.Freeze) == 0 {
		return nil, inputerr.Fieldf("finetune", "{freeze} %s: the model has no %s parameters (it has no decomposed layers)", cfg.Freeze, cfg.Freeze)
	}
	frozen := trainable - net.NumParams()
	if fresh {
		// A stale checkpoint of an earlier run must not be resumed later.
		if err := os.RemoveAll(checkpointDir(cfg.Out)); err != nil {
			return nil, fmt.Errorf("finetune: remove stale checkpoint: %w", err)
		}
	}
	trainer, err := compute.NewTrainer(net, cfg.trainerConfig())
	if err != nil {
		return nil, classify(fmt.Errorf("finetune: %w", err))
	}
	defer trainer.Close()
	if optState != nil {
		if err := trainer.Optimizer().SetState(*optState); err != nil {
			return nil, inputerr.Errorf("finetune: checkpoint in %s: %w", checkpointDir(cfg.Out), err)
		}
	}

	d, n := p.train.D, p.train.N
	trainX, trainY := toT[T](p.train.X), toT[T](p.train.Y)
	var validX, validY []T
	if p.valid != nil {
		validX, validY = toT[T](p.valid.X), toT[T](p.valid.Y)
	}
	log.Info("finetune start", "params", net.NumParams(), "params_frozen", frozen,
		"train_rows", n, "valid_rows", rowsOf(p.valid), "epochs", cfg.Epochs, "steps", p.totalSteps,
		"batch_size", cfg.BatchSize, "precision", cfg.Precision, "standardization", p.standardization)

	// A batch larger than the data is the whole data: the buffers need
	// no more rows than there are (the batches are the same).
	bs, spe, total := min(cfg.BatchSize, n), p.stepsPerEpoch, p.totalSteps
	xb, yb := make([]T, bs*d), make([]T, bs)
	ws := compute.NewWorkspace[T]()
	var perm []int
	permEpoch := -1
	interval := cfg.LogInterval
	if interval == 0 {
		interval = 10 * time.Second
	}
	lastLog := time.Now()
	var samplesHere int
	var secondsHere float64

	for st.step < total && !st.stopped {
		if err := ctx.Err(); err != nil {
			return nil, interrupted(p, net, trainer, st, err)
		}
		epoch, k := st.step/spe, st.step%spe
		if epoch != permEpoch {
			perm = compute.Permutation(n, cfg.Seed, shuffleStream<<32|uint64(epoch))
			permEpoch = epoch
		}
		rows := perm[k*bs : min((k+1)*bs, n)]
		m := len(rows)
		for i, r := range rows {
			copy(xb[i*d:(i+1)*d], trainX[r*d:(r+1)*d])
			yb[i] = trainY[r]
		}
		lr := compute.LR(st.step, total, p.warmupSteps, cfg.LR)
		t0 := time.Now()
		stats, err := trainer.Step(xb[:m*d], yb[:m], m, lr)
		dt := time.Since(t0).Seconds()
		if err != nil {
			err = classify(fmt.Errorf("step %d: %w", st.step+1, err))
			if errors.Is(err, ErrInput) {
				// Resuming would fail the same way: leave nothing behind.
				_ = os.RemoveAll(checkpointDir(cfg.Out))
				return nil, inputerr.Fieldf("finetune", "%w (try a lower {lr} or {clip})", err)
			}
			return nil, fmt.Errorf("finetune: %w", err)
		}
		st.step++
		st.trainSeconds += dt
		secondsHere += dt
		samplesHere += m
		row := arrowio.TrainLogRow{
			Step: int64(st.step), Epoch: int64(epoch + 1), Loss: stats.Loss, LR: lr,
			GradNorm: stats.GlobalNorm, Clipped: stats.Clipped, LayerGradNorms: slices.Clone(stats.GradNorms),
			ValidLoss: math.NaN(), ValidAccuracy: math.NaN(),
		}
		epochEnd := st.step%spe == 0
		if epochEnd && p.valid != nil {
			vl, va := evaluate(net, validX, validY, p.valid.N, ws)
			row.ValidLoss, row.ValidAccuracy = vl, va
			st.observe(net, cfg.Patience, EpochMetrics{Epoch: epoch + 1, Loss: validation.NullableFloat(vl), Accuracy: validation.NullableFloat(va)})
		}
		st.log.Rows = append(st.log.Rows, row)
		if cfg.Progress != nil {
			cfg.Progress(FinetuneProgress{
				Step: st.step, TotalSteps: total, Epoch: epoch + 1, Epochs: cfg.Epochs, Loss: stats.Loss, LR: lr,
				EpochEnd: epochEnd, ValidLoss: row.ValidLoss, ValidAccuracy: row.ValidAccuracy,
			})
		}
		switch {
		case epochEnd:
			attrs := []any{"epoch", epoch + 1, "of", cfg.Epochs, "step", st.step, "train_loss", epochLoss(st.log.Rows, epoch+1, p)}
			if p.valid != nil {
				attrs = append(attrs, "valid_loss", row.ValidLoss)
				if !math.IsNaN(row.ValidAccuracy) {
					attrs = append(attrs, "valid_accuracy", row.ValidAccuracy)
				}
			}
			if st.stopped {
				attrs = append(attrs, "early_stop", true, "best_epoch", st.best.Epoch)
			}
			log.Info("epoch done", attrs...)
			lastLog = time.Now()
		case interval > 0 && time.Since(lastLog) >= interval:
			log.Info("training", "step", st.step, "of", total, "epoch", epoch+1, "loss", stats.Loss, "lr", lr,
				"grad_norm", stats.GlobalNorm, "samples_per_second", float64(samplesHere)/secondsHere)
			lastLog = time.Now()
		}
		done := st.step == total || st.stopped
		due := (cfg.CheckpointEvery == 0 && epochEnd) || (cfg.CheckpointEvery > 0 && st.step%cfg.CheckpointEvery == 0)
		if due && !done {
			if err := writeCheckpoint(p, net, trainer, st); err != nil {
				return nil, err
			}
		}
	}

	res := &FinetuneResult{
		SchemaVersion: 2, Tool: provenance.Version(), Inputs: p.inputs, Config: cfg,
		Data:   FinetuneData{TrainRows: n, ValidRows: rowsOf(p.valid), Features: d, Outputs: p.outputs},
		Params: net.NumParams(), ParamsFrozen: frozen, Standardization: p.standardization,
		StepsPerEpoch: spe, WarmupSteps: p.warmupSteps, Steps: st.step, Epochs: ceilDiv(st.step, spe),
		EarlyStopped: st.stopped, ResumedFromStep: resumedFrom, TrainSeconds: st.trainSeconds,
		Outputs: p.outputNames(),
	}
	res.FinalTrainLoss = validation.NullableFloat(epochLoss(st.log.Rows, res.Epochs, p))
	if secondsHere > 0 {
		res.SamplesPerSecond = float64(samplesHere) / secondsHere
	}
	if st.best != nil {
		best := *st.best
		res.BestValid = &best
		last := st.log.Rows[len(st.log.Rows)-1]
		res.FinalValid = &EpochMetrics{Epoch: int(last.Epoch), Loss: validation.NullableFloat(last.ValidLoss), Accuracy: validation.NullableFloat(last.ValidAccuracy)}
	}
	if cfg.Patience > 0 && st.bestParams != nil {
		for i, q := range net.Params() {
			copy(q.Data, st.bestParams[i])
		}
		res.RestoredEpoch = st.best.Epoch
	}
	m := modelmap.Model(net, p.arch)
	if p.lm != nil {
		m.Meta = p.lm.model.Meta
	}
	if err := p.writeOutputs(m, &st.log, res); err != nil {
		return nil, classify(err)
	}
	return res, nil
}

// observe records an epoch's validation metrics for early stopping.
func (st *trainState[T]) observe(net *compute.Network[T], patience int, em EpochMetrics) {
	if st.best == nil || em.Loss < st.best.Loss {
		st.best, st.sinceBest = &em, 0
		if patience > 0 {
			ps := net.Params()
			if st.bestParams == nil {
				st.bestParams = make([][]T, len(ps))
			}
			for i, q := range ps {
				st.bestParams[i] = append(st.bestParams[i][:0], q.Data...)
			}
		}
		return
	}
	st.sinceBest++
	if patience > 0 && st.sinceBest >= patience {
		st.stopped = true
	}
}

// interrupted checkpoints a cancelled run and returns its error, which
// wraps cause (context.Canceled): the run is safe to retry with --resume.
func interrupted[T compute.Float](p *finetunePlan, net *compute.Network[T], tr *compute.Trainer[T], st *trainState[T], cause error) error {
	if st.step == 0 {
		return fmt.Errorf("finetune: interrupted before the first step: %w", cause)
	}
	if st.checkpointed != st.step {
		if err := writeCheckpoint(p, net, tr, st); err != nil {
			return fmt.Errorf("finetune: interrupted after step %d, and the checkpoint failed: %v: %w", st.step, err, cause)
		}
	}
	p.cfg.Logger.Warn("interrupted; checkpoint written", "step", st.step, "of", p.totalSteps, "dir", checkpointDir(p.cfg.Out))
	return inputerr.Hintf("finetune", "interrupted after step %d of %d; checkpoint in %s, rerun with {resume} to continue: %w",
		st.step, p.totalSteps, checkpointDir(p.cfg.Out), cause)
}

// initialNetwork builds the network a fresh run starts from: the input
// model's weights, or a fresh MLP initialised from Seed.
func initialNetwork[T compute.Float](p *finetunePlan) (*compute.Network[T], error) {
	if p.lm != nil {
		net, err := modelmap.Network[T](p.lm.model)
		if err != nil {
			return nil, inputerr.InFile(p.cfg.Model, err)
		}
		return net, nil
	}
	spec, err := modelmap.NetworkSpec(p.arch)
	if err != nil {
		return nil, err
	}
	net, err := compute.NewNetwork[T](spec)
	if err != nil {
		return nil, inputerr.Fieldf("", "{init} %q: %w", p.cfg.Init, err)
	}
	if err := net.InitStructured(rand.New(rand.NewPCG(p.cfg.Seed, initStream))); err != nil {
		if err := classify(err); errors.Is(err, ErrInput) {
			return nil, inputerr.Fieldf("", "{init} %q: %w", p.cfg.Init, err)
		}
		return nil, fmt.Errorf("init %q: %w", p.cfg.Init, err)
	}
	return net, nil
}

// evaluate returns the mean loss of net on (x, y) (cross-entropy, or the
// mean squared error) and, for a classifier, the accuracy (NaN for a
// regressor), accumulated in float64. Ties in the logits go to the lower
// class.
func evaluate[T compute.Float](net *compute.Network[T], x, y []T, n int, ws *compute.Workspace[T]) (loss, acc float64) {
	const chunk = 256
	d, c := net.Inputs(), net.Outputs()
	out := make([]T, min(chunk, n)*c)
	var sum float64
	correct := 0
	for lo := 0; lo < n; lo += chunk {
		m := min(chunk, n-lo)
		z := out[:m*c]
		net.Forward(z, x[lo*d:(lo+m)*d], m, ws)
		for r := range m {
			zr := z[r*c : (r+1)*c]
			if net.Task() == compute.TaskRegression {
				for j, v := range zr {
					e := float64(v) - float64(y[(lo+r)*c+j])
					sum += e * e
				}
				continue
			}
			t := int(y[lo+r])
			arg := 0
			for j, v := range zr {
				if v > zr[arg] {
					arg = j
				}
			}
			if arg == t {
				correct++
			}
			mx := float64(zr[arg])
			var s float64
			for _, v := range zr {
				s += math.Exp(float64(v) - mx)
			}
			sum += mx + math.Log(s) - float64(zr[t])
		}
	}
	if net.Task() == compute.TaskRegression {
		return sum / float64(n*c), math.NaN()
	}
	return sum / float64(n), float64(correct) / float64(n)
}

// epochLoss returns the mean training loss of epoch (from 1) over its
// logged steps, each weighted by its batch size.
func epochLoss(rows []arrowio.TrainLogRow, epoch int, p *finetunePlan) float64 {
	var sum float64
	var w int
	for _, r := range rows {
		if int(r.Epoch) != epoch {
			continue
		}
		k := (int(r.Step) - 1) % p.stepsPerEpoch
		m := min(p.cfg.BatchSize, p.train.N-k*p.cfg.BatchSize)
		sum += r.Loss * float64(m)
		w += m
	}
	if w == 0 {
		return math.NaN()
	}
	return sum / float64(w)
}

// linearLayers returns the names of the linear layers of arch, in order.
func linearLayers(arch arrowio.Architecture) []string {
	var names []string
	for _, l := range arch.Layers {
		if l.Kind == compute.KindLinear {
			names = append(names, l.Name)
		}
	}
	return names
}

func toT[T compute.Float](v []float64) []T {
	out := make([]T, len(v))
	for i, x := range v {
		out[i] = T(x)
	}
	return out
}

func rowsOf(ds *arrowio.Dataset) int {
	if ds == nil {
		return 0
	}
	return ds.N
}
