"""State that is not a parameter, and randomness: `Buffer` (a tensor made when the module is
built, kept in the state_dict or not) and the random ops (`normal_like`, `uniform_like`,
`bernoulli`, `drop_path`), which carry the "random" trait so no pass merges two draws."""

from __future__ import annotations

from nncircuit.ops.registry import (
    ZEROS,
    AttrSpec,
    Attrs,
    Init,
    OpCall,
    OpDef,
    ParamSpec,
    as_bool,
    as_float,
    fail,
    float_attr,
    init_of,
    new_axis,
    over_names,
    register,
    require_axis,
    require_float,
    size_hval,
)
from nncircuit.types import expr as X
from nncircuit.types.tensor import DTYPES, HVal, TensorType

# ---- buffers -------------------------------------------------------------------------------

# the kinds a buffer of given axes may start as: constants (a draw would be a parameter's job)
BUFFER_INITS = ("zeros", "ones", "constant")


def _buffer_check(call: OpCall):
    persistent = as_bool("Buffer", "persistent", call.kw("persistent", True))
    if call.axes is not None:
        if call.inputs:
            raise fail("Buffer takes either its axes (Buffer([e: n], init = zeros)) or the "
                       "expression it starts as (Buffer(positions(seq))), not both")
        axes = tuple(new_axis("Buffer", s) for s in call.axes)
        init = init_of("Buffer", "init", call.kw("init", "zeros"), ndim=len(axes))
        if init.kind not in BUFFER_INITS:
            raise fail(f"Buffer: init must be a constant ({', '.join(BUFFER_INITS)}), found {init.kind}; "
                       "a drawn tensor is a Param")
        dtype = call.kw("dtype", "float32")
        dtype = dtype.value if isinstance(dtype, HVal) else dtype
        if dtype not in DTYPES:
            raise fail(f"Buffer: unknown dtype {dtype!r}; known: {', '.join(DTYPES)}")
        attrs = {"axes": axes, "sizes": tuple(s.size for s in call.axes), "init": init,
                 "persistent": persistent, "dtype": dtype}
        return attrs, (TensorType(axes, dtype),)
    if len(call.inputs) != 1:
        raise fail("Buffer needs its axes (Buffer([e: n], init = zeros)) or one tensor to start "
                   "as (Buffer(positions(seq)))")
    if call.kw("init") is not None or call.kw("dtype") is not None:
        raise fail("Buffer: init and dtype go with the axes form (Buffer([e: n], init = zeros)); "
                   "a buffer made from an expression starts as its value")
    (t,) = call.inputs
    for ax in t.axes:
        if not ax.size.is_static:
            raise fail(f"Buffer: axis '{ax.name}' has the run-time size {ax.size}; a buffer is made "
                       "when the module is built, so every axis needs a static size")
    sizes = tuple(size_hval(ax, None) for ax in t.axes)
    attrs = {"axes": t.axes, "sizes": sizes, "init": None, "persistent": persistent, "dtype": t.dtype}
    return attrs, (t,)


def _buffer_params(a: Attrs, ins):
    init = a["init"] if isinstance(a["init"], Init) else ZEROS
    return (ParamSpec("buffer", a["sizes"], init, buffer=True),)


register(
    OpDef(
        name="Buffer",
        doc="State that is not a parameter: a tensor made when the module is built, from its "
        "axes and a constant init (`Buffer([e: n], init = zeros)`) or from an expression of "
        "hyperparameters and positions that reads no model input "
        "(`Buffer(1.0 / theta ** (positions(i) * 2.0 / dh))`). `persistent = false` keeps it "
        "out of the state_dict. Counted apart from parameters.",
        check=_buffer_check,
        arity=None,
        learned=True,
        params=_buffer_params,
        kwargs=("init", "persistent", "dtype"),
        takes=frozenset({"axes"}),
        traits=frozenset({"view", "built"}),
        glyph="β",
        example="inv_freq = Buffer(1.0 / theta ** (positions(i) * 2.0 / dh), persistent = false)",
        attrs=(
            AttrSpec("axes", "any", doc="the buffer's axes (a tuple of Axis)"),
            AttrSpec("sizes", "any", doc="the sizes of its axes, as HVals keeping their expressions"),
            AttrSpec("init", "init", default=None, optional=True,
                     doc="the constant it starts as (axes form); None: the value of its input"),
            AttrSpec("persistent", "bool", default=True, doc="whether the state_dict holds it"),
            AttrSpec("dtype", "dtype", default="float32", doc="its element type"),
        ),
    )
)

