"""Fused primitives that the optimizer introduces: scaled dot-product attention in one op,
several Linear maps of one input as one matmul, and a two-operand einsum that is a batched
matrix product. `attention` may also be written in a spec."""

from __future__ import annotations

import math
from dataclasses import replace

from nncircuit.ops import registry
from nncircuit.names import pyname
from nncircuit.ops.registry import (
    AttrSpec,
    Attrs,
    FAN_IN_UNIFORM,
    TORCH_WEIGHT,
    OpCall,
    OpDef,
    ParamSpec,
    as_bool,
    as_float,
    fail,
    numel,
    over_names,
    register,
    require_axis,
    require_float,
    size_hval,
)
from nncircuit.types import expr as X
from nncircuit.types.tensor import Axis, HVal, TensorType

# ---- attention -----------------------------------------------------------------------------


def _attention_check(call: OpCall):
    if len(call.inputs) != 3:
        raise fail(f"attention takes three tensors (q, k, v), found {len(call.inputs)}")
    q, k, v = call.inputs
    for t in (q, k, v):
        require_float("attention", t)
    if call.src is None or call.dst is None or len(call.src) != 1 or len(call.dst) != 1:
        raise fail("attention needs the feature axes 'QK_FEATURE -> V_FEATURE': "
                   "attention(q, k, v, dh -> dv, over [seq, key])")
    names = over_names("attention", call)
    if len(names) != 2:
        raise fail("attention needs the query and key axes: over [seq, key]")
    query, key = names
    (e_spec,), (f_spec,) = call.src, call.dst
    e, f = e_spec.name, f_spec.name
    e_ax = require_axis("attention", q, e_spec)
    for t, needs in ((q, (query,)), (k, (key, e)), (v, (key, f))):
        for name in needs:
            if not t.has(name):
                raise fail(f"attention expects an axis '{name}' but the input is {t}")
    if k.has(query) or v.has(query):
        raise fail(f"attention: the query axis '{query}' must be in q only")
    if q.has(key):
        raise fail(f"attention: the key axis '{key}' must not be in q ({q})")
    batch = tuple(a for a in q.names if a not in (query, e))
    if f in batch:
        raise fail(f"attention: the value feature axis '{f}' is also a batch axis of q")
    for t, own, label in ((k, (key, e), "k"), (v, (key, f), "v")):
        rest = sorted(a for a in t.names if a not in own)
        if rest != sorted(batch):
            raise fail(f"attention: {label} {t} must carry q's other axes [{', '.join(batch)}] and no others")
        for b in batch:
            if t.axis(b).size != q.axis(b).size:
                raise fail(f"attention: axis '{b}' has size {q.axis(b).size} in q and {t.axis(b).size} in {label}")
    if k.axis(e).size != e_ax.size:
        raise fail(f"attention: axis '{e}' has size {e_ax.size} in q and {k.axis(e).size} in k")
    if k.axis(key).size != v.axis(key).size:
        raise fail(f"attention: axis '{key}' has size {k.axis(key).size} in k and {v.axis(key).size} in v")
    scale = call.kw("scale")
    if scale is None:
        if not e_ax.size.is_static:
            raise fail(f"attention: give 'scale'; the feature axis '{e}' has a run-time size")
        d = size_hval(e_ax, e_spec)
        scale = HVal(1.0 / math.sqrt(float(d.value)), X.binop("/", X.Const(1), X.call("sqrt", (d.expr,))))
    elif not isinstance(scale, HVal):
        scale = HVal.const(scale)
    as_float("attention", "scale", scale)
    causal = as_bool("attention", "causal", call.kw("causal", False))
    out = q.with_axes(v.axis(f) if a.name == e else a for a in q.axes)
    attrs = {
        "query": query,
        "key": key,
        "feature": e,
        "value_feature": f,
        "batch": batch,
        "scale": scale,
        "causal": causal,
    }
    return attrs, (out,)


def _attention_flops(a, ins, outs, env):
    q, k, v = ins
    rows = numel(q, env) // q.axis(a["feature"]).size.evaluate(env)  # batch × queries
    keys = k.axis(a["key"]).size.evaluate(env)
    e = q.axis(a["feature"]).size.evaluate(env)
    f = v.axis(a["value_feature"]).size.evaluate(env)
    return 2 * rows * keys * (e + f)


