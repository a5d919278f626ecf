"""Comparisons, logic and selection: `< <= > >= == !=` (bool results, axes matched by name as
for `+`), `and`/`or`/`not` on bool tensors, `where`, two-tensor `minimum`/`maximum`, `clamp`,
and the rounding maps `floor`, `ceil`, `round`, `sign`."""

from __future__ import annotations

import math

from nncircuit.ops.registry import (
    SCALAR_ATTRS,
    AttrSpec,
    OpCall,
    OpDef,
    as_float,
    broadcast,
    fail,
    numel,
    register,
    require_float,
)
from nncircuit.types.tensor import HVal, TensorType

INTEGER_DTYPES = ("int64", "int32", "bool")

# how to write an outer broadcast on purpose, for the error that refuses an implicit one
OUTER_HINT = "it with add(a, b, outer = true) first, then compare or select"


def elementwise_flops(attrs, ins, outs, env) -> int:
    """One operation per element of the result."""
    return numel(outs[0], env)


def _is_number(v) -> bool:
    return isinstance(v, HVal) and isinstance(v.value, (int, float)) and not isinstance(v.value, bool)


def _with_scalar(op: str, t: TensorType, scalar: HVal) -> str:
    """The dtype a tensor is computed in next to a number: a float number makes an integer or
    bool tensor float32 (as torch promotes `int_tensor < 0.5`)."""
    if isinstance(scalar.value, float) and t.dtype in INTEGER_DTYPES:
        return "float32"
    return t.dtype


# ---- comparisons ---------------------------------------------------------------------------

COMPARE = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!="}


def _compare_check(call: OpCall):
    sym = COMPARE[call.op]
    scalar = call.kw("scalar")
    if scalar is not None:
        (t,) = call.inputs
        if not _is_number(scalar):
            raise fail(f"cannot compare a tensor with {scalar.value!r} using '{sym}'")
        if isinstance(scalar.value, float) and math.isnan(scalar.value):
            raise fail(f"'{sym}' with NaN is never true; compare with a number")
        computed = _with_scalar(sym, t, scalar)
        return {"scalar": scalar, "side": call.kw("side", "right"), "dtype": computed}, (t.with_dtype("bool"),)
    a, b = call.inputs
    out = broadcast(f"'{sym}'", a, b, outer=False, explicit=OUTER_HINT)
    return {"dtype": out.dtype}, (out.with_dtype("bool"),)


for _name, _sym in COMPARE.items():
    register(
        OpDef(
            name=_name,
            doc=f"Elementwise `a {_sym} b`, a bool tensor. Axes are matched by name as for `+`; "
            "one side may be a number (`inf` and `-inf` too).",
            check=_compare_check,
            attrs=SCALAR_ATTRS + (AttrSpec("dtype", "dtype", doc="the dtype the two sides are compared in"),),
            arity=None,
            flops=elementwise_flops,
            glyph=_sym,
            example=f"x {_sym} y",
        )
    )


# ---- logic ---------------------------------------------------------------------------------

LOGIC = {"logical_and": "and", "logical_or": "or"}


def _require_bool(word: str, t: TensorType):
    if t.dtype != "bool":
        raise fail(
            f"'{word}' needs bool tensors, found {t}; compare first (e.g. 'x > 0') "
            "or cast(x, to = \"bool\")"
        )


def _logic_check(call: OpCall):
    word = LOGIC[call.op]
    if call.kw("scalar") is not None or len(call.inputs) != 2:
        raise fail(f"'{word}' joins two bool tensors, not a tensor and a number")
    a, b = call.inputs
    _require_bool(word, a)
    _require_bool(word, b)
    return {}, (broadcast(f"'{word}'", a, b, outer=False, explicit=OUTER_HINT),)


for _name, _word in LOGIC.items():
    register(
        OpDef(
            name=_name,
            doc=f"Elementwise `a {_word} b` of two bool tensors, axes matched by name.",
            check=_logic_check,
            attrs=(),
            arity=None,
            flops=elementwise_flops,
            glyph=_word,
            example=f"(x > 0) {_word} m",
        )
    )


def _not_check(call: OpCall):
    (t,) = call.inputs
    _require_bool("not", t)
    return {}, (t,)


register(
    OpDef(
        name="logical_not",
        doc="Elementwise `not m` of a bool tensor.",
        check=_not_check,
        attrs=(),
        arity=1,
        flops=elementwise_flops,
        glyph="not",
        example="not m",
    )
)


# ---- selection -----------------------------------------------------------------------------


def positional_slots(call: OpCall, n: int, what: str) -> list:
    """The op's `n` operands in the order written, each a tensor type or a number: numbers
    stand where the call wrote them (`scalars`: (position, HVal) pairs), tensors fill the rest."""
    scalars = {  # as the IR text reads them back too: positions and numbers as values
        int(getattr(k, "value", k)): v if isinstance(v, HVal) else HVal.const(v)
        for k, v in call.kw("scalars", ())
    }
    if len(call.inputs) + len(scalars) != n:
        raise fail(f"{what}, found {len(call.inputs) + len(scalars)} argument(s)")
    tensors = iter(call.inputs)
    out: list[HVal | TensorType] = []
    for i in range(n):
        if i in scalars:
            v = scalars[i]
            if not _is_number(v):
                raise fail(f"{what}; argument {i + 1} is {v.value!r}")
            if isinstance(v.value, float) and math.isnan(v.value):
                raise fail(f"{what}; argument {i + 1} is NaN")
            out.append(v)
        else:
            out.append(next(tensors))
    return out


