"""The ONNX lowerings of the plain registry ops (the fused ops' are in fused.py; table.py
joins both). An entry turns one IR node, whose operands are `Tensor`s of known full rank,
into ONNX nodes, matching the PyTorch lowering (backends/torch/ops.py) exactly in eval mode."""

from __future__ import annotations

import math
from typing import Any
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from nncircuit.ir.graph import Node
from nncircuit.types.sizes import Size
from nncircuit.types.tensor import Axis, TensorType

from nncircuit.backends.onnx.builder import Builder, Dims, Tensor


@dataclass
class OpCx:
    """What one op's lowering sees: the builder, the node, its operands, and how to name the
    node's weights (`weight("bias")`), a tied module's weight, and run-time sizes."""

    b: Builder
    node: Node
    ins: list[Tensor]
    weight: Callable[[str], str]
    tied: Callable[[str], str]
    dims: Dims

    @property
    def attrs(self):
        return self.node.attrs

    def result(self, name: str, index: int = 0, prefix: int | None = None) -> Tensor:
        if prefix is None:
            prefix = max((t.prefix for t in self.ins), default=0)
        return Tensor(name, self.node.types[index], prefix)

    def scalar_like(self, value, t: Tensor) -> str:
        return self.b.scalar(value, self.b.elem(t.type.dtype))


@dataclass(frozen=True)
class Lowering:
    fn: Callable[[OpCx], list[Tensor]]
    onnx: str  # the ONNX ops it becomes, for the docs
    min_opset: int = 13


# ---- elementwise -------------------------------------------------------------------------


def _unary(op_type: str):
    return Lowering(lambda cx: [cx.result(cx.b.op(op_type, [cx.ins[0].name]))], op_type)


def _gelu(approximate: str):
    def fn(cx: OpCx):
        b, (x,) = cx.b, cx.ins
        if b.opset >= 20:
            return [
                cx.result(
                    b.op(
                        "Gelu", [x.name], approximate=approximate if approximate == "tanh" else None
                    )
                )
            ]
        half = b.op("Mul", [x.name, cx.scalar_like(0.5, x)])
        if approximate == "tanh":  # 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))
            cube = b.op("Mul", [b.op("Mul", [x.name, x.name]), x.name])
            inner = b.op("Add", [x.name, b.op("Mul", [cube, cx.scalar_like(0.044715, x)])])
            inner = b.op("Mul", [inner, cx.scalar_like(math.sqrt(2.0 / math.pi), x)])
            core = b.op("Tanh", [inner])
        else:  # 0.5 x (1 + erf(x / sqrt 2))
            core = b.op("Erf", [b.op("Mul", [x.name, cx.scalar_like(1.0 / math.sqrt(2.0), x)])])
        return [cx.result(b.op("Mul", [half, b.op("Add", [core, cx.scalar_like(1.0, x)])]))]

    return Lowering(fn, "Gelu (opset ≥ 20), else Erf / Tanh formula")


def _silu(cx: OpCx):
    x = cx.ins[0].name
    return [cx.result(cx.b.op("Mul", [x, cx.b.op("Sigmoid", [x])]))]


def _identity(cx: OpCx):
    return [cx.ins[0].like(cx.ins[0].name, cx.node.type.axes)]


def _binary(op_type: str):
    def fn(cx: OpCx):
        b, out = cx.b, cx.node.type
        if cx.attrs.get("scalar") is not None:
            x = b.cast(cx.ins[0], out.dtype)
            c = cx.scalar_like(cx.attrs["scalar"].value, x)
            args = [x.name, c] if cx.attrs["side"] == "right" else [c, x.name]
            return [cx.result(b.op(op_type, args))]
        ops = [b.align(b.cast(t, out.dtype), out.names, full=False) for t in cx.ins]
        return [cx.result(b.op(op_type, [t.name for t in ops]))]

    return Lowering(fn, op_type)


def _softmax(op_type: str):
    def fn(cx: OpCx):
        (x,) = cx.ins
        return [cx.result(cx.b.op(op_type, [x.name], axis=x.pos(cx.attrs["axis"])))]

    return Lowering(fn, op_type)


# ---- contraction and layout --------------------------------------------------------------

LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _einsum(cx: OpCx):
    lead = max(t.prefix for t in cx.ins)
    letters: dict[str, str] = {}
    for names in [t.names for t in cx.ins] + [cx.node.type.names]:
        for a in names:
            letters.setdefault(a, LETTERS[lead + len(letters)])
    pre = LETTERS[:lead]
    terms = [pre[lead - t.prefix :] + "".join(letters[a] for a in t.names) for t in cx.ins]
    out = pre + "".join(letters[a] for a in cx.node.type.names)
    eq = ",".join(terms) + "->" + out
    return [cx.result(cx.b.op("Einsum", [t.name for t in cx.ins], equation=eq), prefix=lead)]


def _transpose(cx: OpCx):
    (x,) = cx.ins
    return [cx.result(cx.b.transpose(x, cx.node.type.names).name)]


def _flatten(cx: OpCx):
    (x,) = cx.ins
    names = cx.attrs["axes"]
    merged = cx.node.type.axis(cx.attrs["into"])
    return [cx.result(cx.b.reshape_span(x, names[0], names[-1], [merged]).name)]


def _unflatten(cx: OpCx):
    (x,) = cx.ins
    a = cx.attrs["axis"]
    return [cx.result(cx.b.reshape_span(x, a, a, list(cx.attrs["into"])).name)]


def _needs_broadcast(parts: list[Tensor], out_names, skip: str) -> bool:
    """Whether aligned parts differ anywhere but on `skip` (then they must be expanded)."""
    lead = max(p.prefix for p in parts)
    for p in parts:
        if p.prefix != lead:
            return True
    for a in out_names:
        if a == skip:
            continue
        sizes = {p.type.axis(a).size for p in parts}
        if len(sizes) > 1:
            return True
    return False


def _concat(cx: OpCx):
    b, out = cx.b, cx.node.type
    axis = cx.attrs["axis"]
    parts = [b.align(b.cast(t, out.dtype), out.names) for t in cx.ins]
    lead = max(p.prefix for p in parts)
    skip = out.index(axis) - out.rank
    if _needs_broadcast(parts, out.names, axis):
        shape = b.broadcast_shape(parts, lead + out.rank, skip)
        parts = [p.like(b.op("Expand", [p.name, shape])) for p in parts]
    return [cx.result(b.op("Concat", [p.name for p in parts], axis=skip), prefix=lead)]


def _reduce(op_type: str):
    def fn(cx: OpCx):
        (x,) = cx.ins
        axes = [x.pos(a) for a in cx.attrs["axes"]]
        return [cx.result(cx.b.reduce(op_type, x.name, axes, keepdims=0))]

    return Lowering(fn, op_type)


def _cast(cx: OpCx):
    return [cx.result(cx.b.cast(cx.ins[0], cx.attrs["to"]).name)]


# ---- masks, positions, indexing ------------------------------------------------------------


def causal_mask(b, x: str, qpos: int, kpos: int, same_size: bool) -> str:
    """True where the key position is after the query position, aligned at the end
    (bottom-right): with more keys than queries (a key/value cache) query i stands at key
    position i + (key - query), as in the torch lowering."""
    one = b.const(np.array(1, dtype=np.int64))
    zero = b.const(np.array(0, dtype=np.int64))
    nq, nk = b.dim(x, qpos), b.dim(x, kpos)
    rq = b.op("Range", [zero, nq, one])
    rk = b.op("Range", [zero, nk, one])
    if not same_size:
        rq = b.op("Add", [rq, b.op("Sub", [nk, nq])])
    return b.op("Greater", [b.unsqueeze(rk, [0]), b.unsqueeze(rq, [1])])  # key after query


def _causal(cx: OpCx):
    b, (x,) = cx.b, cx.ins
    q, k = cx.attrs["query"], cx.attrs["key"]
    mask = causal_mask(b, x.name, x.pos(q), x.pos(k), x.type.axis(q).size == x.type.axis(k).size)
    mtype = x.type.with_axes([x.type.axis(q), x.type.axis(k)]).with_dtype("bool")
    m = b.align(Tensor(mask, mtype, 0), x.names)
    ninf = cx.scalar_like(float("-inf"), x)
    return [cx.result(b.op("Where", [m.name, ninf, x.name]))]


