#!/usr/bin/python3
"""Writes the ONNX test models of arrowio/onnx and what the tests expect of them.

    /usr/bin/python3 make_fixtures.py [OUTDIR]   (default: this script's folder)

Needs Debian's python3-onnx, python3-numpy and python3-torch. The output is
deterministic (seeded, fixed producer fields), so TestFixturesFresh reruns
this script into a temporary folder and compares every file byte for byte.

Writes:
  *.onnx            valid models (onnx.checker passes on each)
  malformed/*.onnx  models each reader must refuse (the Go tests hold the
                    expected error text)
  expect.json       per valid model: the convertible linear maps in graph
                    order with their true W (out x in), bias, and one forward
                    pass of each (input x, output y) computed here, with numpy
                    from the ONNX operator definitions or with PyTorch, never
                    with the Go code under test; and the skipped weights.
"""

import json
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 13
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
EXPECT = {}


def rng(seed):
    return np.random.RandomState(seed)


def normal(r, *shape):
    return r.standard_normal(shape).astype(np.float32)


def init(name, array, raw=True):
    """An initializer from a numpy array; raw=False stores the typed field."""
    if raw:
        t = numpy_helper.from_array(array, name)
    else:
        dtype = onnx.mapping.NP_TYPE_TO_TENSOR_TYPE[array.dtype]
        t = helper.make_tensor(name, dtype, array.shape, array.flatten().tolist())
    return t


def vinfo(name, elem, shape):
    return helper.make_tensor_value_info(name, elem, shape)


def model(name, nodes, inputs, outputs, inits, opset=OPSET, check=True):
    graph = helper.make_graph(nodes, name, inputs, outputs, inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                          producer_name="strata-testdata", producer_version="1")
    m.ir_version = 7
    if check:
        onnx.checker.check_model(m)
    return m


def save(m, name, sub=""):
    d = os.path.join(OUT, sub)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(m if isinstance(m, bytes) else m.SerializeToString())


def arr(a):
    a = np.asarray(a, dtype=np.float64)
    return {"shape": list(a.shape), "data": a.flatten().tolist()}


def linear(node, op, weight, w, b=None, bias="", x=None, y=None, via=()):
    """What Linears must report for one node: W is out x in."""
    w = np.asarray(w, dtype=np.float64)
    e = {"node": node, "op": op, "weight": weight, "bias": bias, "via": list(via),
         "out": w.shape[0], "in": int(np.prod(w.shape[1:])),
         "w": w.reshape(w.shape[0], -1).flatten().tolist()}
    if b is not None:
        e["b"] = np.asarray(b, dtype=np.float64).flatten().tolist()
    if x is not None:
        e["x"], e["y"] = arr(x), arr(y)
    return e


def f64(a):
    return np.asarray(a, dtype=np.float64)


def gemm_models():
    r = rng(1)
    w, c = normal(r, 3, 4), normal(r, 3)
    x = normal(r, 2, 4)
    y = 0.5 * f64(x) @ f64(w).T + 2.0 * f64(c)
    m = model("gemm_transb1",
              [helper.make_node("Gemm", ["x", "fc.weight", "fc.bias"], ["y"], name="fc",
                                transB=1, alpha=0.5, beta=2.0)],
              [vinfo("x", TensorProto.FLOAT, [2, 4])], [vinfo("y", TensorProto.FLOAT, [2, 3])],
              [init("fc.weight", w), init("fc.bias", c)])
    save(m, "gemm_transb1.onnx")
    EXPECT["gemm_transb1.onnx"] = {"linears": [
        linear("fc", "Gemm", "fc.weight", 0.5 * f64(w), 2.0 * f64(c), "fc.bias", x, y)]}

    w1, c1, w2 = normal(r, 4, 3), normal(r, 1, 3), normal(r, 2, 3)
    x = normal(r, 2, 4)
    h = 1.5 * f64(x) @ f64(w1) + 0.25 * f64(c1)
    y = np.maximum(h, 0) @ f64(w2).T
    m = model("gemm_transb0",
              [helper.make_node("Gemm", ["x", "l1.w", "l1.c"], ["h"], name="l1", alpha=1.5, beta=0.25),
               helper.make_node("Relu", ["h"], ["r"], name="act"),
               helper.make_node("Gemm", ["r", "l2.w"], ["y"], name="l2", transB=1)],
              [vinfo("x", TensorProto.FLOAT, ["batch", 4])], [vinfo("y", TensorProto.FLOAT, ["batch", 2])],
              [init("l1.w", w1), init("l1.c", c1), init("l2.w", w2)])
    save(m, "gemm_transb0.onnx")
    EXPECT["gemm_transb0.onnx"] = {"linears": [
        linear("l1", "Gemm", "l1.w", 1.5 * f64(w1).T, 0.25 * f64(c1), "l1.c", x, h),
        linear("l2", "Gemm", "l2.w", w2, None, "", np.maximum(h, 0), y)]}


