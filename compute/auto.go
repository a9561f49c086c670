package compute

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"strings"

	"gonum.org/v1/gonum/mat"
)

// AutoConfig chooses how Auto trades parameters against error. Exactly
// one of TargetError and ParamBudget is set.
type AutoConfig struct {
	// TargetError selects the candidate with the fewest parameters whose
	// relative Frobenius error ||W - (S+R)||_F / ||W||_F is at most this.
	TargetError float64
	// ParamBudget selects the candidate with the lowest error whose
	// parameter count is at most this fraction (0, 1] of the dense
	// layer's out*in.
	ParamBudget float64
	// Families restricts the trunk families tried; nil means every
	// family of TrunkFamilies.
	Families []string
	// MaxResidualRank caps the low-rank correction; 0 means
	// min(64, min(out, in)/4).
	MaxResidualRank int
}

// Validate checks the rules of an AutoConfig: exactly one of TargetError
// and ParamBudget is set (> 0, finite), ParamBudget is at most 1 (a
// fraction of the dense layer), every family of Families is a trunk family
// and MaxResidualRank is not negative. Errors wrap ErrSpec. Auto checks
// them first; a caller that wants to refuse a config before reading any
// weight calls Validate itself.
func (cfg AutoConfig) Validate() error {
	switch {
	case math.IsInf(cfg.TargetError, 0) || math.IsInf(cfg.ParamBudget, 0) || math.IsNaN(cfg.TargetError) || math.IsNaN(cfg.ParamBudget):
		return fmt.Errorf("%w: auto target error %g and parameter budget %g must be finite", ErrSpec, cfg.TargetError, cfg.ParamBudget)
	case (cfg.TargetError > 0) == (cfg.ParamBudget > 0):
		return fmt.Errorf("%w: auto needs exactly one of a target error (> 0) or a parameter budget (> 0)", ErrSpec)
	case cfg.ParamBudget > 1:
		return fmt.Errorf("%w: auto parameter budget %g is a fraction of the dense layer, want (0, 1]", ErrSpec, cfg.ParamBudget)
	case cfg.MaxResidualRank < 0:
		return fmt.Errorf("%w: auto maximum residual rank %d is negative", ErrSpec, cfg.MaxResidualRank)
	}
	for _, f := range cfg.Families {
		if !slices.Contains(TrunkFamilies, f) {
			return fmt.Errorf("%w: auto cannot try family %q (want one of %s)", ErrSpec, f, strings.Join(TrunkFamilies, ", "))
		}
	}
	return nil
}

// AutoCandidate is one trunk + residual combination Auto scored.
type AutoCandidate struct {
	Trunk         Spec    `json:"trunk"`
	ResidualRank  int     `json:"residual_rank"`
	Params        int     `json:"params"`
	RelativeError float64 `json:"relative_error"`
}

// AutoResult is Auto's choice and what it compared.
type AutoResult struct {
	Chosen AutoCandidate `json:"chosen"`
	// Met reports whether the chosen candidate meets the target error or
	// the budget; when nothing does, Chosen is the best effort (lowest
	// error for a target, fewest parameters for a budget).
	Met bool `json:"met"`
	// Tried lists the best residual rank found for each trunk tried.
	Tried []AutoCandidate `json:"tried"`
}

// Auto chooses a trunk family, its hyper-parameters and a low-rank
// residual rank for w, per AutoConfig. For each trunk candidate it projects
// W once, then reads the error of every residual rank k from the leading
// singular values sigma_i of W - S (Eckart-Young: err_k^2 = ||W - S||^2 -
// sum_{i<k} sigma_i^2), so residual ranks cost no further projection.
// Trunk candidates are tried in increasing parameter count; with a target
// error, those that already have more parameters than the best found are
// skipped. The residual is always low-rank (sparse residuals are chosen
// explicitly, not by Auto).
func Auto(w *mat.Dense, cfg AutoConfig, seed uint64) (*Sum[float64], AutoResult, error) {
	return AutoContext(context.Background(), w, cfg, seed)
}