def _positions(cx: OpCx):
    b = cx.b
    n = cx.dims.size(cx.attrs["axis"].size)
    zero, one = b.const(np.array(0, dtype=np.int64)), b.const(np.array(1, dtype=np.int64))
    return [cx.result(b.op("Range", [zero, n, one]), prefix=0)]


def _select(cx: OpCx):
    (x,) = cx.ins
    idx = cx.b.const(np.array(int(cx.attrs["index"].value), dtype=np.int64))
    return [cx.result(cx.b.op("Gather", [x.name, idx], axis=x.pos(cx.attrs["axis"])))]


def _top_k(cx: OpCx):
    (x,) = cx.ins
    k = cx.b.i64([int(cx.attrs["k"].value)])
    vals, idx = cx.b.op(
        "TopK", [x.name, k], outputs=2, axis=x.pos(cx.attrs["axis"]), largest=1, sorted=1
    )
    return [cx.result(vals, 0), cx.result(idx, 1)]


def _gather(cx: OpCx):
    b, out = cx.b, cx.node.type
    axis = cx.attrs["axis"]
    src = b.align(cx.ins[0], out.names)
    idx = b.align(b.cast(cx.ins[1], "int64"), out.names)
    lead = max(src.prefix, idx.prefix)
    skip = out.index(axis) - out.rank
    if _needs_broadcast([src, idx], out.names, axis):
        shape = b.broadcast_shape([src, idx], lead + out.rank, skip)
        src = src.like(b.op("Expand", [src.name, shape]))
        idx = idx.like(b.op("Expand", [idx.name, shape]))
    return [cx.result(b.op("GatherElements", [src.name, idx.name], axis=skip), prefix=lead)]


def _pad_to(cx: OpCx):
    """Zero-pad (or crop, with negative pads) to the reference's sizes, centred as torch's
    F.pad with (diff // 2, diff - diff // 2) centres them."""
    b, (x, like) = cx.b, cx.ins
    begins: list = [0] * x.rank
    ends: list = [0] * x.rank
    for name in cx.attrs["axes"]:
        i = x.pos(name)
        have, want = x.type.axis(name).size, like.type.axis(name).size
        if have.is_static and want.is_static:
            diff = want.value - have.value
            begins[i], ends[i] = diff // 2, diff - diff // 2
            continue
        diff = b.op("Sub", [b.dim(like.name, like.pos(name)), b.dim(x.name, x.pos(name))])
        two = b.const(np.array(2, dtype=np.int64))
        lo = b.op("Div", [b.op("Sub", [diff, b.op("Mod", [diff, two])]), two])  # floor(diff / 2)
        begins[i], ends[i] = lo, b.op("Sub", [diff, lo])
    vals = begins + ends
    if all(isinstance(v, int) for v in vals):
        if not any(vals):
            return [cx.result(x.name, prefix=x.prefix)]
        pads = b.i64(vals)
    else:
        pieces, run = [], []
        for v in vals:
            if isinstance(v, int):
                run.append(v)
                continue
            if run:
                pieces.append(b.i64(run))
                run = []
            pieces.append(b.unsqueeze(v, [0]))
        if run:
            pieces.append(b.i64(run))
        pads = b.cat(pieces)
    return [cx.result(b.op("Pad", [x.name, pads]), prefix=x.prefix)]


# ---- learned ops ---------------------------------------------------------------------------


def _linear(cx: OpCx):
    b, (x,) = cx.b, cx.ins
    ins = tuple(cx.attrs["in_axes"])
    outs = tuple(a for a in cx.attrs["out_axes"])
    kept = tuple(a for a in x.names if a not in ins)
    x = b.transpose(x, kept + ins)
    if len(ins) > 1:
        size = Size.of(int(cx.attrs["in_features"].value))
        x = b.reshape_span(x, ins[0], ins[-1], [Axis("_in", size)])
    w = cx.tied(cx.attrs["tied"]) if cx.attrs["tied"] is not None else cx.weight("weight")
    y = b.op("MatMul", [x.name, b.op("Transpose", [w], perm=[1, 0])])
    if cx.attrs["bias"]:
        y = b.op("Add", [y, cx.weight("bias")])
    flat = Axis("_out", Size.of(int(cx.attrs["out_features"].value)))
    y = x.like(y, [x.type.axis(a) for a in kept] + [flat])
    if len(outs) > 1:
        y = b.reshape_span(y, "_out", "_out", list(outs))
    else:
        y = y.like(y.name, [y.type.axis(a) for a in kept] + [outs[0]])
    return [cx.result(b.transpose(y, cx.node.type.names).name)]


