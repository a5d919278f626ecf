"""Axis surgery: slices `x[c = a:b]`, `split` and `chunk` into several tensors, `roll`,
`reverse` and `shift` along a named axis, running sums and products, `stack` onto a new
axis, and `upsample` of named spatial axes."""

from __future__ import annotations

from nncircuit.ops.registry import (
    Attrs,
    AttrSpec,
    AxisSpec,
    OpCall,
    OpDef,
    as_int,
    fail,
    new_axis,
    numel,
    over_names,
    register,
    require_axis,
    type_pieces,
)
from nncircuit.types import expr as X
from nncircuit.types.sizes import Size
from nncircuit.types.tensor import Axis, HVal


def _elementwise_flops(attrs, ins, outs, env) -> int:
    return numel(outs[0], env)


def _hv(h) -> str:
    """A hyperparameter value as a diagram writes it: its expression's text (`d / 2`), or
    the number when it reads no hyperparameter."""
    return str(h.value) if h.is_const else h.expr.text()


def _slice_label(a: Attrs) -> str:
    """`[seq = 1:]`: the kept range, as written."""
    lo = "" if a["start"] is None else _hv(a["start"])
    hi = "" if a["stop"] is None else _hv(a["stop"])
    return f"[{a['axis']} = {lo}:{hi}]"


def _split_note(a: Attrs) -> str:
    """`d: 4 | 4`: the axis cut and its parts' sizes."""
    return f"{a['axis']}: " + " | ".join(_hv(h) for h in a["sizes"])


def _axis_note(a: Attrs) -> str:
    """`over seq`: the one axis the op works along (a running sum, a reversal)."""
    return f"over {a['axis']}"


def _shift_note(a: Attrs) -> str:
    """`seq +1`: the axis and the signed step."""
    k = _hv(a["shift"])
    return f"{a['axis']} {k if k.startswith('-') else '+' + k}"


def _one_axis(call: OpCall, example: str) -> AxisSpec:
    names = over_names(call.op, call)
    if len(names) != 1:
        raise fail(f"{call.op} acts on exactly one axis, found 'over [{', '.join(names)}]'; e.g. {example}")
    return call.over[0] if call.over else AxisSpec(names[0])


def _scalar(call: OpCall, what: str, example: str) -> HVal:
    """The one number a call gives positionally (`roll(x, 2, over c)`)."""
    scalars = tuple(call.kw("scalars", ()))
    if len(scalars) != 1:
        raise fail(f"{call.op} needs {what} as one number: {example}")
    ((_, v),) = scalars
    return v if isinstance(v, HVal) else HVal.const(v)


def _code(ax: Axis) -> X.Expr | None:
    return ax.size_code()


# ---- slices ------------------------------------------------------------------------------


def _end(op: str, axis: str, which: str, v) -> int | None:
    if v is None:
        return None
    return as_int(op, f"the {which} of the slice of '{axis}'", v)


