"""The normalisations over channel groups and spatial axes: `GroupNorm` and `InstanceNorm`,
equal to torch.nn.GroupNorm and torch.nn.InstanceNorm1d/2d/3d (parameters `weight` and
`bias`, as torch names them, so that their state_dicts load)."""

from __future__ import annotations

import math

from nncircuit.ops.nn import _chosen, _positive_eps
from nncircuit.ops.registry import (
    ONES,
    ZEROS,
    AttrSpec,
    Attrs,
    OpCall,
    OpDef,
    ParamSpec,
    as_bool,
    as_int,
    fail,
    numel,
    over_names,
    parse_init,
    register,
    require_axis,
    require_float,
    size_hval,
    static_size,
)
from nncircuit.types import expr as X
from nncircuit.types.tensor import HVal


def _flops(attrs, ins, outs, env) -> int:
    return 5 * numel(outs[0], env)


def _affine_attrs(op: str, call: OpCall, default_affine: bool) -> dict:
    attrs = {
        "eps": _positive_eps(op, call.kw("eps", 1e-5)),
        "affine": as_bool(op, "affine", call.kw("affine", default_affine)),
        "init": parse_init(op, "init", call.kw("init"), ndim=1),
        "bias_init": parse_init(op, "bias_init", call.kw("bias_init"), ndim=1),
    }
    if (attrs["init"] or attrs["bias_init"]) is not None and not attrs["affine"]:
        raise fail(f"{op}: affine = false has no parameters to initialise")
    return attrs


def _params(a: Attrs, ins):
    if not a["affine"]:
        return ()
    w, wx = _chosen(a["init"], ONES)
    b, bx = _chosen(a["bias_init"], ZEROS)
    return (ParamSpec("weight", (a["num"],), w, explicit=wx), ParamSpec("bias", (a["num"],), b, explicit=bx))


def _groupnorm_check(call: OpCall):
    (t,) = call.inputs
    require_float("GroupNorm", t)
    scalars = tuple(call.kw("scalars", ()))
    if len(scalars) != 1:
        raise fail("GroupNorm needs its number of groups: GroupNorm(x, 8, over c)")
    ((_, groups),) = scalars
    groups = groups if isinstance(groups, HVal) else HVal.const(groups)
    g = as_int("GroupNorm", "the number of groups", groups, minimum=1)
    specs = call.over
    if not specs:
        raise fail("GroupNorm needs its channel axis: GroupNorm(x, 8, over c)")
    names = over_names("GroupNorm", call)
    for s in specs:
        require_axis("GroupNorm", t, s)
    channel = names[0]
    ax = t.axis(channel)
    c = static_size("GroupNorm", ax)
    # `over c`: the axes after c are its spatial axes, as torch's (N, C, *); `over [c, h, w]` names them
    spatial = tuple(names[1:]) if len(names) > 1 else t.names[t.index(channel) + 1:]
    num = size_hval(ax, specs[0])
    X.note(X.binop("==", X.binop("%", num.expr, groups.expr), X.Const(0)), "GroupNorm: ", ("e", groups.expr),
           f" groups do not divide the channel axis '{channel}' of size ", ("e", num.expr))
    if c % g:
        raise fail(f"GroupNorm: {g} groups do not divide the channel axis '{channel}' of size {c}")
    # a group of one element normalises to its bias whatever the input (torch returns rounding
    # noise amplified by 1/sqrt(eps)): refused as InstanceNorm over one element is
    rest = [t.axis(n) for n in spatial]
    codes = [a.size_code() for a in rest]
    if all(code is not None for code in codes):
        X.note(X.binop(">", X.product([num.expr, *codes]), groups.expr),
               "GroupNorm needs more than one element per group: ", ("e", groups.expr),
               f" groups of the channel axis '{channel}' of size ", ("e", num.expr))
    if all(a.size.is_static for a in rest) and c // g * math.prod(a.size.value for a in rest) == 1:
        raise fail(f"GroupNorm needs more than one element per group: {g} groups of the channel axis "
                   f"'{channel}' of size {c}" + (f" and the axes {', '.join(spatial)}" if spatial else ", no spatial axes"))
    attrs = {"channel": channel, "spatial": spatial, "groups": groups, "num": num}
    attrs.update(_affine_attrs("GroupNorm", call, True))
    return attrs, (t,)