register(
    OpDef(
        name="attention",
        doc="softmax(scale · q·k [causal mask]) · v in one op: the query-key contraction over "
        "the feature axis, a softmax over the key axis, and the weighted sum of v. Other axes "
        "of q are batch axes that k and v carry too. `scale` defaults to 1/√(feature size). "
        "The causal mask is lined up at the end, as `causal`'s.",
        check=_attention_check,
        attrs=(
            AttrSpec("query", "axis", doc="q's positions"),
            AttrSpec("key", "axis", doc="k's and v's positions, the softmax axis"),
            AttrSpec("feature", "axis", doc="the axis q and k contract"),
            AttrSpec("value_feature", "axis", doc="v's feature axis, the result's"),
            AttrSpec("batch", "axes", doc="q's other axes, which k and v carry too"),
            AttrSpec("scale", "hval", doc="the factor of the scores"),
            AttrSpec("causal", "bool", doc="mask keys after the query (lined up at the end)"),
        ),
        arity=3,
        kwargs=("scale", "causal"),
        takes=frozenset({"map", "over"}),
        flops=_attention_flops,
        glyph="attn",
        example="attention(q, k, v, dh -> dv, over [seq, key], causal = true)",
    )
)


# ---- several Linear maps of one input --------------------------------------------------------


def _linear_group_check(call: OpCall):
    (t,) = call.inputs
    members = call.kw("members")
    parts = call.kw("parts")
    if not isinstance(members, tuple) or not isinstance(parts, tuple) or len(members) != len(parts):
        raise fail("LinearGroup needs members = (names…) and parts = (Linear calls…) of one length")
    if len(parts) < 2:
        raise fail("LinearGroup joins at least two Linear maps")
    if len(set(members)) != len(members) or not all(isinstance(m, str) and m.isidentifier() for m in members):
        raise fail(f"LinearGroup: members must be distinct names, found {members}")
    linear = registry.get("Linear")
    per, outs = [], []
    for part in parts:
        if not isinstance(part, OpCall) or part.op != "Linear":
            raise fail("LinearGroup: every part must be a Linear call")
        attrs, (out,) = linear.check(replace(part, inputs=(t,)))
        if attrs["tied"] is not None:
            raise fail("LinearGroup: a tied Linear cannot join a group")
        per.append(attrs)
        outs.append(out)
    first = per[0]
    for a in per[1:]:
        if a["in_axes"] != first["in_axes"] or a["bias"] != first["bias"]:
            raise fail("LinearGroup: every part must read the same axes and agree on the bias")
    attrs = {
        "members": members,
        "in_axes": first["in_axes"],
        "in_features": tuple(a["in_features"] for a in per),
        "out_features": tuple(a["out_features"] for a in per),
        "out_sizes": tuple(a["out_sizes"] for a in per),
        "out_axes": tuple(a["out_axes"] for a in per),
        "bias": first["bias"],
        "init": tuple(a["init"] for a in per),  # each member's own initialisation
        "bias_init": tuple(a["bias_init"] for a in per),
    }
    return attrs, tuple(outs)


def _linear_group_params(a, ins):
    out = []
    # named `member.weight`: a parameter of another module of the same block, as the
    # state_dict of the unfused model has it
    for m, fin, fout, w, b in zip(a["members"], a["in_features"], a["out_features"], a["init"], a["bias_init"]):
        fan_in = int(fin.value)
        out.append(ParamSpec(f"{pyname(m)}.weight", (fout, fin), w or TORCH_WEIGHT, fan_in=fan_in, explicit=w is not None))
        if a["bias"]:
            out.append(ParamSpec(f"{pyname(m)}.bias", (fout,), b or FAN_IN_UNIFORM, fan_in=fan_in, explicit=b is not None))
    return tuple(out)


def group_members(a: Attrs) -> tuple[str, ...]:
    """The modules of a LinearGroup's members, in order."""
    return a["members"]


def _linear_group_flops(a, ins, outs, env):
    return sum(2 * numel(o, env) * int(fin.value) for o, fin in zip(outs, a["in_features"]))


