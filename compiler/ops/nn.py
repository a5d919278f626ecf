"""Learned primitives (capitalised: they own parameters) and the spatial ops that go with
them: Linear, Embedding, norms, convolutions, pooling, free parameters."""

from __future__ import annotations

import math
from dataclasses import dataclass

from nncircuit.ops.registry import (
    AttrSpec,
    FAN_IN_UNIFORM,
    ONES,
    STD_NORMAL,
    TORCH_WEIGHT,
    ZEROS,
    Attrs,
    OpCall,
    OpDef,
    ParamSpec,
    as_bool,
    as_float,
    float_attr,
    as_int,
    fail,
    new_axis,
    numel,
    over_names,
    over_specs,
    new_size,
    init_of,
    positional_axes,
    parse_init,
    product_hval,
    register,
    replace_axes,
    require_axis,
    require_float,
    size_hval,
    static_size,
)
from nncircuit.types.sizes import Size
from nncircuit.types import expr as X
from nncircuit.types.tensor import Axis, HVal, TensorType

# ---- Linear --------------------------------------------------------------------------------


def _linear_check(call: OpCall):
    (t,) = call.inputs
    require_float("Linear", t)
    if call.src is None or call.dst is None:
        raise fail("Linear needs 'IN -> OUT' axes, e.g. Linear(d -> hidden)")
    in_sizes = []
    for s in call.src:
        ax = require_axis("Linear", t, s)
        static_size("Linear", ax)
        in_sizes.append(size_hval(ax, s))
    outs = tuple(new_axis("Linear", s) for s in call.dst)
    out_type = replace_axes(t, tuple(s.name for s in call.src), outs)
    bias = as_bool("Linear", "bias", call.kw("bias", True))
    tied = call.kw("tied")
    attrs = {
        "in_axes": tuple(s.name for s in call.src),
        "out_axes": outs,
        "in_features": product_hval(tuple(in_sizes)),
        "out_features": product_hval(tuple(new_size("Linear", s) for s in call.dst)),
        "out_sizes": tuple(s.size for s in call.dst),
        "bias": bias,
        "tied": tied,
        "init": parse_init("Linear", "init", call.kw("init"), ndim=2),
        "bias_init": parse_init("Linear", "bias_init", call.kw("bias_init"), ndim=1),
    }
    if tied is not None and attrs["init"] is not None:
        raise fail("Linear: a tied Linear has no weight of its own to initialise; drop init")
    if not bias and attrs["bias_init"] is not None:
        raise fail("Linear: bias_init given but bias = false")
    return attrs, (out_type,)


def _chosen(given, default):
    """(init, explicit): the spec's choice, else the op's PyTorch default."""
    return (given, True) if given is not None else (default, False)


def _linear_params(a: Attrs, ins):
    fan_in = int(a["in_features"].value)
    out = []
    if a["tied"] is None:
        w, wx = _chosen(a["init"], TORCH_WEIGHT)
        out.append(ParamSpec("weight", (a["out_features"], a["in_features"]), w, fan_in=fan_in, explicit=wx))
    if a["bias"]:
        # a tied Linear's bias is a bare nn.Parameter made as zeros
        b, bx = _chosen(a["bias_init"], FAN_IN_UNIFORM if a["tied"] is None else ZEROS)
        out.append(ParamSpec("bias", (a["out_features"],), b, fan_in=fan_in, explicit=bx))
    return tuple(out)


@dataclass(frozen=True)
class LinearAttrs:
    """Linear's attributes, typed: what the passes and backends that look inside one read."""

    in_axes: tuple[str, ...]
    out_axes: tuple[Axis, ...]
    in_features: HVal
    out_features: HVal
    out_sizes: tuple[HVal, ...]
    bias: bool
    tied: str | None


def linear_attrs(a: Attrs) -> LinearAttrs:
    """The typed attributes of a Linear node."""
    return LinearAttrs(a["in_axes"], a["out_axes"], a["in_features"], a["out_features"], a["out_sizes"],
                       a["bias"], a["tied"])


