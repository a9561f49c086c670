package stages

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/strata-ml/strata/internal/inputerr"
	"github.com/strata-ml/strata/internal/inputfile"
	"github.com/strata-ml/strata/internal/limits"
	"github.com/strata-ml/strata/internal/provenance"
	"github.com/strata-ml/strata/render"
	"github.com/strata-ml/strata/validation"
)

// readConversion reads the convert.json at path (or in the directory
// path) for the report's conversion section. Problems are bad input.
func readConversion(path string) (*render.Conversion, provenance.File, error) {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		path = filepath.Join(path, "convert.json")
	}
	b, err := inputfile.ReadFile(path, limits.JSONBytes, "JSON file")
	if err != nil {
		return nil, provenance.File{}, err
	}
	in := provenance.Bytes(path, b)
	var res ConvertResult
	if err := json.Unmarshal(b, &res); err != nil {
		return nil, in, inputerr.Errorf("%s: not a convert.json: %v", path, err)
	}
	if res.SchemaVersion < 2 || res.SchemaVersion > ConvertSchemaVersion {
		return nil, in, inputerr.Errorf("%s: schema_version %d, want 2 to %d", path, res.SchemaVersion, ConvertSchemaVersion)
	}
	return res.conversion(), in, nil
}

// conversion is what the report shows of r.
func (r *ConvertResult) conversion() *render.Conversion {
	c := &render.Conversion{Summary: fmt.Sprintf("%d of %d selected layers converted, %d parameters of %d (%.3f), weight-only.",
		r.Totals.Layers, len(r.Selected), r.Totals.Params, r.Totals.ParamsDense, r.Totals.Ratio)}
	if cal := r.Calibration; cal != nil {
		c.Summary = fmt.Sprintf("%d of %d selected layers converted, %d parameters of %d (%.3f), fitted to the activations of %d calibration rows (%s, %s fit), %d held out: the data-aware fit is written unless its held-out output error is the higher.",
			r.Totals.Layers, len(r.Selected), r.Totals.Params, r.Totals.ParamsDense, r.Totals.Ratio, cal.Rows, cal.Engine, cal.FitMode, cal.Held)
	}
	rows := map[string]render.ConversionLayer{}
	var order []string
	for _, l := range r.Layers {
		cl := render.ConversionLayer{Name: l.Name, Structure: l.Hyperparameters.String(), Params: l.Params, Dense: l.ParamsDense}
		if lc := l.Calibration; lc != nil {
			cl.WeightOnly, cl.DataAware, cl.Written = validation.Num(float64(lc.WeightOnlyError)), validation.Num(float64(lc.DataAwareError)), lc.Written
		}
		rows[l.Name], order = cl, append(order, l.Name)
	}
	if ma := r.ModelAuto; ma != nil {
		c.Summary += fmt.Sprintf(" Structures chosen over the model (%s): the loss on the held-out rows rises by %.4g measured with every layer converted (%.4g summed layer by layer).",
			ma.goal(), float64(ma.MeasuredLossIncrease), ma.LossIncrease)
		order = nil // the assignment's layers, in model order, kept-dense ones too
		for _, l := range ma.Layers {
			o := l.Options[l.Chosen]
			cl, ok := rows[l.Name]
			if !ok {
				cl = render.ConversionLayer{Name: l.Name, Structure: "dense (kept)", Params: o.Params, Dense: o.Params}
			}
			cl.LossIncrease = validation.Num(o.LossIncrease)
			rows[l.Name], order = cl, append(order, l.Name)
		}
	}
	for _, name := range order {
		c.Layers = append(c.Layers, rows[name])
	}
	return c
}
