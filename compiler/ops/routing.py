"""Data-dependent routing: writes at positions a tensor holds (scatter, scatter_add,
index_add) and the sparse mixture of experts that runs only the experts a token chose."""

from __future__ import annotations

from nncircuit.ops.registry import (
    FAN_IN_UNIFORM,
    TORCH_WEIGHT,
    Attrs,
    AttrSpec,
    OpCall,
    OpDef,
    ParamSpec,
    as_int,
    fail,
    numel,
    over_specs,
    register,
    require_axis,
    require_float,
    size_hval,
)
from nncircuit.types import expr as X
from nncircuit.types.tensor import HVal, TensorType

INT_DTYPES = ("int64", "int32")


def _one_axis(call: OpCall):
    specs = over_specs(call.op, call)
    if len(specs) != 1:
        raise fail(f"{call.op} acts on exactly one axis, found 'over [{', '.join(s.name for s in specs)}]'")
    return specs[0]


def _others_within(op: str, what: str, t: TensorType, x: TensorType, skip: str) -> None:
    """Every axis of t but `skip` must be an axis of x, of the same size (t may lack some of
    x's: it is broadcast over them). An axis only t has would make the result bigger than x."""
    for a in t.axes:
        if a.name == skip:
            continue
        if not x.has(a.name):
            raise fail(f"{op}: the {what} {t} has an axis '{a.name}' that the target {x} lacks; "
                       f"every axis but '{skip}' must be one of the target's")
        mine = x.axis(a.name)
        if a.size != mine.size and not (a.size.is_static and a.size.value == 1):
            raise fail(f"{op}: axis '{a.name}' has size {a.size} in the {what} {t} and {mine.size} "
                       f"in the target {x}; the result has the target's axes")


def _scatter_check(call: OpCall):
    op = call.op
    x, idx, src = call.inputs
    axis = _one_axis(call)
    require_axis(op, x, axis)
    if idx.dtype not in INT_DTYPES:
        raise fail(f"{op}: indices must be integers, found {idx}")
    if not idx.has(axis.name):
        raise fail(f"{op}: the indices {idx} must have the axis '{axis.name}' they write along")
    if sorted(src.names) != sorted(idx.names):
        raise fail(f"{op}: the values {src} must have the axes of the indices {idx}: "
                   f"value i lands where index i points")
    for a in src.axes:
        if a.size != idx.axis(a.name).size:
            raise fail(f"{op}: axis '{a.name}' has size {a.size} in the values {src} and "
                       f"{idx.axis(a.name).size} in the indices {idx}")
    if src.dtype != x.dtype:
        raise fail(f"{op}: the values {src} must have the target's element type {x.dtype}")
    _others_within(op, "indices", idx, x, axis.name)
    return {"axis": axis.name}, (x,)


def _index_add_check(call: OpCall):
    x, idx, src = call.inputs
    axis = _one_axis(call)
    require_axis("index_add", x, axis)
    if idx.dtype not in INT_DTYPES:
        raise fail(f"index_add: indices must be integers, found {idx}")
    if idx.rank != 1:
        raise fail(f"index_add: the indices must have exactly one axis (one target position per "
                   f"slice of the values), found {idx}")
    rows = idx.axes[0]
    if not src.has(rows.name):
        raise fail(f"index_add: the values {src} must have the axis '{rows.name}' of the indices "
                   f"{idx} in place of '{axis.name}'")
    if src.axis(rows.name).size != rows.size:
        raise fail(f"index_add: axis '{rows.name}' has size {src.axis(rows.name).size} in the "
                   f"values {src} and {rows.size} in the indices {idx}")
    if src.dtype != x.dtype:
        raise fail(f"index_add: the values {src} must have the target's element type {x.dtype}")
    if rows.name != axis.name and src.has(axis.name):
        raise fail(f"index_add: the values {src} have both the indices' axis '{rows.name}' and the "
                   f"target axis '{axis.name}'; '{rows.name}' stands in place of '{axis.name}'")
    _others_within("index_add", "values", src, x, rows.name)
    if rows.name != axis.name and x.has(rows.name):
        raise fail(f"index_add: the indices' axis '{rows.name}' is also an axis of the target "
                   f"{x}; rename it (e.g. `idx rename {rows.name} -> row`)")
    return {"axis": axis.name, "rows": rows.name}, (x,)


def _add_flops(a, ins, outs, env):
    return numel(ins[2], env)


SCATTER_ATTRS = (AttrSpec("axis", "axis", doc="the axis written along"),)