def _linear_note(a: Attrs) -> str:
    return f"tied to {a['tied']}" if a["tied"] else ""


def _linear_flops(a, ins, outs, env):
    return 2 * numel(outs[0], env) * int(a["in_features"].value)


register(
    OpDef(
        name="Linear",
        doc="Affine map from the IN axes to the OUT axes; other axes are carried. "
        "`bias = false` drops the bias; `tied = E` reuses the weight of Embedding E.",
        check=_linear_check,
        attrs=(
            AttrSpec("in_axes", "axes", doc="the axes contracted"),
            AttrSpec("out_axes", "axis_defs", doc="the axes made"),
            AttrSpec("in_features", "hval", doc="the product of the in axes' sizes"),
            AttrSpec("out_features", "hval", doc="the product of the out axes' sizes"),
            AttrSpec("out_sizes", "hvals", doc="the out axes' sizes, as the call gives them"),
            AttrSpec("bias", "bool"),
            AttrSpec("tied", "str", default=None, optional=True, doc="the Embedding module whose weight it reuses"),
        AttrSpec("init", "init", default=None, optional=True, doc="the weight's initialisation, if the spec chose one"),
        AttrSpec("bias_init", "init", default=None, optional=True, doc="the bias's initialisation, if the spec chose one"),
        ),
        arity=1,
        learned=True,
        params=_linear_params,
        flops=_linear_flops,
        kwargs=("bias", "tied", "init", "bias_init"),
        takes=frozenset({"map"}),
        glyph="L",
        note=_linear_note,
        ties=lambda a: a["tied"],
        tied_shape=lambda a: (a["out_features"], a["in_features"]),
        example="x |> Linear(d -> [heads, dh])",
    )
)


# ---- Embedding -----------------------------------------------------------------------------


def _embedding_check(call: OpCall):
    (t,) = call.inputs
    if t.dtype not in ("int64", "int32"):
        raise fail(f"Embedding needs integer ids, found {t}")
    if call.src is None or call.dst is None or len(call.src) != 1 or len(call.dst) != 1:
        raise fail("Embedding needs 'vocab -> d', e.g. Embedding(vocab -> d)")
    (src,), (dst,) = call.src, call.dst
    if src.size is None:
        raise fail(f"Embedding: the number of entries '{src.name}' is unknown; write '{src.name}: N'")
    as_int("Embedding", "the number of entries", src.size, minimum=1)
    out = new_axis("Embedding", dst)
    if t.has(out.name):
        raise fail(f"Embedding: the ids {t} already have an axis '{out.name}'")
    attrs = {"num": src.size, "out_axis": out, "dim": dst.size,
             "init": parse_init("Embedding", "init", call.kw("init"), ndim=2)}
    return attrs, (TensorType(t.axes + (out,), "float32"),)


def embedding_rows(a: Attrs) -> HVal:
    """The number of entries of an Embedding node's table."""
    return a["num"]


register(
    OpDef(
        name="Embedding",
        doc="A lookup table: integer ids of any axes in, one new axis of vectors out. "
        "An id outside 0 .. N-1 (a negative one too) is an error in every backend.",
        check=_embedding_check,
        attrs=(
            AttrSpec("num", "hval", doc="the number of entries"),
            AttrSpec("out_axis", "axis_def", doc="the axis of the vectors"),
            AttrSpec("dim", "hval", doc="the vectors' size"),
            AttrSpec("init", "init", default=None, optional=True, doc="the table's initialisation, if the spec chose one"),
        ),
        arity=1,
        learned=True,
        params=lambda a, ins: (
            ParamSpec("weight", (a["num"], a["dim"]), a["init"] or STD_NORMAL, explicit=a["init"] is not None),
        ),
        kwargs=("init",),
        takes=frozenset({"map"}),
        glyph="E",
        example="tokens |> Embedding(vocab -> d)",
    )
)


# ---- normalisation ---------------------------------------------------------------------------


