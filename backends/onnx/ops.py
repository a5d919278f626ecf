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
    # a state_dict entry of the node that a weights file may hold but the graph does not
    # read (a persistent Buffer computed in the graph): checked, not made an initializer
    declare: Callable[[str], None] = lambda pname: None

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
    """One axis: Softmax / LogSoftmax along it. Several: Transpose them last (in the input's
    order), Reshape to [..., -1], normalise along -1, Reshape to the transposed shape (read at
    run time) and Transpose back."""

    def fn(cx: OpCx):
        b, (x,) = cx.b, cx.ins
        axes = tuple(a for a in x.names if a in cx.attrs["axes"])
        if len(axes) == 1:
            return [cx.result(b.op(op_type, [x.name], axis=x.pos(axes[0])))]
        k = len(axes)
        y = b.transpose(x, tuple(a for a in x.names if a not in axes) + axes)
        flat = b.op("Reshape", [y.name, b.i64([0] * (y.rank - k) + [-1])])
        back = b.op("Reshape", [b.op(op_type, [flat], axis=-1), b.shape(y.name)])
        return [cx.result(b.transpose(y.like(back, y.type.axes), x.names).name)]

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
    names = tuple(cx.attrs["axes"])
    first = min(x.type.index(a) for a in names)
    order = x.names[:first] + names + tuple(a for a in x.names[first:] if a not in names)
    x = cx.b.transpose(x, order)  # axes not next to each other in that order are moved there
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


def _length(cx: OpCx):
    """The axis's size, a 0-d int64 (Shape and Gather of an input for a run-time one)."""
    size = cx.dims.size(cx.attrs["axis"].size)
    return [cx.result(cx.b.op("Identity", [size]), prefix=0)]


def _fill(cx: OpCx):
    """zeros / ones / full: ConstantOfShape of the axes' (run-time) sizes."""
    b = cx.b
    sizes = [b.unsqueeze(cx.dims.size(ax.size), [0]) for ax in cx.attrs["axes"]]
    shape = b.cat(sizes) if sizes else b.const(np.zeros((0,), dtype=np.int64))
    value = {"zeros": 0, "ones": 1}.get(cx.node.op)
    if value is None:
        value = cx.attrs["value"].value
    elem = b.elem(cx.attrs["dtype"])
    from onnx import helper

    tensor = helper.make_tensor("value", elem, [1], [value])
    return [cx.result(b.op("ConstantOfShape", [shape], value=tensor), prefix=0)]


def _arange(cx: OpCx):
    """arange: Range 0 .. n-1 (n the axis's run-time size), scaled and shifted in double
    when start or step is not 0 or 1, then Cast to the element type."""
    b, at = cx.b, cx.attrs
    n = cx.dims.size(at["axis"].size)
    zero, one = b.const(np.array(0, dtype=np.int64)), b.const(np.array(1, dtype=np.int64))
    r = b.op("Range", [zero, n, one])
    start, step = float(at["start"].value), float(at["step"].value)
    if (start, step) != (0.0, 1.0):
        r = b.op("Cast", [r], to=b.elem("float64"))
        r = b.op("Mul", [r, b.const(np.array(step, dtype=np.float64))])
        r = b.op("Add", [r, b.const(np.array(start, dtype=np.float64))])
    return [cx.result(b.op("Cast", [r], to=b.elem(at["dtype"])), prefix=0)]


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


def _no_negative(b: Builder, idx: Tensor) -> Tensor:
    """ScatterElements reads a negative index from the end, where torch raises: send it far
    past the end, so that onnxruntime raises too (as for Embedding)."""
    far = b.const(np.array(2**62, dtype=np.int64))
    zero = b.const(np.array(0, dtype=np.int64))
    return idx.like(b.op("Where", [b.op("Less", [idx.name, zero]), far, idx.name]))


def _scatter(reduction: str | None):
    """ScatterElements on x with the indices and values (aligned by name) and x broadcast
    over each other's axes; `reduction = add` sums repeated indices, as torch's scatter_add."""

    def fn(cx: OpCx):
        b, out = cx.b, cx.node.type
        axis = cx.attrs["axis"]
        x = b.align(cx.ins[0], out.names)
        idx = b.align(_no_negative(b, b.cast(cx.ins[1], "int64")), out.names)
        src = b.align(cx.ins[2], out.names)
        parts = [x, idx, src]
        lead = max(p.prefix for p in parts)
        skip = out.index(axis) - out.rank
        if _needs_broadcast(parts, out.names, axis):
            shape = b.broadcast_shape(parts, lead + out.rank, skip)
            x, idx, src = (p.like(b.op("Expand", [p.name, shape])) for p in parts)
        names = [x.name, idx.name, src.name]
        if reduction is None:
            return [cx.result(b.op("ScatterElements", names, axis=skip), prefix=lead)]
        return [cx.result(b.op("ScatterElements", names, axis=skip, reduction=reduction), prefix=lead)]

    return fn


