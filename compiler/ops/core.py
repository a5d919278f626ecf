"""Pure (parameter-free) primitives: elementwise maps, arithmetic with broadcasting by axis
name, softmax, contraction, axis bookkeeping, reductions, masks and indexing."""

from __future__ import annotations

import math

from nncircuit.ops.registry import (
    SCALAR_ATTRS,
    AttrSpec,
    Attrs,
    OpCall,
    OpDef,
    as_bool,
    as_float,
    float_attr,
    as_int,
    broadcast,
    fail,
    new_axis,
    over_names,
    over_specs,
    positional_axes,
    register,
    require_axis,
    require_float,
    sum_code,
)
from nncircuit.types.sizes import Size
from nncircuit.types import expr as X
from nncircuit.types.tensor import DTYPES, Axis, HVal, TensorType

# ---- elementwise maps ---------------------------------------------------------------------

UNARY = {
    "relu": "max(x, 0)",
    "gelu": "x * Φ(x), exact",
    "gelu_tanh": "GELU with the tanh approximation (GPT-2's)",
    "silu": "x * sigmoid(x)",
    "sigmoid": "1 / (1 + exp(-x))",
    "tanh": "hyperbolic tangent",
    "exp": "e ** x",
    "log": "natural logarithm",
    "sqrt": "square root",
    "abs": "absolute value (of an integer tensor too)",
    "neg": "-x (of an integer tensor too)",
}


# exact on integers too (torch and ONNX Abs/Neg take int32 and int64): T5's bucketed distances
INTEGER_UNARY = frozenset({"abs", "neg"})


def _unary_check(call: OpCall):
    (t,) = call.inputs
    if not (call.op in INTEGER_UNARY and t.dtype in ("int64", "int32")):
        require_float(call.op, t)
    return {}, (t,)


for _name, _doc in UNARY.items():
    register(
        OpDef(
            name=_name,
            doc=f"Elementwise {_doc}; every axis is carried.",
            check=_unary_check,
            attrs=(),
            arity=1,
            glyph=_name,
            example=f"x |> {_name}",
        )
    )


def _dropout_check(call: OpCall):
    (t,) = call.inputs
    given = call.kw("p", 0.1)
    p = as_float("dropout", "p", given)
    if isinstance(given, HVal):
        cond = X.binop("<", given.expr, X.Const(1))
        X.note(X.binop(">=", given.expr, X.Const(0)), "dropout: p must be in [0, 1), found ", ("e", given.expr))
        X.note(cond, "dropout: p must be in [0, 1), found ", ("e", given.expr))
    if not 0.0 <= p < 1.0:
        raise fail(f"dropout: p must be in [0, 1), found {p}")
    return {"p": float_attr("dropout", "p", given)}, (t,)


register(
    OpDef(
        name="dropout",
        doc="Zeroes elements with probability p while training; identity in eval mode.",
        check=_dropout_check,
        attrs=(AttrSpec("p", "float", doc="the probability of zeroing an element"),),
        arity=1,
        kwargs=("p",),
        traits=frozenset({"random"}),
        glyph="dropout",
        example="x |> dropout(p = 0.1)",
    )
)


# ---- arithmetic ----------------------------------------------------------------------------

BINARY = {"add": "+", "sub": "-", "mul": "*", "div": "/", "pow": "**"}


def _binary_check(call: OpCall):
    scalar = call.kw("scalar")
    if scalar is not None:
        (t,) = call.inputs
        side = call.kw("side", "right")
        if not isinstance(scalar.value, (int, float)) or isinstance(scalar.value, bool):
            raise fail(f"cannot apply '{BINARY[call.op]}' to a tensor and {scalar.value!r}")
        if call.op in ("div", "pow") and t.dtype not in ("float32", "float16", "bfloat16", "float64"):
            t = t.with_dtype("float32")
        if isinstance(scalar.value, float) and t.dtype in ("int64", "int32", "bool"):
            t = t.with_dtype("float32")
        return {"scalar": scalar, "side": side}, (t,)
    if len(call.inputs) != 2:
        raise fail(f"{call.op} takes two tensors, found {len(call.inputs)}")
    a, b = call.inputs
    outer = as_bool(call.op, "outer", call.kw("outer", False))
    sym = BINARY[call.op]
    return {}, (broadcast(f"'{sym}'", a, b, outer=outer, explicit=f"{call.op}(a, b, outer = true)"),)