def _slice_check(call: OpCall):
    (t,) = call.inputs
    axis = call.kw("axis")
    start, stop = call.kw("start"), call.kw("stop")
    if not t.has(axis):
        raise fail(f"slice: the input {t} has no axis '{axis}'")
    ax = t.axis(axis)
    s, e = _end("slice", axis, "start", start), _end("slice", axis, "stop", stop)
    shown = f"{axis} = {'' if s is None else s}:{'' if e is None else e}"
    if isinstance(stop, HVal) and stop.expr.refs():  # a stop that becomes 0 empties any slice: say so first
        begin: list = [] if s is None else [("e", start.expr) if isinstance(start, HVal) and start.expr.refs() else str(s)]
        size_code = _code(ax)
        of_size: list = [" of size ", ("e", size_code)] if ax.size.is_static and size_code is not None else (
            [f" of size {ax.size.value}"] if ax.size.is_static else [])
        X.note(X.binop("!=", stop.expr, X.Const(0)), f"slice {axis} = ", *begin, ":", ("e", stop.expr),
               f" of axis '{axis}'", *of_size, " is empty")
    for v, name, val in ((start, "start", s), (stop, "stop", e)):  # generated code keeps the sign it was checked with
        if isinstance(v, HVal) and val is not None and v.expr.refs():
            cond = X.binop(">=" if val >= 0 else "<", v.expr, X.Const(0))
            X.note(cond, f"slice of '{axis}': the {name} ", ("e", v.expr), " changed sign from "
                   f"{'non-negative' if val >= 0 else 'negative'} (a slice keeps the reading it was checked with)")
    if ax.size.is_static:
        n = ax.size.value
        size = len(range(n)[s:e])
        if size < 1:
            raise fail(f"slice {shown} of axis '{axis}' of size {n} is empty")
        code = _slice_code(_code(ax), start, stop, s, e)
        if code is not None:
            X.note(X.binop(">=", code, X.Const(1)), f"slice {shown}: it keeps ", ("e", code),
                   " positions of axis '", axis, "' in ", *type_pieces(t), "; a slice must keep at least one")
        out = Axis(axis, Size.of(size), X.dependent(code))
    else:
        lo = Size.of(0) if s is None else (Size.of(s) if s >= 0 else ax.size + s)
        hi = ax.size if e is None else (Size.of(e) if e >= 0 else ax.size + e)
        length = hi - lo
        if length.is_static and length.value < 1:
            raise fail(f"slice {shown} of axis '{axis}' is empty")
        out = Axis(axis, length, X.dependent(X.const(length.value)) if length.is_static else None)
    attrs = {"axis": axis, "start": start, "stop": stop}
    return attrs, (t.with_axes(out if a.name == axis else a for a in t.axes),)


def _slice_code(n: X.Expr | None, start, stop, s, e) -> X.Expr | None:
    """The kept length as an expression of the hyperparameters, as Python's slicing has it
    for ends of the signs they have now."""
    if n is None:
        return None
    zero = X.Const(0)
    if start is None:
        lo: X.Expr = zero
    elif s >= 0:
        lo = start.expr
    else:
        lo = X.call("max", (X.binop("+", n, start.expr), zero))
    if stop is None:
        hi: X.Expr = n
    elif e >= 0:
        hi = X.call("min", (stop.expr, n))
    else:
        hi = X.binop("+", n, stop.expr)
    return X.binop("-", hi, lo)


register(
    OpDef(
        name="slice",
        doc="Positions a up to (not including) b of one axis, which keeps its name at its new "
        "size: `x[c = a:b]`. Ends are hyperparameter expressions; a negative end counts from "
        "the end and an open end (`x[c = 1:]`, `x[c = :-1]`) runs to the edge, as in Python. "
        "On a run-time axis the result's size is run-time too.",
        check=_slice_check,
        arity=1,
        traits=frozenset({"view"}),
        glyph="[:]",
        label=_slice_label,
        example="x[seq = 1:]",
        attrs=(
            AttrSpec("axis", "axis", doc="the sliced axis"),
            AttrSpec("start", "hval", default=None, optional=True, doc="first position kept; None: 0"),
            AttrSpec("stop", "hval", default=None, optional=True, doc="first position dropped; None: the end"),
        ),
    )
)


# ---- split and chunk ---------------------------------------------------------------------