for _name, _doc, _ex in (
    ("scatter", "Writes the values `src` into a copy of `x` along an axis at the positions `idx` "
     "holds there (`src` has the axes of `idx`; x's other axes are matched by name and "
     "broadcast). Where two indices point at one position, which value wins is unspecified, "
     "as in torch and ONNX.", "scatter(x, idx, vals, over expert)"),
    ("scatter_add", "Adds the values `src` into a copy of `x` along an axis at the positions "
     "`idx` holds there (`src` has the axes of `idx`; x's other axes are matched by name); "
     "repeated indices add up.", "scatter_add(counts, idx, ones, over expert)"),
):
    register(
        OpDef(
            name=_name,
            doc=_doc,
            check=_scatter_check,
            arity=3,
            takes=frozenset({"over"}),
            flops=_add_flops if _name == "scatter_add" else (lambda a, i, o, env: 0),
            glyph="scatter+" if _name == "scatter_add" else "scatter",
            example=_ex,
            attrs=SCATTER_ATTRS,
        )
    )

register(
    OpDef(
        name="index_add",
        doc="Adds slices of `src` into a copy of `x` along an axis: slice j of `src` (along the "
        "one axis of `idx`) is added at position idx[j]; repeated indices add up. `src` has "
        "x's axes with the axis of `idx` in place of the target axis.",
        check=_index_add_check,
        arity=3,
        takes=frozenset({"over"}),
        flops=_add_flops,
        glyph="index+",
        example="index_add(out, token, y rename token -> slot, over token)",
        attrs=(AttrSpec("axis", "axis", doc="the target axis"),
               AttrSpec("rows", "axis", doc="the axis of the indices and values that is added along")),
    )
)


# ---- the sparse mixture of experts --------------------------------------------------------


def _moe_check(call: OpCall):
    (x,) = call.inputs
    axis = _one_axis(call)
    require_float("MoE", x)
    ax = require_axis("MoE", x, axis)
    if not ax.size.is_static:
        raise fail(f"MoE needs a fixed size for its feature axis '{axis.name}', found the run-time size {ax.size}")
    vals = {}
    for key in ("experts", "k", "hidden"):
        v = call.kw(key)
        if v is None:
            raise fail(f"MoE needs '{key} = N' (e.g. MoE(x, over d, experts = 8, k = 2, hidden = 4 * d))")
        as_int("MoE", key, v, minimum=1)
        vals[key] = v
    e, k = vals["experts"], vals["k"]
    X.note(X.binop("<=", k.expr, e.expr), "MoE: k = ", ("e", k.expr), " is more than the ",
           ("e", e.expr), " experts")
    if k.value > e.value:
        raise fail(f"MoE: k = {k.value} is more than the {e.value} experts; each token picks k of them")
    return {"axis": axis.name, "features": size_hval(ax, axis), **vals}, (x,)


def _moe_params(a, ins):
    d, e, h = a["features"], a["experts"], a["hidden"]
    two_h = HVal(2 * int(h.value), X.binop("*", X.Const(2), h.expr))
    return (
        ParamSpec("gate.weight", (e, d), TORCH_WEIGHT, fan_in=int(d.value), inside=True),
        ParamSpec("experts.gate_up_proj", (e, two_h, d), FAN_IN_UNIFORM, fan_in=int(d.value), inside=True),
        ParamSpec("experts.down_proj", (e, d, h), FAN_IN_UNIFORM, fan_in=int(h.value), inside=True),
    )


def moe_routing(a: Attrs) -> tuple[int, int]:
    """(experts, k) of a MoE node: how many experts it holds and how many run per token."""
    return int(a["experts"].value), int(a["k"].value)


def moe_flops(a, ins, outs, env, *, dense: bool = False) -> int:
    """Routing (the router's matrix product, softmax and renormalisation) plus, per token, the
    k chosen SwiGLU experts (all of them when `dense`) and their weighted sum."""
    d, e, h, k = (int(a[n].value) for n in ("features", "experts", "hidden", "k"))
    tokens = numel(ins[0], env) // d
    routing = tokens * (2 * d * e + 5 * e + 2 * k)
    ran = e if dense else k
    expert = 2 * d * 2 * h + 2 * h * d + 4 * h  # gate_up, down, silu and the product
    return routing + tokens * ran * (expert + 2 * d)


register(
    OpDef(
        name="MoE",
        doc="A sparse mixture of SwiGLU experts (Mixtral's): a router scores the experts of each "
        "token (softmax over `experts`), the top `k` are kept and their weights renormalised to "
        "sum to 1, and only those k experts run: silu(x W1) * (x W3) W2, weighted and summed. "
        "Axes other than the feature axis are tokens. Parameters as transformers' "
        "MixtralSparseMoeBlock names them (`gate.weight`, `experts.gate_up_proj`, "
        "`experts.down_proj`); FLOPs count the k chosen experts only.",
        check=_moe_check,
        arity=1,
        learned=True,
        params=_moe_params,
        flops=moe_flops,
        kwargs=("experts", "k", "hidden"),
        takes=frozenset({"over"}),
        glyph="MoE",
        figure="router",
        example="MoE(x, over d, experts = 8, k = 2, hidden = 14336)",
        attrs=(
            AttrSpec("axis", "axis", doc="the feature axis; the other axes are tokens"),
            AttrSpec("features", "hval", doc="the size of the feature axis"),
            AttrSpec("experts", "hval", doc="how many experts"),
            AttrSpec("k", "hval", doc="how many experts each token runs"),
            AttrSpec("hidden", "hval", doc="the hidden size of each SwiGLU expert"),
        ),
    )
)


