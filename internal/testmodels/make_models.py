"""Builds the test models strata's tests run on (called by testmodels.Build).

    python3 make_models.py --digits DIGITS.csv.gz --out DIR [--pretrained DIR]

DIGITS.csv.gz is the UCI digits file (65 integers a row: 64 pixels 0..16 of
an 8x8 image row by row, then the class). Rows are split once with a seeded
permutation: 1437 training rows, 360 evaluation rows. Every model reads the
pixels divided by 16 (exact in binary), except the checkpoint model, which
embeds the raw integer pixels.

Writes into DIR:
  train.csv, eval.csv        header px_<row>_<col>...,label; x/16 written
                             exactly, the label an integer
  eval_x.f32, eval_y.i64     the evaluation rows, little-endian, row-major
  <model>.onnx               torch.onnx.export, opset 17, dynamic batch axis
                             0 on input "x" and output "logits", checked with
                             onnx.checker
  mlp_external.onnx          mlp.onnx with every initializer in the external
                             data file mlp_external.onnx.data beside it
  <model>.safetensors        the state_dict, written by hand (8-byte
                             little-endian header length, JSON header, data)
  <model>.input.bin          the model's evaluation input (eval_x reshaped,
                             or x*16 as int64), dtype and shape in the JSON
  <model>.logits.f32         PyTorch's float32 logits on it, [rows, 10]
  pretrained.*.bin           with --pretrained: seeded inputs (uniform in
                             [-1, 1)) of the pretrained models and their
                             outputs computed by the small torch interpreter
                             of their operators below
  reference.json             what Go needs to read all of the above, with
                             accuracy and mean cross-entropy (float64 from
                             the float32 logits) per model

Models (module names are the tensor names):
  mlp          fc1 64->128, GELU, fc2 128->128, GELU, fc3 128->10;
               __metadata__ {"activation": "gelu"}
  cnn          conv1 3x3 1->16 (padding 1), ReLU, conv2 3x3 16->32
               (padding 1), ReLU, conv3 1x1 32->64, ReLU, 2x2 max pool,
               fc 1024->64, ReLU, head 64->10, on [N, 1, 8, 8]: conv2, conv3
               and fc are large enough for S + R (monarch b=4 or lowrank
               rank 4, plus a rank-8 residual) to have fewer parameters
  transformer  the rows as 8 tokens of 8 features [N, 8, 8]: embed 8->32,
               a learned position table pos [1, 8, 32], one
               nn.TransformerEncoderLayer (d 32, 4 heads, ff 64, no dropout,
               batch_first), mean over tokens, head 32->10
  checkpoint   int64 pixels [N, 64]: pixel embedding (17 x 4), position
               embedding (64 x 4) indexed by an int64 buffer position_ids,
               fc 256->64, BatchNorm1d (with its int64 num_batches_tracked),
               ReLU, head 64->10

Deterministic: one thread, fixed seeds, deterministic algorithms.
"""

import argparse
import gzip
import json
import math
import os
import struct
import sys

import numpy as np
import onnx
import onnx.checker
import onnx.numpy_helper
import torch
import torch.nn as nn
import torch.nn.functional as F

SEED = 20260101
EVAL_ROWS = 360
OPSET = 17
CLASSES = 10


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(64, 128)
        self.fc2 = nn.Linear(128, 128)
        self.fc3 = nn.Linear(128, CLASSES)

    def forward(self, x):
        return self.fc3(F.gelu(self.fc2(F.gelu(self.fc1(x)))))


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.conv3 = nn.Conv2d(32, 64, 1)
        self.fc = nn.Linear(64 * 4 * 4, 64)
        self.head = nn.Linear(64, CLASSES)

    def forward(self, x):
        h = F.relu(self.conv3(F.relu(self.conv2(F.relu(self.conv1(x))))))
        h = F.relu(self.fc(torch.flatten(F.max_pool2d(h, 2), 1)))
        return self.head(h)


