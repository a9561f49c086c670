"""Build PyTorch modules from a strata factors export.

    strata export --model conv/model.arrow --factors --format safetensors --out model.safetensors

writes every tensor of a decomposed model as it is (the trunk and correction
factors "<layer>.trunk.<P>" and "<layer>.correction.<P>", biases,
undecomposed weights; float32 as F32, integer and bool buffers in their own
dtype), with the architecture JSON in __metadata__ ("strata.architecture",
"strata.format_version" = "1", or "2" when the file holds integer tensors or
layers that say how their weight is stored). This module reads such a file
with the standard library and torch only (no safetensors package) and
builds:

- StructuredResidualLinear: y = x (S + R)^T + bias, with the trunk S and
  the correction R as sub-modules whose nn.Parameters carry strata's names,
  so state_dict() keys match the file's tensor names;
- build_model(path): the architecture's layers in order (linear, dense or
  structured; activations relu, gelu (exact erf), tanh, sigmoid, identity;
  layernorm, eps 1e-5) after the input standardisation the architecture
  records, x' = (x - mean) / std (a std of 0 counts as 1), exactly as strata;
- build_layers(path): every decomposed layer of any checkpoint (a generic one
  too) as a StructuredResidualLinear, by layer name;
- apply(model, path): swaps the decomposed layers into any nn.Module (a CNN,
  a transformer encoder) by module name, nn.Linear for a
  StructuredResidualLinear and nn.Conv2d for a StructuredResidualConv2d, so
  the team's own training loop fine-tunes the factors and torch.onnx.export
  writes the structured candidate.

Forwards are structural, never materialising W: monarch (two batched
products with a permutation between), kronecker (two contractions),
blockdiag (one batched product), lowrank (two products), sparse
(gather + index_add), orthogonal (one product with Q, times scale);
circulant and toeplitz are circular convolutions by torch.fft (float32 or
float64, as the module), like strata's. Families that pad (monarch,
blockdiag, kronecker with a factor shape that does not divide) zero-pad the
input to the padded width and drop the extra outputs, as strata does.

Everything is differentiable and trains with any torch optimiser; sparse
indices are frozen buffers. save_safetensors writes a state back in the
same format (strata reads it: `strata validate --candidate FILE`), see
strata_state_dict.
"""

import json
import math
import struct

import torch
from torch import nn
import torch.nn.functional as F

FORMAT_VERSION = "1"
FORMAT_VERSIONS = ("1", "2")  # the factors formats this module reads
META_ARCHITECTURE = "strata.architecture"
META_FORMAT_VERSION = "strata.format_version"
MAX_HEADER = 100_000_000


# ---------------------------------------------------------------------------
# safetensors

# safetensors dtype -> (torch dtype, bytes per element)
DTYPES = {
    "F32": (torch.float32, 4), "F64": (torch.float64, 8), "F16": (torch.float16, 2),
    "BF16": (torch.bfloat16, 2), "I64": (torch.int64, 8), "I32": (torch.int32, 4),
    "I16": (torch.int16, 2), "I8": (torch.int8, 1), "U8": (torch.uint8, 1), "BOOL": (torch.bool, 1),
}