def _embedding(cx: OpCx):
    """Gather rows. ONNX Gather reads a negative id from the end of the table, where torch's
    nn.Embedding raises: a negative id is sent past the end, so onnxruntime raises too
    (`indices element out of data bounds`) and every backend refuses ids outside 0 .. N-1."""
    b = cx.b
    ids = b.cast(cx.ins[0], "int64")
    num = b.const(np.array(int(cx.attrs["num"].value), dtype=np.int64))
    zero = b.const(np.array(0, dtype=np.int64))
    safe = b.op("Where", [b.op("Less", [ids.name, zero]), num, ids.name])
    return [cx.result(b.op("Gather", [cx.weight("weight"), safe], axis=0))]


def _to_end(b: Builder, x: Tensor, axes) -> tuple[Tensor, tuple[str, ...]]:
    kept = tuple(a for a in x.names if a not in axes)
    return b.transpose(x, kept + tuple(axes)), x.names


def _layernorm(cx: OpCx):
    b, (x,) = cx.b, cx.ins
    axes = tuple(cx.attrs["axes"])
    y, back = _to_end(b, x, axes)
    if cx.attrs["affine"]:
        args = [y.name, cx.weight("weight")] + ([cx.weight("bias")] if cx.attrs["bias"] else [])
    else:
        shape = [int(s.value) for s in cx.attrs["shape"]]
        args = [y.name, b.const(np.ones(shape, dtype=np.float32), b.elem(x.type.dtype))]
    out = b.op("LayerNormalization", args, axis=-len(axes), epsilon=float(cx.attrs["eps"]))
    return [cx.result(b.transpose(y.like(out), back).name)]


def _rmsnorm(cx: OpCx):
    b, (x,) = cx.b, cx.ins
    axes = tuple(cx.attrs["axes"])
    y, back = _to_end(b, x, axes)
    k = len(axes)
    ms = b.reduce(
        "ReduceMean", b.op("Mul", [y.name, y.name]), range(y.rank - k, y.rank), keepdims=1
    )
    inv = b.op(
        "Reciprocal", [b.op("Sqrt", [b.op("Add", [ms, cx.scalar_like(float(cx.attrs["eps"]), x)])])]
    )
    out = b.op("Mul", [y.name, inv])
    if cx.attrs["affine"]:
        out = b.op("Mul", [out, cx.weight("weight")])
        if cx.attrs["bias"]:
            out = b.op("Add", [out, cx.weight("bias")])
    return [cx.result(b.transpose(y.like(out), back).name)]


def _channels_first(
    b: Builder, x: Tensor, nlead: int, nbatch: int, call: Callable[[str], str]
) -> str:
    """Apply an ONNX op that wants (N, …) with `nbatch` leading batch axes to x, whose first
    `nlead` axes are all batch axes: they are merged (or made) to fit, and restored after."""
    if nlead == nbatch:
        return call(x.name)
    if nlead < nbatch:
        extra = list(range(nlead, nbatch))
        return b.squeeze(call(b.unsqueeze(x.name, extra)), extra)
    tail = x.type.axes[x.type.rank - (x.rank - nlead) :]
    ones = [1] * (nbatch - 1)
    if all(a.size.is_static for a in tail):
        shape = b.i64([-1] + ones + [a.size.value for a in tail])
    else:
        shape = b.cat([b.i64([-1] + ones), b.shape(x.name, nlead)])
    y = call(b.op("Reshape", [x.name, shape]))
    back = b.cat([b.shape(x.name, 0, nlead), b.shape(y, nbatch)])
    return b.op("Reshape", [y, back])


def _batchnorm(cx: OpCx):
    b, (x,) = cx.b, cx.ins
    c = cx.attrs["axis"]
    args = [cx.weight(p) for p in ("weight", "bias", "running_mean", "running_var")]
    eps = float(cx.attrs["eps"])
    y = _channels_first(
        b, x, x.pos(c), 1, lambda v: b.op("BatchNormalization", [v] + args, epsilon=eps)
    )
    return [cx.result(y)]


