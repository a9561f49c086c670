package main

import (
	"bytes"
	"fmt"
	"math"
	"strings"

	"github.com/strata-ml/strata/validation"
)

// pairVerdict is a claim's verdict for one candidate on one data set
// against one reference, with its criteria's.
type pairVerdict struct {
	verdict verdict
	effect  string // the criteria's effects, "; "-joined
}

// judgeClaim judges a claim for the i-th candidate of ds against s.
func judgeClaim(ds *dataSet, i int, cl claim, s side) pairVerdict {
	c := &ds.Res.Candidates[i]
	var vs []verdict
	var effects []string
	for _, cr := range cl.criteria {
		m := c.Metrics.Get(cr.metric)
		j := judge(m, s, cr)
		vs = append(vs, j.verdict)
		if m == nil {
			effects = append(effects, cr.label+" missing")
			continue
		}
		effects = append(effects, effectText(m, s, cr, j))
	}
	return pairVerdict{combine(vs), strings.Join(effects, "; ")}
}

// tally counts a claim's verdicts over every candidate and data set.
type tally struct {
	pairs int
	count map[side]map[verdict]int
	// where lists, per side and verdict, "candidate (effect)" per data
	// set, in the order of the data sets.
	where map[side]map[verdict][][]string
}

func tallyClaim(d *doc, cl claim) tally {
	t := tally{count: map[side]map[verdict]int{}, where: map[side]map[verdict][][]string{}}
	for _, s := range []side{vsBaseline, vsControl} {
		t.count[s], t.where[s] = map[verdict]int{}, map[verdict][][]string{}
		for _, v := range []verdict{noClearEffect, holds, contradicted, mixed} {
			t.where[s][v] = make([][]string, len(d.Sets))
		}
	}
	for k, ds := range d.Sets {
		for i := range ds.Res.Candidates {
			t.pairs++
			for _, s := range []side{vsBaseline, vsControl} {
				if s == vsControl && !ds.Res.Config.Control {
					continue
				}
				pv := judgeClaim(ds, i, cl, s)
				t.count[s][pv.verdict]++
				t.where[s][pv.verdict][k] = append(t.where[s][pv.verdict][k], fmt.Sprintf("%s (%s)", ds.Res.Candidates[i].Name, pv.effect))
			}
		}
	}
	return t
}