# ---- routed experts: the expert bank of a mixture whose routing the spec writes ----------------


def _experts_check(call: OpCall):
    x, w, idx = call.inputs
    axis = _one_axis(call)
    require_float("Experts", x)
    require_float("Experts", w)
    ax = require_axis("Experts", x, axis)
    if not ax.size.is_static:
        raise fail(f"Experts needs a fixed size for its feature axis '{axis.name}', found the run-time size {ax.size}")
    if idx.dtype not in INT_DTYPES:
        raise fail(f"Experts: the expert indices must be integers, found {idx}")
    if sorted(w.names) != sorted(idx.names):
        raise fail(f"Experts: the weights {w} must have the axes of the indices {idx}: weight i "
                   f"weighs the expert index i chooses")
    tokens = [a.name for a in x.axes if a.name != axis.name]
    extra = [a for a in idx.axes if a.name not in tokens]
    if len(extra) != 1 or sorted(a.name for a in idx.axes if a.name in tokens) != sorted(tokens):
        raise fail(f"Experts: the indices {idx} must have the token axes of {x} (all but "
                   f"'{axis.name}') and one more, the choices of each token")
    choice = extra[0]
    if choice.name == axis.name:
        raise fail(f"Experts: the choices' axis of the indices {idx} is the feature axis "
                   f"'{axis.name}'; rename it")
    for a in idx.axes:
        if a.name in tokens and a.size != x.axis(a.name).size:
            raise fail(f"Experts: axis '{a.name}' has size {a.size} in the indices {idx} and "
                       f"{x.axis(a.name).size} in {x}")
        if a.size != w.axis(a.name).size:
            raise fail(f"Experts: axis '{a.name}' has size {w.axis(a.name).size} in the weights {w} "
                       f"and {a.size} in the indices {idx}")
    if not choice.size.is_static:
        raise fail(f"Experts needs a fixed number of choices per token, found '{choice.name}' of "
                   f"the run-time size {choice.size}")
    vals = {}
    for key in ("experts", "hidden"):
        v = call.kw(key)
        if v is None:
            raise fail(f"Experts needs '{key} = N' (e.g. Experts(x, w, idx, over d, experts = 256, hidden = 2048))")
        as_int("Experts", key, v, minimum=1)
        vals[key] = v
    return {"axis": axis.name, "choice": choice.name, "features": size_hval(ax, axis),
            "k": size_hval(choice, None), **vals}, (x,)


def _experts_params(a, ins):
    d, e, h = a["features"], a["experts"], a["hidden"]
    two_h = HVal(2 * int(h.value), X.binop("*", X.Const(2), h.expr))
    return (
        ParamSpec("gate_up_proj", (e, two_h, d), FAN_IN_UNIFORM, fan_in=int(d.value), inside=True),
        ParamSpec("down_proj", (e, d, h), FAN_IN_UNIFORM, fan_in=int(h.value), inside=True),
    )


def experts_flops(a, ins, outs, env) -> int:
    """Per token, the k chosen SwiGLU experts and their weighted sum (the routing is the
    spec's own ops)."""
    d, h, k = (int(a[n].value) for n in ("features", "hidden", "k"))
    tokens = numel(ins[0], env) // d
    return tokens * k * (2 * d * 2 * h + 2 * h * d + 4 * h + 2 * d)


register(
    OpDef(
        name="Experts",
        doc="A bank of SwiGLU experts run sparsely on a routing the spec computes: each token runs "
        "the experts its indices `idx` choose, silu(x W1) * (x W3) W2, weighted by `w` and summed "
        "(`w` and `idx` have x's token axes and one axis of choices). The routed experts of "
        "DeepSeek-V3, whose router is written with top_k, gather and where. Parameters as "
        "transformers stores them (`gate_up_proj` [experts, 2 hidden, d], `down_proj` "
        "[experts, d, hidden]); FLOPs count the chosen experts only.",
        check=_experts_check,
        arity=3,
        learned=True,
        params=_experts_params,
        flops=experts_flops,
        kwargs=("experts", "hidden"),
        takes=frozenset({"over"}),
        glyph="experts",
        example="Experts(x, w, idx, over d, experts = 256, hidden = 2048)",
        attrs=(
            AttrSpec("axis", "axis", doc="the feature axis; the other axes of x are tokens"),
            AttrSpec("choice", "axis", doc="the axis of w and idx that lists each token's choices"),
            AttrSpec("features", "hval", doc="the size of the feature axis"),
            AttrSpec("k", "hval", doc="how many experts each token runs (the size of the choices' axis)"),
            AttrSpec("experts", "hval", doc="how many experts"),
            AttrSpec("hidden", "hval", doc="the hidden size of each SwiGLU expert"),
        ),
    )
)