def _positive_eps(op: str, v):
    """eps keeps the divisor away from zero: zero or a negative one gives inf or NaN outputs.
    A float, or an HVal that keeps the hyperparameter expression (see float_attr)."""
    if isinstance(v, HVal):
        X.note(X.binop(">", v.expr, X.Const(0)), f"{op}: eps must be a positive number, found ", ("r", v.expr))
    eps = as_float(op, "eps", v)
    if not eps > 0:
        raise fail(f"{op}: eps must be a positive number, found {eps:g}")
    return float_attr(op, "eps", v)


def _norm_check(call: OpCall):
    (t,) = call.inputs
    require_float(call.op, t)
    names = over_names(call.op, call)
    affine = as_bool(call.op, "affine", call.kw("affine", True))
    sizes = []
    for s in over_specs(call.op, call):
        ax = require_axis(call.op, t, s)
        if not ax.size.is_static and not affine:
            continue  # no weights to size: it normalises over whatever length comes at run time
        if not ax.size.is_static:
            raise fail(f"{call.op} over the run-time axis '{ax.name}' ({ax.size}) has no fixed size for "
                       "its weights; write affine = false to normalise without them")
        sizes.append(size_hval(ax, s))
    default_eps = 1e-5 if call.op == "LayerNorm" else 1e-6
    attrs = {
        "axes": names,
        # the weights' shape; () when an axis is run-time (affine = false)
        "shape": tuple(sizes) if len(sizes) == len(names) else (),
        "eps": _positive_eps(call.op, call.kw("eps", default_eps)),
        "affine": affine,
        "bias": as_bool(call.op, "bias", call.kw("bias", call.op == "LayerNorm")),
        "init": parse_init(call.op, "init", call.kw("init"), ndim=len(sizes)),
        "bias_init": parse_init(call.op, "bias_init", call.kw("bias_init"), ndim=len(sizes)),
    }
    if (attrs["init"] or attrs["bias_init"]) is not None and not attrs["affine"]:
        raise fail(f"{call.op}: affine = false has no parameters to initialise")
    if attrs["bias_init"] is not None and not attrs["bias"]:
        raise fail(f"{call.op}: bias_init given but the norm has no bias")
    return attrs, (t,)


def _norm_params(a: Attrs, ins):
    if not a["affine"]:
        return ()
    w, wx = _chosen(a["init"], ONES)
    out = [ParamSpec("weight", a["shape"], w, explicit=wx)]
    if a["bias"]:
        b, bx = _chosen(a["bias_init"], ZEROS)
        out.append(ParamSpec("bias", a["shape"], b, explicit=bx))
    return tuple(out)


for _name, _doc in (
    ("LayerNorm", "Normalises over the named axes to zero mean and unit variance, then scales and shifts."),
    ("RMSNorm", "Divides by the root mean square over the named axes, then scales."),
):
    register(
        OpDef(
            name=_name,
            doc=_doc,
            check=_norm_check,
            attrs=(
                AttrSpec("axes", "axes", doc="the axes normalised over"),
                AttrSpec("shape", "hvals", doc="their sizes"),
                AttrSpec("eps", "float"),
                AttrSpec("affine", "bool", doc="learned scale (and shift)"),
                AttrSpec("bias", "bool", doc="learned shift"),
            AttrSpec("init", "init", default=None, optional=True, doc="the weight's initialisation, if the spec chose one"),
            AttrSpec("bias_init", "init", default=None, optional=True, doc="the bias's initialisation, if the spec chose one"),
            ),
            arity=1,
            learned=True,
            params=_norm_params,
            kwargs=("eps", "affine", "bias", "init", "bias_init"),
            takes=frozenset({"over"}),
            figure="circle",
            glyph="○",
            example=f"{_name}(x, over d)",
        )
    )


