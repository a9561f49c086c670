package compute

import (
	"cmp"
	"fmt"
	"math"
	"slices"
)

// LayerOption is one candidate conversion of one layer in a whole-model
// assignment: its structure, its parameter count and the measured
// increase of the model's loss when that layer alone is converted so
// (negative when conversion happened to help). The assignment treats the
// increases as additive across layers.
type LayerOption struct {
	Spec   Spec    `json:"spec"`
	Params int     `json:"params"`
	Loss   float64 `json:"loss"`
}

// Assignment is one option per layer.
type Assignment struct {
	// Choice[l] indexes layer l's option.
	Choice []int `json:"choice"`
	// Params and Loss are the totals of the chosen options.
	Params int     `json:"params"`
	Loss   float64 `json:"loss"`
	// Met reports whether the constraint holds; when it cannot,
	// AssignBudget returns the fewest parameters and AssignTolerance the
	// least loss.
	Met bool `json:"met"`
	// Unit is the parameter granularity of the search: 1 means exact (see
	// AssignBudget and AssignTolerance for the guarantee otherwise).
	Unit int `json:"unit"`
	// LowerBound (AssignBudget, when Met) is the optimum of the linear
	// relaxation: no assignment within the budget has a total loss below
	// it, so Loss - LowerBound bounds how far Loss is from the optimum.
	LowerBound float64 `json:"lower_bound,omitempty"`
}

// maxKnapsackEntries bounds the dynamic programme's choice table (layers x
// cells, two bytes each), and maxKnapsackCells its width.
const (
	maxKnapsackEntries = 1 << 25
	maxKnapsackCells   = 1 << 16
	maxLayerOptions    = math.MaxUint16
)

// AssignBudget chooses one option per layer with total parameters at most
// budget and the least total loss increase: the multiple-choice knapsack,
// solved by dynamic programming over the parameter budget in units of u
// parameters (option costs rounded up to whole units, so the result always
// fits). u = 1, an exact optimum, when the budget has at most 65536 units
// (fewer for models of more than 512 layers); otherwise u is the smallest
// unit that fits, and the result is at least as good as the exact optimum
// for the budget minus (layers + 1)(u - 1). LowerBound, the linear
// relaxation's optimum (greedy on each layer's convex hull, Sinha and
// Zoltners 1979), certifies the gap. Among assignments of equal loss it
// takes the fewest (rounded) parameters; ties go to lower option indices.
// Errors wrap ErrSpec for no layers, a layer with no options or more than
// 65535, negative parameters or budget, or a non-finite loss.
func AssignBudget(layers [][]LayerOption, budget int) (Assignment, error) {
	if budget < 0 {
		return Assignment{}, fmt.Errorf("%w: parameter budget %d is negative", ErrSpec, budget)
	}
	if err := checkOptions(layers); err != nil {
		return Assignment{}, err
	}
	k := newKnapsack(layers, budget)
	cells := budget / k.unit
	if math.IsInf(k.best[cells], 1) {
		a := k.assignment(pickEach(layers, func(a, b LayerOption) int {
			return cmp.Or(cmp.Compare(a.Params, b.Params), cmp.Compare(a.Loss, b.Loss))
		}))
		return a, nil
	}
	c := slices.Index(k.best, k.best[cells]) // fewest cells at the least loss
	a := k.assignment(k.backtrack(c))
	a.Met = true
	a.LowerBound = relaxedLoss(layers, budget)
	return a, nil
}

// AssignTolerance is the dual of AssignBudget: the fewest total parameters
// whose total loss increase is at most tolerance, by the same programme
// over the parameter range of the options (at most 65536 units of u
// parameters; u = 1 is exact, and otherwise the result has at most
// (layers)(u - 1) parameters more than the optimum). Among assignments of
// equal rounded cost it takes the least loss. When no assignment meets
// the tolerance it returns the least total loss with Met false. Errors as
// AssignBudget, and for a NaN tolerance.
func AssignTolerance(layers [][]LayerOption, tolerance float64) (Assignment, error) {
	if math.IsNaN(tolerance) {
		return Assignment{}, fmt.Errorf("%w: loss tolerance is NaN", ErrSpec)
	}
	if err := checkOptions(layers); err != nil {
		return Assignment{}, err
	}
	total := 0
	for _, opts := range layers {
		total += slices.MaxFunc(opts, func(a, b LayerOption) int { return cmp.Compare(a.Params, b.Params) }).Params
	}
	k := newKnapsack(layers, total)
	c := slices.IndexFunc(k.best, func(l float64) bool { return l <= tolerance })
	met := c >= 0
	if !met {
		c = slices.Index(k.best, slices.Min(k.best))
	}
	a := k.assignment(k.backtrack(c))
	a.Met = met
	return a, nil
}

func checkOptions(layers [][]LayerOption) error {
	if len(layers) == 0 {
		return fmt.Errorf("%w: no layers to assign", ErrSpec)
	}
	for l, opts := range layers {
		if len(opts) == 0 || len(opts) > maxLayerOptions {
			return fmt.Errorf("%w: layer %d has %d options, want 1 to %d", ErrSpec, l, len(opts), maxLayerOptions)
		}
		for j, o := range opts {
			if o.Params < 0 || math.IsNaN(o.Loss) || math.IsInf(o.Loss, 0) {
				return fmt.Errorf("%w: layer %d option %d has %d parameters and loss %g", ErrSpec, l, j, o.Params, o.Loss)
			}
		}
	}
	return nil
}