for _name, _sym in BINARY.items():
    register(
        OpDef(
            name=_name,
            doc=f"Elementwise `a {_sym} b`. Axes are matched by name: an axis only one side has "
            "is broadcast, a shared axis must have the same size on both sides. One side may "
            "be a number. When each side has an axis the other lacks (an outer broadcast) write "
            f"`{_name}(a, b, outer = true)`.",
            check=_binary_check,
            attrs=SCALAR_ATTRS,
            arity=None,
            kwargs=("outer",),
            glyph=_sym,
            example=f"x {_sym} y",
            traits=frozenset({"commutative"}) if _name in ("add", "mul") else frozenset(),
        )
    )


# ---- normalising maps ----------------------------------------------------------------------


def _softmax_check(call: OpCall):
    (t,) = call.inputs
    require_float(call.op, t)
    names = over_names(call.op, call)
    if not names:
        raise fail(f"{call.op} needs at least one axis in 'over', found 'over []'")
    for i, s in enumerate(over_specs(call.op, call)):
        if s.name in names[:i]:
            raise fail(f"{call.op}: axis '{s.name}' is named twice in 'over [{', '.join(names)}]'")
        require_axis(call.op, t, s)
    return {"axes": names}, (t,)


def _one_over(call: OpCall):
    names = over_names(call.op, call)
    if len(names) != 1:
        raise fail(f"{call.op} acts on exactly one axis, found 'over [{', '.join(names)}]'")
    return call.over


for _name in ("softmax", "log_softmax"):
    register(
        OpDef(
            name=_name,
            doc=f"{_name} along one axis (`over AXIS`) or jointly over several (`over [kh, kw]`: "
            "the named axes together are one distribution); other axes are carried.",
            check=_softmax_check,
            attrs=(AttrSpec("axes", "axes", doc="the axes it normalises over, together"),),
            arity=1,
            takes=frozenset({"over"}),
            figure="triangle",
            glyph="◁",
            example=f"{_name}(scores, over key), {_name}(scores, over [kh, kw])",
        )
    )


# ---- contraction ---------------------------------------------------------------------------