register(
    OpDef(
        name="GroupNorm",
        doc="Splits the channel axis into groups and normalises each group together with the "
        "spatial axes, then scales and shifts per channel: torch.nn.GroupNorm. `over c` takes "
        "the axes after c as the spatial axes (torch's (N, C, *) layout); `over [c, h, w]` "
        "names them.",
        check=_groupnorm_check,
        arity=1,
        learned=True,
        params=_params,
        flops=_flops,
        kwargs=("eps", "affine", "init", "bias_init"),
        takes=frozenset({"over", "scalars"}),
        figure="circle",
        glyph="○",
        example="GroupNorm(x, 8, over [c, h, w])",
        attrs=(
            AttrSpec("channel", "axis", doc="the channel axis, cut into groups"),
            AttrSpec("spatial", "axes", doc="the axes normalised with each group"),
            AttrSpec("groups", "hval", doc="the number of groups"),
            AttrSpec("num", "hval", doc="the channel axis' size (the parameters' length)"),
            AttrSpec("eps", "float", default=1e-5, doc="added to the variance"),
            AttrSpec("affine", "bool", default=True, doc="learned weight and bias per channel"),
            AttrSpec("init", "init", default=None, optional=True, doc="the weight's initialisation"),
            AttrSpec("bias_init", "init", default=None, optional=True, doc="the bias' initialisation"),
        ),
    )
)


def _instancenorm_check(call: OpCall):
    (t,) = call.inputs
    require_float("InstanceNorm", t)
    names = over_names("InstanceNorm", call)
    if not 1 <= len(names) <= 3:
        raise fail(f"InstanceNorm normalises over one to three spatial axes, found {len(names)}")
    spatial = [require_axis("InstanceNorm", t, s) for s in call.over or ()]
    # torch refuses a single element (its statistics would be one value's), in eval mode too
    codes = [a.size_code() for a in spatial]
    if all(c is not None for c in codes):
        X.note(X.binop(">", X.product(codes), X.Const(1)),
               "InstanceNorm needs more than one element to normalise over; its axes hold ",
               ("e", X.product(codes)))
    if all(a.size.is_static for a in spatial) and math.prod(a.size.value for a in spatial) == 1:
        raise fail(f"InstanceNorm needs more than one element to normalise over; the axes "
                   f"{', '.join(names)} of {t} hold one")
    attrs = _affine_attrs("InstanceNorm", call, False)
    channel = call.kw("channel")
    if channel is not None and not isinstance(channel, str):
        raise fail("InstanceNorm: channel names an axis: channel = c")
    if attrs["affine"] and channel is None:
        raise fail("InstanceNorm: affine = true needs the channel axis its weights lie along: "
                   "InstanceNorm(x, over [h, w], affine = true, channel = c)")
    num = None
    if channel is not None:
        if channel in names:
            raise fail(f"InstanceNorm: the channel axis '{channel}' is also a spatial axis")
        if not t.has(channel):
            raise fail(f"InstanceNorm expects an axis '{channel}' but the input is {t}")
        ax = t.axis(channel)
        static_size("InstanceNorm", ax)
        num = size_hval(ax, None)
    attrs.update({"spatial": names, "channel": channel, "num": num})
    return attrs, (t,)


register(
    OpDef(
        name="InstanceNorm",
        doc="Normalises each instance over the named spatial axes (to zero mean, unit variance): "
        "torch.nn.InstanceNorm1d/2d/3d without running statistics. `affine = true` adds a weight "
        "and bias per channel, whose axis `channel = c` names.",
        check=_instancenorm_check,
        arity=1,
        learned=True,
        params=_params,
        flops=_flops,
        kwargs=("eps", "affine", "channel", "init", "bias_init"),
        takes=frozenset({"over"}),
        figure="circle",
        glyph="○",
        example="InstanceNorm(x, over [h, w])",
        attrs=(
            AttrSpec("spatial", "axes", doc="the axes normalised over"),
            AttrSpec("channel", "axis", default=None, optional=True, doc="the channel axis (affine only)"),
            AttrSpec("num", "hval", default=None, optional=True, doc="the channel axis' size"),
            AttrSpec("eps", "float", default=1e-5, doc="added to the variance"),
            AttrSpec("affine", "bool", default=False, doc="learned weight and bias per channel"),
            AttrSpec("init", "init", default=None, optional=True, doc="the weight's initialisation"),
            AttrSpec("bias_init", "init", default=None, optional=True, doc="the bias' initialisation"),
        ),
    )
)
