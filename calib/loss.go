package calib

import (
	"fmt"
	"math"

	"github.com/strata-ml/strata/compute"
	"github.com/strata-ml/strata/internal/inputerr"
)

// meanLoss returns the mean loss of the float32 outputs z (n x c) for the
// targets y: softmax cross-entropy against class indices, accumulated in
// float64, or for a regressor the squared error averaged over the
// outputs. A target that is not a class index in [0, c) is bad input.
func meanLoss(task compute.Task, z []float32, y []float64, c int) (float64, error) {
	var sum float64
	for i, t := range y {
		zr := z[i*c : (i+1)*c]
		if task == compute.TaskRegression {
			for _, v := range zr {
				d := float64(v) - t
				sum += d * d / float64(c)
			}
			continue
		}
		if t != math.Trunc(t) || t < 0 || t >= float64(c) {
			return 0, inputerr.Errorf("calibration row %d: label %v is not a class index in [0, %d) (the model has %d outputs)", i, t, c, c)
		}
		mx := math.Inf(-1)
		for _, v := range zr {
			mx = max(mx, float64(v))
		}
		var s float64
		for _, v := range zr {
			s += math.Exp(float64(v) - mx)
		}
		sum += mx + math.Log(s) - float64(zr[int(t)])
	}
	loss := sum / float64(max(len(y), 1))
	if !isFinite(loss) {
		return 0, fmt.Errorf("the model's loss on the held-out calibration rows is %v", loss)
	}
	return loss, nil
}