def _split_check(call: OpCall):
    (t,) = call.inputs
    spec = _one_axis(call, "split(x, over c, (2, 6))")
    ax = require_axis("split", t, spec)
    sizes = call.kw("sizes")
    if not sizes or not isinstance(sizes, tuple):
        raise fail("split needs the sizes of its parts: split(x, over c, (2, 6))")
    if len(sizes) < 2:
        raise fail(f"split into one part is the input itself; give two sizes or more, found ({sizes[0].value},)")
    vals = [as_int("split", "each size", v, minimum=1) for v in sizes]
    if not ax.size.is_static:
        raise fail(f"split needs a fixed size for axis '{ax.name}', found the run-time size {ax.size}; "
                   f"use slices x[{ax.name} = a:b] instead")
    n = ax.size.value
    total = sum(vals)
    code = _code(ax)
    total_code = sizes[0].expr
    for v in sizes[1:]:
        total_code = X.binop("+", total_code, v.expr)
    if code is not None:
        X.note(X.binop("==", total_code, code), "split: the sizes add up to ", ("e", total_code),
               f" but axis '{ax.name}' has size ", ("e", code))
    if total != n:
        raise fail(f"split: the sizes {', '.join(map(str, vals))} add up to {total}, but axis '{ax.name}' has size {n}")
    outs = tuple(
        t.with_axes(Axis(ax.name, Size.of(v), X.dependent(h.expr)) if a.name == ax.name else a for a in t.axes)
        for v, h in zip(vals, sizes)
    )
    return {"axis": ax.name, "sizes": tuple(sizes)}, outs


register(
    OpDef(
        name="split",
        doc="Cuts one axis into consecutive parts of the given sizes, one tensor each (a tuple): "
        "`q, k = split(x, over c, (d, d))`. The sizes must add up to the axis.",
        check=_split_check,
        arity=1,
        kwargs=("sizes",),
        takes=frozenset({"over"}),
        traits=frozenset({"view"}),
        glyph="⋔",
        note=_split_note,
        example="a, b = split(x, over c, (2, 6))",
        attrs=(
            AttrSpec("axis", "axis", doc="the axis cut"),
            AttrSpec("sizes", "any", doc="the parts' sizes: a tuple of HVals (hyperparameter expressions)"),
        ),
    )
)


MAX_PARTS = 1024  # the most results one split or chunk gives