def matmul_models():
    r = rng(2)
    w, b = normal(r, 4, 5), normal(r, 5)
    x = normal(r, 2, 3, 4)
    y = f64(x) @ f64(w) + f64(b)
    m = model("matmul3d",
              [helper.make_node("MatMul", ["x", "proj.weight"], ["mm"], name="proj"),
               helper.make_node("Add", ["mm", "proj.bias"], ["h"], name="proj_bias"),
               helper.make_node("Relu", ["h"], ["y"], name="act")],
              [vinfo("x", TensorProto.FLOAT, [2, 3, 4])], [vinfo("y", TensorProto.FLOAT, [2, 3, 5])],
              [init("proj.weight", w), init("proj.bias", b)])
    save(m, "matmul3d.onnx")
    e = linear("proj", "MatMul", "proj.weight", f64(w).T, b, "proj.bias", x, y)
    e["bias_node"] = "proj_bias"
    EXPECT["matmul3d.onnx"] = {"linears": [e]}

    wt, w2t = normal(r, 5, 4), normal(r, 3, 5)
    x = normal(r, 2, 4)
    h = f64(x) @ f64(wt).T
    y = h @ f64(w2t).T
    m = model("matmul_transposed",
              [helper.make_node("Transpose", ["a.wt"], ["a.w"], name="a_t", perm=[1, 0]),
               helper.make_node("Identity", ["a.w"], ["a.w2"], name="a_id"),
               helper.make_node("MatMul", ["x", "a.w2"], ["h"], name="a"),
               helper.make_node("Transpose", ["b.wt"], ["b.w"], name="b_t"),
               helper.make_node("MatMul", ["h", "b.w"], ["y"], name="b")],
              [vinfo("x", TensorProto.FLOAT, [2, 4])], [vinfo("y", TensorProto.FLOAT, [2, 3])],
              [init("a.wt", wt), init("b.wt", w2t)])
    save(m, "matmul_transposed.onnx")
    EXPECT["matmul_transposed.onnx"] = {"linears": [
        linear("a", "MatMul", "a.wt", wt, None, "", x, h, via=["a_t", "a_id"]),
        linear("b", "MatMul", "b.wt", w2t, None, "", h, y, via=["b_t"])]}


