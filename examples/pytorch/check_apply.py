"""Checks strata_torch.apply on a real nn.Module (run by apply_test.go).

    python3 check_apply.py MODELS_DIR NAME CHECKPOINT MATERIALIZED FACTORS OUT

MODELS_DIR is internal/testmodels' built set (make_models.py, which defines
the modules, and reference.json with each model's evaluation input); NAME
is one of its models ("cnn", "transformer"); CHECKPOINT its state_dict as
safetensors; MATERIALIZED strata convert's model.materialized.safetensors
of it; FACTORS strata export --factors of convert's model.arrow. Builds the
module three times: with CHECKPOINT loaded and FACTORS applied
(strata_torch.apply), and with MATERIALIZED loaded. Writes OUT.onnx
(torch.onnx.export of the applied module) and OUT.logits.f32 (its logits on
the evaluation input), and prints one JSON object:

  swapped       the layers apply swapped
  modules       their new module types
  rel_diff      max |applied - materialised| / max |materialised| of the
                logits, eval mode, under torch.no_grad (float32)
  no_grad       the trunk and correction parameters without a finite
                gradient after one backward pass in training mode
  onnx, logits  the files written
  torch         torch's version
"""

import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import strata_torch as st  # noqa: E402


def main():
    models_dir, name, checkpoint, materialized, factors, out = sys.argv[1:7]
    sys.path.insert(0, models_dir)
    import make_models  # noqa: E402  (the test models' module classes)

    torch.manual_seed(0)
    torch.set_num_threads(1)
    with open(os.path.join(models_dir, "reference.json")) as f:
        ref = json.load(f)["models"][name]["input"]
    x = torch.from_numpy(np.fromfile(os.path.join(models_dir, ref["file"]), dtype="<f4").reshape(ref["shape"]))
    cls = make_models.MODELS[name][0]

    def build(path):
        m = cls()
        state, _ = st.load_safetensors(path)
        m.load_state_dict(state)
        return m.eval()

    applied = build(checkpoint)
    swapped = st.apply(applied, factors)
    dense = build(materialized)
    with torch.no_grad():
        want = dense(x)
        got = applied(x)
    rel = float((got - want).abs().max() / want.abs().max())

    applied.train()
    applied(x[:32]).square().mean().backward()
    no_grad = [n for n, p in applied.named_parameters()
               if (".trunk." in n or ".correction." in n) and (p.grad is None or not torch.isfinite(p.grad).all())]
    applied.zero_grad()
    applied.eval()

    torch.onnx.export(applied, (x[:2],), out + ".onnx", input_names=["x"], output_names=["logits"],
                      dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17)
    with torch.no_grad():
        applied(x).numpy().astype("<f4").tofile(out + ".logits.f32")
    print(json.dumps({
        "swapped": swapped,
        "modules": [type(applied.get_submodule(n)).__name__ for n in swapped],
        "rel_diff": rel,
        "no_grad": no_grad,
        "onnx": out + ".onnx",
        "logits": out + ".logits.f32",
        "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