# ---- random draws --------------------------------------------------------------------------


def _like_check(call: OpCall):
    (t,) = call.inputs
    require_float(call.op, t)
    if call.op != "uniform_like":
        return {}, (t,)
    low, high = call.kw("low", 0.0), call.kw("high", 1.0)
    lo, hi = as_float(call.op, "low", low), as_float(call.op, "high", high)
    if isinstance(low, HVal) and isinstance(high, HVal):
        X.note(X.binop("<=", low.expr, high.expr), "uniform_like: low must not exceed high, found ",
               ("e", low.expr), " > ", ("e", high.expr))
    if lo > hi:
        raise fail(f"uniform_like: low must not exceed high, found {lo} > {hi}")
    return {"low": float_attr(call.op, "low", low), "high": float_attr(call.op, "high", high)}, (t,)


register(
    OpDef(
        name="normal_like",
        doc="A draw from the standard normal distribution of the input's type (its values are "
        "not read); drawn in eval mode too (a sample is its meaning).",
        check=_like_check,
        arity=1,
        traits=frozenset({"random"}),
        glyph="N",
        example="eps = normal_like(mu)",
        attrs=(),
    )
)

register(
    OpDef(
        name="uniform_like",
        doc="A draw from uniform(low, high) of the input's type (its values are not read); "
        "defaults low = 0.0, high = 1.0; drawn in eval mode too.",
        check=_like_check,
        arity=1,
        kwargs=("low", "high"),
        traits=frozenset({"random"}),
        glyph="U",
        example="u = uniform_like(x, low = -1.0, high = 1.0)",
        attrs=(
            AttrSpec("low", "float", default=0.0, doc="the lower bound"),
            AttrSpec("high", "float", default=1.0, doc="the upper bound"),
        ),
    )
)


def _bernoulli_check(call: OpCall):
    (t,) = call.inputs
    require_float("bernoulli", t)
    return {}, (t,)


register(
    OpDef(
        name="bernoulli",
        doc="Elementwise 1 with the probability the input holds there, else 0 (same type); "
        "drawn in eval mode too.",
        check=_bernoulli_check,
        arity=1,
        traits=frozenset({"random"}),
        glyph="B",
        example="mask = bernoulli(sigmoid(logits))",
        attrs=(),
    )
)


def _drop_path_check(call: OpCall):
    (t,) = call.inputs
    require_float("drop_path", t)
    if call.over is None:
        raise fail("drop_path needs 'over AXES': the axes of one sample, one draw each (over batch)")
    for s in call.over:
        require_axis("drop_path", t, s)
    given = call.kw("p", 0.1)
    p = as_float("drop_path", "p", given)
    if isinstance(given, HVal):
        X.note(X.binop(">=", given.expr, X.Const(0)), "drop_path: p must be in [0, 1), found ", ("e", given.expr))
        X.note(X.binop("<", given.expr, X.Const(1)), "drop_path: p must be in [0, 1), found ", ("e", given.expr))
    if not 0.0 <= p < 1.0:
        raise fail(f"drop_path: p must be in [0, 1), found {p}")
    return {"p": float_attr("drop_path", "p", given), "over": over_names("drop_path", call)}, (t,)


register(
    OpDef(
        name="drop_path",
        doc="Stochastic depth: while training, zeroes a whole sample (one draw per position of "
        "the `over` axes, shared by its other axes) with probability p and scales the others by "
        "1 / (1 - p); identity in eval mode.",
        check=_drop_path_check,
        arity=1,
        kwargs=("p",),
        takes=frozenset({"over"}),
        traits=frozenset({"random"}),
        glyph="drop_path",
        example="x = x + drop_path(f(x), p = 0.1, over batch)",
        attrs=(
            AttrSpec("p", "float", default=0.1, doc="the probability of dropping a sample"),
            AttrSpec("over", "axes", doc="the axes whose positions are the samples"),
        ),
    )
)
