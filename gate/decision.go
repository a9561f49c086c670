package gate

// ExitCode is the process exit code of a decision (PRODUCT.md section 6).
// The CLI exits with it; nothing else decides these codes.
type ExitCode int

// The exit codes of the decisions.
const (
	ExitGo           ExitCode = 0
	ExitNoGo         ExitCode = 3
	ExitInconclusive ExitCode = 4
)

// ExitCode returns the exit code of a decision: ExitGo for GO, ExitNoGo
// for NO-GO, ExitInconclusive for INCONCLUSIVE, and ExitGo for any with
// noFail (a pipeline that reads the decision from a file).
func (d Decision) ExitCode(noFail bool) ExitCode {
	if noFail {
		return ExitGo
	}
	switch d {
	case DecisionNoGo:
		return ExitNoGo
	case DecisionInconclusive:
		return ExitInconclusive
	}
	return ExitGo
}

// severity orders the decisions from best to worst: GO, INCONCLUSIVE,
// NO-GO.
func (d Decision) severity() int {
	switch d {
	case DecisionNoGo:
		return 2
	case DecisionInconclusive:
		return 1
	}
	return 0
}

// Worst returns the worst of the decisions of one candidate's runs at
// several seeds: GO only when every run is GO, NO-GO when some run is,
// else INCONCLUSIVE. A sweep candidate's decision is the worst over its
// seeds, in sweep.json and in a select-best report alike.
func Worst(decisions ...Decision) Decision {
	w := DecisionGo
	for _, d := range decisions {
		if d.severity() > w.severity() {
			w = d
		}
	}
	return w
}