def _index_add(cx: OpCx):
    """index_add as ScatterElements(reduction = add): the one-axis indices stand where the
    target axis stands and are expanded to the values' shape."""
    b, out = cx.b, cx.node.type
    axis, rows = cx.attrs["axis"], cx.attrs["rows"]
    target = tuple(rows if a == axis else a for a in out.names)
    x = cx.ins[0]
    src = b.align(cx.ins[2], target)
    idx = _no_negative(b, b.cast(cx.ins[1], "int64"))
    pos = out.index(axis)
    trailing = out.rank - 1 - pos
    if trailing:
        idx = idx.like(b.unsqueeze(idx.name, list(range(idx.rank, idx.rank + trailing))))
    before: list[Axis] = []
    if idx.prefix and pos:  # lifted axes in front: the other axes before the rows stand between
        idx = idx.like(b.unsqueeze(idx.name, list(range(idx.prefix, idx.prefix + pos))))
        before = [Axis(a, Size.of(1)) for a in target[:pos]]
    ones = [Axis(a, Size.of(1)) for a in target[pos + 1:]]
    idx = Tensor(idx.name, TensorType((*before, cx.ins[1].type.axes[0], *ones), "int64"), idx.prefix)
    parts = [x, src, idx]
    lead = max(p.prefix for p in parts)
    skip = pos - out.rank
    shape = b.broadcast_shape(parts, lead + out.rank, skip)
    x, src, idx = (p.like(b.op("Expand", [p.name, shape])) for p in parts)
    return [cx.result(b.op("ScatterElements", [x.name, idx.name, src.name], axis=skip, reduction="add"), prefix=lead)]


def _moe(cx: OpCx):
    """Dense: every expert runs on every token (Einsum over the stacked weights), and the
    renormalised top-k weights, scattered into a vector over the experts (0 for the experts
    not chosen), sum their outputs. Equal to the sparse torch module; k/E of its expert
    FLOPs are the ones that count."""
    b, (x,) = cx.b, cx.ins
    at = cx.attrs
    ax = at["axis"]
    kept = tuple(a for a in x.names if a != ax)
    x = b.transpose(x, kept + (ax,))
    k, h = int(at["k"].value), int(at["hidden"].value)
    logits = b.op("MatMul", [x.name, b.op("Transpose", [cx.weight("gate.weight")], perm=[1, 0])])
    probs = b.op("Softmax", [logits], axis=-1)
    vals, idx = b.op("TopK", [probs, b.i64([k])], outputs=2, axis=-1, largest=1, sorted=1)
    vals = b.op("Div", [vals, b.reduce("ReduceSum", vals, [-1], keepdims=1)])
    zeros = b.op("Mul", [probs, cx.scalar_like(0, x)])
    combine = b.op("ScatterElements", [zeros, idx, vals], axis=-1)
    return _dense_experts(cx, x, combine, h, "experts.")


def _dense_experts(cx: OpCx, x, combine: str, h: int, prefix: str):
    """Every SwiGLU expert on every token (x: features last; weights `{prefix}gate_up_proj`
    [E, 2H, d] and `{prefix}down_proj` [E, d, H]), their outputs summed with `combine`
    [..., E] (0 for the experts a token did not choose)."""
    b = cx.b
    gate_up = b.op("Einsum", [x.name, cx.weight(f"{prefix}gate_up_proj")], equation="...d,efd->...ef")
    last = b.i64([-1])
    gate = b.op("Slice", [gate_up, b.i64([0]), b.i64([h]), last])
    up = b.op("Slice", [gate_up, b.i64([h]), b.i64([2 * h]), last])
    act = b.op("Mul", [b.op("Mul", [gate, b.op("Sigmoid", [gate])]), up])
    y = b.op("Einsum", [act, cx.weight(f"{prefix}down_proj")], equation="...ef,edf->...ed")
    y = b.op("Einsum", [y, combine], equation="...ed,...e->...d")
    return [cx.result(b.transpose(x.like(y), cx.node.type.names).name)]


