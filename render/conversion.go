package render

import (
	"cmp"
	"fmt"
	"strings"

	"github.com/strata-ml/strata/render/number"
	"github.com/strata-ml/strata/validation"
)

// Conversion is what the report shows of the candidate's conversion
// (convert.json): each converted layer's structure and, for a data-aware
// conversion, the output error of its weight-only and data-aware fits on
// held-out calibration rows and which was written; for a whole-model
// budget, each layer's choice with the measured increase of the model's
// loss, kept-dense layers included.
type Conversion struct {
	// Summary is one sentence on how the model was converted.
	Summary string
	Layers  []ConversionLayer
}

// ConversionLayer is one layer of a Conversion. The pointers are nil
// where the conversion did not measure them.
type ConversionLayer struct {
	Name      string
	Structure string
	Params    int
	Dense     int
	// WeightOnly and DataAware are the held-out output errors; Written
	// names the fit written.
	WeightOnly, DataAware *validation.NullableFloat
	Written               string
	// LossIncrease is the model's loss increase with this layer alone
	// converted as chosen.
	LossIncrease *validation.NullableFloat
}

// markdown writes the conversion section of report.md (nothing for nil).
func (c *Conversion) markdown(b *strings.Builder) {
	if c == nil {
		return
	}
	fmt.Fprintf(b, "## Conversion\n\n%s\n\n", mdCell(c.Summary))
	b.WriteString("| layer | structure | params / dense | held-out error weight-only | data-aware | written | loss increase |\n|---|---|---:|---:|---:|---|---:|\n")
	for _, l := range c.Layers {
		fmt.Fprintf(b, "| %s | %s | %d / %d | %s | %s | %s | %s |\n", mdCell(l.Name), mdCell(l.Structure), l.Params, l.Dense,
			number.Cell(l.WeightOnly), number.Cell(l.DataAware), cmp.Or(l.Written, "-"), number.SignedCell(l.LossIncrease))
	}
	b.WriteString("\n")
}

// htmlConversion is the conversion section of report.html.
const htmlConversion = `{{with .Report.Conversion}}<h2>Conversion</h2>
<p>{{.Summary}}</p>
<div class="scroll"><table id="conversion">
<thead><tr><th>layer</th><th>structure</th><th>params / dense</th><th>held-out error weight-only</th><th>data-aware</th><th>written</th><th>loss increase</th></tr></thead>
<tbody>
{{range .Layers}}<tr><td>{{.Name}}</td><td>{{.Structure}}</td><td class="n">{{.Params}} / {{.Dense}}</td><td class="n">{{num .WeightOnly}}</td><td class="n">{{num .DataAware}}</td><td>{{if .Written}}{{.Written}}{{else}}-{{end}}</td><td class="n">{{signed .LossIncrease}}</td></tr>
{{end}}</tbody>
</table></div>
{{end}}`
