package compute

// Freeze marks every parameter of the given role (RoleTrunk,
// RoleCorrection, RoleWeight, RoleBias or RoleNorm) as frozen and returns
// how many tensors it froze. A frozen parameter is not trained at all: it
// gets no gradient buffer (NewGrads), no optimiser state and no update,
// weight decay included, and it is left out of the residual penalty and of
// the gradient norms of a Trainer. Freeze must be called before NewTrainer.
//
// Freezing belongs to this network value: SetOperator rebuilds the
// parameter list and ConvertNetwork and CloneNetwork rebuild the network
// from its spec, and all of them forget it.
func (net *Network[T]) Freeze(role Role) int {
	n := 0
	for i := range net.params {
		if net.params[i].Role == role && !net.params[i].Frozen {
			net.params[i].Frozen = true
			n++
		}
	}
	return n
}