def _batchnorm_check(call: OpCall):
    (t,) = call.inputs
    require_float("BatchNorm", t)
    if len(call.positional) != 1:
        raise fail("BatchNorm takes the feature axis: BatchNorm(c)")
    (spec,) = positional_axes("BatchNorm", call)
    ax = require_axis("BatchNorm", t, spec)
    static_size("BatchNorm", ax)
    attrs = {
        "axis": spec.name,
        "num": size_hval(ax, spec),
        "eps": _positive_eps("BatchNorm", call.kw("eps", 1e-5)),
        "momentum": as_float("BatchNorm", "momentum", call.kw("momentum", 0.1)),
        "init": parse_init("BatchNorm", "init", call.kw("init"), ndim=1),
        "bias_init": parse_init("BatchNorm", "bias_init", call.kw("bias_init"), ndim=1),
    }
    return attrs, (t,)


register(
    OpDef(
        name="BatchNorm",
        doc="Per-feature normalisation with batch statistics (running averages in eval mode); "
        "the statistics are taken over every axis but the feature axis.",
        check=_batchnorm_check,
        attrs=(
            AttrSpec("axis", "axis", doc="the feature axis"),
            AttrSpec("num", "hval", doc="its size"),
            AttrSpec("eps", "float"),
            AttrSpec("momentum", "float"),
        AttrSpec("init", "init", default=None, optional=True, doc="the weight's initialisation, if the spec chose one"),
        AttrSpec("bias_init", "init", default=None, optional=True, doc="the bias's initialisation, if the spec chose one"),
        ),
        arity=1,
        learned=True,
        params=lambda a, ins: (
            ParamSpec("weight", (a["num"],), a["init"] or ONES, explicit=a["init"] is not None),
            ParamSpec("bias", (a["num"],), a["bias_init"] or ZEROS, explicit=a["bias_init"] is not None),
            ParamSpec("running_mean", (a["num"],), ZEROS, buffer=True),
            ParamSpec("running_var", (a["num"],), ONES, buffer=True),
        ),
        kwargs=("eps", "momentum", "init", "bias_init"),
        positional=("axis",),
        traits=frozenset({"stateful"}),
        figure="circle",
        glyph="○",
        example="BatchNorm(x, c)",
    )
)


# ---- convolution and pooling ---------------------------------------------------------------


def _tuple_arg(op, name, v, n, default, *, minimum=0):
    """An int argument for each spatial axis: one value for all, or a tuple of n."""
    if v is None:
        v = default
    vals = v if isinstance(v, tuple) else (v,) * n
    if len(vals) != n:
        raise fail(f"{op}: {name} needs {n} values (one per spatial axis), found {len(vals)}")
    out = []
    for x in vals:
        if not isinstance(x, HVal):
            x = HVal.const(x)
        as_int(op, name, x, minimum=minimum)
        out.append(x)
    return tuple(out)


def _spatial(op: str, call: OpCall, t: TensorType):
    names = over_names(op, call)
    if not 1 <= len(names) <= 3:
        raise fail(f"{op} works over 1 to 3 spatial axes, found {len(names)}")
    for s in over_specs(op, call):
        require_axis(op, t, s)
    return names


def _conv_out(size: Size, k: int, s: int, p: int, d: int) -> Size:
    return (size + 2 * p - d * (k - 1) - 1).floordiv(s) + 1


def _conv_out_code(a: Axis, k: HVal, s: HVal, p: HVal, d: HVal) -> X.Expr | None:
    """The output size of a static spatial axis as an expression: (n + 2p - d(k - 1) - 1) // s + 1."""
    n = a.size_code()
    if n is None:
        return None
    span = X.binop("*", d.expr, X.binop("-", k.expr, X.Const(1)))
    inner = X.binop("-", X.binop("-", X.binop("+", n, X.binop("*", X.Const(2), p.expr)), span), X.Const(1))
    return X.binop("+", X.binop("//", inner, s.expr), X.Const(1))


