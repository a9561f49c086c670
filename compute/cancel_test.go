package compute

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// doneAfter is a context whose Err reports Canceled from its n-th call
// on: a cancellation arriving after n checks, at a reproducible point.
type doneAfter struct {
	context.Context
	n, calls atomic.Int64
}

func newDoneAfter(n int64) *doneAfter {
	c := &doneAfter{Context: context.Background()}
	c.n.Store(n)
	return c
}

func (c *doneAfter) Err() error {
	if c.calls.Add(1) >= c.n.Load() {
		return context.Canceled
	}
	return nil
}

func (c *doneAfter) Done() <-chan struct{} { return nil }
func (c *doneAfter) Deadline() (time.Time, bool) {
	return time.Time{}, false
}

// TestContextStops: the long computations of a convert see a
// cancellation between bounded pieces of work: cancelled after any number
// of checks (up to those a full run makes), they return context.Canceled,
// and a run that is never cancelled checks more than once per monarch
// block and randomized-SVD pass, so no piece spans a whole projection.
func TestContextStops(t *testing.T) {
	defer func(l int) { exactConditionLimit = l }(exactConditionLimit)
	exactConditionLimit = 50
	w := randDense(newRand(12), 400, 360)
	monarch := Spec{Family: FamilyMonarch, Blocks: 2, Rank: 12} // 200 x 180 blocks: randomized SVDs
	small := randDense(newRand(14), 96, 80)
	runs := []struct {
		name string
		run  func(ctx context.Context) error
		// checks is the fewest checks a full run must make.
		checks int64
	}{
		{"decompose", func(ctx context.Context) error {
			_, err := DecomposeContext(ctx, w, monarch, Residual{Kind: ResidualLowRank, Rank: 4}, 1)
			return err
		}, 4 * 4},
		{"auto", func(ctx context.Context) error {
			_, _, err := AutoContext(ctx, small, AutoConfig{TargetError: 0.9, Families: []string{FamilyMonarch, FamilyLowRank}}, 1)
			return err
		}, 4},
		{"condition", func(ctx context.Context) error {
			_, _, err := ConditionInPlace(ctx, randDense(newRand(13), 400, 360), 1)
			return err
		}, 2 * (conditionSteps + 2)},
	}
	for _, r := range runs {
		t.Run(r.name, func(t *testing.T) {
			full := newDoneAfter(1 << 62)
			if err := r.run(full); err != nil {
				t.Fatal(err)
			}
			total := full.calls.Load()
			if total < r.checks {
				t.Errorf("a full run checked the context %d times, want at least %d", total, r.checks)
			}
			for _, n := range []int64{1, 2, total / 2, total} {
				if err := r.run(newDoneAfter(n)); !errors.Is(err, context.Canceled) {
					t.Errorf("cancelled at check %d of %d: %v, want context.Canceled", n, total, err)
				}
			}
		})
	}
}
