package stages

import (
	"strconv"
	"strings"

	"github.com/strata-ml/strata/arrowio"
	"github.com/strata-ml/strata/compute"
	"github.com/strata-ml/strata/internal/inputerr"
	"github.com/strata-ml/strata/internal/limits"
)

// InitArchitecture parses an --init spec into the architecture of a fresh
// dense MLP:
//
//	mlp:W0-W1-...-Wk[:ACTIVATION][+ln]
//
// W0 is the input width and Wk the output width (classes, or regression
// targets); ACTIVATION is one of compute.Activations (default relu) and
// follows every linear layer but the last; "+ln" puts a layer norm between
// each hidden linear layer and its activation. Layers are named by their
// index, as in a PyTorch nn.Sequential ("0" linear, "1" activation, "2"
// linear, ...), and every linear layer has a bias. task is
// compute.TaskClassification (also when empty) or TaskRegression. A model
// of more than limits.InitParams parameters is refused before anything
// is allocated.
// Examples: "mlp:64-256-256-10:relu", "mlp:4-32-32-3",
// "mlp:13-64-1:tanh+ln". Errors are input errors.
func InitArchitecture(spec string, task compute.Task) (arrowio.Architecture, error) {
	bad := func(why string) (arrowio.Architecture, error) {
		return arrowio.Architecture{}, inputerr.Fieldf("", "{init} %q: %s (want mlp:W0-W1-...-Wk[:ACTIVATION][+ln], e.g. mlp:64-256-256-10:relu)", spec, why)
	}
	rest, ok := strings.CutPrefix(spec, "mlp:")
	if !ok {
		return bad("only the mlp family can be initialised")
	}
	rest, ln := strings.CutSuffix(rest, "+ln")
	widthsPart, name, hasAct := strings.Cut(rest, ":")
	act := compute.Activation(name)
	if !hasAct {
		act = compute.ActReLU
	}
	if !act.Valid() {
		return bad("unknown activation " + strconv.Quote(name) + " (want one of " + compute.JoinNames(compute.Activations) + ")")
	}
	var widths []int
	for _, w := range strings.Split(widthsPart, "-") {
		n, err := strconv.Atoi(w)
		if err != nil || n < 1 {
			return bad("width " + strconv.Quote(w) + " is not a positive integer")
		}
		widths = append(widths, n)
	}
	if len(widths) < 2 {
		return bad("need at least an input and an output width")
	}
	if params := initParams(widths, ln); params > limits.InitParams {
		return arrowio.Architecture{}, inputerr.Fieldf("", "{init} %q: %.3g parameters: over the limit of %s for a fresh model (docs/FORMATS.md, Input limits)",
			spec, params, limits.Count(limits.InitParams))
	}
	switch task {
	case "":
		task = compute.TaskClassification
	case compute.TaskClassification, compute.TaskRegression:
	default:
		return arrowio.Architecture{}, inputerr.Fieldf("", "{task} %q: want %s or %s", task, compute.TaskClassification, compute.TaskRegression)
	}
	if task == compute.TaskClassification && widths[len(widths)-1] < 2 {
		return bad("a classifier needs at least 2 outputs")
	}
	arch := arrowio.Architecture{FormatVersion: 1, Kind: arrowio.ArchMLP, Task: task, Inputs: widths[0]}
	add := func(l arrowio.Layer) {
		l.Name = strconv.Itoa(len(arch.Layers))
		arch.Layers = append(arch.Layers, l)
	}
	for i := range len(widths) - 1 {
		add(arrowio.Layer{Kind: compute.KindLinear, In: widths[i], Out: widths[i+1], Bias: true})
		if i == len(widths)-2 {
			break
		}
		if ln {
			add(arrowio.Layer{Kind: compute.KindLayerNorm, In: widths[i+1], Out: widths[i+1]})
		}
		add(arrowio.Layer{Kind: compute.KindActivation, Activation: act})
	}
	return arch, nil
}

// initParams returns the parameters of the MLP of widths (weights and
// biases, and a layer norm's two vectors per hidden layer with ln), in
// float64: exact enough to compare with a limit, and no overflow whatever
// the widths.
func initParams(widths []int, ln bool) float64 {
	total := 0.0
	for i := range len(widths) - 1 {
		in, out := float64(widths[i]), float64(widths[i+1])
		total += in*out + out
		if ln && i+2 < len(widths) {
			total += 2 * out
		}
	}
	return total
}