def _convt_out_code(a: Axis, k: HVal, s: HVal, p: HVal, d: HVal, op_: HVal) -> X.Expr | None:
    """(n - 1) s - 2p + d(k - 1) + output_padding + 1."""
    n = a.size_code()
    if n is None:
        return None
    out = X.binop("*", X.binop("-", n, X.Const(1)), s.expr)
    out = X.binop("-", out, X.binop("*", X.Const(2), p.expr))
    out = X.binop("+", out, X.binop("*", d.expr, X.binop("-", k.expr, X.Const(1))))
    return X.binop("+", X.binop("+", out, op_.expr), X.Const(1))


def _note_size(code, op: str, what: str, *pieces):
    if code is not None:
        X.note(X.binop(">=", code, X.Const(1)), *pieces)


def _convt_out(size: Size, k: int, s: int, p: int, d: int, op_: int) -> Size:
    return (size - 1) * s - 2 * p + d * (k - 1) + op_ + 1


def _conv_common(call: OpCall, transposed: bool):
    op = call.op
    (t,) = call.inputs
    require_float(op, t)
    if call.src is None or call.dst is None or len(call.src) != 1 or len(call.dst) != 1:
        raise fail(f"{op} needs 'CHANNELS_IN -> CHANNELS_OUT', e.g. {op}(c -> c: 64, kernel = 3, over [h, w])")
    spatial = _spatial(op, call, t)
    (src,), (dst,) = call.src, call.dst
    cin_ax = require_axis(op, t, src)
    cin = size_hval(cin_ax, src)
    static_size(op, cin_ax)
    if src.name in spatial:
        raise fail(f"{op}: the channel axis '{src.name}' cannot also be spatial")
    n = len(spatial)
    if call.kw("kernel") is None:
        raise fail(f"{op} needs a kernel size: kernel = 3")
    kernel = _tuple_arg(op, "kernel", call.kw("kernel"), n, 1, minimum=1)
    stride = _tuple_arg(op, "stride", call.kw("stride"), n, 1, minimum=1)
    dilation = _tuple_arg(op, "dilation", call.kw("dilation"), n, 1, minimum=1)
    groups = call.kw("groups", HVal.const(1))
    groups = groups if isinstance(groups, HVal) else HVal.const(groups)
    g = as_int(op, "groups", groups, minimum=1)
    pad_arg = call.kw("padding", 0)
    if isinstance(pad_arg, HVal) and pad_arg.value == "same":
        if transposed or any(s.value != 1 for s in stride):
            raise fail(f"{op}: padding = \"same\" needs stride 1")
        if any((d.value * (k.value - 1)) % 2 for k, d in zip(kernel, dilation)):
            raise fail(f"{op}: padding = \"same\" needs an odd kernel extent")
        padding = tuple(
            HVal(d.value * (k.value - 1) // 2,
                 X.binop("//", X.binop("*", d.expr, X.binop("-", k.expr, X.Const(1))), X.Const(2)))
            for k, d in zip(kernel, dilation)
        )
    else:
        padding = _tuple_arg(op, "padding", pad_arg, n, 0)
    cout_ax = new_axis(op, dst)
    cout = new_size(op, dst)
    for ch in (cin, cout) if not (groups.is_const and groups.value == 1) else ():
        X.note(X.binop("==", X.binop("%", ch.expr, groups.expr), X.Const(0)),
               f"{op}: groups=", ("e", groups.expr), " must divide both ", ("e", cin.expr),
               " input and ", ("e", cout.expr), " output channels")
    if cin.value % g or cout.value % g:
        raise fail(f"{op}: groups={g} must divide both {cin.value} input and {cout.value} output channels")
    out_pad = _tuple_arg(op, "output_padding", call.kw("output_padding"), n, 0) if transposed else ()
    for i in range(n if transposed else 0):
        # the extra positions must fall inside the last stride step: PyTorch refuses more
        # unless the dilation is larger, onnxruntime refuses it whatever the dilation
        if out_pad[i].value >= stride[i].value:
            raise fail(f"{op}: output_padding on '{spatial[i]}' must be smaller than the stride "
                       f"({stride[i].value}), found {out_pad[i].value}")
    axes = []
    for a in t.axes:
        if a.name == src.name:
            axes.append(cout_ax)
        elif a.name in spatial:
            i = spatial.index(a.name)
            k, s, p, d = kernel[i].value, stride[i].value, padding[i].value, dilation[i].value
            hk, hs, hp, hd = kernel[i], stride[i], padding[i], dilation[i]
            if transposed:
                size = _convt_out(a.size, k, s, p, d, out_pad[i].value)
                code = X.dependent(_convt_out_code(a, hk, hs, hp, hd, out_pad[i]) if size.is_static else None)
            else:
                size = _conv_out(a.size, k, s, p, d)
                code = X.dependent(_conv_out_code(a, hk, hs, hp, hd) if size.is_static else None)
            if code is not None:
                _note_size(code, op, a.name, f"{op}: axis '{a.name}' of size ", ("e", a.size_code()),
                           " is too small for kernel ", ("e", hk.expr), " (stride ", ("e", hs.expr),
                           ", padding ", ("e", hp.expr), ", dilation ", ("e", hd.expr), ")")
            if size.is_static and size.value < 1:
                raise fail(f"{op}: axis '{a.name}' of size {a.size} is too small for kernel {k} "
                           f"(stride {s}, padding {p}, dilation {d})")
            axes.append(Axis(a.name, size, code))
        else:
            axes.append(a)
    if dst.name != src.name and t.has(dst.name):
        raise fail(f"{op}: the input {t} already has an axis '{dst.name}'")
    attrs = {
        "channel": src.name,
        "out_axis": cout_ax,
        "in_channels": cin,
        "out_channels": cout,
        "spatial": spatial,
        "kernel": kernel,
        "stride": stride,
        "padding": padding,
        "dilation": dilation,
        "groups": groups,
        "bias": as_bool(op, "bias", call.kw("bias", True)),
        "init": parse_init(op, "init", call.kw("init"), ndim=2 + n),
        "bias_init": parse_init(op, "bias_init", call.kw("bias_init"), ndim=1),
    }
    if not attrs["bias"] and attrs["bias_init"] is not None:
        raise fail(f"{op}: bias_init given but bias = false")
    if transposed:
        attrs["output_padding"] = out_pad
    return attrs, (t.with_axes(axes),)