// renderReading writes the criteria, each claim's verdicts and the
// closing note.
func renderReading(b *bytes.Buffer, d *doc) {
	p := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	p("## A plain reading\n\n")
	p("The verdicts below are computed from the tables by these criteria, set out with the evidence sweeps and fixed before ")
	p("the five-seed sweeps were looked at. For a ")
	p("candidate on a data set against a reference, with n seeds (here %s) and a quorum q = ceil(3n/5) (%s), ", seedCounts(d), quorums(d))
	p("D the mean difference candidate - reference, and B / W the seeds significantly better / worse for the ")
	p("candidate (the [B/W] of the tables):\n\n")
	p("- **keeps accuracy** holds when D >= -%s and W = 0 (no seed significantly worse); it is ", plural(int(100*accuracyMargin), "point"))
	p("contradicted when D < -%s, W >= q and B = 0.\n", plural(int(100*accuracyMargin), "point"))
	p("- **every other measure**, in the direction the claim predicts (Jacobian condition, grad-norm ratio, ")
	p("relative sensitivity and worst-layer drop lower; worst accuracy over the learning rates higher and their ")
	p("range lower), holds when D is in that direction, B >= q and W = 0; it is contradicted when D is against ")
	p("it, W >= q and B = 0.\n")
	p("- Anything else is **no clear effect**.\n")
	p("- A claim with two measures (gradient conditioning: Jacobian condition and grad-norm ratio; learning-rate ")
	p("tuning: worst accuracy and range) **holds** when both hold, is **mixed** when one holds and the other is ")
	p("contradicted, is **contradicted** when one is contradicted and the other does not hold, and otherwise has ")
	p("no clear effect.\n")
	var fewBatches []string
	for _, ds := range d.Sets {
		if g := ds.Res.Config.Validate.GradBatch; g > 0 && math.Round(float64(ds.Res.Seeds[0].Data.TestRows)/float64(g)) < validation.MinBootstrapUnits {
			fewBatches = append(fewBatches, ds.Name)
		}
	}
	p("- A measure without a per-run interval (the learning-rate measures")
	if len(fewBatches) > 0 {
		p(", and the grad-norm ratio on %s, whose test split is fewer than %d gradient batches, too few for an interval", joinAnd(fewBatches), validation.MinBootstrapUnits)
	}
	p(") counts a seed by the sign of its difference: a weaker test than an interval, because a ")
	p("handful of gradient batches or one training run per learning rate carries no estimate ")
	p("of its own noise.\n\n")
	p("Each verdict lists the measure's effect: a ratio as xR, a difference in points, and [B/W].\n\n")

	var tallies []tally
	for _, cl := range claims {
		t := tallyClaim(d, cl)
		tallies = append(tallies, t)
		p("### %s\n\n", capitalise(cl.name))
		p("| candidate |")
		for _, ds := range d.Sets {
			p(" %s vs baseline | %s vs control |", ds.Name, ds.Name)
		}
		p("\n|---|")
		for range d.Sets {
			p("---|---|")
		}
		p("\n")
		for _, r := range d.rows() {
			p("| %s |", r.name(d))
			for k, ds := range d.Sets {
				i := r.At[k]
				for _, s := range []side{vsBaseline, vsControl} {
					if i < 0 {
						p(" not tried |")
						continue
					}
					if s == vsControl && !ds.Res.Config.Control {
						p(" - (no control) |")
						continue
					}
					p(" %s |", judgeClaim(ds, i, cl, s).verdict)
				}
			}
			p("\n")
		}
		p("\n")
		for _, s := range []side{vsBaseline, vsControl} {
			for _, v := range []verdict{holds, mixed, contradicted} {
				k := t.count[s][v]
				if k == 0 {
					if v != mixed {
						p("- %s %s: none of the %d pairs.\n", capitalise(v.String()), s, t.pairs)
					}
					continue
				}
				var sets []string
				for i, w := range t.where[s][v] {
					if len(w) > 0 {
						sets = append(sets, d.Sets[i].Name+": "+strings.Join(w, ", "))
					}
				}
				p("- %s %s, %d of %d pairs. %s.\n", capitalise(v.String()), s, k, t.pairs, strings.Join(sets, ". "))
			}
			p("- No clear effect %s: %d of %d pairs.\n", s, t.count[s][noClearEffect], t.pairs)
		}
		p("\n")
	}

	p("### Summary\n\n")
	p("(candidate, data set) pairs per verdict, out of %d:\n\n", tallies[0].pairs)
	p("| claim | holds vs baseline | contradicted vs baseline | mixed vs baseline | holds vs control | contradicted vs control | mixed vs control |\n")
	p("|---|---:|---:|---:|---:|---:|---:|\n")
	for k, cl := range claims {
		t := tallies[k]
		p("| %s | %d | %d | %d | %d | %d | %d |\n", cl.name, t.count[vsBaseline][holds], t.count[vsBaseline][contradicted], t.count[vsBaseline][mixed],
			t.count[vsControl][holds], t.count[vsControl][contradicted], t.count[vsControl][mixed])
	}
	p("\n")
	p("Each measure on its own, by the same criteria (a two-measure claim holds only where both hold):\n\n")
	p("| claim | measure | holds vs baseline | contradicted vs baseline | holds vs control | contradicted vs control |\n")
	p("|---|---|---:|---:|---:|---:|\n")
	for _, cl := range claims {
		for _, cr := range cl.criteria {
			count := map[side]map[verdict]int{vsBaseline: {}, vsControl: {}}
			for _, ds := range d.Sets {
				for i := range ds.Res.Candidates {
					for _, s := range []side{vsBaseline, vsControl} {
						if s == vsControl && !ds.Res.Config.Control {
							continue
						}
						count[s][judge(ds.Res.Candidates[i].Metrics.Get(cr.metric), s, cr).verdict]++
					}
				}
			}
			p("| %s | `%s` | %d | %d | %d | %d |\n", cl.name, cr.metric, count[vsBaseline][holds], count[vsBaseline][contradicted],
				count[vsControl][holds], count[vsControl][contradicted])
		}
	}
	p("\n")
	renderClosing(b, d, tallies)
}

// renderClosing writes the two-sentence closing note from the tallies.
// An improvement "held for most pairs" when it holds for at least half of
// them against the baseline and against the control.
func renderClosing(b *bytes.Buffer, d *doc, tallies []tally) {
	var names []string
	for _, ds := range d.Sets {
		names = append(names, ds.Name)
	}
	acc := tallies[0]
	fmt.Fprintf(b, "### Closing note\n\n")
	fmt.Fprintf(b, "On %s (%s), S + R kept accuracy (within %g point of the reference, no seed significantly worse) for %d of %d candidate-data-set pairs against the dense baseline and %d against the equal-budget control, and clearly lost it for %d and %d. ",
		joinAnd(names), seedCounts(d), 100*accuracyMargin, acc.count[vsBaseline][holds], acc.pairs, acc.count[vsControl][holds],
		acc.count[vsBaseline][contradicted], acc.count[vsControl][contradicted])
	var most, counts []string
	for k, cl := range claims[1:] {
		t := tallies[k+1]
		hb, hc := t.count[vsBaseline][holds], t.count[vsControl][holds]
		if 2*hb >= t.pairs && 2*hc >= t.pairs {
			most = append(most, cl.topic)
		}
		counts = append(counts, fmt.Sprintf("%s held for %d / %d and was contradicted for %d / %d",
			cl.topic, hb, hc, t.count[vsBaseline][contradicted], t.count[vsControl][contradicted]))
	}
	lead := "none of the claimed improvements held for most pairs against both references"
	switch len(most) {
	case len(claims) - 1:
		lead = "every claimed improvement held for most pairs against both references"
	case 0:
	default:
		lead = "only " + joinAnd(most) + " held for most pairs against both references"
	}
	fmt.Fprintf(b, "Beyond accuracy, %s (pairs against the baseline / the control): %s.\n", lead, joinAnd(counts))
	renderChange(b, d)
}