// knapsack is the dynamic programme over rounded parameter costs: after
// all layers, best[c] is the least total loss with a total cost of at most
// c units, and choice[l][c] the option of layer l on that path.
type knapsack struct {
	layers [][]LayerOption
	unit   int
	cost   [][]int
	best   []float64
	choice [][]uint16
}

// newKnapsack runs the programme for costs up to limit parameters.
func newKnapsack(layers [][]LayerOption, limit int) *knapsack {
	cellsMax := min(maxKnapsackCells, maxKnapsackEntries/len(layers))
	unit := max(1, (limit+cellsMax-1)/cellsMax)
	k := &knapsack{layers: layers, unit: unit}
	cells := limit/unit + 1
	k.best = make([]float64, cells) // no layer yet: loss 0 at any cost
	next := make([]float64, cells)
	for _, opts := range layers {
		costs := make([]int, len(opts))
		for j, o := range opts {
			costs[j] = (o.Params + unit - 1) / unit
		}
		ch := make([]uint16, cells)
		for c := range next {
			next[c] = math.Inf(1)
			for j, o := range opts {
				if costs[j] > c {
					continue
				}
				if v := k.best[c-costs[j]] + o.Loss; v < next[c] {
					next[c], ch[c] = v, uint16(j)
				}
			}
		}
		k.best, next = next, k.best
		k.cost = append(k.cost, costs)
		k.choice = append(k.choice, ch)
	}
	return k
}

// backtrack returns the choices on the path ending at cost c.
func (k *knapsack) backtrack(c int) []int {
	choice := make([]int, len(k.layers))
	for l := len(k.layers) - 1; l >= 0; l-- {
		j := int(k.choice[l][c])
		choice[l] = j
		c -= k.cost[l][j]
	}
	return choice
}

func (k *knapsack) assignment(choice []int) Assignment {
	a := Assignment{Choice: choice, Unit: k.unit}
	for l, j := range choice {
		a.Params += k.layers[l][j].Params
		a.Loss += k.layers[l][j].Loss
	}
	return a
}

// pickEach returns, per layer, the index of the least option under less.
func pickEach(layers [][]LayerOption, less func(a, b LayerOption) int) []int {
	choice := make([]int, len(layers))
	for l, opts := range layers {
		for j, o := range opts {
			if less(o, opts[choice[l]]) < 0 {
				choice[l] = j
			}
		}
	}
	return choice
}

// relaxedLoss returns the optimum of the linear relaxation of the budget
// problem (each layer may take a convex combination of its options): start
// every layer at its fewest-parameter option, then spend the budget on the
// steps along each layer's lower convex hull in order of loss saved per
// parameter, the last one fractionally. The budget must fit the starts.
func relaxedLoss(layers [][]LayerOption, budget int) float64 {
	type step struct {
		dp    int
		dl    float64
		layer int
	}
	var steps []step
	var loss float64
	left := budget
	for l, opts := range layers {
		hull := lowerHull(opts)
		left -= hull[0].Params
		loss += hull[0].Loss
		for i := 1; i < len(hull); i++ {
			steps = append(steps, step{hull[i].Params - hull[i-1].Params, hull[i].Loss - hull[i-1].Loss, l})
		}
	}
	slices.SortStableFunc(steps, func(a, b step) int {
		// a.dl/a.dp < b.dl/b.dp, cross-multiplied (dp > 0).
		return cmp.Compare(a.dl*float64(b.dp), b.dl*float64(a.dp))
	})
	for _, s := range steps {
		if s.dp <= left {
			loss += s.dl
			left -= s.dp
			continue
		}
		return loss + s.dl*float64(left)/float64(s.dp)
	}
	return loss
}

// lowerHull returns the vertices of the lower convex hull of the options
// from the fewest parameters (least loss among those) to the least loss
// (fewest parameters among those), ordered by parameters: the losses
// strictly fall and the slopes strictly rise.
func lowerHull(opts []LayerOption) []LayerOption {
	pts := slices.Clone(opts)
	slices.SortFunc(pts, func(a, b LayerOption) int {
		return cmp.Or(cmp.Compare(a.Params, b.Params), cmp.Compare(a.Loss, b.Loss))
	})
	var hull []LayerOption
	for _, p := range pts {
		if len(hull) > 0 && (p.Params == hull[len(hull)-1].Params || p.Loss >= hull[len(hull)-1].Loss) {
			continue // dominated: no cheaper and no better
		}
		for len(hull) >= 2 && !turnsLeft(hull[len(hull)-2], hull[len(hull)-1], p) {
			hull = hull[:len(hull)-1]
		}
		hull = append(hull, p)
	}
	return hull
}

// turnsLeft reports whether a -> b -> c turns counter-clockwise in the
// (params, loss) plane, i.e. b lies strictly below the chord a-c.
func turnsLeft(a, b, c LayerOption) bool {
	cross := float64(b.Params-a.Params)*(c.Loss-a.Loss) - (b.Loss-a.Loss)*float64(c.Params-a.Params)
	return cross > 0
}