def _conv_params(a: Attrs, ins):
    g = int(a["groups"].value)
    k = tuple(a["kernel"])
    cin, cout = a["in_channels"], a["out_channels"]
    if "output_padding" in a.keys():  # transposed: weight is [in, out / groups, *k]
        per = HVal(cout.value // g, X.binop("div", cout.expr, a["groups"].expr))
        shape = (cin, per) + k
        fan_in = per.value * math.prod(x.value for x in k)
    else:
        per = HVal(cin.value // g, X.binop("div", cin.expr, a["groups"].expr))
        shape = (cout, per) + k
        fan_in = per.value * math.prod(x.value for x in k)
    w, wx = _chosen(a["init"], TORCH_WEIGHT)
    out = [ParamSpec("weight", shape, w, fan_in=fan_in, explicit=wx)]
    if a["bias"]:
        b, bx = _chosen(a["bias_init"], FAN_IN_UNIFORM)
        out.append(ParamSpec("bias", (cout,), b, fan_in=fan_in, explicit=bx))
    return tuple(out)


def _conv_flops(a, ins, outs, env):
    g = int(a["groups"].value)
    k = math.prod(x.value for x in a["kernel"])
    if "output_padding" in a.keys():
        return 2 * numel(ins[0], env) * int(a["out_channels"].value) // g * k
    return 2 * numel(outs[0], env) * int(a["in_channels"].value) // g * k


def _ints(values: tuple[HVal, ...]) -> list[int] | None:
    out = []
    for v in values:
        if not isinstance(v.value, int) or isinstance(v.value, bool):
            return None
        out.append(v.value)
    return out or None


def _per_axis(vals: list[int]) -> str:
    return str(vals[0]) if len(set(vals)) == 1 else "×".join(map(str, vals))


def _window_note(a: Attrs) -> str:
    """What a diagram writes under a window op: `3×3`, `3×3 /2`, `3×3 d2`, `3×3 g4`, `3×3 dw`
    (groups = channels: depthwise)."""
    kernel = _ints(a["kernel"])
    if kernel is None:
        return ""
    parts = ["×".join(map(str, kernel))]
    stride = _ints(a["stride"])
    if stride and any(s != 1 for s in stride):
        parts.append("/" + _per_axis(stride))
    dilation = _ints(a.get("dilation", ()))
    if dilation and any(d != 1 for d in dilation):
        parts.append("d" + _per_axis(dilation))
    groups = a.get("groups")
    if isinstance(groups, HVal) and isinstance(groups.value, int) and groups.value > 1:
        channels = a["in_channels"].value
        parts.append("dw" if groups.value == channels else f"g{groups.value}")
    return " ".join(parts)


_CONV_ATTRS = (
    AttrSpec("channel", "axis", doc="the input channel axis"),
    AttrSpec("out_axis", "axis_def", doc="the output channel axis"),
    AttrSpec("in_channels", "hval"),
    AttrSpec("out_channels", "hval"),
    AttrSpec("spatial", "axes", doc="the spatial axes, in the order of the per-axis tuples"),
    AttrSpec("kernel", "hvals", doc="per spatial axis"),
    AttrSpec("stride", "hvals", doc="per spatial axis"),
    AttrSpec("padding", "hvals", doc="per spatial axis, on each side"),
    AttrSpec("dilation", "hvals", doc="per spatial axis"),
    AttrSpec("groups", "hval"),
    AttrSpec("bias", "bool"),
    AttrSpec("init", "init", default=None, optional=True, doc="the weight's initialisation, if the spec chose one"),
    AttrSpec("bias_init", "init", default=None, optional=True, doc="the bias's initialisation, if the spec chose one"),
)
_CONV_KW = ("kernel", "stride", "padding", "dilation", "groups", "bias", "init", "bias_init")
register(
    OpDef(
        name="Conv",
        doc="Convolution over 1–3 spatial axes (`over [h, w]`) mapping the channel axis "
        "(`c -> c: 64`). Each spatial axis becomes (position, window) and the window is "
        "contracted; strided, dilated and grouped (depthwise) forms via keywords.",
        check=lambda call: _conv_common(call, False),
        attrs=_CONV_ATTRS,
        arity=1,
        learned=True,
        params=_conv_params,
        flops=_conv_flops,
        kwargs=_CONV_KW,
        takes=frozenset({"map", "over"}),
        figure="trapezoid",
        glyph="★",
        note=_window_note,
        example="Conv(x, c -> c: 64, kernel = 3, padding = 1, over [h, w])",
    )
)
register(
    OpDef(
        name="ConvTranspose",
        doc="Transposed convolution (the gradient of Conv): upsamples the spatial axes.",
        check=lambda call: _conv_common(call, True),
        attrs=_CONV_ATTRS + (AttrSpec("output_padding", "hvals", doc="per spatial axis"),),
        arity=1,
        learned=True,
        params=_conv_params,
        flops=_conv_flops,
        kwargs=_CONV_KW + ("output_padding",),
        takes=frozenset({"map", "over"}),
        figure="trapezoid",
        glyph="★ᵀ",
        note=_window_note,
        example="ConvTranspose(x, c -> c: 64, kernel = 2, stride = 2, over [h, w])",
    )
)


def _pool_check(call: OpCall):
    op = call.op
    (t,) = call.inputs
    require_float(op, t)
    spatial = _spatial(op, call, t)
    n = len(spatial)
    if call.kw("kernel") is None:
        raise fail(f"{op} needs a kernel size: kernel = 2")
    kernel = _tuple_arg(op, "kernel", call.kw("kernel"), n, 1, minimum=1)
    stride = _tuple_arg(op, "stride", call.kw("stride"), n, None, minimum=1) if call.kw("stride") is not None else kernel
    padding = _tuple_arg(op, "padding", call.kw("padding"), n, 0)
    for k, p in zip(kernel, padding):
        X.note(X.binop("<=", X.binop("*", X.Const(2), p.expr), k.expr),
               f"{op}: padding ", ("e", p.expr), " must be at most half the kernel ", ("e", k.expr))
        if 2 * p.value > k.value:
            raise fail(f"{op}: padding {p.value} must be at most half the kernel {k.value}")
    axes = []
    for a in t.axes:
        if a.name in spatial:
            i = spatial.index(a.name)
            size = _conv_out(a.size, kernel[i].value, stride[i].value, padding[i].value, 1)
            code = X.dependent(_conv_out_code(a, kernel[i], stride[i], padding[i], HVal.const(1)) if size.is_static else None)
            _note_size(code, op, a.name, f"{op}: axis '{a.name}' of size ", ("e", a.size_code()),
                       " is smaller than the kernel ", ("e", kernel[i].expr))
            if size.is_static and size.value < 1:
                raise fail(f"{op}: axis '{a.name}' of size {a.size} is smaller than the kernel {kernel[i].value}")
            axes.append(Axis(a.name, size, code))
        else:
            axes.append(a)
    return {"spatial": spatial, "kernel": kernel, "stride": stride, "padding": padding}, (t.with_axes(axes),)


for _name, _g in (("maxpool", "max"), ("avgpool", "avg")):
    register(
        OpDef(
            name=_name,
            doc=f"{_g}-pooling over windows of the spatial axes (stride defaults to the kernel).",
            check=_pool_check,
            attrs=(
                AttrSpec("spatial", "axes", doc="the spatial axes, in the order of the per-axis tuples"),
                AttrSpec("kernel", "hvals"),
                AttrSpec("stride", "hvals"),
                AttrSpec("padding", "hvals"),
            ),
            arity=1,
            kwargs=("kernel", "stride", "padding"),
            takes=frozenset({"over"}),
            glyph=_g,
            note=_window_note,
            example=f"{_name}(x, kernel = 2, over [h, w])",
        )
    )


# ---- free parameters -----------------------------------------------------------------------


def _param_check(call: OpCall):
    if call.axes is None:
        raise fail("Param needs its axes: Param([seq: n, d])")
    axes = tuple(new_axis("Param", s) for s in call.axes)
    init = init_of("Param", "init", call.kw("init", "normal"), ndim=len(axes))
    std = call.kw("std")
    if std is not None:  # `std = S`: the older spelling of init = normal(S)
        if init.kind != "normal" or call.kw("init") not in (None, "normal", HVal.const("normal")):
            raise fail("Param: std goes with init = normal; write init = normal(STD) instead")
        as_float("Param", "std", std)
        init = init_of("Param", "init", OpCall("normal", (), positional=(std,)), ndim=len(axes))
    attrs = {"axes": axes, "sizes": tuple(s.size for s in call.axes), "init": init}
    return attrs, (TensorType(axes, "float32"),)


def _param_params(a: Attrs, ins):
    return (ParamSpec("weight", a["sizes"], a["init"], explicit=True),)


register(
    OpDef(
        name="Param",
        doc="A free learned tensor with the given axes (class tokens, position tables). "
        "init = normal(STD) (the default: normal(1)), zeros, ones, uniform(B), ...; "
        "`std = S` is short for init = normal(S).",
        check=_param_check,
        attrs=(
            AttrSpec("axes", "axis_defs", doc="the tensor's axes"),
            AttrSpec("sizes", "hvals", doc="their sizes, as the spec gives them"),
            AttrSpec("init", "init"),
        ),
        arity=0,
        learned=True,
        params=_param_params,
        kwargs=("init", "std"),
        takes=frozenset({"axes"}),
        traits=frozenset({"view"}),
        glyph="θ",
        example="pos = Param([seq: n, d], init = normal(0.02))",
    )
)