def _ints(vals) -> list[int]:
    return [int(v.value) for v in vals]


def _conv(transposed: bool):
    def fn(cx: OpCx):
        b, (x,) = cx.b, cx.ins
        a = cx.attrs
        channel, spatial = a["channel"], tuple(a["spatial"])
        lead = tuple(n for n in x.names if n != channel and n not in spatial)
        xm = b.transpose(x, lead + (channel,) + spatial)
        pads = _ints(a["padding"]) * 2
        attrs: dict[str, Any] = dict(
            kernel_shape=_ints(a["kernel"]),
            strides=_ints(a["stride"]),
            pads=pads,
            dilations=_ints(a["dilation"]),
            group=int(a["groups"].value),
        )
        if transposed:
            attrs["output_padding"] = _ints(a["output_padding"])
        args = [cx.weight("weight")] + ([cx.weight("bias")] if a["bias"] else [])
        op_type = "ConvTranspose" if transposed else "Conv"
        y = _channels_first(
            b, xm, xm.prefix + len(lead), 1, lambda v: b.op(op_type, [v] + args, **attrs)
        )
        out = cx.node.type
        out_channel = out.names[x.type.index(channel)]
        got = lead + (out_channel,) + spatial
        yt = Tensor(y, out.with_axes([out.axis(n) for n in got]), xm.prefix)
        return [cx.result(b.transpose(yt, out.names).name)]

    return fn


def _pool(op_type: str):
    def fn(cx: OpCx):
        b, (x,) = cx.b, cx.ins
        a = cx.attrs
        spatial = tuple(a["spatial"])
        lead = tuple(n for n in x.names if n not in spatial)
        xm = b.transpose(x, lead + spatial)
        attrs: dict[str, Any] = dict(
            kernel_shape=_ints(a["kernel"]),
            strides=_ints(a["stride"]),
            pads=_ints(a["padding"]) * 2,
        )
        if op_type == "AveragePool":
            attrs["count_include_pad"] = 1  # torch's default
        # no channel axis: every non-spatial axis is a batch axis; ONNX wants (N, C, …)
        y = _channels_first(b, xm, xm.prefix + len(lead), 2, lambda v: b.op(op_type, [v], **attrs))
        out = cx.node.type
        yt = Tensor(y, out.with_axes([out.axis(n) for n in lead + spatial]), xm.prefix)
        return [cx.result(b.transpose(yt, out.names).name)]

    return Lowering(fn, op_type)


def _param(cx: OpCx):
    return [cx.result(cx.weight("weight"), prefix=0)]


CORE_LOWERINGS: dict[str, Lowering] = {
    "relu": _unary("Relu"),
    "gelu": _gelu("none"),
    "gelu_tanh": _gelu("tanh"),
    "silu": Lowering(_silu, "Sigmoid, Mul"),
    "sigmoid": _unary("Sigmoid"),
    "tanh": _unary("Tanh"),
    "exp": _unary("Exp"),
    "log": _unary("Log"),
    "sqrt": _unary("Sqrt"),
    "abs": _unary("Abs"),
    "neg": _unary("Neg"),
    "dropout": Lowering(_identity, "none (identity at inference)"),
    "add": _binary("Add"),
    "sub": _binary("Sub"),
    "mul": _binary("Mul"),
    "div": _binary("Div"),
    "pow": _binary("Pow"),
    "softmax": _softmax("Softmax"),
    "log_softmax": _softmax("LogSoftmax"),
    "einsum": Lowering(_einsum, "Einsum"),
    "rename": Lowering(_identity, "none (a name change)"),
    "transpose": Lowering(_transpose, "Transpose"),
    "flatten": Lowering(_flatten, "Reshape"),
    "unflatten": Lowering(_unflatten, "Reshape"),
    "concat": Lowering(_concat, "Concat (Expand to broadcast)"),
    "sum": _reduce("ReduceSum"),
    "mean": _reduce("ReduceMean"),
    "max": _reduce("ReduceMax"),
    "min": _reduce("ReduceMin"),
    "cast": Lowering(_cast, "Cast"),
    "causal": Lowering(_causal, "Range, Greater, Where"),
    "positions": Lowering(_positions, "Range"),
    "select": Lowering(_select, "Gather"),
    "top_k": Lowering(_top_k, "TopK"),
    "gather": Lowering(_gather, "GatherElements (Expand to broadcast)"),
    "pad_to": Lowering(_pad_to, "Pad (negative pads crop)"),
    "Linear": Lowering(_linear, "MatMul, Add"),
    "Embedding": Lowering(_embedding, "Less, Where, Gather"),
    "LayerNorm": Lowering(_layernorm, "LayerNormalization", min_opset=17),
    "RMSNorm": Lowering(_rmsnorm, "ReduceMean, Sqrt, Reciprocal, Mul"),
    "BatchNorm": Lowering(_batchnorm, "BatchNormalization"),
    "Conv": Lowering(_conv(False), "Conv"),
    "ConvTranspose": Lowering(_conv(True), "ConvTranspose"),
    "maxpool": _pool("MaxPool"),
    "avgpool": _pool("AveragePool"),
    "Param": Lowering(_param, "an initializer"),
}


