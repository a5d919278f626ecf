"""ONNX lowerings of the optimizer's fused ops (compiler/ops_fused.py), with the signature of
the entries of backends/onnx_ops.py. Each matches its PyTorch lowering in eval mode."""

from __future__ import annotations


from nncircuit.names import pyname
from nncircuit.types.sizes import Size
from nncircuit.types.tensor import Axis

from nncircuit.backends.onnx.builder import Tensor
from nncircuit.backends.onnx.ops import Lowering, OpCx, causal_mask


def _attention(cx: OpCx):
    """MatMul(q, kᵀ) · scale, the causal mask, Softmax over the key axis, MatMul with v."""
    b, (q, k, v) = cx.b, cx.ins
    at = cx.attrs
    batch = tuple(at["batch"])
    qq = b.transpose(q, batch + (at["query"], at["feature"]))
    kt = b.transpose(k, batch + (at["feature"], at["key"]))
    vv = b.transpose(v, batch + (at["key"], at["value_feature"]))
    scores = b.op("MatMul", [qq.name, kt.name])
    scores = b.op("Mul", [scores, cx.scalar_like(float(at["scale"].value), q)])
    rank = max(t.prefix for t in cx.ins) + len(batch) + 2
    if at["causal"]:
        same = q.type.axis(at["query"]).size == k.type.axis(at["key"]).size
        mask = causal_mask(b, scores, rank - 2, rank - 1, same)
        scores = b.op("Where", [mask, cx.scalar_like(float("-inf"), q), scores])
    weights = b.op("Softmax", [scores], axis=-1)
    y = b.op("MatMul", [weights, vv.name])
    prefix = max(t.prefix for t in cx.ins)
    names = batch + (at["query"], at["value_feature"])
    out = cx.node.type
    yt = Tensor(y, out.with_axes([out.axis(n) for n in names]), prefix)
    return [cx.result(b.transpose(yt, out.names).name, prefix=prefix)]


def _matmul(cx: OpCx):
    b, (x, y) = cx.b, cx.ins
    at = cx.attrs
    batch = tuple(at["batch"])
    xx = b.transpose(x, batch + (at["m"], at["k"]))
    yy = b.transpose(y, batch + (at["k"], at["n"]))
    z = b.op("MatMul", [xx.name, yy.name])
    prefix = max(x.prefix, y.prefix)
    out = cx.node.type
    zt = Tensor(z, out.with_axes([out.axis(n) for n in batch + (at["m"], at["n"])]), prefix)
    return [cx.result(b.transpose(zt, out.names).name, prefix=prefix)]


def _linear_group(cx: OpCx):
    """The members' weights joined (Concat), one MatMul (and Add), Split back into parts.
    Each member's parameters keep their own names (`k.weight` is the k Linear's)."""
    b, (x,) = cx.b, cx.ins
    at = cx.attrs
    ins = tuple(at["in_axes"])
    kept = tuple(a for a in x.names if a not in ins)
    x = b.transpose(x, kept + ins)
    if len(ins) > 1:
        size = Size.of(int(at["in_features"][0].value))
        x = b.reshape_span(x, ins[0], ins[-1], [Axis("_in", size)])
    members = [pyname(m) for m in at["members"]]
    w = b.op("Concat", [cx.weight(f"{m}.weight") for m in members], axis=0)
    y = b.op("MatMul", [x.name, b.op("Transpose", [w], perm=[1, 0])])
    if at["bias"]:
        y = b.op("Add", [y, b.op("Concat", [cx.weight(f"{m}.bias") for m in members], axis=0)])
    sizes = [int(f.value) for f in at["out_features"]]
    parts = b.op("Split", [y, b.i64(sizes)], outputs=len(sizes), axis=-1)
    results = []
    for i, (part, outs, width) in enumerate(zip(parts, at["out_axes"], sizes)):
        t = x.like(part, [x.type.axis(a) for a in kept] + [Axis("_out", Size.of(width))])
        if len(outs) > 1:
            t = b.reshape_span(t, "_out", "_out", list(outs))
        else:
            t = t.like(t.name, [t.type.axis(a) for a in kept] + [outs[0]])
        results.append(cx.result(b.transpose(t, cx.node.types[i].names).name, i))
    return results


FUSED_ONNX_LOWERINGS: dict[str, Lowering] = {
    "attention": Lowering(_attention, "MatMul, Mul, Softmax (Range, Greater, Where for the causal mask)"),
    "LinearGroup": Lowering(_linear_group, "Concat, MatMul, Add, Split"),
    "matmul": Lowering(_matmul, "MatMul"),
}