def _experts(cx: OpCx):
    """Dense, as MoE's graph: every expert on every token, and the weights of each token's
    chosen experts summed into a vector over the experts (a one-hot of the indices, weighted;
    0 for the experts not chosen) that sums their outputs."""
    b, (x, w, idx) = cx.b, cx.ins
    at = cx.attrs
    ax, choice = at["axis"], at["choice"]
    kept = tuple(a for a in x.names if a != ax)
    w = b.transpose(w, kept + (choice,))
    idx = b.transpose(idx, kept + (choice,))
    x = b.transpose(x, kept + (ax,))
    e, h = int(at["experts"].value), int(at["hidden"].value)
    experts = b.i64(list(range(e)))
    onehot = b.op("Equal", [b.op("Unsqueeze", [b.op("Cast", [idx.name], to=b.elem("int64")), b.i64([-1])]), experts])
    onehot = b.op("Cast", [onehot], to=b.elem(w.type.dtype))
    combine = b.op("Einsum", [w.name, onehot], equation="...k,...ke->...e")
    return _dense_experts(cx, x, combine, h, "")


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
    if not cx.attrs["shape"]:  # over a run-time axis, affine = false
        out = _normalised(cx, y.name, list(range(y.rank - len(axes), y.rank)), float(cx.attrs["eps"]), x)
        return [cx.result(b.transpose(y.like(out), back).name)]
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


def _buffer(cx: OpCx):
    """A buffer: a persistent float buffer of given axes is an initializer (a weights file's
    value, else its constant); one made from an expression is that expression's value,
    computed in the graph (onnxruntime folds it), its state_dict entry only checked; one kept
    out of the state_dict is a constant or its expression."""
    at, b = cx.attrs, cx.b
    if at["init"] is None:
        if at["persistent"]:
            cx.declare("buffer")
        return [cx.ins[0].like(cx.ins[0].name, cx.node.type.axes)]
    if at["persistent"] and at["dtype"] == "float32":
        return [cx.result(cx.weight("buffer"), prefix=0)]
    if at["persistent"]:
        cx.declare("buffer")
    init = at["init"]
    value = {"zeros": 0.0, "ones": 1.0}.get(init.kind)
    value = float(init.args[0].value) if value is None else value
    shape = tuple(int(s.value) for s in at["sizes"])
    array = np.full(shape, value, dtype=np.float32 if at["dtype"] in ("float16", "bfloat16") else at["dtype"])
    return [cx.result(b.const(array, b.elem(at["dtype"])), prefix=0)]


def _random_like(op_type: str):
    def fn(cx: OpCx):
        (x,) = cx.ins
        if op_type == "RandomUniformLike":
            low, high = float(_value(cx.attrs["low"])), float(_value(cx.attrs["high"]))
            return [cx.result(cx.b.op(op_type, [x.name], low=low, high=high))]
        return [cx.result(cx.b.op(op_type, [x.name]))]

    return fn


def _bernoulli(cx: OpCx):
    """ONNX Bernoulli's own expansion, uniform < p (onnxruntime's Bernoulli kernel gives 1
    where p is 0: measured with onnxruntime on p = [0, 0, 1, 1])."""
    b, (p,) = cx.b, cx.ins
    u = b.op("RandomUniformLike", [p.name], low=0.0, high=1.0)
    return [cx.result(b.op("Cast", [b.op("Less", [u, p.name])], to=b.elem(p.type.dtype)))]


def _value(v):
    return v.value if hasattr(v, "value") else v


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
    "drop_path": Lowering(_identity, "none (identity at inference)"),
    "normal_like": Lowering(_random_like("RandomNormalLike"), "RandomNormalLike"),
    "uniform_like": Lowering(_random_like("RandomUniformLike"), "RandomUniformLike"),
    "bernoulli": Lowering(_bernoulli, "RandomUniformLike, Less, Cast"),
    "Buffer": Lowering(_buffer, "an initializer, a constant, or its expression"),
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
    "length": Lowering(_length, "Shape, Gather"),
    "arange": Lowering(_arange, "Range, Cast"),
    **{op: Lowering(_fill, "ConstantOfShape") for op in ("zeros", "ones", "full")},
    "select": Lowering(_select, "Gather"),
    "top_k": Lowering(_top_k, "TopK"),
    "gather": Lowering(_gather, "GatherElements (Expand to broadcast)"),
    "scatter": Lowering(_scatter(None), "Less, Where, ScatterElements (Expand to broadcast)"),
    "scatter_add": Lowering(_scatter("add"), "Less, Where, ScatterElements reduction=add", min_opset=16),
    "index_add": Lowering(_index_add, "Less, Where, Unsqueeze, Expand, ScatterElements reduction=add", min_opset=16),
    "MoE": Lowering(_moe, "MatMul, Softmax, TopK, ScatterElements, Einsum (dense: every expert)"),
    "Experts": Lowering(_experts, "Equal, Einsum (dense: every expert, weighted by a one-hot of the choices)"),
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