# ---- comparisons, logic, selection, more elementwise maps (ops/compare.py, activations.py) ----

ORDERING = {"lt": "Less", "le": "LessOrEqual", "gt": "Greater", "ge": "GreaterOrEqual"}


def _compare(cx: OpCx):
    b, op = cx.b, cx.node.op
    dtype = cx.attrs["dtype"]
    if dtype == "bool" and op in ORDERING:  # ONNX orders numbers only; torch orders False < True
        dtype = "int32"
    op_type = ORDERING.get(op, "Equal")
    if cx.attrs.get("scalar") is not None:
        x = b.cast(cx.ins[0], dtype)
        c = b.scalar(cx.attrs["scalar"].value, b.elem(dtype))
        args = [x.name, c] if cx.attrs["side"] == "right" else [c, x.name]
    else:
        args = [b.align(b.cast(t, dtype), cx.node.type.names, full=False).name for t in cx.ins]
    out = b.op(op_type, args)
    return [cx.result(b.op("Not", [out]) if op == "ne" else out)]


def _logic(op_type: str):
    def fn(cx: OpCx):
        args = [cx.b.align(t, cx.node.type.names, full=False).name for t in cx.ins]
        return [cx.result(cx.b.op(op_type, args))]

    return Lowering(fn, op_type)


def _slots(cx: OpCx, dtype: str) -> list[str]:
    """The value operands in the order written: tensors cast and aligned, numbers constants."""
    b, out = cx.b, cx.node.type
    scalars = dict(cx.attrs["scalars"])
    tensors = iter(cx.ins)
    args = []
    for i in range(len(cx.ins) + len(scalars)):
        if i in scalars:
            args.append(b.scalar(scalars[i].value, b.elem(dtype)))
        else:
            t = next(tensors)
            t = t if t.type.dtype == "bool" and i == 0 and cx.node.op == "where" else b.cast(t, dtype)
            args.append(b.align(t, out.names, full=False).name)
    return args


def _where(cx: OpCx):
    return [cx.result(cx.b.op("Where", _slots(cx, cx.node.type.dtype)))]


def _minmax(op_type: str):
    return Lowering(lambda cx: [cx.result(cx.b.op(op_type, _slots(cx, cx.node.type.dtype)))], op_type)


def _clip(cx: OpCx, x: str, lo, hi, dtype: str) -> str:
    # one bound is Max or Min: a Clip without its max clamps +inf to the largest float
    b = cx.b
    if hi is None:
        return b.op("Max", [x, b.scalar(lo, b.elem(dtype))])
    if lo is None:
        return b.op("Min", [x, b.scalar(hi, b.elem(dtype))])
    return b.op("Clip", [x, b.scalar(lo, b.elem(dtype)), b.scalar(hi, b.elem(dtype))])


def _clamp(cx: OpCx):
    (x,) = cx.ins
    lo, hi = (None if cx.attrs[k] is None else cx.attrs[k].value for k in ("min", "max"))
    return [cx.result(_clip(cx, x.name, lo, hi, x.type.dtype))]


def _relu6_of(cx: OpCx, x: str) -> str:
    return _clip(cx, x, 0.0, 6.0, cx.ins[0].type.dtype)


