package compute

import (
	"slices"
	"testing"
)

// TestFreeze checks that frozen parameters get no gradient buffer, no
// optimiser state and no update, weight decay included, with both
// optimisers, while the others train.
func TestFreeze(t *testing.T) {
	x, y := separableData(newRand(31), 64, 12, 4)
	for _, kind := range []string{OptimizerAdamW, OptimizerSGD} {
		for _, role := range []Role{RoleTrunk, RoleCorrection} {
			t.Run(kind+"/"+string(role), func(t *testing.T) {
				net, _ := NewNetwork[float32](structuredSpec())
				if err := net.InitStructured(newRand(4)); err != nil {
					t.Fatal(err)
				}
				// A correction initialised from scratch starts at zero,
				// which weight decay cannot move: start it elsewhere.
				for _, p := range net.Params() {
					if p.Role == RoleCorrection {
						for j := range p.Data {
							p.Data[j] = 0.1
						}
					}
				}
				if n := net.Freeze(role); n != 2 {
					t.Fatalf("froze %d tensors, want 2 (the monarch L and R, or the lowrank U and V)", n)
				}
				before := make([][]float32, len(net.Params()))
				for i, p := range net.Params() {
					before[i] = slices.Clone(p.Data)
				}
				cfg := DefaultTrainerConfig()
				cfg.Optimizer.Kind = kind
				cfg.Optimizer.WeightDecay = 0.5
				cfg.ResidualL2 = 0.1
				tr, err := NewTrainer(net, cfg)
				if err != nil {
					t.Fatal(err)
				}
				defer tr.Close()
				for range 3 {
					if _, err := tr.Step(x, y, 64, 0.05); err != nil {
						t.Fatal(err)
					}
				}
				st := tr.Optimizer().State()
				for i, p := range net.Params() {
					same := slices.Equal(p.Data, before[i])
					if p.Role == role {
						if !same {
							t.Errorf("frozen %s changed", p.Name)
						}
						if st.M[i] != nil {
							t.Errorf("frozen %s has optimiser state", p.Name)
						}
					} else if same {
						t.Errorf("trained %s did not change", p.Name)
					}
				}
				for i, g := range net.NewGrads() {
					if p := net.Params()[i]; p.Role == role && g != nil {
						t.Errorf("NewGrads gave frozen %s a buffer", p.Name)
					}
				}
			})
		}
	}
}