def _einsum_check(call: OpCall):
    if call.dst is None and call.over is None:
        raise fail("einsum needs its output axes (einsum(a, b -> [i, j])) or the axes it sums "
                   "(einsum(a, b, over k))")
    if len(call.inputs) < 1:
        raise fail("einsum needs at least one tensor")
    sizes: dict[str, Axis] = {}
    for t in call.inputs:
        require_float("einsum", t)
        for ax in t.axes:
            if ax.name in sizes:
                x, y = sizes[ax.name].size_code(), ax.size_code()
                if x is not None and y is not None:
                    X.note(X.binop("==", x, y), f"einsum: axis '{ax.name}' has size ", ("e", x),
                           " in one input and ", ("e", y), " in another")
            if ax.name in sizes and sizes[ax.name].size != ax.size:
                raise fail(
                    f"einsum: axis '{ax.name}' has size {sizes[ax.name].size} in one input "
                    f"and {ax.size} in another"
                )
            sizes.setdefault(ax.name, ax)
    inputs = ", ".join(str(t) for t in call.inputs)
    summed = over_names("einsum", call, required=False)
    for name in summed:
        if name not in sizes:
            raise fail(f"einsum: axis '{name}' to sum over is in no input (inputs: {inputs})")
    if call.dst is None:  # `over`: those axes are summed, every other axis is carried
        out = [ax for name, ax in sizes.items() if name not in summed]
        return {"out": tuple(a.name for a in out)}, (TensorType(tuple(out), call.inputs[0].dtype),)
    out = []
    for spec in call.dst:
        if spec.name not in sizes:
            raise fail(f"einsum: output axis '{spec.name}' is in no input (inputs: {inputs})")
        if spec.name in summed:
            raise fail(f"einsum: axis '{spec.name}' is both kept (-> [...]) and summed (over)")
        out.append(sizes[spec.name])
    kept = {a.name for a in out}
    dropped = [name for name in sizes if name not in kept]
    if call.over is not None:
        rest = [name for name in dropped if name not in summed]
        if rest:
            raise fail(f"einsum: {_names(rest)} in neither the output nor 'over'; with 'over', "
                       "list every axis that is summed")
    else:
        # summing a run-time axis that every input carries (batch, seq) is what a forgotten
        # output axis looks like: it must be said (a DIN spec summed over batch this way)
        hidden = [name for name in dropped if not sizes[name].size.is_static
                  and all(t.has(name) for t in call.inputs)]
        if hidden:
            keep = ", ".join([s.name for s in call.dst] + hidden)
            raise fail(
                f"einsum would sum over {_names(hidden)}, "
                + ("a run-time axis" if len(hidden) == 1 else "run-time axes")
                + f" that every input carries; if that is meant, say so: add ', over "
                f"[{', '.join(dropped)}]' (or write einsum(..., over [{', '.join(hidden)}]), which "
                f"sums {'it' if len(hidden) == 1 else 'them'} and keeps every other axis); else "
                f"keep {'it' if len(hidden) == 1 else 'them'}: '-> [{keep}]'"
            )
    return {"out": tuple(a.name for a in out)}, (TensorType(tuple(out), call.inputs[0].dtype),)


def _names(names) -> str:
    return ("axis " if len(names) == 1 else "axes ") + ", ".join(f"'{n}'" for n in names)


def _einsum_flops(attrs, ins, outs, env) -> int:
    if len(ins) < 2:
        return 0
    names: dict[str, int] = {}
    for t in ins:
        for ax in t.axes:
            names[ax.name] = ax.size.evaluate(env)
    return 2 * math.prod(names.values())


register(
    OpDef(
        name="einsum",
        doc="Contraction by axis name. `einsum(a, b, over k)` sums the named axes and keeps "
        "every other axis (in order of first appearance). `einsum(a, b -> [i, j])` keeps the "
        "listed axes and sums the others, except that a run-time axis every input carries "
        "(batch, seq) is summed only when named: `-> [i], over [seq]`.",
        check=_einsum_check,
        attrs=(AttrSpec("out", "axes", doc="the result's axes, in order"),),
        arity=None,
        takes=frozenset({"map", "over"}),
        flops=_einsum_flops,
        figure="cup",
        glyph="∪",
        example="einsum(q, k -> [heads, seq, key])",
    )
)


# ---- axis bookkeeping ----------------------------------------------------------------------


def _rename_check(call: OpCall):
    (t,) = call.inputs
    old, new = call.kw("old"), call.kw("new")
    if not t.has(old):
        raise fail(f"rename: the input {t} has no axis '{old}'")
    if t.has(new) and new != old:
        raise fail(f"rename: the input {t} already has an axis '{new}'")
    axes = tuple(Axis(new, a.size, a.code) if a.name == old else a for a in t.axes)
    return {"old": old, "new": new}, (t.with_axes(axes),)


register(
    OpDef(
        name="rename",
        doc="Gives an axis a new name; the data is untouched.",
        check=_rename_check,
        attrs=(AttrSpec("old", "axis", doc="the axis renamed"), AttrSpec("new", "axis", doc="its new name")),
        arity=1,
        traits=frozenset({"view"}),
        figure="relabel",
        glyph="",
        example="k = x rename seq -> key",
    )
)


def _transpose_check(call: OpCall):
    (t,) = call.inputs
    if len(call.positional) != 2:
        raise fail("transpose takes two axes: transpose(x, a, b)")
    a, b = positional_axes("transpose", call)
    require_axis("transpose", t, a)
    require_axis("transpose", t, b)
    axes = list(t.axes)
    i, j = t.index(a.name), t.index(b.name)
    axes[i], axes[j] = axes[j], axes[i]
    return {"a": a.name, "b": b.name}, (t.with_axes(axes),)


