"""More elementwise maps: `sin`, `cos`, the activation functions with and without a
parameter (`softplus`, `elu`, `leaky_relu`, `relu6`, `hardtanh`, `hardswish`, `hardsigmoid`,
`mish`) and the learned `PReLU`."""

from __future__ import annotations

from nncircuit.ops.compare import elementwise_flops
from nncircuit.ops.registry import (
    AttrSpec,
    Attrs,
    OpCall,
    OpDef,
    Init,
    ParamSpec,
    as_float,
    fail,
    parse_init,
    register,
    require_axis,
    require_float,
    size_hval,
    static_size,
)
from nncircuit.types.tensor import HVal

PLAIN = {
    "sin": "sine",
    "cos": "cosine",
    "relu6": "min(max(x, 0), 6)",
    "hardswish": "x * relu6(x + 3) / 6",
    "hardsigmoid": "relu6(x + 3) / 6",
    "mish": "x * tanh(softplus(x))",
}


def _plain_check(call: OpCall):
    (t,) = call.inputs
    require_float(call.op, t)
    return {}, (t,)


for _name, _doc in PLAIN.items():
    register(
        OpDef(
            name=_name,
            doc=f"Elementwise {_doc}; every axis is carried.",
            check=_plain_check,
            attrs=(),
            arity=1,
            flops=elementwise_flops,
            glyph=_name,
            example=f"x |> {_name}",
        )
    )


# name -> (doc, {keyword: default})
WITH_PARAMETERS = {
    "softplus": ("log(1 + exp(beta x)) / beta; linear above `threshold` (as torch)",
                 {"beta": 1.0, "threshold": 20.0}),
    "elu": ("x for x > 0, else alpha (exp(x) - 1)", {"alpha": 1.0}),
    "leaky_relu": ("x for x >= 0, else slope x", {"slope": 0.01}),
    "hardtanh": ("x clamped to [min, max]", {"min": -1.0, "max": 1.0}),
}


def _param_check(call: OpCall):
    (t,) = call.inputs
    require_float(call.op, t)
    _, defaults = WITH_PARAMETERS[call.op]
    attrs = {}
    for key, default in defaults.items():
        v = call.kw(key)
        value = as_float(call.op, key, v) if v is not None else default
        attrs[key] = value
    if call.op == "softplus" and attrs["beta"] <= 0:
        raise fail(f"softplus: beta must be positive, found {attrs['beta']}")
    if call.op == "hardtanh" and attrs["min"] > attrs["max"]:
        raise fail(f"hardtanh: min = {attrs['min']} is larger than max = {attrs['max']}")
    return attrs, (t,)


for _name, (_doc, _defaults) in WITH_PARAMETERS.items():
    _kw = ", ".join(f"{k} = {v!r}" for k, v in _defaults.items())
    register(
        OpDef(
            name=_name,
            doc=f"Elementwise {_doc}; defaults {_kw}.",
            check=_param_check,
            attrs=tuple(AttrSpec(k, "float", doc=f"default {v!r}") for k, v in _defaults.items()),
            arity=1,
            kwargs=tuple(_defaults),
            flops=elementwise_flops,
            glyph=_name,
            example=f"x |> {_name}({_kw})",
        )
    )


# ---- learned -------------------------------------------------------------------------------


def _prelu_check(call: OpCall):
    (t,) = call.inputs
    require_float("PReLU", t)
    # the starting slope: init = constant(V), as every op's init (torch's nn.PReLU: 0.25)
    init = parse_init("PReLU", "init", call.kw("init"), ndim=1) or Init("constant", (HVal.const(0.25),))
    if init.kind != "constant":
        raise fail(f"PReLU: init is the starting slope, init = constant(V); found {init}")
    if call.over is None:
        return {"axis": None, "num": HVal.const(1), "init": init}, (t,)
    if len(call.over) != 1:
        raise fail("PReLU takes at most one axis, the one with a slope each: PReLU(x, over c)")
    (spec,) = call.over
    ax = require_axis("PReLU", t, spec)
    static_size("PReLU", ax)
    return {"axis": spec.name, "num": size_hval(ax, spec), "init": init}, (t,)


def _prelu_params(a: Attrs, ins):
    return (ParamSpec("weight", (a["num"],), a["init"]),)


register(
    OpDef(
        name="PReLU",
        doc="Elementwise x for x >= 0, else a learned slope times x: one slope (`PReLU(x)`) or "
        "one per position of an axis (`PReLU(x, over c)`), starting at `init = constant(V)` (0.25).",
        check=_prelu_check,
        attrs=(
            AttrSpec("axis", "axis", default=None, optional=True, doc="the axis with a slope per position (None: one slope)"),
            AttrSpec("num", "hval", doc="the number of slopes"),
            AttrSpec("init", "init", doc="the starting slope, constant(V)"),
        ),
        arity=1,
        learned=True,
        params=_prelu_params,
        kwargs=("init",),
        takes=frozenset({"over"}),
        flops=elementwise_flops,
        glyph="PReLU",
        example="PReLU(x, over c)",
    )
)