def _hard(swish: bool):
    # torch's kernels: x * min(max(x + 3, 0), 6) / 6 and min(max(x + 3, 0), 6) / 6 (HardSwish
    # is opset 14 and HardSigmoid computes x / 6 + 0.5: both round differently)
    def fn(cx: OpCx):
        b, (x,) = cx.b, cx.ins
        r6 = _relu6_of(cx, b.op("Add", [x.name, cx.scalar_like(3.0, x)]))
        top = b.op("Mul", [x.name, r6]) if swish else r6
        return [cx.result(b.op("Div", [top, cx.scalar_like(6.0, x)]))]

    return Lowering(fn, "Add, Clip, Mul, Div" if swish else "Add, Clip, Div")


def _mish(cx: OpCx):  # Mish is opset 18
    b, (x,) = cx.b, cx.ins
    return [cx.result(b.op("Mul", [x.name, b.op("Tanh", [b.op("Softplus", [x.name])])]))]


def _softplus(cx: OpCx):
    # torch: x where beta x > threshold, else log(1 + exp(beta x)) / beta
    b, (x,) = cx.b, cx.ins
    beta, threshold = float(cx.attrs["beta"]), float(cx.attrs["threshold"])
    bx = b.op("Mul", [x.name, cx.scalar_like(beta, x)]) if beta != 1.0 else x.name
    soft = b.op("Softplus", [bx])
    if beta != 1.0:
        soft = b.op("Div", [soft, cx.scalar_like(beta, x)])
    linear = b.op("Greater", [bx, cx.scalar_like(threshold, x)])
    return [cx.result(b.op("Where", [linear, x.name, soft]))]


def _prelu(cx: OpCx):
    b, (x,) = cx.b, cx.ins
    axis = cx.attrs["axis"]
    slope_type = TensorType((x.type.axis(axis),) if axis is not None else (), x.type.dtype)
    w = b.cast(Tensor(cx.weight("weight"), slope_type, 0), x.type.dtype)
    if axis is not None:  # else one slope of shape [1], which broadcasts
        w = b.align(w, x.names, full=True)
    neg = b.op("Mul", [w.name, x.name])
    keep = b.op("GreaterOrEqual", [x.name, cx.scalar_like(0.0, x)])
    return [cx.result(b.op("Where", [keep, x.name, neg]))]


CORE_LOWERINGS.update({
    "lt": Lowering(_compare, "Less"),
    "le": Lowering(_compare, "LessOrEqual"),
    "gt": Lowering(_compare, "Greater"),
    "ge": Lowering(_compare, "GreaterOrEqual"),
    "eq": Lowering(_compare, "Equal"),
    "ne": Lowering(_compare, "Equal, Not"),
    "logical_and": _logic("And"),
    "logical_or": _logic("Or"),
    "logical_not": _unary("Not"),
    "where": Lowering(_where, "Where"),
    "minimum": _minmax("Min"),
    "maximum": _minmax("Max"),
    "clamp": Lowering(_clamp, "Clip (Max or Min for one bound)"),
    "floor": _unary("Floor"),
    "ceil": _unary("Ceil"),
    "round": _unary("Round"),
    "sign": _unary("Sign"),
    "sin": _unary("Sin"),
    "cos": _unary("Cos"),
    "relu6": Lowering(lambda cx: [cx.result(_relu6_of(cx, cx.ins[0].name))], "Clip"),
    "hardswish": _hard(True),
    "hardsigmoid": _hard(False),
    "mish": Lowering(_mish, "Softplus, Tanh, Mul"),
    "softplus": Lowering(_softplus, "Softplus, Greater, Where"),
    "elu": Lowering(lambda cx: [cx.result(cx.b.op("Elu", [cx.ins[0].name], alpha=float(cx.attrs["alpha"])))], "Elu"),
    "leaky_relu": Lowering(
        lambda cx: [cx.result(cx.b.op("LeakyRelu", [cx.ins[0].name], alpha=float(cx.attrs["slope"])))], "LeakyRelu"),
    "hardtanh": Lowering(
        lambda cx: [cx.result(_clip(cx, cx.ins[0].name, float(cx.attrs["min"]), float(cx.attrs["max"]), cx.ins[0].type.dtype))],
        "Clip"),
    "PReLU": Lowering(_prelu, "Mul, GreaterOrEqual, Where"),
})