def conv_models():
    import torch
    import torch.nn.functional as F
    r = rng(3)
    w, b = normal(r, 6, 3, 1, 1), normal(r, 6)
    x = normal(r, 1, 3, 5, 5)
    y = F.conv2d(torch.from_numpy(f64(x)), torch.from_numpy(f64(w)), torch.from_numpy(f64(b))).numpy()
    m = model("conv1x1",
              [helper.make_node("Conv", ["x", "pw.weight", "pw.bias"], ["y"], name="pw")],
              [vinfo("x", TensorProto.FLOAT, [1, 3, 5, 5])], [vinfo("y", TensorProto.FLOAT, [1, 6, 5, 5])],
              [init("pw.weight", w), init("pw.bias", b)])
    save(m, "conv1x1.onnx")
    EXPECT["conv1x1.onnx"] = {"linears": [linear("pw", "Conv", "pw.weight", w, b, "pw.bias", x, y)]}

    w1, b1, w2 = normal(r, 4, 3, 3, 3), normal(r, 4), normal(r, 2, 4, 3, 3)
    x = normal(r, 1, 3, 7, 7)
    t = torch.from_numpy
    h = F.conv2d(t(f64(x)), t(f64(w1)), t(f64(b1)), stride=2, padding=1).numpy()
    y = F.conv2d(t(np.maximum(h, 0)), t(f64(w2)), None, padding=2, dilation=2).numpy()
    m = model("conv3x3",
              [helper.make_node("Conv", ["x", "c1.weight", "c1.bias"], ["h"], name="c1",
                                kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
               helper.make_node("Relu", ["h"], ["r"], name="act"),
               helper.make_node("Conv", ["r", "c2.weight"], ["y"], name="c2",
                                pads=[2, 2, 2, 2], dilations=[2, 2])],
              [vinfo("x", TensorProto.FLOAT, [1, 3, 7, 7])], [vinfo("y", TensorProto.FLOAT, [1, 2, 4, 4])],
              [init("c1.weight", w1), init("c1.bias", b1), init("c2.weight", w2)])
    save(m, "conv3x3.onnx")
    EXPECT["conv3x3.onnx"] = {"linears": [
        linear("c1", "Conv", "c1.weight", w1, b1, "c1.bias", x, h),
        linear("c2", "Conv", "c2.weight", w2, None, "", np.maximum(h, 0), y)]}


def skipped_model():
    """Weights strata must list as not convertible, each with its reason."""
    r = rng(4)
    F = TensorProto.FLOAT
    nodes = [
        helper.make_node("Conv", ["x1", "dw.weight"], ["y1"], name="dw", group=3, pads=[1, 1, 1, 1]),
        helper.make_node("MatMul", ["x2", "shared.weight"], ["y2"], name="tied_a"),
        helper.make_node("MatMul", ["x3", "shared.weight"], ["y3"], name="tied_b"),
        helper.make_node("Gemm", ["x4", "ta.weight"], ["y4"], name="trans_a", transA=1),
        helper.make_node("Cast", ["half.weight"], ["half.float"], name="cast", to=F),
        helper.make_node("MatMul", ["x2", "half.float"], ["y5"], name="via_cast"),
        helper.make_node("MatMul", ["left.weight", "x4"], ["y6"], name="left"),
        helper.make_node("Transpose", ["x2"], ["x2t"], name="x2_t"),
        helper.make_node("MatMul", ["x2", "x2t"], ["y7"], name="gram"),
    ]
    m = model("skipped", nodes,
              [vinfo("x1", F, [1, 3, 5, 5]), vinfo("x2", F, [2, 4]), vinfo("x3", F, [2, 4]),
               vinfo("x4", F, [4, 2])],
              [vinfo("y1", F, [1, 3, 5, 5]), vinfo("y2", F, [2, 3]), vinfo("y3", F, [2, 3]),
               vinfo("y4", F, [2, 3]), vinfo("y5", F, [2, 3]), vinfo("y6", F, [3, 2]),
               vinfo("y7", F, [2, 2])],
              [init("dw.weight", normal(r, 3, 1, 3, 3)), init("shared.weight", normal(r, 4, 3)),
               init("ta.weight", normal(r, 4, 3)), init("half.weight", normal(r, 4, 3).astype(np.float16)),
               init("left.weight", normal(r, 3, 4))])
    save(m, "skipped.onnx")
    EXPECT["skipped.onnx"] = {"linears": [], "skipped": [
        {"node": "dw", "weight": "dw.weight"},
        {"node": "tied_a", "weight": "shared.weight"},
        {"node": "tied_b", "weight": "shared.weight"},
        {"node": "trans_a", "weight": "ta.weight"},
        {"node": "via_cast", "weight": "half.float"},
        {"node": "left", "weight": "left.weight"}]}


def dtype_model():
    """One MatMul per weight storage: element type x raw_data or typed field."""
    # Multiples of 1/8 in [-2, 2]: exact in every float type here.
    r = rng(5)
    w = (r.randint(-16, 17, size=(4, 3)) / 8.0)
    cases = [("f32_typed", np.float32, TensorProto.FLOAT, False),
             ("f32_raw", np.float32, TensorProto.FLOAT, True),
             ("f64_typed", np.float64, TensorProto.DOUBLE, False),
             ("f64_raw", np.float64, TensorProto.DOUBLE, True),
             ("f16_typed", np.float16, TensorProto.FLOAT16, False),
             ("f16_raw", np.float16, TensorProto.FLOAT16, True),
             ("bf16_typed", None, TensorProto.BFLOAT16, False),
             ("bf16_raw", None, TensorProto.BFLOAT16, True)]
    nodes, inputs, outputs, inits, lin = [], [], [], [], []
    for i, (name, np_type, onnx_type, raw) in enumerate(cases):
        wi = np.roll(w, i, axis=0)
        if np_type is None:  # bfloat16: the high half of the float32 bits
            bits = (wi.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
            if raw:
                t = helper.make_tensor(name, onnx_type, wi.shape, bits.tobytes(), raw=True)
            else:
                t = helper.make_tensor(name, onnx_type, wi.shape, wi.flatten().tolist())
        else:
            t = init(name, wi.astype(np_type), raw=raw)
        inits.append(t)
        nodes.append(helper.make_node("MatMul", ["x_" + name, name], ["y_" + name], name="mm_" + name))
        inputs.append(vinfo("x_" + name, onnx_type, [2, 4]))
        outputs.append(vinfo("y_" + name, onnx_type, [2, 3]))
        lin.append(linear("mm_" + name, "MatMul", name, wi.T))
    save(model("dtypes", nodes, inputs, outputs, inits), "dtypes.onnx")
    EXPECT["dtypes.onnx"] = {"linears": lin}


def passthrough_model():
    """One convertible MatMul among int64, bool and float16 tensors, which
    every surgery must leave byte for byte as they are."""
    r = rng(6)
    F = TensorProto.FLOAT
    w, b = normal(r, 4, 3), normal(r, 3)
    nodes = [
        helper.make_node("Reshape", ["x", "shape"], ["xr"], name="reshape"),
        helper.make_node("MatMul", ["xr", "fc.weight"], ["mm"], name="fc"),
        helper.make_node("Add", ["mm", "fc.bias"], ["h"], name="fc_bias"),
        helper.make_node("Cast", ["fill16"], ["fill"], name="cast", to=F),
        helper.make_node("Where", ["mask", "h", "fill"], ["y"], name="where"),
    ]
    inits = [
        init("shape", np.array([2, 4], dtype=np.int64)),
        init("fc.weight", w), init("fc.bias", b),
        init("fill16", np.array([0.5, -1.0, 2.0], dtype=np.float16), raw=False),
        init("mask", np.array([True, False, True])),
        # An int64 buffer no node reads, like BatchNorm's num_batches_tracked.
        init("bn.num_batches_tracked", np.array(12345, dtype=np.int64), raw=False),
        init("token_ids", np.array([[1, 2], [3, -4]], dtype=np.int64), raw=True),
    ]
    m = model("passthrough", nodes, [vinfo("x", F, [8])], [vinfo("y", F, [2, 3])], inits)
    save(m, "passthrough.onnx")
    x = normal(r, 2, 4)
    e = linear("fc", "MatMul", "fc.weight", f64(w).T, b, "fc.bias", x, f64(x) @ f64(w) + f64(b))
    e["bias_node"] = "fc_bias"
    EXPECT["passthrough.onnx"] = {"linears": [e]}


def torch_models():
    """Models as torch.onnx.export writes them; the truth is the module's own
    weight ([out, in], [out, in, kh, kw]) and its forward pass."""
    import torch
    from torch import nn
    torch.manual_seed(7)

    class Seq(nn.Module):  # a linear on the last axis of [batch, tokens, features]
        def __init__(self):
            super().__init__()
            self.embed = nn.Linear(4, 6)
            self.head = nn.Linear(6, 3)

        def forward(self, x):
            return self.head(torch.relu(self.embed(x)))

    nets = {
        "torch_mlp.onnx": (nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)), (2, 4)),
        "torch_seq.onnx": (Seq(), (2, 5, 4)),
        "torch_cnn.onnx": (nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 1),
                                         nn.ReLU(), nn.Flatten(), nn.Linear(6 * 4 * 4, 5)), (2, 1, 4, 4)),
    }
    for name, (net, shape) in nets.items():
        net.eval()
        x = torch.randn(*shape)
        seen = []

        def hook(mod, inp, out):
            seen.append((mod, inp[0].detach().double().numpy(), out.detach().double().numpy()))

        mods = [mo for mo in net.modules() if isinstance(mo, (nn.Linear, nn.Conv2d))]
        handles = [mo.register_forward_hook(hook) for mo in mods]
        with torch.no_grad():
            net(x)
        for h in handles:
            h.remove()
        path = os.path.join(OUT, name)
        torch.onnx.export(net, x, path, opset_version=OPSET, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
        onnx.checker.check_model(onnx.load(path))
        lin = []
        for mod, xi, yi in seen:
            w = mod.weight.detach().double().numpy()
            e = linear("", type(mod).__name__, "", w, mod.bias.detach().double().numpy(), "", xi, yi)
            del e["node"], e["op"], e["weight"], e["bias"], e["via"]  # names are the exporter's
            lin.append(e)
        EXPECT[name] = {"linears": lin}


def malformed():
    F = TensorProto.FLOAT
    r = rng(8)
    good = model("good", [helper.make_node("Gemm", ["x", "fc.weight", "fc.bias"], ["y"], name="fc", transB=1)],
                 [vinfo("x", F, [2, 4])], [vinfo("y", F, [2, 3])],
                 [init("fc.weight", normal(r, 3, 4)), init("fc.bias", normal(r, 3))]).SerializeToString()
    save(good[:len(good) * 2 // 3], "truncated.onnx", "malformed")
    save(b"this is not an ONNX model\n" * 4, "garbage.onnx", "malformed")
    save(b"", "empty.onnx", "malformed")

    def bad(name, nodes, inputs, outputs, inits, opset=OPSET):
        save(model(name, nodes, inputs, outputs, inits, opset=opset, check=False), name + ".onnx", "malformed")

    relu = lambda i, o, n: helper.make_node("Relu", [i], [o], name=n)
    bad("cycle", [relu("x", "a", "r0"), helper.make_node("Add", ["a", "c"], ["b"], name="add"),
                  relu("b", "c", "r1"), relu("c", "y", "r2")],
        [vinfo("x", F, [2])], [vinfo("y", F, [2])], [])
    bad("unsorted", [relu("a", "y", "second"), relu("x", "a", "first")],
        [vinfo("x", F, [2])], [vinfo("y", F, [2])], [])
    bad("missing_initializer",
        [helper.make_node("Gemm", ["x", "fc.weight", "fc.bias"], ["y"], name="fc", transB=1)],
        [vinfo("x", F, [2, 4])], [vinfo("y", F, [2, 3])], [init("fc.bias", normal(r, 3))])
    bad("opset11", [relu("x", "y", "r")], [vinfo("x", F, [2])], [vinfo("y", F, [2])], [], opset=11)
    ext = init("fc.weight", normal(r, 3, 4))
    ext.ClearField("raw_data")
    ext.data_location = TensorProto.EXTERNAL
    for k, v in (("location", "weights.bin"), ("offset", "0"), ("length", "48")):
        ext.external_data.add(key=k, value=v)
    bad("external_data", [helper.make_node("Gemm", ["x", "fc.weight"], ["y"], name="fc", transB=1)],
        [vinfo("x", F, [2, 4])], [vinfo("y", F, [2, 3])], [ext])
    bad("gemm_in_mismatch", [helper.make_node("Gemm", ["x", "fc.weight"], ["y"], name="fc", transB=1)],
        [vinfo("x", F, [2, 4])], [vinfo("y", F, [2, 3])], [init("fc.weight", normal(r, 3, 5))])
    bad("matmul_in_mismatch", [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")],
        [vinfo("x", F, ["batch", 7, 4])], [vinfo("y", F, ["batch", 7, 3])], [init("w", normal(r, 5, 3))])
    bad("conv_channels", [helper.make_node("Conv", ["x", "conv.weight"], ["y"], name="conv")],
        [vinfo("x", F, [1, 3, 8, 8])], [vinfo("y", F, [1, 4, 6, 6])], [init("conv.weight", normal(r, 4, 2, 3, 3))])
    # The mismatch shows only after shapes flow through Conv and Flatten.
    bad("flatten_gemm", [helper.make_node("Conv", ["x", "conv.weight"], ["c"], name="conv"),
                         helper.make_node("Flatten", ["c"], ["f"], name="flat"),
                         helper.make_node("Gemm", ["f", "fc.weight"], ["y"], name="fc", transB=1)],
        [vinfo("x", F, [1, 2, 4, 4])], [vinfo("y", F, [1, 3])],
        [init("conv.weight", normal(r, 5, 2, 1, 1)), init("fc.weight", normal(r, 3, 81))])
    short = init("fc.weight", normal(r, 3, 4))
    short.raw_data = short.raw_data[:40]
    bad("raw_size", [helper.make_node("Gemm", ["x", "fc.weight"], ["y"], name="fc", transB=1)],
        [vinfo("x", F, [2, 4])], [vinfo("y", F, [2, 3])], [short])
    bad("duplicate_output", [relu("x", "y", "r0"), relu("x", "y", "r1")],
        [vinfo("x", F, [2])], [vinfo("y", F, [2])], [])
    m = model("no_default_opset", [relu("x", "y", "r")], [vinfo("x", F, [2])], [vinfo("y", F, [2])], [],
              check=False)
    m.opset_import[0].domain = "com.example"
    save(m, "no_default_opset.onnx", "malformed")


def main():
    gemm_models()
    matmul_models()
    conv_models()
    skipped_model()
    dtype_model()
    passthrough_model()
    torch_models()
    malformed()
    # One model a line: readable diffs without a line per number.
    lines = ["%s: %s" % (json.dumps(k), json.dumps(EXPECT[k], sort_keys=True, separators=(",", ":")))
             for k in sorted(EXPECT)]
    with open(os.path.join(OUT, "expect.json"), "w") as f:
        f.write("{\n" + ",\n".join(lines) + "\n}\n")


if __name__ == "__main__":
    main()