class Transformer(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(8, 32)
        self.pos = nn.Parameter(torch.zeros(1, 8, 32))
        self.encoder = nn.TransformerEncoderLayer(
            d_model=32, nhead=4, dim_feedforward=64, dropout=0.0, batch_first=True)
        self.head = nn.Linear(32, CLASSES)

    def forward(self, x):
        h = self.encoder(self.embed(x) + self.pos)
        return self.head(h.mean(dim=1))


class Checkpoint(nn.Module):
    def __init__(self):
        super().__init__()
        self.pixel = nn.Embedding(17, 4)
        self.position = nn.Embedding(64, 4)
        self.register_buffer("position_ids", torch.arange(64, dtype=torch.int64))
        self.fc = nn.Linear(64 * 4, 64)
        self.bn = nn.BatchNorm1d(64)
        self.head = nn.Linear(64, CLASSES)

    def forward(self, x):
        h = self.pixel(x) + self.position(self.position_ids)
        h = F.relu(self.bn(self.fc(torch.flatten(h, 1))))
        return self.head(h)


# name: (module, how the [N, 64] rows x/16 become its input, its dtype)
MODELS = {
    "mlp": (MLP, lambda x: x, "float32"),
    "cnn": (CNN, lambda x: x.reshape(-1, 1, 8, 8), "float32"),
    "transformer": (Transformer, lambda x: x.reshape(-1, 8, 8), "float32"),
    "checkpoint": (Checkpoint, lambda x: torch.round(x * 16).to(torch.int64), "int64"),
}
EPOCHS = {"mlp": 12, "cnn": 12, "transformer": 25, "checkpoint": 20}
METADATA = {"mlp": {"activation": "gelu"}}

ST_DTYPES = {torch.float32: ("F32", "<f4"), torch.int64: ("I64", "<i8")}


def write_safetensors(path, state, metadata):
    """Writes state (name -> tensor, in order) as safetensors."""
    header, blobs, offset = {}, [], 0
    for name, t in state.items():
        code, np_dtype = ST_DTYPES[t.dtype]
        raw = t.detach().contiguous().numpy().astype(np_dtype).tobytes()
        header[name] = {"dtype": code, "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    if metadata:
        header["__metadata__"] = metadata
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in blobs:
            f.write(raw)


def read_digits(path):
    with gzip.open(path, "rt") as f:
        lines = [line for line in f if line.strip()]
    # The embedded copy has a header row (px_0_0, ..., label); skip it.
    if lines and not lines[0].split(",")[0].strip().isdigit():
        lines = lines[1:]
    rows = [[int(v) for v in line.split(",")] for line in lines]
    data = np.array(rows, dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 65:
        sys.exit(f"{path}: want 65 integers a row, got shape {data.shape}")
    return data[:, :64], data[:, 64]


def write_csv(path, pixels, labels):
    names = [f"px_{r}_{c}" for r in range(8) for c in range(8)]
    with open(path, "w") as f:
        f.write(",".join(names + ["label"]) + "\n")
        for row, y in zip(pixels, labels):
            # k/16 has at most 4 decimals (0.0625 steps): repr is exact.
            f.write(",".join(repr(v / 16) for v in row.tolist()) + f",{int(y)}\n")


def train(name, model, x, y):
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(SEED + 1)
    model.train()
    for _ in range(EPOCHS[name]):
        for idx in torch.randperm(len(x), generator=gen).split(64):
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    model.eval()


def metrics(logits, y):
    """Accuracy and mean cross-entropy, in float64 from float32 logits."""
    z = logits.astype(np.float64)
    m = z.max(axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(z - m).sum(axis=1))
    loss = float(np.mean(lse - z[np.arange(len(y)), y]))
    acc = float(np.mean(z.argmax(axis=1) == y))
    return acc, loss


def export(model, example, path):
    torch.onnx.export(
        model, (example,), path, input_names=["x"], output_names=["logits"],
        dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=OPSET, do_constant_folding=True)
    onnx.checker.check_model(onnx.load(path), full_check=True)


def write_external(src, dst):
    """Writes src again as dst with its initializers as external data."""
    model = onnx.load(src)
    onnx.save_model(model, dst, save_as_external_data=True, all_tensors_to_one_file=True,
                    location=os.path.basename(dst) + ".data", size_threshold=0)
    onnx.checker.check_model(dst, full_check=True)


def build_model(name, out, train_x, train_y, eval_x, eval_y):
    cls, to_input, dtype = MODELS[name]
    torch.manual_seed(SEED)
    model = cls()
    train(name, model, to_input(train_x), train_y)
    inp = to_input(eval_x)
    with torch.no_grad():
        logits = model(inp).numpy().astype("<f4")
    export(model, inp[:2], os.path.join(out, name + ".onnx"))
    write_safetensors(os.path.join(out, name + ".safetensors"), model.state_dict(),
                      METADATA.get(name))
    np_in = inp.numpy().astype("<f4" if dtype == "float32" else "<i8")
    np_in.tofile(os.path.join(out, name + ".input.bin"))
    logits.tofile(os.path.join(out, name + ".logits.f32"))
    acc, loss = metrics(logits, eval_y.numpy())
    return {
        "onnx": name + ".onnx",
        "safetensors": name + ".safetensors",
        "input": {"name": "x", "dtype": dtype, "shape": list(np_in.shape),
                  "file": name + ".input.bin"},
        "output": {"name": "logits", "shape": list(logits.shape),
                   "file": name + ".logits.f32"},
        "accuracy": acc,
        "loss": loss,
    }


# The pretrained models: a small interpreter of the ops they use, in torch,
# independent of ONNX Runtime.
def conv(x, w, b, attrs):
    pads = attrs.get("pads", [0] * (2 * (w.dim() - 2)))
    k = len(pads) // 2
    # ONNX pads are [x1_begin, x2_begin, ..., x1_end, x2_end]; F.pad wants
    # the last axis first, (begin, end) pairs.
    torch_pads = []
    for axis in reversed(range(k)):
        torch_pads += [pads[axis], pads[axis + k]]
    x = F.pad(x, torch_pads)
    fn = {1: F.conv1d, 2: F.conv2d}[k]
    return fn(x, w, b, stride=attrs.get("strides", 1), dilation=attrs.get("dilations", 1),
              groups=attrs.get("group", 1))


def run_onnx_in_torch(path, inputs):
    model = onnx.load(path)
    env = {i.name: torch.from_numpy(onnx.numpy_helper.to_array(i).copy())
           for i in model.graph.initializer}
    env.update(inputs)
    for node in model.graph.node:
        a = {at.name: onnx.helper.get_attribute_value(at) for at in node.attribute}
        x = [env[n] if n else None for n in node.input]
        op = node.op_type
        if op == "Gemm":
            if a.get("transA", 0):
                sys.exit(f"{path}: Gemm {node.name}: transA unsupported")
            w = x[1].t() if a.get("transB", 0) else x[1]
            y = a.get("alpha", 1.0) * (x[0] @ w)
            if len(x) > 2:
                y = y + a.get("beta", 1.0) * x[2]
        elif op == "Flatten":
            y = torch.flatten(x[0], a.get("axis", 1)).reshape(
                math.prod(x[0].shape[:a.get("axis", 1)]), -1)
        elif op == "Relu":
            y = F.relu(x[0])
        elif op == "Sigmoid":
            y = torch.sigmoid(x[0])
        elif op == "LeakyRelu":
            y = F.leaky_relu(x[0], a.get("alpha", 0.01))
        elif op == "Max":
            y = x[0]
            for other in x[1:]:
                y = torch.maximum(y, other)
        elif op == "Reshape":
            y = x[0].reshape([int(d) for d in x[1].tolist()])
        elif op == "Conv":
            y = conv(x[0], x[1], x[2] if len(x) > 2 else None, a)
        elif op == "Constant":
            y = torch.from_numpy(onnx.numpy_helper.to_array(a["value"]).copy())
        elif op == "Unsqueeze":
            y = x[0]
            for axis in sorted(int(v) for v in x[1].tolist()):
                y = y.unsqueeze(axis)
        elif op == "Transpose":
            y = x[0].permute(a["perm"])
        elif op in ("Add", "Sub", "Mul", "Div", "Pow", "MatMul"):
            y = {"Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "Div": torch.div,
                 "Pow": torch.pow, "MatMul": torch.matmul}[op](x[0], x[1])
        elif op == "Log":
            y = torch.log(x[0])
        elif op == "Clip":
            y = torch.clamp(x[0], x[1] if len(x) > 1 else None, x[2] if len(x) > 2 else None)
        elif op == "ReduceMax":
            if "axes" in a or a.get("keepdims", 1):
                sys.exit(f"{path}: ReduceMax {node.name}: only all axes, keepdims 0")
            y = x[0].max()
        elif op == "Cast":
            if a["to"] != onnx.TensorProto.FLOAT:
                sys.exit(f"{path}: Cast {node.name}: only to float")
            y = x[0].to(torch.float32)
        elif op == "MaxPool":
            if any(a.get("pads", [0])):
                sys.exit(f"{path}: MaxPool {node.name}: pads unsupported")
            y = F.max_pool2d(x[0], a["kernel_shape"], a.get("strides", a["kernel_shape"]))
        else:
            sys.exit(f"{path}: node {node.name}: op {op} not in the interpreter")
        env[node.output[0]] = y
    return [env[o.name] for o in model.graph.output]


# file: the sizes of its input's dynamic dimensions, in order (the
# wake-word model has none; the melspectrogram takes 1 s of 16 kHz audio)
PRETRAINED = {"alexa_v0.1.onnx": [], "embedding_model.onnx": [3], "melspectrogram.onnx": [2, 16000]}


def pretrained_references(src, out):
    refs = {}
    gen = torch.Generator().manual_seed(SEED + 2)
    for i, (fname, dynamic) in enumerate(sorted(PRETRAINED.items())):
        path = os.path.join(src, fname)
        model = onnx.load(path)
        inp = model.graph.input[0]
        sizes = iter(dynamic)
        dims = [d.dim_value if d.dim_value > 0 else next(sizes)
                for d in inp.type.tensor_type.shape.dim]
        x = torch.rand(dims, generator=gen, dtype=torch.float32) * 2 - 1
        with torch.no_grad():
            (y,) = run_onnx_in_torch(path, {inp.name: x})
        stem = f"pretrained.{i}"
        x.numpy().astype("<f4").tofile(os.path.join(out, stem + ".input.bin"))
        y.numpy().astype("<f4").tofile(os.path.join(out, stem + ".output.bin"))
        refs[fname] = {
            "input": {"name": inp.name, "dtype": "float32", "shape": dims,
                      "file": stem + ".input.bin"},
            "output": {"name": model.graph.output[0].name, "shape": list(y.shape),
                       "file": stem + ".output.bin"},
        }
    return refs


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--digits", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--pretrained")
    args = p.parse_args()

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    pixels, labels = read_digits(args.digits)
    perm = np.random.default_rng(SEED).permutation(len(labels))
    ev, tr = perm[:EVAL_ROWS], perm[EVAL_ROWS:]
    write_csv(os.path.join(args.out, "train.csv"), pixels[tr], labels[tr])
    write_csv(os.path.join(args.out, "eval.csv"), pixels[ev], labels[ev])
    scaled = torch.from_numpy(pixels.astype(np.float32) / 16)
    ys = torch.from_numpy(labels)
    eval_x, eval_y = scaled[ev], ys[ev]
    eval_x.numpy().astype("<f4").tofile(os.path.join(args.out, "eval_x.f32"))
    eval_y.numpy().astype("<i8").tofile(os.path.join(args.out, "eval_y.i64"))

    ref = {
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "opset": OPSET,
        "seed": SEED,
        "classes": CLASSES,
        "train_csv": "train.csv",
        "eval_csv": "eval.csv",
        "eval_x": {"dtype": "float32", "shape": list(eval_x.shape), "file": "eval_x.f32"},
        "eval_y": {"dtype": "int64", "shape": list(eval_y.shape), "file": "eval_y.i64"},
        "models": {name: build_model(name, args.out, scaled[tr], ys[tr], eval_x, eval_y)
                   for name in MODELS},
    }
    write_external(os.path.join(args.out, "mlp.onnx"), os.path.join(args.out, "mlp_external.onnx"))
    ref["external"] = {"onnx": "mlp_external.onnx", "data": "mlp_external.onnx.data", "of": "mlp"}
    if args.pretrained:
        ref["pretrained"] = pretrained_references(args.pretrained, args.out)
    with open(os.path.join(args.out, "reference.json"), "w") as f:
        json.dump(ref, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