# ---- axis surgery and the group/instance norms (ops/surgery.py, ops/norms.py) ----------------

INT64_MAX = 2**63 - 1


def _slice_along(b: Builder, x: str, pos: int, start, end, step: int | None = None) -> str:
    """x[start:end(:step)] along axis pos; start/end are ints or 1-D int64 tensors."""
    s = b.i64([start]) if isinstance(start, int) else start
    e = b.i64([end]) if isinstance(end, int) else end
    args = [x, s, e, b.i64([pos])] + ([b.i64([step])] if step is not None else [])
    return b.op("Slice", args)


def _slice(cx: OpCx):
    (x,) = cx.ins
    start, stop = cx.attrs["start"], cx.attrs["stop"]
    lo = 0 if start is None else int(start.value)
    hi = INT64_MAX if stop is None else int(stop.value)
    return [cx.result(_slice_along(cx.b, x.name, x.pos(cx.attrs["axis"]), lo, hi))]


def _split_parts(cx: OpCx, sizes: list[int]):
    (x,) = cx.ins
    outs = cx.b.op("Split", [x.name, cx.b.i64(sizes)], outputs=len(sizes), axis=x.pos(cx.attrs["axis"]))
    return [cx.result(v, i) for i, v in enumerate(outs)]


def _split(cx: OpCx):
    return _split_parts(cx, [int(s.value) for s in cx.attrs["sizes"]])