register(
    OpDef(
        name="transpose",
        doc="Swaps the positions of two axes (a layout choice; names keep their meaning).",
        check=_transpose_check,
        attrs=(AttrSpec("a", "axis", doc="one axis swapped"), AttrSpec("b", "axis", doc="the other")),
        arity=1,
        positional=("axis", "axis"),
        traits=frozenset({"view"}),
        glyph="⇅",
        example="transpose(x, d, seq)",
    )
)


def _flatten_check(call: OpCall):
    (t,) = call.inputs
    if call.src is None or call.dst is None or len(call.dst) != 1:
        raise fail("flatten merges axes into one: flatten([h, w] -> seq)")
    names = tuple(s.name for s in call.src)
    for s in call.src:
        require_axis("flatten", t, s)
    # axes that do not stand next to each other in that order are first moved there (a
    # transpose); the merged axis stands where the first of them stood
    first = min(t.index(n) for n in names)
    size = Size.of(1)
    for n in names:
        ax = t.axis(n)
        if not (ax.size.is_static or size.is_static):
            raise fail(f"flatten: cannot merge two run-time sized axes in {t}")
        size = size * ax.size
    (dst,) = call.dst
    if t.has(dst.name) and dst.name not in names:
        raise fail(f"flatten: the input {t} already has an axis '{dst.name}'")
    codes = [t.axis(n).size_code() for n in names]
    out = Axis(dst.name, size, X.dependent(X.product(codes)) if size.is_static else None)
    axes = list(t.axes[:first]) + [out] + [a for a in t.axes[first:] if a.name not in names]
    return {"axes": names, "into": dst.name}, (t.with_axes(axes),)


register(
    OpDef(
        name="flatten",
        doc="Merges axes into one, in the order listed (the first varies slowest); axes that do "
        "not stand next to each other in that order are moved there first (a transpose). The "
        "merged axis stands where the first of them stood.",
        check=_flatten_check,
        attrs=(
            AttrSpec("axes", "axes", doc="the axes merged, outermost first"),
            AttrSpec("into", "axis", doc="the merged axis"),
        ),
        arity=1,
        takes=frozenset({"map"}),
        traits=frozenset({"view"}),
        glyph="⋈",
        example="x |> flatten([h, w] -> seq)",
    )
)


def _unflatten_check(call: OpCall):
    (t,) = call.inputs
    if call.src is None or len(call.src) != 1 or call.dst is None:
        raise fail("unflatten splits one axis: unflatten(d -> [heads, dh])")
    (src,) = call.src
    ax = require_axis("unflatten", t, src)
    outs = tuple(new_axis("unflatten", s) for s in call.dst)
    total = math.prod(a.size.value for a in outs)
    if not (ax.size.is_static and ax.size.value == total):
        raise fail(f"unflatten: axis '{src.name}' has size {ax.size} but {', '.join(map(str, outs))} make {total}")
    i = t.index(src.name)
    for a in outs:
        if t.has(a.name) and a.name != src.name:
            raise fail(f"unflatten: the input {t} already has an axis '{a.name}'")
    axes = list(t.axes[:i]) + list(outs) + list(t.axes[i + 1 :])
    sizes = tuple(s.size for s in call.dst)
    return {"axis": src.name, "into": outs, "sizes": sizes}, (t.with_axes(axes),)


register(
    OpDef(
        name="unflatten",
        doc="Splits one axis into several whose sizes multiply to its size.",
        check=_unflatten_check,
        attrs=(
            AttrSpec("axis", "axis", doc="the axis split"),
            AttrSpec("into", "axis_defs", doc="the axes it splits into, outermost first"),
            AttrSpec("sizes", "hvals", doc="their sizes, as the call gives them"),
        ),
        arity=1,
        takes=frozenset({"map"}),
        traits=frozenset({"view"}),
        glyph="⋉",
        example="x |> unflatten(d -> [heads, dh])",
    )
)