register(
    OpDef(
        name="LinearGroup",
        doc="Several Linear maps of one input computed as one matrix product and split; each "
        "part keeps its own module and parameters (`members`). Made by the optimizer from "
        "sibling Linears such as q, k and v.",
        check=_linear_group_check,
        attrs=(
            AttrSpec("members", "names", doc="the member Linears' modules, in order"),
            AttrSpec("in_axes", "axes", doc="the axes every member contracts"),
            AttrSpec("in_features", "hvals", doc="per member"),
            AttrSpec("out_features", "hvals", doc="per member"),
            AttrSpec("out_sizes", "any", doc="per member, a tuple of HVal: its out axes' sizes"),
            AttrSpec("out_axes", "any", doc="per member, a tuple of Axis: the axes it makes"),
            AttrSpec("bias", "bool", doc="every member has a bias (or none does)"),
            AttrSpec("init", "any", doc="per member, its weight's Init or None"),
            AttrSpec("bias_init", "any", doc="per member, its bias's Init or None"),
        ),
        axis_args=lambda a: a["in_axes"] + tuple(x.name for outs in a["out_axes"] for x in outs),
        arity=1,
        learned=True,
        params=_linear_group_params,
        flops=_linear_group_flops,
        kwargs=("members", "parts"),
        glyph="L",
        example="q, k, v = LinearGroup(x, members = (q, k, v), parts = (…))  # written by nnc -O2",
    )
)


# ---- einsum as a batched matrix product ------------------------------------------------------


def _matmul_check(call: OpCall):
    if call.dst is None or len(call.inputs) != 2:
        raise fail("matmul takes two tensors and its output axes: matmul(a, b -> [i, j])")
    a, b = call.inputs
    require_float("matmul", a)
    require_float("matmul", b)
    out = tuple(s.name for s in call.dst)
    contracted = [n for n in a.names if n not in out]
    if [n for n in b.names if n not in out] != contracted or len(contracted) != 1:
        raise fail(f"matmul contracts exactly one axis that both {a} and {b} have")
    (kk,) = contracted
    m = [n for n in a.names if not b.has(n)]
    n_ = [n for n in b.names if not a.has(n)]
    if len(m) != 1 or len(n_) != 1:
        raise fail(f"matmul needs one axis only {a} has and one only {b} has")
    batch = tuple(n for n in out if n not in (m[0], n_[0]))
    if sorted(out) != sorted(batch + (m[0], n_[0])) or len(set(out)) != len(out):
        raise fail(f"matmul: output axes [{', '.join(out)}] must be the batch axes and {m[0]}, {n_[0]}")
    axes: dict[str, Axis] = {}
    for t in (a, b):
        for ax in t.axes:
            if ax.name in axes and axes[ax.name].size != ax.size:
                raise fail(f"matmul: axis '{ax.name}' has size {axes[ax.name].size} in one input and {ax.size} in the other")
            axes.setdefault(ax.name, ax)
    for name in batch:
        if not (a.has(name) and b.has(name)):
            raise fail(f"matmul: batch axis '{name}' must be in both inputs")
    attrs = {"out": out, "m": m[0], "n": n_[0], "k": kk, "batch": batch}
    return attrs, (TensorType(tuple(axes[x] for x in out), a.dtype),)


def _matmul_flops(attrs, ins, outs, env):
    a, b = ins
    sizes = {ax.name: ax.size.evaluate(env) for t in (a, b) for ax in t.axes}
    return 2 * math.prod(sizes.values())


register(
    OpDef(
        name="matmul",
        doc="A batched matrix product by axis name: one axis contracted, one axis from each "
        "side kept, every other axis shared (a batch axis). The optimizer turns two-operand "
        "einsums of this form into it.",
        check=_matmul_check,
        attrs=(
            AttrSpec("out", "axes", doc="the result's axes, in order"),
            AttrSpec("m", "axis", doc="the axis only the left side has"),
            AttrSpec("n", "axis", doc="the axis only the right side has"),
            AttrSpec("k", "axis", doc="the axis contracted"),
            AttrSpec("batch", "axes", doc="the axes both sides share and keep"),
        ),
        arity=2,
        takes=frozenset({"map"}),
        flops=_matmul_flops,
        figure="cup",
        glyph="∪",
        example="matmul(%w, %v -> [seq, dv])  # in the IR, written by nnc -O2",
    )
)