// largeRows is the size from which a data set counts as real-size in the
// closing note: at least this many rows, train and test.
const largeRows = 10000

// large reports whether ds is a real-size data set or a PyTorch
// architecture: what the reading on the small data sets is compared with.
func (ds *dataSet) large() bool {
	s := ds.Res.Seeds[0].Data
	return ds.Torch != nil || s.TrainRows+s.TestRows >= largeRows
}

// renderChange writes, when the document has both, what the real-size
// data sets and the PyTorch architectures changed in the reading of the
// small data sets: two sentences from the tallies of each group.
func renderChange(b *bytes.Buffer, d *doc) {
	var small, large doc
	for _, ds := range d.Sets {
		if ds.large() {
			large.Sets = append(large.Sets, ds)
		} else {
			small.Sets = append(small.Sets, ds)
		}
	}
	if len(small.Sets) == 0 || len(large.Sets) == 0 {
		return
	}
	names := func(g *doc) string {
		var n []string
		for _, ds := range g.Sets {
			n = append(n, ds.Name)
		}
		return joinAnd(n)
	}
	share := func(t tally, s side, v verdict) string {
		return fmt.Sprintf("%d of %d", t.count[s][v], t.pairs)
	}
	acc := [2]tally{tallyClaim(&small, claims[0]), tallyClaim(&large, claims[0])}
	fmt.Fprintf(b, "\nWhat changed in the reading: on %s, S + R kept accuracy for %s pairs against the baseline and %s against the control (on %s: %s and %s), and lost it for %s and %s (%s and %s). ",
		names(&large), share(acc[1], vsBaseline, holds), share(acc[1], vsControl, holds), names(&small),
		share(acc[0], vsBaseline, holds), share(acc[0], vsControl, holds),
		share(acc[1], vsBaseline, contradicted), share(acc[1], vsControl, contradicted),
		share(acc[0], vsBaseline, contradicted), share(acc[0], vsControl, contradicted))
	var parts []string
	for _, cl := range claims[1:] {
		t := [2]tally{tallyClaim(&small, cl), tallyClaim(&large, cl)}
		parts = append(parts, fmt.Sprintf("%s held for %s / %s and was contradicted for %s / %s (small data sets: held %s / %s, contradicted %s / %s)",
			cl.topic, share(t[1], vsBaseline, holds), share(t[1], vsControl, holds), share(t[1], vsBaseline, contradicted), share(t[1], vsControl, contradicted),
			share(t[0], vsBaseline, holds), share(t[0], vsControl, holds), share(t[0], vsBaseline, contradicted), share(t[0], vsControl, contradicted)))
	}
	fmt.Fprintf(b, "Beyond accuracy, on the larger data set and architectures (pairs against the baseline / the control; measures validate cannot take on an ONNX model count as no clear effect) %s.\n", joinAnd(parts))
}

// seedCounts says how many seeds the data sets ran: "5 seeds each", or
// per data set when they differ.
func seedCounts(d *doc) string {
	return perSet(d, func(ds *dataSet) string { return plural(len(ds.Res.Seeds), "seed") })
}

// quorums says the quorum of each seed count, as seedCounts does.
func quorums(d *doc) string {
	return perSet(d, func(ds *dataSet) string { return fmt.Sprintf("q = %d", quorum(len(ds.Res.Seeds))) })
}

// perSet is f's value for every data set: "V each" when they agree, else
// "V on A and B, W on C" in the order the values first occur.
func perSet(d *doc, f func(*dataSet) string) string {
	var vals []string
	on := map[string][]string{}
	for _, ds := range d.Sets {
		v := f(ds)
		if _, ok := on[v]; !ok {
			vals = append(vals, v)
		}
		on[v] = append(on[v], ds.Name)
	}
	if len(vals) == 1 {
		return vals[0] + " each"
	}
	parts := make([]string, len(vals))
	for i, v := range vals {
		parts[i] = v + " on " + joinAnd(on[v])
	}
	return strings.Join(parts, ", ")
}

func plural(n int, what string) string {
	if n == 1 {
		return fmt.Sprintf("1 %s", what)
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func joinAnd(s []string) string {
	switch len(s) {
	case 0:
		return ""
	case 1:
		return s[0]
	}
	return strings.Join(s[:len(s)-1], ", ") + " and " + s[len(s)-1]
}

func capitalise(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