def _chunk_check(call: OpCall):
    (t,) = call.inputs
    spec = _one_axis(call, "chunk(x, 2, over c)")
    ax = require_axis("chunk", t, spec)
    count = _scalar(call, "the number of chunks", "chunk(x, 2, over c)")
    k = as_int("chunk", "the number of chunks", count, minimum=1)
    if not ax.size.is_static:
        raise fail(f"chunk needs a fixed size for axis '{ax.name}', found the run-time size {ax.size}")
    n = ax.size.value
    code = _code(ax)
    if code is not None:
        X.note(X.binop("==", X.binop("%", code, count.expr), X.Const(0)), f"chunk: axis '{ax.name}' of size ",
               ("e", code), " does not divide into ", ("e", count.expr), " equal chunks")
    if k > MAX_PARTS:  # one result per part: a count this large is a bomb, not a model
        raise fail(f"chunk into {k} parts is more than the limit of {MAX_PARTS}")
    if n % k:
        raise fail(f"chunk: axis '{ax.name}' of size {n} does not divide into {k} equal chunks; "
                   f"use split(x, over {ax.name}, (...)) for unequal parts")
    part = Axis(ax.name, Size.of(n // k), X.dependent(X.binop("div", code, count.expr)) if code is not None else None)
    out = t.with_axes(part if a.name == ax.name else a for a in t.axes)
    return {"axis": ax.name, "chunks": count}, (out,) * k


register(
    OpDef(
        name="chunk",
        doc="Cuts one axis into n equal parts, one tensor each (a tuple): "
        "`a, b = chunk(x, 2, over c)`. The axis must divide by n.",
        check=_chunk_check,
        arity=1,
        takes=frozenset({"over", "scalars"}),
        traits=frozenset({"view"}),
        glyph="⋔",
        note=lambda a: f"{a['axis']} ÷ {_hv(a['chunks'])}",
        example="a, b = chunk(x, 2, over c)",
        attrs=(
            AttrSpec("axis", "axis", doc="the axis cut"),
            AttrSpec("chunks", "hval", doc="how many equal parts (a positive integer)"),
        ),
    )
)


# ---- roll, reverse, shift ----------------------------------------------------------------


def _roll_check(call: OpCall):
    (t,) = call.inputs
    spec = _one_axis(call, f"{call.op}(x, 1, over c)")
    require_axis(call.op, t, spec)
    k = _scalar(call, "the shift", f"{call.op}(x, 1, over {spec.name})")
    as_int(call.op, "the shift", k)
    attrs: dict = {"axis": spec.name, "shift": k}
    if call.op == "shift":
        fill = call.kw("fill", HVal.const(0))
        fv = fill.value if isinstance(fill, HVal) else fill
        if isinstance(fv, bool) or not isinstance(fv, (int, float)):
            raise fail(f"shift: fill must be a number, found {fv!r}")
        if isinstance(fv, float) and t.dtype in ("int64", "int32", "bool"):
            raise fail(f"shift: the fill {fv} is not an integer but the input is {t}")
        if t.dtype == "bool":
            raise fail(f"shift needs a tensor of numbers, found {t}")
        attrs["fill"] = fill if isinstance(fill, HVal) else HVal.const(fill)
    return attrs, (t,)


for _name, _doc, _extra in (
    ("roll", "Rotates along one axis by k positions (to higher positions; negative k to lower); "
     "what leaves one end comes back at the other, as torch.roll.", ()),
    ("shift", "Moves along one axis by k positions (to higher positions; negative k to lower), "
     "filling the positions left empty with `fill` (0 unless given).", ("fill",)),
):
    register(
        OpDef(
            name=_name,
            doc=_doc,
            check=_roll_check,
            arity=1,
            kwargs=_extra,
            takes=frozenset({"over", "scalars"}),
            glyph="↻" if _name == "roll" else "→",
            note=_shift_note,
            example=f"{_name}(x, 1, over seq)",
            attrs=(
                AttrSpec("axis", "axis", doc="the axis moved along"),
                AttrSpec("shift", "hval", doc="how many positions, an integer (negative: backwards)"),
            ) + ((AttrSpec("fill", "hval", default=0, doc="the value of the emptied positions"),) if _extra else ()),
        )
    )


def _reverse_check(call: OpCall):
    (t,) = call.inputs
    spec = _one_axis(call, "reverse(x, over c)")
    require_axis("reverse", t, spec)
    return {"axis": spec.name}, (t,)


register(
    OpDef(
        name="reverse",
        doc="Reverses the order of the positions along one axis (torch.flip).",
        check=_reverse_check,
        arity=1,
        takes=frozenset({"over"}),
        glyph="⇆",
        note=_axis_note,
        example="reverse(x, over seq)",
        attrs=(AttrSpec("axis", "axis", doc="the reversed axis"),),
    )
)


# ---- running sums and products -----------------------------------------------------------


def _cumulative_check(call: OpCall):
    (t,) = call.inputs
    spec = _one_axis(call, f"{call.op}(x, over c)")
    require_axis(call.op, t, spec)
    if t.dtype == "bool":
        raise fail(f"{call.op} needs a tensor of numbers, found {t}; cast it first")
    return {"axis": spec.name}, (t,)


for _name, _what in (("cumsum", "sum"), ("cumprod", "product")):
    register(
        OpDef(
            name=_name,
            doc=f"The running {_what} along one axis: position i holds the {_what} of positions 0..i.",
            check=_cumulative_check,
            arity=1,
            takes=frozenset({"over"}),
            flops=_elementwise_flops,
            glyph="Σ…" if _name == "cumsum" else "Π…",
            note=_axis_note,
            example=f"{_name}(x, over seq)",
            attrs=(AttrSpec("axis", "axis", doc="the axis accumulated along"),),
        )
    )


# ---- stack -------------------------------------------------------------------------------


def _stack_check(call: OpCall):
    if len(call.inputs) < 2:
        raise fail("stack needs at least two tensors: stack(a, b, over new: 2)")
    names = over_names("stack", call)
    if len(names) != 1:
        raise fail(f"stack makes exactly one new axis, found 'over [{', '.join(names)}]'")
    (spec,) = call.over or ()
    first = call.inputs[0]
    for t in call.inputs:
        if t.has(spec.name):
            raise fail(f"stack: the new axis '{spec.name}' already exists in {t}; name a new one")
        if sorted(t.names) != sorted(first.names):
            raise fail(f"stack: the inputs must have the same axes, found {first} and {t}")
        for ax in t.axes:
            mine = first.axis(ax.name)
            if mine.size != ax.size:
                raise fail(f"stack: axis '{ax.name}' has size {mine.size} in {first} and {ax.size} in {t}")
            x, y = mine.size_code(), ax.size_code()
            if x is not None and y is not None and x != y:
                X.note(X.binop("==", x, y), f"stack: axis '{ax.name}' has size ", ("e", x), " in one input and ",
                       ("e", y), " in another")
        if t.dtype != first.dtype:
            raise fail(f"stack: the inputs must have one element type, found {first} and {t}")
    count = len(call.inputs)
    if spec.size is None:
        new = Axis(spec.name, Size.of(count))
    else:
        new = new_axis("stack", spec)
        X.note(X.binop("==", spec.size.expr, X.Const(count)), f"stack: the new axis '{spec.name}' has size ",
               ("e", spec.size.expr), f" but {count} tensors are stacked")
        if new.size.value != count:
            raise fail(f"stack: the new axis '{spec.name}' has size {new.size.value} but {count} tensors are stacked")
    return {"axis": spec.name}, (first.with_axes((new,) + first.axes),)


register(
    OpDef(
        name="stack",
        doc="Stacks tensors of the same axes along a new first axis, one position each: "
        "`stack(a, b, c, over k: 3)` (the size may be left out). Axes are matched by name.",
        check=_stack_check,
        arity=None,
        takes=frozenset({"over"}),
        glyph="⊞",
        example="stack(a, b, over k: 2)",
        attrs=(AttrSpec("axis", "axis", doc="the new axis (first in the result)"),),
    )
)


# ---- upsample ----------------------------------------------------------------------------

UPSAMPLE_MODES = ("nearest", "bilinear")


def _upsample_check(call: OpCall):
    (t,) = call.inputs
    names = over_names("upsample", call)
    if not 1 <= len(names) <= 3:
        raise fail(f"upsample acts on one to three axes, found {len(names)}")
    scale = _scalar(call, "its scale", "upsample(x, 2, over [h, w])")
    k = as_int("upsample", "the scale", scale, minimum=1)
    mode = call.kw("mode", "nearest")
    mode = mode.value if isinstance(mode, HVal) else mode
    if mode not in UPSAMPLE_MODES:
        raise fail(f"upsample: mode must be {' or '.join(UPSAMPLE_MODES)}, found {mode!r}")
    if t.dtype not in ("float32", "float64", "float16", "bfloat16"):
        raise fail(f"upsample needs a floating-point tensor, found {t}")
    for s in call.over or ():
        require_axis("upsample", t, s)
    axes = []
    for a in t.axes:
        if a.name in names:
            code = a.size_code()
            size = Size.of(a.size.value * k) if a.size.is_static else a.size * k  # Size.of: the length limit
            axes.append(Axis(a.name, size,
                             X.dependent(X.binop("*", code, scale.expr)) if code is not None else None))
        else:
            axes.append(a)
    return {"axes": names, "scale": scale, "mode": mode}, (t.with_axes(axes),)


register(
    OpDef(
        name="upsample",
        doc="Enlarges named spatial axes by an integer factor, as torch.nn.Upsample with "
        "align_corners=False: `mode = nearest` (the default) or `mode = bilinear` (linear along "
        "each named axis: linear, bilinear or trilinear for one, two or three axes).",
        check=_upsample_check,
        arity=1,
        kwargs=("mode",),
        takes=frozenset({"over", "scalars"}),
        flops=_elementwise_flops,
        glyph="↑",
        example="upsample(x, 2, over [h, w], mode = bilinear)",
        attrs=(
            AttrSpec("axes", "axes", doc="the spatial axes enlarged"),
            AttrSpec("scale", "hval", doc="the integer factor"),
            AttrSpec("mode", "str", default="nearest", doc="nearest or bilinear"),
        ),
    )
)
