package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/strata-ml/strata/stages"
)

// row is one line of the tables that put the data sets side by side: the
// same conversion on each data set that tried it.
type row struct {
	// At holds, per data set, the index of the candidate in its sweep, -1
	// where the data set did not try it.
	At []int
}

// rowKey identifies a candidate across data sets by its conversion: the
// trunk family, its blocks (monarch, blockdiag), the residual and its
// rank, the retraction, whether the conversion is data-aware and how, and
// the whole-model and per-layer parameter budgets. The low-rank trunk's rank is left out: each data
// set scales it to its width.
func rowKey(c *stages.SweepCandidateResult) string {
	v := c.Convert
	blocks := 0
	if v.Structure == "monarch" || v.Structure == "blockdiag" {
		blocks = v.Blocks
	}
	residual, rank := v.Residual, v.ResidualRank
	if residual == "none" || v.Structure == "auto" {
		rank = 0
	}
	fit := ""
	if v.Calibration != "" {
		fit = "calibrated:" + v.CalibrationFit
	}
	return fmt.Sprintf("%s/b%d/%s%d/retract=%t/%s/budget=%g,%g", v.Structure, blocks, residual, rank, c.Retract, fit, v.ModelBudget, v.ParamBudget)
}

// rows lists every conversion any data set tried, in the order the data
// sets first list them.
func (d *doc) rows() []row {
	var keys []string
	var rows []row
	for k, ds := range d.Sets {
		for i := range ds.Res.Candidates {
			key := rowKey(&ds.Res.Candidates[i])
			j := slices.Index(keys, key)
			if j < 0 {
				j = len(rows)
				keys = append(keys, key)
				r := row{At: make([]int, len(d.Sets))}
				for s := range r.At {
					r.At[s] = -1
				}
				rows = append(rows, r)
			}
			if rows[j].At[k] < 0 {
				rows[j].At[k] = i
			}
		}
	}
	return rows
}

// name is the row's candidate name, or the distinct names joined when the
// data sets name it differently.
func (r row) name(d *doc) string {
	var names []string
	for k, i := range r.At {
		if i < 0 {
			continue
		}
		if n := d.Sets[k].Res.Candidates[i].Name; !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	return strings.Join(names, " / ")
}
