package compute

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

// randomLayers returns layers of random options: parameters in [0, maxP)
// and losses that tend to fall as parameters grow, with noise (some
// negative).
func randomLayers(rng *rand.Rand, layers, maxOpts, maxP int) [][]LayerOption {
	ls := make([][]LayerOption, layers)
	for l := range ls {
		for range 1 + rng.IntN(maxOpts) {
			p := rng.IntN(maxP)
			ls[l] = append(ls[l], LayerOption{Params: p, Loss: 1/(1+float64(p)/float64(maxP)*4) + 0.2*rng.NormFloat64()})
		}
	}
	return ls
}

// exhaustive enumerates every assignment and calls visit with its totals.
func exhaustive(layers [][]LayerOption, visit func(params int, loss float64)) {
	choice := make([]int, len(layers))
	for {
		p, l := 0, 0.0
		for i, j := range choice {
			p += layers[i][j].Params
			l += layers[i][j].Loss
		}
		visit(p, l)
		i := 0
		for ; i < len(choice); i++ {
			choice[i]++
			if choice[i] < len(layers[i]) {
				break
			}
			choice[i] = 0
		}
		if i == len(choice) {
			return
		}
	}
}

func checkTotals(t *testing.T, layers [][]LayerOption, a Assignment) {
	t.Helper()
	p, l := 0, 0.0
	for i, j := range a.Choice {
		p += layers[i][j].Params
		l += layers[i][j].Loss
	}
	if p != a.Params || math.Abs(l-a.Loss) > 1e-12 {
		t.Fatalf("totals %d, %g; choices add to %d, %g", a.Params, a.Loss, p, l)
	}
}

func TestAssignBudgetMatchesExhaustive(t *testing.T) {
	rng := newRand(800)
	for trial := range 300 {
		layers := randomLayers(rng, 1+rng.IntN(5), 5, 200)
		budget := rng.IntN(600)
		a, err := AssignBudget(layers, budget)
		if err != nil {
			t.Fatal(err)
		}
		checkTotals(t, layers, a)
		best, fewest := math.Inf(1), math.MaxInt
		exhaustive(layers, func(p int, l float64) {
			if p <= budget {
				best = min(best, l)
			}
			fewest = min(fewest, p)
		})
		feasible := !math.IsInf(best, 1)
		if a.Met != feasible || a.Unit != 1 {
			t.Fatalf("trial %d: met %v unit %d, exhaustive feasible %v", trial, a.Met, a.Unit, feasible)
		}
		if !feasible {
			if a.Params != fewest {
				t.Errorf("trial %d: infeasible budget should give the fewest parameters %d, got %d", trial, fewest, a.Params)
			}
			continue
		}
		if a.Params > budget || math.Abs(a.Loss-best) > 1e-12 {
			t.Errorf("trial %d: got %d params, loss %.15g; exhaustive optimum %.15g within %d", trial, a.Params, a.Loss, best, budget)
		}
		if a.LowerBound > a.Loss+1e-12 {
			t.Errorf("trial %d: lower bound %g above the optimum %g", trial, a.LowerBound, a.Loss)
		}
	}
}

func TestAssignToleranceMatchesExhaustive(t *testing.T) {
	rng := newRand(801)
	for trial := range 300 {
		layers := randomLayers(rng, 1+rng.IntN(5), 5, 200)
		tol := 3 * rng.Float64()
		a, err := AssignTolerance(layers, tol)
		if err != nil {
			t.Fatal(err)
		}
		checkTotals(t, layers, a)
		fewest, least := math.MaxInt, math.Inf(1)
		exhaustive(layers, func(p int, l float64) {
			if l <= tol {
				fewest = min(fewest, p)
			}
			least = min(least, l)
		})
		feasible := fewest != math.MaxInt
		if a.Met != feasible {
			t.Fatalf("trial %d: met %v, exhaustive feasible %v", trial, a.Met, feasible)
		}
		if !feasible {
			if math.Abs(a.Loss-least) > 1e-12 {
				t.Errorf("trial %d: unmeetable tolerance should give the least loss %g, got %g", trial, least, a.Loss)
			}
			continue
		}
		if a.Loss > tol || a.Params != fewest {
			t.Errorf("trial %d: got %d params at loss %g; exhaustive fewest %d within %g", trial, a.Params, a.Loss, fewest, tol)
		}
	}
}