// AutoContext is Auto stopping early with ctx's error when ctx is done:
// before each candidate and inside the projections and SVDs as
// DecomposeContext does.
func AutoContext(ctx context.Context, w *mat.Dense, cfg AutoConfig, seed uint64) (*Sum[float64], AutoResult, error) {
	out, in := w.Dims()
	if err := cfg.Validate(); err != nil {
		return nil, AutoResult{}, err
	}
	if !allFinite(denseData(w)) {
		return nil, AutoResult{}, ErrNotFinite
	}
	families := cfg.Families
	if families == nil {
		families = TrunkFamilies
	}
	maxRes := cfg.MaxResidualRank
	if maxRes == 0 {
		maxRes = min(64, min(out, in)/4)
	}
	maxRes = min(maxRes, min(out, in))
	budget := int(math.Floor(cfg.ParamBudget * float64(out*in)))
	norm := mat.Norm(w, 2)
	if norm == 0 {
		norm = 1
	}

	cands, err := autoTrunks(out, in, families)
	if err != nil {
		return nil, AutoResult{}, err
	}
	var res AutoResult
	bestParams := math.MaxInt
	bestErr := math.Inf(1)
	chosen, fallback := -1, -1 // indices into res.Tried
	resCost := out + in
	for _, c := range cands {
		if cfg.TargetError > 0 && c.params >= bestParams {
			continue
		}
		if cfg.ParamBudget > 0 && c.params > budget {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, AutoResult{}, err
		}
		s, err := ProjectContext(ctx, w, c.spec, seed)
		if err != nil {
			return nil, AutoResult{}, fmt.Errorf("auto: %s: %w", c.spec.Family, err)
		}
		diff := mat.NewDense(out, in, nil)
		s.DenseTo(diff.RawMatrix().Data)
		diff.Sub(w, diff)
		base := mat.Norm(diff, 2)
		var sv []float64
		if maxRes > 0 {
			_, sv, _, err = truncatedSVD(ctx, diff, maxRes, seed)
			if err != nil {
				return nil, AutoResult{}, fmt.Errorf("auto: residual of %s: %w", c.spec.Family, err)
			}
		}
		errAt := func(k int) float64 {
			e2 := base * base
			for _, v := range sv[:k] {
				e2 -= v * v
			}
			return math.Sqrt(max(e2, 0)) / norm
		}
		// The best residual rank for this trunk.
		pick := AutoCandidate{Trunk: s.Spec(), ResidualRank: 0, Params: c.params, RelativeError: errAt(0)}
		met := false
		for k := 0; k <= len(sv); k++ {
			p, e := c.params+k*resCost, errAt(k)
			if cfg.TargetError > 0 {
				if e <= cfg.TargetError {
					pick = AutoCandidate{s.Spec(), k, p, e}
					met = true
					break
				}
				if e < pick.RelativeError {
					pick = AutoCandidate{s.Spec(), k, p, e}
				}
			} else if p <= budget {
				pick = AutoCandidate{s.Spec(), k, p, e}
				met = true
			}
		}
		res.Tried = append(res.Tried, pick)
		i := len(res.Tried) - 1
		switch {
		case met && cfg.TargetError > 0 && pick.Params < bestParams:
			bestParams, chosen = pick.Params, i
		case met && cfg.ParamBudget > 0 && pick.RelativeError < bestErr:
			bestErr, chosen = pick.RelativeError, i
		case !met && (fallback < 0 || pick.RelativeError < res.Tried[fallback].RelativeError):
			fallback = i
		}
	}
	if chosen >= 0 {
		res.Chosen, res.Met = res.Tried[chosen], true
	} else if fallback >= 0 {
		res.Chosen = res.Tried[fallback]
	} else {
		return nil, res, fmt.Errorf("%w: no trunk candidate fits a budget of %d parameters for a %dx%d layer", ErrSpec, budget, out, in)
	}
	sum, err := DecomposeContext(ctx, w, res.Chosen.Trunk, Residual{Kind: ResidualLowRank, Rank: res.Chosen.ResidualRank}, seed)
	if err != nil {
		return nil, res, err
	}
	res.Chosen.RelativeError = RelativeError(w, Dense(sum))
	res.Chosen.Params = NumParams(sum)
	return sum, res, nil
}