def _values_type(op: str, vals: list) -> TensorType | None:
    """The result type of values that are tensors or numbers, broadcast by name."""
    tensors = [v for v in vals if isinstance(v, TensorType)]
    if not tensors:
        return None
    out = tensors[0]
    for t in tensors[1:]:
        out = broadcast(op, out, t, outer=False, explicit=OUTER_HINT)
    for v in vals:
        if isinstance(v, HVal):
            out = out.with_dtype(_with_scalar(op, out, v))
    return out


# where, minimum and maximum record which of their operands are numbers
SCALARS_ATTRS = (
    AttrSpec("scalars", "any", default=(), doc="(position, HVal) for each operand that is a number"),
)


def _scalar_attrs(vals: list) -> tuple:
    return tuple((i, v) for i, v in enumerate(vals) if isinstance(v, HVal))


def _where_check(call: OpCall):
    cond, a, b = positional_slots(call, 3, "where takes a bool condition and two values: where(m, a, b)")
    if not isinstance(cond, TensorType):
        raise fail("where: the condition must be a bool tensor, found a number")
    _require_bool("where", cond)
    values = _values_type("where", [a, b])
    if values is None:
        raise fail("where: at least one of the two values must be a tensor")
    out = broadcast("where", values, cond, outer=False, explicit=OUTER_HINT).with_dtype(values.dtype)
    return {"scalars": _scalar_attrs([cond, a, b])}, (out,)


register(
    OpDef(
        name="where",
        doc="Elementwise `a` where the bool tensor `m` holds, else `b`; all three are matched by "
        "name and a value may be a number. A select, not arithmetic: `where(m, e, -inf)` has no "
        "NaN where `e` is finite.",
        check=_where_check,
        attrs=SCALARS_ATTRS,
        arity=None,
        takes=frozenset({"scalars"}),
        flops=elementwise_flops,
        glyph="?:",
        example="where(adj, e, -inf)",
    )
)


def _minmax_check(call: OpCall):
    vals = positional_slots(call, 2, f"{call.op} takes two values: {call.op}(a, b)")
    out = _values_type(call.op, vals)
    if out is None:
        raise fail(f"{call.op}: at least one of the two values must be a tensor")
    return {"scalars": _scalar_attrs(vals)}, (out,)


for _name, _doc in (("minimum", "smaller"), ("maximum", "larger")):
    register(
        OpDef(
            name=_name,
            doc=f"Elementwise the {_doc} of two values, matched by name; one may be a number. "
            f"(`{_name[:3]}(x, over a)` is the reduction.)",
            check=_minmax_check,
            attrs=SCALARS_ATTRS,
            arity=None,
            takes=frozenset({"scalars"}),
            flops=elementwise_flops,
            glyph=_name[:3],
            example=f"{_name}(x, y)",
        )
    )


def _clamp_check(call: OpCall):
    (t,) = call.inputs
    lo, hi = call.kw("min"), call.kw("max")
    if lo is None and hi is None:
        raise fail("clamp needs min, max or both: clamp(x, min = 0, max = 6)")
    for name, v in (("min", lo), ("max", hi)):
        if v is not None:
            as_float("clamp", name, v)
            if math.isnan(float(v.value)):
                raise fail(f"clamp: {name} is NaN")
            if isinstance(v.value, float) and t.dtype in INTEGER_DTYPES:
                raise fail(f"clamp: {name} = {v.value!r} is a float but the input {t} is not")
    if t.dtype == "bool":
        raise fail(f"clamp needs a numeric tensor, found {t}")
    if lo is not None and hi is not None and float(lo.value) > float(hi.value):
        raise fail(f"clamp: min = {lo.value!r} is larger than max = {hi.value!r}")
    return {"min": lo, "max": hi}, (t,)


register(
    OpDef(
        name="clamp",
        doc="Limits every element to [min, max] (either may be left out).",
        check=_clamp_check,
        attrs=(
            AttrSpec("min", "hval", default=None, optional=True, doc="the lower bound (None: none)"),
            AttrSpec("max", "hval", default=None, optional=True, doc="the upper bound (None: none)"),
        ),
        arity=1,
        kwargs=("min", "max"),
        flops=elementwise_flops,
        glyph="clamp",
        example="clamp(x, min = -1, max = 1)",
    )
)


# ---- rounding ------------------------------------------------------------------------------

ROUNDING = {
    "floor": "the largest integer not above x",
    "ceil": "the smallest integer not below x",
    "round": "the nearest integer, halves to even (as torch and ONNX)",
    "sign": "-1, 0 or 1 by the sign of x (sign(0) = 0)",
}


def _float_map_check(call: OpCall):
    (t,) = call.inputs
    require_float(call.op, t)
    return {}, (t,)


for _name, _doc in ROUNDING.items():
    register(
        OpDef(
            name=_name,
            doc=f"Elementwise {_doc}; every axis is carried.",
            check=_float_map_check,
            attrs=(),
            arity=1,
            flops=elementwise_flops,
            glyph=_name,
            example=f"x |> {_name}",
        )
    )