def load_safetensors(path):
    """Returns ({name: tensor}, metadata dict) of a safetensors file.

    Tensors keep their dtype: F32, F64, F16, BF16, I64, I32, I16, I8, U8 and
    BOOL are read (a BatchNorm's int64 num_batches_tracked, a position
    buffer). The header size, every offset range and the tensors' coverage
    of the data are validated.
    """
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError(f"{path}: too short for a safetensors file")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > MAX_HEADER or 8 + n > len(raw):
        raise ValueError(f"{path}: header size {n} exceeds the file ({len(raw)} bytes)")
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    if not isinstance(header, dict):
        raise ValueError(f"{path}: header is not a JSON object")
    data = raw[8 + n:]
    metadata = header.pop("__metadata__", None) or {}
    tensors = {}
    spans = []
    for name, e in header.items():
        dtype, shape, (begin, end) = e["dtype"], e["shape"], e["data_offsets"]
        if dtype not in DTYPES:
            raise ValueError(f"{path}: tensor {name!r}: dtype {dtype} (this reader knows {', '.join(DTYPES)})")
        tdtype, size = DTYPES[dtype]
        count = 1
        for d in shape:
            if not isinstance(d, int) or d < 0:
                raise ValueError(f"{path}: tensor {name!r}: bad shape {shape}")
            count *= d
        if not (0 <= begin <= end <= len(data)) or end - begin != size * count:
            raise ValueError(f"{path}: tensor {name!r}: offsets [{begin}, {end}) do not fit shape {shape} in {len(data)} bytes")
        spans.append((begin, end, name))
        buf = bytearray(data[begin:end])
        t = torch.frombuffer(buf, dtype=tdtype) if count else torch.zeros(0, dtype=tdtype)
        tensors[name] = t.reshape(shape).clone()
    at = 0
    for begin, end, name in sorted(spans):
        if begin != at:
            raise ValueError(f"{path}: tensor {name!r}: data at {begin}, want {at} (gap or overlap)")
        at = end
    if at != len(data):
        raise ValueError(f"{path}: {len(data) - at} trailing data bytes")
    return tensors, metadata


def save_safetensors(path, tensors, metadata=None):
    """Writes {name: tensor} as F32 safetensors with string metadata."""
    header, blobs, at = {}, [], 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for name, t in tensors.items():
        b = t.detach().to(torch.float32).contiguous().cpu().numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [at, at + len(b)]}
        blobs.append(b)
        at += len(b)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


# ---------------------------------------------------------------------------
# structure families: y = x W^T for x (n, in), without materialising W


def _ceil_to(n, b):
    return (n + b - 1) // b * b


def _squarest_divisor(n):
    d = int(math.isqrt(n))
    while d >= 1:
        if n % d == 0:
            return d
        d -= 1
    return 1


def _pad_cols(x, width):
    return x if x.shape[-1] == width else F.pad(x, (0, width - x.shape[-1]))


class _Family(nn.Module):
    def __init__(self, spec):
        super().__init__()
        self.spec = dict(spec)
        self.out_features, self.in_features = spec["out"], spec["in"]

    def extra_repr(self):
        return f"{self.spec['family']}, out={self.out_features}, in={self.in_features}"


class Orthogonal(_Family):
    """W = scale Q, Q (out, in); "Q", "scale" [1]."""

    def __init__(self, spec):
        super().__init__(spec)
        self.Q = nn.Parameter(torch.zeros(spec["out"], spec["in"]))
        self.scale = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return (x @ self.Q.t()) * self.scale