// FitSpec returns the trunk spec s (a family with the blocks and rank
// asked for, 0 meaning the family's default) fitted to an out x in layer,
// m = min(out, in): the hyper-parameters a conversion uses when it does
// not search (Auto chooses its own, see autoTrunks).
//
//   - monarch: b = Blocks in [1, m]; r = Rank, default max(1, m / b^2)
//     (the spec's 2 n^2 / b parameters), at most ceil(m / b);
//   - blockdiag: b = Blocks in [1, m];
//   - kronecker: r = Rank, at least 1 (the term count); FactorShape kept;
//   - lowrank: k = Rank, default max(1, m / 8), at most m;
//   - orthogonal, circulant, toeplitz: no hyper-parameters.
//
// Out and In are set. Blocks and ranks too large for the layer are capped
// rather than refused, so one setting converts layers of every shape.
func FitSpec(s Spec, out, in int) Spec {
	t := Spec{Family: s.Family, Out: out, In: in}
	m := min(out, in)
	switch s.Family {
	case FamilyMonarch:
		t.Blocks = min(max(s.Blocks, 1), m)
		t.Rank = s.Rank
		if t.Rank == 0 {
			t.Rank = max(1, m/(t.Blocks*t.Blocks))
		}
		t.Rank = min(t.Rank, (m+t.Blocks-1)/t.Blocks)
	case FamilyBlockDiag:
		t.Blocks = min(max(s.Blocks, 1), m)
	case FamilyKronecker:
		t.Rank = max(s.Rank, 1)
		t.FactorShape = s.FactorShape
	case FamilyLowRank:
		t.Rank = s.Rank
		if t.Rank == 0 {
			t.Rank = max(1, m/8)
		}
		t.Rank = min(t.Rank, m)
	}
	return t
}

// AutoTrunks lists the trunk candidates Auto tries for an out x in layer
// (Out and In set), by increasing parameter count: powers of two for
// blocks and ranks up to half the layer's smaller dimension (monarch ranks
// up to half a block's), Kronecker terms up to 8, and orthogonal,
// circulant and toeplitz as they are; hyper-parameters that do not fit
// the shape are left out. families nil means every family of
// TrunkFamilies; an unknown family is an error wrapping ErrSpec.
func AutoTrunks(out, in int, families []string) ([]Spec, error) {
	if families == nil {
		families = TrunkFamilies
	}
	cands, err := autoTrunks(out, in, families)
	if err != nil {
		return nil, err
	}
	specs := make([]Spec, len(cands))
	for i, c := range cands {
		specs[i] = c.spec
	}
	return specs, nil
}

type trunkCandidate struct {
	spec   Spec
	params int
}

// autoTrunks enumerates trunk hyper-parameters for an out x in layer,
// sorted by parameter count: powers of two for blocks and ranks up to half
// the layer's smaller dimension (monarch ranks up to half a block's),
// Kronecker terms up to 8; FitSpec is the one setting without a search.
func autoTrunks(out, in int, families []string) ([]trunkCandidate, error) {
	m := min(out, in)
	var specs []Spec
	for _, f := range families {
		switch f {
		case FamilyOrthogonal, FamilyCirculant, FamilyToeplitz:
			specs = append(specs, Spec{Family: f})
		case FamilyLowRank:
			for k := 1; k <= m/2; k *= 2 {
				specs = append(specs, Spec{Family: f, Rank: k})
			}
		case FamilyBlockDiag:
			for b := 2; b <= m/2; b *= 2 {
				specs = append(specs, Spec{Family: f, Blocks: b})
			}
		case FamilyMonarch:
			for b := 2; b <= m/2; b *= 2 {
				mb := m / b
				for r := 1; r <= mb/2; r *= 2 {
					specs = append(specs, Spec{Family: f, Blocks: b, Rank: r})
				}
			}
		case FamilyKronecker:
			for r := 1; r <= 8; r *= 2 {
				specs = append(specs, Spec{Family: f, Rank: r})
			}
		default:
			return nil, fmt.Errorf("%w: auto cannot try family %q", ErrSpec, f)
		}
	}
	var cands []trunkCandidate
	for _, s := range specs {
		s.Out, s.In = out, in
		op, err := New[float32](s)
		if err != nil {
			continue // hyper-parameters that do not fit this shape
		}
		cands = append(cands, trunkCandidate{spec: s, params: NumParams(op)})
	}
	slices.SortStableFunc(cands, func(a, b trunkCandidate) int { return cmp.Compare(a.params, b.params) })
	return cands, nil
}
