"""Checks strata_torch against strata (run by pytorch_test.go).

    python3 check_forward.py FACTORS.safetensors INPUTS.json

INPUTS.json is {"x": [[...], ...]} (raw, unstandardised rows). Prints one
JSON object: "y64" and "y32", the model's outputs in float64 and float32;
"keys_match", whether state_dict names equal the file's tensor names;
"roundtrip", whether save_safetensors + build_model gives the same outputs;
"losses", the MSE loss over 5 SGD steps on a toy target (float32), which
must decrease.
"""

import json
import os
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import strata_torch as st  # noqa: E402


def main():
    path, inputs = sys.argv[1], sys.argv[2]
    with open(inputs) as f:
        x = torch.tensor(json.load(f)["x"], dtype=torch.float64)
    torch.manual_seed(0)

    model = st.build_model(path)
    tensors, _ = st.load_safetensors(path)
    state = st.strata_state_dict(model)
    keys_match = sorted(state) == sorted(tensors) and all(
        torch.equal(state[k], tensors[k]) for k in tensors
    )

    with torch.no_grad():
        y64 = model.double()(x)
        model = model.float()
        y32 = model(x.float())

    # Round trip through save_safetensors.
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "rt.safetensors")
        st.save_safetensors(p, st.strata_state_dict(model), {
            st.META_ARCHITECTURE: json.dumps(model.arch), st.META_FORMAT_VERSION: st.FORMAT_VERSION})
        with torch.no_grad():
            roundtrip = torch.equal(st.build_model(p)(x.float()), y32)

    # A few SGD steps towards a toy target: every factor gets a gradient.
    target = torch.randn(y32.shape)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    losses = []
    for _ in range(5):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x.float()), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]

    json.dump({
        "y64": y64.tolist(), "y32": y32.tolist(), "keys_match": keys_match,
        "roundtrip": roundtrip, "losses": losses, "no_grad": no_grad,
        "torch": torch.__version__,
    }, sys.stdout)


if __name__ == "__main__":
    main()