// With budgets beyond the table's width the costs are rounded up to a
// unit u > 1: the result still fits, and is at least as good as the exact
// optimum for the budget less (layers + 1)(u - 1).
func TestAssignBudgetRoundedGuarantee(t *testing.T) {
	rng := newRand(802)
	for trial := range 100 {
		layers := randomLayers(rng, 2+rng.IntN(3), 4, 200_000)
		budget := 100_000 + rng.IntN(400_000)
		a, err := AssignBudget(layers, budget)
		if err != nil {
			t.Fatal(err)
		}
		if a.Unit <= 1 {
			t.Fatalf("trial %d: unit %d for a budget of %d", trial, a.Unit, budget)
		}
		slack := budget - (len(layers)+1)*(a.Unit-1)
		best := math.Inf(1)
		exhaustive(layers, func(p int, l float64) {
			if p <= slack {
				best = min(best, l)
			}
		})
		if a.Met && (a.Params > budget || a.Loss > best+1e-12) {
			t.Errorf("trial %d: %d params (budget %d), loss %g; optimum within %d is %g", trial, a.Params, budget, a.Loss, slack, best)
		}
		if a.Met && a.LowerBound > a.Loss+1e-12 {
			t.Errorf("trial %d: lower bound %g above the loss %g", trial, a.LowerBound, a.Loss)
		}
	}
}

// The relaxation's bound is tight where the relaxation is integral: two
// layers whose options lie on lines, with a budget at a vertex.
func TestRelaxedLossAtVertex(t *testing.T) {
	layers := [][]LayerOption{
		{{Params: 0, Loss: 4}, {Params: 10, Loss: 2}, {Params: 20, Loss: 1}, {Params: 15, Loss: 3}},
		{{Params: 5, Loss: 1}, {Params: 10, Loss: 0}},
	}
	a, err := AssignBudget(layers, 20)
	if err != nil {
		t.Fatal(err)
	}
	// Slopes: layer 0 -0.2 then -0.1, layer 1 -0.2: the budget 20 takes
	// layer 0 to 10 params and layer 1 to 10: loss 2.
	if a.Loss != 2 || a.Params != 20 || a.LowerBound != 2 {
		t.Errorf("got %+v, want loss 2 at 20 params, bound 2", a)
	}
	if got := relaxedLoss(layers, 22); math.Abs(got-1.8) > 1e-15 {
		t.Errorf("relaxation at 22: %g, want 1.8 (a fifth of the step to 20 params)", got)
	}
}

func TestAssignRejects(t *testing.T) {
	ok := []LayerOption{{Params: 1, Loss: 0}}
	tests := []struct {
		name   string
		layers [][]LayerOption
		budget int
	}{
		{"no layers", nil, 10},
		{"empty layer", [][]LayerOption{ok, {}}, 10},
		{"negative params", [][]LayerOption{{{Params: -1}}}, 10},
		{"NaN loss", [][]LayerOption{{{Params: 1, Loss: math.NaN()}}}, 10},
		{"infinite loss", [][]LayerOption{{{Params: 1, Loss: math.Inf(1)}}}, 10},
		{"negative budget", [][]LayerOption{ok}, -1},
		{"too many options", [][]LayerOption{make([]LayerOption, 70000)}, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := AssignBudget(tt.layers, tt.budget); !errors.Is(err, ErrSpec) {
				t.Errorf("AssignBudget: got %v want ErrSpec", err)
			}
			if tt.budget >= 0 {
				if _, err := AssignTolerance(tt.layers, 1); !errors.Is(err, ErrSpec) {
					t.Errorf("AssignTolerance: got %v want ErrSpec", err)
				}
			}
		})
	}
	if _, err := AssignTolerance([][]LayerOption{ok}, math.NaN()); !errors.Is(err, ErrSpec) {
		t.Errorf("NaN tolerance: got %v want ErrSpec", err)
	}
}