def _concat_check(call: OpCall):
    (axis,) = _one_over(call)
    name = axis.name
    if len(call.inputs) < 2:
        raise fail("concat needs at least two tensors")
    # An input without the axis contributes one slice; other axes are matched by name.
    with_axis = [t for t in call.inputs if t.has(name)]
    if not with_axis:
        raise fail(f"concat: no input has the axis '{name}'")
    first = max(with_axis, key=lambda t: t.rank)  # its layout is the result's
    total = Size.of(0)
    base = first.with_axes(a for a in first.axes if a.name != name)
    for t in call.inputs:
        total = total + (t.axis(name).size if t.has(name) else Size.of(1))
        stripped = t.with_axes(a for a in t.axes if a.name != name)
        base = broadcast("concat", base, stripped)
        if stripped.rank > base.rank:
            base = broadcast("concat", stripped, base)
    pos = first.index(name)
    axes = list(base.axes)
    code = sum_code(t.axis(name) if t.has(name) else Axis(name, Size.of(1)) for t in call.inputs)
    axes.insert(min(pos, len(axes)), Axis(name, total, X.dependent(code)))
    return {"axis": name}, (base.with_axes(axes),)


register(
    OpDef(
        name="concat",
        doc="Joins tensors along an axis. An input that lacks the axis adds one slice "
        "(e.g. a class token); other axes are matched by name and broadcast.",
        check=_concat_check,
        attrs=(AttrSpec("axis", "axis", doc="the axis the inputs are laid end to end along"),),
        arity=None,
        takes=frozenset({"over"}),
        glyph="⊕",
        example="concat(cls, x, over seq)",
    )
)


def _reduce_check(call: OpCall):
    (t,) = call.inputs
    names = over_names(call.op, call)
    for s in over_specs(call.op, call):
        require_axis(call.op, t, s)
    out = t.with_axes(a for a in t.axes if a.name not in names)
    if call.op == "mean":
        require_float("mean", t)
    return {"axes": names}, (out,)


for _name in ("sum", "mean", "max", "min"):
    register(
        OpDef(
            name=_name,
            doc=f"Reduces the named axes by {_name}; they disappear from the type.",
            check=_reduce_check,
            attrs=(AttrSpec("axes", "axes", doc="the axes reduced away"),),
            arity=1,
            takes=frozenset({"over"}),
            glyph=f"{_name}",
            example=f"{_name}(x, over [h, w])",
        )
    )


def _cast_check(call: OpCall):
    (t,) = call.inputs
    to = call.kw("to")
    if to not in DTYPES:
        raise fail(f"cast: 'to' must be one of {', '.join(DTYPES)}, found {to!r}")
    return {"to": to}, (t.with_dtype(to),)


register(
    OpDef(
        name="cast",
        doc="Converts the element type.",
        check=_cast_check,
        attrs=(AttrSpec("to", "dtype", doc="the result's dtype"),),
        arity=1,
        kwargs=("to",),
        glyph="cast",
        example='cast(x, to = "float16")',
    )
)


# ---- masks, positions, indexing ------------------------------------------------------------


def _causal_check(call: OpCall):
    (t,) = call.inputs
    names = over_names("causal", call)
    if len(names) != 2:
        raise fail("causal needs two axes: causal(scores, over [seq, key])")
    for s in over_specs("causal", call):
        require_axis("causal", t, s)
    return {"query": names[0], "key": names[1]}, (t,)


register(
    OpDef(
        name="causal",
        doc="Sets scores to -inf where the key position (second axis) is after the query "
        "position (first axis), lined up at the end: with more keys than queries (a decode step "
        "with a key/value cache) query i stands at key position i + (key − seq), as in "
        "FlashAttention and Hugging Face.",
        check=_causal_check,
        attrs=(AttrSpec("query", "axis", doc="the query positions"), AttrSpec("key", "axis", doc="the key positions")),
        arity=1,
        takes=frozenset({"over"}),
        glyph="◸",
        example="causal(scores, over [seq, key])",
    )
)


