"""Fine-tune strata's S + R layers of any nn.Module in an ordinary PyTorch
training loop, next to its equal-budget control, and export both to ONNX for
`strata validate` (the recipe of README.md, "The loop for any nn.Module").

    strata convert --model model.safetensors --out conv [--exclude GLOB ...]
    strata export --model conv/model.arrow --factors --format safetensors \\
        --out conv/factors.safetensors
    python3 finetune_loop.py --model-class models.py:Net \\
        --checkpoint model.safetensors --factors conv/factors.safetensors \\
        --train train.csv --eval eval.csv --input-shape 1,8,8 --epochs 3 \\
        --out tuned
    strata validate --baseline tuned/baseline.onnx \\
        --candidate tuned/candidate.onnx --control tuned/control.onnx \\
        --data eval.csv --out val
    strata report --validation val/validation.json --out report

--model-class names the team's module: FILE.py:CLASS, built with no
arguments (replace build_module for anything else). --checkpoint is its
state_dict as safetensors (the file strata convert read). The data are CSV
files with a header: the --label column (default "label") holds the class,
every other column a feature, in order; each row is reshaped to
--input-shape (the module's input without the batch axis).

Three models, each exported with torch.onnx.export (opset 17, input "x" and
output "logits" with a dynamic batch axis) into --out:

  baseline.onnx   the module with the checkpoint loaded, as trained;
  candidate.onnx  the same module with strata_torch.apply swapping in the
                  S + R layers of --factors, then fine-tuned;
  control.onnx    the module with the checkpoint loaded, fine-tuned with the
                  candidate's budget: the same loop, epochs, batches (in the
                  same order), optimiser and learning rate. Only the control
                  tells the effect of the structure from the effect of more
                  training.

The loop is the one a team already has: Adam on the mean cross-entropy over
shuffled mini-batches, every parameter trained (the S + R factors, their
biases and the layers left dense). Seeded, one thread and deterministic
algorithms: the same inputs give the same files.

It prints, and writes to --out/loop.json, one JSON object: torch's version,
the layers swapped, the budget (epochs, steps), and for each model its
parameter count (torch's numel over parameters), its accuracy and mean
cross-entropy on the --eval rows (float64 from the float32 logits, eval mode)
and the per-epoch mean training loss; the candidate's also before
fine-tuning ("before").
"""

import argparse
import csv
import importlib.util
import json
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import strata_torch as st  # noqa: E402

OPSET = 17


def build_module(spec):
    """A new module of the class FILE.py:CLASS, built with no arguments."""
    path, _, name = spec.rpartition(":")
    if not path or not name:
        raise SystemExit(f"--model-class {spec!r}: want FILE.py:CLASS")
    mod_spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(path))[0], path)
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    return getattr(module, name)()


def load_module(spec, checkpoint):
    """The module with the checkpoint's state_dict loaded (every key)."""
    model = build_module(spec)
    state, _ = st.load_safetensors(checkpoint)
    model.load_state_dict(state)
    return model


def read_csv(path, label, shape):
    """(x [rows, *shape] float32, y [rows] int64) of a CSV file with a header."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header, rows = rows[0], [r for r in rows[1:] if r]
    if label not in header:
        raise SystemExit(f"{path}: no column {label!r} (columns {header[:3]}...)")
    k = header.index(label)
    x = torch.tensor([[float(v) for i, v in enumerate(r) if i != k] for r in rows], dtype=torch.float32)
    y = torch.tensor([int(r[k]) for r in rows], dtype=torch.int64)
    return x.reshape(len(rows), *shape), y


def metrics(model, x, y):
    """Accuracy and mean cross-entropy of the model on (x, y), eval mode,
    in float64 from the float32 logits (a row's loss logsumexp(z) - z[y])."""
    model.eval()
    with torch.no_grad():
        z = model(x).to(torch.float64)
    loss = (torch.logsumexp(z, dim=1) - z[torch.arange(len(y)), y]).mean()
    acc = (z.argmax(dim=1) == y).to(torch.float64).mean()
    return float(acc), float(loss)


def train(model, x, y, epochs, batch_size, lr, seed):
    """The team's loop: Adam on the mean cross-entropy, shuffled
    mini-batches in the order seed gives. Returns each epoch's mean loss."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    order = torch.Generator().manual_seed(seed)
    losses = []
    model.train()
    for _ in range(epochs):
        total, count = 0.0, 0
        for idx in torch.randperm(len(x), generator=order).split(batch_size):
            opt.zero_grad()
            loss = F.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            total, count = total + float(loss) * len(idx), count + len(idx)
        losses.append(total / count)
    model.eval()
    return losses


def export(model, example, path):
    model.eval()
    torch.onnx.export(model, (example,), path, input_names=["x"], output_names=["logits"],
                      dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}},
                      opset_version=OPSET, do_constant_folding=True)


def summary(model, x, y, losses):
    acc, loss = metrics(model, x, y)
    return {"params": sum(p.numel() for p in model.parameters()), "accuracy": acc, "loss": loss, "train_loss": losses}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model-class", required=True, help="FILE.py:CLASS of the module")
    p.add_argument("--checkpoint", required=True, help="its state_dict as safetensors")
    p.add_argument("--factors", required=True, help="strata export --factors --format safetensors of the conversion")
    p.add_argument("--train", required=True)
    p.add_argument("--eval", required=True)
    p.add_argument("--label", default="label")
    p.add_argument("--input-shape", required=True, help="one example's shape, e.g. 1,8,8")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", required=True)
    args = p.parse_args()

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    shape = [int(d) for d in args.input_shape.split(",")]
    train_x, train_y = read_csv(args.train, args.label, shape)
    eval_x, eval_y = read_csv(args.eval, args.label, shape)
    os.makedirs(args.out, exist_ok=True)
    out = {"torch": torch.__version__, "epochs": args.epochs,
           "steps": args.epochs * -(-len(train_x) // args.batch_size)}

    baseline = load_module(args.model_class, args.checkpoint)
    out["baseline"] = summary(baseline, eval_x, eval_y, [])
    export(baseline, eval_x[:2], os.path.join(args.out, "baseline.onnx"))

    torch.manual_seed(args.seed)
    candidate = load_module(args.model_class, args.checkpoint)
    out["swapped"] = st.apply(candidate, args.factors)
    before = metrics(candidate, eval_x, eval_y)
    losses = train(candidate, train_x, train_y, args.epochs, args.batch_size, args.lr, args.seed)
    out["candidate"] = summary(candidate, eval_x, eval_y, losses)
    out["candidate"]["before"] = {"accuracy": before[0], "loss": before[1]}
    export(candidate, eval_x[:2], os.path.join(args.out, "candidate.onnx"))

    torch.manual_seed(args.seed)
    control = load_module(args.model_class, args.checkpoint)
    losses = train(control, train_x, train_y, args.epochs, args.batch_size, args.lr, args.seed)
    out["control"] = summary(control, eval_x, eval_y, losses)
    export(control, eval_x[:2], os.path.join(args.out, "control.onnx"))

    text = json.dumps(out, indent=1)
    with open(os.path.join(args.out, "loop.json"), "w") as f:
        f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
