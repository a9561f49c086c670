package render_test

import (
	"strings"
	"testing"

	"github.com/strata-ml/strata/render"
	"github.com/strata-ml/strata/render/rendertest"
	"github.com/strata-ml/strata/validation"
	vt "github.com/strata-ml/strata/validation/validationtest"
)

// The conversion section: one row per layer in both pages, cells made
// safe (a "|" in Markdown, a "<" in HTML), "-" where nothing was measured.
func TestConversionSection(t *testing.T) {
	v := vt.Full(450, 0.948, -0.006, 0.002)
	r := judged(t, v)
	r.Conversion = &render.Conversion{Summary: "fitted to <1024> rows", Layers: []render.ConversionLayer{
		{Name: "fc|1", Structure: "monarch b=4 r=16 + lowrank r=8", Params: 100, Dense: 400,
			WeightOnly: validation.Num(0.25), DataAware: validation.Num(0.0625), Written: "data-aware", LossIncrease: validation.Num(0.001)},
		{Name: "head", Structure: "dense (kept)", Params: 40, Dense: 40},
	}}
	md := string(render.Markdown(r, nil))
	for _, want := range []string{"## Conversion\n\nfitted to <1024> rows",
		"| fc\\|1 | monarch b=4 r=16 + lowrank r=8 | 100 / 400 | 0.25 | 0.0625 | data-aware | +0.001 |",
		"| head | dense (kept) | 40 / 40 | - | - | - | - |"} {
		if !strings.Contains(md, want) {
			t.Errorf("report.md lacks %q:\n%s", want, md)
		}
	}
	page, err := render.HTML(r, render.Plots(v, render.TrainLogs{}))
	if err != nil {
		t.Fatal(err)
	}
	rendertest.CheckHTML(t, page, "GO", []string{render.PlotSpectra, render.PlotSensitivity, render.PlotResidual, render.PlotRobustness})
	for _, want := range []string{`<table id="conversion">`, "fitted to &lt;1024&gt; rows", "<td>fc|1</td>", "<td class=\"n\">0.0625</td>"} {
		if !strings.Contains(string(page), want) {
			t.Errorf("report.html lacks %q", want)
		}
	}
}