def _axis_in_scope(op: str, example: str, call: OpCall) -> Axis:
    """The one axis `positions(seq)` or `length(past)` names, with its size (and the size's
    hyperparameter expression) from the tensors in scope."""
    if len(call.positional) != 1:
        raise fail(f"{op} takes one axis: {example}")
    (spec,) = positional_axes(op, call)
    size = call.kw("_size")
    if size is None:
        raise fail(f"{op}: '{spec.name}' is not an axis of any tensor in scope")
    code = call.kw("_code")
    return Axis(spec.name, size, code.expr if isinstance(code, HVal) and size.is_static else None)


def _positions_check(call: OpCall):
    ax = _axis_in_scope("positions", "positions(seq)", call)
    return {"axis": ax}, (TensorType((ax,), "int64"),)


register(
    OpDef(
        name="positions",
        doc="The integers 0, 1, …, n-1 along an axis of size n (int64).",
        check=_positions_check,
        attrs=(AttrSpec("axis", "axis_def", doc="the axis of positions 0 .. N-1 it makes"),),
        arity=0,
        positional=("axis",),
        glyph="#",
        example="positions(seq)",
    )
)


def _length_check(call: OpCall):
    return {"axis": _axis_in_scope("length", "length(past)", call)}, (TensorType((), "int64"),)


register(
    OpDef(
        name="length",
        doc="The size of an axis in scope as an int64 scalar, read when the module runs for a "
        "run-time axis (0 for an empty one): `positions(seq) + length(past)` numbers new "
        "positions after a key/value cache.",
        check=_length_check,
        attrs=(AttrSpec("axis", "axis_def", doc="the axis whose size it reads (an Axis, its size resolved)"),),
        arity=0,
        positional=("axis",),
        glyph="|n|",
        example="positions(seq) + length(past)",
    )
)


def _select_check(call: OpCall):
    (t,) = call.inputs
    axis = call.kw("axis")
    spec = call.kw("index")
    if not t.has(axis):
        raise fail(f"index: the input {t} has no axis '{axis}'")
    idx = as_int("index", "the index", spec)
    size = t.axis(axis).size
    if size.is_static and not -size.value <= idx < size.value:
        raise fail(f"index {idx} is out of range for axis '{axis}' of size {size.value}")
    return {"axis": axis, "index": spec}, (t.with_axes(a for a in t.axes if a.name != axis),)


def _select_label(a: Attrs) -> str:
    """`[seq = 0]`: the position taken, by its hyperparameter's name where it is one."""
    axis, index = a["axis"], a["index"]
    return f"[{axis} = {index.expr.name if isinstance(index.expr, X.Ref) else index.value}]"


register(
    OpDef(
        name="select",
        doc="Takes one position along an axis, which disappears: `x[seq = 0]`.",
        check=_select_check,
        attrs=(AttrSpec("axis", "axis", doc="the axis indexed (and dropped)"), AttrSpec("index", "hval", doc="the position taken")),
        arity=1,
        traits=frozenset({"view"}),
        glyph="[·]",
        label=_select_label,
        example="x[seq = 0]",
    )
)


def _topk_check(call: OpCall):
    (t,) = call.inputs
    (axis,) = _one_over(call)
    ax = require_axis("top_k", t, axis)
    k = call.kw("k")
    kv = as_int("top_k", "k", k, minimum=1)
    if ax.size.is_static and kv > ax.size.value:
        raise fail(f"top_k: k={kv} is larger than axis '{axis.name}' of size {ax.size.value}")
    into = call.kw("into")
    into = into if isinstance(into, str) else axis.name
    code = X.dependent(k.expr) if isinstance(k, HVal) else None
    axes = tuple(Axis(into, Size.of(kv), code) if a.name == axis.name else a for a in t.axes)
    vals = t.with_axes(axes)
    return {"axis": axis.name, "k": k, "into": into}, (vals, vals.with_dtype("int64"))