def _chunk(cx: OpCx):
    k = int(cx.attrs["chunks"].value)
    n = cx.ins[0].type.axis(cx.attrs["axis"]).size.value
    return _split_parts(cx, [n // k] * k)


def _axis_len(b: Builder, x: Tensor, axis: str) -> str:
    """The length of an axis as a 0-d int64 tensor (a constant where it is static)."""
    size = x.type.axis(axis).size
    if size.is_static:
        return b.const(np.array(size.value, dtype=np.int64))
    return b.dim(x.name, x.pos(axis))


def _rolled(b: Builder, x: Tensor, axis: str, k: int) -> str:
    """torch.roll(x, k, axis): the last k positions (mod n) come first."""
    pos = x.pos(axis)
    size = x.type.axis(axis).size
    if size.is_static:
        n = size.value
        s = k % n
        if s == 0:
            return x.name
        tail = _slice_along(b, x.name, pos, n - s, n)
        head = _slice_along(b, x.name, pos, 0, n - s)
    else:
        n_t = _axis_len(b, x, axis)
        # the divisor's sign: 0 <= s < n; an empty axis (n = 0) divides by 1 and rolls nothing
        n_1 = b.op("Max", [n_t, b.const(np.array(1, dtype=np.int64))])
        s_t = b.op("Mod", [b.const(np.array(k, dtype=np.int64)), n_1])
        cut = b.unsqueeze(b.op("Sub", [n_t, s_t]), [0])
        tail = _slice_along(b, x.name, pos, cut, INT64_MAX)
        head = _slice_along(b, x.name, pos, 0, cut)
    return b.op("Concat", [tail, head], axis=pos)


def _positions_of(b: Builder, n_t: str) -> str:
    zero, one = b.const(np.array(0, dtype=np.int64)), b.const(np.array(1, dtype=np.int64))
    return b.op("Range", [zero, n_t, one])


def _roll(cx: OpCx):
    (x,) = cx.ins
    return [cx.result(_rolled(cx.b, x, cx.attrs["axis"], int(cx.attrs["shift"].value)))]


def _shift(cx: OpCx):
    b, (x,) = cx.b, cx.ins
    axis, k = cx.attrs["axis"], int(cx.attrs["shift"].value)
    rolled = _rolled(b, x, axis, k)
    n_t = _axis_len(b, x, axis)
    src = b.op("Sub", [_positions_of(b, n_t), b.const(np.array(k, dtype=np.int64))])
    zero = b.const(np.array(0, dtype=np.int64))
    keep = b.op("And", [b.op("GreaterOrEqual", [src, zero]), b.op("Less", [src, n_t])])
    mtype = TensorType((x.type.axis(axis),), "bool")
    m = b.align(Tensor(keep, mtype, 0), x.names, full=False)
    fill = cx.scalar_like(cx.attrs["fill"].value, x)
    return [cx.result(b.op("Where", [m.name, rolled, fill]))]


def _reverse(cx: OpCx):
    (x,) = cx.ins
    return [cx.result(_slice_along(cx.b, x.name, x.pos(cx.attrs["axis"]), -1, -INT64_MAX - 1, -1))]


def _cumsum(cx: OpCx):
    b, (x,) = cx.b, cx.ins
    return [cx.result(b.op("CumSum", [x.name, b.const(np.array(x.pos(cx.attrs["axis"]), dtype=np.int64))]))]


def _cumprod(cx: OpCx):
    """ONNX has no CumProd: position i is the product over j of (x_j where j <= i, else 1)."""
    b, (x,) = cx.b, cx.ins
    axis = cx.attrs["axis"]
    pos = x.pos(axis)
    r = _positions_of(b, _axis_len(b, x, axis))
    mask = b.op("LessOrEqual", [b.unsqueeze(r, [0]), b.unsqueeze(r, [1])])  # [i, j]: j <= i
    mask = b.unsqueeze(mask, list(range(pos)) + list(range(pos + 2, x.rank + 1)))
    spread = b.op("Where", [mask, b.unsqueeze(x.name, [pos]), cx.scalar_like(1, x)])
    return [cx.result(b.reduce("ReduceProd", spread, [pos + 1], keepdims=0))]


def _stack(cx: OpCx):
    b, out = cx.b, cx.node.type
    parts = [b.transpose(t, out.names[1:]) for t in cx.ins]
    lead = max(p.prefix for p in parts)
    if any(p.prefix != lead for p in parts):  # a lift prefix on some operands only
        shape = b.broadcast_shape(parts, lead + out.rank - 1, None)
        parts = [Tensor(b.op("Expand", [p.name, shape]), p.type, lead) for p in parts]
    ups = [b.unsqueeze(p.name, [lead]) for p in parts]
    return [cx.result(b.op("Concat", ups, axis=lead), prefix=lead)]


def _upsample(cx: OpCx):
    """nn.Upsample (align_corners=False): Resize of the named axes moved to the end and the
    others merged into one batch axis (onnxruntime's linear Resize wants 4-D or 5-D)."""
    b, (x,) = cx.b, cx.ins
    axes = tuple(cx.attrs["axes"])
    k, scale = len(axes), float(cx.attrs["scale"].value)
    lead = tuple(a for a in x.names if a not in axes)
    y = b.transpose(x, lead + axes)
    ones = [1] * (3 - k) if k < 3 else [1]  # (N, 1[, 1], *axes): 4-D for one or two axes, 5-D for three
    flat = b.op("Reshape", [y.name, b.cat([b.i64([-1] + ones), b.shape(y.name, y.rank - k)])])
    scales = b.const(np.array([1.0] * (1 + len(ones)) + [scale] * k, dtype=np.float32))
    if cx.attrs["mode"] == "nearest":  # source position floor(i / scale), as torch's nearest
        big = b.op("Resize", [flat, "", scales], mode="nearest", coordinate_transformation_mode="asymmetric",
                   nearest_mode="floor")
    else:  # (i + 0.5) / scale - 0.5, as torch's align_corners=False
        big = b.op("Resize", [flat, "", scales], mode="linear", coordinate_transformation_mode="half_pixel")
    back = b.cat([b.shape(y.name, 0, y.rank - k), b.shape(big, 1 + len(ones))])
    z = b.op("Reshape", [big, back])
    done = y.like(z, [cx.node.type.axis(a) for a in lead + axes])
    return [cx.result(b.transpose(done, cx.node.type.names).name)]


def _normalised(cx: OpCx, x: str, axes: list[int], eps: float, like: Tensor) -> str:
    """(x - mean) / sqrt(var + eps) over the given axes (the biased variance, as torch)."""
    b = cx.b
    mean = b.reduce("ReduceMean", x, axes, keepdims=1)
    d = b.op("Sub", [x, mean])
    var = b.reduce("ReduceMean", b.op("Mul", [d, d]), axes, keepdims=1)
    return b.op("Div", [d, b.op("Sqrt", [b.op("Add", [var, cx.scalar_like(eps, like)])])])


def _groupnorm(cx: OpCx):
    b, (x,) = cx.b, cx.ins
    c, spatial = cx.attrs["channel"], tuple(cx.attrs["spatial"])
    lead = tuple(a for a in x.names if a != c and a not in spatial)
    y = b.transpose(x, lead + (c,) + spatial)
    p = y.pos(c)
    groups = int(cx.attrs["groups"].value)
    head = [b.shape(y.name, 0, p)] if p else []
    grouped = b.op("Reshape", [y.name, b.cat(head + [b.i64([groups, -1])])])
    out = _normalised(cx, grouped, [p + 1], float(cx.attrs["eps"]), x)
    out = b.op("Reshape", [out, b.shape(y.name)])
    if cx.attrs["affine"]:
        per_channel = b.i64([-1] + [1] * len(spatial))
        out = b.op("Mul", [out, b.op("Reshape", [cx.weight("weight"), per_channel])])
        out = b.op("Add", [out, b.op("Reshape", [cx.weight("bias"), per_channel])])
    return [cx.result(b.transpose(y.like(out), x.names).name)]


def _instancenorm(cx: OpCx):
    b, (x,) = cx.b, cx.ins
    spatial = tuple(cx.attrs["spatial"])
    lead = tuple(a for a in x.names if a not in spatial)
    y = b.transpose(x, lead + spatial)
    k = len(spatial)
    out = _normalised(cx, y.name, list(range(y.rank - k, y.rank)), float(cx.attrs["eps"]), x)
    z = b.transpose(y.like(out), x.names)
    if not cx.attrs["affine"]:
        return [cx.result(z.name)]
    ctype = TensorType((x.type.axis(cx.attrs["channel"]),), x.type.dtype)
    w = b.align(Tensor(cx.weight("weight"), ctype, 0), x.names, full=False)
    bias = b.align(Tensor(cx.weight("bias"), ctype, 0), x.names, full=False)
    return [cx.result(b.op("Add", [b.op("Mul", [z.name, w.name]), bias.name]))]


CORE_LOWERINGS.update({
    "slice": Lowering(_slice, "Slice"),
    "split": Lowering(_split, "Split"),
    "chunk": Lowering(_chunk, "Split"),
    "roll": Lowering(_roll, "Slice, Concat"),
    "shift": Lowering(_shift, "Slice, Concat, Range, Where"),
    "reverse": Lowering(_reverse, "Slice (step -1)"),
    "cumsum": Lowering(_cumsum, "CumSum"),
    "cumprod": Lowering(_cumprod, "Range, LessOrEqual, Where, ReduceProd"),
    "stack": Lowering(_stack, "Unsqueeze, Concat"),
    "upsample": Lowering(_upsample, "Resize"),
    "GroupNorm": Lowering(_groupnorm, "Reshape, ReduceMean, Sqrt, Div, Mul, Add"),
    "InstanceNorm": Lowering(_instancenorm, "ReduceMean, Sqrt, Div (Mul, Add)"),
})


# ---- linear recurrences ------------------------------------------------------------------


def _scan_loop(b: Builder, A: str, a_pos: int | None, bb: str, pos: int, H0: str, reverse: bool, elem: int, rank: int):
    """The Loop of h_t = a_t * h_{t-1} + b_t over axis `pos` of bb (its run-time length): each
    step Gathers its a_t (axis a_pos of A; None: A is the same at every step) and b_t from the
    outer scope; H0 is expanded to one step's shape of bb. Returns the last state and the
    states stacked along `pos`, in order, shaped as bb."""
    from onnx import TensorProto, helper

    length = b.dim(bb, pos)
    shape = b.shape(bb)
    step_shape = b.cat([b.op("Slice", [shape, b.i64([0]), b.i64([pos])]),
                        b.op("Slice", [shape, b.i64([pos + 1]), b.i64([2**62])])])
    init = b.op("Expand", [H0, step_shape])
    lastpos = b.op("Sub", [length, b.const(np.array(1, dtype=np.int64))]) if reverse else None
    sb = Builder(b.opset, fp16=b.fp16)
    sb.values, sb.node_names, sb.scope = b.values, b.node_names, b.scope
    it = sb.values.fresh("linear_scan/step")
    cond = sb.values.fresh("linear_scan/cond")
    state = sb.values.fresh("linear_scan/h")
    step = sb.op("Sub", [lastpos, it]) if lastpos is not None else it
    a_t = sb.op("Gather", [A, step], axis=a_pos) if a_pos is not None else A
    b_t = sb.op("Gather", [bb, step], axis=pos)
    h = sb.op("Add", [sb.op("Mul", [a_t, state]), b_t])
    cond_out = sb.op("Identity", [cond])
    h_out, h_scan = sb.op("Identity", [h]), sb.op("Identity", [h])
    body = helper.make_graph(
        sb.nodes, "linear_scan",
        [helper.make_tensor_value_info(it, TensorProto.INT64, []),
         helper.make_tensor_value_info(cond, TensorProto.BOOL, []),
         helper.make_tensor_value_info(state, elem, None)],
        [helper.make_tensor_value_info(cond_out, TensorProto.BOOL, []),
         helper.make_tensor_value_info(h_out, elem, None),
         helper.make_tensor_value_info(h_scan, elem, [None] * (rank - 1))],
    )
    last, stacked = b.op("Loop", [length, "", init], outputs=2, body=body)
    if reverse:  # the steps ran from the end: put them back in order
        stacked = b.op("Slice", [stacked, b.i64([-1]), b.i64([-(2**63)]), b.i64([0]), b.i64([-1])])
    if pos:
        order = list(range(1, rank))
        order.insert(pos, 0)
        stacked = b.op("Transpose", [stacked], perm=order)
    # bb's shape: the same for a run of one step or more, and right for none (ORT gives a
    # zero-iteration Loop's scan output no shape of its own)
    return last, b.op("Reshape", [stacked, b.shape(bb)])


def _linear_scan(cx: OpCx):
    """h_t = a_t * h_{t-1} + b_t as one Loop over the axis's run-time length (_scan_loop);
    the states are the Loop's scan output (stacked on axis 0, then moved to the axis's place)."""
    b = cx.b
    a, bb, h0 = cx.ins
    out, last_t = cx.node.types
    bb = b.transpose(bb, out.names)
    axis = cx.attrs["axis"]
    step_names = tuple(x for x in out.names if x != axis)
    A = b.align(a, out.names, full=True)
    timed = a.type.has(axis)
    if not timed:  # the same a at every step: drop its size-1 axis once, outside the loop
        A = A.like(b.squeeze(A.name, [A.pos(axis)]), [x for x in A.type.axes if x.name != axis])
    H0 = b.align(h0, step_names, full=True)
    last, stacked = _scan_loop(b, A.name, A.pos(axis) if timed else None, bb.name, bb.pos(axis), H0.name,
                               cx.attrs["reverse"], b.elem(out.dtype), bb.rank)
    return [Tensor(stacked, out, bb.prefix), Tensor(last, last_t, bb.prefix)]


def _linear_scan_sum(cx: OpCx):
    """linear_scan_sum unfused, as the recurrence it defines: a (Exp of) the product of its
    factors, b the product of the others expanded to the state's shape, the linear_scan Loop
    (_scan_loop), then the read-out: Mul by c and ReduceSum over the summed axes."""
    b = cx.b
    na, axis, out = cx.attrs["na"], cx.attrs["axis"], tuple(cx.attrs["out"])
    y_t, last_t = cx.node.types
    h0, c = cx.ins[-2], cx.ins[-1]
    lay = (axis, *h0.names)
    facs = [b.align(t, lay, full=True) for t in cx.ins[:-2]]

    def product(ts):
        name = ts[0].name
        for t in ts[1:]:
            name = b.op("Mul", [name, t.name])
        return name, max(t.prefix for t in ts)

    A, a_pre = product(facs[:na])
    if cx.attrs["exp_a"]:
        A = b.op("Exp", [A])
    timed = any(t.type.has(axis) for t in cx.ins[:na])
    if not timed:  # the same a at every step: drop its size-1 axis once, outside the loop
        A = b.squeeze(A, [a_pre])
    B, b_pre = product(facs[na:])
    H0 = b.align(h0, lay, full=True)  # a size-1 axis in front: the state's shape, broadcast with b's
    rank = max(b_pre, h0.prefix) + len(lay)
    B = b.op("Expand", [B, b.shape(H0.name)])
    pre = rank - len(lay)
    last, hs = _scan_loop(b, A, a_pre if timed else None, B, pre, h0.name, cx.attrs["reverse"],
                          b.elem(y_t.dtype), rank)
    C = b.align(c, lay, full=True)
    y = b.op("Mul", [hs, C.name])
    if cx.attrs["sum"]:
        y = b.reduce("ReduceSum", y, [lay.index(x) - len(lay) for x in cx.attrs["sum"]], keepdims=0)
    kept = [y_t.axis(x) for x in lay if x not in cx.attrs["sum"]]
    Y = b.transpose(Tensor(y, TensorType(tuple(kept), y_t.dtype), max(pre, c.prefix)), out)
    return [Tensor(Y.name, y_t, Y.prefix), Tensor(last, last_t, pre)]


CORE_LOWERINGS["linear_scan"] = Lowering(_linear_scan, "Loop")
CORE_LOWERINGS["linear_scan_sum"] = Lowering(_linear_scan_sum, "Mul, Exp, Expand, Loop, ReduceSum")


# ---- recurrent cells (nncircuit.ops.cells) -------------------------------------------------


def _cell(cx: OpCx):
    """torch.nn's LSTMCell / GRUCell / RNNCell written out (MatMul, Add, Split, Sigmoid, Tanh,
    Mul) in torch's own gate order and formulas, on any leading axes: ONNX's LSTM/GRU/RNN ops
    want [seq, batch, in] and their own gate order (LSTM's i, o, f, c), which would reorder
    the weights and fix the batch to one axis."""
    b, at = cx.b, cx.attrs
    x, *states = cx.ins
    ins, hidden = tuple(at["in_axes"]), at["hidden"].name
    kept = tuple(a for a in x.names if a not in ins)
    xx = b.transpose(x, kept + ins)
    if len(ins) > 1:
        xx = b.reshape_span(xx, ins[0], ins[-1], [Axis("_in", Size.of(int(at["in_features"].value)))])
    ss = [b.transpose(s, kept + (hidden,)) for s in states]
    size = int(at["hidden_size"].value)

    def affine(t: Tensor, w: str, bias: str) -> str:  # t Wᵀ (+ bias)
        y = b.op("MatMul", [t.name, b.op("Transpose", [cx.weight(w)], perm=[1, 0])])
        return b.op("Add", [y, cx.weight(bias)]) if at["bias"] else y

    def split(v: str, k: int) -> list[str]:
        return b.op("Split", [v, b.i64([size] * k)], outputs=k, axis=-1)

    def sig(v: str) -> str:
        return b.op("Sigmoid", [v])

    def tanh(v: str) -> str:
        return b.op("Tanh", [v])

    gi, gh = affine(xx, "weight_ih", "bias_ih"), affine(ss[0], "weight_hh", "bias_hh")
    if cx.node.op == "LSTMCell":  # gates i, f, g, o
        i, f, g, o = split(b.op("Add", [gh, gi]), 4)
        c = b.op("Add", [b.op("Mul", [sig(f), ss[1].name]), b.op("Mul", [sig(i), tanh(g)])])
        outs = [b.op("Mul", [sig(o), tanh(c)]), c]
    elif cx.node.op == "GRUCell":  # gates r, z, n; h' = (h - n) z + n, as torch computes it
        (ri, zi, ni), (rh, zh, nh) = split(gi, 3), split(gh, 3)
        r, z = sig(b.op("Add", [ri, rh])), sig(b.op("Add", [zi, zh]))
        n = tanh(b.op("Add", [ni, b.op("Mul", [r, nh])]))
        outs = [b.op("Add", [b.op("Mul", [b.op("Sub", [ss[0].name, n]), z]), n])]
    else:
        act = "Relu" if at["nonlinearity"] == "relu" else "Tanh"
        outs = [b.op(act, [b.op("Add", [gh, gi])])]
    prefix = max(t.prefix for t in [xx, *ss])
    axes = [ss[0].type.axis(a) for a in kept + (hidden,)]
    res = []
    for k, v in enumerate(outs):
        t = Tensor(v, TensorType(tuple(axes), cx.node.types[k].dtype), prefix)
        res.append(cx.result(b.transpose(t, cx.node.types[k].names).name, k, prefix))
    return res


for _cell_op in ("LSTMCell", "GRUCell", "RNNCell"):
    CORE_LOWERINGS[_cell_op] = Lowering(_cell, "MatMul, Add, Split, Sigmoid, Tanh, Mul (written out)")