class Monarch(_Family):
    """"L" [b, out'/b, b r], "R" [b, in'/b, b r] on the shape padded to multiples of b:
    W[j + i b, k in'/b + c] = sum_t L[j, i, k r + t] R[k, c, j r + t]."""

    def __init__(self, spec):
        super().__init__(spec)
        b, r = spec["blocks"], spec["rank"]
        self.b, self.r = b, r
        self.po, self.pi = _ceil_to(spec["out"], b), _ceil_to(spec["in"], b)
        self.L = nn.Parameter(torch.zeros(b, self.po // b, b * r))
        self.R = nn.Parameter(torch.zeros(b, self.pi // b, b * r))

    def forward(self, x):
        n, b, r = x.shape[0], self.b, self.r
        xk = _pad_cols(x, self.pi).reshape(n, b, self.pi // b)  # chunk k, column c
        z = torch.einsum("nkc,kcs->nks", xk, self.R)  # s = j r + t
        u = z.reshape(n, b, b, r).transpose(1, 2).reshape(n, b, b * r)  # [n, j, k r + t]
        y = torch.einsum("njs,jis->nij", u, self.L)  # output row j + i b
        return y.reshape(n, self.po)[:, : self.out_features]


class Kronecker(_Family):
    """sum_i A_i (x) B_i, "A" [r, m1, n1], "B" [r, m2, n2]; the layer is the
    top-left corner of the (m1 m2) x (n1 n2) sum when that is larger."""

    def __init__(self, spec):
        super().__init__(spec)
        fs = spec.get("factor_shape") or [0, 0]
        m1 = fs[0] or _squarest_divisor(spec["out"])
        n1 = fs[1] or _squarest_divisor(spec["in"])
        m2, n2 = _ceil_to(spec["out"], m1) // m1, _ceil_to(spec["in"], n1) // n1
        self.m1, self.n1, self.m2, self.n2 = m1, n1, m2, n2
        r = spec["rank"]
        self.A = nn.Parameter(torch.zeros(r, m1, n1))
        self.B = nn.Parameter(torch.zeros(r, m2, n2))

    def forward(self, x):
        n = x.shape[0]
        xs = _pad_cols(x, self.n1 * self.n2).reshape(n, self.n1, self.n2)
        t = torch.einsum("ncd,ibd->nicb", xs, self.B)
        y = torch.einsum("iac,nicb->nab", self.A, t)
        return y.reshape(n, self.m1 * self.m2)[:, : self.out_features]


class BlockDiag(_Family):
    """"D" [b, out'/b, in'/b]: D[j, i, c] = W[j out'/b + i, j in'/b + c] on the padded shape."""

    def __init__(self, spec):
        super().__init__(spec)
        b = spec["blocks"]
        self.b = b
        self.po, self.pi = _ceil_to(spec["out"], b), _ceil_to(spec["in"], b)
        self.D = nn.Parameter(torch.zeros(b, self.po // b, self.pi // b))

    def forward(self, x):
        n = x.shape[0]
        xj = _pad_cols(x, self.pi).reshape(n, self.b, self.pi // self.b)
        y = torch.einsum("njc,jic->nji", xj, self.D)
        return y.reshape(n, self.po)[:, : self.out_features]


class Circulant(_Family):
    """Top-left corner of the N x N circulant C[i, j] = c[(i - j) mod N],
    N = max(out, in), "c" [N]: a circular convolution by torch.fft."""

    def __init__(self, spec):
        super().__init__(spec)
        self.N = max(spec["out"], spec["in"])
        self.c = nn.Parameter(torch.zeros(self.N))

    def forward(self, x):
        N = self.N
        y = torch.fft.irfft(torch.fft.rfft(self.c.to(x.dtype)) * torch.fft.rfft(x, n=N), n=N)
        return y[:, : self.out_features]


class Toeplitz(_Family):
    """T[i, j] = t[i - j + in - 1], "t" [out + in - 1]: the corner of a circulant
    embedding of size out + in - 1, by torch.fft."""

    def __init__(self, spec):
        super().__init__(spec)
        self.t = nn.Parameter(torch.zeros(spec["out"] + spec["in"] - 1))

    def forward(self, x):
        out, inn = self.out_features, self.in_features
        M = out + inn - 1
        t = self.t.to(x.dtype)
        c = torch.cat([t[inn - 1:], t[: inn - 1]])  # c[d mod M] = t[d + in - 1]
        y = torch.fft.irfft(torch.fft.rfft(c) * torch.fft.rfft(x, n=M), n=M)
        return y[:, :out]


class LowRank(_Family):
    """W = U V^T, "U" [out, k], "V" [in, k]."""

    def __init__(self, spec):
        super().__init__(spec)
        k = spec["rank"]
        self.U = nn.Parameter(torch.zeros(spec["out"], k))
        self.V = nn.Parameter(torch.zeros(spec["in"], k))

    def forward(self, x):
        return (x @ self.V) @ self.U.t()


class Sparse(_Family):
    """NNZ entries W[rows[e], cols[e]] = values[e]; "values" trains, "rows" and
    "cols" are frozen integer buffers."""

    def __init__(self, spec):
        super().__init__(spec)
        nnz = spec["nnz"]
        self.values = nn.Parameter(torch.zeros(nnz))
        self.register_buffer("rows", torch.zeros(nnz, dtype=torch.long))
        self.register_buffer("cols", torch.zeros(nnz, dtype=torch.long))

    def forward(self, x):
        y = x.new_zeros(x.shape[0], self.out_features)
        return y.index_add(1, self.rows, x[:, self.cols] * self.values.to(x.dtype))


class Zero(_Family):
    """W = 0 (residual "none"); no parameters."""

    def forward(self, x):
        return x.new_zeros(x.shape[0], self.out_features)


FAMILIES = {
    "orthogonal": Orthogonal,
    "monarch": Monarch,
    "kronecker": Kronecker,
    "blockdiag": BlockDiag,
    "circulant": Circulant,
    "toeplitz": Toeplitz,
    "lowrank": LowRank,
    "sparse": Sparse,
    "zero": Zero,
}


def family_module(spec):
    """The module of one family for a Spec dict (family, out, in, blocks, rank, factor_shape, nnz)."""
    try:
        cls = FAMILIES[spec["family"]]
    except KeyError:
        raise ValueError(f"unknown structure family {spec.get('family')!r}") from None
    return cls(spec)


class StructuredResidualLinear(nn.Module):
    """y = x (S + R)^T + bias for strata's decomposed layer W = S + R.

    spec is the layer's structure (a "sum" Spec with "trunk" and
    "correction", or a single family, which becomes the trunk with a zero
    correction). Parameters: "trunk.<P>", "correction.<P>", "bias".
    """

    def __init__(self, spec, bias=True):
        super().__init__()
        if spec["family"] == "sum":
            trunk, corr = spec["trunk"], spec["correction"]
        else:
            trunk, corr = spec, {"family": "zero", "out": spec["out"], "in": spec["in"]}
        self.out_features, self.in_features = spec["out"], spec["in"]
        self.trunk = family_module(trunk)
        self.correction = family_module(corr)
        self.bias = nn.Parameter(torch.zeros(spec["out"])) if bias else None

    def forward(self, x):
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features)
        y = self.trunk(x2) + self.correction(x2)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*lead, self.out_features)


class StructuredResidualConv2d(StructuredResidualLinear):
    """An nn.Conv2d (groups 1, zero padding) whose weight W, out x (in kh kw)
    with each row one output channel's kernel in (channel, row, column)
    order, is S + R: strata converts a convolution weight [out, in, kh, kw]
    this way.

    When S and R are both low-rank (or R is zero), as strata makes every
    k x k convolution, it runs as a kh x kw convolution to the combined rank
    by the stacked V^T followed by a 1x1 convolution by the stacked U, with
    the bias: the structured form, never W. Any other structure (a 1x1
    convolution with a monarch trunk, a sparse correction) runs on the
    patches: F.unfold, then y = patch (S + R)^T + bias per position.
    Parameters are StructuredResidualLinear's: "trunk.<P>",
    "correction.<P>", "bias".
    """

    def __init__(self, spec, conv, bias=True):
        super().__init__(spec, bias=bias)
        if conv.groups != 1 or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError(f"{conv}: only a convolution with groups 1 and numeric zero padding is converted")
        kh, kw = conv.kernel_size
        if spec["out"] != conv.out_channels or spec["in"] != conv.in_channels * kh * kw:
            raise ValueError(f"{conv}: W is {spec['out']}x{spec['in']}, the convolution's is "
                             f"{conv.out_channels}x{conv.in_channels * kh * kw}")
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self.kernel_size, self.stride = conv.kernel_size, conv.stride
        self.padding, self.dilation = conv.padding, conv.dilation

    def _low_rank(self):
        """(U, V) stacking the low-rank trunk and correction, or None."""
        parts = [p for p in (self.trunk, self.correction) if not isinstance(p, Zero)]
        if not all(isinstance(p, LowRank) for p in parts):
            return None
        return torch.cat([p.U for p in parts], dim=1), torch.cat([p.V for p in parts], dim=1)

    def forward(self, x):
        uv = self._low_rank()
        if uv is not None:
            U, V = uv
            r = U.shape[1]
            h = F.conv2d(x, V.t().reshape(r, self.in_channels, *self.kernel_size), None,
                         self.stride, self.padding, self.dilation)
            return F.conv2d(h, U.reshape(self.out_channels, r, 1, 1), self.bias)
        n, _, height, width = x.shape
        cols = F.unfold(x, self.kernel_size, self.dilation, self.padding, self.stride)
        ho = (height + 2 * self.padding[0] - self.dilation[0] * (self.kernel_size[0] - 1) - 1) // self.stride[0] + 1
        wo = (width + 2 * self.padding[1] - self.dilation[1] * (self.kernel_size[1] - 1) - 1) // self.stride[1] + 1
        y = super().forward(cols.transpose(1, 2))  # [n, positions, out]
        return y.transpose(1, 2).reshape(n, self.out_channels, ho, wo)


def _structured_module(layer, module, tensors):
    """The S + R module that replaces module (an nn.Linear or nn.Conv2d) for
    the decomposed layer of an architecture, its factors from tensors and
    its bias from tensors or, when the file has none, from module."""
    name, spec = layer["name"], layer["structure"]
    has_bias = module.bias is not None
    if isinstance(module, nn.Conv2d):
        kernel = layer.get("kernel") or [1, 1]
        if list(kernel) != list(module.kernel_size):
            raise ValueError(f"layer {name!r}: kernel {kernel} in the file, {list(module.kernel_size)} in the model")
        new = StructuredResidualConv2d(spec, module, bias=has_bias)
    elif isinstance(module, nn.Linear):
        if layer.get("layout") == "in-out" or layer.get("kernel"):
            raise ValueError(f"layer {name!r}: the file stores a weight [in, out] or a convolution's, not an nn.Linear's")
        if (spec["out"], spec["in"]) != (module.out_features, module.in_features):
            raise ValueError(f"layer {name!r}: W is {spec['out']}x{spec['in']}, the nn.Linear's "
                             f"{module.out_features}x{module.in_features}")
        new = StructuredResidualLinear(spec, bias=has_bias)
    else:
        raise ValueError(f"layer {name!r}: a {type(module).__name__}; apply swaps nn.Linear and nn.Conv2d "
                         "(leave the others dense: strata convert --exclude)")
    own = dict(tensors)
    if has_bias and name + ".bias" not in own:
        own[name + ".bias"] = module.bias.detach()
    _assign(new, name + ".", own, set())
    w = module.weight
    return new.to(device=w.device, dtype=w.dtype)


def apply(model, path):
    """Swaps every decomposed layer of the factors export at path into
    model, any nn.Module, by name, and returns the names swapped.

    A layer named "conv1" or "encoder.linear1" (the weight's name without
    ".weight", as strata converts a PyTorch state_dict) replaces the
    submodule of that name: an nn.Linear by a StructuredResidualLinear, an
    nn.Conv2d (groups 1) by a StructuredResidualConv2d, with the file's
    factors and bias (the module's own bias if the file has none), on the
    module's device and dtype. Forward then computes S + R without forming
    W, equal to the model with strata's model.materialized.safetensors
    loaded; training updates the factors; torch.onnx.export writes the
    structured layers (Gemm/MatMul pairs for low-rank parts, einsums for
    monarch, convolutions for the k x k ones; circulant and toeplitz use
    torch.fft, which the exporter does not translate).

    Only what can be swapped may be converted, and anything else is an
    error naming the layer, before model is changed: a layer that is not
    an nn.Linear or nn.Conv2d (an embedding, a Conv1D, a grouped
    convolution), and the projections of nn.MultiheadAttention, whose
    forward reads in_proj_weight and out_proj.weight directly (convert a
    transformer with --exclude '*.self_attn.*'). An
    nn.TransformerEncoderLayer whose linear1 or linear2 is swapped has its
    fused inference path turned off (activation_relu_or_gelu = 0: that
    path reads linear1.weight directly); it then runs its ordinary forward,
    which computes the same function.
    """
    tensors, arch, _ = read_factors(path)
    swaps = []
    for layer in arch["layers"]:
        if layer.get("kind") != "linear" or not layer.get("structure"):
            continue
        name = layer["name"]
        parent_name, _, attr = name.rpartition(".")
        try:
            parent = model.get_submodule(parent_name) if parent_name else model
            module = getattr(parent, attr)
        except AttributeError:
            raise ValueError(f"layer {name!r} of {path}: no submodule of that name in the model "
                             "(apply swaps nn.Linear and nn.Conv2d modules; strata convert --exclude the rest)") from None
        if isinstance(parent, nn.MultiheadAttention):
            raise ValueError(f"layer {name!r}: nn.MultiheadAttention reads its projection weights directly; "
                             "convert with --exclude '*.self_attn.*'")
        if not isinstance(module, nn.Module):
            raise ValueError(f"layer {name!r}: {type(module).__name__}, not a module; apply swaps nn.Linear and nn.Conv2d "
                             "(convert with --exclude for the others)")
        swaps.append((parent, attr, _structured_module(layer, module, tensors), name))
    for parent, attr, new, _ in swaps:
        setattr(parent, attr, new)
        if isinstance(parent, nn.TransformerEncoderLayer):
            parent.activation_relu_or_gelu = 0
    return [name for *_, name in swaps]


# ---------------------------------------------------------------------------
# models


def _assign(module, prefix, tensors, used):
    """Copies tensors "<prefix><name>" into module's parameters and buffers."""
    for name, p in list(module.named_parameters()) + list(module.named_buffers()):
        key = prefix + name
        if key not in tensors:
            raise ValueError(f"missing tensor {key!r} (shape {list(p.shape)})")
        t = tensors[key]
        if list(t.shape) != list(p.shape):
            raise ValueError(f"tensor {key!r}: shape {list(t.shape)}, the structure needs {list(p.shape)}")
        with torch.no_grad():
            if p.dtype == torch.long:
                if not torch.all(t == t.round()):
                    raise ValueError(f"tensor {key!r}: non-integer index")
                p.copy_(t.to(torch.long))
            else:
                p.copy_(t)
        used.add(key)
    for name, m in module.named_modules():
        if isinstance(m, Sparse):
            out, inn = m.out_features, m.in_features
            if m.rows.numel() and (m.rows.min() < 0 or m.rows.max() >= out or m.cols.min() < 0 or m.cols.max() >= inn):
                raise ValueError(f"{prefix}{name}: sparse index outside {out}x{inn}")


def linear_from(layer, tensors, used):
    """The module of one linear layer of an architecture: nn.Linear when it is
    dense, StructuredResidualLinear when it has a structure."""
    name = layer["name"]
    structure = layer.get("structure")
    if structure:
        m = StructuredResidualLinear(structure, bias=bool(layer.get("bias")))
    else:
        w = tensors.get(name + ".weight")
        out, inn = layer.get("out") or w.shape[0], layer.get("in") or w.shape[1]
        m = nn.Linear(inn, out, bias=bool(layer.get("bias")))
    _assign(m, name + ".", tensors, used)
    return m


class _Activation(nn.Module):
    FUNCS = {
        "relu": torch.relu,
        "gelu": lambda x: F.gelu(x, approximate="none"),
        "tanh": torch.tanh,
        "sigmoid": torch.sigmoid,
        "identity": lambda x: x,
    }

    def __init__(self, kind):
        super().__init__()
        if kind not in self.FUNCS:
            raise ValueError(f"unknown activation {kind!r}")
        self.kind = kind

    def forward(self, x):
        return self.FUNCS[self.kind](x)

    def extra_repr(self):
        return self.kind


class StrataModel(nn.Module):
    """An architecture's layers in order, after its input standardisation.

    layers is an nn.ModuleList; names[i] is the strata name of layers[i]
    (parameters of layer i are "<names[i]>.<param>" in strata's files, see
    strata_state_dict).
    """

    def __init__(self, arch, tensors):
        super().__init__()
        self.arch = arch
        self.names = []
        mods = []
        used = set()
        for layer in arch["layers"]:
            kind = layer["kind"]
            if kind == "linear":
                m = linear_from(layer, tensors, used)
            elif kind == "activation":
                m = _Activation(layer["activation"])
            elif kind == "layernorm":
                w = tensors.get(layer["name"] + ".weight")
                width = layer.get("out") or layer.get("in") or (w.shape[0] if w is not None else 0)
                m = nn.LayerNorm(width, eps=1e-5)
                _assign(m, layer["name"] + ".", tensors, used)
            else:
                raise ValueError(f"layer {layer['name']!r}: unknown kind {kind!r}")
            mods.append(m)
            self.names.append(layer["name"])
        extra = sorted(set(tensors) - used)
        if extra:
            raise ValueError(f"tensors not in the architecture: {extra}")
        self.layers = nn.ModuleList(mods)
        # The statistics are plain float64 tensors, not buffers, so that
        # model.float() or .half() does not round them: strata standardises
        # in float64 whatever the precision of the network.
        st = arch.get("standardization")
        self.input_mean = self.input_std = None
        if st:
            self.input_mean = torch.tensor(st["mean"], dtype=torch.float64)
            std = torch.tensor(st["std"], dtype=torch.float64)
            self.input_std = torch.where(std == 0, torch.ones_like(std), std)

    def standardize(self, x):
        """x' = (x - mean) / std in float64 (a std of 0 counts as 1), as
        strata does, cast back to x's dtype."""
        if self.input_mean is None:
            return x
        mean, std = self.input_mean.to(x.device), self.input_std.to(x.device)
        return ((x.to(torch.float64) - mean) / std).to(x.dtype)

    def forward(self, x):
        x = self.standardize(x)
        for m in self.layers:
            x = m(x)
        return x


def read_factors(path):
    """(tensors, architecture dict, metadata) of a factors export."""
    tensors, meta = load_safetensors(path)
    if META_ARCHITECTURE not in meta:
        raise ValueError(f"{path}: no {META_ARCHITECTURE} in __metadata__ (write it with strata export --factors)")
    v = meta.get(META_FORMAT_VERSION, FORMAT_VERSION)
    if v not in FORMAT_VERSIONS:
        raise ValueError(f"{path}: {META_FORMAT_VERSION} {v}, this reader knows {', '.join(FORMAT_VERSIONS)}")
    return tensors, json.loads(meta[META_ARCHITECTURE]), meta


def build_model(path):
    """The model of the MLP family in a factors export, as a StrataModel."""
    tensors, arch, _ = read_factors(path)
    if arch.get("kind") == "generic":
        raise ValueError(f"{path}: a generic checkpoint; use build_layers for its decomposed layers")
    return StrataModel(arch, tensors)


def build_layers(path):
    """{layer name: StructuredResidualLinear} for every decomposed layer of a
    factors export of any checkpoint, generic ones included."""
    tensors, arch, _ = read_factors(path)
    out = {}
    for layer in arch["layers"]:
        if layer.get("kind") == "linear" and layer.get("structure"):
            out[layer["name"]] = linear_from(layer, tensors, set())
    return out


def strata_state_dict(model):
    """{strata tensor name: float32 tensor} of a StrataModel, for
    save_safetensors(path, strata_state_dict(model), {"strata.architecture":
    json.dumps(model.arch), "strata.format_version": "1"})."""
    out = {}
    for name, m in zip(model.names, model.layers):
        for k, v in m.state_dict().items():
            out[f"{name}.{k}"] = v.detach().to(torch.float32)
    return out