register(
    OpDef(
        name="top_k",
        doc="The k largest values along an axis and their indices (a pair): the routing "
        "primitive of mixtures of experts. Largest first; among equal values the lower "
        "index first, in every backend.",
        check=_topk_check,
        attrs=(
            AttrSpec("axis", "axis", doc="the axis searched"),
            AttrSpec("k", "hval", doc="how many largest values are kept"),
            AttrSpec("into", "axis", doc="the axis of the k values"),
        ),
        arity=1,
        kwargs=("k", "into"),
        takes=frozenset({"over"}),
        glyph="top-k",
        example="vals, idx = top_k(scores, over expert, k = 2)",
    )
)


def _gather_check(call: OpCall):
    src, idx = call.inputs
    (axis,) = _one_over(call)
    require_axis("gather", src, axis)
    if idx.dtype not in ("int64", "int32"):
        raise fail(f"gather: indices must be integers, found {idx}")
    if not idx.has(axis.name):
        raise fail(f"gather: the indices {idx} must have the gathered axis '{axis.name}'")
    out = broadcast("gather", src.with_axes(a for a in src.axes if a.name != axis.name),
                    idx.with_axes(a for a in idx.axes if a.name != axis.name))
    pos = src.index(axis.name)
    axes = list(out.axes)
    axes.insert(min(pos, len(axes)), idx.axis(axis.name))
    return {"axis": axis.name}, (TensorType(tuple(axes), src.dtype),)


register(
    OpDef(
        name="gather",
        doc="Picks elements of `src` along an axis at the positions `idx` holds there "
        "(data-dependent routing); the other axes are matched by name.",
        check=_gather_check,
        attrs=(AttrSpec("axis", "axis", doc="the axis the ids index"),),
        arity=2,
        takes=frozenset({"over"}),
        glyph="gather",
        example="gather(x, idx, over expert)",
    )
)


def _pad_to_check(call: OpCall):
    x, like = call.inputs
    names = over_names("pad_to", call)
    axes = []
    for a in x.axes:
        if a.name in names:
            if not like.has(a.name):
                raise fail(f"pad_to: the reference {like} has no axis '{a.name}'")
            axes.append(like.axis(a.name))
        else:
            axes.append(a)
    for s in over_specs("pad_to", call):
        require_axis("pad_to", x, s)
    return {"axes": names}, (x.with_axes(axes),)


register(
    OpDef(
        name="pad_to",
        doc="Zero-pads (or centre-crops) the named axes of the first tensor to the sizes the "
        "second tensor has there: a U-Net's skip connection at any input size.",
        check=_pad_to_check,
        attrs=(AttrSpec("axes", "axes", doc="the axes padded to the other input's sizes"),),
        arity=2,
        takes=frozenset({"over"}),
        glyph="⊡",
        example="pad_to(up, skip, over [h, w])",
    )
)


# ---- typed accessors: what passes and backends read of these ops' attributes ----------------


def cast_to(a: Attrs) -> str:
    """The dtype a cast converts to."""
    return a["to"]


def renamed(a: Attrs) -> tuple[str, str]:
    """(old, new): the axis a rename renames and its new name."""
    return a["old"], a["new"]


def swapped(a: Attrs) -> tuple[str, str]:
    """The two axes a transpose swaps."""
    return a["a"], a["b"]


def softmax_axes(a: Attrs) -> tuple[str, ...]:
    """The axes a softmax (or log_softmax) normalises over, together."""
    return tuple(a["axes"])


def softmax_axis(a: Attrs) -> str | None:
    """The axis a softmax (or log_softmax) normalises along, or None when it normalises over
    several axes together."""
    axes = softmax_axes(a)
    return axes[0] if len(axes) == 1 else None


def einsum_out(a: Attrs) -> tuple[str, ...]:
    """An einsum's result axes, in order."""
    return a["out"]


def causal_axes(a: Attrs) -> tuple[str, str]:
    """(query, key): the axes of a causal mask."""
    return a["query"], a["key"]
